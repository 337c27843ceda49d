"""The distributions drawn by a closed-form transform of simple noise (LogNormal, HalfNormal,
Exponential, Laplace, Cauchy, HalfCauchy, Gumbel): log_prob against scipy, every hand-written
VJP against float64 finite differences (finite_diff.py), sampling against scipy's CDF by a
seeded Kolmogorov-Smirnov test, moments against scipy, float32 at the edges of the support,
the closed-form KLs and their VJPs, and check_gradients on a small model for each family."""
import warnings
from dataclasses import dataclass

import numpy as np
import pytest
import scipy.integrate
import scipy.stats
from finite_diff import check_vjp

import minippl
import minippl.distributions as dist
from minippl import validation
from minippl.distributions import constraints
from minippl.infer import TraceMeanField_ELBO, Trace_ELBO, check_gradients

RNG = np.random.default_rng(0)
KS_DRAWS = 4000
KS_MIN_PVALUE = 1e-3  # seeded, so deterministic; a wrong sampler gives p ~ 0 at 4000 draws


def positive(*shape):
    return np.exp(0.3 * RNG.standard_normal(shape))


def real(*shape):
    return RNG.standard_normal(shape)


@dataclass
class Family:
    """``make(**args)``; ``args(shaped)``: arguments, broadcasting against each other when
    ``shaped``, scalars otherwise; ``value(shape)``: points inside the support (away from
    Laplace's kink); ``scipy(**args)``: the frozen scipy distribution."""

    make: object
    args: object
    value: object
    scipy: object


def loc_scale(shaped):  # loc (3, 1) and scale (2,): batch (3, 2), both gradients summed back
    return {"loc": real(3, 1), "scale": positive(2)} if shaped else {"loc": 0.3, "scale": 1.7}


def scale_only(shaped):
    return {"scale": positive(3, 1)} if shaped else {"scale": 1.7}


FAMILIES = {
    "LogNormal": Family(dist.LogNormal, loc_scale, lambda shape: positive(*shape) * 1.5,
                        lambda loc, scale: scipy.stats.lognorm(s=scale, scale=np.exp(loc))),
    "HalfNormal": Family(dist.HalfNormal, scale_only, lambda shape: 2 * positive(*shape),
                         lambda scale: scipy.stats.halfnorm(scale=scale)),
    "Exponential": Family(dist.Exponential,
                          lambda shaped: {"rate": positive(3, 1)} if shaped else {"rate": 1.7},
                          lambda shape: 2 * positive(*shape), lambda rate: scipy.stats.expon(scale=1 / rate)),
    "Laplace": Family(dist.Laplace, loc_scale,
                      lambda shape: np.where(RNG.uniform(size=shape) < 0.5, -1, 1) * RNG.uniform(4, 6, shape),
                      lambda loc, scale: scipy.stats.laplace(loc, scale)),
    "Cauchy": Family(dist.Cauchy, loc_scale, lambda shape: 3 * real(*shape),
                     lambda loc, scale: scipy.stats.cauchy(loc, scale)),
    "HalfCauchy": Family(dist.HalfCauchy, scale_only, lambda shape: 3 * positive(*shape),
                         lambda scale: scipy.stats.halfcauchy(scale=scale)),
    "Gumbel": Family(dist.Gumbel, loc_scale, lambda shape: 2 * real(*shape),
                     lambda loc, scale: scipy.stats.gumbel_r(loc, scale)),
}
NAMES = list(FAMILIES)


def test_every_family_is_exported_and_in_the_contract_cases():
    import test_contracts

    for name in NAMES:
        assert name in dist.__all__ and name in test_contracts.CASES


# ---------------------------------------------------------------- log_prob and its VJPs
@pytest.mark.parametrize("name", NAMES)
def test_log_prob_matches_scipy(name):
    family = FAMILIES[name]
    args = family.args(True)
    d = family.make(**args)
    x = family.value((4,) + d.batch_shape)
    np.testing.assert_allclose(d.log_prob(x), family.scipy(**args).logpdf(x), rtol=1e-10, atol=1e-12)
    assert d.log_prob(x).shape == (4,) + d.batch_shape


@pytest.mark.parametrize("name", NAMES)
def test_log_prob_vjp_matches_finite_differences(name):
    family = FAMILIES[name]
    args = family.args(True)
    names = ("value",) + tuple(args)
    point = dict(args, value=family.value((4,) + family.make(**args).batch_shape))

    def log_prob(value, **args):
        return family.make(**args).log_prob(value)

    def vjp(g, value, **args):
        grads = family.make(**args).log_prob_vjp(value, g, names)
        assert set(grads) == set(names)
        return grads

    check_vjp(log_prob, point, vjp)
    # one name at a time gives the same numbers as all together
    d, g = family.make(**args), np.ones(d_shape := log_prob(**point).shape)
    together = d.log_prob_vjp(point["value"], g, names)
    for n in names:
        np.testing.assert_array_equal(d.log_prob_vjp(point["value"], g, [n])[n], together[n])
    assert d_shape == (4,) + d.batch_shape


@pytest.mark.parametrize("name", NAMES)
def test_rsample_vjp_matches_finite_differences_at_fixed_noise(name):
    family = FAMILIES[name]
    args = family.args(True)
    names = tuple(args)

    def draw(**args):  # the same noise at every point: a fresh generator with the same seed
        return family.make(**args).rsample_with_noise((5,), np.random.default_rng(3))

    value, noise = draw(**args)
    assert value.shape == (5,) + family.make(**args).batch_shape

    def vjp(g, **args):
        grads = family.make(**args).rsample_vjp(noise, g, names)
        assert set(grads) == set(names)
        return grads

    check_vjp(lambda **args: draw(**args)[0], args, vjp)


@pytest.mark.parametrize("name", NAMES)
def test_python_float_arguments(name):
    """Floats in, 0-d gradients out; float32 values keep float32 (floats are weak)."""
    family = FAMILIES[name]
    d = family.make(**family.args(False))
    x = family.value((4,)).astype(np.float32)
    assert d.log_prob(x).dtype == np.float32 and d.sample((4,), np.random.default_rng(0)).dtype == np.float64
    for n, grad in d.log_prob_vjp(x, np.ones(4, np.float32), d.arg_names).items():
        assert grad.shape == () and grad.dtype == np.float32, n
    value, noise = d.rsample_with_noise((4,), np.random.default_rng(0))
    for n, grad in d.rsample_vjp(noise, np.ones(4), d.arg_names).items():
        assert grad.shape == () and hasattr(grad, "dtype"), n


# ---------------------------------------------------------------- sampling and moments
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", NAMES)
def test_samples_pass_a_kolmogorov_smirnov_test(name, dtype):
    family = FAMILIES[name]
    args = family.args(False)
    d = family.make(**{k: np.asarray(v, dtype) for k, v in args.items()})
    x = d.sample((KS_DRAWS,), np.random.default_rng(2024))
    assert x.dtype == dtype and np.all(np.isfinite(x))
    pvalue = scipy.stats.kstest(x.astype(np.float64), family.scipy(**args).cdf).pvalue
    assert pvalue > KS_MIN_PVALUE, f"{name}: KS p-value {pvalue:.2e}"


@pytest.mark.parametrize("name", NAMES)
def test_mean_variance_stddev_match_scipy(name):
    family = FAMILIES[name]
    args = family.args(True)
    d = family.make(**args)
    frozen = family.scipy(**args)
    expected = {"mean": frozen.mean(), "variance": frozen.var(), "stddev": frozen.std()}
    if name == "Cauchy":  # torch: the mean is undefined (nan), the variance infinite
        expected = {"mean": np.nan, "variance": np.inf, "stddev": np.inf}
    if name == "HalfCauchy":  # torch: both infinite
        expected = {"mean": np.inf, "variance": np.inf, "stddev": np.inf}
    for what, value in expected.items():
        got = getattr(d, what)
        assert got.shape == d.batch_shape, what
        np.testing.assert_allclose(got, np.broadcast_to(value, d.batch_shape), rtol=1e-10, err_msg=what)


@pytest.mark.parametrize("name", NAMES)
def test_float32_is_preserved_everywhere(name):
    family = FAMILIES[name]
    args = {k: np.asarray(v, np.float32) for k, v in family.args(True).items()}
    d = family.make(**args)
    x = family.value((4,) + d.batch_shape).astype(np.float32)
    assert d.log_prob(x).dtype == np.float32
    g = np.ones((4,) + d.batch_shape, np.float32)
    for n, grad in d.log_prob_vjp(x, g, ("value",) + d.arg_names).items():
        assert grad.dtype == np.float32, n
    value, noise = d.rsample_with_noise((4,), np.random.default_rng(0))
    assert value.dtype == np.float32 and noise.dtype == np.float32
    for n, grad in d.rsample_vjp(noise, g, d.arg_names).items():
        assert grad.dtype == np.float32, n
    for what in ("mean", "variance", "stddev"):
        assert getattr(d, what).dtype == np.float32, what


@pytest.mark.parametrize("name", NAMES)
def test_float32_draws_are_finite_and_inside_the_support(name):
    family = FAMILIES[name]
    d = family.make(**{k: np.asarray(v, np.float32) for k, v in family.args(False).items()})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow or invalid-value warnings either
        x = d.sample((200_000,), np.random.default_rng(5))
        log_prob = d.log_prob(x)
    assert np.all(np.isfinite(x)) and np.all(np.isfinite(log_prob))
    if d.support == constraints.positive:
        assert np.all(x >= 0)
        d._validate_sample(x)  # 0, if drawn, is accepted


def test_float32_edges_of_the_support():
    f32 = np.float32
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # LogNormal: a denormal value is scored, 0 and negatives are -inf (no log of 0, no NaN)
        lp = dist.LogNormal(f32(0), 1.0).log_prob(np.array([1e-44, 0.0, -1.0], f32))
        assert lp.dtype == np.float32 and np.isfinite(lp[0]) and np.all(lp[1:] == -np.inf)
        np.testing.assert_allclose(lp[0], scipy.stats.lognorm(1.0).logpdf(np.float64(np.float32(1e-44))), rtol=1e-5)
        grads = dist.LogNormal(np.zeros(3, f32), 1.0).log_prob_vjp(np.array([1e-30, 0.0, -1.0], f32),
                                                                  np.ones(3, f32), ["value"])
        assert np.isfinite(grads["value"][0]) and np.all(grads["value"][1:] == 0)
        # Cauchy and HalfCauchy: z^2 would overflow float32; log(1 + z^2) = 2 log z + log1p(1 / z^2)
        x = np.array([1e25, 3e38], f32)
        expected = scipy.stats.cauchy.logpdf(x.astype(np.float64))
        np.testing.assert_allclose(dist.Cauchy(np.zeros(2, f32), 1.0).log_prob(x), expected, rtol=1e-6)
        np.testing.assert_allclose(dist.HalfCauchy(np.ones(2, f32)).log_prob(x), expected + np.log(2), rtol=1e-6)
        grads = dist.Cauchy(np.zeros(2, f32), np.ones(2, f32)).log_prob_vjp(x, np.ones(2, f32), ["value", "loc", "scale"])
        assert all(np.all(np.isfinite(g)) for g in grads.values())
        np.testing.assert_allclose(grads["scale"], 1.0, rtol=1e-6)  # (z^2 - 1) / (z^2 + 1) / scale
        # Gumbel: far in the left tail exp(-z) overflows: -inf, not NaN
        lp = dist.Gumbel(np.zeros(2, f32), 1.0).log_prob(np.array([-100.0, 80.0], f32))
        assert lp[0] == -np.inf and np.isclose(lp[1], -80.0)
        # the supports that start at 0 score 0 itself, and reject negatives with -inf
        for d in (dist.Exponential(np.ones(2, f32)), dist.HalfNormal(np.ones(2, f32)), dist.HalfCauchy(np.ones(2, f32))):
            lp = d.log_prob(np.array([0.0, -1.0], f32))
            assert np.isfinite(lp[0]) and lp[1] == -np.inf, type(d).__name__


# ---------------------------------------------------------------- validation and wrappers
@pytest.mark.parametrize("make, bad", [
    (lambda: dist.LogNormal(0.0, -1.0), "scale must be"),
    (lambda: dist.LogNormal(np.array([0.0, np.nan]), 1.0), "loc"),
    (lambda: dist.HalfNormal(np.array([1.0, 0.0])), "scale must be"),
    (lambda: dist.Exponential(-2.0), "rate must be"),
    (lambda: dist.Laplace(0.0, 0.0), "scale must be"),
    (lambda: dist.Cauchy(0.0, -1.0), "scale must be"),
    (lambda: dist.HalfCauchy(-1.0), "scale must be"),
    (lambda: dist.Gumbel(0.0, np.array([-1.0])), "scale must be"),
])
def test_invalid_arguments_are_rejected(make, bad):
    with pytest.raises(validation.ValidationError, match=bad):
        make()


def test_invalid_arguments_pass_without_validation():
    assert dist.Exponential(-2.0, validate_args=False).batch_shape == ()


def test_values_outside_the_support_are_rejected_and_zero_is_accepted_where_pyro_does():
    for d in (dist.Exponential(1.0), dist.HalfNormal(1.0), dist.HalfCauchy(1.0)):
        d._validate_sample(np.array([0.0, 2.0]))
        with pytest.raises(validation.ValidationError, match=r"outside the support constraints.nonnegative"):
            d._validate_sample(np.array([1.0, -1.0]))
    with pytest.raises(validation.ValidationError, match="outside the support"):
        dist.LogNormal(0.0, 1.0)._validate_sample(np.array([0.0]))
    with pytest.raises(validation.ValidationError, match="outside the support"):
        minippl.sample("x", dist.Exponential(1.0), obs=np.array([-1.0]))


@pytest.mark.parametrize("name", NAMES)
def test_expand_to_event_and_mask_are_inherited(name):
    family = FAMILIES[name]
    d = family.make(**family.args(False))
    x = family.value((5, 2, 3))
    wide = d.expand((2, 3))
    np.testing.assert_allclose(wide.to_event(2).log_prob(x), d.log_prob(x).sum((-1, -2)), rtol=1e-12)
    mask = np.array([True, False, True])
    np.testing.assert_array_equal(wide.mask(mask).log_prob(x), np.where(mask, d.log_prob(x), 0.0))
    assert wide.to_event(1).sample((4,), np.random.default_rng(0)).shape == (4, 2, 3)


# ---------------------------------------------------------------- KL divergence
def kl_by_quadrature(p, q, low, high):
    def integrand(z):
        density = p.pdf(z)
        return 0.0 if density == 0 else density * (p.logpdf(z) - q.logpdf(z))  # 0 log 0 = 0 in the far tails

    value, _ = scipy.integrate.quad(integrand, low, high, epsabs=1e-12, limit=200)
    return value


@pytest.mark.parametrize("pair", [
    ("Exponential", {"rate": 0.7}, {"rate": 2.0}, 0, np.inf),
    ("LogNormal", {"loc": 0.3, "scale": 0.5}, {"loc": -0.4, "scale": 1.2}, 0, np.inf),
    # scipy's Laplace logpdf is log(pdf): -inf beyond |z| ~ 700 scale, so finite bounds (p < e^-30 there)
    ("Laplace", {"loc": 0.3, "scale": 0.5}, {"loc": -1.0, "scale": 1.5}, -60, 60),
    ("Laplace", {"loc": 0.0, "scale": 2.0}, {"loc": 0.0, "scale": 0.5}, -60, 60),
])
def test_kl_matches_quadrature(pair):
    name, args_p, args_q, low, high = pair
    family = FAMILIES[name]
    kl = dist.kl_divergence(family.make(**args_p), family.make(**args_q))
    assert isinstance(kl, np.ndarray) and kl.shape == ()
    points = [args_p.get("loc", 0.0), args_q.get("loc", 0.0)] if name == "Laplace" else None
    if points:  # the integrand has kinks at both locs: split there
        cuts = sorted(points)
        expected = sum(kl_by_quadrature(family.scipy(**args_p), family.scipy(**args_q), a, b)
                       for a, b in zip([low] + cuts, cuts + [high]))
    else:
        expected = kl_by_quadrature(family.scipy(**args_p), family.scipy(**args_q), low, high)
    np.testing.assert_allclose(kl, expected, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("name", ["Exponential", "LogNormal", "Laplace"])
def test_kl_matches_monte_carlo(name):
    family = FAMILIES[name]
    p, q = family.make(**family.args(True)), family.make(**family.args(False))
    z = p.sample((100_000,), rng=np.random.default_rng(7))
    terms = p.log_prob(z) - q.log_prob(z)
    assert np.all(np.abs(dist.kl_divergence(p, q) - terms.mean(0)) < 5 * terms.std(0) / np.sqrt(len(z)))
    np.testing.assert_allclose(dist.kl_divergence(p, p), 0.0, atol=1e-12)


@pytest.mark.parametrize("wrap", ["plain", "to_event"])
@pytest.mark.parametrize("name", ["Exponential", "LogNormal", "Laplace"])
def test_kl_vjp_matches_finite_differences(name, wrap):
    family = FAMILIES[name]
    args = {**{k + "_p": v for k, v in family.args(True).items()},  # p broadcasts its arguments
            **{k + "_q": np.asarray(v) + 0.1 for k, v in family.args(False).items()}}  # q: 0-d arrays
    names = tuple(family.args(False))

    def pair(**args):
        p = family.make(**{n: args[n + "_p"] for n in names})
        q = family.make(**{n: args[n + "_q"] for n in names}).expand(p.batch_shape)
        return (p.to_event(1), q.to_event(1)) if wrap == "to_event" else (p, q)

    def vjp(g, **args):
        grads_p, grads_q = dist.kl_divergence_vjp(*pair(**args), g, names, names)
        return {**{k + "_p": v for k, v in grads_p.items()}, **{k + "_q": v for k, v in grads_q.items()}}

    check_vjp(lambda **args: dist.kl_divergence(*pair(**args)), args, vjp)


def test_laplace_kl_is_smooth_where_the_locs_meet():
    p, q = dist.Laplace(np.array(0.5), 0.7), dist.Laplace(np.array(0.5), 1.3)
    grads_p, grads_q = dist.kl_divergence_vjp(p, q, np.array(1.0), ["loc"], ["loc"])
    assert grads_p["loc"] == 0 and grads_q["loc"] == 0


def test_kl_keeps_float32_and_unsupported_pairs_still_raise():
    p = dist.Exponential(np.ones(3, np.float32))
    assert dist.kl_divergence(p, dist.Exponential(2.0)).dtype == np.float32
    with pytest.raises(NotImplementedError, match="LogNormal/LogNormal"):
        dist.kl_divergence(dist.Cauchy(0.0, 1.0), dist.Cauchy(0.0, 2.0))
    with pytest.raises(NotImplementedError):
        dist.kl_divergence(dist.LogNormal(0.0, 1.0), dist.Normal(0.0, 1.0))


# ---------------------------------------------------------------- the ELBO gradient, end to end
def guide_args(name):
    """The guide's params for one family: a real loc, positive scales and rates."""
    args = {}
    for arg, init in FAMILIES[name].args(False).items():
        constraint = constraints.real if arg == "loc" else constraints.positive
        args[arg] = minippl.param(f"q_{arg}", np.full(3, init) * np.array([1.0, 0.8, 1.2]), constraint=constraint)
    return args


def make_model_and_guide(name):
    family = FAMILIES[name]

    def model(data):
        with minippl.plate("data", 3):
            z = minippl.sample("z", family.make(**family.args(False)))
            minippl.sample("obs", dist.Normal(z, 1.0), obs=data)

    def guide(data):
        with minippl.plate("data", 3):
            minippl.sample("z", family.make(**guide_args(name)))

    return model, guide


@pytest.mark.parametrize("name", NAMES)
def test_check_gradients_passes_on_a_model_and_guide_of_each_family(name):
    model, guide = make_model_and_guide(name)
    data = np.array([0.5, 1.5, 2.5])
    report = check_gradients(model, guide, data, loss=Trace_ELBO())
    assert set(report) == {f"q_{arg}" for arg in FAMILIES[name].args(False)}


@pytest.mark.parametrize("name", ["Exponential", "LogNormal", "Laplace"])
def test_trace_mean_field_elbo_uses_the_closed_form_kl(name):
    model, guide = make_model_and_guide(name)
    data = np.array([0.5, 1.5, 2.5])
    check_gradients(model, guide, data, loss=TraceMeanField_ELBO())
    # the ELBO's analytic term is this KL, summed over the plate
    with minippl.handlers.seed(rng_seed=0):
        _, _, sites = TraceMeanField_ELBO().loss_and_grads(model, guide, data)
        guide_trace = minippl.handlers.trace(guide).get_trace(data)
    family = FAMILIES[name]
    expected = np.sum(dist.kl_divergence(guide_trace.nodes["z"]["fn"], family.make(**family.args(False))))
    np.testing.assert_allclose(sites["KL at site 'z'"], expected, rtol=1e-12)
