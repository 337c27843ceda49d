"""Constraints (where a value may live) and the bijections that reach them.

Teaches: an optimiser moves parameters over all of R, so a constrained parameter
(a positive scale, a probability) is stored unconstrained and mapped into its
support by ``biject_to(constraint)``; the chain rule needs that map's VJP, and
autoguides need its log |Jacobian| and that term's VJP too. Pyro's names throughout.
"""
import math
import re

import numpy as np

from ..backend import array_module, sigmoid


class Constraint:
    """A region of the reals. ``check(value)`` says, element by element, who is inside."""

    event_dim = 0  # every constraint here is elementwise

    @property
    def spec(self):
        """A short string that names the constraint; ``from_spec`` parses it back."""
        raise NotImplementedError

    def check(self, value):
        raise NotImplementedError

    def transform(self):
        """The bijection from R onto this constraint: ``biject_to(self)``."""
        return biject_to(self)

    # Two constraints are equal when they describe the same set (a loaded store
    # gets new objects, and ``from_spec(c.spec) == c`` must hold).
    def __eq__(self, other):
        return isinstance(other, Constraint) and self.spec == other.spec

    def __hash__(self):
        return hash(self.spec)

    def __repr__(self):
        return f"constraints.{self.spec}"


class _Real(Constraint):
    spec = "real"

    def check(self, value):
        x = array_module(value).asarray(value)
        return x == x  # False only for NaN (torch counts +-inf as real, so do we)


class _Boolean(Constraint):
    spec = "boolean"

    def check(self, value):
        x = array_module(value).asarray(value)
        return (x == 0) | (x == 1)


def _scalar_bound(value, what):
    """Bounds are Python floats: the spec string must be able to hold them exactly."""
    if getattr(value, "ndim", 0) != 0:
        raise TypeError(f"{what} must be a scalar, got shape {value.shape}; "
                        "minippl constraints take scalar bounds so they can be saved as text")
    bound = float(value)
    if not math.isfinite(bound):
        raise ValueError(f"{what} must be finite, got {bound}")
    return bound


class _GreaterThan(Constraint):
    def __init__(self, lower_bound):
        self.lower_bound = _scalar_bound(lower_bound, "greater_than lower_bound")

    @property
    def spec(self):
        return f"greater_than({self.lower_bound!r})"

    def check(self, value):
        return array_module(value).asarray(value) > self.lower_bound


class _Positive(_GreaterThan):
    """greater_than(0.0) under its own name, as in torch; Pyro maps it with exp."""

    spec = "positive"

    def __init__(self):
        super().__init__(0.0)


class _SoftplusPositive(_GreaterThan):
    """positive, reached by softplus rather than exp (Pyro's ``softplus_positive``): the map
    grows linearly, so a step of the optimiser moves a large scale by about as much as a small one."""

    spec = "softplus_positive"

    def __init__(self):
        super().__init__(0.0)


class _GreaterThanEq(_GreaterThan):
    """[lower_bound, inf); ``nonnegative`` is greater_than_eq(0.0) under its own name, as in torch."""

    @property
    def spec(self):
        return "nonnegative" if type(self) is _Nonnegative else f"greater_than_eq({self.lower_bound!r})"

    def check(self, value):
        return array_module(value).asarray(value) >= self.lower_bound


class _Nonnegative(_GreaterThanEq):
    def __init__(self):
        super().__init__(0.0)


class _Integer(Constraint):
    """Whole numbers (``nonnegative_integer``: 0, 1, 2, ...); checks only, no transform reaches them."""

    spec = "integer"
    lower_bound = None

    def check(self, value):
        x = array_module(value).asarray(value)
        return (x == array_module(x).floor(x)) & (x >= (-np.inf if self.lower_bound is None else self.lower_bound))


class _NonnegativeInteger(_Integer):
    spec = "nonnegative_integer"
    lower_bound = 0


class _Simplex(Constraint):
    """Vectors of nonnegative entries summing to 1 along the last dim (one check per vector:
    ``event_dim = 1``). Reached from R^(K-1) by stick-breaking (transforms.py)."""

    spec = "simplex"
    event_dim = 1

    def check(self, value):
        xp = array_module(value)
        x = xp.asarray(value)
        return xp.all(x >= 0, axis=-1) & (xp.abs(x.sum(-1) - 1) < 1e-6)  # torch's tolerance


class _LowerCholesky(Constraint):
    """Lower-triangular square matrices with a positive diagonal, a Cholesky factor (one check per
    matrix: ``event_dim = 2``). Reached from square matrices by LowerCholeskyTransform (transforms.py)."""

    spec = "lower_cholesky"
    event_dim = 2

    def check(self, value):
        xp = array_module(value)
        x = xp.asarray(value)
        lower = xp.all((xp.tril(x) == x).reshape(x.shape[:-2] + (-1,)), axis=-1)  # NaN fails too
        return lower & xp.all(xp.diagonal(x, axis1=-2, axis2=-1) > 0, axis=-1)


class _Interval(Constraint):
    """The closed interval [lower_bound, upper_bound] (closed, as in torch)."""

    def __init__(self, lower_bound, upper_bound):
        self.lower_bound = _scalar_bound(lower_bound, "interval lower_bound")
        self.upper_bound = _scalar_bound(upper_bound, "interval upper_bound")
        if not self.lower_bound < self.upper_bound:
            raise ValueError(f"interval({self.lower_bound}, {self.upper_bound}) is empty: "
                             "lower_bound must be below upper_bound")

    @property
    def spec(self):
        return f"interval({self.lower_bound!r}, {self.upper_bound!r})"

    def check(self, value):
        x = array_module(value).asarray(value)
        return (x >= self.lower_bound) & (x <= self.upper_bound)


class _LessThan(Constraint):
    """(-inf, upper_bound), Pyro's ``less_than``: reached by upper_bound - exp(u)."""

    def __init__(self, upper_bound):
        self.upper_bound = _scalar_bound(upper_bound, "less_than upper_bound")

    @property
    def spec(self):
        return f"less_than({self.upper_bound!r})"

    def check(self, value):
        return array_module(value).asarray(value) < self.upper_bound


class _PositiveDefinite(Constraint):
    """Symmetric matrices (torch's tolerance) with positive eigenvalues, one check per matrix
    (``event_dim = 2``). Check only: no bijection here; a param made positive definite is a
    ``lower_cholesky`` factor L, used as L @ L.T."""

    spec = "positive_definite"
    event_dim = 2

    def check(self, value):
        xp = array_module(value)
        x = xp.asarray(value)
        if x.ndim < 2 or x.shape[-1] != x.shape[-2] or x.shape[-1] == 0:
            return xp.zeros(x.shape[:-2], dtype=bool)
        flat = x.shape[:-2] + (-1,)
        ok = xp.all(xp.isfinite(x).reshape(flat), axis=-1)  # NaN / inf fail, without reaching eigvalsh
        ok &= xp.all(xp.isclose(x, xp.swapaxes(x, -1, -2), rtol=1e-5, atol=1e-6).reshape(flat), axis=-1)
        safe = xp.where(ok[..., None, None], x, xp.eye(x.shape[-1], dtype=x.dtype))
        return ok & (xp.linalg.eigvalsh(safe)[..., 0] > 0)


real = _Real()
positive = _Positive()
softplus_positive = _SoftplusPositive()
nonnegative = _Nonnegative()
boolean = _Boolean()
integer = _Integer()
nonnegative_integer = _NonnegativeInteger()
simplex = _Simplex()
lower_cholesky = _LowerCholesky()
positive_definite = _PositiveDefinite()
unit_interval = _Interval(0.0, 1.0)  # also the support of a Bernoulli that accepts grey pixels
interval = _Interval
greater_than = _GreaterThan
greater_than_eq = _GreaterThanEq
less_than = _LessThan

_SPEC_PATTERN = re.compile(r"^(interval|greater_than|greater_than_eq|less_than)\((.*)\)$")


def from_spec(spec):
    """Parse ``constraint.spec`` back into a Constraint (no eval: saved files are data)."""
    if not isinstance(spec, str):
        raise TypeError(f"a constraint spec is a string, got {type(spec).__name__}")
    named = {c.spec: c for c in (real, positive, softplus_positive, nonnegative, boolean, integer,
                                 nonnegative_integer, simplex, lower_cholesky, positive_definite)}
    named["unit_interval"] = unit_interval
    if spec.strip() in named:
        return named[spec.strip()]
    match = _SPEC_PATTERN.match(spec.strip())
    try:
        bounds = [float(b) for b in match.group(2).split(",")] if match else None
    except ValueError:
        bounds = None
    kind = match.group(1) if match else None
    if kind == "interval" and bounds is not None and len(bounds) == 2:
        return interval(*bounds)
    if kind in ("greater_than", "greater_than_eq", "less_than") and bounds is not None and len(bounds) == 1:
        return {"greater_than": greater_than, "greater_than_eq": greater_than_eq,
                "less_than": less_than}[kind](bounds[0])
    raise ValueError(f"unknown constraint spec {spec!r}; expected one of {sorted(named)}, "
                     "'interval(lo, hi)', 'greater_than(lo)', 'greater_than_eq(lo)' or 'less_than(hi)'")


# ------------------------------------------------------------------ transforms
def _float_dtype_of(x):
    dtype = getattr(x, "dtype", None)
    return dtype if dtype is not None and dtype.kind == "f" else np.dtype(np.float64)


class Transform:
    """An elementwise bijection from R onto ``codomain``, with its VJP and log |dx/du|.

    The contract. A transform maps an unconstrained ``u`` to ``x = forward(u)`` in
    ``codomain`` (the Constraint given to ``__init__``: ``biject_to(c).codomain == c``),
    element by element (``event_dim = 0``), and defines, each returning an array shaped
    like ``u``:

    * ``forward(u)``: x (``t(u)`` calls it); ``inverse(x)``: u, so ``inverse(forward(u)) == u``;
    * ``vjp(u, x, grad_x)``: ``grad_x * dx/du``, the gradient of the param store's
      unconstrained value from that of the constrained one;
    * ``log_abs_det_jacobian(u, x)``: ``log |dx/du|``, the change-of-variables term autoguides add;
    * ``log_abs_det_jacobian_vjp(u, x, grad)``: ``grad * d/du log |dx/du|``.

    A VJP may return the cotangent itself (where the derivative is 1): never modify its result in place.

    Beyond elementwise. A transform with ``event_dim = 1`` (stick-breaking onto the simplex,
    transforms.py) maps each vector of the last dim as a whole: ``forward_shape(u.shape)`` may
    differ from ``u.shape``, log |det dx/du| has one number per vector (shape ``u.shape[:-1]``),
    and so has the cotangent of ``log_abs_det_jacobian_vjp``. TransformedDistribution also
    needs the inverse's VJP, ``inverse_vjp(u, x, grad_u)`` = ``grad_u`` du/dx (here, for an
    elementwise map, ``grad_u / (dx/du)``), and, for a transform with arguments
    (``param_names``, AffineTransform's loc and scale), their VJPs (transforms.py).

    The backward methods are handed ``x = forward(u)`` as well, already computed by the
    forward pass: each derivative here can be written in terms of x and so needs no
    further exp or log (one exception, greater_than with a nonzero bound: see
    ExpTransform.vjp). tests/test_contracts.py runs every transform ``biject_to`` returns
    through this contract. A complete example, ``x = a + b u`` from R onto R:

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

    def inverse_vjp(self, u, x, grad_u):
        # u = inverse(x): du/dx = 1 / (dx/du), elementwise; dx/du is vjp with a cotangent of ones
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
        # dx/du = 1, so grad_u = grad_x (the same object: do not modify it in place)
        return grad_x

    def log_abs_det_jacobian(self, u, x):
        return array_module(u).zeros_like(u)

    def log_abs_det_jacobian_vjp(self, u, x, grad):
        # d/du log|1| = 0
        return array_module(u).zeros_like(u)


class ExpTransform(Transform):
    """x = lower_bound + exp(u). With lower_bound = 0 this is Pyro's ExpTransform
    (biject_to(positive)); a nonzero bound adds the shift Pyro composes for greater_than.

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
        x = xp.exp(u)
        if self.lower_bound != 0.0:
            x = x + self.lower_bound
        # exp underflows to 0 below u ~ -745 (float64) or -103 (float32), and a + exp(u)
        # rounds to a sooner; either would leave the support (a scale of 0 makes log_prob
        # -inf), so x is kept at least one representable step above the bound.
        dtype = _float_dtype_of(x)
        floor = np.finfo(dtype).tiny if self.lower_bound == 0.0 else np.nextafter(
            dtype.type(self.lower_bound), dtype.type(np.inf))
        return xp.maximum(x, float(floor))

    def inverse(self, x):
        return array_module(x).log(x - self.lower_bound if self.lower_bound != 0.0 else x)

    def vjp(self, u, x, grad_x):
        # dx/du = exp(u) = x - lower_bound. With a bound, x - lower_bound cancels
        # catastrophically once exp(u) << |lower_bound|, so exp(u) is recomputed there.
        exp_u = x if self.lower_bound == 0.0 else array_module(u).exp(u)
        return grad_x * exp_u

    def log_abs_det_jacobian(self, u, x):
        # log |dx/du| = log exp(u) = u
        return array_module(u).array(u, copy=True)

    def log_abs_det_jacobian_vjp(self, u, x, grad):
        # d/du u = 1
        return grad


class LessThanTransform(Transform):
    """x = upper_bound - exp(u): Pyro's biject_to(less_than(upper_bound)) (ExpTransform, then
    AffineTransform(upper_bound, -1)); ExpTransform mirrored.

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
        # log |dx/du| = log exp(u) = u
        return array_module(u).array(u, copy=True)

    def log_abs_det_jacobian_vjp(self, u, x, grad):
        # d/du u = 1
        return grad


class SigmoidAffineTransform(Transform):
    """x = lo + (hi - lo) * sigmoid(u): Pyro's biject_to(interval(lo, hi))
    (a SigmoidTransform followed by an AffineTransform).

    >>> t, u = SigmoidAffineTransform(-1.0, 3.0), np.array([0.0, math.log(3.0)])
    >>> x = t(u)  # s = sigmoid(u) = 1/2, 3/4
    >>> x, t.inverse(x)
    (array([1., 2.]), array([0.        , 1.09861229]))
    >>> t.vjp(u, x, np.ones(2))  # dx/du = (hi - lo) s (1 - s)
    array([1.  , 0.75])
    """

    def __init__(self, lower_bound, upper_bound, codomain=None):
        super().__init__(codomain if codomain is not None else interval(lower_bound, upper_bound))
        self.lower_bound, self.upper_bound = float(lower_bound), float(upper_bound)
        self.width = self.upper_bound - self.lower_bound

    def forward(self, u):
        xp = array_module(u)
        s = sigmoid(u)  # the overflow-free form, see backend.sigmoid
        x = self.lower_bound + self.width * s
        # rounding can put lo + width * 1.0 one ulp above hi; keep x inside the support
        return xp.clip(x, self.lower_bound, self.upper_bound)

    def inverse(self, x):
        xp = array_module(x)
        s = (xp.asarray(x) - self.lower_bound) / self.width
        # logit(s) = log s - log(1-s); clamp as torch does, so the bounds map to finite u
        info = np.finfo(_float_dtype_of(s))
        s = xp.clip(s, float(info.tiny), 1.0 - float(info.eps))
        return xp.log(s) - xp.log1p(-s)

    def vjp(self, u, x, grad_x):
        # dx/du = (hi-lo) s (1-s), s = (x-lo)/(hi-lo)  =>  dx/du = (x-lo)(hi-x)/(hi-lo)
        return grad_x * ((x - self.lower_bound) * (self.upper_bound - x) / self.width)

    def log_abs_det_jacobian(self, u, x):
        # log dx/du = log(hi-lo) + log s + log(1-s) = log(hi-lo) - softplus(-u) - softplus(u)
        #           = log(hi-lo) - |u| - 2 log1p(exp(-|u|))            (stable for any u)
        xp = array_module(u)
        abs_u = xp.abs(u)
        return math.log(self.width) - abs_u - 2.0 * xp.log1p(xp.exp(-abs_u))

    def log_abs_det_jacobian_vjp(self, u, x, grad):
        # d/du [log s + log(1-s)] = (1-s) - s = 1 - 2s = (hi + lo - 2x)/(hi - lo)
        return grad * ((self.upper_bound + self.lower_bound - 2.0 * x) / self.width)


_BIJECTIONS = {}  # constraint class -> factory(constraint), added by register_bijection


def register_bijection(constraint_class):
    """Decorate ``factory(constraint) -> Transform`` as biject_to's answer for ``constraint_class``
    (torch's ``biject_to.register``); transforms.py registers softplus_positive and simplex."""
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
    >>> biject_to(boolean)  # doctest: +ELLIPSIS
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
    if isinstance(constraint, _Positive):
        return ExpTransform(0.0, codomain=constraint)
    if isinstance(constraint, _GreaterThan):
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
