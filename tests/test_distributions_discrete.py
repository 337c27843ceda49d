"""The discrete distributions Poisson, Geometric, Binomial and OneHotCategorical (and
enumerate_support, also Bernoulli's and Categorical's): log-probs against scipy.stats (rtol
1e-10), every log_prob VJP against float64 finite differences (finite_diff.py, rtol 1e-6) with
a broadcast parameter, seeded chi-square and moment tests of the samplers against scipy's pmf
and moments, float32 at large counts and probabilities near 1, and a discrete latent in a
guide (score-function gradient) through check_gradients."""
import numpy as np
import pytest
from finite_diff import check_vjp
from scipy import special, stats

import minippl
import minippl.distributions as dist
from minippl.distributions import constraints
from minippl.infer import check_gradients
from minippl.validation import ValidationError

RNG = np.random.default_rng(0)
RTOL = 1e-10  # log-probs against scipy.stats.logpmf, in float64


def sigmoid(x):
    return special.expit(x)


# ---------------------------------------------------------------- log_prob against scipy
def test_poisson_log_prob_matches_scipy():
    rate = np.array([[0.3], [2.5], [40.0]])  # (3, 1) against values (4, 3, 5): broadcast
    k = RNG.integers(0, 60, (4, 3, 5)).astype(float)
    np.testing.assert_allclose(dist.Poisson(rate).log_prob(k), stats.poisson(rate).logpmf(k), rtol=RTOL)
    big = np.array([0.0, 1e3, 1e6, 1e6 + 1234])  # large counts
    np.testing.assert_allclose(dist.Poisson(1e6).log_prob(big), stats.poisson(1e6).logpmf(big), rtol=RTOL)


def test_poisson_rate_zero_and_values_outside_the_support():
    d = dist.Poisson(np.array(0.0))
    np.testing.assert_array_equal(d.log_prob(np.array([0.0, 1.0, 3.0])), [0.0, -np.inf, -np.inf])
    lp = dist.Poisson(2.0).log_prob(np.array([-1.0, 1.5, np.inf, 2.0]))
    assert np.all(np.isneginf(lp[:3])) and lp[3] == pytest.approx(stats.poisson(2.0).logpmf(2), rel=RTOL)


@pytest.mark.parametrize("name", ["probs", "logits"])
def test_geometric_log_prob_matches_scipy(name):
    p = np.array([[0.05], [0.5], [0.97]])
    arg = p if name == "probs" else special.logit(p)
    k = RNG.integers(0, 30, (4, 3, 5)).astype(float)
    # scipy's geom counts trials (support 1, 2, ...); loc=-1 counts the failures before the success
    np.testing.assert_allclose(dist.Geometric(**{name: arg}).log_prob(k), stats.geom(p, loc=-1).logpmf(k), rtol=RTOL)


def test_geometric_at_probs_one_and_extreme_logits():
    d = dist.Geometric(probs=np.array(1.0))
    np.testing.assert_array_equal(d.log_prob(np.array([0.0, 2.0])), [0.0, -np.inf])
    assert float(d.log_prob_vjp(np.array(0.0), np.array(1.0), ["probs"])["probs"]) == 1.0  # d/dp log p
    # logits 40: p = 1 - 4e-18, log(1 - p) = -40 - log1p(e^-40) is kept, not rounded to log 0
    lp = dist.Geometric(logits=np.array(40.0)).log_prob(np.array(3.0))
    np.testing.assert_allclose(lp, -3 * (40 + np.log1p(np.exp(-40.0))) - np.log1p(np.exp(-40.0)), rtol=RTOL)


@pytest.mark.parametrize("name", ["probs", "logits"])
def test_binomial_log_prob_matches_scipy(name):
    n = np.array([[1], [7], [30]])  # (3, 1) with p (5,): batch (3, 5)
    p = np.array([0.02, 0.3, 0.5, 0.8, 0.999])
    arg = p if name == "probs" else special.logit(p)
    k = np.minimum(RNG.integers(0, 31, (4, 3, 5)), n).astype(float)
    d = dist.Binomial(n, **{name: arg})
    assert d.batch_shape == (3, 5)
    np.testing.assert_allclose(d.log_prob(k), stats.binom(n, p).logpmf(k), rtol=RTOL)
    np.testing.assert_array_equal(d.log_prob(np.array([[-1.0], [2.5], [31.0]])), np.full((3, 5), -np.inf))


def test_binomial_probs_zero_and_one_and_large_counts():
    d = dist.Binomial(np.array([4.0, 4.0]), probs=np.array([0.0, 1.0]))
    np.testing.assert_array_equal(d.log_prob(np.array([0.0, 4.0])), [0.0, 0.0])
    np.testing.assert_array_equal(d.log_prob(np.array([1.0, 3.0])), [-np.inf, -np.inf])
    k = np.array([0.0, 4e5, 5e5, 5e5 + 700, 1e6])
    for kwargs in ({"probs": 0.5}, {"logits": 0.0}):
        np.testing.assert_allclose(dist.Binomial(10**6, **kwargs).log_prob(k), stats.binom(10**6, 0.5).logpmf(k),
                                   rtol=RTOL)


@pytest.mark.parametrize("name", ["probs", "logits"])
def test_one_hot_categorical_log_prob_matches_scipy(name):
    raw = RNG.standard_normal((3, 4))
    arg = np.exp(raw) if name == "probs" else raw  # probs unnormalised on purpose
    p = np.exp(raw) / np.exp(raw).sum(-1, keepdims=True)
    x = np.eye(4)[RNG.integers(0, 4, (5, 3))]
    d = dist.OneHotCategorical(**{name: arg})
    assert d.batch_shape == (3,) and d.event_shape == (4,)
    expected = np.stack([stats.multinomial(1, p[j]).logpmf(x[:, j]) for j in range(3)], axis=-1)
    np.testing.assert_allclose(d.log_prob(x), expected, rtol=RTOL)
    np.testing.assert_allclose(d.log_prob(x), dist.Categorical(**{name: arg}).log_prob(x.argmax(-1)), rtol=1e-15)


# ---------------------------------------------------------------- the VJPs against finite differences
BINOMIAL_N = np.array([[3], [9], [20]])


def binomial(name):
    return lambda arg: dist.Binomial(BINOMIAL_N, **{name: arg})


# (make from the one argument, the argument (broadcast against the values), values)
VJP_CASES = {
    "Poisson rate": (dist.Poisson, 3 * np.exp(0.3 * RNG.standard_normal((3, 1))),
                     RNG.integers(0, 9, (4, 3, 2)).astype(float)),
    "Geometric probs": (lambda a: dist.Geometric(probs=a), RNG.uniform(0.1, 0.9, (2,)),
                        RNG.integers(0, 9, (4, 3, 2)).astype(float)),
    "Geometric logits": (lambda a: dist.Geometric(logits=a), 2 * RNG.standard_normal((2,)),
                         RNG.integers(0, 9, (4, 3, 2)).astype(float)),
    "Binomial probs": (binomial("probs"), RNG.uniform(0.1, 0.9, (2,)),
                       np.minimum(RNG.integers(0, 21, (4, 3, 2)), BINOMIAL_N).astype(float)),
    "Binomial logits": (binomial("logits"), 2 * RNG.standard_normal((2,)),
                        np.minimum(RNG.integers(0, 21, (4, 3, 2)), BINOMIAL_N).astype(float)),
    "OneHotCategorical probs": (lambda a: dist.OneHotCategorical(probs=a), RNG.uniform(0.5, 1.5, (1, 4)),
                                np.eye(4)[RNG.integers(0, 4, (5, 3))]),
    "OneHotCategorical logits": (lambda a: dist.OneHotCategorical(logits=a), RNG.standard_normal((1, 4)),
                                 np.eye(4)[RNG.integers(0, 4, (5, 3))]),
}


@pytest.mark.parametrize("case", VJP_CASES)
def test_log_prob_vjp_matches_finite_differences_with_a_broadcast_parameter(case):
    make, arg, value = VJP_CASES[case]
    name = case.split()[-1]
    d = make(arg)
    assert np.shape(arg) != d.log_prob(value).shape  # broadcast: its gradient is summed back

    def log_prob(**inputs):
        return make(inputs[name]).log_prob(value)

    def vjp(cotangent, **inputs):
        return make(inputs[name]).log_prob_vjp(value, cotangent, [name])

    check_vjp(log_prob, {name: arg}, vjp)
    g = np.ones(d.log_prob(value).shape)
    grads = d.log_prob_vjp(value, g, ["value", name])
    assert grads["value"].shape == value.shape and not grads["value"].any()  # a pmf: d/dvalue = 0
    assert grads[name].shape == np.shape(arg)


def test_binomial_total_count_has_no_gradient():
    d = dist.Binomial(5, probs=np.array([0.3, 0.6]))
    assert d.arg_names == ("probs",)
    with pytest.raises(ValueError, match=r"cannot differentiate with respect to \['total_count'\]"):
        d.log_prob_vjp(np.array([1.0, 2.0]), np.ones(2), ["total_count"])


def test_float32_stays_float32_and_finite_at_large_counts():
    rate = np.array([1e6, 3.0], dtype=np.float32)
    k = np.array([1e6 + 500, 0.0], dtype=np.float32)
    lp = dist.Poisson(rate).log_prob(k)
    assert lp.dtype == np.float32
    # k log rate and log k! are 1.3e7 each: summed in float32 they would keep no digit of -7.5
    np.testing.assert_allclose(lp, stats.poisson(rate.astype(float)).logpmf(k.astype(float)), rtol=1e-6)
    grad = dist.Poisson(rate).log_prob_vjp(k, np.ones(2, np.float32), ["rate"])["rate"]
    assert grad.dtype == np.float32
    np.testing.assert_allclose(grad, [500 / 1e6, -1.0], rtol=1e-6)  # (k - rate) / rate, no cancellation
    n, p = np.float32(2e6), np.array([0.5, 1 - 2.0**-20], dtype=np.float32)
    k = np.array([1e6 + 1000, 2e6 - 2], dtype=np.float32)
    lp = dist.Binomial(n, probs=p).log_prob(k)
    assert lp.dtype == np.float32 and np.all(np.isfinite(lp))
    np.testing.assert_allclose(lp, stats.binom(2e6, p.astype(float)).logpmf(k.astype(float)), rtol=1e-6)
    logits = np.array([30.0, -30.0], dtype=np.float32)  # p = 1 - 1e-13 and 1e-13
    for d in (dist.Geometric(logits=logits), dist.Binomial(10, logits=logits)):
        lp = d.log_prob(np.array([2.0, 0.0], dtype=np.float32))
        g = d.log_prob_vjp(np.array([2.0, 0.0], dtype=np.float32), np.ones(2, np.float32), ["logits"])["logits"]
        assert lp.dtype == g.dtype == np.float32 and np.all(np.isfinite(lp)) and np.all(np.isfinite(g))


# ---------------------------------------------------------------- moments against scipy
def scipy_twin(d):
    """The scipy.stats distribution with the same parameters (float64, one batch element each)."""
    if isinstance(d, dist.Poisson):
        return stats.poisson(d.rate)
    if isinstance(d, dist.Geometric):
        return stats.geom(np.asarray(d.probs), loc=-1)
    return stats.binom(d.total_count, np.asarray(d.probs))


MOMENT_CASES = {
    "Poisson": lambda: dist.Poisson(np.array([0.4, 3.0, 25.0])),
    "Geometric(probs)": lambda: dist.Geometric(probs=np.array([0.15, 0.5, 0.9])),
    "Geometric(logits)": lambda: dist.Geometric(logits=np.array([-1.5, 0.0, 2.0])),
    "Binomial(probs)": lambda: dist.Binomial(np.array([1, 6, 40]), probs=np.array([0.3, 0.5, 0.85])),
    "Binomial(logits)": lambda: dist.Binomial(np.array([1, 6, 40]), logits=np.array([-1.0, 0.5, 2.0])),
}


@pytest.mark.parametrize("case", MOMENT_CASES)
def test_mean_variance_and_stddev_match_scipy(case):
    d = MOMENT_CASES[case]()
    twin = scipy_twin(d)
    np.testing.assert_allclose(d.mean, twin.mean(), rtol=1e-12)
    np.testing.assert_allclose(d.variance, twin.var(), rtol=1e-12)
    np.testing.assert_allclose(d.stddev, twin.std(), rtol=1e-12)
    assert d.expand((2, 3)).mean.shape == (2, 3)


def test_one_hot_categorical_moments():
    probs = np.array([0.2, 0.3, 0.5])
    d = dist.OneHotCategorical(probs=probs).expand((2,))
    np.testing.assert_allclose(d.mean, np.broadcast_to(probs, (2, 3)), rtol=1e-15)
    np.testing.assert_allclose(d.variance, np.broadcast_to(stats.multinomial(1, probs).cov().diagonal(), (2, 3)))


# ---------------------------------------------------------------- sampling
N_DRAWS = 20000
P_MIN = 1e-3  # a chi-square test at this level rejects a correct sampler for 1 seed in 1000


def chi_square_p_value(draws, cdf, lo, hi):
    """Pearson's test of ``draws`` against ``cdf``, bins k <= lo, lo + 1, ..., hi - 1, k >= hi."""
    observed = np.array([np.sum(draws <= lo)] + [np.sum(draws == k) for k in range(lo + 1, hi)]
                        + [np.sum(draws >= hi)])
    expected = np.diff(np.concatenate([[0.0], cdf(np.arange(lo, hi)), [1.0]])) * len(draws)
    assert observed.sum() == len(draws) and np.all(expected >= 5)  # the test's own condition
    return stats.chisquare(observed, expected).pvalue


@pytest.mark.parametrize("case", MOMENT_CASES)
def test_sampling_chi_square_against_scipy(case):
    d = MOMENT_CASES[case]()
    draws = d.sample((N_DRAWS,), np.random.default_rng(1))
    assert draws.shape == (N_DRAWS, 3) and draws.dtype == np.float64 and np.all(d.support.check(draws))
    twin = scipy_twin(d)
    for j in range(3):
        lo, hi = int(twin.ppf(0.005)[j]), int(twin.ppf(0.995)[j])  # both tails lumped into a bin
        hi = max(hi, lo + 1)
        pvalue = chi_square_p_value(draws[:, j], lambda k: twin.cdf(k[:, None])[:, j], lo, hi)
        assert pvalue > P_MIN, f"{case}[{j}]: chi-square p-value {pvalue:.2e}"
        # the sample mean within 5 standard errors of scipy's mean
        se = twin.std()[j] / np.sqrt(N_DRAWS)
        assert abs(draws[:, j].mean() - twin.mean()[j]) < 5 * se


def test_one_hot_categorical_sampling_chi_square():
    probs = np.array([[0.1, 0.6, 0.3], [0.5, 0.25, 0.25]])
    d = dist.OneHotCategorical(probs=probs)
    draws = d.sample((N_DRAWS,), np.random.default_rng(2))
    assert draws.shape == (N_DRAWS, 2, 3) and draws.dtype == np.float64 and np.all(draws.sum(-1) == 1)
    for j in range(2):
        counts = draws[:, j].sum(0)
        assert stats.chisquare(counts, probs[j] * N_DRAWS).pvalue > P_MIN


def test_sampling_is_seeded_and_follows_the_dtype():
    for d in (dist.Poisson(np.array(2.0, np.float32)), dist.Geometric(probs=np.array([0.3], np.float32)),
              dist.Binomial(5, logits=np.array([0.3], np.float32)),
              dist.OneHotCategorical(logits=np.zeros(3, np.float32))):
        a, b = (d.sample((4,), np.random.default_rng(7)) for _ in range(2))
        np.testing.assert_array_equal(a, b)
        assert a.dtype == np.float32 and a.shape == (4,) + d.batch_shape + d.event_shape
        assert d.expand((2,) + d.batch_shape).sample((3,)).shape == (3, 2) + d.batch_shape + d.event_shape


# ---------------------------------------------------------------- enumerate_support
def enumerate_cases():
    return {
        "Bernoulli": (dist.Bernoulli(probs=np.array([[0.2, 0.7, 0.5]])), 2),
        "Categorical": (dist.Categorical(logits=RNG.standard_normal((2, 3, 4))), 4),
        "Binomial": (dist.Binomial(np.array(5), logits=RNG.standard_normal((2, 3))), 6),
        "OneHotCategorical": (dist.OneHotCategorical(probs=RNG.uniform(0.1, 1, (2, 3, 4))), 4),
    }


@pytest.mark.parametrize("name", enumerate_cases())
def test_enumerate_support_shapes_and_total_probability(name):
    d, size = enumerate_cases()[name]
    for base in (d, d.expand((5,) + d.batch_shape)):
        values = base.enumerate_support()
        assert values.shape == (size,) + base.batch_shape + base.event_shape  # torch's shapes
        small = base.enumerate_support(expand=False)
        assert small.shape == (size,) + (1,) * len(base.batch_shape) + base.event_shape
        assert np.all(base.support.check(values))
        log_p = base.log_prob(values)
        assert log_p.shape == (size,) + base.batch_shape
        np.testing.assert_allclose(np.exp(log_p).sum(0), 1.0, rtol=1e-12)
        np.testing.assert_array_equal(base.log_prob(small), log_p)


def test_binomial_enumerate_support_needs_one_total_count():
    with pytest.raises(NotImplementedError, match="same total_count everywhere"):
        dist.Binomial(np.array([2, 3]), probs=0.5).enumerate_support()


# ---------------------------------------------------------------- validation, wrappers
def test_clear_errors():
    with pytest.raises(ValidationError, match="Poisson: rate"):
        dist.Poisson(np.array([1.0, -1.0]))
    with pytest.raises(ValidationError, match="Geometric: probs must be in"):
        dist.Geometric(probs=np.array(1.5))
    with pytest.raises(ValidationError, match="Binomial: total_count"):
        dist.Binomial(np.array([2.5]), probs=0.5)
    with pytest.raises(ValueError, match="exactly one of probs= or logits="):
        dist.Binomial(3)
    with pytest.raises(ValueError, match="last dim indexing the classes"):
        dist.OneHotCategorical(logits=np.array(1.0))
    with pytest.raises(ValidationError, match="OneHotCategorical: probs must be in"):
        dist.OneHotCategorical(probs=np.array([-1.0, 2.0]))
    with pytest.raises(NotImplementedError, match="no reparameterised sampler"):
        dist.Poisson(1.0).rsample()
    for d, bad in ((dist.Poisson(2.0), np.array([1.0, 0.5])), (dist.Binomial(3, probs=0.5), np.array([4.0])),
                   (dist.OneHotCategorical(logits=np.zeros(3)), np.array([1.0, 1.0, 0.0]))):
        with pytest.raises(ValueError, match="outside the support"):
            d._validate_sample(bad)
        d._validate_sample(d.sample((2,)))


def test_expand_to_event_and_mask_are_inherited():
    d = dist.Poisson(np.array([1.0, 2.0, 3.0]))
    k = np.array([[0.0, 1.0, 5.0]])
    np.testing.assert_allclose(d.to_event(1).log_prob(k), d.log_prob(k).sum(-1))
    masked = d.mask(np.array([True, False, True]))
    assert masked.log_prob(k)[0, 1] == 0.0
    assert masked.log_prob_vjp(k, np.ones((1, 3)), ["rate"])["rate"][1] == 0.0
    assert d.expand((4, 3)).log_prob(np.array(1.0)).shape == (4, 3)


# ---------------------------------------------------------------- a discrete latent in a guide
DATA = np.array([2.2, 1.7, 3.1])


def check_score_function_gradients(model, guide):
    """check_gradients passes, and the slopes it compared are not zero (the score term is there)."""
    minippl.clear_param_store()
    report = check_gradients(model, guide, DATA)
    assert report and all(abs(analytic) > 1e-3 for analytic, numeric in report.values()), report


def poisson_model(x):
    k = minippl.sample("k", dist.Poisson(2.0))
    minippl.sample("x", dist.Normal(k, 1.0).expand([len(x)]).to_event(1), obs=x)


def geometric_guide(x):
    probs = minippl.param("probs", np.array(0.35), constraint=constraints.unit_interval)
    minippl.sample("k", dist.Geometric(probs=probs))


def poisson_guide(x):
    rate = minippl.param("rate", np.array(1.5), constraint=constraints.positive)
    minippl.sample("k", dist.Poisson(rate))


def test_check_gradients_geometric_guide():
    check_score_function_gradients(poisson_model, geometric_guide)


def test_check_gradients_poisson_guide():
    check_score_function_gradients(poisson_model, poisson_guide)


def test_check_gradients_local_counts_in_a_plate():
    def model(x):
        with minippl.plate("data", len(x)):
            k = minippl.sample("k", dist.Binomial(6, probs=0.4))
            minippl.sample("x", dist.Normal(k, 1.0), obs=x)

    def guide(x):
        logits = minippl.param("logits", np.zeros(len(x)))
        with minippl.plate("data", len(x)):
            minippl.sample("k", dist.Binomial(6, logits=logits))

    check_score_function_gradients(model, guide)


def test_check_gradients_one_hot_categorical_guide():
    centres = np.array([-1.0, 1.0, 3.0])

    def model(x):
        z = minippl.sample("z", dist.OneHotCategorical(logits=np.zeros(3)))
        minippl.sample("x", dist.Normal(z @ centres, 1.0).expand([len(x)]).to_event(1), obs=x)

    def guide(x):
        probs = minippl.param("probs", np.array([0.2, 0.5, 0.3]), constraint=constraints.positive)
        minippl.sample("z", dist.OneHotCategorical(probs=probs))

    check_score_function_gradients(model, guide)
