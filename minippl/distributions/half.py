"""HalfNormal and HalfCauchy: a symmetric distribution folded onto [0, inf).

Teaches: folding. If ``e`` is symmetric about 0, ``|e|`` has twice its density on
[0, inf) and none below: ``log p(x) = log 2 + log p_e(x)`` for x >= 0, -inf for x < 0.
The draw is ``scale * |eps|``, so the noise kept is ``|eps|`` and the sampler's VJP is
``d/dscale (scale |eps|) = |eps|``. Both have Pyro's ``nonnegative`` support (0 is scored).
Builds on normal.py and cauchy.py (their constants and stable helpers).
"""
import math

from .. import backend
from . import constraints
from .cauchy import _LOG_PI, _full, cauchy_terms, standard_cauchy
from .distribution import Distribution, check_args, grad_like, promote
from .normal import _HALF_LOG_2PI

_LOG_2 = math.log(2.0)


class _Folded(Distribution):
    """What the two share: one argument, ``scale``, and the support [0, inf)."""

    has_rsample = True
    arg_names = ("scale",)
    arg_constraints = {"scale": constraints.positive}
    support = constraints.nonnegative  # torch's: [0, inf), 0 is scored

    def __init__(self, scale, validate_args=None):
        batch_shape = check_args(type(self).__name__, scale=scale)
        self.scale = scale  # as given: the ELBO finds gradients by id()
        super().__init__(batch_shape, validate_args=validate_args)

    def rsample_with_noise(self, sample_shape=(), rng=None):
        rng = backend.global_rng() if rng is None else rng
        dtype = backend.float_dtype(self.scale)
        noise = self._noise(rng, self.shape(sample_shape), dtype)
        eps = backend.array_module(noise).abs(noise)
        return self.scale * eps, eps  # x = scale |eps|; the noise kept is |eps|

    def rsample_vjp(self, noise, grad_value, wrt):
        # d/dscale (scale |eps|) = |eps|; the only name wrt can hold is "scale"
        return {name: grad_like(grad_value * noise, self.scale) for name in self._check_wrt(wrt, with_value=False)}


class HalfNormal(_Folded):
    """HalfNormal(scale): |Normal(0, scale)|; mean scale sqrt(2 / pi), variance scale^2 (1 - 2 / pi).

    >>> import numpy as np
    >>> d = HalfNormal(np.array([1.0, 2.0]))
    >>> d.log_prob(np.array([1.0, -1.0]))  # log 2 + log N(x | 0, scale); -inf below 0
    array([-0.72579135,        -inf])
    """

    def _noise(self, rng, shape, dtype):
        return backend.standard_normal(rng, shape, dtype, like=self._like())

    @property
    def mean(self):
        xp, _, (scale,) = promote(self.scale)
        return xp.broadcast_to(scale * math.sqrt(2 / math.pi), self.batch_shape)

    @property
    def variance(self):
        xp, _, (scale,) = promote(self.scale)
        return xp.broadcast_to(scale * scale * (1 - 2 / math.pi), self.batch_shape)

    def log_prob(self, value):
        xp, _, (x, scale) = promote(value, self.scale)
        z = x / scale
        # log p(x) = log 2 - x^2 / (2 scale^2) - log scale - log(2 pi) / 2 on [0, inf)
        log_prob = _LOG_2 - 0.5 * z * z - xp.log(scale) - _HALF_LOG_2PI
        return self._batch_result(xp.where(x >= 0, log_prob, -xp.inf), value)

    def log_prob_vjp(self, value, grad_log_prob, wrt):
        xp, _, (x, scale, g) = promote(value, self.scale, grad_log_prob)
        g = xp.where(x >= 0, g, 0)  # no gradient where log p = -inf (the contract)
        z = x / scale
        grads = {}
        for name in self._check_wrt(wrt):
            if name == "value":  # d/dx log p = -x / scale^2
                grads["value"] = grad_like(-g * z / scale, value)
            else:  # d/dscale log p = (x^2 / scale^2 - 1) / scale
                grads["scale"] = grad_like(g * (z * z - 1) / scale, self.scale)
        return grads


class HalfCauchy(_Folded):
    """HalfCauchy(scale): |Cauchy(0, scale)|; density 2 / (pi scale (1 + (x / scale)^2)) on [0, inf).

    Mean and variance are infinite (torch: inf for both).

    >>> import numpy as np
    >>> d = HalfCauchy(np.array([1.0, 2.0]))
    >>> d.log_prob(np.array([1.0, -1.0]))  # log 2 - log pi - log scale - log(1 + z^2); -inf below 0
    array([-1.14472989,        -inf])
    """

    def _noise(self, rng, shape, dtype):
        return standard_cauchy(rng, shape, dtype, self._like())

    @property
    def mean(self):
        return _full(self, math.inf)

    @property
    def variance(self):
        return _full(self, math.inf)  # (and the stddev, its square root)

    def log_prob(self, value):
        xp, _, (x, scale) = promote(value, self.scale)
        log1p_z2, _, _ = cauchy_terms(x / scale)
        # log p(x) = log 2 - log pi - log scale - log(1 + (x / scale)^2) on [0, inf)
        log_prob = _LOG_2 - _LOG_PI - xp.log(scale) - log1p_z2
        return self._batch_result(xp.where(x >= 0, log_prob, -xp.inf), value)

    def log_prob_vjp(self, value, grad_log_prob, wrt):
        xp, _, (x, scale, g) = promote(value, self.scale, grad_log_prob)
        g = xp.where(x >= 0, g, 0)  # no gradient where log p = -inf (the contract)
        _, z_ratio, inv = cauchy_terms(x / scale)
        grads = {}
        for name in self._check_wrt(wrt):
            if name == "value":  # d/dx log p = -2 z / (scale (1 + z^2)), z = x / scale
                grads["value"] = grad_like(-2 * g * z_ratio / scale, value)
            else:  # d/dscale log p = (z^2 - 1) / (scale (1 + z^2)) = (1 - 2 / (1 + z^2)) / scale
                grads["scale"] = grad_like(g * (1 - 2 * inv) / scale, self.scale)
        return grads
