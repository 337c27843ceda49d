"""Optimisers against float64 references written from the documented update rules
(torch.optim.SGD, torch.optim.Adam, Pyro's ClippedAdam), plus in-place updates,
per-parameter state, state save/load, errors, and Adam minimising a quadratic."""
import os

import numpy as np
import pytest

from minippl.optim import SGD, Adam, ClippedAdam

STEPS = 6


# ------------------------------------------------------------------ references (float64, plain loops)
def reference_sgd(param, grads, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    buffer = None
    for grad in grads:
        grad = grad + weight_decay * param
        if momentum:
            buffer = grad.copy() if buffer is None else momentum * buffer + (1 - dampening) * grad
            grad = grad + momentum * buffer if nesterov else buffer
        param = param - lr * grad
    return param


def reference_adam(param, grads, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
    m = v = np.zeros_like(param)
    for t, grad in enumerate(grads, start=1):
        grad = grad + weight_decay * param
        m = betas[0] * m + (1 - betas[0]) * grad
        v = betas[1] * v + (1 - betas[1]) * grad**2
        m_hat, v_hat = m / (1 - betas[0] ** t), v / (1 - betas[1] ** t)
        param = param - lr * m_hat / (np.sqrt(v_hat) + eps)
    return param


def reference_clipped_adam(param, grads, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                           clip_norm=10.0, lrd=1.0, centered_variance=False):
    m = v = np.zeros_like(param)
    for t, grad in enumerate(grads, start=1):
        lr_t = lr * lrd**t  # Pyro multiplies lr by lrd at the start of every step
        grad = np.clip(grad, -clip_norm, clip_norm) + weight_decay * param
        m = betas[0] * m + (1 - betas[0]) * grad
        deviation = grad - m if centered_variance else grad  # centred: around the new m
        v = betas[1] * v + (1 - betas[1]) * deviation**2
        # eps is added to sqrt(v), and the bias corrections are folded into the step size
        step_size = lr_t * np.sqrt(1 - betas[1] ** t) / (1 - betas[0] ** t)
        param = param - step_size * m / (np.sqrt(v) + eps)
    return param


CASES = [
    (SGD, reference_sgd, {"lr": 0.1}),
    (SGD, reference_sgd, {"lr": 0.05, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.01}),
    (SGD, reference_sgd, {"lr": 0.05, "momentum": 0.8, "nesterov": True}),
    (Adam, reference_adam, {"lr": 0.01}),
    (Adam, reference_adam, {"lr": 0.02, "betas": (0.8, 0.99), "eps": 1e-3, "weight_decay": 0.1}),
    (ClippedAdam, reference_clipped_adam, {"lr": 0.01}),
    (ClippedAdam, reference_clipped_adam,
     {"lr": 0.02, "betas": (0.7, 0.9), "eps": 1e-2, "weight_decay": 0.05, "clip_norm": 0.5, "lrd": 0.9}),
    (ClippedAdam, reference_clipped_adam, {"lr": 0.01, "clip_norm": 1.0, "centered_variance": True}),
]
CASE_IDS = [f"{cls.__name__}-{i}" for i, (cls, _, _) in enumerate(CASES)]


def problem(dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    param = rng.standard_normal((3, 4)).astype(dtype)
    grads = [2.0 * rng.standard_normal((3, 4)).astype(dtype) for _ in range(STEPS)]
    return param, grads


@pytest.mark.parametrize("cls, reference, args", CASES, ids=CASE_IDS)
def test_matches_reference_float64(cls, reference, args):
    param, grads = problem()
    expected = reference(param.astype(np.float64), grads, **args)
    optim = cls(dict(args))
    for grad in grads:
        optim.step({"w": param}, {"w": grad})
    np.testing.assert_allclose(param, expected, rtol=1e-12, atol=1e-14)
    assert optim.get_state()["w"]["step"] == STEPS


@pytest.mark.parametrize("cls, reference, args", CASES, ids=CASE_IDS)
def test_float32_stays_float32_in_place(cls, reference, args):
    param, grads = problem(np.float32)
    expected = reference(param.astype(np.float64), [g.astype(np.float64) for g in grads], **args)
    original, grads_before = param, [g.copy() for g in grads]
    optim = cls(dict(args))
    params = {"w": param}
    for grad in grads:
        optim.step(params, {"w": grad})
    assert params["w"] is original and original.dtype == np.float32  # updated in place, never rebound
    for value in optim.state["w"].values():
        assert not hasattr(value, "dtype") or value.dtype == np.float32  # moments in the param's dtype
    for grad, before in zip(grads, grads_before):
        np.testing.assert_array_equal(grad, before)  # the caller's gradients are not modified
    np.testing.assert_allclose(param, expected, rtol=2e-5, atol=2e-6)


def test_zero_dimensional_params_update_in_place():
    param = np.array(1.0)
    for optim in (SGD({"lr": 0.1, "momentum": 0.5}), Adam({"lr": 0.1}), ClippedAdam({"lr": 0.1})):
        optim.step({"x": param}, {"x": np.array(2.0)})
    assert param.shape == () and param < 1.0


def test_each_param_has_its_own_lazy_state():
    a, b = np.zeros(2), np.zeros(3)
    optim = Adam({"lr": 0.1})
    assert optim.get_state() == {}
    optim.step({"a": a, "b": b}, {"a": np.ones(2)})  # b has no gradient: left alone, no state
    assert set(optim.state) == {"a"} and (b == 0).all()
    optim.step({"a": a, "b": b}, {"a": np.ones(2), "b": np.ones(3), "c": None})
    assert optim.state["a"]["step"] == 2 and optim.state["b"]["step"] == 1


def test_per_param_args_callable():
    seen = []

    def args(name):
        seen.append(name)
        return {"lr": 0.5 if name == "fast" else 0.0}

    fast, frozen = np.zeros(2), np.zeros(2)
    optim = SGD(args)
    names = {"fast": fast, "enc$$$fc.weight": frozen}
    for _ in range(3):
        optim.step(names, {"fast": np.ones(2), "enc$$$fc.weight": np.ones(2)})
    np.testing.assert_allclose(fast, -1.5)
    # resolved once per name; module params are named as nn.Module spells them, as in Pyro
    assert (frozen == 0).all() and sorted(seen) == ["enc.fc.weight", "fast"]


def test_clipped_adam_decays_the_learning_rate_per_param():
    optim = ClippedAdam({"lr": 1.0, "lrd": 0.5})
    param = np.zeros(1)
    for _ in range(3):
        optim.step({"w": param}, {"w": np.ones(1)})
    assert optim.state["w"]["lr"] == 0.125


@pytest.mark.parametrize("cls, args", [(SGD, {"lr": 0.1, "momentum": 0.9}), (Adam, {"lr": 0.1}),
                                       (ClippedAdam, {"lr": 0.1, "lrd": 0.9, "clip_norm": 1.0})])
def test_state_round_trip_continues_identically(cls, args, tmp_path):
    param, grads = problem()
    optim = cls(args)
    for grad in grads[:3]:
        optim.step({"w": param}, {"w": grad})
    snapshot, state = param.copy(), optim.get_state()
    path = optim.save(tmp_path / "optim")
    assert path.endswith(".npz") and os.listdir(tmp_path) == ["optim.npz"]
    for grad in grads[3:]:
        optim.step({"w": param}, {"w": grad})

    for restore in ("set_state", "load"):
        copy, restored = snapshot.copy(), cls(args)
        restored.set_state(state) if restore == "set_state" else restored.load(tmp_path / "optim")
        for grad in grads[3:]:
            restored.step({"w": copy}, {"w": grad})
        np.testing.assert_array_equal(copy, param)


def test_get_state_is_a_copy():
    optim = Adam({"lr": 0.1})
    optim.step({"w": np.zeros(2)}, {"w": np.ones(2)})
    state = optim.get_state()
    state["w"]["exp_avg"][:] = 99.0
    assert (optim.state["w"]["exp_avg"] != 99).all()


def test_load_rejects_corrupt_or_foreign_files_and_changes_nothing(tmp_path):
    optim = Adam({"lr": 0.1})
    optim.step({"w": np.zeros(2)}, {"w": np.ones(2)})
    path = optim.save(tmp_path / "adam.npz")
    clipped = ClippedAdam({"lr": 0.1})
    with pytest.raises(ValueError, match="ClippedAdam"):
        clipped.load(path)
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    before = optim.get_state()
    with pytest.raises(ValueError, match="adam.npz"):
        optim.load(path)
    np.testing.assert_array_equal(optim.state["w"]["exp_avg"], before["w"]["exp_avg"])
    with pytest.raises(ValueError, match="keys"):
        optim.set_state({"w": {"step": 1}})


def test_failed_save_keeps_the_previous_file(tmp_path, monkeypatch):
    optim = SGD({"lr": 0.1, "momentum": 0.5})
    optim.step({"w": np.zeros(2)}, {"w": np.ones(2)})
    path = optim.save(tmp_path / "sgd.npz")

    def broken_savez(file, **arrays):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError):
        optim.save(path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["sgd.npz"]
    SGD({"lr": 0.1, "momentum": 0.5}).load(path)


def test_adam_minimises_a_quadratic():
    rng = np.random.default_rng(3)
    curvature, target = rng.uniform(0.5, 5.0, size=10), rng.standard_normal(10)
    param = np.zeros(10)
    optim = Adam({"lr": 0.05})
    for _ in range(1500):
        optim.step({"x": param}, {"x": 2.0 * curvature * (param - target)})  # d/dx sum c (x - t)^2
    np.testing.assert_allclose(param, target, atol=1e-3)


def test_errors_are_clear():
    with pytest.raises(NotImplementedError, match="amsgrad"):
        Adam({"lr": 0.1, "amsgrad": True})
    with pytest.raises(ValueError, match="unknown hyperparameter.*'momentum'"):
        Adam({"lr": 0.1, "momentum": 0.9})
    with pytest.raises(ValueError, match="nesterov"):
        SGD({"lr": 0.1, "nesterov": True})
    with pytest.raises(ValueError, match="betas"):
        Adam({"betas": (0.9, 1.0)})
    with pytest.raises(TypeError, match="dict"):
        Adam(0.01)
    with pytest.raises(NotImplementedError, match="ClippedAdam"):
        Adam({"lr": 0.1}, clip_args={"clip_norm": 1.0})
    optim = Adam({"lr": 0.1})
    with pytest.raises(ValueError, match="shape"):
        optim.step({"w": np.zeros(2)}, {"w": np.zeros(3)})
    with pytest.raises(KeyError, match="'v'"):
        optim.step({"w": np.zeros(2)}, {"v": np.zeros(2)})
    with pytest.raises(ValueError, match="param 'w'.*lr"):
        SGD(lambda name: {"lr": -1.0}).step({"w": np.zeros(2)}, {"w": np.zeros(2)})
