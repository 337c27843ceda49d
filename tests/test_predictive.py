"""Predictive: prior and posterior predictive draws, conditioning on given samples or on a
guide's draws, which sites come back, vectorised (parallel) prediction, seeds, errors."""
import numpy as np
import pytest

import minippl
import minippl.distributions as dist
from minippl import handlers, nn
from minippl.infer import SVI, Predictive, Trace_ELBO
from minippl.infer.autoguide import AutoNormal
from minippl.nn import PyroModule, PyroSample
from minippl.optim import Adam

X = np.linspace(-1.0, 1.0, 5)


def model(x, y=None):
    """y ~ Normal(a + b x, 0.01): written with broadcasting, so parallel=True works too."""
    a = minippl.sample("a", dist.Normal(0.0, 1.0))
    b = minippl.sample("b", dist.Normal(0.0, 1.0))
    mean = minippl.deterministic("mean", nn.functional.add(a, nn.functional.mul(b, x)))
    with minippl.plate("data", len(x)):
        minippl.sample("y", dist.Normal(mean, 0.01), obs=y)
    return mean


def test_prior_predictive_returns_every_site_with_a_leading_sample_dim():
    draws = Predictive(model, num_samples=7)(X)
    assert {k: v.shape for k, v in draws.items()} == {"a": (7,), "b": (7,), "mean": (7, 5), "y": (7, 5)}
    np.testing.assert_allclose(draws["y"], draws["a"][:, None] + draws["b"][:, None] * X, atol=0.1)


def test_posterior_samples_are_conditioned_on_and_not_returned():
    samples = {"a": np.array([0.0, 1.0, 2.0]), "b": np.array([1.0, 1.0, -1.0])}
    draws = Predictive(model, samples)(X)  # Pyro's positional order; num_samples from the samples
    assert set(draws) == {"mean", "y"}
    np.testing.assert_allclose(draws["mean"], samples["a"][:, None] + samples["b"][:, None] * X)
    assert draws["y"].shape == (3, 5)


def test_a_guide_is_drawn_from_and_every_model_site_returned():
    guide = AutoNormal(model)
    svi = SVI(model, guide, Adam({"lr": 0.1}), Trace_ELBO())
    y = 0.5 + 2.0 * X
    for _ in range(300):
        svi.step(X, y)
    draws = Predictive(model, guide=guide, num_samples=50)(X)
    assert set(draws) == {"a", "b", "mean", "y"}  # not the guide's auxiliary sites
    assert abs(draws["a"].mean() - 0.5) < 0.05 and abs(draws["b"].mean() - 2.0) < 0.1
    picked = Predictive(model, guide=guide, num_samples=4, return_sites=["b", "_RETURN"])(X)
    assert set(picked) == {"b", "_RETURN"} and picked["_RETURN"].shape == (4, 5)
    positional = Predictive(model, guide, num_samples=4)(X)  # a callable second argument is the guide
    assert set(positional) == {"a", "b", "mean", "y"}


def test_observed_values_are_repeated_and_none_predicts():
    y = np.arange(5.0)
    draws = Predictive(model, num_samples=3, return_sites=["y"])(X, y)
    np.testing.assert_array_equal(draws["y"], np.broadcast_to(y, (3, 5)))


def test_seeded_prediction_repeats():
    predictive = Predictive(model, num_samples=4)
    first, second = (handlers.seed(predictive, rng_seed=2)(X) for _ in range(2))
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])


@pytest.mark.parametrize("with_guide", [False, True])
def test_parallel_matches_sequential_in_shape_and_distribution(with_guide):
    guide = AutoNormal(model) if with_guide else None
    if guide is not None:
        guide(X)  # set up the params (untrained: the prior-ish initial guide)
    sequential = Predictive(model, guide=guide, num_samples=2000)(X)
    parallel = Predictive(model, guide=guide, num_samples=2000, parallel=True)(X)
    for name, value in sequential.items():
        assert parallel[name].shape == value.shape, name
        np.testing.assert_allclose(parallel[name].mean(0), value.mean(0), atol=0.12)
        np.testing.assert_allclose(parallel[name].std(0), value.std(0), rtol=0.1, atol=0.01)


def test_parallel_with_posterior_samples():
    samples = {"a": np.array([0.0, 1.0]), "b": np.array([1.0, -1.0])}
    draws = Predictive(model, posterior_samples=samples, parallel=True)(X)
    np.testing.assert_allclose(draws["mean"], samples["a"][:, None] + samples["b"][:, None] * X)


def test_bayesian_module_predictions():
    class Line(PyroModule):
        def __init__(self):
            super().__init__()
            self.fc = PyroModule[nn.Linear](1, 1)
            self.fc.weight = PyroSample(dist.Normal(0.0, 1.0).expand([1, 1]).to_event(2))
            self.fc.bias = PyroSample(dist.Normal(0.0, 1.0).expand([1]).to_event(1))

        def forward(self, x, y=None):
            mean = nn.functional.sum(self.fc(x), axis=-1)
            with minippl.plate("data", x.shape[0]):
                return minippl.sample("y", dist.Normal(mean, 0.1), obs=y)

    line = Line()
    guide = AutoNormal(line)
    guide(X[:, None])
    draws = Predictive(line, guide=guide, num_samples=6)(X[:, None])
    assert draws["fc.weight"].shape == (6, 1, 1) and draws["y"].shape == (6, 5)


def test_clear_errors():
    with pytest.raises(ValueError, match="needs num_samples"):
        Predictive(model)
    with pytest.raises(ValueError, match="not both"):
        Predictive(model, posterior_samples={"a": np.zeros(2)}, guide=lambda x: None)
    with pytest.raises(ValueError, match="has 2 draws but num_samples=3"):
        Predictive(model, posterior_samples={"a": np.zeros(2)}, num_samples=3)
    with pytest.raises(ValueError, match="leading sample dim"):
        Predictive(model, posterior_samples={"a": np.array(0.0)})
    with pytest.raises(TypeError, match="list, tuple or set"):
        Predictive(model, num_samples=2, return_sites="y")
    with pytest.raises(KeyError, match="did not sample"):
        Predictive(model, num_samples=2, return_sites=["nope"])(X)
