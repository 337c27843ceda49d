"""SVI: step updates and returns the loss, evaluate_loss changes nothing, NaN never becomes an update."""
import warnings

import numpy as np
import pytest

import minippl
import minippl.distributions as dist
from minippl import nn
from minippl.infer import SVI, GradientCheckError, Trace_ELBO
from minippl.optim import SGD, Adam, ClippedAdam


from simple_models import guide, model  # noqa: E402  (tests/ is on sys.path)


X = np.array([1.0, 2.0, 1.5])


@pytest.mark.parametrize("optim", [SGD({"lr": 0.01}), Adam({"lr": 0.01}), ClippedAdam({"lr": 0.01})])
def test_step_returns_the_loss_and_updates_in_place(optim):
    svi = SVI(model, guide, optim, Trace_ELBO())
    minippl.set_rng_seed(0)
    first = svi.step(X)
    loc = minippl.get_param_store().get_unconstrained("loc")
    before = loc.copy()
    svi.step(X)
    assert isinstance(first, float) and np.isfinite(first)
    assert minippl.get_param_store().get_unconstrained("loc") is loc  # updated in place
    assert loc != before


def test_an_optimiser_with_the_plain_step_signature_works():
    # SVI calls step(params, grads); only its sync window (sync_every > 1) passes only_if=
    class PlainSGD:
        def step(self, params, grads):
            for name, grad in grads.items():
                params[name] -= 0.01 * grad

    minippl.set_rng_seed(0)
    svi = SVI(model, guide, PlainSGD(), Trace_ELBO())
    svi.step(X)
    loc = minippl.get_param_store().get_unconstrained("loc").copy()
    svi.step(X)
    assert svi.step_count == 2 and minippl.get_param_store().get_unconstrained("loc") != loc


def test_training_lowers_the_loss():
    svi = SVI(model, guide, Adam({"lr": 0.05}), Trace_ELBO(num_particles=4))
    minippl.set_rng_seed(0)
    start = np.mean([svi.evaluate_loss(X) for _ in range(50)])
    for _ in range(300):
        svi.step(X)
    end = np.mean([svi.evaluate_loss(X) for _ in range(50)])
    assert end < start - 1.0


def test_evaluate_loss_changes_nothing():
    svi = SVI(model, guide, Adam({"lr": 0.1}), Trace_ELBO())
    svi.step(X)
    state = minippl.get_param_store().get_state()
    optim_state = svi.optim.get_state()
    svi.evaluate_loss(X)
    after = minippl.get_param_store().get_state()
    for name, value in state["params"].items():
        np.testing.assert_array_equal(after["params"][name], value)
    assert svi.optim.get_state().keys() == optim_state.keys()


def test_nan_in_data_raises_names_site_and_step_and_changes_nothing():
    svi = SVI(model, guide, Adam({"lr": 0.1}), Trace_ELBO())
    svi.step(X)
    svi.step(X)
    before = {k: v.copy() for k, v in minippl.get_param_store().get_state()["params"].items()}
    bad = X.copy()
    bad[1] = np.nan
    with pytest.raises(FloatingPointError, match=r"step 3.*model site 'x'.*No parameter was changed"):
        svi.step(bad)
    for name, value in minippl.get_param_store().get_state()["params"].items():
        np.testing.assert_array_equal(value, before[name])


def test_leftover_params_warn_once():
    minippl.param("left_over", np.zeros(2))
    svi = SVI(model, guide, Adam({"lr": 0.1}), Trace_ELBO())
    with pytest.warns(UserWarning, match="clear_param_store"):
        svi.step(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        svi.step(X)


class Double(nn.Module):
    """y = 2 z, with a wrong hand-written backward (it forgets the factor 2)."""

    def forward(self, z):
        return 2.0 * z, None

    def backward(self, cache, grad_y, needs_input_grad):
        return (grad_y,), {}


def test_validate_runs_the_gradient_check_on_the_first_step():
    def broken_model(x):
        z = minippl.sample("z", dist.Normal(0.0, 1.0))
        with minippl.plate("data", len(x)):
            minippl.sample("x", dist.Normal(Double()(z), 1.0), obs=x)

    svi = SVI(broken_model, guide, Adam({"lr": 0.1}), Trace_ELBO(), validate=True)
    with pytest.raises(GradientCheckError, match="'loc'"):
        svi.step(X)
    SVI(model, guide, Adam({"lr": 0.1}), Trace_ELBO(), validate=True).step(X)
