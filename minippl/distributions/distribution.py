"""Distributions, part 1: shapes, and the contract every distribution keeps.

Teaches: the three kinds of dimension (sample, batch, event), how ``expand``, ``to_event`` and ``mask`` reshape a
distribution without touching its numbers, and the contract that replaces autograd: each distribution writes the
derivatives (VJPs) of its own log-density and sampler, stated once in :class:`Distribution`'s docstring with a
complete example. Builds on backend.py, traced.py, validation.py and constraints.py; every distribution subclasses it.

Shapes. A draw of ``Normal(zeros((3, 2)), 1.).to_event(1)`` with ``sample_shape=(5,)`` has shape ``(5, 3, 2)``::

    sample_shape + batch_shape + event_shape  =  (5,) + (3,) + (2,)

* sample dims: independent draws you asked for;
* batch dims: independent, *not* identically distributed variables (one per loc), one ``log_prob`` value each;
* event dims: the dims of one variable; ``log_prob`` sums over them.
"""
import copy

from .. import backend, traced, validation
# re-exported so that a subclass imports its helpers from one place (they live in backend.py, validation.py)
from ..backend import batch_dims_of, broadcast_shapes, grad_like, promote, shape_of  # noqa: F401
from ..validation import check_args, check_types  # noqa: F401
from . import constraints


def _check_expand(dist, batch_shape):
    batch_shape = tuple(batch_shape)
    try:
        fits = broadcast_shapes(dist.batch_shape, batch_shape) == batch_shape
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(
            f"cannot expand {type(dist).__name__} with batch_shape {dist.batch_shape} to {batch_shape}: "
            f"each old dim must equal the new one or be 1 (dims may be added on the left)")
    return batch_shape


class Distribution:
    """The base class, with the contract every distribution keeps. A subclass defines:

    * ``arg_names``: the arguments gradients can flow to, e.g. ``("loc", "scale")``; ``arg_constraints``
      (name -> Constraint, checked when validating), ``support`` (where values live) and ``has_rsample``
      (True where a draw is a differentiable ``value = f(args, noise)``).
    * ``__init__``: stores each argument *exactly as given* (``self.loc = loc``: no copy, no ``asarray``; the
      tape matches gradients to arguments by identity), then calls
      ``super().__init__(batch_shape, event_shape)``, which raises a TypeError if a name of ``arg_names`` was
      not stored. ``__setattr__`` unwraps a traced argument (a param or a sample in a gradient run, traced.py)
      as it is stored: every method computes on plain arrays, :meth:`traced_args` gives the tape the traced
      values back, and ``arg_arrays()`` returns the very objects passed in (their plain arrays, if traced).
    * ``log_prob(value)``: one log-density per sample and batch element, shape
      ``batch_dims_of(value, event_dim) + batch_shape`` broadcast (``_batch_result``).
    * ``log_prob_vjp(value, g, wrt)``: for a cotangent ``g`` shaped like ``log_prob(value)``,
      ``{name: d <g, log_prob(value)> / d name}`` for each name in ``wrt`` ("value" and names of ``arg_names``;
      ``_check_wrt`` refuses others). Each gradient is shaped exactly like its object: a broadcast argument's
      gradient is summed back to the argument's shape, a Python float's is a 0-d array (``grad_like``), and none
      is ``g`` itself (callers may add into them in place). Where log p is infinite (off the support, or an edge
      where the density is 0 or unbounded) each is 0; where an edge's log p is finite (Gamma(1., rate) at 0),
      one-sided, maybe infinite (d/da (a - 1) log z at z = 0 is -inf).
    * where ``has_rsample``: ``rsample_with_noise(sample_shape, rng)`` returns ``(value, noise)``,
      ``value = f(args, noise)`` of shape ``self.shape(sample_shape)``, and ``rsample_vjp(noise, g, wrt)``
      returns ``{name: d <g, f(args, noise)> / d name}`` for argument names, shaped as above. ``sample`` and
      ``rsample`` use it; a distribution without one overrides ``sample`` instead.

    tests/test_contracts.py runs every distribution through it. A complete example, Exponential(rate):
    density ``rate exp(-rate x)``, drawn as ``x = eps / rate`` with ``eps = -log(1 - u) ~ Exponential(1)``:

    >>> import numpy as np
    >>> from minippl import backend
    >>> from minippl.distributions import constraints
    >>> from minippl.distributions.distribution import Distribution, check_args, grad_like, promote
    >>> class Exponential(Distribution):
    ...     arg_names = ("rate",)
    ...     arg_constraints = {"rate": constraints.positive}
    ...     support = constraints.positive
    ...     has_rsample = True
    ...
    ...     def __init__(self, rate, validate_args=None):
    ...         batch_shape = check_args("Exponential", rate=rate)
    ...         self.rate = rate  # as given
    ...         super().__init__(batch_shape, validate_args=validate_args)
    ...
    ...     def log_prob(self, value):
    ...         xp, _, (x, rate) = promote(value, self.rate)
    ...         return self._batch_result(xp.log(rate) - rate * x, value)  # log rate - rate x
    ...
    ...     def log_prob_vjp(self, value, g, wrt):
    ...         _, _, (x, rate, g) = promote(value, self.rate, g)
    ...         grads = {}
    ...         for name in self._check_wrt(wrt):
    ...             if name == "value":  # d/dx (log rate - rate x) = -rate
    ...                 grads["value"] = grad_like(-g * rate, value)
    ...             else:  # d/drate (log rate - rate x) = 1 / rate - x
    ...                 grads["rate"] = grad_like(g * (1 / rate - x), self.rate)
    ...         return grads
    ...
    ...     def rsample_with_noise(self, sample_shape=(), rng=None):
    ...         rng = backend.global_rng() if rng is None else rng
    ...         dtype = backend.float_dtype(self.rate)
    ...         u = backend.uniform(rng, self.shape(sample_shape), dtype, like=self._like())  # U[0, 1)
    ...         eps = -backend.array_module(u).log1p(-u)  # -log(1 - u), 1 - u in (0, 1]
    ...         return eps / self.rate, eps
    ...
    ...     def rsample_vjp(self, noise, g, wrt):
    ...         # d/drate (eps / rate) = -eps / rate^2; the only name wrt can hold is "rate"
    ...         return {name: grad_like(-g * noise / self.rate**2, self.rate)
    ...                 for name in self._check_wrt(wrt, with_value=False)}
    >>> rate = np.array([0.5, 2.0])
    >>> d = Exponential(rate)
    >>> d.arg_arrays()["rate"] is rate, d.sample((3,), np.random.default_rng(0)).shape
    (True, (3, 2))
    >>> d.log_prob(np.array(1.0))  # log 0.5 - 0.5, log 2 - 2
    array([-1.19314718, -1.30685282])
    >>> x, g, h = np.array([1.0, 3.0]), np.ones(2), 1e-6
    >>> d.log_prob_vjp(x, g, ["rate"])["rate"]  # 1 / rate - x
    array([ 1. , -2.5])
    >>> numeric = (Exponential(rate + h).log_prob(x) - Exponential(rate - h).log_prob(x)) / (2 * h)
    >>> bool(np.allclose(d.log_prob_vjp(x, g, ["rate"])["rate"], numeric))
    True

    Forgetting to store an argument is caught at construction:

    >>> class Forgetful(Exponential):
    ...     def __init__(self, rate):
    ...         Distribution.__init__(self, check_args("Forgetful", rate=rate))
    >>> Forgetful(1.0)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    TypeError: Forgetful: arg_names lists 'rate', but __init__ did not store it...
    """

    has_rsample = False  # the contract's class attributes, defaulting to a distribution without arguments
    has_enumerate_support = False  # True where enumerate_support() lists every value (as Pyro checks)
    arg_names = ()
    arg_constraints = {}
    support = constraints.real

    def __init__(self, batch_shape=(), event_shape=(), validate_args=None):
        self._batch_shape = tuple(batch_shape)
        self._event_shape = tuple(event_shape)
        self._check_stored_args()
        # as in torch: None follows minippl.enable_validation; checked once, here
        self._validate_args = validation.is_validation_enabled() if validate_args is None else bool(validate_args)
        if self._validate_args and self.arg_constraints:
            try:
                self._check_args()
            except validation.ValidationError as error:
                if not validation.model_is_running():
                    raise
                validation.defer_until_sampled(self, error)  # the sample statement names the site

    def __setattr__(self, name, value):
        # a traced argument is stored as its plain array, kept (keyed by that array's id) for traced_args()
        if type(value) is traced.Traced:
            self.__dict__.setdefault("_traced", {})[id(value.data)] = value
            value.held_by = type(self).__name__
            value = value.data
        object.__setattr__(self, name, value)

    def traced_args(self):
        """{name: traced value} for the arguments that arrived traced (the tape's links)."""
        held = self.__dict__.get("_traced")
        if not held:
            return {}
        found = self.__dict__.get("_traced_args")
        if found is None:  # arguments never change after __init__: look them up once
            found = {name: held[id(a)] for name, a in self.arg_arrays().items() if id(a) in held}
            object.__setattr__(self, "_traced_args", found)
        return found

    def _check_stored_args(self):
        """Raise a TypeError if a name of ``arg_names`` was not stored as a float or an array (whether
        it *is* what was passed only the caller can see: tests/test_contracts.py checks that)."""
        try:
            args = self.arg_arrays()
        except AttributeError:
            missing = next((name for name in self.arg_names if not hasattr(self, name)), "?")
            raise TypeError(
                f"{type(self).__name__}: arg_names lists {missing!r}, but __init__ did not store it; "
                f"assign self.{missing} = {missing} (the argument exactly as given) before calling "
                f"super().__init__(...)") from None
        validation.check_types(type(self).__name__, **args)  # a float or an array, as given

    def _check_args(self):
        """Raise a ValidationError naming the argument that leaves its constraint (NaN, scale <= 0...)."""
        args = self.arg_arrays()
        validation.check_devices(type(self).__name__, args)
        for name, constraint in self.arg_constraints.items():
            if name in args:
                validation.check_arg(type(self).__name__, name, args[name], constraint)

    def _validate_sample(self, value, what="value", masked=False):
        """Raise if ``value`` (observed, or replayed from a guide) is outside the support."""
        validation.check_support(self, value, self.support, what, masked)

    def _check_event_shape(self, value):
        """Raise unless ``value`` ends in ``event_shape`` (NumPy would broadcast a last dim of 1, silently)."""
        if shape_of(value)[len(shape_of(value)) - self.event_dim:] != self.event_shape:
            raise ValueError(f"{type(self).__name__}: a value ends in one event, of shape {self.event_shape}, "
                             f"got {shape_of(value)}; pass shape (...{''.join(f', {n}' for n in self.event_shape)})")

    batch_shape = property(lambda self: self._batch_shape)
    event_shape = property(lambda self: self._event_shape)
    event_dim = property(lambda self: len(self._event_shape))

    @property
    def mean(self):
        raise NotImplementedError(f"{type(self).__name__} has no closed-form mean")

    @property
    def variance(self):
        raise NotImplementedError(f"{type(self).__name__} has no closed-form variance")

    @property
    def stddev(self):
        return backend.array_module(self.variance).sqrt(self.variance)  # as torch: sqrt of the variance

    def shape(self, sample_shape=()):
        """Shape of a draw: ``sample_shape + batch_shape + event_shape``."""
        return tuple(sample_shape) + self.batch_shape + self.event_shape

    def arg_arrays(self):
        """{name: argument} for each name in ``arg_names``: the very objects passed in."""
        return {name: getattr(self, name) for name in self.arg_names}

    # ---------------------------------------------------------------- sampling
    def sample(self, sample_shape=(), rng=None):
        """A draw of shape ``self.shape(sample_shape)``; ``rng`` a numpy Generator."""
        return self.rsample_with_noise(sample_shape, rng)[0]

    def rsample(self, sample_shape=(), rng=None):
        """A reparameterised draw (same as ``sample`` here: NumPy has no graph to cut)."""
        return self.rsample_with_noise(sample_shape, rng)[0]

    def rsample_with_noise(self, sample_shape=(), rng=None):
        """``(value, noise)`` with ``value = f(args, noise)``; keep the noise for rsample_vjp."""
        raise NotImplementedError(f"{type(self).__name__} has no reparameterised sampler (has_rsample is "
                                  f"False); use sample(), and a score-function gradient for a latent site")

    def rsample_vjp(self, noise, grad_value, wrt):
        """{name: d <grad_value, f(args, noise)> / d name} for each argument name in ``wrt``."""
        raise NotImplementedError(f"{type(self).__name__} has no reparameterised sampler (has_rsample is False)")

    # ------------------------------------------------------------- log-density
    def log_prob(self, value):
        raise NotImplementedError(f"{type(self).__name__}.log_prob is not implemented")

    def log_prob_vjp(self, value, grad_log_prob, wrt):
        """{name: d <grad_log_prob, log_prob(value)> / d name}; names from "value" and arg_names."""
        raise NotImplementedError(f"{type(self).__name__}.log_prob_vjp is not implemented")

    def _check_wrt(self, wrt, with_value=True):
        """``wrt`` as a tuple of names, after checking each one is differentiable here."""
        wrt = (wrt,) if isinstance(wrt, str) else tuple(wrt)
        allowed = (("value",) if with_value else ()) + tuple(self.arg_names)
        unknown = [name for name in wrt if name not in allowed]
        if unknown:
            raise ValueError(f"{type(self).__name__}: cannot differentiate with respect to {unknown}; "
                             f"choose from {allowed}")
        return wrt

    def _batch_result(self, log_prob, value):
        """``log_prob`` broadcast to ``batch_dims_of(value) + batch_shape`` as an array (an expanded
        distribution's arguments are smaller than its batch_shape: broadcasting is lazy)."""
        xp = backend.array_module(log_prob)
        log_prob = xp.asarray(log_prob)
        shape = broadcast_shapes(batch_dims_of(value, self.event_dim), self.batch_shape)
        if log_prob.shape != shape:
            log_prob = xp.broadcast_to(log_prob, shape).copy()
        return log_prob

    def _like(self):
        """An array argument (for the device of new noise), or None if all are Python floats."""
        return next((a for a in self.arg_arrays().values() if hasattr(a, "shape")), None)

    # ------------------------------------------------------------- reshaping
    def expand(self, batch_shape):
        """The same distribution repeated over a larger ``batch_shape``: the new instance shares the
        argument objects (no copy, identity kept) and only records the new shape."""
        new = copy.copy(self)
        new._batch_shape = _check_expand(self, batch_shape)
        return new

    def to_event(self, reinterpreted_batch_ndims=None):
        """Declare the rightmost batch dims to be event dims (None: all of them)."""
        n = len(self.batch_shape) if reinterpreted_batch_ndims is None else reinterpreted_batch_ndims
        return self if n == 0 else Independent(self, n)

    def mask(self, mask):
        """Keep only the log-prob terms where ``mask`` (bool, broadcastable to batch_shape) is True."""
        return MaskedDistribution(self, mask)

    def __repr__(self):
        args = ", ".join(f"{n}={shape_of(a) or a}" for n, a in self.arg_arrays().items())
        return f"{type(self).__name__}({args}, batch_shape={self.batch_shape}, event_shape={self.event_shape})"


class _Wrapper(Distribution):
    """A distribution that changes only how ``base_dist``'s log-prob is read: sampling,
    arguments and the sampler's VJP are the base's own."""

    has_rsample = property(lambda self: self.base_dist.has_rsample)
    arg_names = property(lambda self: self.base_dist.arg_names)
    support = property(lambda self: self.base_dist.support)
    mean = property(lambda self: self.base_dist.mean)
    variance = property(lambda self: self.base_dist.variance)

    def arg_arrays(self):
        return self.base_dist.arg_arrays()

    def _check_stored_args(self):
        pass  # the base distribution checked its own arguments when it was made

    def traced_args(self):
        return self.base_dist.traced_args()

    def sample(self, sample_shape=(), rng=None):
        return self.base_dist.sample(sample_shape, rng)

    def rsample_with_noise(self, sample_shape=(), rng=None):
        return self.base_dist.rsample_with_noise(sample_shape, rng)

    def rsample_vjp(self, noise, grad_value, wrt):
        return self.base_dist.rsample_vjp(noise, grad_value, wrt)


class Independent(_Wrapper):
    """``base`` with its rightmost ``reinterpreted_batch_ndims`` batch dims made event dims: log_prob
    sums the base log-prob over them, so its VJP hands every summed term the same cotangent."""

    def __init__(self, base_dist, reinterpreted_batch_ndims):
        n = reinterpreted_batch_ndims
        if not isinstance(n, int) or n < 0 or n > len(base_dist.batch_shape):
            raise ValueError(
                f"to_event({n}): {type(base_dist).__name__} has batch_shape {base_dist.batch_shape}, so at most "
                f"{len(base_dist.batch_shape)} batch dims can become event dims; expand the distribution (or "
                f"sample it inside a plate) first, or use a smaller n")
        split = len(base_dist.batch_shape) - n
        super().__init__(base_dist.batch_shape[:split], base_dist.batch_shape[split:] + base_dist.event_shape)
        self.base_dist = base_dist
        self.reinterpreted_batch_ndims = n

    def log_prob(self, value):
        return self.base_dist.log_prob(value).sum(axis=tuple(range(-self.reinterpreted_batch_ndims, 0)))

    def log_prob_vjp(self, value, grad_log_prob, wrt):
        # d/d f_i sum_i f_i = 1: broadcast the cotangent back over the summed dims
        base = self.base_dist
        grad = backend.unsum_last(grad_log_prob, self.reinterpreted_batch_ndims,
                                  batch_dims_of(value, base.event_dim), base.batch_shape)
        return base.log_prob_vjp(value, grad, wrt)

    def expand(self, batch_shape):
        batch_shape = _check_expand(self, batch_shape)
        event_batch_dims = self.base_dist.batch_shape[len(self.batch_shape):]
        return Independent(self.base_dist.expand(batch_shape + event_batch_dims), self.reinterpreted_batch_ndims)

    def to_event(self, reinterpreted_batch_ndims=None):
        # Independent(Independent(d, a), b) is Independent(d, a + b): keep one wrapper
        n = len(self.batch_shape) if reinterpreted_batch_ndims is None else reinterpreted_batch_ndims
        return Independent(self.base_dist, self.reinterpreted_batch_ndims + n)

    def __repr__(self):
        return f"Independent({self.base_dist!r}, {self.reinterpreted_batch_ndims})"


class MaskedDistribution(_Wrapper):
    """``base`` whose log-prob is 0 wherever ``mask`` is False (missing data, padding).

    ``where`` rather than ``log_prob * mask``: a masked-out term may be -inf or NaN (a placeholder outside the
    support), and 0 * inf is NaN. The VJP zeroes the cotangent the same way, but the base VJP still runs
    everywhere, so, as in Pyro, fill masked-out values with something inside the support."""

    def __init__(self, base_dist, mask):
        if not (isinstance(mask, bool) or (hasattr(mask, "dtype") and mask.dtype.kind == "b")):
            raise TypeError(
                f"mask must be a Python bool or a boolean array, got {getattr(mask, 'dtype', type(mask).__name__)}; "
                f"use mask.astype(bool) for a 0/1 array")
        try:
            batch_shape = broadcast_shapes(shape_of(mask), base_dist.batch_shape)
        except ValueError:
            raise ValueError(f"mask of shape {shape_of(mask)} does not broadcast with the batch_shape "
                             f"{base_dist.batch_shape} of {type(base_dist).__name__}") from None
        if batch_shape != base_dist.batch_shape:
            base_dist = base_dist.expand(batch_shape)  # so samples get the mask's dims too
        super().__init__(batch_shape, base_dist.event_shape)
        self.base_dist = base_dist
        self._mask = mask

    def log_prob(self, value):
        log_prob = self.base_dist.log_prob(value)
        return backend.array_module(log_prob).where(self._mask, log_prob, 0.0)

    def log_prob_vjp(self, value, grad_log_prob, wrt):
        # d/d f where(mask, f, 0) = mask
        grad = backend.array_module(grad_log_prob).where(self._mask, grad_log_prob, 0.0)
        return self.base_dist.log_prob_vjp(value, grad, wrt)

    def expand(self, batch_shape):
        return MaskedDistribution(self.base_dist.expand(_check_expand(self, batch_shape)), self._mask)

    def __repr__(self):
        return f"MaskedDistribution({self.base_dist!r}, mask of shape {shape_of(self._mask)})"
