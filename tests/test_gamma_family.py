"""Dirichlet (distributions/dirichlet.py), Chi2, InverseGamma and StudentT (distributions/student_t.py):
log-densities against SciPy, log-prob VJPs and sampler VJPs (at fixed noise: the same seed) against
float64 finite differences, reparameterised gradients of expectations against their closed forms
(within 5 Monte Carlo standard errors), sampling by Kolmogorov-Smirnov (Dirichlet: its Beta marginals
and its covariance), the Dirichlet KL against Beta's and Monte Carlo, its VJPs against finite
differences, and ELBO gradients by check_gradients."""
import numpy as np
import pytest
import scipy.special as sp
import scipy.stats
from finite_diff import check_vjp

import minippl
import minippl.distributions as dist
from minippl.distributions import constraints
from minippl.infer import Trace_ELBO, TraceMeanField_ELBO, check_gradients


# ---------------------------------------------------------------- log-densities
def test_log_prob_matches_scipy():
    rng = np.random.default_rng(0)
    alpha = np.array([[0.3, 1.0, 2.5], [4.0, 0.7, 12.0]])
    x = np.stack([rng.dirichlet(a, 5) for a in alpha], axis=1)  # (5, 2, 3)
    expected = np.stack([scipy.stats.dirichlet.logpdf(x[:, i].T, a) for i, a in enumerate(alpha)], axis=1)
    np.testing.assert_allclose(dist.Dirichlet(alpha).log_prob(x), expected, rtol=1e-10)
    df = np.array([0.5, 1.0, 3.0, 40.0])
    z = rng.chisquare(df, (5, 4))
    np.testing.assert_allclose(dist.Chi2(df).log_prob(z), scipy.stats.chi2.logpdf(z, df), rtol=1e-10)
    a, rate = np.array([0.4, 1.0, 3.5, 30.0]), np.array([0.3, 1.0, 2.0, 7.0])
    y = 1 / rng.gamma(a, 1 / rate, (5, 4))
    np.testing.assert_allclose(dist.InverseGamma(a, rate).log_prob(y), scipy.stats.invgamma.logpdf(y, a, scale=rate),
                               rtol=1e-10)
    loc, scale = np.array([0.0, -1.0, 2.0, 0.5]), np.array([1.0, 0.5, 3.0, 2.0])
    t = loc + scale * rng.standard_t(df, (5, 4))
    np.testing.assert_allclose(dist.StudentT(df, loc, scale).log_prob(t),
                               scipy.stats.t.logpdf(t, df, loc, scale), rtol=1e-10)
    # outside the support
    assert np.all(dist.Dirichlet(np.array([1.5, 2.0])).log_prob(np.array([[0.0, 1.0], [-0.5, 1.5]])) == -np.inf)
    np.testing.assert_allclose(dist.Chi2(2.0).log_prob(np.array([0.0, -1.0])), [np.log(0.5), -np.inf])  # torch: 0 is in
    assert np.all(dist.InverseGamma(2.0, 1.0).log_prob(np.array([0.0, -1.0])) == -np.inf)


@pytest.mark.parametrize("make, args, value", [
    (dist.Dirichlet, dict(concentration=np.array([[0.1, 2.0, 40.0], [1.0, 0.5, 3.0]])),
     np.array([[[0.2, 0.3, 0.5], [0.6, 0.1, 0.3]], [[0.05, 0.15, 0.8], [0.3, 0.3, 0.4]]])),
    (dist.Chi2, dict(df=np.array([0.2, 3.0, 60.0])), np.array([[0.05, 2.4, 55.0], [1.0, 7.0, 70.0]])),
    (dist.InverseGamma, dict(concentration=np.array([0.1, 2.0, 40.0]), rate=np.array([0.5, 3.0, 1.0])),
     np.array([[0.05, 0.4, 0.03], [2.0, 1.1, 0.02]])),
    (dist.StudentT, dict(df=np.array([0.5, 3.0, 200.0]), loc=np.array([0.0, 1.0, -2.0]),
                         scale=np.array([1.0, 0.3, 4.0])), np.array([[-3.0, 1.2, 5.0], [40.0, 0.9, -2.5]])),
])
def test_log_prob_vjps_match_finite_differences(make, args, value):
    names = ["value"] + list(args)
    check_vjp(lambda value, **a: make(**a).log_prob(value), dict(args, value=value),
              lambda g, value, **a: make(**a).log_prob_vjp(value, g, names))


# ---------------------------------------------------------------- samplers at fixed noise
@pytest.mark.parametrize("make, args", [
    (dist.Dirichlet, dict(concentration=np.array([[0.3, 1.0, 7.0, 2.0], [50.0, 2.0, 0.8, 5.0]]))),
    (dist.Chi2, dict(df=np.array([0.3, 2.0, 80.0]))),
    (dist.InverseGamma, dict(concentration=np.array([0.3, 2.0, 80.0]), rate=np.array([2.0, 0.5, 1.0]))),
    (dist.StudentT, dict(df=np.array([0.6, 4.0, 90.0]), loc=np.array([0.5, 0.0, -1.0]),
                         scale=np.array([2.0, 1.0, 0.3]))),
])
def test_rsample_vjps_match_finite_differences_at_fixed_noise(make, args):
    # the same seed at every point: each draw is a deterministic function of (seed, arguments)
    def draw(**a):
        return make(**a).rsample_with_noise((6,), np.random.default_rng(3))

    noise = draw(**args)[1]
    check_vjp(lambda **a: draw(**a)[0], args, lambda g, **a: make(**a).rsample_vjp(noise, g, list(args)))


def test_dirichlet_rsample_vjp_is_the_chain_rule_through_the_gamma_slope():
    from minippl.distributions.gamma import standard_gamma_slope
    a = np.array([0.4, 2.0, 9.0])
    x, z = dist.Dirichlet(a).rsample_with_noise((5,), np.random.default_rng(0))
    np.testing.assert_allclose(x, z / z.sum(-1, keepdims=True), rtol=1e-15)
    g = np.random.default_rng(1).standard_normal((5, 3))
    grad = dist.Dirichlet(a).rsample_vjp(z, g, ["concentration"])["concentration"]
    total = z.sum(-1, keepdims=True)  # dx_i/dz_j = (delta_ij - x_i) / S
    jacobian = (np.eye(3) - x[:, :, None]) / total[:, :, None]
    expected = np.einsum("ni,nij,nj->j", g, jacobian, standard_gamma_slope(a, z))
    np.testing.assert_allclose(grad, expected, rtol=1e-12)


# ---------------------------------------------------------------- gradients of expectations
N = 40_000


def per_draw_gradients(make, args, cotangent_of_z, seed=0):
    """Per-draw reparameterised gradients of f(z): args repeated N times along a new first dim."""
    repeated = {k: np.repeat(np.asarray(v, float)[None], N, axis=0) for k, v in args.items()}
    d = make(**repeated)
    z, noise = d.rsample_with_noise((), np.random.default_rng(seed))
    return d.rsample_vjp(noise, cotangent_of_z(z), list(args))


def assert_within_monte_carlo_error(per_draw, exact):
    # the mean of N draws is within 5 standard errors of its expectation (per coordinate)
    per_draw = per_draw.reshape(N, -1)
    mean, se = per_draw.mean(0), per_draw.std(0) / np.sqrt(N)
    exact = np.broadcast_to(exact, mean.shape)
    assert np.all(np.abs(mean - exact) < 5 * se + 1e-12), f"{mean} vs {exact} (standard errors {se})"


@pytest.mark.parametrize("alpha", [[0.5, 1.0, 3.0], [4.0, 20.0, 2.0, 7.0]])
def test_dirichlet_reparameterised_gradients_of_expectations(alpha):
    a = np.array(alpha)
    a0, c = a.sum(), np.arange(1.0, len(a) + 1)
    # E[<c, x>] = <c, a> / a0: d/da_k = (c_k a0 - <c, a>) / a0^2
    grads = per_draw_gradients(dist.Dirichlet, dict(concentration=a), lambda x: np.broadcast_to(c, x.shape))
    assert_within_monte_carlo_error(grads["concentration"], (c * a0 - c @ a) / a0**2)
    # E[log x_0] = psi(a_0) - psi(sum a): d/da_k = [k = 0] psi'(a_0) - psi'(sum a)
    grads = per_draw_gradients(dist.Dirichlet, dict(concentration=a),
                               lambda x: np.eye(len(a))[0] / x[:, :1], seed=1)
    assert_within_monte_carlo_error(grads["concentration"], np.eye(len(a))[0] * sp.polygamma(1, a[0])
                                    - sp.polygamma(1, a0))


@pytest.mark.parametrize("df", [0.7, 3.0, 30.0])
def test_chi2_reparameterised_gradients_of_expectations(df):
    # E[z] = df: d/ddf = 1; E[log z] = psi(df / 2) + log 2: d/ddf = psi'(df / 2) / 2
    assert_within_monte_carlo_error(per_draw_gradients(dist.Chi2, dict(df=df), np.ones_like)["df"], 1.0)
    grads = per_draw_gradients(dist.Chi2, dict(df=df), lambda z: 1 / z, seed=1)
    assert_within_monte_carlo_error(grads["df"], sp.polygamma(1, df / 2) / 2)


@pytest.mark.parametrize("a, rate", [(5.0, 2.0), (12.0, 0.5)])
def test_inverse_gamma_reparameterised_gradients_of_expectations(a, rate):
    args = dict(concentration=a, rate=rate)
    # E[x] = rate / (a - 1): d/da = -rate / (a - 1)^2, d/drate = 1 / (a - 1)
    grads = per_draw_gradients(dist.InverseGamma, args, np.ones_like)
    assert_within_monte_carlo_error(grads["concentration"], -rate / (a - 1) ** 2)
    assert_within_monte_carlo_error(grads["rate"], 1 / (a - 1))
    # E[log x] = log rate - psi(a): d/da = -psi'(a), d/drate = 1 / rate
    grads = per_draw_gradients(dist.InverseGamma, args, lambda x: 1 / x, seed=1)
    assert_within_monte_carlo_error(grads["concentration"], -sp.polygamma(1, a))
    assert_within_monte_carlo_error(grads["rate"], 1 / rate)


@pytest.mark.parametrize("df, loc, scale", [(9.0, 0.5, 2.0), (30.0, -1.0, 0.7)])
def test_student_t_reparameterised_gradients_of_expectations(df, loc, scale):
    args = dict(df=df, loc=loc, scale=scale)
    # E[t^2] = loc^2 + scale^2 df / (df - 2): d/ddf = -2 scale^2 / (df - 2)^2,
    # d/dloc = 2 loc, d/dscale = 2 scale df / (df - 2)
    grads = per_draw_gradients(dist.StudentT, args, lambda t: 2 * t)
    assert_within_monte_carlo_error(grads["df"], -2 * scale**2 / (df - 2) ** 2)
    assert_within_monte_carlo_error(grads["loc"], 2 * loc)
    assert_within_monte_carlo_error(grads["scale"], 2 * scale * df / (df - 2))
    # E[t] = loc: d/ddf = 0, d/dscale = 0
    grads = per_draw_gradients(dist.StudentT, args, np.ones_like, seed=1)
    assert_within_monte_carlo_error(grads["df"], 0.0)
    assert_within_monte_carlo_error(grads["scale"], 0.0)


# ---------------------------------------------------------------- sampling
@pytest.mark.parametrize("make, frozen", [
    (lambda: dist.Chi2(0.4), scipy.stats.chi2(0.4)),
    (lambda: dist.Chi2(7.0), scipy.stats.chi2(7.0)),
    (lambda: dist.InverseGamma(0.6, 2.0), scipy.stats.invgamma(0.6, scale=2.0)),
    (lambda: dist.InverseGamma(8.0, 0.5), scipy.stats.invgamma(8.0, scale=0.5)),
    (lambda: dist.StudentT(0.8, 1.0, 2.0), scipy.stats.t(0.8, 1.0, 2.0)),
    (lambda: dist.StudentT(12.0, -1.0, 0.5), scipy.stats.t(12.0, -1.0, 0.5)),
], ids=["Chi2(0.4)", "Chi2(7)", "InverseGamma(0.6, 2)", "InverseGamma(8, 0.5)", "StudentT(0.8)", "StudentT(12)"])
def test_samples_pass_kolmogorov_smirnov(make, frozen):
    z = make().sample((20_000,), np.random.default_rng(0))
    assert scipy.stats.kstest(z, frozen.cdf).pvalue > 1e-3


@pytest.mark.parametrize("alpha", [[0.2, 0.5, 1.0], [3.0, 10.0, 1.5, 40.0]])
def test_dirichlet_samples_have_beta_marginals_and_the_right_covariance(alpha):
    a = np.array(alpha)
    d = dist.Dirichlet(a)
    x = d.sample((20_000,), np.random.default_rng(0))
    assert np.all(constraints.simplex.check(x))
    for i in range(len(a)):  # x_i ~ Beta(a_i, a0 - a_i)
        assert scipy.stats.kstest(x[:, i], scipy.stats.beta(a[i], a.sum() - a[i]).cdf).pvalue > 1e-3
    # Cov(x_i, x_j) = (a_i a0 [i = j] - a_i a_j) / (a0^2 (a0 + 1)); its diagonal is d.variance
    a0 = a.sum()
    cov = (np.diag(a) * a0 - np.outer(a, a)) / (a0**2 * (a0 + 1))
    np.testing.assert_allclose(np.diag(cov), d.variance)
    centred = x - x.mean(0)
    products = centred[:, :, None] * centred[:, None, :]  # the sample covariance is their mean
    se = products.std(0) / np.sqrt(x.shape[0])
    assert np.all(np.abs(products.mean(0) - cov) < 5 * se), (products.mean(0), cov)


def test_float32_draws_stay_inside_the_support():
    rng = np.random.default_rng(0)
    for d in [dist.Dirichlet(np.float32([[0.01, 0.5, 2.0], [50.0, 0.02, 1.0]])), dist.Chi2(np.float32([0.02, 500.0])),
              dist.InverseGamma(np.float32([0.3, 50.0]), np.float32([1.0, 1e-3])),
              dist.StudentT(np.float32([0.05, 30.0]), np.float32(0.0), np.float32([1.0, 1e-3]))]:
        x = d.sample((5000,), rng)
        assert x.dtype == np.float32 and np.all(d.support.check(x)), type(d).__name__
        assert np.all(np.isfinite(d.log_prob(x))), type(d).__name__
        value, noise = d.rsample_with_noise((50,), rng)
        for name, grad in d.rsample_vjp(noise, np.ones_like(value), d.arg_names).items():
            assert grad.dtype == np.float32 and np.all(np.isfinite(grad)), (type(d).__name__, name)
        g = np.ones(d.log_prob(x).shape, np.float32)
        for name, grad in d.log_prob_vjp(x, g, ("value",) + tuple(d.arg_names)).items():
            assert np.all(np.isfinite(grad)), (type(d).__name__, name)


def test_moments():
    np.testing.assert_allclose(dist.Chi2(np.array([3.0])).variance, [6.0])
    np.testing.assert_allclose(dist.InverseGamma(np.array([0.5, 1.5, 4.0]), 3.0).mean, [np.inf, 6.0, 1.0])
    np.testing.assert_allclose(dist.InverseGamma(np.array([1.5, 4.0]), 3.0).variance, [np.inf, 0.5])
    np.testing.assert_allclose(dist.StudentT(np.array([0.5, 1.5, 4.0]), 1.0, 2.0).mean, [np.nan, 1.0, 1.0])
    np.testing.assert_allclose(dist.StudentT(np.array([0.5, 1.5, 4.0]), 1.0, 2.0).variance, [np.nan, np.inf, 8.0])


# ---------------------------------------------------------------- KL
def test_dirichlet_kl_with_two_entries_is_the_beta_kl():
    a, b = np.array([[0.7, 2.0], [5.0, 1.3]]), np.array([[3.0, 0.4], [2.0, 2.0]])
    expected = dist.kl_divergence(dist.Beta(a[:, 0], a[:, 1]), dist.Beta(b[:, 0], b[:, 1]))
    np.testing.assert_allclose(dist.kl_divergence(dist.Dirichlet(a), dist.Dirichlet(b)), expected, rtol=1e-10)


@pytest.mark.parametrize("a, b", [([1.0, 1.0, 1.0], [1.0, 1.0, 1.0]), ([0.8, 2.0, 5.0], [3.0, 0.6, 1.0]),
                                  ([10.0, 4.0, 7.0, 2.0], [5.0, 5.0, 5.0, 5.0])])
def test_dirichlet_kl_matches_monte_carlo(a, b):
    p, q = dist.Dirichlet(np.array(a)), dist.Dirichlet(np.array(b))
    x = p.sample((100_000,), np.random.default_rng(0))
    log_ratio = p.log_prob(x) - q.log_prob(x)
    kl = dist.kl_divergence(p, q)
    # within 5 standard errors of the Monte Carlo mean (exact at p = q: the log ratio is then 0)
    assert abs(log_ratio.mean() - kl) <= 5 * log_ratio.std() / np.sqrt(x.shape[0]) + 1e-12


def test_dirichlet_kl_vjps_match_finite_differences():
    rng = np.random.default_rng(0)
    args = {"p": np.exp(0.5 * rng.standard_normal((2, 3, 4))), "q": np.exp(0.5 * rng.standard_normal((3, 4)))}

    def pair(p, q):
        return dist.Dirichlet(p).to_event(1), dist.Dirichlet(q).expand((2, 3)).to_event(1)

    def vjp(g, p, q):
        grads_p, grads_q = dist.kl_divergence_vjp(*pair(p, q), g, ["concentration"], ["concentration"])
        return {"p": grads_p["concentration"], "q": grads_q["concentration"]}

    check_vjp(lambda p, q: dist.kl_divergence(*pair(p, q)), args, vjp)


# ---------------------------------------------------------------- ELBO gradients
def dirichlet_model(y):
    probs = minippl.sample("probs", dist.Dirichlet(np.array([1.0, 2.0, 3.0])))
    with minippl.plate("data", len(y)):
        minippl.sample("obs", dist.Categorical(probs=probs), obs=y)


def dirichlet_guide(y):
    alpha = minippl.param("alpha", np.array([1.5, 2.5, 2.0]), constraint=constraints.positive)
    minippl.sample("probs", dist.Dirichlet(alpha))


def chi2_model(y):
    v = minippl.sample("v", dist.Chi2(3.0))
    with minippl.plate("data", len(y)):
        minippl.sample("obs", dist.Normal(0.0, np.sqrt(v)), obs=y)


def chi2_guide(y):
    df = minippl.param("df", np.array(2.5), constraint=constraints.positive)
    minippl.sample("v", dist.Chi2(df))


def inverse_gamma_model(y):
    v = minippl.sample("v", dist.InverseGamma(3.0, 2.0))
    with minippl.plate("data", len(y)):
        minippl.sample("obs", dist.Normal(0.0, np.sqrt(v)), obs=y)


def inverse_gamma_guide(y):
    a = minippl.param("a", np.array(4.0), constraint=constraints.positive)
    rate = minippl.param("rate", np.array(3.0), constraint=constraints.positive)
    minippl.sample("v", dist.InverseGamma(a, rate))


def student_t_model(y):
    m = minippl.sample("m", dist.StudentT(4.0, 0.0, 2.0))
    with minippl.plate("data", len(y)):
        minippl.sample("obs", dist.StudentT(3.0, m, 1.0), obs=y)


def student_t_guide(y):
    df = minippl.param("df", np.array(5.0), constraint=constraints.positive)
    loc = minippl.param("loc", np.array(0.3))
    scale = minippl.param("scale", np.array(0.8), constraint=constraints.positive)
    minippl.sample("m", dist.StudentT(df, loc, scale))


@pytest.mark.parametrize("model, guide, y", [
    (dirichlet_model, dirichlet_guide, np.array([0.0, 2.0, 2.0, 1.0])),
    (chi2_model, chi2_guide, np.array([0.5, -1.7, 2.2])),
    (inverse_gamma_model, inverse_gamma_guide, np.array([0.5, -1.7, 2.2])),
    (student_t_model, student_t_guide, np.array([0.5, 1.7, 2.2])),
], ids=["Dirichlet", "Chi2", "InverseGamma", "StudentT"])
def test_elbo_gradients_match_finite_differences(model, guide, y):
    check_gradients(model, guide, y, loss=Trace_ELBO())


def test_dirichlet_mean_field_elbo_gradients_match_finite_differences():
    check_gradients(dirichlet_model, dirichlet_guide, np.array([0.0, 2.0, 2.0, 1.0]), loss=TraceMeanField_ELBO())


# ---------------------------------------------------------------- has_enumerate_support (Pyro checks it)
def test_has_enumerate_support_marks_exactly_the_distributions_with_enumerate_support():
    classes = [getattr(dist, n) for n in dist.__all__]
    classes = [c for c in classes if isinstance(c, type) and issubclass(c, dist.Distribution)]
    marked = sorted(c.__name__ for c in classes if c.has_enumerate_support)
    assert marked == ["Bernoulli", "Binomial", "Categorical", "OneHotCategorical"]
    assert marked == sorted(c.__name__ for c in classes if hasattr(c, "enumerate_support"))
    assert not dist.Bernoulli(probs=np.array([0.3, 0.6])).to_event(1).has_enumerate_support
