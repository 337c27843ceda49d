"""LogNormal: a Normal seen through exp, and the chain rule through a change of variables.

Teaches: if ``y = log x`` is Normal(loc, scale), then ``x = exp(loc + scale * eps)`` and
``log p(x) = log N(log x | loc, scale) - log x`` (the ``- log x`` is log |dy/dx|, the
change-of-variables term). The derivatives are the Normal's, in ``y``, times ``dy/dx = 1/x``
for the value; the sampler's are ``x`` and ``x * eps`` (d exp(u) = exp(u) du). Outside
the support (x <= 0) the log-density is -inf without ever taking log of 0 or of a
negative number. Builds on normal.py (its constant) and distribution.py.
"""
from .. import backend
from . import constraints
from .distribution import Distribution, check_args, grad_like, promote
from .normal import _HALF_LOG_2PI


class LogNormal(Distribution):
    """LogNormal(loc, scale): ``log x ~ Normal(loc, scale)``; mean exp(loc + scale^2 / 2).

    >>> import numpy as np
    >>> d = LogNormal(0.0, np.array([1.0, 0.5]))
    >>> d.log_prob(np.array(1.0))  # log N(0 | 0, scale) - log 1
    array([-0.91893853, -0.22579135])
    >>> d.log_prob(np.array(0.0))  # outside the support
    array([-inf, -inf])
    """

    has_rsample = True
    arg_names = ("loc", "scale")
    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.positive

    def __init__(self, loc, scale, validate_args=None):
        batch_shape = check_args("LogNormal", loc=loc, scale=scale)
        self.loc = loc  # as given: the ELBO finds gradients by id()
        self.scale = scale
        super().__init__(batch_shape, validate_args=validate_args)

    @property
    def mean(self):
        xp, _, (loc, scale) = promote(self.loc, self.scale)
        return xp.broadcast_to(xp.exp(loc + scale * scale / 2), self.batch_shape)  # exp(loc + scale^2 / 2)

    @property
    def variance(self):
        xp, _, (loc, scale) = promote(self.loc, self.scale)
        s2 = scale * scale
        # (exp(scale^2) - 1) exp(2 loc + scale^2); expm1 keeps a small scale exact
        return xp.broadcast_to(xp.expm1(s2) * xp.exp(2 * loc + s2), self.batch_shape)

    def rsample_with_noise(self, sample_shape=(), rng=None):
        rng = backend.global_rng() if rng is None else rng
        dtype = backend.float_dtype(self.loc, self.scale)
        eps = backend.standard_normal(rng, self.shape(sample_shape), dtype, like=self._like())
        return backend.array_module(eps).exp(self.loc + self.scale * eps), eps  # x = exp(loc + scale eps)

    def rsample_vjp(self, noise, grad_value, wrt):
        xp = backend.array_module(noise)
        x = xp.exp(self.loc + self.scale * noise)  # recomputed: the noise is all that is kept
        grads = {}
        for name in self._check_wrt(wrt, with_value=False):
            if name == "loc":  # d/dloc exp(loc + scale eps) = x
                grads["loc"] = grad_like(grad_value * x, self.loc)
            else:  # d/dscale exp(loc + scale eps) = x eps
                grads["scale"] = grad_like(grad_value * x * noise, self.scale)
        return grads

    def _standardised(self, value, *more):
        """xp, inside (x > 0), x, y = log x (0 outside), z = (y - loc) / scale, scale, *more promoted."""
        xp, _, (x, loc, scale, *more) = promote(value, self.loc, self.scale, *more)
        inside = x > 0
        y = xp.log(xp.where(inside, x, 1))  # log only ever sees positive numbers
        return (xp, inside, x, y, (y - loc) / scale, scale, *more)

    def log_prob(self, value):
        xp, inside, _, y, z, scale = self._standardised(value)
        # log p(x) = -(log x - loc)^2 / (2 scale^2) - log scale - log(2 pi) / 2 - log x, x > 0
        log_prob = -0.5 * z * z - xp.log(scale) - _HALF_LOG_2PI - y
        return self._batch_result(xp.where(inside, log_prob, -xp.inf), value)

    def log_prob_vjp(self, value, grad_log_prob, wrt):
        wrt = self._check_wrt(wrt)
        xp, inside, x, _, z, scale, g = self._standardised(value, grad_log_prob)
        g = xp.where(inside, g, 0)  # no gradient where log p = -inf (the contract)
        grads = {}
        if "value" in wrt:  # d/dx log p = -(z / scale + 1) / x
            grads["value"] = grad_like(-g * (z / scale + 1) / xp.where(inside, x, 1), value)
        if "loc" in wrt:  # d/dloc log p = (log x - loc) / scale^2 = z / scale
            grads["loc"] = grad_like(g * z / scale, self.loc)
        if "scale" in wrt:  # d/dscale log p = (z^2 - 1) / scale
            grads["scale"] = grad_like(g * (z * z - 1) / scale, self.scale)
        return grads
