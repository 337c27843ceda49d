"""Beta: the implicit gradient through the Beta CDF, whose parameter derivatives are derived here.

Teaches: gamma.py's implicit reparameterisation applied to the Beta itself. With ``u = I_z(a, b)``,
the regularised incomplete beta (the CDF, SciPy's ``betainc``), held fixed,

    dz/dtheta = -(dI_z(a, b)/dtheta) / p(z; a, b),

and ``dI/da``, ``dI/db`` come from differentiating a representation of ``I`` term by term.
Write ``I_x(a, b) = P S`` with ``P = x^a (1-x)^b / (a B(a, b))``; since the density is
``p = x^(a-1) (1-x)^(b-1) / B(a, b)``, ``P / p = x (1 - x) / a``, so in ratio form

    dz/da = -x (1-x) / a * (S (log x - 1/a - psi(a) + psi(a+b)) + dS/da),
    dz/db = -x (1-x) / a * (S (log(1-x) - psi(b) + psi(a+b)) + dS/db),

where neither ``P`` nor ``p`` is ever formed (they under- and overflow long before the ratio
does). ``S`` is the same number ``I / P`` in two forms, each where it converges fast:

* the series ``S = sum_n t_n``, ``t_0 = 1``, ``t_n = t_(n-1) (a+b+n-1) x / (a+n)`` (that is
  ``2F1(a+b, 1; a+1; x)``), all terms positive, so no cancellation; term by term,
  ``dt_n/da = t_n sum_(k<=n) (1/(a+b+k-1) - 1/(a+k))`` (one sign for all k, so ``dS/da`` has no
  cancellation either) and ``dt_n/db = t_n sum_(k<=n) 1/(a+b+k-1)``;
* where ``x`` is near 1 the series' terms shrink only like ``x^n`` (``37 / (1 - x)`` terms), and
  the continued fraction ``S = 1/(1 + d_1/(1 + d_2/(1 + ...)))`` (Numerical Recipes 6.4) takes over:
  ``d_(2m+1) = -(a+m)(a+b+m) x / ((a+2m)(a+2m+1))``, ``d_(2m) = m (b-m) x / ((a+2m-1)(a+2m))``,
  differentiated in ``a`` and ``b`` alongside its convergents (forward mode, as gamma.py's fraction).

Both are used only below the switch point ``x < (a+1)/(a+b+2)``, where the series' term ratios
stay below 1 (its terms only shrink) and the fraction converges fast; above it the symmetry ``I_x(a, b) = 1 -
I_(1-x)(b, a)`` (same density) swaps the roles of ``a`` and ``b`` and flips the sign, so the
series or fraction always computes the small tail of the CDF (where it is near 1, its
derivative from ``I`` itself would cancel). The series serves arguments up to 1/2, the fraction
those above. Terms needed (measured, float64 convergence at the quantiles 1e-10 ... 1 - 1e-10):
the series about ``8.3 sqrt(a + b)`` near ``a = b`` (865 at ``a + b = 1e4``, 8330 at 1e6), fewer
elsewhere; the fraction at most 165 steps for ``a + b`` up to 1e6. Past ``a + b ~ 1.4e8`` the
series would need more than gamma.py's cap of 1e5 terms, and it raises rather than truncate.
Measured against mpmath (40 digits, its CDF differentiated numerically, on the side that holds
the tail's digits) on a grid of ``a, b`` in [0.05, 1000] and ``z`` at the quantiles above, the
switch point and fixed points in (0, 1), 1183 points: ``dz/da`` and ``dz/db``, hence
``(dI/da) / P`` and ``(dI/db) / P``, within 1.4e-11 relative (99% within 3e-12); the largest
errors are where ``log x`` nearly cancels ``psi(a + b) - psi(a)``, a difference of nearby numbers.

Sampling. As gamma.py's, the draw is the inverse CDF of a uniform (SciPy's ``betaincinv``, and
``betainccinv`` of ``1 - u`` in the upper half), so that it is the function of (args, noise) the
Distribution contract asks for and tests/test_contracts.py can check ``rsample_vjp`` by redrawing
with the same noise; a draw made as ``x / (x + y)`` from Gamma draws has the same law, but moves
with ``a`` along a different path than the one at fixed ``u``. The noise is the float64 draw,
clipped inside (0, 1) as the value is in its dtype. Builds on distribution.py and gamma.py
(``_converged_loop``, ``_inverse_cdf_draw``, ``digamma``, ``_power_of_zero``, ``_log_at_edge``) and counts.py
(``special_function``).
"""
import numpy as np
from scipy import special

from .. import backend
from . import constraints
from .counts import special_function
from .distribution import Distribution, check_args, grad_like, promote
from .gamma import _converged_loop, _inverse_cdf_draw, _log_at_edge, _power_of_zero, digamma

_EPS = np.finfo(np.float64).eps
_BETA_LOOP = ("Beta: the slopes dz/da, dz/db of a draw z (the CDF's series or continued fraction, in (a, b, x = z) "
              "or, past the switch point, (b, a, x = 1 - z))", ("a", "b", "x"), "a + b up to about 1.4e8")


def _series(a, b, x):
    """(S, dS/da, dS/db) by the series: the terms t_n and their log-derivatives Da, Db."""
    def step(n, st):
        a_, b_, x_ = st["a"], st["b"], st["x"]
        ratio = (a_ + b_ + n - 1) * x_ / (a_ + n)  # t_n / t_(n-1)
        t = st["t"] * ratio
        Da = st["Da"] + 1 / (a_ + b_ + n - 1) - 1 / (a_ + n)  # d log t_n / da
        Db = st["Db"] + 1 / (a_ + b_ + n - 1)  # d log t_n / db
        S, Sa, Sb = st["S"] + t, st["Sa"] + t * Da, st["Sb"] + t * Db
        # later ratios stay below max(ratio, x) < 1 (they fall to x if b > 1, rise to it if b < 1),
        # so the rest of the sum is below t r / (1 - r), r = max(ratio, x), and |Da|, Db grow slower
        r = np.maximum(ratio, x_)
        done = t * r / (1 - r) * (1 + np.abs(Da) + Db) <= 0.5 * _EPS * S
        return dict(st, t=t, Da=Da, Db=Db, S=S, Sa=Sa, Sb=Sb), done

    one, zero = np.ones_like(x), np.zeros_like(x)
    out = _converged_loop(dict(a=a, b=b, x=x, t=one, Da=zero, Db=zero, S=one, Sa=zero, Sb=zero), step,
                          ("S", "Sa", "Sb"), *_BETA_LOOP)
    return out["S"], out["Sa"], out["Sb"]


def _fraction(a, b, x):
    """(S, dS/da, dS/db) by the continued fraction, its convergents A_n / B_n differentiated in a, b."""
    def step(n, st):
        a_, b_, x_ = st["a"], st["b"], st["x"]
        m = (n - 1) // 2  # partial numerators 1, d_1, d_2, ...: the n-th is d_(n-1), m as in its formula
        if n == 1:
            d, da, db = np.ones_like(x_), 0.0, 0.0
        elif n % 2 == 0:  # d_(2m+1) = -(a+m)(a+b+m) x / ((a+2m)(a+2m+1)), differentiated through its logs
            d = -(a_ + m) * (a_ + b_ + m) * x_ / ((a_ + 2 * m) * (a_ + 2 * m + 1))
            da = d * (1 / (a_ + m) + 1 / (a_ + b_ + m) - 1 / (a_ + 2 * m) - 1 / (a_ + 2 * m + 1))
            db = d / (a_ + b_ + m)
        else:  # d_(2m) = m (b-m) x / ((a+2m-1)(a+2m)); db written without dividing by b - m
            d = m * (b_ - m) * x_ / ((a_ + 2 * m - 1) * (a_ + 2 * m))
            da = -d * (1 / (a_ + 2 * m - 1) + 1 / (a_ + 2 * m))
            db = m * x_ / ((a_ + 2 * m - 1) * (a_ + 2 * m))
        new = {}  # X_n = X_(n-1) + d X_(n-2) for X = A, B, and its derivative in each parameter
        for X in "AB":
            new[X] = st[X + "1"] + d * st[X + "2"]
            for p, dp in (("a", da), ("b", db)):
                new[X + p] = st[X + p + "1"] + dp * st[X + "2"] + d * st[X + p + "2"]
        r = 1 / new["B"]  # rescale everything by B_n (f = A_n / B_n unchanged): no overflow
        f = new["A"] * r  # and d(A / B) = (dA - (A / B) dB) / B:
        fa, fb = (new["Aa"] - f * new["Ba"]) * r, (new["Ab"] - f * new["Bb"]) * r
        done = (n > 2) & (np.abs(f - st["f"]) + np.abs(fa - st["fa"]) + np.abs(fb - st["fb"])
                          <= _EPS * (np.abs(f) + np.abs(fa) + np.abs(fb)))
        st = dict(st, f=f, fa=fa, fb=fb)
        for key in ("A", "B", "Aa", "Ba", "Ab", "Bb"):
            st[key + "2"], st[key + "1"] = st[key + "1"] * r, new[key] * r
        return st, done

    one, zero = np.ones_like(x), np.zeros_like(x)
    start = dict(a=a, b=b, x=x, f=zero, fa=zero, fb=zero, A2=one, A1=zero, B2=zero, B1=one)  # A_-1, A_0, B_-1, B_0
    start.update({k: zero for k in ("Aa1", "Aa2", "Ba1", "Ba2", "Ab1", "Ab2", "Bb1", "Bb2")})
    out = _converged_loop(start, step, ("f", "fa", "fb"), *_BETA_LOOP)
    return out["f"], out["fa"], out["fb"]


def _cdf_slopes_over_P(a, b, x, use_fraction):
    """``(dI/da, dI/db) / P`` for ``I_x(a, b) = P S``: ``d/da log P = log x - 1/a - psi(a) + psi(a+b)``."""
    S, Sa, Sb = (np.empty_like(x) for _ in range(3))
    for where, method in ((use_fraction, _fraction), (~use_fraction, _series)):
        S[where], Sa[where], Sb[where] = method(a[where], b[where], x[where])
    psi_total = special.digamma(a + b)
    return (S * (np.log(x) - 1 / a - special.digamma(a) + psi_total) + Sa,
            S * (np.log1p(-x) - special.digamma(b) + psi_total) + Sb)


def beta_slopes(a, b, z):
    """``(dz/da, dz/db) = -(dI_z(a, b)/d(a, b)) / p(z; a, b)`` for ``z ~ Beta(a, b)``, float64.

    >>> u, h = special.betainc(2.0, 3.0, 0.3), 1e-5  # against the inverse CDF moved at fixed u
    >>> round(float((special.betaincinv(2 + h, 3.0, u) - special.betaincinv(2 - h, 3.0, u)) / (2 * h)), 8)
    0.13950892
    >>> [round(float(slope), 8) for slope in beta_slopes(2.0, 3.0, 0.3)]
    [0.13950892, -0.07343824]
    """
    a, b, z = np.broadcast_arrays(*(np.asarray(v, np.float64) for v in (a, b, z)))
    shape, a, b, z = a.shape, a.ravel(), b.ravel(), z.ravel()
    lower = z < (a + 1) / (a + b + 2)  # below: I_z(a, b) is the small tail; above: 1 - I_(1-z)(b, a) is
    s = np.where(lower, z, 1 - z)  # the argument, and (p, q) the parameters, of the side computed
    p, q = np.where(lower, a, b), np.where(lower, b, a)
    use_fraction = s > 0.5  # the series' tail shrinks like s^n: slow only near 1
    dI_dp, dI_dq = _cdf_slopes_over_P(p, q, s, use_fraction)
    # below: dz/d(a, b) = -(P / p)(dI/da, dI/db) / P with P / p = z (1 - z) / a; above, I = 1 - I'
    # with I' = I_(1-z)(b, a): dz/da = +(P' / p) dI'/db' / P', P' / p = z (1 - z) / b, and a <-> b
    scale = np.where(lower, -1, 1) * z * (1 - z) / p
    da, db = scale * np.where(lower, dI_dp, dI_dq), scale * np.where(lower, dI_dq, dI_dp)
    return da.reshape(shape), db.reshape(shape)


class Beta(Distribution):
    """Beta(concentration1, concentration0): density ``z^(a-1) (1-z)^(b-1) / B(a, b)`` on (0, 1),
    a = concentration1, b = concentration0; mean a / (a + b) (torch's names).

    >>> d = Beta(np.array([1.0, 2.0]), 2.0)
    >>> d.log_prob(np.array(0.5))  # log 2 + log 0.5; log 6 + 2 log 0.5
    array([0.        , 0.40546511])
    >>> d.mean
    array([0.33333333, 0.5       ])
    """

    has_rsample = True
    arg_names = ("concentration1", "concentration0")
    arg_constraints = {"concentration1": constraints.positive, "concentration0": constraints.positive}
    support = constraints.unit_interval  # closed [0, 1], as torch's

    def __init__(self, concentration1, concentration0, validate_args=None):
        batch_shape = check_args("Beta", concentration1=concentration1, concentration0=concentration0)
        self.concentration1 = concentration1  # as given: the ELBO finds gradients by id()
        self.concentration0 = concentration0
        super().__init__(batch_shape, validate_args=validate_args)

    @property
    def mean(self):
        xp, _, (a, b) = promote(self.concentration1, self.concentration0)
        return xp.broadcast_to(a / (a + b), self.batch_shape)

    @property
    def variance(self):
        xp, _, (a, b) = promote(self.concentration1, self.concentration0)
        total = a + b
        return xp.broadcast_to(a * b / (total * total * (total + 1)), self.batch_shape)  # ab / ((a+b)^2 (a+b+1))

    def rsample_with_noise(self, sample_shape=(), rng=None):
        rng = backend.global_rng() if rng is None else rng
        xp, dtype, (a, b) = promote(self.concentration1, self.concentration0)
        z = _inverse_cdf_draw(rng, self.shape(sample_shape), special.betaincinv, special.betainccinv, a, b)
        noise = np.clip(z, np.finfo(np.float64).tiny, 1 - np.finfo(np.float64).epsneg)  # the float64 draw
        info = np.finfo(dtype)  # the value is kept inside (0, 1) in its own dtype too
        return xp.clip(xp.asarray(noise).astype(dtype), info.tiny, 1 - info.epsneg), xp.asarray(noise)

    def rsample_vjp(self, noise, grad_value, wrt):
        xp, dtype, (a, b, g) = promote(self.concentration1, self.concentration0, grad_value)
        wrt = self._check_wrt(wrt, with_value=False)
        # dz/da, dz/db at the draw, implicit (module docstring); both come out of one pass
        slopes = beta_slopes(backend.to_host(a), backend.to_host(b), backend.to_host(noise))
        return {name: grad_like((g * xp.asarray(slope)).astype(dtype), getattr(self, name))
                for name, slope in zip(self.arg_names, slopes) if name in wrt}

    def _parts(self, value, *more):
        xp, dtype, (z, a, b, *more) = promote(value, self.concentration1, self.concentration0, *more)
        inside = (z > 0) & (z < 1)
        x = xp.where(inside, z, 0.5)  # logs only ever see (0, 1)
        return xp, inside, z, x, a, b, more

    def log_prob(self, value):
        xp, inside, z, x, a, b, _ = self._parts(value)
        # log p = (a - 1) log z + (b - 1) log(1 - z) - log B(a, b); at z = 0 or 1 (torch's support is
        # [0, 1]) the vanishing factor's power gives 0, +inf or -inf, as for the Gamma at 0
        log_beta = special_function("betaln", a, b)
        log_p = (a - 1) * xp.log(x) + (b - 1) * xp.log1p(-x) - log_beta
        edge = xp.where(z == 0, _power_of_zero(a - 1, xp), _power_of_zero(b - 1, xp)) - log_beta
        return self._batch_result(xp.where(inside, log_p, xp.where((z == 0) | (z == 1), edge, -xp.inf)), value)

    def log_prob_vjp(self, value, grad_log_prob, wrt):
        wrt = self._check_wrt(wrt)
        xp, inside, z, _, a, b, (g,) = self._parts(value, grad_log_prob)
        # gradients only where log p is finite (the contract): 0 < z < 1, or an edge whose power is 0
        # (z = 0 with a = 1, z = 1 with b = 1), where the slopes are one-sided; 0 elsewhere
        g = xp.where(inside | ((z == 0) & (a == 1)) | ((z == 1) & (b == 1)), g, 0)
        # z for the terms in z (1 where z <= 0), and for those in 1 - z (0 where z >= 1): no log 0, no / 0
        z_a, z_b = xp.where(z > 0, z, 1), xp.where(z < 1, z, 0)
        grads = {}
        if "value" in wrt:  # d/dz log p = (a - 1) / z - (b - 1) / (1 - z)  (the edge's term is 0 / 1)
            grads["value"] = grad_like(g * ((a - 1) / z_a - (b - 1) / (1 - z_b)), value)
        if "concentration1" in wrt or "concentration0" in wrt:
            psi_total = digamma(a + b)  # d/da log B(a, b) = psi(a) - psi(a + b)
        if "concentration1" in wrt:  # d/da log p = log z - psi(a) + psi(a + b)  (-inf at z = 0)
            log_z = _log_at_edge(xp.log(z_a), z > 0, g, xp)
            grads["concentration1"] = grad_like(g * (log_z - digamma(a) + psi_total), self.concentration1)
        if "concentration0" in wrt:  # d/db log p = log(1 - z) - psi(b) + psi(a + b)  (-inf at z = 1)
            log_1mz = _log_at_edge(xp.log1p(-z_b), z < 1, g, xp)
            grads["concentration0"] = grad_like(g * (log_1mz - digamma(b) + psi_total), self.concentration0)
        return grads
