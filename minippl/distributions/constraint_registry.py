"""The constraint registry: the bijection from R onto each constraint, and its derivatives.

Teaches: an optimiser moves parameters over all of R, so a constrained parameter (a positive scale, a probability)
is stored unconstrained and mapped into its support by ``biject_to(constraint)`` (torch's ``constraint_registry``);
the chain rule needs that map's VJP, and autoguides its log |Jacobian| and that term's VJP. The Transform contract
is written once, here; transforms.py adds the transforms with arguments and the vector ones. Builds on
constraints.py (the codomains) and backend.py (the stable sigmoid).
"""
import math

import numpy as np

from ..backend import array_module, sigmoid
from .constraints import (Constraint, _GreaterThan, _Interval, _LessThan, _PositiveDefinite, _Real, greater_than,
                          interval, less_than, positive, real)


def _float_dtype_of(x):
    dtype = getattr(x, "dtype", None)
    return dtype if dtype is not None and dtype.kind == "f" else np.dtype(np.float64)


class Transform:
    """An elementwise bijection from R onto ``codomain``, with its VJP and log |dx/du|.

    The contract. A transform maps an unconstrained ``u`` to ``x = forward(u)`` in ``codomain`` (the Constraint
    given to ``__init__``: ``biject_to(c).codomain == c``), element by element (``event_dim = 0``), and defines,
    each returning an array shaped like ``u``:

    * ``forward(u)``: x (``t(u)`` calls it); ``inverse(x)``: u, so ``inverse(forward(u)) == u``;
    * ``vjp(u, x, grad_x)``: ``grad_x * dx/du``, the unconstrained value's gradient from the constrained one's;
    * ``log_abs_det_jacobian(u, x)``: ``log |dx/du|``, the change-of-variables term autoguides add;
    * ``log_abs_det_jacobian_vjp(u, x, grad)``: ``grad * d/du log |dx/du|``.

    Beyond elementwise. A transform with ``event_dim = 1`` (stick-breaking onto the simplex, transforms.py) maps
    each vector of the last dim as a whole: ``forward_shape(u.shape)`` may differ from ``u.shape``, and
    log |det dx/du| and the cotangent of its VJP have one number per vector (shape ``u.shape[:-1]``).
    TransformedDistribution also needs ``inverse_vjp(u, x, grad_u)`` = ``grad_u`` du/dx (elementwise,
    ``grad_u / (dx/du)``) and, for a transform with arguments (``param_names``, AffineTransform's loc and scale),
    their VJPs (transforms.py).

    The backward methods also get ``x = forward(u)``, already computed: each derivative here is written in terms
    of x, so needs no further exp or log (one exception, greater_than with a nonzero bound: see ExpTransform.vjp).
    A VJP may return the cotangent itself (where the derivative is 1): never modify its result in place.
    tests/test_contracts.py runs every transform ``biject_to`` returns through this contract. A complete example,
    ``x = a + b u`` from R onto R:

    >>> from minippl.backend import array_module
    >>> class Affine(Transform):
    ...     def __init__(self, a, b):
    ...         super().__init__(real)
    ...         self.a, self.b = float(a), float(b)
    ...
    ...     def forward(self, u):
    ...         return self.a + self.b * u
    ...
    ...     def inverse(self, x):
    ...         return (x - self.a) / self.b
    ...
    ...     def vjp(self, u, x, grad_x):  # dx/du = b
    ...         return grad_x * self.b
    ...
    ...     def log_abs_det_jacobian(self, u, x):  # log |b|, the same for every element
    ...         return array_module(u).full_like(u, math.log(abs(self.b)))
    ...
    ...     def log_abs_det_jacobian_vjp(self, u, x, grad):  # d/du log |b| = 0
    ...         return array_module(u).zeros_like(u)
    >>> t, u = Affine(1.0, 3.0), np.array([-1.0, 0.5])
    >>> x = t(u)
    >>> x, t.inverse(x), t.vjp(u, x, np.ones(2))
    (array([-2. ,  2.5]), array([-1. ,  0.5]), array([3., 3.]))
    >>> h = 1e-6
    >>> slope = (t(u + h) - t(u - h)) / (2 * h)  # dx/du by a central difference
    >>> bool(np.allclose(t.log_abs_det_jacobian(u, x), np.log(np.abs(slope))))
    True
    """

    event_dim = 0
    param_names = ()  # arguments a gradient can reach (AffineTransform's loc, scale)

    def __init__(self, codomain):
        self.codomain = codomain

    def __call__(self, u):
        return self.forward(u)

    def forward_shape(self, shape):
        return tuple(shape)

    def inverse_shape(self, shape):
        return tuple(shape)

    def inverse_vjp(self, u, x, grad_u):  # du/dx = 1 / (dx/du), elementwise; dx/du is vjp with a cotangent of ones
        return grad_u / self.vjp(u, x, array_module(u).ones_like(u))

    def __repr__(self):
        return f"{type(self).__name__}(codomain={self.codomain!r})"


class IdentityTransform(Transform):
    """x = u. Returns its input object itself, never a copy: module weights live in
    the param store unconstrained, and the module and the store must share them.

    >>> u = np.zeros(3)
    >>> biject_to(real)(u) is u
    True
    """

    def __init__(self):
        super().__init__(real)

    def forward(self, u):
        return u

    def inverse(self, x):
        return x

    def vjp(self, u, x, grad_x):
        return grad_x  # dx/du = 1, so grad_u = grad_x (the same object: do not modify it in place)

    def log_abs_det_jacobian(self, u, x):
        return array_module(u).zeros_like(u)

    def log_abs_det_jacobian_vjp(self, u, x, grad):
        return array_module(u).zeros_like(u)  # d/du log|1| = 0


class ExpTransform(Transform):
    """x = lower_bound + exp(u): Pyro's ExpTransform (biject_to(positive)) with lower_bound = 0; a nonzero bound
    adds the shift Pyro composes for greater_than.

    >>> t, u = ExpTransform(), np.array([0.0, 1.0])
    >>> x = t(u)
    >>> x, t.inverse(x)
    (array([1.        , 2.71828183]), array([0., 1.]))
    >>> t.vjp(u, x, np.ones(2)), t.log_abs_det_jacobian(u, x)  # dx/du = exp(u) = x; log |dx/du| = u
    (array([1.        , 2.71828183]), array([0., 1.]))
    """

    def __init__(self, lower_bound=0.0, codomain=None):
        default = positive if float(lower_bound) == 0.0 else greater_than(lower_bound)
        super().__init__(codomain if codomain is not None else default)
        self.lower_bound = float(lower_bound)

    def forward(self, u):
        xp = array_module(u)
        x = xp.exp(u) if self.lower_bound == 0.0 else xp.exp(u) + self.lower_bound
        # exp underflows to 0 below u ~ -745 (float64) or -103 (float32), and a + exp(u) rounds to a sooner; either
        # leaves the support (a scale of 0 makes log_prob -inf), so x is floored one representable step above a.
        dtype = _float_dtype_of(x)
        floor = np.finfo(dtype).tiny if self.lower_bound == 0.0 else np.nextafter(
            dtype.type(self.lower_bound), dtype.type(np.inf))
        return xp.maximum(x, float(floor))

    def inverse(self, x):
        return array_module(x).log(x - self.lower_bound if self.lower_bound != 0.0 else x)

    def vjp(self, u, x, grad_x):
        # dx/du = exp(u) = x - lower_bound; with a bound, x - lower_bound cancels catastrophically once
        # exp(u) << |lower_bound|, so exp(u) is recomputed there
        return grad_x * (x if self.lower_bound == 0.0 else array_module(u).exp(u))

    def log_abs_det_jacobian(self, u, x):
        return array_module(u).array(u, copy=True)  # log |dx/du| = log exp(u) = u

    def log_abs_det_jacobian_vjp(self, u, x, grad):
        return grad  # d/du u = 1


class LessThanTransform(Transform):
    """x = upper_bound - exp(u), ExpTransform mirrored: Pyro's biject_to(less_than(upper_bound)) (ExpTransform,
    then AffineTransform(upper_bound, -1)).

    >>> t, u = LessThanTransform(1.0), np.array([0.0, math.log(2.0)])
    >>> x = t(u)
    >>> x, t.inverse(x), t.vjp(u, x, np.ones(2))  # dx/du = -exp(u); log |dx/du| = u
    (array([ 0., -1.]), array([0.        , 0.69314718]), array([-1., -2.]))
    """

    def __init__(self, upper_bound, codomain=None):
        super().__init__(codomain if codomain is not None else less_than(upper_bound))
        self.upper_bound = float(upper_bound)

    def forward(self, u):
        xp = array_module(u)
        x = self.upper_bound - xp.exp(u)
        # as in ExpTransform: once exp(u) is lost to rounding, stay one representable step inside
        dtype = _float_dtype_of(x)
        return xp.minimum(x, float(np.nextafter(dtype.type(self.upper_bound), dtype.type(-np.inf))))

    def inverse(self, x):
        return array_module(x).log(self.upper_bound - x)

    def vjp(self, u, x, grad_x):
        # dx/du = -exp(u), recomputed: upper_bound - x cancels once exp(u) << |upper_bound|
        return -grad_x * array_module(u).exp(u)

    def log_abs_det_jacobian(self, u, x):
        return array_module(u).array(u, copy=True)  # log |dx/du| = log exp(u) = u

    def log_abs_det_jacobian_vjp(self, u, x, grad):
        return grad  # d/du u = 1


def _bound(b):
    """A scalar bound as a Python float (a float32 u stays float32); an array bound (elementwise) as it is."""
    return b if getattr(b, "ndim", 0) else float(b)


class SigmoidAffineTransform(Transform):
    """x = lo + (hi - lo) * sigmoid(u): Pyro's biject_to(interval(lo, hi)), SigmoidTransform then AffineTransform.
    The bounds may be arrays (a Uniform's elementwise support), broadcasting with u as in every method below.

    >>> t, u = SigmoidAffineTransform(-1.0, 3.0), np.array([0.0, math.log(3.0)])
    >>> x = t(u)  # s = sigmoid(u) = 1/2, 3/4
    >>> x, t.inverse(x)
    (array([1., 2.]), array([0.        , 1.09861229]))
    >>> t.vjp(u, x, np.ones(2))  # dx/du = (hi - lo) s (1 - s)
    array([1.  , 0.75])
    """

    def __init__(self, lower_bound, upper_bound, codomain=None):
        super().__init__(codomain if codomain is not None else interval(lower_bound, upper_bound))
        self.lower_bound, self.upper_bound = _bound(lower_bound), _bound(upper_bound)
        self.width = self.upper_bound - self.lower_bound
        w = self.width  # log(hi - lo), once: a float, or an array on the bounds' device
        self._log_width = math.log(w) if isinstance(w, float) else array_module(w).log(w)

    def forward(self, u):
        x = self.lower_bound + self.width * sigmoid(u)  # the overflow-free sigmoid, see backend.sigmoid
        # rounding can put lo + width * 1.0 one ulp above hi; keep x inside the support
        return array_module(u).clip(x, self.lower_bound, self.upper_bound)

    def inverse(self, x):
        xp = array_module(x)
        s = (xp.asarray(x) - self.lower_bound) / self.width
        # logit(s) = log s - log(1-s); clamp as torch does, so the bounds map to finite u
        info = np.finfo(_float_dtype_of(s))
        s = xp.clip(s, float(info.tiny), 1.0 - float(info.eps))
        return xp.log(s) - xp.log1p(-s)

    def vjp(self, u, x, grad_x):  # dx/du = (hi-lo) s (1-s), s = (x-lo)/(hi-lo)  =>  dx/du = (x-lo)(hi-x)/(hi-lo)
        return grad_x * ((x - self.lower_bound) * (self.upper_bound - x) / self.width)

    def log_abs_det_jacobian(self, u, x):
        # log dx/du = log(hi-lo) + log s + log(1-s) = log(hi-lo) - softplus(-u) - softplus(u)
        #           = log(hi-lo) - |u| - 2 log1p(exp(-|u|))            (stable for any u)
        xp = array_module(u)
        abs_u = xp.abs(u)
        return self._log_width - abs_u - 2.0 * xp.log1p(xp.exp(-abs_u))

    def log_abs_det_jacobian_vjp(self, u, x, grad):
        # d/du [log s + log(1-s)] = (1-s) - s = 1 - 2s = (hi + lo - 2x)/(hi - lo)
        return grad * ((self.upper_bound + self.lower_bound - 2.0 * x) / self.width)


_BIJECTIONS = {}  # constraint class -> factory(constraint), added by register_bijection


def register_bijection(constraint_class):
    """Decorate ``factory(constraint) -> Transform`` as biject_to's answer for ``constraint_class`` (torch's
    ``biject_to.register``); transforms.py registers softplus_positive and simplex."""
    def decorate(factory):
        _BIJECTIONS[constraint_class] = factory
        return factory
    return decorate


def biject_to(constraint):
    """The Transform that maps R onto ``constraint`` (Pyro's ``biject_to``).

    >>> biject_to(positive)
    ExpTransform(codomain=constraints.positive)
    >>> t = biject_to(interval(0.0, 2.0))
    >>> t.codomain == interval(0.0, 2.0), t(np.array([0.0]))  # the middle of [0, 2]
    (True, array([1.]))
    >>> from minippl.distributions import constraints
    >>> biject_to(constraints.boolean)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    NotImplementedError: no bijection onto constraints.boolean: a discrete set cannot be reached from R; ...
    """
    if not isinstance(constraint, Constraint):
        raise TypeError(f"biject_to expects a Constraint, got {type(constraint).__name__}")
    registered = next((_BIJECTIONS[c] for c in type(constraint).__mro__ if c in _BIJECTIONS), None)
    if registered is not None:
        return registered(constraint)
    if isinstance(constraint, _Real):
        return IdentityTransform()
    if isinstance(constraint, _GreaterThan):  # positive too: greater_than(0.0), mapped by exp
        return ExpTransform(constraint.lower_bound, codomain=constraint)
    if isinstance(constraint, _LessThan):
        return LessThanTransform(constraint.upper_bound, codomain=constraint)
    if isinstance(constraint, _Interval):
        return SigmoidAffineTransform(constraint.lower_bound, constraint.upper_bound, codomain=constraint)
    if isinstance(constraint, _PositiveDefinite):
        raise NotImplementedError("no bijection onto constraints.positive_definite in minippl: make the param "
                                  "a lower_cholesky factor L and use L @ L.T")
    raise NotImplementedError(f"no bijection onto {constraint!r}: a discrete set cannot be "
                              "reached from R; make it a sample site, not a param")
