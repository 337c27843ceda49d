"""Gumbel: the distribution of a maximum, drawn by two logs of a uniform.

Teaches: the inverse CDF of a double exponential, ``eps = -log(-log u)``, computed as
``-log(E)`` with ``E = -log(1 - u)`` an Exponential(1) draw (exponential.py), clipped
away from 0 so float32 never meets log(0); and a log-density ``-(z + exp(-z)) - log scale``
whose left tail (``exp(-z)`` for very negative z) overflows to -inf rather than NaN.
Builds on exponential.py (the Exponential noise) and distribution.py.
"""
import math

import numpy as np

from .. import backend
from . import constraints
from .normal import LocScale
from .distribution import Distribution, grad_like, promote
from .exponential import standard_exponential

_EULER_GAMMA = 0.57721566490153286061


class Gumbel(LocScale, Distribution):
    """Gumbel(loc, scale): density exp(-(z + exp(-z))) / scale, z = (x - loc) / scale.

    Mean loc + scale * euler_gamma, variance (pi scale)^2 / 6.

    >>> import numpy as np
    >>> d = Gumbel(0.0, np.array([1.0, 2.0]))
    >>> d.log_prob(np.array(1.0))  # -(z + exp(-z)) - log scale
    array([-1.36787944, -1.79967784])
    """

    support = constraints.real  # loc, scale and the sampler's VJP: normal.py's LocScale

    @property
    def mean(self):
        xp, _, (loc, scale) = promote(self.loc, self.scale)
        return xp.broadcast_to(loc + scale * _EULER_GAMMA, self.batch_shape)

    @property
    def variance(self):
        xp, _, (_, scale) = promote(self.loc, self.scale)
        return xp.broadcast_to((math.pi**2 / 6) * scale * scale, self.batch_shape)

    @property
    def stddev(self):
        xp, _, (_, scale) = promote(self.loc, self.scale)
        return xp.broadcast_to((math.pi / math.sqrt(6)) * scale, self.batch_shape)

    def rsample_with_noise(self, sample_shape=(), rng=None):
        rng = backend.global_rng() if rng is None else rng
        dtype = backend.float_dtype(self.loc, self.scale)
        e = standard_exponential(rng, self.shape(sample_shape), dtype, self._like())  # -log(1 - u)
        xp = backend.array_module(e)
        eps = -xp.log(xp.maximum(e, xp.finfo(e.dtype).tiny))  # Gumbel(0, 1); e = 0 when u = 0
        return self.loc + self.scale * eps, eps  # x = loc + scale eps

    @staticmethod
    def _exp_minus(xp, z):
        """exp(-z); inf, without NumPy's overflow warning, far in the left tail: log p is -inf there."""
        with np.errstate(over="ignore"):
            return xp.exp(-z)

    def log_prob(self, value):
        xp, _, (x, loc, scale) = promote(value, self.loc, self.scale)
        z = (x - loc) / scale
        # log p(x) = -(z + exp(-z)) - log scale
        return self._batch_result(-(z + self._exp_minus(xp, z)) - xp.log(scale), value)

    def log_prob_vjp(self, value, grad_log_prob, wrt):
        wrt = self._check_wrt(wrt)
        xp, _, (x, loc, scale, g) = promote(value, self.loc, self.scale, grad_log_prob)
        z = (x - loc) / scale
        slope = (1 - self._exp_minus(xp, z)) / scale  # d/dloc log p = (1 - exp(-z)) / scale
        grads = {}
        if "value" in wrt:  # d/dx log p = (exp(-z) - 1) / scale
            grads["value"] = grad_like(-g * slope, value)
        if "loc" in wrt:
            grads["loc"] = grad_like(g * slope, self.loc)
        if "scale" in wrt:  # d/dscale log p = (z (1 - exp(-z)) - 1) / scale
            grads["scale"] = grad_like(g * (z * slope - 1 / scale), self.scale)
        return grads
