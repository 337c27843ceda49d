"""Cauchy: heavy tails, undefined moments, and a log-density that must not overflow.

Teaches: a draw by the inverse CDF ``eps = tan(pi (u - 1/2))``, kept away from the pole at
+-pi/2 in float32; ``log(1 + z^2)`` and ``z / (1 + z^2)`` written so that ``z^2`` never
overflows (a float32 z beyond 1.8e19 is an ordinary Cauchy draw, and ``z * z`` would be
inf); and moments that do not exist (mean NaN, variance inf, as torch). Builds on
distribution.py; half.py reuses the helpers below for the HalfCauchy.
"""
import math

from .. import backend
from . import constraints
from .normal import LocScale
from .distribution import Distribution, grad_like, promote

_LOG_PI = math.log(math.pi)


def standard_cauchy(rng, shape, dtype, like):
    """Cauchy(0, 1) noise: tan(pi (u - 1/2)), u ~ U[0, 1), with |u - 1/2| <= 1/2 - eps.

    The clip keeps float32's ``pi (u - 1/2)`` strictly inside (-pi/2, pi/2), where tan is
    finite and has the right sign (float32 pi/2 is a little above the true pi/2).
    """
    u = backend.uniform(rng, shape, dtype, like=like)
    xp = backend.array_module(u)
    edge = xp.asarray(0.5 - xp.finfo(u.dtype).eps, dtype=u.dtype)
    return xp.tan(xp.asarray(math.pi, dtype=u.dtype) * xp.clip(u - 0.5, -edge, edge))


def _full(d, number):
    """``number`` over the batch shape of ``d``, in its arguments' dtype and array module (a moment that is
    undefined, or infinite)."""
    xp, dtype, _ = promote(*d.arg_arrays().values())
    return xp.full(d.batch_shape, number, dtype=dtype)


def cauchy_terms(z):
    """``(log(1 + z^2), z / (1 + z^2), 1 / (1 + z^2))`` without forming z^2 for |z| > 1.

    For |z| > 1 write w = 1 / |z|: log(1 + z^2) = 2 log|z| + log(1 + w^2),
    z / (1 + z^2) = sign(z) w / (1 + w^2), 1 / (1 + z^2) = w^2 / (1 + w^2).
    """
    xp = backend.array_module(z)
    a = xp.abs(z)
    small = a <= 1
    s = xp.minimum(a, 1)  # |z| on the small side, 1 (unused) on the other
    w = 1 / xp.maximum(a, 1)  # 1 / |z| on the large side, 1 (unused) on the other
    s2, w2 = s * s, w * w
    log1p_z2 = xp.where(small, xp.log1p(s2), 2 * xp.log(xp.maximum(a, 1)) + xp.log1p(w2))
    z_ratio = xp.sign(z) * xp.where(small, s / (1 + s2), w / (1 + w2))
    inv = xp.where(small, 1 / (1 + s2), w2 / (1 + w2))
    return log1p_z2, z_ratio, inv


class Cauchy(LocScale, Distribution):
    """Cauchy(loc, scale): density 1 / (pi scale (1 + z^2)), z = (x - loc) / scale.

    >>> import numpy as np
    >>> d = Cauchy(0.0, np.array([1.0, 2.0]))
    >>> d.log_prob(np.array(2.0))  # -log pi - log scale - log(1 + z^2)
    array([-2.7541678 , -2.53102425])
    >>> x = np.array([1e30, -1e30], np.float32)  # z^2 = 1e60 would overflow float32
    >>> Cauchy(np.zeros(2, np.float32), 1.0).log_prob(x)  # -log pi - 60 log 10
    array([-139.29984, -139.29984], dtype=float32)
    >>> d.mean, d.variance
    (array([nan, nan]), array([inf, inf]))
    """

    support = constraints.real  # loc, scale and the sampler's VJP: normal.py's LocScale

    @property
    def mean(self):
        return _full(self, math.nan)  # the integral of |x| p(x) diverges: no mean

    @property
    def variance(self):
        return _full(self, math.inf)  # (and the stddev, its square root)

    def rsample_with_noise(self, sample_shape=(), rng=None):
        rng = backend.global_rng() if rng is None else rng
        dtype = backend.float_dtype(self.loc, self.scale)
        eps = standard_cauchy(rng, self.shape(sample_shape), dtype, self._like())
        return self.loc + self.scale * eps, eps  # x = loc + scale eps, eps ~ Cauchy(0, 1)

    def log_prob(self, value):
        xp, _, (x, loc, scale) = promote(value, self.loc, self.scale)
        log1p_z2, _, _ = cauchy_terms((x - loc) / scale)
        # log p(x) = -log pi - log scale - log(1 + z^2)
        return self._batch_result(-_LOG_PI - xp.log(scale) - log1p_z2, value)

    def log_prob_vjp(self, value, grad_log_prob, wrt):
        wrt = self._check_wrt(wrt)
        _, _, (x, loc, scale, g) = promote(value, self.loc, self.scale, grad_log_prob)
        _, z_ratio, inv = cauchy_terms((x - loc) / scale)
        grads = {}
        if "value" in wrt or "loc" in wrt:
            g_z = 2 * g * z_ratio / scale  # d/dloc log p = 2 z / (scale (1 + z^2))
            if "value" in wrt:  # d/dx log p = -2 z / (scale (1 + z^2))
                grads["value"] = grad_like(-g_z, value)
            if "loc" in wrt:
                grads["loc"] = grad_like(g_z, self.loc)
        if "scale" in wrt:  # d/dscale log p = (z^2 - 1) / (scale (1 + z^2)) = (1 - 2 / (1 + z^2)) / scale
            grads["scale"] = grad_like(g * (1 - 2 * inv) / scale, self.scale)
        return grads
