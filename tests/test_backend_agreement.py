"""The fused backend trains like the reference: same model, same seed, same losses.

Pyro's MNIST VAE (examples/vae_mnist.py, 784-400-50, batch 256, Adam 1e-3) is trained for 50
steps on the bundled digits under ``set_backend("numpy")`` and under ``set_backend("numba")``;
every step's loss must agree within 1e-3 relative (they differ by float32 rounding only; the
measured gap is about 3e-6). A shorter run covers TraceMeanField_ELBO and ClippedAdam.
"""
import numpy as np
import pytest

import minippl
from minippl.infer import SVI, Trace_ELBO, TraceMeanField_ELBO
from minippl.optim import Adam, ClippedAdam

STEPS, BATCH = 50, 256


@pytest.fixture(scope="module")
def images():
    from mnist import load_mnist
    from vae_mnist import prepare

    return prepare(load_mnist()[0][:STEPS * BATCH], np)


def train(backend, images, loss, optim, steps):
    from vae_mnist import VAE

    previous = minippl.get_backend()
    minippl.set_backend(backend)
    try:
        with minippl.get_param_store().scope():
            minippl.set_rng_seed(0)
            vae = VAE(50, 400)
            svi = SVI(vae.model, vae.guide, optim, loss)
            return np.array([svi.step(images[i * BATCH:(i + 1) * BATCH]) for i in range(steps)])
    finally:
        minippl.set_backend(previous)


@pytest.mark.parametrize("loss, optim, steps", [
    (Trace_ELBO, lambda: Adam({"lr": 1e-3}), STEPS),  # the example's setting
    (TraceMeanField_ELBO, lambda: ClippedAdam({"lr": 1e-3, "clip_norm": 1.0}), 20),  # the KL and ClippedAdam kernels
])
def test_numba_and_numpy_backends_train_the_vae_alike(images, loss, optim, steps):
    reference = train("numpy", images, loss(), optim(), steps)
    fused = train("numba", images, loss(), optim(), steps)
    relative = np.abs(fused - reference) / np.abs(reference)
    worst = relative.argmax()
    assert relative[worst] < 1e-3, f"step {worst + 1}: loss {fused[worst]} (numba) vs {reference[worst]} (numpy)"
    assert reference[-1] < 0.9 * reference[0]  # and it did train


def test_every_fusable_function_has_a_registry_entry_and_back():
    # the one dispatch point: a reference marked @fusable("name") and kernels/registry.py's entry
    # "name" must come in pairs, or a kernel would be silently unused (or a name misspelt)
    import minippl.infer  # noqa: F401  (imports every module that marks a reference)
    from minippl import backend
    from minippl.kernels import registry

    assert set(backend.FUSABLE) == set(registry.ENTRIES)
