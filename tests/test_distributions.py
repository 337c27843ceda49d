"""Distributions: log_prob against scipy, every hand-written VJP against finite differences,
shapes, dtypes, wrappers (expand / to_event / mask), sampling moments, float32 stability."""
import numpy as np
import pytest
import scipy.stats
from finite_diff import check_vjp

import minippl.distributions as dist
from minippl.distributions import constraints

RNG = np.random.default_rng(0)


def positive(*shape):
    return np.abs(RNG.standard_normal(shape)) + 0.5


def normal(*shape):
    return RNG.standard_normal(shape)


# ------------------------------------------------------------------- log_prob vs scipy
def test_normal_log_prob_matches_scipy():
    x, loc, scale = normal(5, 3), normal(3), positive(3)
    expected = scipy.stats.norm.logpdf(x, loc, scale)
    np.testing.assert_allclose(dist.Normal(loc, scale).log_prob(x), expected, rtol=1e-12)


def test_bernoulli_log_prob_matches_scipy_for_both_parametrisations():
    probs = RNG.uniform(0.05, 0.95, size=(4, 6))
    x = (RNG.uniform(size=(4, 6)) < 0.5).astype(np.float64)
    expected = scipy.stats.bernoulli.logpmf(x, probs)
    np.testing.assert_allclose(dist.Bernoulli(probs=probs).log_prob(x), expected, rtol=1e-12)
    logits = np.log(probs) - np.log1p(-probs)
    np.testing.assert_allclose(dist.Bernoulli(logits=logits).log_prob(x), expected, rtol=1e-10)


def test_bernoulli_grey_values_use_cross_entropy():
    x, probs = RNG.uniform(size=7), RNG.uniform(0.05, 0.95, size=7)
    expected = x * np.log(probs) + (1 - x) * np.log1p(-probs)
    np.testing.assert_allclose(dist.Bernoulli(probs).log_prob(x), expected, rtol=1e-12)
    logits = np.log(probs) - np.log1p(-probs)
    np.testing.assert_allclose(dist.Bernoulli(logits=logits).log_prob(x), expected, rtol=1e-10)


def test_bernoulli_probs_and_logits_properties():
    logits = normal(5)
    d = dist.Bernoulli(logits=logits)
    assert d.logits is logits
    np.testing.assert_allclose(d.probs, scipy.special.expit(logits), rtol=1e-12)
    probs = RNG.uniform(0.05, 0.95, size=5)
    d = dist.Bernoulli(probs=probs)
    assert d.probs is probs
    np.testing.assert_allclose(d.logits, scipy.special.logit(probs), rtol=1e-12)
    assert d.support is constraints.boolean


def test_uniform_log_prob_matches_scipy_inside_and_outside():
    low, high = np.array([-1.0, 0.0, 2.0]), np.array([1.0, 0.5, 5.0])
    x = np.array([[0.3, 0.25, 4.0], [1.0, -0.1, 2.0]])  # high itself is outside: [low, high)
    expected = scipy.stats.uniform.logpdf(x, low, high - low)
    expected[1, 0] = -np.inf
    np.testing.assert_allclose(dist.Uniform(low, high).log_prob(x), expected)
    assert dist.Uniform(0.0, 2.0).support == constraints.interval(0.0, 2.0)


def test_delta_log_prob_and_sample():
    v = normal(2, 3)
    d = dist.Delta(v, log_density=1.5, event_dim=1)
    assert d.batch_shape == (2,) and d.event_shape == (3,)
    x = v.copy()
    x[1, 2] += 1.0
    np.testing.assert_array_equal(d.log_prob(x), [1.5, -np.inf])
    draw = d.sample((4,))
    assert draw.shape == (4, 2, 3) and draw is not v
    np.testing.assert_array_equal(draw, np.broadcast_to(v, (4, 2, 3)))
    assert dist.Delta(2.0).log_prob(2.0) == 0.0


# ------------------------------------------------------------------- log_prob_vjp by finite differences
def _log_prob_case(make, arg_shapes, value_fn):
    """fn and vjp for check_vjp: log_prob as a function of the value and of every argument."""
    names = tuple(arg_shapes)

    def fn(value, **args):
        return make(**args).log_prob(value)

    def vjp(g, value, **args):
        return make(**args).log_prob_vjp(value, g, ("value",) + names)

    return fn, vjp


LOG_PROB_CASES = {
    "normal": (dist.Normal, dict(loc=normal(4), scale=positive(4)), normal(4)),
    "normal scalar loc, vector scale": (dist.Normal, dict(loc=normal(), scale=positive(3)), normal(5, 3)),
    "normal scalar value": (dist.Normal, dict(loc=normal(2, 3), scale=positive(1, 3)), normal()),
    "normal expanded to_event": (
        lambda loc, scale: dist.Normal(loc, scale).expand((2, 3)).to_event(1),
        dict(loc=normal(3), scale=positive()),
        normal(4, 2, 3),
    ),
    "normal scalar args expanded to_event": (
        lambda loc, scale: dist.Normal(loc, scale).expand((3,)).to_event(1),
        dict(loc=normal(), scale=positive()),
        normal(3),
    ),
    "normal to_event(2) nested": (
        lambda loc, scale: dist.Normal(loc, scale).to_event(1).to_event(1),
        dict(loc=normal(2, 3), scale=positive(2, 1)),
        normal(5, 2, 3),
    ),
    "normal masked": (
        lambda loc, scale: dist.Normal(loc, scale).mask(np.array([True, False, True])),
        dict(loc=normal(3), scale=positive(3)),
        normal(2, 3),
    ),
    "normal mask broadcast up": (
        lambda loc, scale: dist.Normal(loc, scale).mask(np.array([[True], [False]])).to_event(1),
        dict(loc=normal(3), scale=positive(3)),
        normal(3),
    ),
    "bernoulli probs grey": (
        lambda probs: dist.Bernoulli(probs=probs),
        dict(probs=RNG.uniform(0.1, 0.9, size=(2, 4))),
        RNG.uniform(size=(3, 2, 4)),
    ),
    "bernoulli logits to_event": (
        lambda logits: dist.Bernoulli(logits=logits).to_event(1),
        dict(logits=3 * normal(2, 4)),
        RNG.uniform(size=(2, 4)),
    ),
    "bernoulli scalar logits expanded": (
        lambda logits: dist.Bernoulli(logits=logits).expand((5,)),
        dict(logits=normal()),
        RNG.uniform(size=5),
    ),
    "uniform": (
        dist.Uniform,
        dict(low=-1 - RNG.uniform(size=3), high=1 + RNG.uniform(size=(2, 3))),
        RNG.uniform(-0.5, 0.5, (2, 3)),
    ),
    "uniform scalar low": (dist.Uniform, dict(low=-2.0, high=1 + RNG.uniform(size=3)), RNG.uniform(-0.5, 0.5, (4, 3))),
}


@pytest.mark.parametrize("case", LOG_PROB_CASES)
def test_log_prob_vjp_matches_finite_differences(case):
    make, args, value = LOG_PROB_CASES[case]
    fn, vjp = _log_prob_case(make, args, value)
    check_vjp(fn, dict(args, value=value), vjp)


def test_delta_log_prob_vjp():
    v, log_density = normal(2, 3), normal(2)
    make = lambda log_density: dist.Delta(v, log_density, event_dim=1)  # noqa: E731
    fn = lambda log_density: make(log_density).log_prob(v)  # noqa: E731
    check_vjp(fn, dict(log_density=log_density), lambda g, log_density: make(log_density).log_prob_vjp(v, g, ["log_density"]))
    # the log-density is piecewise constant in the value and in v: zero gradients, shaped like each
    grads = make(log_density).log_prob_vjp(v[0], np.ones(2), ["value", "v"])
    assert grads["value"].shape == (3,) and grads["v"].shape == (2, 3)
    assert not grads["value"].any() and not grads["v"].any()


# ------------------------------------------------------------------- rsample_vjp by finite differences
RSAMPLE_CASES = {
    "normal": (dist.Normal, dict(loc=normal(3), scale=positive(3))),
    "normal scalar loc": (dist.Normal, dict(loc=normal(), scale=positive(2, 3))),
    "normal expanded to_event": (
        lambda loc, scale: dist.Normal(loc, scale).expand((2, 3)).to_event(2),
        dict(loc=normal(3), scale=positive()),
    ),
    "uniform": (dist.Uniform, dict(low=normal(3), high=5 + positive(2, 3))),
    "delta": (lambda v, log_density: dist.Delta(v, log_density, event_dim=1), dict(v=normal(2, 3), log_density=normal(2))),
    "delta expanded": (lambda v, log_density: dist.Delta(v, log_density).expand((4, 3)), dict(v=normal(3), log_density=normal())),
}


@pytest.mark.parametrize("case", RSAMPLE_CASES)
def test_rsample_vjp_matches_finite_differences_under_fixed_noise(case):
    make, args = RSAMPLE_CASES[case]
    sample_shape = (5,)

    def fn(**args):
        return make(**args).rsample(sample_shape, rng=np.random.default_rng(7))

    def vjp(g, **args):
        d = make(**args)
        _, noise = d.rsample_with_noise(sample_shape, rng=np.random.default_rng(7))
        return d.rsample_vjp(noise, g, tuple(args))

    check_vjp(fn, args, vjp)


# ------------------------------------------------------------------- shapes, dtypes, identity
SAMPLERS = {
    "normal": lambda a: dist.Normal(a, 1.0),
    "bernoulli probs": lambda a: dist.Bernoulli(probs=a * 0 + np.float32(0.3)),
    "bernoulli logits": lambda a: dist.Bernoulli(logits=a),
    "uniform": lambda a: dist.Uniform(a, a + 1),
    "delta": lambda a: dist.Delta(a),
}


@pytest.mark.parametrize("name", SAMPLERS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sample_shape_and_dtype_follow_args(name, dtype):
    d = SAMPLERS[name](np.zeros((2, 3), dtype=dtype))
    draw = d.sample((4,), rng=np.random.default_rng(0))
    assert draw.shape == (4, 2, 3) and draw.dtype == dtype
    assert d.log_prob(draw).dtype == dtype
    event = d.expand((5, 2, 3)).to_event(2)
    assert event.batch_shape == (5,) and event.event_shape == (2, 3)
    assert event.sample((4,)).shape == (4, 5, 2, 3)
    assert event.log_prob(event.sample()).shape == (5,)


def test_python_float_args_keep_float32_values_float32():
    x = np.zeros(3, dtype=np.float32)
    for d in [dist.Normal(0.0, 1.0), dist.Bernoulli(0.3), dist.Bernoulli(logits=0.5), dist.Uniform(-1.0, 1.0)]:
        assert d.log_prob(x).dtype == np.float32
        assert all(g.dtype == np.float32 for g in d.log_prob_vjp(x, np.ones(3, np.float32), ["value"]).values())
    assert dist.Normal(0.0, 1.0).sample().dtype == np.float64


def test_python_float_args_get_zero_dim_array_gradients():
    grads = dist.Normal(0.0, 1.0).log_prob_vjp(np.ones(3), np.ones(3), ["value", "loc", "scale"])
    assert grads["value"].shape == (3,)
    assert all(isinstance(grads[k], np.ndarray) and grads[k].shape == () for k in ("loc", "scale"))
    assert set(dist.Normal(0.0, 1.0).log_prob_vjp(1.0, 1.0, ["loc"])) == {"loc"}  # only what was asked


def test_args_are_kept_by_identity_through_wrappers():
    loc, scale = normal(3), positive(3)
    d = dist.Normal(loc, scale)
    for wrapped in [d, d.expand((2, 3)), d.to_event(1), d.mask(np.ones(3, bool)), d.expand((4, 3)).to_event()]:
        arrays = wrapped.arg_arrays()
        assert arrays["loc"] is loc and arrays["scale"] is scale
    logits = normal(3)
    assert dist.Bernoulli(logits=logits).arg_arrays() == {"logits": logits}


def test_pass_through_gradient_does_not_alias_the_cotangent():
    g = np.ones(3)
    d = dist.Normal(np.zeros(3), 1.0)
    assert d.rsample_vjp(np.zeros(3), g, ["loc"])["loc"] is not g
    assert dist.Delta(np.zeros(3)).rsample_vjp(None, g, ["v"])["v"] is not g


def test_wrappers_shapes():
    d = dist.Normal(np.zeros((4, 1, 3)), 1.0)
    assert d.to_event().event_shape == (4, 1, 3) and d.to_event().batch_shape == ()
    assert d.to_event(0) is d
    nested = d.to_event(1).to_event(1)
    assert isinstance(nested.base_dist, dist.Normal) and nested.reinterpreted_batch_ndims == 2
    assert d.expand((2, 4, 5, 3)).batch_shape == (2, 4, 5, 3)
    assert d.to_event(1).expand((2, 4, 5)).event_shape == (3,)
    masked = dist.Normal(np.zeros(3), 1.0).mask(np.ones((2, 1), bool))
    assert masked.batch_shape == (2, 3) and masked.sample().shape == (2, 3)


def test_mask_zeroes_terms_without_leaking_nan():
    d = dist.Normal(np.zeros(3), 1.0).mask(np.array([True, False, True]))
    log_prob = d.log_prob(np.array([0.0, np.nan, 1.0]))
    assert log_prob[1] == 0.0 and np.isfinite(log_prob).all()
    # gradients: as in Pyro, masked-out entries need a finite placeholder value
    grads = d.log_prob_vjp(np.array([0.0, 5.0, 1.0]), np.ones(3), ["loc", "value"])
    assert grads["loc"][1] == 0.0 and grads["value"][1] == 0.0
    assert not dist.Normal(0.0, 1.0).mask(False).log_prob(np.ones(2)).any()


# ------------------------------------------------------------------- errors
def test_clear_errors_for_wrong_construction():
    with pytest.raises(ValueError, match="exactly one of probs= or logits=, got both"):
        dist.Bernoulli(probs=0.5, logits=0.0)
    with pytest.raises(ValueError, match="got neither"):
        dist.Bernoulli()
    with pytest.raises(ValueError, match="do not broadcast"):
        dist.Normal(np.zeros(3), np.ones(4))
    with pytest.raises(TypeError, match="numpy.asarray"):
        dist.Normal([0.0, 1.0], 1.0)
    with pytest.raises(ValueError, match="cannot expand Normal with batch_shape \\(3,\\) to \\(4,\\)"):
        dist.Normal(np.zeros(3), 1.0).expand((4,))
    with pytest.raises(ValueError, match="at most 1 batch dims"):
        dist.Normal(np.zeros(3), 1.0).to_event(2)
    with pytest.raises(TypeError, match="astype\\(bool\\)"):
        dist.Normal(np.zeros(3), 1.0).mask(np.ones(3))
    with pytest.raises(ValueError, match="does not broadcast"):
        dist.Normal(np.zeros(3), 1.0).mask(np.ones(4, bool))
    with pytest.raises(ValueError, match="event_dim=2"):
        dist.Delta(np.zeros(3), event_dim=2)
    with pytest.raises(ValueError, match="cannot differentiate with respect to \\['probs'\\]"):
        dist.Bernoulli(logits=0.0).log_prob_vjp(1.0, 1.0, ["probs"])
    with pytest.raises(NotImplementedError, match="has_rsample is False"):
        dist.Bernoulli(0.5).rsample()


# ------------------------------------------------------------------- sampling moments
def test_sample_moments():
    rng, n = np.random.default_rng(1), 40_000
    for d in [dist.Normal(np.array([-1.0, 2.0]), np.array([0.5, 3.0])), dist.Bernoulli(np.array([0.1, 0.7])),
              dist.Bernoulli(logits=np.array([-2.0, 1.0])), dist.Uniform(np.array([-1.0, 2.0]), np.array([1.0, 6.0]))]:
        draws = d.sample((n,), rng=rng)
        assert (np.abs(draws.mean(0) - d.mean) < 5 * np.sqrt(d.variance / n)).all()
        np.testing.assert_allclose(draws.var(0), d.variance, rtol=0.05)


# ------------------------------------------------------------------- float32 stability
def test_bernoulli_float32_is_finite_at_extremes():
    x = np.array([0.0, 1.0, 0.5, 0.0, 1.0, 0.5], dtype=np.float32)
    probs = np.array([0.0, 0.0, 0.0, 1.0, 1.0, 1.0], dtype=np.float32)
    d = dist.Bernoulli(probs=probs)
    g = np.ones(6, np.float32)
    grads = d.log_prob_vjp(x, g, ["value", "probs"])
    for out in [d.log_prob(x), d.logits, *grads.values()]:
        assert out.dtype == np.float32 and np.isfinite(out).all()
    assert not grads["probs"].any()  # the clamp is active: no gradient, as torch's clamp
    logits = np.array([1e4, -1e4, 1e4, -1e4, 0.0, 30.0], dtype=np.float32)
    d = dist.Bernoulli(logits=logits)
    grads = d.log_prob_vjp(x, g, ["value", "logits"])
    for out in [d.log_prob(x), d.probs, *grads.values()]:
        assert out.dtype == np.float32 and np.isfinite(out).all()
    np.testing.assert_allclose(d.log_prob(x)[:4], [-1e4, -1e4, -5e3, 0.0])
    np.testing.assert_allclose(grads["logits"][:4], [-1.0, 1.0, -0.5, 0.0])


def test_every_distribution_has_mean_variance_and_stddev_as_torch():
    import inspect

    for name in dist.__all__:
        cls = getattr(dist, name)
        if inspect.isclass(cls) and issubclass(cls, dist.Distribution):
            assert all(hasattr(cls, attr) for attr in ("mean", "variance", "stddev")), name
    for d in (dist.Normal(np.zeros(2), 2.0), dist.Uniform(0.0, 2.0), dist.Bernoulli(probs=np.array([0.3, 0.5]))):
        np.testing.assert_allclose(d.stddev, np.sqrt(d.variance))
    assert np.isnan(dist.Categorical(probs=np.array([0.2, 0.8])).mean)  # as torch: no numeric mean
    np.testing.assert_array_equal(dist.Normal(np.ones(3), 1.0).to_event(1).mean, np.ones(3))
