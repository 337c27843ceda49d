"""Pyro's transforms: bijections with arguments, shape-changing ones, and their composition.

Teaches: the Transform contract of constraint_registry.py carried three steps further. A transform can
have arguments a gradient must reach (``AffineTransform(loc, scale)``: its VJPs w.r.t. loc and
scale sit beside the one w.r.t. its input); it can map whole vectors and change their length
(stick-breaking: R^(K-1) onto the K-simplex, a triangular Jacobian whose log-determinant is a
sum); and transforms compose (the chain rule, run backwards over the parts). Pyro's names:
``ExpTransform``, ``SigmoidTransform``, ``SoftplusTransform``, ``AffineTransform``,
``StickBreakingTransform``, ``ComposeTransform``.
Builds on constraint_registry.py (the contract; ExpTransform and the sigmoid map are reused from
there), constraints.py and backend.py; it gives ``biject_to`` its answers for softplus_positive,
simplex and lower_cholesky.
"""
import numpy as np

from .. import backend
from ..backend import array_module, grad_like, sigmoid, softplus
from . import constraints
from .constraint_registry import (ExpTransform, IdentityTransform, SigmoidAffineTransform, Transform,  # noqa: F401
                                  biject_to, register_bijection)

__all__ = ["AffineTransform", "ComposeTransform", "ExpTransform", "IdentityTransform", "LowerCholeskyTransform",
           "SigmoidTransform", "SoftplusTransform", "StickBreakingTransform", "Transform", "biject_to"]


def check_transform(t, owner):
    """``t``, after checking that it is a Transform instance: a class, or a function such as np.exp, has no
    inverse and no VJPs (``owner`` names who was given it)."""
    if isinstance(t, type) and issubclass(t, Transform):
        raise TypeError(f"{owner}: got the class {t.__name__}, not a transform; pass an instance: {t.__name__}()")
    if not isinstance(t, Transform):
        raise TypeError(f"{owner}: each transform must be a Transform instance, got {t!r}; pass an instance, "
                        f"e.g. ExpTransform() for np.exp (minippl.distributions.transforms)")
    return t


class SigmoidTransform(SigmoidAffineTransform):
    """x = sigmoid(u) = 1 / (1 + exp(-u)): the interval map with lo = 0, hi = 1.

    >>> t = SigmoidTransform()
    >>> t(np.array([0.0])), t.codomain
    (array([0.5]), constraints.interval(0.0, 1.0))
    """

    def __init__(self):
        super().__init__(0.0, 1.0, codomain=constraints.unit_interval)

    def __repr__(self):
        return "SigmoidTransform()"


class SoftplusTransform(Transform):
    """x = softplus(u) = log(1 + exp(u)): biject_to(softplus_positive).

    >>> t, u = SoftplusTransform(), np.array([-1.0, 0.0, 30.0])
    >>> x = t(u)
    >>> bool(np.allclose(t.inverse(x), u)), t.vjp(u, x, np.ones(3))  # dx/du = sigmoid(u)
    (True, array([0.26894142, 0.5       , 1.        ]))
    """

    def __init__(self, codomain=None):
        super().__init__(constraints.softplus_positive if codomain is None else codomain)

    def forward(self, u):
        # softplus underflows to 0 below u ~ -745: keep x one representable step above 0
        x = softplus(u)
        return array_module(x).maximum(x, float(np.finfo(x.dtype).tiny))

    def inverse(self, x):
        xp = array_module(x)
        return x + xp.log(-xp.expm1(-x))  # u = log(exp(x) - 1) = x + log(1 - exp(-x))

    def vjp(self, u, x, grad_x):
        # dx/du = sigmoid(u) = 1 - exp(-x)
        return grad_x * sigmoid(u)

    def log_abs_det_jacobian(self, u, x):
        # log sigmoid(u) = -softplus(-u)
        return -softplus(-array_module(u).asarray(u))

    def log_abs_det_jacobian_vjp(self, u, x, grad):
        # d/du -softplus(-u) = sigmoid(-u)
        return grad * sigmoid(-array_module(u).asarray(u))


class StickBreakingTransform(Transform):
    """R^(K-1) onto the K-simplex (torch's StickBreakingTransform), one vector at a time.

    z_i = sigmoid(u_i - log(K-1-i)) is the fraction of the stick left before piece i that piece
    i takes: x_i = z_i prod_{j<i} (1 - z_j), and the last piece takes what remains. The shift
    makes u = 0 the uniform point. dx_i/du_j is 0 for j > i, so log |det| is the sum of the
    diagonal logs, sum_i log x_i + log(1 - z_i) = sum_i -softplus(-t_i) - (K-1-i) softplus(t_i),
    with t_i = u_i - log(K-1-i) (log x_i expands into log z_i and the earlier log(1 - z_j)).

    >>> t = StickBreakingTransform()
    >>> t(np.zeros(3)), t.inverse(np.array([0.25, 0.25, 0.25, 0.25])).round(12)
    (array([0.25, 0.25, 0.25, 0.25]), array([0., 0., 0.]))
    """

    event_dim = 1

    def __init__(self, codomain=None):
        super().__init__(constraints.simplex if codomain is None else codomain)

    @staticmethod
    def _vectors(shape, what, size):
        """``shape``, after checking that it has a last dim of at least ``size`` (the vectors mapped)."""
        if len(shape) < 1 or shape[-1] < size:
            raise ValueError(f"StickBreakingTransform maps vectors (event_dim 1): its {what} needs a last dim of "
                             f"{'K - 1 >= 1' if size == 1 else 'K >= 2'} entries, got shape {tuple(shape)}; for "
                             f"the K-simplex, use a base like Normal(np.zeros(K - 1), 1.).to_event(1)")
        return tuple(shape)

    @classmethod
    def _shifted(cls, u):
        """(xp, t = u - log offset, offset): offset_i = K-1-i = n - i for the n = K-1 inputs."""
        xp = array_module(u)
        u = xp.asarray(u)
        offset = xp.arange(cls._vectors(u.shape, "input", 1)[-1], 0, -1).astype(u.dtype)
        return xp, u - xp.log(offset), offset

    def forward_shape(self, shape):
        shape = self._vectors(shape, "input", 1)
        return shape[:-1] + (shape[-1] + 1,)

    def inverse_shape(self, shape):
        shape = self._vectors(shape, "value", 2)
        return shape[:-1] + (shape[-1] - 1,)

    def forward(self, u):
        xp, t, _ = self._shifted(u)
        z = sigmoid(t)
        left = xp.cumprod(1 - z, axis=-1)  # the stick left after each piece
        ones = xp.ones(t.shape[:-1] + (1,), dtype=t.dtype)
        return xp.concatenate([z, ones], axis=-1) * xp.concatenate([ones, left], axis=-1)

    def inverse(self, x):
        xp = array_module(x)
        x = xp.asarray(x)
        head = x[..., :-1]
        offset = xp.arange(head.shape[-1], 0, -1).astype(x.dtype)
        left = xp.maximum(1 - xp.cumsum(head, axis=-1), float(np.finfo(x.dtype).tiny))  # after piece i
        return xp.log(head) - xp.log(left) + xp.log(offset)  # logit(z_i) + log offset_i

    def vjp(self, u, x, grad_x):
        # du_i <- g_i x_i (1 - z_i) - z_i sum_{k>i} g_k x_k   (x_k for k > i holds the factor 1 - z_i)
        xp, t, _ = self._shifted(u)
        gx = grad_x * x
        after = xp.flip(xp.cumsum(xp.flip(gx, -1), axis=-1), -1)[..., 1:]  # sum_{k>i} g_k x_k
        return gx[..., :-1] * sigmoid(-t) - sigmoid(t) * after

    def log_abs_det_jacobian(self, u, x):
        # sum_i -softplus(-t_i) - offset_i softplus(t_i)
        xp, t, offset = self._shifted(u)
        return -(softplus(-t) + offset * softplus(t)).sum(-1)

    def log_abs_det_jacobian_vjp(self, u, x, grad):
        # d/dt_i = sigmoid(-t_i) - offset_i sigmoid(t_i), times the cotangent of the vector's sum
        xp, t, offset = self._shifted(u)
        return xp.asarray(grad)[..., None] * (sigmoid(-t) - offset * sigmoid(t))

    def inverse_vjp(self, u, x, grad_u):
        # u_i = log x_i - log(1 - sum_{j<=i} x_j) + log offset_i:
        # dx_j <- g_j / x_j + sum_{i>=j} g_i / left_i; the last entry is not read: 0
        xp = array_module(x)
        head = x[..., :-1]
        left = xp.maximum(1 - xp.cumsum(head, axis=-1), float(np.finfo(x.dtype).tiny))
        tail = xp.flip(xp.cumsum(xp.flip(grad_u / left, -1), axis=-1), -1)
        return xp.concatenate([grad_u / head + tail, xp.zeros_like(x[..., :1])], axis=-1)


class AffineTransform(Transform):
    """x = loc + scale * u (Pyro's), loc and scale broadcasting with u; ``event_dim`` dims per event.

    Its arguments may be traced values (eight schools: ``AffineTransform(mu, tau)``): used on its
    own, arithmetic on them is recorded as any other; inside TransformedDistribution they are
    that distribution's arguments, differentiated by the VJPs below (``*_params_vjp``).

    >>> t = AffineTransform(1.0, np.array([2.0, -3.0]))
    >>> u = np.array([0.5, 1.0])
    >>> t(u), t.inverse(t(u)), t.log_abs_det_jacobian(u, t(u))
    (array([ 2., -2.]), array([0.5, 1. ]), array([0.69314718, 1.09861229]))
    """

    param_names = ("loc", "scale")

    def __init__(self, loc, scale, event_dim=0):
        super().__init__(constraints.real)
        self.loc, self.scale, self.event_dim = loc, scale, int(event_dim)  # as given, as a distribution

    def with_params(self, loc, scale):
        return AffineTransform(loc, scale, self.event_dim)

    def forward_shape(self, shape):
        return backend.broadcast_shapes(tuple(shape), np.shape(self.loc), np.shape(self.scale))

    def forward(self, u):
        return self.loc + self.scale * u

    def inverse(self, x):
        return (x - self.loc) / self.scale

    def _sum_event(self, a, shape):
        xp = array_module(a)
        a = xp.broadcast_to(a, shape)
        return a.sum(axis=tuple(range(-self.event_dim, 0))) if self.event_dim else a.copy()

    def log_abs_det_jacobian(self, u, x):
        # log |scale| for each element, summed over the event dims
        xp = array_module(x)
        shape = np.broadcast_shapes(np.shape(u), np.shape(x))  # a broadcast loc or scale widens x's shape
        return self._sum_event(xp.log(xp.abs(xp.asarray(self.scale, dtype=x.dtype))), shape)

    def _unsum(self, grad, x):
        return backend.unsum_last(grad, self.event_dim, np.shape(x))

    def vjp(self, u, x, grad_x):
        # dx/du = scale
        return grad_like(grad_x * self.scale, u)

    def log_abs_det_jacobian_vjp(self, u, x, grad):
        # d/du log |scale| = 0
        return array_module(u).zeros_like(u)

    def inverse_vjp(self, u, x, grad_u):
        # du/dx = 1 / scale
        return grad_like(grad_u / self.scale, x)

    def params_vjp(self, u, x, grad_x):
        # dx/dloc = 1, dx/dscale = u
        return {"loc": grad_like(grad_x, self.loc, copy=True), "scale": grad_like(grad_x * u, self.scale)}

    def inverse_params_vjp(self, u, x, grad_u):
        # u = (x - loc) / scale: du/dloc = -1 / scale, du/dscale = -u / scale
        g = grad_u / self.scale
        return {"loc": grad_like(-g, self.loc), "scale": grad_like(-g * u, self.scale)}

    def log_abs_det_jacobian_params_vjp(self, u, x, grad):
        # d/dloc log |scale| = 0, d/dscale log |scale| = 1 / scale (each element, before the event sum)
        g = self._unsum(grad, x)
        xp = array_module(g)
        return {"loc": grad_like(xp.zeros(g.shape, g.dtype), self.loc), "scale": grad_like(g / self.scale, self.scale)}

    def __repr__(self):
        return f"AffineTransform(loc={self.loc!r}, scale={self.scale!r}, event_dim={self.event_dim})"


class ComposeTransform(Transform):
    """parts[-1](... parts[0](u)): the chain rule run backwards over the parts.

    Arguments of the parts (an AffineTransform's) are differentiated by TransformedDistribution,
    which takes the parts one by one; the VJPs here are w.r.t. the input.

    >>> t = ComposeTransform([AffineTransform(0.0, 2.0), ExpTransform()])
    >>> t(np.array([0.0, 0.5])), t.log_abs_det_jacobian(np.array([0.5]), t(np.array([0.5])))
    (array([1.        , 2.71828183]), array([1.69314718]))
    """

    def __init__(self, parts):
        parts = [check_transform(part, "ComposeTransform") for part in parts]
        super().__init__(parts[-1].codomain if parts else constraints.real)
        self.parts = parts
        self.event_dim = max([p.event_dim for p in parts], default=0)

    def forward_shape(self, shape):
        for part in self.parts:
            shape = part.forward_shape(shape)
        return shape

    def inverse_shape(self, shape):
        for part in reversed(self.parts):
            shape = part.inverse_shape(shape)
        return shape

    def _values(self, u):
        values = [u]
        for part in self.parts:
            values.append(part.forward(values[-1]))
        return values

    def forward(self, u):
        return self._values(u)[-1]

    def inverse(self, x):
        for part in reversed(self.parts):
            x = part.inverse(x)
        return x

    def _extra(self, part):
        return self.event_dim - part.event_dim  # dims of a part's log-det summed into one event

    def log_abs_det_jacobian(self, u, x):
        values, total = self._values(u), 0.0
        for part, a, b in zip(self.parts, values, values[1:]):
            term = part.log_abs_det_jacobian(a, b)
            total = total + (term.sum(axis=tuple(range(-self._extra(part), 0))) if self._extra(part) else term)
        return total

    def vjp(self, u, x, grad_x):
        # J = J_K ... J_1: the parts' VJPs from the last to the first
        values = self._values(u)
        for part, a, b in reversed(list(zip(self.parts, values, values[1:]))):
            grad_x = part.vjp(a, b, grad_x)
        return grad_x

    def log_abs_det_jacobian_vjp(self, u, x, grad):
        # sum_k L_k(v_{k-1}), v_k = part_k(v_{k-1}): each term's VJP joins the running cotangent
        values, carried = self._values(u), None
        for part, a, b in reversed(list(zip(self.parts, values, values[1:]))):
            if carried is not None:
                carried = part.vjp(a, b, carried)
            term_shape = np.shape(part.log_abs_det_jacobian(a, b))
            term = part.log_abs_det_jacobian_vjp(a, b, backend.unsum_last(grad, self._extra(part), term_shape))
            carried = term if carried is None else carried + term
        return carried

    def inverse_vjp(self, u, x, grad_u):
        # inverse = inv_1 o ... o inv_K: the inverses' VJPs from the first part to the last
        values = self._values(u)
        for part, a, b in zip(self.parts, values, values[1:]):
            grad_u = part.inverse_vjp(a, b, grad_u)
        return grad_u

    def __repr__(self):
        return f"ComposeTransform({self.parts!r})"


class LowerCholeskyTransform(Transform):
    """Square matrices onto lower_cholesky (torch's): x = tril(u, -1) + diag(exp(u_ii)).

    The strict lower triangle is copied, the diagonal exponentiated, the upper triangle ignored
    (its gradient is 0, and ``inverse`` puts 0 there: the round trip is exact on lower-triangular u).
    dx/du is 1 on the strict lower triangle and exp(u_ii) = x_ii on the diagonal, a diagonal
    Jacobian on the lower-triangle coordinates x depends on, so log |det| = sum_i u_ii, one number
    per matrix (``event_dim = 2``).

    >>> t = LowerCholeskyTransform()
    >>> u = np.array([[0.0, 5.0], [2.0, np.log(3.0)]])
    >>> t(u), round(float(t.log_abs_det_jacobian(u, t(u))), 6)  # log 3
    (array([[1., 0.],
           [2., 3.]]), 1.098612)
    """

    event_dim = 2

    def __init__(self, codomain=None):
        super().__init__(constraints.lower_cholesky if codomain is None else codomain)

    @staticmethod
    def _split(a):
        """(xp, strict lower triangle, diagonal (..., n), eye(n)) of a stack of square matrices."""
        xp = array_module(a)
        a = xp.asarray(a)
        return xp, xp.tril(a, -1), xp.diagonal(a, axis1=-2, axis2=-1), xp.eye(a.shape[-1], dtype=a.dtype)

    def forward(self, u):
        xp, lower, diag, eye = self._split(u)
        # as ExpTransform: exp underflows to 0 far left, keep the diagonal one step above 0
        return lower + xp.maximum(xp.exp(diag), float(np.finfo(diag.dtype).tiny))[..., None] * eye

    def inverse(self, x):
        xp, lower, diag, eye = self._split(x)
        return lower + xp.log(diag)[..., None] * eye

    def vjp(self, u, x, grad_x):
        # dx_ij/du_ij = 1 below the diagonal, exp(u_ii) = x_ii on it, 0 above
        _, lower, diag, eye = self._split(grad_x)
        return lower + (diag * self._split(x)[2])[..., None] * eye

    def log_abs_det_jacobian(self, u, x):
        xp, _, diag, _ = self._split(u)
        return xp.asarray(diag.sum(-1))  # sum_i u_ii

    def log_abs_det_jacobian_vjp(self, u, x, grad):
        # d/du_ij sum_k u_kk = 1 on the diagonal, 0 elsewhere
        xp, _, _, eye = self._split(u)
        return xp.asarray(grad, dtype=eye.dtype)[..., None, None] * eye

    def inverse_vjp(self, u, x, grad_u):
        # u = tril(x, -1) + diag(log x_ii): du/dx is 1 below the diagonal, 1 / x_ii on it
        _, lower, diag, eye = self._split(grad_u)
        return lower + (diag / self._split(x)[2])[..., None] * eye


@register_bijection(type(constraints.softplus_positive))
def _softplus_bijection(constraint):
    return SoftplusTransform(codomain=constraint)


@register_bijection(type(constraints.simplex))
def _stick_breaking_bijection(constraint):
    return StickBreakingTransform(codomain=constraint)


@register_bijection(type(constraints.lower_cholesky))
def _lower_cholesky_bijection(constraint):
    return LowerCholeskyTransform(codomain=constraint)
