"""Constraints: where a value may live.

Teaches: a distribution's arguments and values live in regions of the reals (a positive scale, a probability in
[0, 1], a vector on the simplex); a Constraint names such a region and ``check(value)`` says, element by element,
who is inside. Validation checks arguments and observations against them, and constraint_registry.py (next) maps
R onto each one, so that an optimiser can move a constrained parameter freely. Pyro's (torch's) names throughout.
Builds on backend.py (the array module).
"""
import math
import re

from ..backend import array_module


class Constraint:
    """A region of the reals, named by ``spec``, with a ``check``."""

    event_dim = 0  # how many rightmost dims one check covers (0: elementwise)
    is_discrete = False  # True for sets of whole numbers: no bijection reaches them from R

    @property
    def spec(self):
        """A short string that names the constraint; ``from_spec`` parses it back."""
        raise NotImplementedError

    def check(self, value):
        raise NotImplementedError

    # equal when they describe the same set (a loaded store gets new objects; ``from_spec(c.spec) == c`` must hold)
    def __eq__(self, other):
        if getattr(other, "_arrays", False):  # an interval with array bounds has no spec: it compares itself
            return NotImplemented
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
    is_discrete = True

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
    """positive, reached by softplus rather than exp (Pyro's ``softplus_positive``): the map grows linearly, so
    an optimiser step moves a large scale by about as much as a small one."""

    spec = "softplus_positive"

    def __init__(self):
        super().__init__(0.0)


class _GreaterThanEq(_GreaterThan):
    """[lower_bound, inf); ``nonnegative`` is greater_than_eq(0.0) under its own name, as in torch."""

    @property
    def spec(self):
        return f"greater_than_eq({self.lower_bound!r})"

    def check(self, value):
        return array_module(value).asarray(value) >= self.lower_bound


class _Nonnegative(_GreaterThanEq):
    spec = "nonnegative"

    def __init__(self):
        super().__init__(0.0)


class _Integer(Constraint):
    """Whole numbers (``nonnegative_integer``: 0, 1, 2, ...); checks only, no transform reaches them."""

    spec = "integer"
    is_discrete = True
    lower_bound = None

    def check(self, value):
        xp = array_module(value)
        x = xp.asarray(value)
        whole = xp.isfinite(x) & (x == xp.floor(x))  # inf and NaN are no integers (torch: inf % 1 is NaN)
        return whole if self.lower_bound is None else whole & (x >= self.lower_bound)


class _NonnegativeInteger(_Integer):
    spec = "nonnegative_integer"
    lower_bound = 0


class _IntegerInterval(_Integer):
    """The integers lower_bound, ..., upper_bound (torch's ``integer_interval``): a Categorical's support."""

    def __init__(self, lower_bound, upper_bound):
        self.lower_bound, self.upper_bound = lower_bound, upper_bound

    @property
    def spec(self):
        return f"integer_interval({self.lower_bound}, {self.upper_bound})"

    def check(self, value):
        return super().check(value) & (array_module(value).asarray(value) <= self.upper_bound)


class _Simplex(Constraint):
    """Vectors of nonnegative entries summing to 1 along the last dim (one check per vector: ``event_dim = 1``),
    reached from R^(K-1) by stick-breaking (transforms.py)."""

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
    """The closed interval [lower_bound, upper_bound] (closed, as in torch).

    Bounds are floats, or arrays for elementwise bounds (torch's too: ``Uniform(lows, highs).support``, which
    biject_to maps into elementwise). Only scalar bounds have a ``spec``, so only they can be saved as a
    param's constraint; array bounds compare equal by identity or by array equality.
    """

    def __init__(self, lower_bound, upper_bound):
        self._arrays = getattr(lower_bound, "ndim", 0) != 0 or getattr(upper_bound, "ndim", 0) != 0
        if self._arrays:
            self.lower_bound, self.upper_bound = (b if getattr(b, "ndim", 0) else float(b)
                                                  for b in (lower_bound, upper_bound))
            xp = array_module(lower_bound, upper_bound)
            # not finite with low < high (NaN included): no interval, and no map into one
            bad = ~(xp.isfinite(lower_bound) & xp.isfinite(upper_bound) & (lower_bound < upper_bound))
            if bool(bad.any()):
                raise ValueError(f"{self!r} is empty or unbounded at {int(bad.sum())} of {bad.size} entries: "
                                 "each lower_bound must be finite and below its finite upper_bound")
            return
        self.lower_bound = _scalar_bound(lower_bound, "interval lower_bound")
        self.upper_bound = _scalar_bound(upper_bound, "interval upper_bound")
        if not self.lower_bound < self.upper_bound:
            raise ValueError(f"interval({self.lower_bound}, {self.upper_bound}) is empty: "
                             "lower_bound must be below upper_bound")

    @property
    def spec(self):
        if self._arrays:  # saving would have to write the arrays into the text: refused, not written wrong
            raise ValueError(f"{self!r} has array bounds, so it has no spec and cannot be saved as a param's "
                             "constraint; make the param unconstrained (AutoNormal's locs are) or give it scalar "
                             "bounds")
        return f"interval({self.lower_bound!r}, {self.upper_bound!r})"

    def __eq__(self, other):
        if not (self._arrays or getattr(other, "_arrays", False)):
            return super().__eq__(other)
        return isinstance(other, _Interval) and self._arrays and other._arrays and all(
            a is b or (getattr(a, "shape", ()) == getattr(b, "shape", ()) and bool(array_module(a, b).all(a == b)))
            for a, b in ((self.lower_bound, other.lower_bound), (self.upper_bound, other.upper_bound)))

    def __hash__(self):
        return hash("interval") if self._arrays else super().__hash__()

    def __repr__(self):
        if not self._arrays:
            return super().__repr__()
        shapes = [f"array of shape {b.shape}" if getattr(b, "ndim", 0) else repr(b)
                  for b in (self.lower_bound, self.upper_bound)]
        return f"constraints.interval({shapes[0]}, {shapes[1]})"

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
    """Symmetric matrices (torch's tolerance) with positive eigenvalues, one check per matrix (``event_dim = 2``).
    Check only, no bijection: a positive definite param is a ``lower_cholesky`` factor L, used as L @ L.T."""

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
integer_interval = _IntegerInterval

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
        bounds = [float(b) for b in match.group(2).split(",")] if match else []
    except ValueError:
        bounds = []
    if match and len(bounds) == (2 if match.group(1) == "interval" else 1):  # interval: two bounds, the rest: one
        return {"interval": interval, "greater_than": greater_than, "greater_than_eq": greater_than_eq,
                "less_than": less_than}[match.group(1)](*bounds)
    raise ValueError(f"unknown constraint spec {spec!r}; expected one of {sorted(named)}, "
                     "'interval(lo, hi)', 'greater_than(lo)', 'greater_than_eq(lo)' or 'less_than(hi)'")
