"""Categorical: log-probs against direct formulas, sampling frequencies, shapes, the VJPs
against float64 finite differences, and its two uses in models (a classifier's likelihood,
a discrete latent with a score-function gradient)."""
import numpy as np
import pytest
from finite_diff import check_vjp

import minippl
import minippl.distributions as dist
from minippl import handlers, nn
from minippl.infer import SVI, Trace_ELBO, check_gradients
from minippl.optim import Adam

RNG = np.random.default_rng(0)


def direct_log_probs(logits):
    return logits - np.log(np.exp(logits).sum(-1, keepdims=True))


def test_log_prob_both_parametrisations_agree_with_the_formula():
    logits = RNG.standard_normal((3, 4))
    probs = np.exp(logits)  # unnormalised on purpose: Categorical normalises
    value = np.array([[0, 3, 2], [1, 1, 0]])  # (2, 3): broadcasts against batch shape (3,)
    expected = np.take_along_axis(np.broadcast_to(direct_log_probs(logits), (2, 3, 4)), value[..., None], -1)[..., 0]
    for d in (dist.Categorical(logits=logits), dist.Categorical(probs=probs)):
        assert d.batch_shape == (3,) and d.event_shape == ()
        np.testing.assert_allclose(d.log_prob(value), expected, rtol=1e-12)
        np.testing.assert_allclose(d.probs.sum(-1), 1.0)
        np.testing.assert_allclose(d.logits, direct_log_probs(logits), rtol=1e-12, atol=1e-14)


def test_values_outside_the_support_have_log_prob_minus_infinity():
    d = dist.Categorical(logits=np.zeros(3))
    lp = d.log_prob(np.array([-1, 3, 1.5, 2.0]))
    assert np.all(np.isneginf(lp[:3])) and lp[3] == pytest.approx(-np.log(3))
    assert not d.support.check(np.array(3)) and d.support.check(np.array(2))


def test_sample_frequencies_shapes_and_dtype():
    probs = np.array([[0.1, 0.6, 0.3], [0.5, 0.0, 0.5]])
    d = dist.Categorical(probs=probs)
    draws = d.sample((20000,), rng=np.random.default_rng(1))
    assert draws.shape == (20000, 2) and draws.dtype == np.int64
    for row in range(2):
        frequencies = np.bincount(draws[:, row], minlength=3) / 20000
        np.testing.assert_allclose(frequencies, probs[row], atol=0.015)
    assert np.all(draws[:, 1] != 1)  # a class of probability 0 is never drawn
    assert d.expand((5, 2)).sample((4,)).shape == (4, 5, 2)
    seeded = [d.sample((3,), rng=np.random.default_rng(7)) for _ in range(2)]
    np.testing.assert_array_equal(*seeded)


def test_expand_and_enumerate_support():
    d = dist.Categorical(logits=np.zeros(4)).expand((2, 3))
    assert d.batch_shape == (2, 3)
    assert d.log_prob(np.array(1)).shape == (2, 3)
    assert d.enumerate_support().shape == (4, 2, 3)
    np.testing.assert_array_equal(d.enumerate_support(expand=False).ravel(), np.arange(4))


# ---------------------------------------------------------------- gradients
@pytest.mark.parametrize("name", ["logits", "probs"])
def test_log_prob_vjp_matches_finite_differences(name):
    value = np.array([[0, 3, 2], [1, 1, 0]])
    raw = RNG.standard_normal((3, 4))
    point = raw if name == "logits" else np.exp(raw)  # probs unnormalised and away from the clamp

    def log_prob(**inputs):
        return dist.Categorical(**{name: inputs[name]}).log_prob(value)

    def vjp(cotangent, **inputs):
        return dist.Categorical(**{name: inputs[name]}).log_prob_vjp(value, cotangent, [name])

    check_vjp(log_prob, {name: point}, vjp)


def test_log_prob_vjp_with_a_broadcast_parameter_and_value_gradient():
    logits = RNG.standard_normal(4)  # one parameter row shared by a batch of 5 values
    value = np.array([0, 1, 3, 3, 2])
    d = dist.Categorical(logits=logits)
    grads = d.log_prob_vjp(value, np.ones(5), ["value", "logits"])
    assert grads["value"].shape == (5,) and not grads["value"].any()  # d/dx of a pmf: 0
    onehot = np.eye(4)[value]
    np.testing.assert_allclose(grads["logits"], (onehot - np.exp(direct_log_probs(logits))).sum(0), rtol=1e-12)


def test_probs_with_a_zero_class_stay_finite():
    d = dist.Categorical(probs=np.array([0.0, 0.25, 0.75]))
    assert np.isfinite(d.log_prob(np.array(0)))
    grad = d.log_prob_vjp(np.array([0, 2]), np.ones(2), ["probs"])["probs"]
    assert np.all(np.isfinite(grad))


# ---------------------------------------------------------------- in models
def make_classes(rng, n=120):
    centres = np.array([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
    labels = rng.integers(0, 3, n)
    return centres[labels] + 0.4 * rng.standard_normal((n, 2)), labels


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 3, dtype=np.float64)

    def model(self, x, labels=None):
        minippl.module("classifier", self)
        logits = self.fc(x)
        with minippl.plate("data", x.shape[0]):
            return minippl.sample("label", dist.Categorical(logits=logits), obs=labels)


def test_categorical_likelihood_trains_a_softmax_classifier():
    x, labels = make_classes(np.random.default_rng(0))
    minippl.set_rng_seed(0)
    classifier = Classifier()
    guide = lambda x, labels=None: None  # noqa: E731 (no latent sites: maximum likelihood)
    check_gradients(classifier.model, guide, x, labels)
    svi = SVI(classifier.model, guide, Adam({"lr": 0.1}), Trace_ELBO())
    losses = [svi.step(x, labels) for _ in range(100)]
    assert losses[-1] < 0.25 * losses[0]
    accuracy = np.mean(np.argmax(classifier.fc(x), axis=-1) == labels)
    assert accuracy > 0.95
    with handlers.seed(rng_seed=0):
        predicted = classifier.model(x)  # labels=None: the site samples class indices
    assert predicted.shape == labels.shape and predicted.dtype == np.int64


CENTRES = np.array([-1.0, 1.0, 3.0])


def categorical_guide(x):
    logits = minippl.param("logits", np.array([0.1, 0.3, -0.2]))
    minippl.sample("c", dist.Categorical(logits=logits))


def test_discrete_latent_site_gets_a_score_function_gradient():
    def model(x):
        c = minippl.sample("c", dist.Categorical(logits=np.zeros(3)))
        minippl.sample("x", dist.Normal(CENTRES[c], 1.0).expand([len(x)]).to_event(1), obs=x)

    check_gradients(model, categorical_guide, np.array([0.9, 1.1, 3.2]))


def test_global_discrete_latent_with_plated_observations():
    # the plate-summed data term must reach the global site's score as a scalar
    def model(x):
        c = minippl.sample("c", dist.Categorical(logits=np.zeros(3)))
        with minippl.plate("data", len(x)):
            minippl.sample("x", dist.Normal(CENTRES[c], 1.0), obs=x)

    check_gradients(model, categorical_guide, np.array([0.9, 1.1, 3.2]))


# ---------------------------------------------------------------- errors
def test_clear_errors():
    with pytest.raises(ValueError, match="exactly one of probs= or logits="):
        dist.Categorical()
    with pytest.raises(ValueError, match="exactly one"):
        dist.Categorical(probs=np.ones(2), logits=np.ones(2))
    with pytest.raises(ValueError, match="last dim indexing the classes"):
        dist.Categorical(logits=np.array(1.0))
    with pytest.raises(TypeError, match="float array"):
        dist.Categorical(probs=np.array([1, 2]))
    with pytest.raises(ValueError, match="probs must be in"):
        dist.Categorical(probs=np.array([-1.0, 2.0]))
    with pytest.raises(NotImplementedError, match="no reparameterised sampler"):
        dist.Categorical(logits=np.zeros(2)).rsample()
