"""Categorical: a discrete choice among K classes, the likelihood of every classifier.

Teaches: a stable log-softmax, a log-density read by indexing (``take_along_axis``), and its
gradient ``onehot(x) - softmax(logits)``. Builds on distribution.py and bernoulli.py's two
parametrisations. There is no reparameterised sampler.
"""
import numpy as np

from .. import backend, validation
from ..backend import shape_of
from . import constraints
from .bernoulli import ProbsOrLogits
from .distribution import Distribution, check_types, grad_like


def _log_softmax(logits, xp):
    # log softmax(l)_k = l_k - log sum_j exp(l_j) = (l_k - m) - log sum_j exp(l_j - m), m = max_j l_j:
    # every exp sees an argument <= 0, so nothing overflows
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=-1, keepdims=True))


def class_param(dist_name, probs, logits):
    """``(name, argument)`` of a Categorical-like distribution: exactly one of probs or logits, a float array
    whose last dim indexes the K classes (OneHotCategorical shares it)."""
    name, param = ProbsOrLogits.one_of(dist_name, probs, logits)
    check_types(dist_name, **{name: param})
    if len(shape_of(param)) < 1 or shape_of(param)[-1] < 1:
        raise ValueError(f"{dist_name}: {name} needs a last dim indexing the classes, e.g. shape (K,) or "
                         f"(batch, K); got shape {shape_of(param)}. Wrap a scalar as np.array([...]).")
    if getattr(param, "dtype", None) is None or param.dtype.kind != "f":
        raise TypeError(f"{dist_name}: {name} must be a float array, got {getattr(param, 'dtype', type(param))}")
    return name, param


def check_class_param(d, categorical):
    """Validate ``d``'s probs (after normalising, as ``categorical`` does) or logits, under d's name."""
    name, dist_name = d.arg_names[0], type(d).__name__
    validation.check_devices(dist_name, {name: d._param})
    # negative probs, or a row summing to 0 (NaN after normalising), leave [0, 1]
    with np.errstate(invalid="ignore", divide="ignore"):  # a zero row becomes NaN, reported below
        value = categorical.probs if name == "probs" else d._param
    validation.check_arg(dist_name, name, value, d.arg_constraints[name])


class Categorical(Distribution):
    """Categorical(probs=None, logits=None): P(x = k) = probs[..., k] = softmax(logits)[..., k].

    The last dim of ``probs``/``logits`` indexes the K classes; the dims before it are
    the batch shape. ``probs`` need not sum to one (they are normalised, as in torch),
    and normalised probs are clamped to [eps, 1 - eps] before the log, as Bernoulli
    does, so a class of probability 0 gives a finite log-prob (with zero gradient).
    ``logits`` are unnormalised log-probabilities. Values are class indices: ``sample``
    returns int64 arrays, and ``log_prob`` accepts integer or integral float arrays
    (anything outside 0..K-1 has log-prob -inf).

    >>> import numpy as np
    >>> d = Categorical(logits=np.log(np.array([0.2, 0.3, 0.5])))
    >>> float(np.exp(d.log_prob(np.array(2))))  # doctest: +ELLIPSIS
    0.5...
    """

    has_rsample = False
    has_enumerate_support = True  # enumerate_support() below
    # checked on the normalised probs (see _check_args): each must lie in [0, 1], NaN refused
    arg_constraints = {"probs": constraints.unit_interval, "logits": constraints.real}

    def __init__(self, probs=None, logits=None, validate_args=None):
        name, param = class_param("Categorical", probs, logits)
        self._param = param  # stored as passed: the ELBO finds gradients by id()
        self.arg_names = (name,)
        self.num_categories = shape_of(param)[-1]
        super().__init__(shape_of(param)[:-1], validate_args=validate_args)

    def _check_args(self):
        check_class_param(self, self)

    @property
    def support(self):
        return constraints.integer_interval(0, self.num_categories - 1)

    def arg_arrays(self):
        # the argument exactly as passed (the ``logits`` property below is normalised: a new array)
        return {self.arg_names[0]: self._param}

    @property
    def mean(self):
        # as torch: a category has no numeric mean (its labels are not quantities)
        return backend.array_module(self._param).full(self.batch_shape, float("nan"))

    variance = mean

    @property
    def logits(self):
        """Normalised log-probabilities, shape (..., K)."""
        xp = backend.array_module(self._param)
        if self.arg_names == ("logits",):
            return _log_softmax(self._param, xp)
        return xp.log(self._clamped_probs(xp))

    @property
    def probs(self):
        """Class probabilities (summing to one), shape (..., K)."""
        xp = backend.array_module(self._param)
        if self.arg_names == ("probs",):
            return self._param / self._param.sum(axis=-1, keepdims=True)
        return xp.exp(_log_softmax(self._param, xp))

    def _clamped_probs(self, xp):
        eps = xp.finfo(self._param.dtype).eps
        return xp.clip(self._param / self._param.sum(axis=-1, keepdims=True), eps, 1 - eps)

    # ---------------------------------------------------------------- sampling
    def sample(self, sample_shape=(), rng=None):
        # inverse-CDF sampling: the class is the number of cumulative probabilities below u ~ U[0, 1)
        rng = backend.global_rng() if rng is None else rng
        xp = backend.array_module(self._param)
        shape = self.shape(sample_shape)
        cdf = xp.cumsum(self.probs, axis=-1)
        u = backend.uniform(rng, shape + (1,), self._param.dtype, like=self._param)
        below = (u * cdf[..., -1:] >= cdf[..., :-1])  # scaled by the total so rounding never loses mass
        return below.sum(axis=-1).astype(xp.int64)

    # ------------------------------------------------------------- log-density
    def _gather_setup(self, value):
        """(xp, in-support mask, clipped int indices with a trailing 1, log-probs broadcast to them)."""
        xp = backend.array_module(self._param, value)
        x = xp.asarray(value)
        batch = backend.broadcast_shapes(shape_of(x), self.batch_shape)
        inside = (x == x // 1) & (x >= 0) & (x <= self.num_categories - 1)
        index = xp.broadcast_to(xp.clip(x, 0, self.num_categories - 1).astype(xp.int64), batch)[..., None]
        return xp, xp.broadcast_to(inside, batch), index, batch

    def log_prob(self, value):
        xp, inside, index, batch = self._gather_setup(value)
        log_p = xp.broadcast_to(self.logits, batch + (self.num_categories,))
        # log p(x) = log_softmax(logits)[x]  (or log of the normalised, clamped probs[x])
        picked = xp.take_along_axis(log_p, index, axis=-1)[..., 0]
        return self._batch_result(xp.where(inside, picked, -xp.inf), value)

    def log_prob_vjp(self, value, grad_log_prob, wrt):
        wrt = self._check_wrt(wrt)
        xp, inside, index, batch = self._gather_setup(value)
        g = xp.where(inside, xp.broadcast_to(xp.asarray(grad_log_prob, dtype=self._param.dtype), batch), 0)
        grads = {}
        if "value" in wrt:
            # the log-density is piecewise constant in x: d/dx = 0
            grads["value"] = xp.zeros(shape_of(value), self._param.dtype)
        full = batch + (self.num_categories,)
        onehot = xp.zeros(full, self._param.dtype)
        xp.put_along_axis(onehot, index, 1, axis=-1)
        if "logits" in wrt:
            # d/dl_k log_softmax(l)_x = 1[k = x] - softmax(l)_k
            softmax = xp.exp(_log_softmax(self._param, xp))
            grads["logits"] = grad_like(g[..., None] * (onehot - softmax), self._param)
        if "probs" in wrt:
            # log p(x) = log p_x - log sum_j p_j  =>  d/dp_k = 1[k = x] / p_x - 1 / sum_j p_j
            # (0 where the clamp of p_x / sum_j p_j to [eps, 1 - eps] is active)
            p = self._param
            total = p.sum(axis=-1, keepdims=True)
            p_x = xp.take_along_axis(xp.broadcast_to(p, full), index, axis=-1)
            q_x = p_x / total  # the normalised probability of the observed class
            eps = xp.finfo(self._param.dtype).eps
            unclamped = (q_x > eps) & (q_x < 1 - eps)
            slope = xp.where(unclamped, onehot / xp.where(p_x > 0, p_x, 1) - 1 / total, 0)
            grads["probs"] = grad_like(g[..., None] * slope, self._param)
        return grads

    def enumerate_support(self, expand=True):
        """The values 0..K-1 along a new leading dim (expanded over the batch shape if ``expand``)."""
        xp = backend.array_module(self._param)
        values = xp.arange(self.num_categories, dtype=xp.int64).reshape((-1,) + (1,) * len(self.batch_shape))
        return xp.broadcast_to(values, (self.num_categories,) + self.batch_shape) if expand else values

    def __repr__(self):
        name = self.arg_names[0]
        return f"Categorical({name}={shape_of(self._param)}, batch_shape={self.batch_shape})"
