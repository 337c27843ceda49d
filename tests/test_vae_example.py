"""examples/vae_mnist.py: the gradient of Pyro's VAE is right, training runs, resume is exact."""
import json

import numpy as np
import pytest

import minippl
from minippl.infer import SVI, Trace_ELBO, check_gradients
from minippl.optim import Adam

vae_mnist = pytest.importorskip("vae_mnist")  # examples/ is on sys.path (conftest.py)
from mnist import load_mnist  # noqa: E402


@pytest.fixture(scope="module")
def images():
    train, _, test, _ = load_mnist()
    return vae_mnist.prepare(train[:64], np), vae_mnist.prepare(test[:32], np)


def test_a_few_steps_then_the_gradient_check_passes(images):
    x_train, _ = images
    minippl.clear_param_store()
    minippl.set_rng_seed(0)
    vae = vae_mnist.VAE(z_dim=50, hidden_dim=400)
    svi = SVI(vae.model, vae.guide, Adam({"lr": 1e-3}), Trace_ELBO())
    losses = [svi.step(x_train[i:i + 16]) for i in range(0, 64, 16)]
    assert all(np.isfinite(losses))
    report = check_gradients(vae.model, vae.guide, x_train[:8])
    assert len(report) == 10  # 3 + 2 layers' weights and biases
    # the check ran in float64 and then gave the float32 arrays back to the modules and the store
    assert vae.encoder.fc1.weight.dtype == np.float32
    assert minippl.get_param_store().get_unconstrained("encoder$$$fc1.weight") is vae.encoder.fc1.weight
    assert np.isfinite(svi.step(x_train[:16]))


def test_reconstruct_img_gives_pixel_probabilities(images):
    _, x_test = images
    minippl.clear_param_store()
    vae = vae_mnist.VAE(z_dim=4, hidden_dim=16)
    probs = vae.reconstruct_img(x_test[:5])
    assert probs.shape == (5, 784) and probs.dtype == np.float32
    assert np.all((probs >= 0) & (probs <= 1))


def run(out, *extra):
    argv = ["--train-limit", "512", "--test-limit", "128", "--batch-size", "128", "--hidden-dim", "64",
            "--z-dim", "8", "--out", str(out), *extra]
    return vae_mnist.main(argv)


def test_resume_reproduces_the_uninterrupted_losses_exactly(tmp_path, capsys):
    straight = run(tmp_path / "straight", "-n", "3")
    run(tmp_path / "resumed", "-n", "1")
    resumed = run(tmp_path / "resumed", "-n", "3", "--resume")
    assert "resumed from" in capsys.readouterr().out
    for a, b in zip(straight, resumed):
        assert (a["epoch"], a["train_loss"], a["test_loss"]) == (b["epoch"], b["train_loss"], b["test_loss"])
    rows = [json.loads(line) for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    for name in ("loss_curve.png", "reconstructions_epoch_003.png", "samples_epoch_001.png", "checkpoint.npz"):
        assert (tmp_path / "resumed" / name).exists()


def test_resume_with_other_settings_is_refused(tmp_path):
    run(tmp_path, "-n", "1")
    with pytest.raises(SystemExit, match="written by a run with"):
        run(tmp_path, "-n", "2", "--resume", "--seed", "5")


def test_summary_line_and_binarize(tmp_path, capsys):
    rows = run(tmp_path, "-n", "1", "--binarize")
    captured = capsys.readouterr()
    line = captured.out.strip().splitlines()[-1]
    assert line.startswith("epoch 1  train loss ") and " test loss " in line and line.endswith(" s")
    assert captured.err == ""  # no progress bar when stderr is not a terminal (CI, logs)
    assert np.isfinite(rows[0]["train_loss"])


def test_cuda_without_cupy_says_what_is_missing(tmp_path):
    try:
        import cupy  # noqa: F401

        pytest.skip("CuPy is installed here")
    except ImportError:
        pass
    with pytest.raises(SystemExit, match="--device cuda needs CuPy"):
        run(tmp_path, "-n", "1", "--device", "cuda")
