"""AutoNormal and AutoDelta: the recorded transform and subsample layers against finite
differences, param names and shapes, whole-ELBO gradient checks for real, positive and
interval sites, plates and subsampling, a conjugate posterior, MAP, and clear errors."""
import numpy as np
import pytest
from finite_diff import check_vjp

import minippl
from minippl.ops_arrays import Index
import minippl.distributions as dist
from minippl import handlers
from minippl.distributions import constraint_registry, constraints
from minippl.infer import SVI, Trace_ELBO, TraceMeanField_ELBO, check_gradients
from minippl.infer.autoguide import (AutoDelta, AutoNormal, ToConstrained, init_to_feasible,
                                     init_to_mean, init_to_median, init_to_sample, init_to_value)
from minippl.optim import Adam, ClippedAdam

RNG = np.random.default_rng(0)


class PositiveNormal(dist.Normal):
    """A Normal density declared on (0, inf): a latent site with positive support for the tests."""

    support = constraints.positive


# ---------------------------------------------------------------- the layers
@pytest.mark.parametrize("constraint", [constraints.positive, constraints.greater_than(-1.5),
                                        constraints.interval(0.0, 10.0), constraints.interval(-2.0, 3.0)])
@pytest.mark.parametrize("event_dim", [0, 1])
def test_to_constrained_value_and_log_density_match_finite_differences(constraint, event_dim):
    layer = ToConstrained(constraint_registry.biject_to(constraint), event_dim)
    u = RNG.standard_normal((3, 4))
    x, log_density = layer.forward(u)[0]
    assert np.all(constraint.check(x)) and log_density.shape == (3, 4)[:2 - event_dim]

    def outputs(u):
        x, log_density = layer.forward(u)[0]
        return np.concatenate([x.ravel(), log_density.ravel()])

    def vjp(cotangent, u):
        (x, log_density), cache = layer.forward(u)
        grads = (cotangent[:x.size].reshape(x.shape), cotangent[x.size:].reshape(log_density.shape))
        return {"u": layer.backward(cache, grads, (True,))[0][0]}

    check_vjp(outputs, {"u": u}, vjp)
    # -log|dx/du| by a finite difference of the elementwise map itself
    h = 1e-6
    slope = (layer.forward(u + h)[0][0] - layer.forward(u - h)[0][0]) / (2 * h)
    expected = -np.log(slope).sum(-1) if event_dim else -np.log(slope)
    np.testing.assert_allclose(log_density, expected, rtol=1e-6, atol=1e-8)


def test_to_constrained_backward_with_one_output_unused():
    layer = ToConstrained(constraint_registry.biject_to(constraints.positive))
    u = RNG.standard_normal(3)
    (x, _), cache = layer.forward(u)
    np.testing.assert_allclose(layer.backward(cache, (np.ones(3), None), (True,))[0][0], x)
    np.testing.assert_allclose(layer.backward(cache, (None, np.ones(3)), (True,))[0][0], -np.ones(3))


def test_subsample_op_matches_finite_differences_with_repeated_items():
    # what a subsampling plate records for a param read with event_dim: np.take along the plate's dim
    layer = Index((np.array([3, 0, 3, 1]), slice(None)))

    def vjp(cotangent, a):
        _, cache = layer.forward(a)
        return {"a": layer.backward(cache, cotangent, (True,))[0][0]}

    check_vjp(lambda a: layer.forward(a)[0], {"a": RNG.standard_normal((5, 2))}, vjp)


# ---------------------------------------------------------------- models
DATA = RNG.standard_normal((8, 2))
TARGETS = DATA @ np.array([1.0, -2.0]) + 0.3 * RNG.standard_normal(8)


def regression(x, y=None):
    w = minippl.sample("w", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    sigma = minippl.sample("sigma", dist.Uniform(0.0, 10.0))
    tau = minippl.sample("tau", PositiveNormal(1.0, 1.0))
    mean = minippl.nn.functional.matmul(x, w)
    with minippl.plate("data", x.shape[0]):
        offset = minippl.sample("offset", dist.Normal(0.0, tau))  # a local latent per point
        minippl.sample("y", dist.Normal(minippl.nn.functional.add(mean, offset), sigma), obs=y)


def test_param_names_shapes_and_initial_values():
    guide = AutoNormal(regression)
    values = guide(DATA, TARGETS)
    assert sorted(values) == ["offset", "sigma", "tau", "w"]
    store = minippl.get_param_store()
    assert sorted(store.keys()) == sorted(f"AutoNormal.{kind}.{site}" for kind in ("locs", "scales")
                                          for site in ("offset", "sigma", "tau", "w"))
    assert store["AutoNormal.locs.offset"].shape == (8,) and store["AutoNormal.locs.w"].shape == (2,)
    np.testing.assert_allclose(store["AutoNormal.scales.w"], 0.1)
    assert store.get_constraint("AutoNormal.scales.w") == constraints.softplus_positive
    # init_to_feasible: u = 0, i.e. the interval's midpoint and exp(0) = 1
    assert float(guide.median()["sigma"]) == pytest.approx(5.0) and float(guide.median()["tau"]) == 1.0
    tr = handlers.trace(guide).get_trace(DATA, TARGETS)
    assert tr.nodes["sigma_unconstrained"]["infer"]["is_auxiliary"]
    assert [f.name for f in tr.nodes["offset"]["cond_indep_stack"]] == ["data"]


@pytest.mark.parametrize("loss", [Trace_ELBO(), TraceMeanField_ELBO()])
def test_whole_elbo_gradient_real_positive_interval_and_plated_sites(loss):
    check_gradients(regression, AutoNormal(regression, init_loc_fn=init_to_sample), DATA, TARGETS, loss=loss)


def test_autodelta_gradient_and_constrained_params():
    guide = AutoDelta(regression)
    check_gradients(regression, guide, DATA, TARGETS)
    store = minippl.get_param_store()
    assert store.get_constraint("AutoDelta.sigma") == constraints.interval(0.0, 10.0)
    assert store.get_constraint("AutoDelta.tau") == constraints.positive
    assert set(guide.median()) == {"w", "sigma", "tau", "offset"}


def test_median_and_quantiles():
    guide = AutoNormal(regression)
    with pytest.raises(ValueError, match="before the guide has run"):
        guide.median()
    quantiles = guide.quantiles([0.05, 0.5, 0.95], DATA, TARGETS)  # sets the guide up from the args
    assert quantiles["w"].shape == (3, 2) and quantiles["offset"].shape == (3, 8)
    assert np.all(np.diff(quantiles["sigma"], axis=0) > 0)
    assert np.all((quantiles["sigma"] > 0) & (quantiles["sigma"] < 10))
    np.testing.assert_allclose(quantiles["tau"][1], guide.median()["tau"])
    # 0.95 quantile of sigma = T(loc + 1.645 scale), T the interval map
    store = minippl.get_param_store()
    u = store["AutoNormal.locs.sigma"] + 1.6448536269514722 * store["AutoNormal.scales.sigma"]
    assert float(quantiles["sigma"][2]) == pytest.approx(10 / (1 + np.exp(-u)))
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        guide.quantiles([0.0, 0.5])


def test_conjugate_normal_mean_and_sd():
    x = 2.0 + RNG.standard_normal(40)

    def model(x):
        z = minippl.sample("z", dist.Normal(0.0, 1.0))
        with minippl.plate("data", len(x)):
            minippl.sample("x", dist.Normal(z, 1.0), obs=x)

    guide = AutoNormal(model)
    svi = SVI(model, guide, ClippedAdam({"lr": 0.05, "lrd": 0.01 ** (1 / 1500)}), Trace_ELBO())
    for _ in range(1500):
        svi.step(x)
    store = minippl.get_param_store()
    assert float(store["AutoNormal.locs.z"]) == pytest.approx(x.sum() / 41, abs=0.02)
    assert float(store["AutoNormal.scales.z"]) == pytest.approx(1 / np.sqrt(41), rel=0.1)


def test_uniform_noise_scale_is_learned_through_the_interval_transform():
    y = 0.7 * RNG.standard_normal(400)

    def model(y):
        sigma = minippl.sample("sigma", dist.Uniform(0.0, 10.0))
        with minippl.plate("data", len(y)):
            minippl.sample("y", dist.Normal(0.0, sigma), obs=y)

    guide = AutoNormal(model)
    svi = SVI(model, guide, ClippedAdam({"lr": 0.05, "lrd": 0.01 ** (1 / 800)}), Trace_ELBO())
    for _ in range(800):
        svi.step(y)
    low, high = guide.quantiles([0.05, 0.95])["sigma"]
    assert low < np.sqrt(np.mean(y**2)) < high and high - low < 0.15


def test_autodelta_finds_the_map():
    x = 1.0 + RNG.standard_normal(10)

    def model(x):
        z = minippl.sample("z", dist.Normal(0.0, 1.0))
        with minippl.plate("data", len(x)):
            minippl.sample("x", dist.Normal(z, 1.0), obs=x)

    guide = AutoDelta(model)
    svi = SVI(model, guide, Adam({"lr": 0.05}), Trace_ELBO())
    for _ in range(500):
        svi.step(x)
    assert float(guide.median()["z"]) == pytest.approx(x.sum() / 11, abs=1e-3)


# ---------------------------------------------------------------- plates and subsampling
def subsampled(x):
    scale = minippl.sample("scale", PositiveNormal(1.0, 1.0))
    with minippl.plate("data", len(x), subsample_size=4) as items:
        z = minippl.sample("z", dist.Normal(0.0, scale))
        minippl.sample("x", dist.Normal(z, 1.0), obs=x[items])


@pytest.mark.parametrize("guide_class", [AutoNormal, AutoDelta])
def test_subsampled_local_latents(guide_class):
    x = RNG.standard_normal(10)
    guide = guide_class(subsampled)
    guide_trace = handlers.trace(guide).get_trace(x)
    model_trace = handlers.trace(handlers.replay(subsampled, trace=guide_trace)).get_trace(x)
    np.testing.assert_array_equal(guide_trace.nodes["data"]["value"], model_trace.nodes["data"]["value"])
    assert guide_trace.nodes["z"]["value"].shape == (4,)
    assert guide_trace.nodes["z"]["scale"] == pytest.approx(10 / 4)
    store = minippl.get_param_store()
    full = "AutoNormal.locs.z" if guide_class is AutoNormal else "AutoDelta.z"
    assert store[full].shape == (10,)
    check_gradients(subsampled, guide, x)
    with handlers.seed(rng_seed=1):
        _, grads, _ = Trace_ELBO().loss_and_grads(subsampled, guide, x)
    with handlers.seed(rng_seed=1):
        drawn = handlers.trace(guide).get_trace(x).nodes["data"]["value"]
    untouched = np.setdiff1d(np.arange(10), drawn)
    assert np.all(grads[full][untouched] == 0) and np.all(grads[full][drawn] != 0)


# ---------------------------------------------------------------- isolation, seeds, init
def test_the_prototype_run_leaves_no_trace_and_a_seeded_guide_repeats():
    guide = AutoNormal(regression, init_loc_fn=init_to_sample)
    with handlers.trace() as tr:
        guide(DATA, TARGETS)
    assert "y" not in tr.trace.nodes and "data" in tr.trace.nodes  # the guide's own plate only
    assert all(m["type"] != "call" or m["fn"].__class__.__name__ == "ToConstrained" for m in tr.trace.records)
    values = []
    for _ in range(2):
        minippl.clear_param_store()
        seeded = AutoNormal(regression, init_loc_fn=init_to_sample)
        values.append(handlers.seed(seeded, rng_seed=4)(DATA, TARGETS))
    for name in values[0]:
        np.testing.assert_array_equal(values[0][name], values[1][name])


def test_init_functions():
    def site(fn, name="s"):
        return {"name": name, "fn": fn, "kwargs": {}, "rng": np.random.default_rng(0)}

    uniform = dist.Uniform(2.0, 4.0)
    assert float(init_to_feasible(site(uniform))) == pytest.approx(3.0)
    assert 2.0 < float(init_to_median(site(uniform))) < 4.0
    assert 2.0 < float(init_to_sample(site(uniform))) < 4.0
    assert float(init_to_mean(site(uniform))) == pytest.approx(3.0)
    assert float(init_to_value(values={"s": 2.5})(site(uniform))) == 2.5
    assert 2.0 < float(init_to_value(values={"other": 0.0})(site(uniform))) < 4.0
    assert init_to_median(num_samples=5)(site(dist.Normal(np.zeros(3), 1.0))).shape == (3,)


def test_clear_errors():
    def discrete():
        minippl.sample("coin", dist.Bernoulli(probs=0.5))

    with pytest.raises(ValueError, match="cannot guide sample site 'coin'"):
        AutoNormal(discrete)()
    with pytest.raises(ValueError, match="init_scale must be a positive float"):
        AutoNormal(discrete, init_scale=0)
    with pytest.raises(NotImplementedError, match="create_plates"):
        AutoDelta(discrete, create_plates=lambda: None)
