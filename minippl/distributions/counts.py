"""Poisson and Geometric: counts with no upper bound, and log-pmfs whose terms cancel.

Teaches: a log-pmf over the counts 0, 1, 2, ...; log k! as ``lgamma(k + 1)`` (SciPy's
``gammaln``); why the Poisson's terms are summed in float64 (``k log rate`` and ``log k!`` are
each of size k log k and cancel down to size log k, so float32 would keep no digit of the
answer at k ~ 1e6); ``0 log 0 = 0`` written out, so that a rate of 0 or probs of 1 still score
the count 0; and gradients written in the form that does not cancel (``(k - rate) / rate``,
not ``k / rate - 1``). Builds on distribution.py, bernoulli.py (the probs/logits pair, log(1 - p)
by log1p or by softplus of the logits) and constraints.py (``nonnegative_integer``). Neither has a
reparameterised sampler: a latent count gets the score-function gradient (infer/elbo.py).
"""
import numpy as np
from scipy import special

from .. import backend
from ..backend import shape_of
from . import constraints
from .bernoulli import ProbsOrLogits
from .distribution import Distribution, check_args, grad_like, promote


def special_function(name, *args):
    """SciPy's special function ``name`` (``"gammaln"``, ``"digamma"``...), CuPy's on a GPU array."""
    if backend.array_module(*args) is np:
        return getattr(special, name)(*args)
    import cupyx.scipy.special as gpu_special  # the same functions, on the device
    return getattr(gpu_special, name)(*args)


def lgamma(x):
    """log Gamma(x), so log k! = lgamma(k + 1): SciPy's gammaln (CuPy's on a GPU array)."""
    return special_function("gammaln", x)


def sample_on_host(draw, dtype, like, *args):
    """``draw(*args)`` with NumPy's generator on host copies of ``args``, returned as ``dtype``
    arrays on the device of ``like`` (NumPy's samplers for counts have no device version)."""
    xp = backend.array_module(like)
    return xp.asarray(draw(*[backend.to_host(a) for a in args]), dtype=dtype)


class Poisson(Distribution):
    """Poisson(rate): P(k) = rate^k e^-rate / k! on k = 0, 1, 2, ...; mean = variance = rate.

    >>> import numpy as np
    >>> d = Poisson(np.array([0.5, 4.0]))
    >>> d.log_prob(np.array([2.0, 2.0]))  # 2 log rate - rate - log 2!
    array([-2.57944154, -1.92055846])
    >>> d.mean, d.variance
    (array([0.5, 4. ]), array([0.5, 4. ]))
    """

    has_rsample = False
    arg_names = ("rate",)
    arg_constraints = {"rate": constraints.nonnegative}  # a rate of 0 gives the count 0
    support = constraints.nonnegative_integer

    def __init__(self, rate, validate_args=None):
        batch_shape = check_args("Poisson", rate=rate)
        self.rate = rate  # as given: the ELBO finds gradients by id()
        super().__init__(batch_shape, validate_args=validate_args)

    @property
    def mean(self):
        xp, _, (rate,) = promote(self.rate)
        return xp.broadcast_to(rate, self.batch_shape)

    @property
    def variance(self):
        return self.mean

    def sample(self, sample_shape=(), rng=None):
        # NumPy's Poisson sampler (inversion for small rates, rejection for large ones), as floats
        rng = backend.global_rng() if rng is None else rng
        xp, dtype, (rate,) = promote(self.rate)
        shape = self.shape(sample_shape)
        return sample_on_host(lambda r: rng.poisson(np.broadcast_to(r, shape)), dtype, rate, rate)

    def log_prob(self, value):
        xp, dtype, (k, rate) = promote(value, self.rate)
        inside = self.support.check(k)
        k, rate = xp.where(inside, k, 0).astype(xp.float64), rate.astype(xp.float64)
        with np.errstate(divide="ignore", invalid="ignore"):  # log 0 (rate 0) and 0 * -inf, replaced where k = 0
            # log P(k) = k log rate - rate - log k!, with 0 log 0 = 0 (a rate of 0 puts all mass on 0)
            log_p = xp.where(k == 0, 0.0, k * xp.log(rate)) - rate - lgamma(k + 1)
        return self._batch_result(xp.where(inside, log_p, -xp.inf).astype(dtype), value)

    def log_prob_vjp(self, value, grad_log_prob, wrt):
        wrt = self._check_wrt(wrt)
        xp, dtype, (k, rate, g) = promote(value, self.rate, grad_log_prob)
        grads = {}
        if "value" in wrt:  # a pmf is piecewise constant in k (as Categorical's): d/dk = 0
            grads["value"] = xp.zeros(shape_of(value), dtype)
        if "rate" in wrt:
            g = xp.where(self.support.check(k), g, 0)  # no gradient where log P = -inf
            # d/drate log Poisson(k | rate) = k / rate - 1 = (k - rate) / rate  (-1 at k = 0, rate 0 too)
            slope = xp.where(k == 0, -1.0, (k - rate) / xp.where(rate > 0, rate, 1))
            grads["rate"] = grad_like(g * slope, self.rate)
        return grads


class Geometric(ProbsOrLogits, Distribution):
    """Geometric(probs=None, logits=None): the number of failures before the first success,
    P(k) = (1 - p)^k p on k = 0, 1, 2, ...; mean (1 - p) / p, variance (1 - p) / p^2.

    Give exactly one of ``probs`` or ``logits`` (p = sigmoid(logits)), as for Bernoulli. No
    clamp is needed: log(1 - p) is log1p(-p), or -softplus(logits), finite for every p < 1,
    and at p = 1 the count 0 has log-prob 0 (0 log 0 = 0).

    >>> import numpy as np
    >>> d = Geometric(probs=np.array([0.25, 0.5]))
    >>> d.log_prob(np.array([0.0, 2.0]))  # k log(1 - p) + log p
    array([-1.38629436, -2.07944154])
    >>> d.mean, d.variance
    (array([3., 1.]), array([12.,  2.]))
    """

    has_rsample = False
    arg_constraints = {"probs": constraints.unit_interval, "logits": constraints.real}
    support = constraints.nonnegative_integer

    def __init__(self, probs=None, logits=None, validate_args=None):
        name, self._param = self.one_of("Geometric", probs, logits)  # stored as passed
        self.arg_names = (name,)
        super().__init__(check_args("Geometric", **{name: self._param}), validate_args=validate_args)

    def _log_p_and_log_q(self, xp, param):
        """(log p, log(1 - p)), each without cancellation."""
        if self.arg_names == ("logits",):
            return -backend.softplus(-param), -backend.softplus(param)  # log sigmoid(l) = -softplus(-l)
        with np.errstate(divide="ignore"):
            return xp.log(param), xp.log1p(-param)

    @property
    def mean(self):
        xp, _, (param,) = promote(self._param)
        log_p, log_q = self._log_p_and_log_q(xp, param)
        return xp.broadcast_to(xp.exp(log_q - log_p), self.batch_shape)  # (1 - p) / p

    @property
    def variance(self):
        xp, _, (param,) = promote(self._param)
        log_p, log_q = self._log_p_and_log_q(xp, param)
        return xp.broadcast_to(xp.exp(log_q - 2 * log_p), self.batch_shape)  # (1 - p) / p^2

    def sample(self, sample_shape=(), rng=None):
        # inverse CDF: P(K >= k) = (1 - p)^k, so K = floor(log(1 - u) / log(1 - p)) for u ~ U[0, 1)
        rng = backend.global_rng() if rng is None else rng
        xp, dtype, (param,) = promote(self._param)
        u = backend.uniform(rng, self.shape(sample_shape), dtype, like=self._like())
        log_q = self._log_p_and_log_q(xp, param)[1]
        with np.errstate(divide="ignore", invalid="ignore"):  # p = 0: log(1 - p) = 0, the count is inf
            return xp.floor(xp.log1p(-u) / log_q) + 0.0  # + 0.0 turns -0.0 (at p = 1) into 0.0

    def log_prob(self, value):
        xp, _, (k, param) = promote(value, self._param)
        inside = self.support.check(k)
        log_p, log_q = self._log_p_and_log_q(xp, param)
        with np.errstate(invalid="ignore"):  # 0 * -inf at p = 1, replaced by 0
            # log P(k) = k log(1 - p) + log p, with 0 log 0 = 0
            log_prob = xp.where(k == 0, 0.0, k * log_q) + log_p
        return self._batch_result(xp.where(inside, log_prob, -xp.inf), value)

    def log_prob_vjp(self, value, grad_log_prob, wrt):
        wrt = self._check_wrt(wrt)
        xp, dtype, (k, param, g) = promote(value, self._param, grad_log_prob)
        grads = {}
        if "value" in wrt:  # a pmf is piecewise constant in k: d/dk = 0
            grads["value"] = xp.zeros(shape_of(value), dtype)
        g = xp.where(self.support.check(k), g, 0)
        if "logits" in wrt:
            # d/dl (-k softplus(l) - softplus(-l)) = sigmoid(-l) - k sigmoid(l) = (1 - p) - k p
            slope = backend.sigmoid(-param) - k * backend.sigmoid(param)
            grads["logits"] = grad_like(g * slope, self._param)
        if "probs" in wrt:
            # d/dp (k log(1 - p) + log p) = 1 / p - k / (1 - p)  (the k term is 0 at k = 0, also at p = 1)
            with np.errstate(divide="ignore"):
                slope = 1 / param - xp.where(k == 0, 0.0, k / xp.where(param < 1, 1 - param, 1))
            grads["probs"] = grad_like(g * slope, self._param)
        return grads

    def __repr__(self):
        name = self.arg_names[0]
        return f"Geometric({name}={shape_of(self._param) or self._param}, batch_shape={self.batch_shape})"
