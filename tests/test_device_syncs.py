"""A training step that never waits for the GPU, checked without one.

On a GPU every number the host reads (a loss, a finiteness check, a validation check) waits for
all the work queued there, and every array copied over is a transfer. tests/device_standin.py
plays the GPU with NumPy arrays that count both. With ``SVI(..., sync_every=k)`` a step reads
nothing and copies nothing, except the first step's validation and, every k steps, the one read
of the deferred finiteness flag (plus the validation that runs there). The deferred step must
also compute exactly what the ordinary one does, refuse a non-finite step without changing
anything, and raise at the sync point naming that step.
"""
import numpy as np
import pytest

import minippl
import minippl.distributions as dist
from minippl.distributions import constraints
from minippl import backend
from minippl.infer import SVI, Trace_ELBO
from minippl.infer.sync_window import host_counters, restore_host_counters
from minippl.optim import Adam, ClippedAdam, SGD
from tests import device_standin as device
from tests.simple_models import guide as normal_guide, model as normal_model
from vae_mnist import VAE


def vae_on_standin(xp, batch=8):
    vae = VAE(z_dim=4, hidden_dim=16)
    for path, array in list(vae.named_parameters()):
        vae.set_parameter(path, xp.asarray(array))
    x = device.to_device(np.random.default_rng(0).random((batch, 784), dtype=np.float32))
    return vae, x


def counts_per_step(svi, x, steps):
    counts = []
    for _ in range(steps):
        device.reset()
        svi.step(x)
        counts.append(dict(device.COUNTS))
    return counts


def test_a_deferred_vae_step_reads_nothing_from_the_device_between_sync_points():
    with device.installed() as xp:
        vae, x = vae_on_standin(xp)
        svi = SVI(vae.model, vae.guide, Adam({"lr": 1e-3}), Trace_ELBO(), sync_every=4)
        counts = counts_per_step(svi, x, 8)
    reads = [c["reads"] for c in counts]
    assert all(c["copies_to_device"] == 0 for c in counts), counts  # noise and cotangents made there
    assert reads[1] == reads[2] == reads[4] == reads[5] == reads[6] == 0, (reads, device.WHERE)
    assert reads[0] > 0  # the first step validates the arguments and the data
    # a sync point: the same validation as the first step, and one read of the finiteness flag
    assert reads[3] == reads[7] == reads[0] + 1, reads


def test_an_epoch_of_the_example_reads_the_gpu_only_at_its_sync_points():
    from vae_mnist import train_epoch

    with device.installed() as xp:
        vae, x = vae_on_standin(xp, batch=32)
        first = SVI(vae.model, vae.guide, Adam({"lr": 1e-3}), Trace_ELBO(), sync_every=100)
        validation_reads = counts_per_step(first, x[:8], 1)[0]["reads"]  # a first step reads only these
        svi = SVI(vae.model, vae.guide, Adam({"lr": 1e-3}), Trace_ELBO(), sync_every=4)  # 4 batches of 8
        device.reset()
        loss = train_epoch(svi, x, 8, np.random.default_rng(1), np.random.default_rng(2), epoch=1)
        counts = dict(device.COUNTS)
    # the first step's and the sync point's validation, the flag, the epoch's loss: nothing else
    assert validation_reads > 0
    assert counts == {"reads": 2 * validation_reads + 2, "copies_to_device": 0}, (counts, device.WHERE)
    assert np.isfinite(loss) and isinstance(loss, float)


def test_the_ordinary_step_reads_every_step_which_the_standin_sees():
    # the counter is not blind: without sync_every each step reads the loss and the checks
    with device.installed() as xp:
        vae, x = vae_on_standin(xp)
        svi = SVI(vae.model, vae.guide, Adam({"lr": 1e-3}), Trace_ELBO())
        counts = counts_per_step(svi, x, 3)
        with minippl.validation_enabled(False):
            unvalidated = counts_per_step(svi, x, 1)
    assert all(c["reads"] >= 2 for c in counts + unvalidated), counts  # the loss, the NaN guard
    assert all(c["copies_to_device"] == 0 for c in counts)


def test_device_noise_is_drawn_there_and_seeded_by_the_host_generator():
    with device.installed() as xp:
        like = xp.zeros(3, dtype=np.float32)
        draws = []
        for _ in range(2):
            rng = np.random.default_rng(7)
            draws.append(backend.standard_normal(rng, (2, 3), np.float32, like=like))
            draws.append(backend.uniform(rng, (4,), np.float32, like=like))
        assert device.COUNTS == {"reads": 0, "copies_to_device": 0}
    assert all(type(d) is device.DeviceArray and d.dtype == np.float32 for d in draws)
    np.testing.assert_array_equal(draws[0], draws[2])  # the same host seed, the same device noise
    np.testing.assert_array_equal(draws[1], draws[3])
    assert np.all((draws[1] >= 0) & (draws[1] < 1)) and np.std(draws[0]) > 0


@pytest.mark.parametrize("make_optim", [lambda: Adam({"lr": 0.05}), lambda: ClippedAdam({"lr": 0.05, "lrd": 0.99}),
                                        lambda: SGD({"lr": 0.01, "momentum": 0.9})])
def test_deferred_steps_compute_what_ordinary_steps_compute(make_optim):
    x = np.array([0.5, 1.5, 2.0])
    runs = []
    for sync_every in (1, 3):
        minippl.clear_param_store()
        minippl.set_rng_seed(0)
        svi = SVI(normal_model, normal_guide, make_optim(), Trace_ELBO(), sync_every=sync_every)  # float64
        losses = [float(svi.step(x)) for _ in range(7)]
        store = minippl.get_param_store()
        runs.append((losses, {n: store.get_unconstrained(n).copy() for n in store.keys()}, host_counters(svi.optim)))
    assert runs[0][0] == runs[1][0]
    for name in runs[0][1]:
        np.testing.assert_array_equal(runs[0][1][name], runs[1][1][name])
    assert runs[0][2] == runs[1][2]


def test_a_refused_step_changes_nothing_and_the_sync_point_names_it():
    good, bad = np.array([0.5, 1.5, 2.0]), np.array([0.5, np.nan, 2.0])
    svi = SVI(normal_model, normal_guide, Adam({"lr": 0.05}), Trace_ELBO(), sync_every=4)
    store = minippl.get_param_store()
    with minippl.validation_enabled(False):  # let the NaN reach the loss, as an overflow would
        svi.step(good)
        before = {n: store.get_unconstrained(n).copy() for n in store.keys()}
        moments = {n: {k: v.copy() for k, v in s.items() if hasattr(v, "shape")} for n, s in svi.optim.state.items()}
        counters = host_counters(svi.optim)
        assert np.isnan(svi.step(bad))  # step 2: refused on the device; nothing is read yet
        svi.step(good)  # step 3 runs, but changes nothing: a refused step stops the updates until a sync
        with pytest.raises(FloatingPointError, match=r"step 2: the loss or a gradient was not finite, so steps 2 to 4"):
            svi.step(good)  # step 4 is a sync point
    for name, value in before.items():
        np.testing.assert_array_equal(store.get_unconstrained(name), value)
        for key, array in moments[name].items():
            np.testing.assert_array_equal(svi.optim.state[name][key], array)
    assert host_counters(svi.optim) == counters and svi.step_count == 1
    svi.step(good)  # training goes on from step 2, as after the ordinary guard's error
    assert svi.step_count == 2 and svi.optim.state["loc"]["step"] == 2


def test_sync_reads_the_flag_on_demand_and_resets_it():
    svi = SVI(normal_model, normal_guide, Adam({"lr": 0.05}), Trace_ELBO(), sync_every=100)
    x = np.array([0.5, 1.5])
    for _ in range(3):
        svi.step(x)
    svi.sync()  # nothing refused: returns quietly, and again with nothing pending
    svi.sync()
    assert svi.step_count == 3


def test_validation_of_device_values_runs_at_the_first_step_and_at_sync_points():
    def model(scale):
        minippl.sample("x", dist.Normal(0.0, scale).to_event(1), obs=backend.array_module(scale).zeros(2))

    def guide(scale):
        pass

    with device.installed():
        good, bad = device.to_device(np.ones(2)), device.to_device(np.array([1.0, -1.0]))
        svi = SVI(model, guide, Adam({"lr": 0.1}), Trace_ELBO(), sync_every=3)
        with pytest.raises(ValueError, match="scale must be > 0"):
            svi.step(bad)  # step 1 validates
        svi.step(good)
        with np.errstate(invalid="ignore"):
            svi.step(bad)  # step 2: not read between sync points (its NaN loss refuses the update)
        with pytest.raises(FloatingPointError, match="step 2") as raised:
            svi.step(bad)  # step 3 is a sync point: its validation refuses, and the window's refusal is said
    assert "step 3: model site 'x': Normal: scale must be > 0" in str(raised.value.__cause__)


def test_the_sync_window_refuses_an_optimiser_that_cannot_take_its_flag():
    class PlainSGD:
        def step(self, params, grads):
            pass

    with pytest.raises(TypeError, match=r"sync_every=4.*PlainSGD.*use sync_every=1"):
        SVI(normal_model, normal_guide, PlainSGD(), Trace_ELBO(), sync_every=4)


@pytest.mark.parametrize("sync_every", [0, -1, 1.5, None])
def test_sync_every_must_be_a_whole_number(sync_every):
    with pytest.raises(ValueError, match="sync_every"):
        SVI(normal_model, normal_guide, Adam({"lr": 0.1}), Trace_ELBO(), sync_every=sync_every)


def test_a_conditional_update_keeps_everything_when_the_flag_is_false():
    theta, grad = np.array([1.0, 2.0]), np.array([np.nan, 1.0])
    adam = Adam({"lr": 0.1})
    adam.step({"t": theta}, {"t": np.array([0.5, 0.5])})
    kept = theta.copy(), adam.state["t"]["exp_avg"].copy(), adam.state["t"]["exp_avg_sq"].copy()
    adam.step({"t": theta}, {"t": grad}, only_if=np.array(False))
    np.testing.assert_array_equal(theta, kept[0])
    np.testing.assert_array_equal(adam.state["t"]["exp_avg"], kept[1])
    np.testing.assert_array_equal(adam.state["t"]["exp_avg_sq"], kept[2])
    conditional, ordinary = Adam({"lr": 0.1}), Adam({"lr": 0.1})
    a, b = np.array([1.0, 2.0]), np.array([1.0, 2.0])
    for g in (np.array([0.5, -1.0]), np.array([0.2, 0.3])):
        conditional.step({"t": a}, {"t": g}, only_if=np.array(True))
        ordinary.step({"t": b}, {"t": g})
    np.testing.assert_array_equal(a, b)


def test_python_numbers_in_a_model_are_filled_on_the_device_not_copied():
    def model(x):
        z = minippl.sample("z", dist.Normal(0.0, 1.0))  # Python floats, as Pyro models write them
        with minippl.plate("data", len(x)):
            minippl.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(x):
        loc = minippl.param("loc", init["loc"])
        scale = minippl.param("scale", init["scale"], constraint=constraints.positive)
        minippl.sample("z", dist.Normal(loc, scale))

    with device.installed():
        init = {"loc": device.to_device(np.array(0.0)), "scale": device.to_device(np.array(1.0))}
        x = device.to_device(np.array([0.5, 1.5, 2.0]))
        svi = SVI(model, guide, ClippedAdam({"lr": 0.05}), Trace_ELBO(), sync_every=3)
        counts = counts_per_step(svi, x, 5)
    assert [c["copies_to_device"] for c in counts] == [0] * 5, device.WHERE
    reads = [c["reads"] for c in counts]  # the first step also checks the params' initial values
    assert reads[1] == reads[3] == reads[4] == 0 and reads[2] >= 1, counts


def test_device_noise_is_fixed_by_the_host_generator_state_alone():
    # what set_rng_seed, seed and a checkpoint restore fix; a resumed run draws the same noise
    with device.installed() as xp:
        like = xp.zeros(3, dtype=np.float32)
        rng = np.random.default_rng(3)
        state = rng.bit_generator.state
        first = backend.standard_normal(rng, (5,), np.float32, like=like)
        second = backend.standard_normal(rng, (5,), np.float32, like=like)
        rng.bit_generator.state = state
        again = backend.standard_normal(rng, (5,), np.float32, like=like)
        with minippl.handlers.seed(rng_seed=1):  # another generator's draws leave this one alone
            backend.standard_normal(np.random.default_rng(9), (5,), np.float32, like=like)
        after = backend.standard_normal(rng, (5,), np.float32, like=like)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(second, after)
    assert not np.array_equal(first, second)


def test_an_error_inside_the_window_still_reports_the_step_refused_before_it():
    good, bad = np.array([0.5, 1.5, 2.0]), np.array([0.5, np.nan, 2.0])
    svi = SVI(normal_model, normal_guide, Adam({"lr": 0.05}), Trace_ELBO(), sync_every=10)
    with minippl.validation_enabled(False):
        svi.step(good)
        svi.step(bad)  # step 2: refused, not yet read
        with pytest.raises(FloatingPointError, match="step 2") as raised:
            svi.step(np.ones((2, 2)))  # step 3 fails for its own reason: the window ends there
    assert isinstance(raised.value.__cause__, ValueError)
    assert svi.step_count == 1 and svi.optim.state["loc"]["step"] == 1


def test_a_numpy_learning_rate_decay_is_put_back_too():
    adam = ClippedAdam({"lr": 0.1, "lrd": np.float64(0.5)})
    theta = np.array([1.0])
    adam.step({"t": theta}, {"t": np.array([1.0])})
    saved = host_counters(adam)
    assert saved == {"t": {"step": 1, "lr": 0.05}}
    adam.step({"t": theta}, {"t": np.array([1.0])}, only_if=np.array(False))
    restore_host_counters(adam, saved)
    assert host_counters(adam) == saved


@pytest.mark.parametrize("flag, changes", [(True, True), (False, False), (np.array(True), True),
                                           (np.array(False), False)])
def test_a_conditional_update_takes_python_and_array_flags(flag, changes):
    theta = np.array([0.0])
    SGD({"lr": 0.1}).step({"t": theta}, {"t": np.array([-3.0])}, only_if=flag)
    assert (theta[0] != 0.0) == changes
