"""Memory stays flat during training: a fast proxy for benchmarks/vae_memory.py.

Nothing that a step creates (traces, tapes, caches, warnings, optimiser scratch) may outlive
it. tracemalloc counts every Python and NumPy allocation still alive after a number of SVI
steps on a small VAE; after warming up, 100 more steps must not add to it. (The 20-epoch
MNIST run with RSS per epoch is benchmarks/vae_memory.py: too slow for the suite.)
"""
import gc
import tracemalloc

import numpy as np
import pytest

import minippl
from minippl.infer import SVI, Trace_ELBO
from minippl.optim import Adam

vae_mnist = pytest.importorskip("vae_mnist")  # examples/ is on sys.path (conftest.py)


def test_many_svi_steps_on_a_small_vae_keep_memory_flat():
    x = np.random.default_rng(0).random((256, 784)).astype(np.float32)
    minippl.clear_param_store()
    minippl.set_rng_seed(0)
    vae = vae_mnist.VAE(z_dim=4, hidden_dim=16)
    svi = SVI(vae.model, vae.guide, Adam({"lr": 1e-3}), Trace_ELBO())

    def train(steps):
        for i in range(steps):
            batch = x[(16 * i) % 256:(16 * i) % 256 + 16]
            svi.step(batch)
            svi.evaluate_loss(batch)
        gc.collect()
        return tracemalloc.get_traced_memory()[0]

    tracemalloc.start()
    try:
        warm = train(20)  # the optimiser state and the param store's arrays appear in the first step
        after = train(100)
    finally:
        tracemalloc.stop()
        minippl.clear_param_store()
    # one leaked 16-float array per step would add ~20 KB; a leaked trace, megabytes
    assert after - warm < 8 * 1024, f"{after - warm} bytes still allocated after 100 more steps"
