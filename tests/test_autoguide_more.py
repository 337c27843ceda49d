"""AutoDiagonalNormal (every latent site packed into one diagonal Normal), AutoMultivariateNormal,
AutoLowRankMultivariateNormal and AutoNormal's softplus_positive scales: whole-ELBO gradients, an
exact conjugate posterior over a scalar, a vector and a positive site (and a correlated one, which
a rank-1 low-rank guide also recovers), median/quantiles/sample_latent/get_posterior, the refusals
(subsampled local latents, no latent site), and a param store saved with the old exp scales still
loading."""
import numpy as np
import pytest

import minippl
import minippl.distributions as dist
from minippl import handlers
from minippl.distributions import constraints
from minippl.infer import SVI, Trace_ELBO, check_gradients
from minippl.infer.autoguide import (AutoDiagonalNormal, AutoLowRankMultivariateNormal, AutoMultivariateNormal,
                                     AutoNormal, init_to_feasible, init_to_sample)
from minippl.optim import ClippedAdam

RNG = np.random.default_rng(1)
X = 2.0 + RNG.standard_normal(30)  # observations of the scalar z
Y = np.array([-1.0, 0.5, 1.5]) + RNG.standard_normal((20, 3))  # of the vector w
V = np.exp(0.3 + RNG.standard_normal(25))  # of the positive tau: log V ~ Normal(log tau, 1)


def conjugate(x, y, v):
    """Three a-posteriori independent sites, each conjugate in its unconstrained space."""
    z = minippl.sample("z", dist.Normal(0.0, 1.0))
    w = minippl.sample("w", dist.Normal(np.zeros(3), 1.0).to_event(1))
    tau = minippl.sample("tau", dist.LogNormal(0.0, 2.0))  # support positive: u = log tau
    with minippl.plate("x_data", len(x)):
        minippl.sample("x", dist.Normal(z, 1.0), obs=x)
    with minippl.plate("y_data", len(y)):
        minippl.sample("y", dist.Normal(w, 1.0).to_event(1), obs=y)
    with minippl.plate("v_data", len(v)):
        minippl.sample("v", dist.LogNormal(np.log(tau), 1.0), obs=v)


def exact_posterior():
    """{site: (mean, sd)} of each site's unconstrained value: Normal prior, Normal likelihood."""
    def normal_normal(prior_mean, prior_sd, data):  # unit-variance observations
        precision = prior_sd ** -2 + len(data)
        return (prior_mean * prior_sd ** -2 + data.sum(0)) / precision, precision ** -0.5

    return {"z": normal_normal(0.0, 1.0, X), "w": normal_normal(0.0, 1.0, Y),
            "tau": normal_normal(0.0, 2.0, np.log(V))}


def fit(guide, steps=2000):
    svi = SVI(conjugate, guide, ClippedAdam({"lr": 0.05, "lrd": 0.01 ** (1 / steps)}), Trace_ELBO())
    for _ in range(steps):
        svi.step(X, Y, V)


# ---------------------------------------------------------------- AutoDiagonalNormal
def test_packing_params_and_sites():
    guide = AutoDiagonalNormal(conjugate)
    values = guide(X, Y, V)
    assert {name: np.shape(value) for name, value in values.items()} == {"z": (), "w": (3,), "tau": ()}
    store = minippl.get_param_store()
    assert sorted(store.keys()) == ["AutoDiagonalNormal.loc", "AutoDiagonalNormal.scale"]
    assert guide.latent_dim == 5 and store["AutoDiagonalNormal.loc"].shape == (5,)
    np.testing.assert_allclose(store["AutoDiagonalNormal.scale"], 0.1)
    assert store.get_constraint("AutoDiagonalNormal.scale") == constraints.softplus_positive
    tr = handlers.trace(guide).get_trace(X, Y, V)
    latent = tr.nodes["_AutoDiagonalNormal_latent"]
    assert latent["infer"]["is_auxiliary"] and latent["value"].shape == (5,)
    # the sites are the latent's slices, in the model's order, constrained: z, w (3 values), log tau
    np.testing.assert_allclose(tr.nodes["z"]["value"], latent["value"][0])
    np.testing.assert_allclose(tr.nodes["w"]["value"], latent["value"][1:4])
    np.testing.assert_allclose(tr.nodes["tau"]["value"], np.exp(latent["value"][4]))
    # Delta's log_density is -log|dtau/du| = -u for the positive site, 0 for the real ones
    assert float(tr.nodes["tau"]["fn"].log_prob(tr.nodes["tau"]["value"])) == pytest.approx(-latent["value"][4])


@pytest.mark.parametrize("init_loc_fn", [init_to_sample, init_to_feasible])
def test_whole_elbo_gradient(init_loc_fn):
    check_gradients(conjugate, AutoDiagonalNormal(conjugate, init_loc_fn=init_loc_fn), X, Y, V)


def test_gradient_through_an_interval_site_and_a_plated_latent():
    def model(x):
        sigma = minippl.sample("sigma", dist.Uniform(0.0, 10.0))
        with minippl.plate("data", len(x)):
            loc = minippl.sample("loc", dist.Normal(0.0, 1.0))  # a local latent, no subsampling
            minippl.sample("x", dist.Normal(loc, sigma), obs=x)

    guide = AutoDiagonalNormal(model, init_loc_fn=init_to_sample)
    check_gradients(model, guide, X[:6])
    assert guide.latent_dim == 7 and guide.median()["loc"].shape == (6,)


def test_recovers_the_exact_posterior():
    guide = AutoDiagonalNormal(conjugate)
    fit(guide)
    exact, store = exact_posterior(), minippl.get_param_store()
    loc, scale = store["AutoDiagonalNormal.loc"], store["AutoDiagonalNormal.scale"]
    unpacked = {"z": (loc[0], scale[0]), "w": (loc[1:4], scale[1:4]), "tau": (loc[4], scale[4])}
    for name, (mean, sd) in exact.items():
        # posterior sds are 0.18 (z), 0.22 (w), 0.20 (log tau): means within 0.05, sds within 15%
        np.testing.assert_allclose(unpacked[name][0], mean, atol=0.05, err_msg=name)
        np.testing.assert_allclose(unpacked[name][1], sd, rtol=0.15, err_msg=name)
    np.testing.assert_allclose(guide.median()["tau"], np.exp(exact["tau"][0]), rtol=0.05)


def test_median_quantiles_sample_latent_and_get_posterior():
    guide = AutoDiagonalNormal(conjugate)
    with pytest.raises(ValueError, match="before the guide has run"):
        guide.median()
    quantiles = guide.quantiles([0.05, 0.5, 0.95], X, Y, V)  # sets the guide up from the args
    assert {name: q.shape for name, q in quantiles.items()} == {"z": (3,), "w": (3, 3), "tau": (3,)}
    store = minippl.get_param_store()
    loc, scale = store["AutoDiagonalNormal.loc"], store["AutoDiagonalNormal.scale"]
    median = guide.median()
    for name in median:
        np.testing.assert_allclose(quantiles[name][1], median[name])
    np.testing.assert_allclose(median["w"], loc[1:4])
    assert float(median["tau"]) == pytest.approx(np.exp(loc[4]))
    assert float(quantiles["tau"][2]) == pytest.approx(np.exp(loc[4] + 1.6448536269514722 * scale[4]))
    assert np.all(quantiles["tau"] > 0) and np.all(np.diff(quantiles["w"], axis=0) > 0)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        guide.quantiles([0.5, 1.0])

    posterior = guide.get_posterior()
    assert posterior.batch_shape == () and posterior.event_shape == (5,)
    np.testing.assert_allclose(posterior.log_prob(loc), dist.Normal(loc, scale).log_prob(loc).sum())
    draws = np.stack([guide.sample_latent() for _ in range(4000)])
    assert draws.shape == (4000, 5)
    np.testing.assert_allclose(draws.mean(0), loc, atol=0.01)  # 6 standard errors of 0.1 / sqrt(4000)
    np.testing.assert_allclose(draws.std(0), scale, rtol=0.05)


def test_refuses_subsampled_local_latents_and_models_without_latents():
    def subsampled(x):
        with minippl.plate("data", len(x), subsample_size=3) as items:
            z = minippl.sample("z", dist.Normal(0.0, 1.0))
            minippl.sample("x", dist.Normal(z, 1.0), obs=x[items])

    guide = AutoDiagonalNormal(subsampled)
    for _ in range(2):  # and again: the failed prototype is not kept
        with pytest.raises(ValueError, match="'z' is in plate 'data', which subsamples.*AutoNormal or AutoDelta"):
            guide(X)
    assert len(minippl.get_param_store()) == 0

    def observed_only(x):
        minippl.sample("x", dist.Normal(0.0, 1.0), obs=x)

    with pytest.raises(RuntimeError, match="found no latent variables"):
        AutoDiagonalNormal(observed_only)(X)
    with pytest.raises(ValueError, match="init_scale must be a positive float"):
        AutoDiagonalNormal(observed_only, init_scale=1)


def test_a_stored_latent_of_another_length_is_refused():
    AutoDiagonalNormal(conjugate)(X, Y, V)

    def smaller(x, y, v):
        minippl.sample("z", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match="has shape \\(5,\\).*1 unconstrained latent values"):
        AutoDiagonalNormal(smaller)(X, Y, V)


# ---------------------------------------------------------------- AutoMultivariateNormal
LINE_X = 1.0 + 0.5 * RNG.standard_normal(15)  # inputs off zero: intercept and slope correlate
LINE_Y = 0.5 + 2.0 * LINE_X + RNG.standard_normal(15)


def line(x, y):
    a = minippl.sample("a", dist.Normal(0.0, 1.0))
    b = minippl.sample("b", dist.Normal(0.0, 1.0))
    with minippl.plate("data", len(x)):
        minippl.sample("y", dist.Normal(a + b * x, 1.0), obs=y)


def test_multivariate_normal_gradient_and_correlated_posterior():
    guide = AutoMultivariateNormal(line)
    check_gradients(line, guide, LINE_X, LINE_Y)
    assert minippl.get_param_store()["AutoMultivariateNormal.scale_tril"].shape == (2, 2)
    steps = 3000
    svi = SVI(line, guide, ClippedAdam({"lr": 0.05, "lrd": 0.01 ** (1 / steps)}), Trace_ELBO())
    for _ in range(steps):
        svi.step(LINE_X, LINE_Y)
    design = np.stack([np.ones_like(LINE_X), LINE_X], axis=1)  # exact: precision I + A^T A
    covariance = np.linalg.inv(np.eye(2) + design.T @ design)
    mean = covariance @ design.T @ LINE_Y
    store = minippl.get_param_store()
    scale_tril = store["AutoMultivariateNormal.scale_tril"]
    np.testing.assert_allclose(store["AutoMultivariateNormal.loc"], mean, atol=0.05)
    sds = np.sqrt(np.diag(covariance))  # 0.40 and 0.36, correlation -0.78
    learned = scale_tril @ scale_tril.T
    np.testing.assert_allclose(np.sqrt(np.diag(learned)), sds, rtol=0.15)
    assert learned[0, 1] / np.sqrt(learned[0, 0] * learned[1, 1]) == pytest.approx(
        covariance[0, 1] / sds.prod(), abs=0.05)
    median, quantiles = guide.median(), guide.quantiles([0.5, 0.95])
    assert float(quantiles["b"][1]) == pytest.approx(median["b"] + 1.6448536269514722 * np.hypot(*scale_tril[1]))
    assert guide.get_posterior().event_shape == (2,)


# ---------------------------------------------------------------- AutoLowRankMultivariateNormal
def test_low_rank_gradient_and_correlated_posterior_with_rank_one():
    guide = AutoLowRankMultivariateNormal(line, rank=1)
    check_gradients(line, guide, LINE_X, LINE_Y)
    store = minippl.get_param_store()
    assert store["AutoLowRankMultivariateNormal.cov_factor"].shape == (2, 1)
    assert store.get_constraint("AutoLowRankMultivariateNormal.scale") == constraints.softplus_positive
    steps = 3000
    svi = SVI(line, guide, ClippedAdam({"lr": 0.05, "lrd": 0.01 ** (1 / steps)}), Trace_ELBO())
    for _ in range(steps):
        svi.step(LINE_X, LINE_Y)
    design = np.stack([np.ones_like(LINE_X), LINE_X], axis=1)  # exact: precision I + A^T A
    covariance = np.linalg.inv(np.eye(2) + design.T @ design)
    sds = np.sqrt(np.diag(covariance))  # 0.40 and 0.36, correlation -0.78
    learned = guide.get_posterior().covariance_matrix
    learned_sds = np.sqrt(np.diag(learned))
    # seeds 0-5: means within 0.025, sds within 4.4%, correlation within 0.023
    np.testing.assert_allclose(store["AutoLowRankMultivariateNormal.loc"], covariance @ design.T @ LINE_Y, atol=0.05)
    np.testing.assert_allclose(learned_sds, sds, rtol=0.15)
    assert learned[0, 1] / learned_sds.prod() == pytest.approx(covariance[0, 1] / sds.prod(), abs=0.1)
    np.testing.assert_allclose(guide._loc_scale()[1], learned_sds)  # s sqrt(1 + sum F^2): the true marginal sds


def test_low_rank_params_median_quantiles_sample_latent_and_get_posterior():
    guide = AutoLowRankMultivariateNormal(conjugate)
    quantiles = guide.quantiles([0.05, 0.5, 0.95], X, Y, V)  # sets the guide up from the args
    assert {name: q.shape for name, q in quantiles.items()} == {"z": (3,), "w": (3, 3), "tau": (3,)}
    store = minippl.get_param_store()
    assert sorted(store.keys()) == [f"AutoLowRankMultivariateNormal.{name}" for name in ("cov_factor", "loc", "scale")]
    assert store["AutoLowRankMultivariateNormal.cov_factor"].shape == (5, 2)  # rank round(sqrt(5)) = 2
    np.testing.assert_allclose(store["AutoLowRankMultivariateNormal.scale"], 0.1 * 0.5 ** 0.5)
    loc = store["AutoLowRankMultivariateNormal.loc"]
    posterior = guide.get_posterior()
    assert posterior.batch_shape == () and posterior.event_shape == (5,)
    marginal_sds = np.sqrt(np.diag(posterior.covariance_matrix))
    median = guide.median()
    assert {name: np.shape(m) for name, m in median.items()} == {"z": (), "w": (3,), "tau": ()}
    for name in median:
        np.testing.assert_allclose(quantiles[name][1], median[name])
    assert float(quantiles["tau"][2]) == pytest.approx(np.exp(loc[4] + 1.6448536269514722 * marginal_sds[4]))
    np.testing.assert_allclose(quantiles["w"][0], loc[1:4] - 1.6448536269514722 * marginal_sds[1:4])
    assert guide.sample_latent().shape == (5,)
    values = guide(X, Y, V)
    assert {name: np.shape(value) for name, value in values.items()} == {"z": (), "w": (3,), "tau": ()}
    check_gradients(conjugate, guide, X, Y, V)
    with pytest.raises(ValueError, match="rank must be a positive int"):
        AutoLowRankMultivariateNormal(conjugate, rank=0)


# ---------------------------------------------------------------- AutoNormal's softplus scales
def test_autonormal_scales_are_softplus_positive_and_recover_the_posterior():
    guide = AutoNormal(conjugate)
    fit(guide)
    store = minippl.get_param_store()
    for name, (mean, sd) in exact_posterior().items():
        assert store.get_constraint(f"AutoNormal.scales.{name}") == constraints.softplus_positive
        np.testing.assert_allclose(store[f"AutoNormal.locs.{name}"], mean, atol=0.05, err_msg=name)
        np.testing.assert_allclose(store[f"AutoNormal.scales.{name}"], sd, rtol=0.15, err_msg=name)


def test_a_store_saved_with_exp_scales_still_loads_and_trains(tmp_path):
    # what AutoNormal wrote before it used softplus_positive: the scales stored as log(scale)
    store = minippl.get_param_store()
    store.setdefault("AutoNormal.locs.z", np.array(1.5))
    store.setdefault("AutoNormal.scales.z", np.array(0.3), constraints.positive)
    path = store.save(tmp_path / "old_store")
    minippl.clear_param_store()

    def model(x):
        z = minippl.sample("z", dist.Normal(0.0, 1.0))
        with minippl.plate("data", len(x)):
            minippl.sample("x", dist.Normal(z, 1.0), obs=x)

    for set_up_first in (False, True):  # loaded into an empty store, or over the guide's new params
        minippl.clear_param_store()
        guide = AutoNormal(model)
        if set_up_first:
            guide(X)
            assert store.get_constraint("AutoNormal.scales.z") == constraints.softplus_positive
        store.load(path)
        # each param keeps the constraint it was saved with: the old scale is read through exp
        assert store.get_constraint("AutoNormal.scales.z") == constraints.positive
        assert float(store.get_unconstrained("AutoNormal.scales.z")) == pytest.approx(np.log(0.3))
        assert float(guide.quantiles([0.5], X)["z"][0]) == pytest.approx(1.5)
        assert float(guide.quantiles([0.95], X)["z"][0]) == pytest.approx(1.5 + 1.6448536269514722 * 0.3)
        check_gradients(model, guide, X)
    svi = SVI(model, guide, ClippedAdam({"lr": 0.05, "lrd": 0.01 ** (1 / 1500)}), Trace_ELBO())
    for _ in range(1500):
        svi.step(X)
    assert float(store["AutoNormal.locs.z"]) == pytest.approx(X.sum() / (len(X) + 1), abs=0.03)
    assert float(store["AutoNormal.scales.z"]) == pytest.approx((len(X) + 1) ** -0.5, rel=0.15)
    assert store.get_constraint("AutoNormal.scales.z") == constraints.positive  # still exp
