"""The hand-written VAE step of benchmarks/vae_plain_step.py equals minippl's SVI step.

Two independent routes to the same numbers: the benchmark writes the VAE's backward pass out by
hand, line by line; minippl derives it from the traces (the tape). For the same parameters, batch
and noise, their losses and every parameter gradient must agree to float32 rounding. This keeps
the benchmark honest (it times the same work) and cross-checks the tape on the real model.
"""
import pathlib
import sys

import numpy as np
import pytest

import minippl
from minippl.infer import Trace_ELBO

pytest.importorskip("numba")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "benchmarks"))
import vae_plain_step  # noqa: E402
from vae_mnist import VAE  # noqa: E402


def minippl_loss_and_grads(x):
    """minippl's loss and gradients for the example's VAE, and the guide's noise it drew."""
    vae = VAE(50, 400)
    rng = minippl.backend.global_rng()
    state = rng.bit_generator.state
    noise = rng.standard_normal((x.shape[0], 50), dtype=np.float32)  # the draw the guide will make
    rng.bit_generator.state = state
    loss, grads, _ = Trace_ELBO().loss_and_grads(vae.model, vae.guide, x)
    params = {name: minippl.get_param_store().get_unconstrained(name) for name in grads}
    return loss, grads, params, noise


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_plain_step_equals_minippl(backend):
    minippl.set_backend(backend)
    try:
        x = np.random.default_rng(3).random((16, 784), dtype=np.float32)
        loss, grads, params, noise = minippl_loss_and_grads(x)
        plain_loss, plain_grads = vae_plain_step.loss_and_grads(params, x, noise)
    finally:
        minippl.set_backend("numba")
    assert set(plain_grads) == set(grads) and len(grads) == 10
    assert plain_loss == pytest.approx(loss, rel=1e-5)
    for name, g in grads.items():
        scale = np.abs(g).max()
        np.testing.assert_allclose(plain_grads[name], g, rtol=0, atol=1e-4 * scale, err_msg=name)


def test_plain_trainer_trains_and_refuses_nan():
    trainer = vae_plain_step.PlainTrainer(seed=0)
    x = np.random.default_rng(4).random((32, 784), dtype=np.float32)
    losses = [trainer.step(x) for _ in range(30)]
    assert losses[-1] < losses[0] - 50  # 30 Adam steps on one batch must fit it
    before = {n: a.copy() for n, a in trainer.params.items()}
    with pytest.raises(FloatingPointError):
        trainer.step(np.full_like(x, np.nan))
    assert all(np.array_equal(before[n], trainer.params[n]) for n in before)
