"""SVI's NaN guard: a refused step names the step and the culprit, and changes nothing.

NaN injected into the data mid-training (with validation on and off, in a small model and a
small VAE) and a gradient that overflows while the loss stays finite: each raises
FloatingPointError naming the step and the first site or param, and leaves every parameter
and the optimiser state exactly as before; training can go on afterwards.
"""
import numpy as np
import pytest

import minippl
import minippl.distributions as dist
from minippl import nn
from minippl.infer import SVI, Trace_ELBO
from minippl.optim import Adam, ClippedAdam


from simple_models import guide, model  # noqa: E402  (tests/ is on sys.path)


def snapshot(svi):
    params = {k: v.copy() for k, v in minippl.get_param_store().get_state()["params"].items()}
    return params, svi.optim.get_state()


def assert_same(before, after):
    (params, optim_state), (params2, optim_state2) = before, after
    assert params.keys() == params2.keys() and optim_state.keys() == optim_state2.keys()
    for name in params:
        np.testing.assert_array_equal(params[name], params2[name])
    for name, entry in optim_state.items():
        assert entry.keys() == optim_state2[name].keys()
        for key, value in entry.items():
            np.testing.assert_array_equal(value, optim_state2[name][key])


@pytest.mark.parametrize("validate", [True, False])
@pytest.mark.parametrize("optim", [Adam({"lr": 0.05}), ClippedAdam({"lr": 0.05, "lrd": 0.99})])
def test_nan_injected_mid_training_is_refused_with_the_step_and_nothing_changes(validate, optim):
    minippl.enable_validation(validate)
    data = np.random.default_rng(0).normal(3.0, 1.0, size=20)
    svi = SVI(model, guide, optim, Trace_ELBO())
    for _ in range(5):
        svi.step(data)
    before = snapshot(svi)
    bad = data.copy()
    bad[7] = np.nan
    with pytest.raises(FloatingPointError) as caught:
        svi.step(bad)
    message = str(caught.value)
    assert "step 6" in message and "model site 'x'" in message and "No parameter was changed" in message
    assert ("index (7,)" in message) if validate else ("loss is nan" in message)
    assert_same(before, snapshot(svi))
    assert svi.step_count == 5
    svi.step(data)  # training goes on, and the next step is step 6 again
    assert svi.step_count == 6


def test_nan_in_the_data_of_a_vae_names_the_guide_site_first():
    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Dense(6, 4)
            self.fc_loc, self.fc_scale = nn.Dense(4, 2), nn.Dense(4, 2)

        def forward(self, x):
            hidden = nn.functional.softplus(self.fc(x))
            return self.fc_loc(hidden), nn.functional.exp(self.fc_scale(hidden))

    encoder, decoder = Encoder(), nn.Dense(2, 6)

    def vae_model(x):
        minippl.module("decoder", decoder)
        with minippl.plate("data", x.shape[0]):
            z = minippl.sample("latent", dist.Normal(np.zeros((x.shape[0], 2), np.float32), 1.0).to_event(1))
            minippl.sample("obs", dist.Bernoulli(logits=decoder(z)).to_event(1), obs=x)

    def vae_guide(x):
        minippl.module("encoder", encoder)
        with minippl.plate("data", x.shape[0]):
            z_loc, z_scale = encoder(x)
            minippl.sample("latent", dist.Normal(z_loc, z_scale).to_event(1))

    x = (np.random.default_rng(1).random((8, 6)) > 0.5).astype(np.float32)
    for validate, words in [(True, ["step 4", "guide site 'latent'", "loc", "NaN"]),
                            (False, ["step 4", "guide site 'latent' is nan", "model site 'obs'"])]:
        minippl.clear_param_store()
        minippl.enable_validation(validate)
        svi = SVI(vae_model, vae_guide, Adam({"lr": 0.01}), Trace_ELBO())
        for _ in range(3):
            svi.step(x)
        before = snapshot(svi)
        bad = x.copy()
        bad[2, 3] = np.nan
        with pytest.raises(FloatingPointError) as caught:
            svi.step(bad)
        assert all(word in str(caught.value) for word in words), str(caught.value)
        assert_same(before, snapshot(svi))


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # the overflow is the point
def test_non_finite_gradient_with_a_finite_loss_names_the_param_and_changes_nothing():
    def tiny_scale_model():
        s = minippl.param("s", np.array(1e-39, np.float32))  # float32 subnormal: d/ds = -1/s overflows
        minippl.sample("x", dist.Normal(0.0, s), obs=np.array(0.0, np.float32))

    def guide_with_a_param():
        # a guide param that the loss does not depend on (used only by a non-differentiable test)
        assert minippl.param("unused_by_model", np.array(1.0, np.float32)) > 0

    svi = SVI(tiny_scale_model, guide_with_a_param, Adam({"lr": 0.1}), Trace_ELBO())
    before = snapshot(svi)
    with pytest.raises(FloatingPointError, match=r"step 1: the gradient of param 's' is not finite "
                                                 r"\(0 NaN and 1 inf of 1 entries; loss -8\d\.\d+\)"):
        svi.step()
    after = snapshot(svi)
    assert set(after[0]) == {"s", "unused_by_model"}  # created at the refused step, at their initial values
    assert after[0]["s"] == np.float32(1e-39) and after[1] == before[1] == {}
