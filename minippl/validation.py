"""Validation: refuse a wrong model or input at once, naming the site, the shapes and the fix.

Teaches: checking at almost no cost: O(1) tests of shapes, dtypes and devices, and one or two
reductions per array (``min``/``max`` propagate NaN), the elementwise detail only on the error
path. A leaf: it builds on backend.py only (a constraint is anything with ``check`` and ``spec``; intervals
and lower bounds are read by their spec), and the distributions, primitives.py, the ELBO and SVI import it.
"""
import contextlib

import numpy as np

from . import backend

# ------------------------------------------------------------------ the switch (Pyro's names)
_ENABLED = True
_MIXED_PRECISION_ALLOWED = False  # check_gradients runs float32 models in float64 on purpose
_READ_DEVICE_VALUES = True  # False between SVI's sync points: reading a GPU array waits for the GPU


def enable_validation(is_validate=True):
    """Turn validation on (the default) or off, for speed once a model is known to be right. Off skips the
    checks that read array values or dtypes: distribution arguments, observed values, NumPy/CuPy and
    float32/float64 mixing. Structural checks (site names, plates, log-prob shapes, model/guide match) and SVI's
    NaN guard always run."""
    global _ENABLED
    _ENABLED = bool(is_validate)


def is_validation_enabled():
    return _ENABLED


class validation_enabled:
    """Pyro's context manager: ``with minippl.validation_enabled(False): ...``; its truth value is the current
    setting, so ``if minippl.validation_enabled():`` asks."""

    def __init__(self, is_validate=True):
        self.is_validate = bool(is_validate)

    def __bool__(self):
        return _ENABLED

    def __enter__(self):
        self._previous = _ENABLED
        enable_validation(self.is_validate)
        return self

    def __exit__(self, *exc):
        enable_validation(self._previous)


@contextlib.contextmanager
def mixed_precision_allowed():
    """Inside, float32 and float64 may meet at a site (check_gradients casts params to float64)."""
    global _MIXED_PRECISION_ALLOWED
    previous, _MIXED_PRECISION_ALLOWED = _MIXED_PRECISION_ALLOWED, True
    try:
        yield
    finally:
        _MIXED_PRECISION_ALLOWED = previous


@contextlib.contextmanager
def device_values_read(allowed):
    """Whether the checks that read values (arguments, observations) read GPU arrays inside: reading a number off
    the GPU waits for everything queued there, so SVI(sync_every=k) runs those checks on its first step and then
    every k steps only; NumPy arrays are always checked."""
    global _READ_DEVICE_VALUES
    previous, _READ_DEVICE_VALUES = _READ_DEVICE_VALUES, bool(allowed)
    try:
        yield
    finally:
        _READ_DEVICE_VALUES = previous


# ------------------------------------------------------------------ the errors
class ValidationError(ValueError):
    """A refused model or input. The ELBO adds which program (model or guide) ran the site,
    SVI the step number; ``str()`` puts them in front of the message."""

    def __init__(self, message, site=None, side=None):
        super().__init__(message)
        self.message, self.site, self.side, self.step = message, site, side, None

    def __str__(self):
        text = self.message
        if self.site is not None:
            text = f"{self.side or 'sample'} site '{self.site}': {text}"
        elif self.side is not None:
            text = f"in the {self.side}: {text}"
        if self.step is not None:
            text = f"step {self.step}: {text} No parameter was changed."
        return text


@contextlib.contextmanager
def errors_say(**where):
    """Add where it happened (``side="guide"``, ``step=3``) to a ValidationError raised inside,
    unless an inner ``errors_say`` already said it: the ELBO and SVI label their errors this way."""
    try:
        yield
    except ValidationError as error:
        for key, value in where.items():
            if getattr(error, key) is None:
                setattr(error, key, value)
        raise


class NonFiniteError(ValidationError, FloatingPointError):
    """A NaN where a number was needed: both a ValueError (as Pyro's validation raises)
    and the FloatingPointError of SVI's NaN guard, so either ``except`` catches it."""


class ValidationTypeError(ValidationError, TypeError):
    """Arrays of different kinds meeting at a site (NumPy and CuPy, float32 and float64)."""


# ------------------------------------------------------------------ a distribution's arguments
def check_types(dist_name, **args):
    """Each argument must be a Python number or an array (a list would have no shape)."""
    for name, arg in args.items():
        if not (isinstance(arg, (int, float)) or hasattr(arg, "shape")):
            raise TypeError(
                f"{dist_name}: {name} must be a float or an array, got {type(arg).__name__}; "
                f"wrap it with numpy.asarray(...)"
            )


def check_args(dist_name, **args):
    """Batch shape of a distribution's arguments, with clear errors for wrong ones."""
    check_types(dist_name, **args)
    try:
        return backend.broadcast_shapes(*[backend.shape_of(a) for a in args.values()])
    except ValueError:
        shapes = ", ".join(f"{n} {backend.shape_of(a)}" for n, a in args.items())
        raise ValueError(
            f"{dist_name}: argument shapes {shapes} do not broadcast together; "
            f"reshape them so each dim is equal, 1, or missing on the left"
        ) from None


# ------------------------------------------------------------------ cheap value checks
def violates(constraint, x):
    """True if some element of ``x`` is outside ``constraint``: at most two reductions.

    ``min`` and ``max`` return NaN when any element is NaN, so ``not (lo > 0)`` also
    catches NaN; no boolean temporary the size of ``x`` is made.
    """
    if isinstance(x, (bool, int, float)):
        return not bool(constraint.check(x))
    if x.size == 0 or not (_READ_DEVICE_VALUES or not backend.on_device(x)):
        return False  # empty, or a GPU array between sync points (device_values_read)
    spec = getattr(constraint, "spec", "")
    if spec == "real":
        lo = x.min()
        return bool(lo != lo)  # NaN is the only real-valued failure (inf counts as real, as in torch)
    if spec.startswith("interval("):  # [lo, hi], closed
        return not bool((x.min() >= constraint.lower_bound) & (x.max() <= constraint.upper_bound))
    if spec == "positive" or spec.startswith("greater_than("):  # (lo, inf)
        return not bool(x.min() > constraint.lower_bound)
    return not bool(backend.array_module(x).all(constraint.check(x)))


def describe_bad(x, bad):
    """Who fails a check: ``(text, has_nan)``, text like '2 of 3 entries (first -2.0 at
    index (1,); shape (3,))', or just '-1.0' for a scalar. ``bad`` marks the offenders;
    only the error path calls this, so it may scan the array."""
    xp = backend.array_module(x)
    x, bad = xp.asarray(x), xp.asarray(bad)
    if bad.ndim < x.ndim:  # one answer per event (a simplex, a matrix): report whole events
        has_nan = bool(xp.isnan(x).any()) if x.dtype.kind == "f" else False
        where = tuple(int(i) for i in xp.argwhere(bad)[0]) if bad.ndim else ()
        return (f"{int(bad.sum())} of {bad.size} events (first {backend.to_host(x[where]).tolist()} at "
                f"index {where}; shape {x.shape})"), has_nan
    has_nan = bool(xp.isnan(x[bad]).any()) if x.dtype.kind == "f" else False
    if x.ndim == 0:
        return repr(float(x)), has_nan
    where = tuple(int(i) for i in xp.argwhere(bad)[0])
    return (f"{int(bad.sum())} of {x.size} entries (first {float(x[where])!r} at index {where}; "
            f"shape {x.shape})"), has_nan


_ARG_RULES = {  # constraint spec -> (what the argument must be, how to get there)
    "real": ("a number, not NaN",
             "NaN comes from NaN in the data or from an upstream computation that overflowed "
             "(check the inputs with np.isnan(x).any(), lower the learning rate)"),
    "positive": ("> 0",
                 "make it positive by construction: exp(...) or softplus(...) of a network output, "
                 "or a param declared with constraint=constraints.positive"),
    "interval(0.0, 1.0)": ("in [0, 1]",
                           "squash scores with a sigmoid, or pass unnormalised scores as logits= instead of probs="),
}


def check_arg(dist_name, arg_name, value, constraint):
    """Raise ValidationError if argument ``value`` of ``dist_name`` leaves ``constraint``."""
    if not violates(constraint, value):
        return
    summary, has_nan = describe_bad(value, ~constraint.check(value))
    rule, fix = _ARG_RULES.get(constraint.spec, (f"inside {constraint!r}", f"keep {arg_name} inside it"))
    if has_nan and constraint.spec != "real":
        fix = f"{fix}; NaN entries come from NaN data or an overflowed computation upstream"
    found = f"got {summary}" if getattr(value, "ndim", 0) == 0 else f"{summary} are not"
    raise_site_error(f"{dist_name}: {arg_name} must be {rule}, but {found}. Fix: {fix}.",
                     NonFiniteError if has_nan else ValidationError)


def check_less_than(dist_name, low_name, low, high_name, high):
    """``low < high`` elementwise (Uniform's bounds)."""
    width = high - low
    if not (_READ_DEVICE_VALUES or not backend.on_device(width)):
        return
    positive = backend.array_module(width).asarray(width) > 0
    if bool(positive.all()):
        return
    summary, has_nan = describe_bad(width, ~positive)
    found = f"= {summary}" if getattr(width, "ndim", 0) == 0 else f"<= 0 at {summary}"
    raise_site_error(f"{dist_name}: needs {low_name} < {high_name}, but {high_name} - {low_name} {found}. "
                     f"Fix: swap the bounds, or widen them.",
                     NonFiniteError if has_nan else ValidationError)


def check_devices(where, named):
    """All arrays in ``named`` (name -> object) on one device: all NumPy or all CuPy."""
    on_gpu = {name: backend.on_device(a) for name, a in named.items() if hasattr(a, "shape")}
    if len(set(on_gpu.values())) > 1:
        gpu = [n for n, g in on_gpu.items() if g]
        cpu = [n for n, g in on_gpu.items() if not g]
        raise_site_error(
            f"{where}: {', '.join(gpu)} on the GPU (CuPy) but {', '.join(cpu)} on the CPU (NumPy). Fix: "
            f"put everything on one device once, before training (cupy.asarray(data), and build constants "
            f"with the data's array module, minippl.backend.array_module(x)).", ValidationTypeError)


def all_finite(array):
    """True if every element is finite, in one BLAS pass: a NaN or inf anywhere makes
    <x, x> non-finite. A non-finite <x, x> can also be an overflow, so that case is
    confirmed element by element."""
    xp = backend.array_module(array)
    flat = array.reshape(-1)
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow here is expected, not news
        quick = bool(xp.isfinite(xp.dot(flat, flat)))
    return quick or bool(xp.isfinite(array).all())


def all_finite_many(arrays):
    """``all_finite`` for every array (a VAE's ten gradients); one fused kernel call where the
    backend has one (minippl/kernels/registry.py), each array read once."""
    return not arrays or _all_finite_list(list(arrays))


@backend.fusable("all_finite_many")
def _all_finite_list(arrays):
    return all(all_finite(a) for a in arrays)


# ------------------------------------------------------------------ sample sites
def check_sample_site(msg, value):
    """The checks of one sample statement, after the handlers gave it a value.

    Devices and float widths of value and arguments must agree, the value's shape must
    fit the distribution's, and a value that was not drawn here (observed, conditioned,
    replayed from the guide) must lie in the distribution's support.
    """
    fn, name = msg["fn"], msg["name"]
    args = fn.arg_arrays()
    what = "observed value" if msg["is_observed"] else "substituted value" if msg.get("substituted") else "value"
    with site_named(name):
        if not (isinstance(value, (bool, int, float)) or hasattr(value, "shape")):
            raise_site_error(f"{what} must be an array or a Python number, got {type(value).__name__}. Fix: "
                             f"wrap it with numpy.asarray(...).", ValidationTypeError)
        check_devices(f"{type(_base(fn)).__name__} at this site", {**args, what: value})
        if not _MIXED_PRECISION_ALLOWED:
            _check_precision(fn, args, what, value)
        _check_value_shape(fn, what, value)
        if "noise" not in msg:  # a reparameterised draw is in the support by construction
            _base(fn)._validate_sample(value, what=what, masked=msg["mask"] is not None or _is_masked(fn))


def _base(fn):
    return list(_bases(fn))[-1]


def _is_masked(fn):
    while hasattr(fn, "base_dist"):
        if hasattr(fn, "_mask"):
            return True
        fn = fn.base_dist
    return False


def _check_precision(fn, args, what, value):
    floats = {n: a.dtype for n, a in {**args, what: value}.items()
              if getattr(a, "dtype", None) is not None and a.dtype.kind == "f"}
    if len(set(floats.values())) <= 1:
        return
    widest = max(floats.values(), key=lambda d: d.itemsize)
    wide = ", ".join(n for n, d in floats.items() if d == widest)
    narrow = ", ".join(f"{n} is {d}" for n, d in floats.items() if d != widest)
    raise_site_error(
        f"{wide} {'is' if ',' not in wide else 'are'} {widest} but {narrow}, so this site would compute in "
        f"{widest}. Fix: give data, constants and params one dtype (x.astype(np.float32), "
        f"np.zeros(shape, dtype=x.dtype), Python floats for scalars).", ValidationTypeError)


def _check_value_shape(fn, what, value):
    shape, event_shape = backend.shape_of(value), tuple(fn.event_shape)
    batch = shape[:len(shape) - len(event_shape)]
    fits = len(shape) >= len(event_shape) and shape[len(shape) - len(event_shape):] == event_shape
    if fits:
        try:
            backend.broadcast_shapes(batch, tuple(fn.batch_shape))
        except ValueError:
            fits = False
    if not fits:
        raise_site_error(
            f"{what} of shape {shape} does not fit {type(_base(fn)).__name__}'s batch_shape "
            f"{tuple(fn.batch_shape)} + event_shape {event_shape}. Fix: the value must end with the event "
            f"shape and broadcast with the batch shape: reshape the data, or change the plates or .to_event(n).")


def check_support(dist, value, constraint, what, masked=False, hint=""):
    """Raise if ``value`` (observed or replayed) leaves ``constraint``; used by _validate_sample."""
    if violates(constraint, value):
        report_outside(dist, value, ~constraint.check(value), repr(constraint), what, masked, hint)


def report_outside(dist, value, bad, support, what, masked=False, hint=""):
    """The error for a value outside ``support`` (a description), ``bad`` marking the offenders."""
    summary, has_nan = describe_bad(value, bad)
    where = f" at {summary}" if getattr(value, "ndim", 0) else f" ({summary})"
    masked_hint = (" Masked-out entries need a value inside the support too (fill missing data, e.g. "
                   "with 0, before masking).") if masked else ""
    if has_nan:
        raise_site_error(
            f"{what} contains NaN{where}, so the log-prob of {type(dist).__name__} would be NaN. Fix: drop "
            f"or impute the missing entries, or fill them and exclude them with minippl.handlers.mask."
            f"{masked_hint}", NonFiniteError)
    if what == "value" and not hint:
        hint = (" Fix: the guide proposes values the model cannot score; give the guide's site a "
                "distribution with the model's support.")
    raise_site_error(f"{what} is outside the support {support} of {type(dist).__name__}{where}, "
                     f"so its log-prob would be -inf.{hint}{masked_hint}")


# ------------------------------------------------------------------ naming the site
# A distribution is built before ``sample(name, dist)`` runs, so its argument error cannot name
# the site. Inside a running model the error waits: the distribution keeps it (and refuses to
# be used), and the sample statement that takes it raises it with the site's name.
_CURRENT_SITE = []  # the sample statement being checked, innermost last


def model_is_running():
    """True while effect handlers are active; runtime.py (a later chapter) plugs in its stack."""
    return False


@contextlib.contextmanager
def site_named(name):
    _CURRENT_SITE.append(name)
    try:
        yield
    finally:
        _CURRENT_SITE.pop()


def raise_site_error(message, kind=ValidationError):
    """Raise ``kind`` naming the sample site being checked (if one is)."""
    raise kind(message, site=_CURRENT_SITE[-1] if _CURRENT_SITE else None)


def defer_until_sampled(dist, error):
    """Keep ``error`` on ``dist`` for the sample statement that takes it; until then, using it raises."""
    def refuse(*args, **kwargs):
        raise error

    object.__setattr__(dist, "_invalid", error)
    for method in ("sample", "rsample", "rsample_with_noise", "log_prob", "log_prob_vjp"):
        object.__setattr__(dist, method, refuse)


def raise_deferred(dist, name, observed=None):
    """At ``sample(name, dist)``: raise the argument error ``dist`` (or its base) kept, naming the site. Observed
    data outside the support is said first: the likelier cause (raw 0-255 pixels overflow an encoder into NaN)."""
    error = next((d.__dict__["_invalid"] for d in _bases(dist) if "_invalid" in d.__dict__), None)
    if error is None:
        return
    error.site = name
    if hasattr(observed, "shape"):
        with site_named(name):
            try:
                _base(dist)._validate_sample(observed, what="observed value")  # raises if the data is outside
            except ValidationError:
                raise
            except Exception:  # data too malformed to check: the argument error stands
                pass
    raise error


def _bases(dist):  # dist, its base_dist, that one's, ...
    while dist is not None:
        yield dist
        dist = getattr(dist, "base_dist", None)
