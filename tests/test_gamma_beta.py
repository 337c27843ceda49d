"""Gamma and Beta (distributions/gamma.py, distributions/beta.py): the implicit slopes dz/da (and the
Beta's dz/db) against the inverse CDF moved at fixed u, reparameterised gradients of expectations
against their closed forms (within Monte Carlo error), log-densities against SciPy, sampling by
Kolmogorov-Smirnov, the KLs against numerical integration, ELBO gradients by check_gradients, and
Pyro's coin example trained by SVI."""
import numpy as np
import pytest
import scipy.integrate
import scipy.special as sp
import scipy.stats
from finite_diff import check_vjp

import minippl
import minippl.distributions as dist
from minippl.distributions import constraints
from minippl.distributions.beta import beta_slopes
from minippl.distributions.gamma import dgammainc_da, standard_gamma_slope
from minippl.infer import SVI, Trace_ELBO, TraceMeanField_ELBO, check_gradients
from minippl.optim import Adam

ALPHAS = [0.05, 0.4, 1.0, 2.5, 30.0, 500.0]
QUANTILES = [1e-6, 0.01, 0.3, 0.5, 0.7, 0.99, 1 - 1e-6]


def inverse_cdf(a, u):
    return sp.gammaincinv(a, u) if u < 0.5 else sp.gammainccinv(a, 1 - u)


@pytest.mark.parametrize("a", ALPHAS)
def test_slope_is_the_inverse_cdf_moved_at_fixed_u(a):
    # z(a) = F^-1(u; a): its five-point finite difference in a (relative step 1e-4) is the exact slope
    for u in QUANTILES:
        z = inverse_cdf(a, u)
        h = 1e-4 * a
        numeric = (8 * (inverse_cdf(a + h, u) - inverse_cdf(a - h, u))
                   - (inverse_cdf(a + 2 * h, u) - inverse_cdf(a - 2 * h, u))) / (12 * h)
        np.testing.assert_allclose(standard_gamma_slope(a, z), numeric, rtol=1e-7, err_msg=f"a={a}, u={u}")


def test_cdf_slope_matches_a_finite_difference_of_gammainc():
    a, z = np.meshgrid([0.05, 0.7, 3.0, 40.0], [0.01, 0.5, 2.0, 10.0, 45.0, 90.0])
    h = 1e-4 * a

    def cdf(a):  # where P is near 1 its digits are in Q = 1 - P: difference -Q there
        return np.where(z < a + 1, sp.gammainc(a, z), -sp.gammaincc(a, z))

    numeric = (8 * (cdf(a + h) - cdf(a - h)) - (cdf(a + 2 * h) - cdf(a - 2 * h))) / (12 * h)
    mask = np.abs(numeric) > 1e-250
    np.testing.assert_allclose(dgammainc_da(a, z)[mask], numeric[mask], rtol=1e-6)


BETA_PARAMS = [0.1, 1.5, 200.0]


def five_point(f, x, h):
    return (8 * (f(x + h) - f(x - h)) - (f(x + 2 * h) - f(x - 2 * h))) / (12 * h)


@pytest.mark.parametrize("a", BETA_PARAMS)
@pytest.mark.parametrize("b", BETA_PARAMS)
def test_beta_slopes_are_the_inverse_cdf_moved_at_fixed_u(a, b):
    # z(a, b) = I^-1(u; a, b) (SciPy's betaincinv) at fixed u: its five-point differences in a and b
    # (relative step 1e-4) are the exact slopes. In the upper half the digits are in y = 1 - z, and
    # I_z(a, b) = 1 - I_y(b, a): there y is the inverse of the upper tail u_c = I_y(b, a), taken at the
    # float z itself (y = 1 - z is exact for z >= 1/2), and dz = -dy. Where y rounds away (z == 1.0)
    # there is no float64 draw to differentiate: the sampler clips those below 1.
    for u in [1e-6, 0.01, 0.3, 0.5, 0.7, 0.99, 1 - 1e-6]:
        if u < 0.5:
            z = sp.betaincinv(a, b, u)
            inverse = lambda a, b: sp.betaincinv(a, b, u)  # noqa: E731
        else:
            z = 1 - sp.betaincinv(b, a, 1 - u)
            if z == 1:
                continue
            u_c = sp.betainc(b, a, 1 - z)
            inverse = lambda a, b: -sp.betaincinv(b, a, u_c)  # noqa: E731  (z - 1: the same slopes)
        numeric_a = five_point(lambda t: inverse(t, b), a, 1e-4 * a)
        numeric_b = five_point(lambda t: inverse(a, t), b, 1e-4 * b)
        # rtol: finite_diff.py's 1e-6 (measured: within 8e-8; mpmath puts the slopes within 1.4e-11)
        np.testing.assert_allclose(beta_slopes(a, b, z), (numeric_a, numeric_b), rtol=1e-6,
                                   err_msg=f"a={a}, b={b}, u={u}, z={z}")


def test_beta_slopes_refuse_to_truncate():
    # a + b = 2e9 needs ~ 8.3 sqrt(a + b) = 3.7e5 series terms, beyond the cap: an error, not a guess
    with pytest.raises(ArithmeticError, match=r"Beta: .* did not converge .* at a = \[1000000000.0\], "
                                              r"b = \[1000000000.0\], x = \[0.5\]; .* a \+ b up to about 1.4e8"):
        beta_slopes(1e9, 1e9, 0.5)


def test_gamma_slope_refuses_to_truncate_naming_the_values_and_the_limit():
    # a = z = 1e12 needs ~ 6 sqrt(a) = 6e6 series terms, beyond the cap
    with pytest.raises(ArithmeticError, match=r"Gamma .* did not converge .* at a = \[1000000000000.0\], "
                                              r"z = \[1000000000000.0\]; .* a concentration a up to about 1e8"):
        dist.Gamma(np.array([1e12, 2.0]), 1.0).rsample_vjp(np.array([1e12, 1.0]), np.ones(2), ["concentration"])


def test_gamma_rsample_vjp_is_the_scaled_slope():
    d = dist.Gamma(np.array([0.3, 4.0]), np.array([2.0, 0.5]))
    z, z1 = d.rsample_with_noise((3,), np.random.default_rng(0))
    np.testing.assert_allclose(z, z1 / d.rate, rtol=1e-15)
    grads = d.rsample_vjp(z1, np.ones((3, 2)), ["concentration", "rate"])
    np.testing.assert_allclose(grads["concentration"], (standard_gamma_slope(d.concentration, z1) / d.rate).sum(0))
    np.testing.assert_allclose(grads["rate"], (-z / d.rate).sum(0))  # dz/drate = -z / rate


def per_draw_gradients(make, args, cotangent_of_z, n=40_000, seed=0):
    """Per-draw reparameterised gradients of f(z) (args repeated n times, one draw each)."""
    repeated = {k: np.full(n, v) for k, v in args.items()}
    d = make(**repeated)
    z, noise = d.rsample_with_noise((), np.random.default_rng(seed))
    return d.rsample_vjp(noise, cotangent_of_z(z), list(args))


def assert_within_monte_carlo_error(per_draw, exact):
    # the mean of n draws is within 5 standard errors of its expectation
    mean, se = per_draw.mean(), per_draw.std() / np.sqrt(per_draw.size)
    assert abs(mean - exact) < 5 * se + 1e-12, f"{mean} vs {exact} (standard error {se:.2e})"


@pytest.mark.parametrize("a, rate", [(0.3, 1.0), (2.0, 0.5), (25.0, 3.0)])
def test_gamma_reparameterised_gradients_of_expectations(a, rate):
    make = dist.Gamma
    # E[log z] = psi(a) - log rate: d/da = psi'(a), d/drate = -1 / rate  (f = log z: df/dz = 1 / z)
    grads = per_draw_gradients(make, dict(concentration=a, rate=rate), lambda z: 1 / z)
    assert_within_monte_carlo_error(grads["concentration"], sp.polygamma(1, a))
    assert_within_monte_carlo_error(grads["rate"], -1 / rate)
    # E[z^2] = a (a + 1) / rate^2: d/da = (2a + 1) / rate^2, d/drate = -2 a (a + 1) / rate^3
    grads = per_draw_gradients(make, dict(concentration=a, rate=rate), lambda z: 2 * z, seed=1)
    assert_within_monte_carlo_error(grads["concentration"], (2 * a + 1) / rate**2)
    assert_within_monte_carlo_error(grads["rate"], -2 * a * (a + 1) / rate**3)


@pytest.mark.parametrize("a, b", [(0.1, 0.3), (0.5, 0.5), (2.0, 5.0), (30.0, 4.0), (200.0, 0.1)])
def test_beta_reparameterised_gradients_of_expectations(a, b):
    args = dict(concentration1=a, concentration0=b)
    # E[z] = a / (a + b): d/da = b / (a + b)^2, d/db = -a / (a + b)^2
    grads = per_draw_gradients(dist.Beta, args, np.ones_like)
    assert_within_monte_carlo_error(grads["concentration1"], b / (a + b) ** 2)
    assert_within_monte_carlo_error(grads["concentration0"], -a / (a + b) ** 2)
    # E[z^2] = a (a + 1) / (s (s + 1)), s = a + b: d/db = -a (a + 1) (2s + 1) / (s (s + 1))^2 and
    # d/da = (2a + 1) / (s (s + 1)) + d/db  (f = z^2: df/dz = 2z)
    s = a + b
    d_db = -a * (a + 1) * (2 * s + 1) / (s * (s + 1)) ** 2
    grads = per_draw_gradients(dist.Beta, args, lambda z: 2 * z, seed=2)
    assert_within_monte_carlo_error(grads["concentration1"], (2 * a + 1) / (s * (s + 1)) + d_db)
    assert_within_monte_carlo_error(grads["concentration0"], d_db)
    # E[log z] = psi(a) - psi(a + b): d/da = psi'(a) - psi'(a + b), d/db = -psi'(a + b)
    grads = per_draw_gradients(dist.Beta, args, lambda z: 1 / z, seed=1)
    assert_within_monte_carlo_error(grads["concentration1"], sp.polygamma(1, a) - sp.polygamma(1, a + b))
    assert_within_monte_carlo_error(grads["concentration0"], -sp.polygamma(1, a + b))


def test_log_prob_matches_scipy():
    rng = np.random.default_rng(0)
    a, rate = np.array([0.2, 1.0, 3.5, 80.0]), np.array([0.3, 1.0, 2.0, 7.0])
    z = rng.gamma(a, 1 / rate, (5, 4))
    np.testing.assert_allclose(dist.Gamma(a, rate).log_prob(z), scipy.stats.gamma.logpdf(z, a, scale=1 / rate),
                               rtol=1e-10)
    b = np.array([0.4, 1.0, 2.0, 15.0])
    x = rng.beta(a, b, (5, 4))
    np.testing.assert_allclose(dist.Beta(a, b).log_prob(x), scipy.stats.beta.logpdf(x, a, b), rtol=1e-10)
    assert np.all(dist.Gamma(1.5, 1.0).log_prob(np.array([0.0, -1.0])) == -np.inf)
    assert np.all(dist.Beta(1.5, 2.0).log_prob(np.array([0.0, 1.0, 1.5])) == -np.inf)


@pytest.mark.parametrize("make, args, value", [
    (dist.Gamma, dict(concentration=np.array([0.1, 2.0, 40.0]), rate=np.array([0.5, 3.0, 1.0])),
     np.array([[0.05, 0.4, 35.0], [2.0, 1.1, 44.0]])),
    (dist.Beta, dict(concentration1=np.array([0.1, 2.0, 40.0]), concentration0=np.array([0.3, 3.0, 1.5])),
     np.array([[0.15, 0.4, 0.8], [0.7, 0.25, 0.9]])),  # away from 0 and 1: the stencil's step
])
def test_log_prob_vjps_match_finite_differences(make, args, value):
    names = ["value"] + list(args)
    check_vjp(lambda value, **a: make(**a).log_prob(value), dict(args, value=value),
              lambda g, value, **a: make(**a).log_prob_vjp(value, g, names))


@pytest.mark.parametrize("a, rate", [(0.05, 1.0), (0.7, 2.0), (3.0, 0.5), (300.0, 10.0)])
def test_gamma_samples_pass_kolmogorov_smirnov(a, rate):
    z = dist.Gamma(a, rate).sample((20_000,), np.random.default_rng(0))
    assert scipy.stats.kstest(z, scipy.stats.gamma(a, scale=1 / rate).cdf).pvalue > 1e-3


@pytest.mark.parametrize("a, b", [(0.1, 0.3), (0.5, 0.5), (2.0, 5.0), (50.0, 20.0)])
def test_beta_samples_pass_kolmogorov_smirnov(a, b):
    z = dist.Beta(a, b).sample((20_000,), np.random.default_rng(0))
    assert scipy.stats.kstest(z, scipy.stats.beta(a, b).cdf).pvalue > 1e-3


def test_float32_draws_stay_inside_the_support():
    rng = np.random.default_rng(0)
    z = dist.Gamma(np.float32([0.01, 0.5]), np.float32([1.0, 1e3])).sample((5000,), rng)
    assert z.dtype == np.float32 and np.all(z > 0)
    assert np.all(np.isfinite(dist.Gamma(np.float32([0.01, 0.5]), np.float32([1.0, 1e3])).log_prob(z)))
    x = dist.Beta(np.float32([0.02, 50.0]), np.float32([50.0, 0.02])).sample((5000,), rng)
    assert x.dtype == np.float32 and np.all((x > 0) & (x < 1))
    assert np.all(np.isfinite(dist.Beta(np.float32([0.02, 50.0]), np.float32([50.0, 0.02])).log_prob(x)))


def kl_by_quadrature(p, q, low, high):
    value, _ = scipy.integrate.quad(lambda z: p.pdf(z) * (p.logpdf(z) - q.logpdf(z)), low, high,
                                    epsabs=1e-13, epsrel=1e-11, limit=200)
    return value


@pytest.mark.parametrize("ap, rp, aq, rq", [(1.0, 1.0, 1.0, 1.0), (0.7, 2.0, 3.0, 0.5), (12.0, 3.0, 9.0, 2.5)])
def test_gamma_kl_matches_numerical_integration(ap, rp, aq, rq):
    expected = kl_by_quadrature(scipy.stats.gamma(ap, scale=1 / rp), scipy.stats.gamma(aq, scale=1 / rq), 0, np.inf)
    kl = dist.kl_divergence(dist.Gamma(ap, rp), dist.Gamma(aq, rq))
    np.testing.assert_allclose(kl, expected, rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize("a1, b1, a2, b2", [(1.0, 1.0, 1.0, 1.0), (0.8, 2.0, 3.0, 0.6), (15.0, 7.0, 4.0, 5.0)])
def test_beta_kl_matches_numerical_integration(a1, b1, a2, b2):
    expected = kl_by_quadrature(scipy.stats.beta(a1, b1), scipy.stats.beta(a2, b2), 0, 1)
    kl = dist.kl_divergence(dist.Beta(a1, b1), dist.Beta(a2, b2))
    np.testing.assert_allclose(kl, expected, rtol=1e-7, atol=1e-12)


def positive(rng, *shape):
    return np.exp(0.5 * rng.standard_normal(shape))


@pytest.mark.parametrize("cls, names", [(dist.Gamma, ("concentration", "rate")),
                                        (dist.Beta, ("concentration1", "concentration0"))])
def test_kl_vjps_match_finite_differences(cls, names):
    rng = np.random.default_rng(0)
    first, second = names
    args = {f"{first}_p": positive(rng, 2, 3), f"{second}_p": positive(rng, 3),
            f"{first}_q": positive(rng), f"{second}_q": positive(rng, 2, 1)}

    def pair(**a):
        p = cls(a[f"{first}_p"], a[f"{second}_p"]).to_event(1)
        q = cls(a[f"{first}_q"], a[f"{second}_q"]).expand((2, 3)).to_event(1)
        return p, q

    def vjp(g, **a):
        grads_p, grads_q = dist.kl_divergence_vjp(*pair(**a), g, names, names)
        return {**{k + "_p": v for k, v in grads_p.items()}, **{k + "_q": v for k, v in grads_q.items()}}

    check_vjp(lambda **a: dist.kl_divergence(*pair(**a)), args, vjp)


def gamma_model(y):
    z = minippl.sample("z", dist.Gamma(2.0, 1.5))
    with minippl.plate("data", len(y)):
        minippl.sample("obs", dist.Normal(z, 1.0), obs=y)


def gamma_guide(y):
    a = minippl.param("a", np.array(3.0), constraint=constraints.positive)
    rate = minippl.param("rate", np.array(2.0), constraint=constraints.positive)
    minippl.sample("z", dist.Gamma(a, rate))


def beta_model(y):
    p = minippl.sample("p", dist.Beta(2.0, 3.0))
    with minippl.plate("data", len(y)):
        minippl.sample("obs", dist.Bernoulli(probs=p), obs=y)


def beta_guide(y):
    a = minippl.param("a", np.array(1.5), constraint=constraints.positive)
    b = minippl.param("b", np.array(2.5), constraint=constraints.positive)
    minippl.sample("p", dist.Beta(a, b))


@pytest.mark.parametrize("loss", [Trace_ELBO(), TraceMeanField_ELBO()], ids=["Trace_ELBO", "TraceMeanField_ELBO"])
@pytest.mark.parametrize("model, guide, y", [(gamma_model, gamma_guide, np.array([0.5, 1.7, 2.2])),
                                             (beta_model, beta_guide, np.array([1.0, 0.0, 1.0, 1.0]))],
                         ids=["Gamma", "Beta"])
def test_elbo_gradients_match_finite_differences(model, guide, y, loss):
    check_gradients(model, guide, y, loss=loss)


def test_pyro_coin_example_reaches_the_exact_posterior_mean():
    # Pyro's SVI tutorial: fairness ~ Beta(10, 10), 6 heads in 10 tosses; exact posterior Beta(16, 14)
    data = np.array([1.0] * 6 + [0.0] * 4)

    def model(data):
        f = minippl.sample("latent_fairness", dist.Beta(10.0, 10.0))
        with minippl.plate("data", len(data)):
            minippl.sample("obs", dist.Bernoulli(probs=f), obs=data)

    def guide(data):
        alpha_q = minippl.param("alpha_q", np.array(15.0), constraint=constraints.positive)
        beta_q = minippl.param("beta_q", np.array(15.0), constraint=constraints.positive)
        minippl.sample("latent_fairness", dist.Beta(alpha_q, beta_q))

    minippl.set_rng_seed(0)
    svi = SVI(model, guide, Adam({"lr": 0.05}), Trace_ELBO(num_particles=4))
    means = []
    for step in range(600):
        svi.step(data)
        if step >= 300:  # average the last steps: one-step noise keeps the params wandering
            store = minippl.get_param_store()
            a, b = float(store["alpha_q"]), float(store["beta_q"])
            means.append(a / (a + b))
    exact = 16 / 30
    assert abs(np.mean(means) - exact) < 0.01, (np.mean(means), exact)


def test_gamma_and_beta_score_the_closed_ends_of_their_supports_as_torch():
    # torch's supports are [0, inf) and [0, 1]: at an edge the vanishing factor's power decides
    np.testing.assert_allclose(dist.Gamma(np.array([1.0, 0.5, 2.0]), 1.0).log_prob(np.zeros(3)), [0.0, np.inf, -np.inf])
    np.testing.assert_allclose(dist.Beta(np.array([0.5, 2.0, 1.0]), 3.0).log_prob(np.zeros(3)),
                               [np.inf, -np.inf, np.log(3.0)])
    assert dist.Gamma(2.0, 1.0).log_prob(np.array(-1.0)) == -np.inf
    assert dist.Beta(2.0, 0.5).log_prob(np.array(1.0)) == np.inf


@pytest.mark.parametrize("make", [lambda f: dist.Gamma(f(2.0), f(1.5)), lambda f: dist.Beta(f(2.0), f(3.0)),
                                  lambda f: dist.Beta(f(1.0), f(0.5))])
def test_float32_log_prob_and_its_gradients_stay_float32(make):
    # the edge of the support (a density's power of zero) must not widen a float32 model to float64
    d = make(lambda v: np.full(3, v, dtype=np.float32))
    x = np.array([0.0, 0.3, 0.6], dtype=np.float32)
    assert d.log_prob(x).dtype == np.float32
    grads = d.log_prob_vjp(np.array([0.3, 0.6, 0.2], np.float32), np.ones(3, np.float32), ["value", *d.arg_names])
    assert all(g.dtype == np.float32 for g in grads.values()), {k: g.dtype for k, g in grads.items()}
