"""Exponential and Laplace: noise made from a uniform by a closed-form inverse CDF.

Teaches: the inverse-CDF trick, ``eps = F^-1(u)`` for ``u ~ U[0, 1)``, written so that
float32 never takes the log of 0 (``-log1p(-u)``: ``1 - u`` is in (0, 1]); a support
that starts at 0 (Pyro's ``nonnegative``: 0 itself has a finite log-density); and a
log-density with a kink (Laplace's ``|x - loc|``, whose derivative is a sign). The
reparameterised draw is ``x = eps / rate`` and ``x = loc + scale * eps``, so every sampler
VJP is one line. Builds on distribution.py (the complete Exponential example in its
docstring is this file's first class, with validation and moments added).
"""
from .. import backend
from . import constraints
from .normal import LocScale
from .distribution import Distribution, check_args, grad_like, promote


def standard_exponential(rng, shape, dtype, like):
    """Exponential(1) noise by the inverse CDF: -log(1 - u), u ~ U[0, 1); never log(0)."""
    u = backend.uniform(rng, shape, dtype, like=like)
    return -backend.array_module(u).log1p(-u)


class Exponential(Distribution):
    """Exponential(rate): density rate exp(-rate x) on [0, inf); mean 1 / rate.

    >>> import numpy as np
    >>> d = Exponential(np.array([0.5, 2.0]))
    >>> d.log_prob(np.array(1.0))  # log rate - rate x
    array([-1.19314718, -1.30685282])
    >>> d.mean, d.variance
    (array([2. , 0.5]), array([4.  , 0.25]))
    """

    has_rsample = True
    arg_names = ("rate",)
    arg_constraints = {"rate": constraints.positive}
    support = constraints.nonnegative  # torch's: [0, inf), 0 is scored

    def __init__(self, rate, validate_args=None):
        batch_shape = check_args("Exponential", rate=rate)
        self.rate = rate  # as given: the ELBO finds gradients by id()
        super().__init__(batch_shape, validate_args=validate_args)

    @property
    def mean(self):
        xp, _, (rate,) = promote(self.rate)
        return xp.broadcast_to(1 / rate, self.batch_shape)

    @property
    def variance(self):
        xp, _, (rate,) = promote(self.rate)
        return xp.broadcast_to(1 / (rate * rate), self.batch_shape)

    @property
    def stddev(self):
        return self.mean  # 1 / rate exactly, as torch's: sqrt(1 / rate^2) under- or overflows past rate ~ 1e154

    def rsample_with_noise(self, sample_shape=(), rng=None):
        rng = backend.global_rng() if rng is None else rng
        eps = standard_exponential(rng, self.shape(sample_shape), backend.float_dtype(self.rate), self._like())
        return eps / self.rate, eps  # x = eps / rate, eps ~ Exponential(1)

    def rsample_vjp(self, noise, grad_value, wrt):
        # d/drate (eps / rate) = -eps / rate^2; the only name wrt can hold is "rate"
        return {name: grad_like(-grad_value * noise / self.rate**2, self.rate)
                for name in self._check_wrt(wrt, with_value=False)}

    def log_prob(self, value):
        xp, _, (x, rate) = promote(value, self.rate)
        # log p(x) = log rate - rate x on [0, inf), -inf below 0
        return self._batch_result(xp.where(x >= 0, xp.log(rate) - rate * x, -xp.inf), value)

    def log_prob_vjp(self, value, grad_log_prob, wrt):
        xp, _, (x, rate, g) = promote(value, self.rate, grad_log_prob)
        g = xp.where(x >= 0, g, 0)  # no gradient where log p = -inf (the contract)
        grads = {}
        for name in self._check_wrt(wrt):
            if name == "value":  # d/dx (log rate - rate x) = -rate
                grads["value"] = grad_like(-g * rate, value)
            else:  # d/drate (log rate - rate x) = 1 / rate - x
                grads["rate"] = grad_like(g * (1 / rate - x), self.rate)
        return grads


class Laplace(LocScale, Distribution):
    """Laplace(loc, scale): density exp(-|x - loc| / scale) / (2 scale); variance 2 scale^2.

    Drawn as ``loc + scale * eps`` with ``eps = -sign(v) log(1 - |v|)``, ``v = 2u - 1``:
    an Exponential(1) with a random sign.

    >>> import numpy as np
    >>> d = Laplace(0.0, np.array([1.0, 2.0]))
    >>> d.log_prob(np.array(1.0))  # -log(2 scale) - |x - loc| / scale
    array([-1.69314718, -1.88629436])
    >>> d.log_prob_vjp(np.array(1.0), np.ones(2), ["loc"])["loc"]  # sign(x - loc) / scale, summed
    array(1.5)
    """

    support = constraints.real  # loc, scale and the sampler's VJP: normal.py's LocScale

    @property
    def mean(self):
        xp, _, (loc, _) = promote(self.loc, self.scale)
        return xp.broadcast_to(loc, self.batch_shape)

    @property
    def variance(self):
        xp, _, (_, scale) = promote(self.loc, self.scale)
        return xp.broadcast_to(2 * scale * scale, self.batch_shape)

    def rsample_with_noise(self, sample_shape=(), rng=None):
        rng = backend.global_rng() if rng is None else rng
        dtype = backend.float_dtype(self.loc, self.scale)
        u = backend.uniform(rng, self.shape(sample_shape), dtype, like=self._like())
        xp = backend.array_module(u)
        # v in [-1 + eps, 1 - eps] (u's largest value is 1 - eps / 2): 1 - |v| > 0, no log(0)
        v = xp.maximum(2 * u - 1, xp.asarray(-1 + xp.finfo(u.dtype).eps, dtype=u.dtype))
        eps = -xp.sign(v) * xp.log1p(-xp.abs(v))  # Laplace(0, 1) by the inverse CDF
        return self.loc + self.scale * eps, eps

    def log_prob(self, value):
        xp, _, (x, loc, scale) = promote(value, self.loc, self.scale)
        # log p(x) = -log(2 scale) - |x - loc| / scale
        return self._batch_result(-xp.log(2 * scale) - xp.abs(x - loc) / scale, value)

    def log_prob_vjp(self, value, grad_log_prob, wrt):
        wrt = self._check_wrt(wrt)
        xp, _, (x, loc, scale, g) = promote(value, self.loc, self.scale, grad_log_prob)
        diff = x - loc
        grads = {}
        if "value" in wrt or "loc" in wrt:
            g_sign = g * xp.sign(diff) / scale  # 0 at the kink x = loc, as torch's sign
            if "value" in wrt:  # d/dx log p = -sign(x - loc) / scale
                grads["value"] = grad_like(-g_sign, value)
            if "loc" in wrt:  # d/dloc log p = sign(x - loc) / scale
                grads["loc"] = grad_like(g_sign, self.loc)
        if "scale" in wrt:  # d/dscale log p = (|x - loc| / scale - 1) / scale
            grads["scale"] = grad_like(g * (xp.abs(diff) / scale - 1) / scale, self.scale)
        return grads
