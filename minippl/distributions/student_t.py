"""Chi2, InverseGamma and StudentT: distributions drawn from a Gamma draw, differentiated through it.

Teaches: once one sampler has a gradient (gamma.py's implicit slope ``dz/dalpha``), every
closed-form function of its draw has one too, by the chain rule, with no new derivation:

* ``Chi2(df)`` *is* ``Gamma(df / 2, 1 / 2)``: every number is the Gamma's, and a gradient in
  ``df`` is the Gamma's gradient in its concentration times ``da/ddf = 1 / 2``;
* ``InverseGamma(a, rate)`` is ``x = 1 / y`` with ``y ~ Gamma(a, rate)``: the sampler's VJP
  hands the Gamma's the cotangent ``g dx/dy = -g x^2``, and the density is the Gamma's at
  ``1 / x`` times ``|dy/dx| = 1 / x^2`` (the change of variables);
* ``StudentT(df, loc, scale)`` is ``t = loc + scale z / sqrt(g / df)`` with ``z ~ N(0, 1)`` and
  the mixing variable ``g ~ Chi2(df)``: ``t`` depends on ``df`` directly and through ``g``, and
  the two paths add (``dt/ddf = scale eps / (2 df)`` plus ``dt/dg = -scale eps / (2 g)`` handed
  to Chi2's VJP, ``eps = z sqrt(df / g)``).

All draws come from gamma.py's inverse-CDF sampler (then N(0, 1) noise for StudentT), so each is
a deterministic function of the seed and the arguments, as the Distribution contract's test wants.
Builds on gamma.py (Gamma) and counts.py (``lgamma``).
"""
import numpy as np

from .. import backend
from . import constraints
from .counts import lgamma
from .distribution import Distribution, check_args, grad_like, promote
from .gamma import Gamma, digamma


class Chi2(Distribution):
    """Chi2(df): the chi-squared distribution, ``Gamma(df / 2, 1 / 2)``; mean df, variance 2 df.

    A thin wrapper: each method asks the Gamma (made on demand from the stored ``df``) and only
    renames its concentration gradient (so ``isinstance(Chi2(1.), Gamma)`` is False, unlike Pyro).

    >>> d = Chi2(np.array([1.0, 4.0]))
    >>> d.log_prob(np.array(2.0))  # a log(1/2) + (a - 1) log 2 - 1 - lgamma(a), a = df / 2
    array([-2.26551212, -1.69314718])
    >>> d.mean, d.variance
    (array([1., 4.]), array([2., 8.]))
    """

    has_rsample = True
    arg_names = ("df",)
    arg_constraints = {"df": constraints.positive}
    support = constraints.nonnegative  # torch's: the Gamma's, 0 included

    def __init__(self, df, validate_args=None):
        batch_shape = check_args("Chi2", df=df)
        self.df = df  # as given: the ELBO finds gradients by id()
        super().__init__(batch_shape, validate_args=validate_args)

    def _gamma(self):
        """The Gamma(df / 2, 1 / 2) that does the work, at this batch shape (after ``expand`` too)."""
        return Gamma(0.5 * self.df, 0.5, validate_args=False).expand(self.batch_shape)

    @property
    def mean(self):
        return self._gamma().mean

    @property
    def variance(self):
        return self._gamma().variance

    def _from_gamma(self, grads):
        if "concentration" in grads:  # d/ddf = d/da * da/ddf, a = df / 2
            grads["df"] = grad_like(0.5 * grads.pop("concentration"), self.df)
        return grads

    def rsample_with_noise(self, sample_shape=(), rng=None):
        return self._gamma().rsample_with_noise(sample_shape, rng)

    def rsample_vjp(self, noise, grad_value, wrt):
        inner = ["concentration"] if self._check_wrt(wrt, with_value=False) else []  # the only name is "df"
        return self._from_gamma(self._gamma().rsample_vjp(noise, grad_value, inner))

    def log_prob(self, value):
        return self._gamma().log_prob(value)

    def log_prob_vjp(self, value, grad_log_prob, wrt):
        inner = ["concentration" if name == "df" else name for name in self._check_wrt(wrt)]
        return self._from_gamma(self._gamma().log_prob_vjp(value, grad_log_prob, inner))


class InverseGamma(Distribution):
    """InverseGamma(concentration, rate): ``1 / y`` for ``y ~ Gamma(concentration, rate)``; density
    ``rate^a x^(-a-1) e^(-rate / x) / Gamma(a)`` on x > 0; mean ``rate / (a - 1)`` (a > 1, else inf),
    variance ``rate^2 / ((a - 1)^2 (a - 2))`` (a > 2, else inf).

    >>> d = InverseGamma(np.array([3.0]), 2.0)
    >>> d.log_prob(np.array(1.0))  # 3 log 2 - 4 log 1 - 2 - log Gamma(3)
    array([-0.61370564])
    >>> d.mean, d.variance
    (array([1.]), array([1.]))
    """

    has_rsample = True
    arg_names = ("concentration", "rate")
    arg_constraints = {"concentration": constraints.positive, "rate": constraints.positive}
    support = constraints.positive

    def __init__(self, concentration, rate, validate_args=None):
        batch_shape = check_args("InverseGamma", concentration=concentration, rate=rate)
        self.concentration = concentration  # as given: the ELBO finds gradients by id()
        self.rate = rate
        super().__init__(batch_shape, validate_args=validate_args)

    def _gamma(self):
        """The Gamma(concentration, rate) of 1 / x, on the same argument objects, at this batch shape."""
        return Gamma(self.concentration, self.rate, validate_args=False).expand(self.batch_shape)

    @property
    def mean(self):
        xp, _, (a, rate) = promote(self.concentration, self.rate)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = xp.where(a > 1, rate / (a - 1), xp.inf)  # E[1 / y] = rate / (a - 1)
        return xp.broadcast_to(mean, self.batch_shape)

    @property
    def variance(self):
        xp, _, (a, rate) = promote(self.concentration, self.rate)
        with np.errstate(divide="ignore", invalid="ignore"):
            variance = xp.where(a > 2, rate * rate / ((a - 1) ** 2 * (a - 2)), xp.inf)
        return xp.broadcast_to(variance, self.batch_shape)

    def rsample_with_noise(self, sample_shape=(), rng=None):
        y, noise = self._gamma().rsample_with_noise(sample_shape, rng)  # y >= tiny, so 1 / y is finite
        return backend.array_module(y).maximum(1 / y, np.finfo(y.dtype).tiny), noise  # x = 1 / y, > 0

    def rsample_vjp(self, noise, grad_value, wrt):
        wrt = self._check_wrt(wrt, with_value=False)
        dtype = backend.float_dtype(self.concentration, self.rate, grad_value)
        _, _, (rate, g) = promote(self.rate, grad_value)
        x = rate / noise  # the draw in float64: x = 1 / y = rate / z1
        # d <g, x> / dy = -g x^2 (x = 1 / y), handed to the Gamma's VJP in float64
        grads = self._gamma().rsample_vjp(noise, -g * x * x, wrt)
        return {name: grad.astype(dtype) for name, grad in grads.items()}

    def _parts(self, value, *more):
        xp, _, (x, _, _, *more) = promote(value, self.concentration, self.rate, *more)
        inside = x > 0
        x = xp.where(inside, x, 1)  # log only ever sees positive numbers
        y = xp.where(inside, 1 / x, -1)  # y = 1 / x; outside, a point the Gamma scores -inf
        return xp, inside, x, y, more

    def log_prob(self, value):
        xp, inside, x, y, _ = self._parts(value)
        # log p(x) = log p_Gamma(1 / x) + log |dy/dx| = log p_Gamma(1 / x) - 2 log x
        return self._batch_result(self._gamma().log_prob(y) - 2 * xp.where(inside, xp.log(x), 0), value)

    def log_prob_vjp(self, value, grad_log_prob, wrt):
        wrt = self._check_wrt(wrt)
        xp, inside, x, y, (g,) = self._parts(value, grad_log_prob)
        grads = self._gamma().log_prob_vjp(y, g, wrt)  # the same names: "value" is y there
        if "value" in wrt:  # d/dx = d/dy log p_Gamma(y) * dy/dx - 2 / x, dy/dx = -1 / x^2
            through_y = -grads["value"] / (x * x)
            grads["value"] = grad_like(xp.where(inside, -2 * g / x, 0), value) + through_y
        return grads


class StudentT(Distribution):
    """StudentT(df, loc=0., scale=1.): density ``Gamma((df + 1) / 2) / (Gamma(df / 2) sqrt(df pi)
    scale) (1 + y^2 / df)^(-(df + 1) / 2)``, ``y = (t - loc) / scale``; mean loc (df > 1, else nan),
    variance ``scale^2 df / (df - 2)`` (df > 2; inf for 1 < df <= 2, else nan), as in torch.

    >>> d = StudentT(np.array([1.0, 3.0]), 1.0, 2.0)
    >>> d.log_prob(np.array(1.0))  # the Cauchy's -log(2 pi); lgamma(2) - lgamma(3/2) - log(sqrt(3 pi) 2)
    array([-1.83787707, -1.69403603])
    """

    has_rsample = True
    arg_names = ("df", "loc", "scale")
    arg_constraints = {"df": constraints.positive, "loc": constraints.real, "scale": constraints.positive}
    support = constraints.real

    def __init__(self, df, loc=0.0, scale=1.0, validate_args=None):
        batch_shape = check_args("StudentT", df=df, loc=loc, scale=scale)
        self.df = df  # as given: the ELBO finds gradients by id()
        self.loc = loc
        self.scale = scale
        super().__init__(batch_shape, validate_args=validate_args)

    def _chi2(self):
        """The mixing variable's Chi2(df), on the stored ``df``, at this batch shape."""
        return Chi2(self.df, validate_args=False).expand(self.batch_shape)

    @property
    def mean(self):
        xp, _, (df, loc) = promote(self.df, self.loc)
        return xp.broadcast_to(xp.where(df > 1, loc, xp.nan), self.batch_shape)

    @property
    def variance(self):
        xp, _, (df, scale) = promote(self.df, self.scale)
        with np.errstate(divide="ignore", invalid="ignore"):
            variance = xp.where(df > 2, scale * scale * df / (df - 2), xp.where(df > 1, xp.inf, xp.nan))
        return xp.broadcast_to(variance, self.batch_shape)

    def rsample_with_noise(self, sample_shape=(), rng=None):
        rng = backend.global_rng() if rng is None else rng
        xp, dtype, (df, loc, scale) = promote(self.df, self.loc, self.scale)
        g, chi2_noise = self._chi2().rsample_with_noise(sample_shape, rng)  # g ~ Chi2(df), drawn first
        z = backend.standard_normal(rng, self.shape(sample_shape), dtype, like=self._like())
        eps = z * xp.sqrt(df / g)  # a StudentT(df) draw: z / sqrt(g / df)
        return (loc + scale * eps).astype(dtype), (z, g, chi2_noise)

    def rsample_vjp(self, noise, grad_value, wrt):
        z, g_chi2, chi2_noise = noise
        xp, dtype, (df, loc, scale, g) = promote(self.df, self.loc, self.scale, grad_value)
        eps = z * xp.sqrt(df / g_chi2)
        grads = {}
        for name in self._check_wrt(wrt, with_value=False):
            if name == "loc":  # dt/dloc = 1
                grads[name] = grad_like(g.astype(dtype), self.loc, copy=True)
            elif name == "scale":  # dt/dscale = eps
                grads[name] = grad_like((g * eps).astype(dtype), self.scale)
            else:  # dt/ddf = scale eps / (2 df) directly, plus dt/dg dg/ddf with dt/dg = -scale eps / (2 g)
                direct = grad_like(g * scale * eps / (2 * df), self.df)
                # (in float64: g may be float32's tiny, and eps / g would overflow there)
                to_g = -(g * scale * eps).astype(np.float64) / (2 * g_chi2.astype(np.float64))
                through = self._chi2().rsample_vjp(chi2_noise, to_g, ["df"])["df"]
                grads[name] = grad_like((direct + through).astype(dtype), self.df)
        return grads

    def _parts(self, value, *more):
        """With u = (t - loc) / (scale sqrt(df)): log(1 + u^2), u^2 / (1 + u^2) and u / (1 + u^2),
        written in 1 / u where |u| > 1, so that u^2 never overflows (float32 tails reach 1e19)."""
        xp, _, (x, df, loc, scale, *more) = promote(value, self.df, self.loc, self.scale, *more)
        d, s = x - loc, scale * xp.sqrt(df)  # u = d / s, never formed where |u| > 1
        big = xp.abs(d) > s
        v = xp.where(big, s, d) / xp.where(big, d, s)  # 1 / u where big, u elsewhere: |v| <= 1
        v2 = v * v
        # log(1 + u^2) = 2 log |d / s| + log(1 + 1 / u^2) where |u| > 1
        log1p_u2 = 2 * (xp.log(xp.where(big, xp.abs(d), 1)) - xp.log(xp.where(big, s, 1))) + xp.log1p(v2)
        w = xp.where(big, 1, v2) / (1 + v2)  # u^2 / (1 + u^2) = 1 / (1 + 1 / u^2)
        r = v / (1 + v2)  # u / (1 + u^2) = (1 / u) / (1 + 1 / u^2)
        return xp, df, scale, log1p_u2, w, r, more

    def log_prob(self, value):
        xp, df, scale, log1p_u2, _, _, _ = self._parts(value)
        # log p = lgamma((df + 1) / 2) - lgamma(df / 2) - log(df pi) / 2 - log scale - (df + 1) / 2 log(1 + u^2)
        log_p = (lgamma(0.5 * (df + 1)) - lgamma(0.5 * df) - 0.5 * xp.log(np.pi * df) - xp.log(scale)
                 - 0.5 * (df + 1) * log1p_u2)
        return self._batch_result(log_p, value)

    def log_prob_vjp(self, value, grad_log_prob, wrt):
        wrt = self._check_wrt(wrt)
        xp, df, scale, log1p_u2, w, r, (g,) = self._parts(value, grad_log_prob)
        grads = {}
        if "value" in wrt or "loc" in wrt:
            d_value = -g * (df + 1) * r / (scale * xp.sqrt(df))  # d/dt log p = -(df + 1) u / ((1 + u^2) scale sqrt(df))
            if "value" in wrt:
                grads["value"] = grad_like(d_value, value)
            if "loc" in wrt:  # d/dloc log p = -d/dt log p
                grads["loc"] = grad_like(-d_value, self.loc)
        if "scale" in wrt:  # d/dscale log p = (-1 + (df + 1) u^2 / (1 + u^2)) / scale
            grads["scale"] = grad_like(g * ((df + 1) * w - 1) / scale, self.scale)
        if "df" in wrt:
            # d/ddf log p = (psi((df + 1) / 2) - psi(df / 2) - 1 / df - log(1 + u^2)
            #                + (df + 1) / df u^2 / (1 + u^2)) / 2
            d_df = 0.5 * (digamma(0.5 * (df + 1)) - digamma(0.5 * df) - 1 / df - log1p_u2 + (df + 1) / df * w)
            grads["df"] = grad_like(g * d_df, self.df)
        return grads
