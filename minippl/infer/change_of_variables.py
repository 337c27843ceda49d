"""The change of variables as a recorded layer: how an autoguide reaches a constrained latent.

Teaches: a guide that draws u from a Normal on the real line and hands the model x = T(u)
(T = ``biject_to(site support)``) has the density q(x) = q(u) |du/dx|, so
log q(x) = log q(u) - log |dx/du|. ``ToConstrained`` computes both x and that correction in one
layer call, so the tape carries their gradients back to u with the transform's VJPs
(constraint_registry.py), like any other layer's. Builds on nn/module.py (the layer contract)
and backend.py.
"""
from .. import backend
from ..nn.module import Module


class ToConstrained(Module):
    """``u -> (x, log_density)``: x = T(u) and log_density = -sum over the event of log|dx/du|.

    Pyro's guides give the model's site ``Delta(x, log_density)``: with u ~ q(u), the density
    of x is q(u) |du/dx|, so this term is the change-of-variables correction to log q.
    """

    def __init__(self, transform, event_dim=0):
        super().__init__()
        self.transform, self.event_dim = transform, int(event_dim)

    def forward(self, u):
        xp = backend.array_module(u)
        x = xp.asarray(self.transform.forward(u))
        log_jacobian = self.transform.log_abs_det_jacobian(u, x)
        if self.event_dim:
            log_jacobian = log_jacobian.sum(axis=tuple(range(-self.event_dim, 0)))
        return (x, xp.asarray(-log_jacobian)), (u, x)

    def backward(self, cache, grad_outputs, needs_input_grad):
        if not needs_input_grad[0]:
            return (None,), {}
        u, x = cache
        grad_x, grad_log_density = grad_outputs
        grad_u = None
        if grad_x is not None:
            # d/du T(u): the transform's own VJP
            grad_u = self.transform.vjp(u, x, grad_x)
        if grad_log_density is not None:
            # d/du -sum log|T'(u)|: the log-Jacobian's VJP with the cotangent negated and
            # broadcast back over the summed event dims
            g = backend.unsum_last(grad_log_density, self.event_dim, backend.shape_of(u))
            term = self.transform.log_abs_det_jacobian_vjp(u, x, -g)
            grad_u = term if grad_u is None else grad_u + term
        return (grad_u,), {}

    def extra_repr(self):
        return f"{self.transform!r}, event_dim={self.event_dim}"
