"""Gamma: implicit reparameterisation, a gradient through a sampler without a formula.

Teaches: a draw need not be a closed-form ``f(args, noise)`` to be differentiated. For any
continuous ``z ~ F(.; theta)``, hold the quantile ``u = F(z; theta)`` fixed and move ``theta``:
``F(z(theta); theta) = u`` gives, by the implicit function theorem (Figurnov, Mohamed and Mnih
2018, "Implicit Reparameterization Gradients"; Jankowiak and Obermeyer 2018, "Pathwise
Derivatives Beyond the Reparameterization Trick"),

    dz/dtheta = -(dF(z; theta)/dtheta) / p(z; theta),

which needs the CDF's derivative in theta, never the inverse CDF's. For Gamma(a, 1) the CDF
is the regularised lower incomplete gamma ``P(a, z)`` (SciPy's ``gammainc``), and its slope in
``a`` is derived here by hand (``_slope``), in two forms, each where it converges fast:

* ``z < a + 1``, the series ``P(a, z) = z^a e^-z sum_n z^n / Gamma(a + n + 1)``, differentiated
  term by term: ``d/da z^(a+n) / Gamma(a + n + 1) = (log z - psi(a + n + 1)) (same term)``, with
  ``psi(a + n + 1) = psi(a + 1) + sum_{k<=n} 1 / (a + k)`` (digamma by recurrence);
* ``z >= a + 1``, Legendre's continued fraction for the upper tail
  ``Q(a, z) = 1 - P(a, z) = z^a e^-z / Gamma(a) * 1/(b_1 + a_2/(b_2 + ...))`` with
  ``b_n = z + 2n - 1 - a`` and ``a_n = -(n - 1)(n - 1 - a)``, whose convergents ``A_n / B_n``
  obey ``A_n = b_n A_{n-1} + a_n A_{n-2}`` (same for B); differentiating that recurrence in ``a``
  gives the fraction's exact slope alongside it (forward mode by hand), and ``dP/da = -dQ/da``
  (no cancellation against 1 where P is near 1).

Both are divided by the density in closed form (the prefactors cancel: ``z / a`` and ``z``), so
``dz/da`` never under- or overflows. Measured against mpmath (40-80 digits) on a grid of
``a`` in [1e-4, 2000] and ``z`` in [1e-300, 700] (both regions and their boundary) plus the
quantiles 1e-10 ... 1 - 1e-10 of ``a`` up to 1e4: ``dz/da`` within 3e-14 relative, ``dP/da``
(``dgammainc_da``, which multiplies by the density) within 3e-12 for ``a <= 2000`` and 2e-11 at
``a = 1e4`` (there the error is that of evaluating the density, not of the slope). Each form
runs to float64 convergence: about ``z + 6 sqrt(z)`` terms of the series, ``O(sqrt(a))`` near
``z = a``, a few dozen fraction steps elsewhere.

Sampling. The draw is the inverse CDF of a uniform, SciPy's ``gammaincinv`` (``gammainccinv``
of ``1 - u`` in the upper half, where that keeps the tail's digits): it is exact to float64
(measured: the CDF of the draw within 1e-13 of u), and it makes the draw the function of
``(args, noise)`` that the Distribution contract asks for, so tests/test_contracts.py checks
``rsample_vjp`` by redrawing with the same noise. Any exact sampler (NumPy's
``standard_gamma``) would give the same gradient in distribution; the gradient formula does not
use the sampler. ``Gamma(a, rate)`` is ``z1 / rate`` with ``z1 ~ Gamma(a, 1)``
(``dz/drate = -z / rate``). Draws are made in float64 and clipped away from 0 by the dtype's
tiny, so a float32 ``log z`` is finite. beta.py applies the same idea to the Beta's own CDF.
Builds on distribution.py and counts.py (``lgamma`` and ``special_function``: SciPy, CuPy's on a GPU).
"""
import numpy as np
from scipy import special

from .. import backend
from . import constraints
from .counts import lgamma, special_function
from .distribution import Distribution, check_args, grad_like, promote

_EPS = np.finfo(np.float64).eps
_MAX_TERMS = 100_000  # the series near z = a takes O(sqrt(a)) terms: enough for a up to ~1e8


def digamma(x):
    return special_function("digamma", x)


# ---------------------------------------------------------------- the slope dz/da of Gamma(a, 1)
def _converged_loop(state, step, active_state_names, what, shown, limit):
    """Run ``step(n, state) -> (state, done)`` on shrinking arrays until every element is done. If some
    element is not done in time, the error names ``what`` (the sum being run), the values of the state
    entries ``shown`` (the parameters) at the first such elements, and ``limit`` (the documented range)."""
    out = {k: v.copy() for k, v in state.items()}
    index = np.arange(next(iter(state.values())).size)
    for n in range(1, _MAX_TERMS):
        if index.size == 0:
            break
        state, done = step(n, state)
        if done.any():
            for k in active_state_names:
                out[k][index[done]] = state[k][done]
            state = {k: v[~done] for k, v in state.items()}
            index = index[~done]
    if index.size:  # nothing wrong is silent: a truncated sum would be a wrong gradient
        values = ", ".join(f"{k} = {state[k][:3].tolist()}" for k in shown) + (", ..." if index.size > 3 else "")
        raise ArithmeticError(f"{what} did not converge within {_MAX_TERMS} terms at {index.size} element(s), "
                              f"at {values}; it is documented for {limit}")
    return out


_GAMMA_LOOP = ("Gamma (or a Chi2, InverseGamma, StudentT or Dirichlet, drawn from it): the slope dz/da of a draw "
               "z (the CDF's series or continued fraction)", ("a", "z"),
               "a concentration a up to about 1e8 (beyond it, Gamma(a, rate) is Normal(a / rate, sqrt(a) / rate) "
               "to within 2 / sqrt(a) < 2e-4)")


def _series_slope(a, z):
    """dz/da for z < a + 1: ``z / a * (T - (log z - psi(a + 1)) S)``, S and T the sums below."""
    # s_n = z^n / ((a + 1) ... (a + n)),  S = sum s_n,  T = sum s_n H_n,  H_n = sum_{k<=n} 1 / (a + k)
    def step(n, st):
        H = st["H"] + 1 / (st["a"] + n)
        s = st["s"] * st["z"] / (st["a"] + n)
        S, T = st["S"] + s, st["T"] + s * H
        done = (s * (1 + H) <= 0.5 * _EPS * S) & (st["a"] + n > st["z"])  # terms past their peak, negligible
        return dict(st, H=H, s=s, S=S, T=T), done

    one, zero = np.ones_like(z), np.zeros_like(z)
    out = _converged_loop(dict(a=a, z=z, s=one, S=one, T=zero, H=zero), step, ("S", "T"), *_GAMMA_LOOP)
    # P = z^a e^-z / Gamma(a + 1) * S, so dP/da = z^a e^-z / Gamma(a + 1) * ((log z - psi(a + 1)) S - T);
    # divided by -p(z) = -z^(a-1) e^-z / Gamma(a), the prefactor leaves z / a
    return z / a * (out["T"] - (np.log(z) - special.digamma(a + 1)) * out["S"])


def _fraction_slope(a, z):
    """dz/da for z >= a + 1: ``z * (f (log z - psi(a)) + df/da)``, f Legendre's continued fraction."""
    def step(n, st):
        a_, z_ = st["a"], st["z"]
        b = z_ + 2 * n - 1 - a_  # db_n/da = -1
        an = np.ones_like(z_) if n == 1 else -(n - 1) * (n - 1 - a_)
        dan = 0.0 if n == 1 else n - 1.0  # da_n/da = n - 1 (a_1 = 1)
        A = b * st["A1"] + an * st["A2"]  # A_n = b_n A_{n-1} + a_n A_{n-2}, and its derivative:
        dA = -st["A1"] + b * st["dA1"] + dan * st["A2"] + an * st["dA2"]
        B = b * st["B1"] + an * st["B2"]
        dB = -st["B1"] + b * st["dB1"] + dan * st["B2"] + an * st["dB2"]
        r = 1 / B  # rescale all by B_n (f = A_n / B_n unchanged): no overflow
        f, df = A * r, (dA - A * r * dB) * r  # d(A / B) = (dA - (A / B) dB) / B
        done = ((n > 1) & (np.abs(f - st["f"]) <= _EPS * np.abs(f))
                & (np.abs(df - st["df"]) <= _EPS * np.abs(df)))
        return dict(st, A2=st["A1"] * r, A1=f, B2=st["B1"] * r, B1=np.ones_like(B), dA2=st["dA1"] * r,
                    dA1=dA * r, dB2=st["dB1"] * r, dB1=dB * r, f=f, df=df), done

    one, zero = np.ones_like(z), np.zeros_like(z)
    # A_{-1} = 1, A_0 = 0, B_{-1} = 0, B_0 = 1 (the fraction has b_0 = 0)
    start = dict(a=a, z=z, A2=one, A1=zero, B2=zero, B1=one, dA2=zero, dA1=zero, dB2=zero, dB1=zero,
                 f=zero, df=zero)
    out = _converged_loop(start, step, ("f", "df"), *_GAMMA_LOOP)
    # Q = z^a e^-z / Gamma(a) * f, dQ/da = z^a e^-z / Gamma(a) * (f (log z - psi(a)) + df); dz/da = dQ/da / p(z)
    return z * (out["f"] * (np.log(z) - special.digamma(a)) + out["df"])


def standard_gamma_slope(a, z):
    """``dz/da = -(dP(a, z)/da) / p(z; a)`` for ``z ~ Gamma(a, 1)``, float64, broadcast shape.

    >>> u, h = special.gammainc(1.0, 1.0), 1e-5  # against the inverse CDF moved at fixed u
    >>> round(float((special.gammaincinv(1 + h, u) - special.gammaincinv(1 - h, u)) / (2 * h)), 8)
    1.17356303
    >>> round(float(standard_gamma_slope(1.0, 1.0)), 8)
    1.17356303
    """
    a, z = np.broadcast_arrays(np.asarray(a, np.float64), np.asarray(z, np.float64))
    shape, a, z = a.shape, a.ravel(), z.ravel()
    slope = np.empty_like(z)
    series = z < a + 1
    slope[series] = _series_slope(a[series], z[series])
    slope[~series] = _fraction_slope(a[~series], z[~series])
    return slope.reshape(shape)


def dgammainc_da(a, z):
    """``d/da gammainc(a, z)``: the slope times minus the Gamma(a, 1) density (mpmath: 3e-12).

    >>> h = 1e-6; round(float((special.gammainc(2 + h, 3.) - special.gammainc(2 - h, 3.)) / (2 * h)), 8)
    -0.19742542
    >>> round(float(dgammainc_da(2.0, 3.0)), 8)
    -0.19742542
    """
    a, z = np.broadcast_arrays(np.asarray(a, np.float64), np.asarray(z, np.float64))
    return -standard_gamma_slope(a, z) * np.exp((a - 1) * np.log(z) - z - special.gammaln(a))


def _inverse_cdf_draw(rng, shape, inverse, upper_inverse, *params):
    """Draws of ``shape`` in float64: ``inverse(*params, u)`` of a uniform u, or, where u >= 1/2,
    ``upper_inverse(*params, 1 - u)`` from the upper tail: 1 - u is exact there and keeps its digits."""
    params = [np.broadcast_to(np.asarray(backend.to_host(p), np.float64), shape) for p in params]
    u = rng.random(shape)
    lower = u < 0.5
    return np.where(lower, inverse(*params, np.where(lower, u, 0.25)),
                    upper_inverse(*params, np.where(lower, 0.75, 1 - u)))


def _standard_gamma(rng, a, shape):
    """Gamma(a, 1) draws of ``shape`` in float64 by the inverse CDF, clipped to >= tiny."""
    z = _inverse_cdf_draw(rng, shape, special.gammaincinv, special.gammainccinv, a)
    return np.maximum(z, np.finfo(np.float64).tiny)


def _host_slope(a, z):
    return standard_gamma_slope(backend.to_host(a), backend.to_host(z))


def _power_of_zero(c, xp):
    """lim c log z as z -> 0+: 0 for c = 0, +inf for c < 0, -inf for c > 0 (a density's edge)."""
    edge = xp.where(c == 0, 0.0, xp.where(c < 0, xp.inf, -xp.inf))
    return edge.astype(c.dtype, copy=False) if getattr(c, "dtype", None) is not None else edge  # float32 stays


def _log_at_edge(log_z, positive, g, xp):
    """``log z`` where ``positive``, else log 0 = -inf: d/da of (a - 1) log z at an edge z = 0 where log p is
    finite (a = 1; a > 1 makes it -inf, so the one-sided slope is -inf). 0 where g = 0 (0 * inf is NaN)."""
    return xp.where(positive, log_z, xp.where(g == 0, 0.0, -xp.inf).astype(log_z.dtype, copy=False))  # float32 stays


class Gamma(Distribution):
    """Gamma(concentration, rate): density ``rate^a z^(a-1) e^(-rate z) / Gamma(a)`` on z > 0;
    mean a / rate, variance a / rate^2 (torch's parametrisation).

    >>> d = Gamma(np.array([1.0, 3.0]), 2.0)
    >>> d.log_prob(np.array(0.5))  # log 2 - 1; 3 log 2 + 2 log 0.5 - 1 - log Gamma(3)
    array([-0.30685282, -1.        ])
    >>> d.mean, d.variance
    (array([0.5, 1.5]), array([0.25, 0.75]))
    """

    has_rsample = True
    arg_names = ("concentration", "rate")
    arg_constraints = {"concentration": constraints.positive, "rate": constraints.positive}
    support = constraints.nonnegative  # torch's: 0 is scored

    def __init__(self, concentration, rate, validate_args=None):
        batch_shape = check_args("Gamma", concentration=concentration, rate=rate)
        self.concentration = concentration  # as given: the ELBO finds gradients by id()
        self.rate = rate
        super().__init__(batch_shape, validate_args=validate_args)

    @property
    def mean(self):
        xp, _, (a, rate) = promote(self.concentration, self.rate)
        return xp.broadcast_to(a / rate, self.batch_shape)

    @property
    def variance(self):
        xp, _, (a, rate) = promote(self.concentration, self.rate)
        return xp.broadcast_to(a / (rate * rate), self.batch_shape)

    def rsample_with_noise(self, sample_shape=(), rng=None):
        rng = backend.global_rng() if rng is None else rng
        xp, dtype, (a, rate) = promote(self.concentration, self.rate)
        z1 = xp.asarray(_standard_gamma(rng, a, self.shape(sample_shape)))  # noise: the Gamma(a, 1) draw
        z = xp.maximum((z1 / rate).astype(dtype), np.finfo(dtype).tiny)  # z = z1 / rate, > 0 in dtype
        return z, z1

    def rsample_vjp(self, noise, grad_value, wrt):
        xp, dtype, (a, rate, g) = promote(self.concentration, self.rate, grad_value)
        grads = {}
        for name in self._check_wrt(wrt, with_value=False):
            if name == "concentration":  # dz/da = (dz1/da) / rate, dz1/da implicit (module docstring)
                slope = xp.asarray(_host_slope(a, noise))
                grads[name] = grad_like((g * slope / rate).astype(dtype), self.concentration)
            else:  # d/drate z1 / rate = -z1 / rate^2
                grads[name] = grad_like((-g * noise / (rate * rate)).astype(dtype), self.rate)
        return grads

    def _parts(self, value, *more):
        xp, dtype, (z, a, rate, *more) = promote(value, self.concentration, self.rate, *more)
        inside = z > 0
        x = xp.where(inside, z, 1)  # log only ever sees positive numbers
        return xp, inside, z == 0, x, xp.log(x), a, rate, more

    def log_prob(self, value):
        xp, inside, at_zero, x, log_x, a, rate, _ = self._parts(value)
        # log p = a log rate + (a - 1) log z - rate z - lgamma(a); at z = 0 (torch's support is
        # [0, inf)) the term (a - 1) log z is 0, +inf or -inf as a = 1, a < 1 or a > 1
        log_p = a * xp.log(rate) + (a - 1) * log_x - rate * x - lgamma(a)
        edge = a * xp.log(rate) - lgamma(a) + _power_of_zero(a - 1, xp)
        return self._batch_result(xp.where(inside, log_p, xp.where(at_zero, edge, -xp.inf)), value)

    def log_prob_vjp(self, value, grad_log_prob, wrt):
        wrt = self._check_wrt(wrt)
        xp, inside, at_zero, x, log_x, a, rate, (g,) = self._parts(value, grad_log_prob)
        # gradients only where log p is finite (the contract): z > 0, or z = 0 with a = 1, where log p =
        # log rate - rate z and its slopes are one-sided (Exponential(rate)'s); 0 elsewhere
        g = xp.where(inside | (at_zero & (a == 1)), g, 0)
        grads = {}
        if "value" in wrt:  # d/dz log p = (a - 1) / z - rate  (-rate at z = 0: x is 1 there, a - 1 is 0)
            grads["value"] = grad_like(g * ((a - 1) / x - rate), value)
        if "concentration" in wrt:  # d/da log p = log rate + log z - psi(a)  (-inf at z = 0)
            log_z = _log_at_edge(log_x, inside, g, xp)
            grads["concentration"] = grad_like(g * (xp.log(rate) + log_z - digamma(a)), self.concentration)
        if "rate" in wrt:  # d/drate log p = a / rate - z
            grads["rate"] = grad_like(g * (a / rate - xp.where(inside, x, 0)), self.rate)
        return grads
