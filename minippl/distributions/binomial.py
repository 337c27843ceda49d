"""Binomial: successes out of total_count trials, an argument with no gradient, a finite support.

Teaches: an argument that is not differentiable (``total_count``, an integer: validated, but
not in ``arg_names``, so ``log_prob_vjp`` refuses it by name); the log binomial coefficient
``lgamma(n + 1) - lgamma(k + 1) - lgamma(n - k + 1)``, summed in float64 with the rest as in
counts.py (its terms cancel for large counts); a support whose bound is an array; and
``enumerate_support``, the values 0..n along a new leftmost dim. Builds on counts.py (lgamma,
integer supports) and bernoulli.py (Binomial(1, p) is Bernoulli(p)).
"""
import numpy as np

from .. import backend, validation
from ..backend import shape_of
from . import constraints
from .counts import lgamma, sample_on_host
from .bernoulli import ProbsOrLogits
from .distribution import Distribution, check_args, grad_like, promote


class _CountsUpTo(constraints.integer_interval):
    """The integers 0..total_count, elementwise (torch's ``integer_interval(0, total_count)``,
    whose upper bound may be an array): a Binomial's support."""

    def __init__(self, upper_bound):
        super().__init__(0, upper_bound)

    @property
    def spec(self):
        bound = self.upper_bound
        return f"integer_interval(0, {bound if shape_of(bound) == () else 'total_count'})"


class Binomial(ProbsOrLogits, Distribution):
    """Binomial(total_count=1, probs=None, logits=None): the number of successes in ``total_count``
    independent trials of probability p = probs = sigmoid(logits),
    P(k) = C(n, k) p^k (1 - p)^(n - k) on k = 0..n; mean n p, variance n p (1 - p).

    Give exactly one of ``probs`` or ``logits``. ``total_count`` (a Python int, or an integer
    or integral float array that broadcasts with the probabilities) has no gradient and is not
    in ``arg_names``. With ``probs``, ``0 log 0 = 0`` is written out (p = 0 or 1 scores
    k = 0 or k = n with log-prob 0, no clamp); with ``logits`` the log-density is
    ``k l - n softplus(l) + log C(n, k)``, finite for any logits.

    >>> import numpy as np
    >>> d = Binomial(10, probs=np.array([0.2, 0.5]))
    >>> np.round(np.exp(d.log_prob(np.array(3.0))), 6)  # C(10, 3) p^3 (1 - p)^7
    array([0.201327, 0.117188])
    >>> d.enumerate_support().shape, d.mean
    ((11, 2), array([2., 5.]))
    """

    has_rsample = False
    has_enumerate_support = True  # enumerate_support() below
    arg_constraints = {"total_count": constraints.nonnegative_integer, "probs": constraints.unit_interval,
                       "logits": constraints.real}

    def __init__(self, total_count=1, probs=None, logits=None, validate_args=None):
        name, param = self.one_of("Binomial", probs, logits)
        batch_shape = check_args("Binomial", total_count=total_count, **{name: param})
        self.total_count = total_count  # an integer: validated, but no gradient reaches it
        self._param = param  # stored as passed: the ELBO finds gradients by id()
        self.arg_names = (name,)
        super().__init__(batch_shape, validate_args=validate_args)

    def _check_args(self):
        super()._check_args()  # probs or logits
        validation.check_devices("Binomial", {"total_count": self.total_count, **self.arg_arrays()})
        validation.check_arg("Binomial", "total_count", self.total_count, constraints.nonnegative_integer)

    @property
    def support(self):
        return _CountsUpTo(self.total_count)

    def _p_and_q(self, param):
        """(p, 1 - p), 1 - p as sigmoid(-logits) when given logits (no cancellation near p = 1)."""
        if self.arg_names == ("logits",):
            return backend.sigmoid(param), backend.sigmoid(-param)
        return param, 1 - param

    def _n(self, xp, dtype):
        return xp.asarray(self.total_count, dtype=dtype)

    @property
    def mean(self):
        xp, dtype, (param,) = promote(self._param)
        p, _ = self._p_and_q(param)
        return xp.broadcast_to(self._n(xp, dtype) * p, self.batch_shape)

    @property
    def variance(self):
        xp, dtype, (param,) = promote(self._param)
        p, q = self._p_and_q(param)
        return xp.broadcast_to(self._n(xp, dtype) * p * q, self.batch_shape)

    def sample(self, sample_shape=(), rng=None):
        # NumPy's binomial sampler (inversion for small n p, BTPE otherwise), returned as floats
        rng = backend.global_rng() if rng is None else rng
        xp, dtype, (param,) = promote(self._param)
        shape = self.shape(sample_shape)
        p = self._p_and_q(param)[0]

        def draw(n, p):
            return rng.binomial(np.broadcast_to(n.astype(np.int64), shape), np.broadcast_to(p, shape))

        return sample_on_host(draw, dtype, param, xp.asarray(self.total_count), p)

    def log_prob(self, value):
        xp, dtype, (k, param) = promote(value, self._param)
        n = self._n(xp, xp.float64)
        inside = self.support.check(k)
        k = xp.where(inside, k, 0).astype(xp.float64)  # all in float64: the terms cancel for large n
        param = param.astype(xp.float64)
        # log C(n, k) = log n! - log k! - log (n - k)!
        log_choose = lgamma(n + 1) - lgamma(k + 1) - lgamma(n - k + 1)
        if self.arg_names == ("logits",):
            # k log p + (n - k) log(1 - p) = k l - n softplus(l)
            log_p = k * param - n * backend.softplus(param)
        else:
            with np.errstate(divide="ignore", invalid="ignore"):  # 0 log 0, replaced by 0
                # k log p + (n - k) log(1 - p), with 0 log 0 = 0
                log_p = (xp.where(k == 0, 0.0, k * xp.log(param))
                         + xp.where(n - k == 0, 0.0, (n - k) * xp.log1p(-param)))
        return self._batch_result(xp.where(inside, log_choose + log_p, -xp.inf).astype(dtype), value)

    def log_prob_vjp(self, value, grad_log_prob, wrt):
        wrt = self._check_wrt(wrt)  # "total_count" is refused here: it has no gradient
        xp, dtype, (k, param, g) = promote(value, self._param, grad_log_prob)
        n = self._n(xp, dtype)
        grads = {}
        if "value" in wrt:  # a pmf is piecewise constant in k: d/dk = 0
            grads["value"] = xp.zeros(shape_of(value), dtype)
        g = xp.where(self.support.check(k), g, 0)
        if "logits" in wrt:
            # d/dl (k l - n softplus(l)) = k - n sigmoid(l)
            grads["logits"] = grad_like(g * (k - n * backend.sigmoid(param)), self._param)
        if "probs" in wrt:
            # d/dp (k log p + (n - k) log(1 - p)) = k / p - (n - k) / (1 - p) = (k - n p) / (p (1 - p));
            # at p = 0 only k = 0 is possible (slope -n), at p = 1 only k = n (slope n)
            interior = (param > 0) & (param < 1)
            p = xp.where(interior, param, 0.5)
            slope = xp.where(interior, (k - n * p) / (p * (1 - p)), xp.where(param <= 0, -n, n))
            grads["probs"] = grad_like(g * slope, self._param)
        return grads

    def enumerate_support(self, expand=True):
        """The values 0..n along a new leftmost dim, shape ``(n + 1,) + batch_shape`` if ``expand``
        (else ``(n + 1,) + (1,) * len(batch_shape)``); as in torch, total_count must be one n."""
        xp, dtype, _ = promote(self._param)
        counts = xp.asarray(self.total_count)
        n = int(counts.max()) if counts.size else 0
        if not bool((counts == n).all()):
            raise NotImplementedError(
                f"Binomial.enumerate_support needs the same total_count everywhere (as in torch), got counts "
                f"from {int(counts.min())} to {n}; enumerate up to the largest and mask the impossible values")
        values = xp.arange(n + 1, dtype=dtype).reshape((-1,) + (1,) * len(self.batch_shape))
        return xp.broadcast_to(values, (n + 1,) + self.batch_shape) if expand else values

    def __repr__(self):
        name = self.arg_names[0]
        return (f"Binomial(total_count={shape_of(self.total_count) or self.total_count}, "
                f"{name}={shape_of(self._param) or self._param}, batch_shape={self.batch_shape})")
