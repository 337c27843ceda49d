"""Delta: all the mass on one point, as in Pyro (point estimates, MAP guides).

Teaches: a "distribution" whose sample is its argument, so the reparameterised
gradient is the identity, and an optional ``log_density`` term that the ELBO
can differentiate. Builds on distribution.py.
"""
from .. import backend
from ..backend import shape_of
from . import constraints
from .distribution import Distribution, check_types, grad_like, promote


class Delta(Distribution):
    """Delta(v, log_density=0.0, event_dim=0): the point ``v``.

    The rightmost ``event_dim`` dims of ``v`` form one event. ``log_prob(x)`` is
    ``log_density`` where x equals v (all of an event's entries) and -inf elsewhere.
    """

    has_rsample = True
    arg_names = ("v", "log_density")
    arg_constraints = {"log_density": constraints.real}  # v may be anything, as in Pyro
    support = constraints.real

    def __init__(self, v, log_density=0.0, event_dim=0, validate_args=None):
        check_types("Delta", v=v, log_density=log_density)
        v_shape = shape_of(v)
        if not (isinstance(event_dim, int) and 0 <= event_dim <= len(v_shape)):
            raise ValueError(f"Delta: event_dim={event_dim!r}, but v of shape {v_shape} has only {len(v_shape)} dims")
        split = len(v_shape) - event_dim
        try:
            batch_shape = backend.broadcast_shapes(v_shape[:split], shape_of(log_density))
        except ValueError:
            raise ValueError(
                f"Delta: log_density of shape {shape_of(log_density)} does not broadcast with the batch "
                f"dims {v_shape[:split]} of v (its dims left of the event_dim={event_dim} event dims)"
            ) from None
        self.v = v  # stored as passed: the ELBO finds gradients by id()
        self.log_density = log_density
        super().__init__(batch_shape, v_shape[split:], validate_args=validate_args)

    def _validate_sample(self, value, what="value", masked=False):
        pass  # any value is allowed: its log-prob is log_density at v and -inf elsewhere

    @property
    def mean(self):
        return backend.array_module(self.v).broadcast_to(self.v, self.shape())

    @property
    def variance(self):
        xp, dtype, _ = promote(self.v)
        return xp.zeros(self.shape(), dtype)

    def rsample_with_noise(self, sample_shape=(), rng=None):
        # no randomness: the noise is None, and the value a fresh array (not v itself,
        # so the tape never confuses the draw with the argument it was made from)
        xp = backend.array_module(self.v)
        return xp.array(xp.broadcast_to(self.v, self.shape(sample_shape))), None

    def rsample_vjp(self, noise, grad_value, wrt):
        grads = {}
        for name in self._check_wrt(wrt, with_value=False):
            if name == "v":
                # d/dv v = 1
                grads["v"] = grad_like(grad_value, self.v, copy=True)
            else:
                # the draw does not depend on log_density
                xp, dtype, _ = promote(self.log_density, grad_value)
                grads["log_density"] = xp.zeros(shape_of(self.log_density), dtype)
        return grads

    def _hit(self, value):
        _, _, (x, v) = promote(value, self.v)
        hit = x == v
        return hit.all(axis=tuple(range(-self.event_dim, 0))) if self.event_dim else hit

    def log_prob(self, value):
        xp, _, (_, _, log_density) = promote(value, self.v, self.log_density)
        # log p(x) = log_density if x == v else -inf
        return self._batch_result(xp.where(self._hit(value), log_density, -xp.inf), value)

    def log_prob_vjp(self, value, grad_log_prob, wrt):
        wrt = self._check_wrt(wrt)
        xp, dtype, (g,) = promote(grad_log_prob)
        grads = {}
        for name in wrt:
            if name == "log_density":
                # d/d log_density log p(x) = 1 where x == v; 0 where log p = -inf (the contract)
                grads[name] = grad_like(xp.where(self._hit(value), g, 0), self.log_density)
            else:
                # d/dx and d/dv: 0, the log-density is piecewise constant in both
                grads[name] = xp.zeros(shape_of(value if name == "value" else self.v), dtype)
        return grads
