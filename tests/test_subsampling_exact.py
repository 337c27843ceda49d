"""Subsampling and scaling, checked exactly (not by finite differences of the same surrogate).

The score-function gradient of a discrete local latent under a subsampling plate (or a
``scale`` handler) is averaged over every subsample and every value of the latents, by
enumeration, and compared with the gradient of the full ELBO in closed form. Then
Pyro's ``param(..., event_dim=...)``: a per-datum param read inside a subsampling plate
is read at the drawn items only, and its gradient lands on those items.
"""
import itertools

import numpy as np
import pytest

import minippl
import minippl.distributions as dist
from minippl import handlers
from minippl.infer import Trace_ELBO, check_gradients

X = np.array([0.4, -1.3, 2.2, 0.9])
PRIOR = 0.3  # P(z = 1)
LOGITS = np.array([0.2, -0.5, 1.1, -1.7])


def loc_of(z):
    return -1.0 + 3.0 * z  # NumPy arithmetic on the replayed (traced) choice


def model(x, subsample=None):
    with minippl.plate("data", len(x), subsample=subsample) as idx:
        z = minippl.sample("z", dist.Bernoulli(probs=PRIOR * np.ones(len(idx))))
        minippl.sample("x", dist.Normal(loc_of(z), 1.0), obs=x[idx])


def guide(x, subsample=None):
    with minippl.plate("data", len(x), subsample=subsample):
        logits = minippl.param("logits", LOGITS.copy(), event_dim=0)  # subsampled by the plate
        minippl.sample("z", dist.Bernoulli(logits=logits))


def exact_gradient(weight=1.0):
    """d(-ELBO)/d logits of the full data, by enumerating each z_i in {0, 1}.

    ELBO_i = sum_z q_i(z) (a_i(z) - log q_i(z)) with a_i(z) = log p(z) + log N(x_i | loc(z), 1) and
    q_i(1) = p_i = sigmoid(l_i): dELBO_i/dp_i = a_i(1) - a_i(0) - log(p_i / (1 - p_i)), dp_i/dl_i = p_i (1 - p_i).
    """
    p = 1 / (1 + np.exp(-LOGITS))

    def a(z):
        return np.log(PRIOR if z else 1 - PRIOR) - 0.5 * (X - loc_of(z)) ** 2 - 0.5 * np.log(2 * np.pi)

    return -weight * (a(1) - a(0) - LOGITS) * p * (1 - p)


def average_gradient(run, subsets):
    """E over the subsets (uniform) and the guide's choices of the gradient minippl computes."""
    p = 1 / (1 + np.exp(-LOGITS))
    total = np.zeros(4)
    for subset in subsets:
        subset = np.array(subset)
        for z in itertools.product([0.0, 1.0], repeat=len(subset)):
            z = np.array(z)
            q = np.prod(np.where(z == 1, p[subset], 1 - p[subset]))
            total += q * run(subset, z)["logits"] / len(subsets)
    return total


@pytest.fixture(autouse=True)
def _validation_on():
    with minippl.validation_enabled(True):
        yield


def test_score_function_gradient_under_a_subsampling_plate_is_the_full_gradient():
    def run(subset, z):
        minippl.clear_param_store()
        return Trace_ELBO().loss_and_grads(model, handlers.substitute(guide, data={"z": z}), X, subset)[1]

    subsets = list(itertools.combinations(range(4), 2))
    np.testing.assert_allclose(average_gradient(run, subsets), exact_gradient(), rtol=1e-12)


def test_score_function_gradient_under_a_scale_handler_is_scaled_once():
    def run(subset, z):
        minippl.clear_param_store()
        scaled_model = handlers.scale(model, scale=3.0)
        scaled_guide = handlers.scale(handlers.substitute(guide, data={"z": z}), scale=3.0)
        return Trace_ELBO().loss_and_grads(scaled_model, scaled_guide, X, subset)[1]

    np.testing.assert_allclose(average_gradient(run, [tuple(range(4))]), exact_gradient(weight=3.0), rtol=1e-12)


# ---------------------------------------------------------------- param(..., event_dim=...)
def test_param_with_event_dim_is_read_at_the_subsample_and_its_gradient_scatters_back():
    minippl.clear_param_store()
    subset = np.array([3, 1])
    with handlers.trace() as tr:
        guide(X, subset)
    np.testing.assert_array_equal(tr.trace.nodes["z"]["fn"].logits, LOGITS[subset])
    check_gradients(model, guide, X, subset)
    _, grads, _ = Trace_ELBO().loss_and_grads(model, handlers.substitute(guide, data={"z": np.ones(2)}), X, subset)
    assert grads["logits"].shape == (4,)
    assert np.all(grads["logits"][[0, 2]] == 0) and np.all(grads["logits"][subset] != 0)


def test_param_event_dim_counts_dims_left_of_the_event():
    minippl.clear_param_store()
    with minippl.plate("data", 5, subsample=np.array([4, 0])):
        rows = minippl.param("rows", np.arange(15.0).reshape(5, 3), event_dim=1)  # one 3-vector per item
    np.testing.assert_array_equal(rows, [[12.0, 13.0, 14.0], [0.0, 1.0, 2.0]])
    with minippl.plate("data", 5):  # no subsampling: the whole param
        assert minippl.param("rows", event_dim=1).shape == (5, 3)


def test_param_event_dim_of_the_wrong_size_is_refused():
    minippl.clear_param_store()
    with pytest.raises(ValueError, match=r"param 'w' \(event_dim=0\) has shape \(4,\).*plate 'data' of size 5"):
        with minippl.plate("data", 5, subsample_size=2):
            minippl.param("w", np.zeros(4), event_dim=0)
    with pytest.raises(ValueError, match="event_dim must be a non-negative int"):
        minippl.param("w", np.zeros(4), event_dim=-1)
