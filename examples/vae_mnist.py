"""Pyro's MNIST variational autoencoder, trained by minippl without PyTorch.

The model and guide are written exactly as in Pyro's examples/vae/vae.py (only the
imports differ); every gradient comes from minippl's hand-written backprop.

    python examples/vae_mnist.py                # 10 epochs on the CPU, outputs in runs/vae
    python examples/vae_mnist.py -n 20 --resume # continue the same run to 20 epochs

Each epoch shows a tqdm progress bar on a terminal (stderr) and prints a summary line;
``--out`` receives metrics.jsonl, a checkpoint, reconstruction and sample grids (PNG) and
the loss curve, drawn with matplotlib next to Pyro's own run when the settings are Pyro's.
"""
import argparse
import json
import math
import os
import pathlib
import sys
import time

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator
from tqdm import tqdm

import minippl
import minippl.distributions as dist
from minippl import nn
from minippl.checkpoint import load_checkpoint, save_checkpoint
from minippl.infer import SVI, Trace_ELBO
from minippl.optim import Adam

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from images import image_grid  # noqa: E402
from mnist import load_mnist  # noqa: E402

matplotlib.use("Agg")  # pictures go to files, never to a window: no display is needed (CI, ssh)

# Pyro 1.9.2's run of its own examples/vae/vae.py with the settings below (torch 2.13 on the same
# 2-core CPU, the same MNIST files, seed 0): per-image (train, test) loss after each measured epoch,
# as recorded in docs/pyro_vae_cpu.md.
PYRO_LOSSES = {1: (191.15, 155.90), 2: (146.62, 137.80), 3: (132.88, 127.02), 4: (124.23, 120.72),
               5: (119.14, 116.50), 6: (115.87, 113.72), 8: (111.89, 110.48), 10: (109.75, 108.97),
               12: (108.31, 107.23), 15: (106.95, 106.17), 20: (105.52, 104.97), 21: (105.31, 104.83)}
# Runs with other settings train another model (or, binarised, measure another loss), so their
# loss curve is drawn without Pyro's. The seed may differ: it moves the curve by tenths of a nat.
PYRO_SETTINGS = {"learning_rate": 1e-3, "batch_size": 256, "z_dim": 50, "hidden_dim": 400,
                 "binarize": False, "train_limit": None, "test_limit": None}


# ---------------------------------------------------------------- the model (as in Pyro)
class Encoder(nn.Module):
    """q(z | x): 784 -> hidden (softplus) -> loc and scale = exp(head), each z_dim."""

    def __init__(self, z_dim, hidden_dim):
        super().__init__()
        self.fc1 = nn.Linear(784, hidden_dim)
        self.fc21 = nn.Linear(hidden_dim, z_dim)
        self.fc22 = nn.Linear(hidden_dim, z_dim)
        self.softplus = nn.Softplus()

    def forward(self, x):
        x = x.reshape(-1, 784)
        hidden = self.softplus(self.fc1(x))
        z_loc = self.fc21(hidden)
        z_scale = np.exp(self.fc22(hidden))  # Pyro: torch.exp(self.fc22(hidden))
        return z_loc, z_scale


class Decoder(nn.Module):
    """p(x | z): z_dim -> hidden (softplus) -> 784 pixel probabilities (sigmoid).

    Pyro's example feeds sigmoid probabilities to the Bernoulli, and so do we: the
    Bernoulli clamps probs to [eps, 1 - eps] as torch does, so a saturated sigmoid
    never gives log(0), and the composed gradient is the usual x - p.
    """

    def __init__(self, z_dim, hidden_dim):
        super().__init__()
        self.fc1 = nn.Linear(z_dim, hidden_dim)
        self.fc21 = nn.Linear(hidden_dim, 784)
        self.softplus = nn.Softplus()
        self.sigmoid = nn.Sigmoid()

    def forward(self, z):
        hidden = self.softplus(self.fc1(z))
        return self.sigmoid(self.fc21(hidden))


class VAE(nn.Module):
    def __init__(self, z_dim=50, hidden_dim=400):
        super().__init__()
        self.encoder = Encoder(z_dim, hidden_dim)
        self.decoder = Decoder(z_dim, hidden_dim)
        self.z_dim = z_dim

    def model(self, x):
        """p(x, z) = N(z | 0, I) Bernoulli(x | decoder(z)), one z per image."""
        minippl.module("decoder", self.decoder)
        with minippl.plate("data", x.shape[0]):
            xp = minippl.backend.array_module(x)
            z_loc = xp.zeros((x.shape[0], self.z_dim), dtype=x.dtype)
            z_scale = xp.ones((x.shape[0], self.z_dim), dtype=x.dtype)
            z = minippl.sample("latent", dist.Normal(z_loc, z_scale).to_event(1))
            loc_img = self.decoder(z)
            # pixels in [0, 1] (grey values, as Pyro's example): see dist.Bernoulli's docs
            minippl.sample("obs", dist.Bernoulli(loc_img).to_event(1), obs=x.reshape(-1, 784))

    def guide(self, x):
        """q(z | x) = N(z | encoder(x))."""
        minippl.module("encoder", self.encoder)
        with minippl.plate("data", x.shape[0]):
            z_loc, z_scale = self.encoder(x)
            minippl.sample("latent", dist.Normal(z_loc, z_scale).to_event(1))

    def reconstruct_img(self, x):
        """Encode, draw one z, decode: the pixel probabilities of the reconstruction."""
        z_loc, z_scale = self.encoder(x)
        z = dist.Normal(z_loc, z_scale).sample()
        return self.decoder(z)


# ---------------------------------------------------------------- data and devices
def array_module_for(device):
    if device == "cpu":
        return np
    try:
        import cupy

        cupy.cuda.runtime.getDeviceCount()
    except Exception as error:  # ImportError, or CUDA reports no device
        raise SystemExit(
            f"--device cuda needs CuPy and a CUDA GPU ({type(error).__name__}: {error}). "
            f"On a machine with a GPU, install the extra for its driver (nvidia-smi): pip install -e '.[cuda12]' "
            f"for drivers >= 525, '.[cuda13]' for >= 580; or use --device cpu."
        ) from None
    return cupy


def prepare(images, xp):
    """uint8 (N, 28, 28) -> float32 (N, 784) in [0, 1] (pixels / 255, as Pyro's example)."""
    return xp.asarray(images.reshape(len(images), 784).astype(np.float32) / np.float32(255.0))


def uniforms_like(x, rng, shape):
    """U[0, 1) draws of ``shape`` where ``x`` lives: from ``rng`` on the CPU; on a GPU from a device
    generator that ``rng`` seeds (backend.device_generator: nothing drawn on the host and copied
    over, and a resumed run, which restores ``rng``, draws the same)."""
    xp = minippl.backend.array_module(x)
    if xp is np:
        return rng.random(shape, dtype=np.float32)
    return minippl.backend.device_generator(rng, xp, math.prod(shape)).random(shape, dtype=np.float32)


def binarize(x, rng):
    """Dynamic binarisation: each pixel is 1 with probability equal to its grey value."""
    return (uniforms_like(x, rng, x.shape) < x).astype(np.float32)


# ---------------------------------------------------------------- training
def train_epoch(svi, x_train, batch_size, shuffle_rng, binarize_rng, epoch):
    """One pass over the data in a random order; the mean loss per image. On a GPU nothing here
    waits for it: the order is drawn there (argsort of uniforms), the losses are summed there, and
    the host reads the sum once, after ``svi.sync()`` (SVI reads its NaN check every
    ``sync_every`` steps, see --sync-every)."""
    n = x_train.shape[0]
    xp = minippl.backend.array_module(x_train)
    order = shuffle_rng.permutation(n) if xp is np else xp.argsort(uniforms_like(x_train, shuffle_rng, (n,)))
    # On stderr, and only on a terminal (disable=None): piped or logged output, as on CI, holds
    # just the summary lines. leave=False clears the bar, so the epoch's summary line replaces it.
    total = 0.0
    with tqdm(total=n, desc=f"epoch {epoch}", unit="img", leave=False, file=sys.stderr, disable=None) as bar:
        for start in range(0, n, batch_size):
            batch = x_train[order[start:start + batch_size]]
            if binarize_rng is not None:
                batch = binarize(batch, binarize_rng)
            total += svi.step(batch)
            bar.update(len(batch))
            if isinstance(total, float):  # a loss on the host; printing a GPU one would wait for it
                bar.set_postfix(loss=f"{total / (start + len(batch)):.2f}", refresh=False)
    svi.sync()
    return float(total) / n


def evaluate(svi, x_test, batch_size):
    total = sum(svi.evaluate_loss(x_test[s:s + batch_size]) for s in range(0, len(x_test), batch_size))
    return float(total) / len(x_test)


def save_pictures(vae, x_test, out, epoch, rng):
    xp = minippl.backend.array_module(x_test)
    originals = x_test[:32]  # fewer when --test-limit is under 32
    recon = vae.reconstruct_img(originals)
    samples = vae.decoder(xp.asarray(rng.standard_normal((64, vae.z_dim)).astype(np.float32)))
    pairs = np.stack([_host(originals), _host(recon)], axis=1).reshape(-1, 28, 28)  # original, recon, ...
    for name, pictures in (("reconstructions", pairs), ("samples", _host(samples).reshape(64, 28, 28))):
        # 0 is black and 255 white in every grid (imsave would stretch each grid to its own range)
        plt.imsave(out / f"{name}_epoch_{epoch:03d}.png", image_grid(pictures, nrow=8),
                   cmap="gray", vmin=0, vmax=255)


def _host(array):
    return array.get() if hasattr(array, "get") else np.asarray(array)


def read_metrics(path, up_to_epoch):
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r["epoch"] <= up_to_epoch]


def write_metrics(path, rows):
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    os.replace(tmp, path)


def plot_losses(rows, path, pyro=None):
    """Draw the train and test loss of ``rows`` (metrics.jsonl's) by epoch and write it to ``path``.

    ``pyro`` ({epoch: (train, test)}, e.g. PYRO_LOSSES) adds Pyro's curves, dashed in the same
    colours, up to the run's last epoch. Returns the (closed) figure.
    """
    tested = [r for r in rows if r["test_loss"] is not None]
    fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    ax.plot([r["epoch"] for r in rows], [r["train_loss"] for r in rows], "o-", color="C0", label="minippl train")
    ax.plot([r["epoch"] for r in tested], [r["test_loss"] for r in tested], "o-", color="C1", label="minippl test")
    if pyro:
        epochs = [e for e in sorted(pyro) if e <= rows[-1]["epoch"]]
        for column, (color, split) in enumerate((("C0", "train"), ("C1", "test"))):
            ax.plot(epochs, [pyro[e][column] for e in epochs], "s--", color=color, alpha=0.6,
                    label=f"Pyro 1.9.2 {split}")
    ax.set(title="MNIST VAE: minippl and Pyro" if pyro else "MNIST VAE (minippl)",
           xlabel="epoch", ylabel="loss per image (negative ELBO, nats)")
    ax.set_xlim(rows[0]["epoch"] - 0.5, rows[-1]["epoch"] + 0.5)  # at least one whole epoch wide
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # epochs: no 1.5
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return fig


def pyro_reference(args):
    """PYRO_LOSSES if ``args`` train what Pyro's run trained (any seed), else None."""
    return PYRO_LOSSES if all(getattr(args, key) == value for key, value in PYRO_SETTINGS.items()) else None


def main(argv=None):
    args = parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    xp = array_module_for(args.device)
    train_images, _, test_images, _ = load_mnist(args.data_dir)
    x_train = prepare(train_images[: args.train_limit], xp)
    x_test = prepare(test_images[: args.test_limit], xp)

    minippl.clear_param_store()
    minippl.set_rng_seed(args.seed)  # network initialisation and the ELBO's noise
    shuffle_rng = np.random.default_rng([args.seed, 1])
    binarize_rng = np.random.default_rng([args.seed, 2]) if args.binarize else None
    picture_rng = np.random.default_rng([args.seed, 3])
    if args.binarize:
        x_test = binarize(x_test, np.random.default_rng([args.seed, 4]))  # one fixed test binarisation
    vae = VAE(args.z_dim, args.hidden_dim)
    if xp is not np:
        for path, array in list(vae.named_parameters()):
            vae.set_parameter(path, xp.asarray(array))
    optimizer = Adam({"lr": args.learning_rate})
    steps_per_epoch = -(-len(x_train) // args.batch_size)
    sync_every = args.sync_every or (1 if xp is np else steps_per_epoch)  # a CPU reads for free
    svi = SVI(vae.model, vae.guide, optimizer, Trace_ELBO(), sync_every=sync_every)

    checkpoint, metrics_path = out / "checkpoint.npz", out / "metrics.jsonl"
    first_epoch, rows = 1, []
    if args.resume:
        if not checkpoint.exists():
            raise SystemExit(f"--resume: no checkpoint at {checkpoint}; run once without --resume first")
        minippl.module("encoder", vae.encoder)  # register, so loading rebinds the modules' arrays
        minippl.module("decoder", vae.decoder)
        meta = load_checkpoint(checkpoint, optimizer)
        if meta["args"] != _run_identity(args):
            raise SystemExit(f"--resume: {checkpoint} was written by a run with {meta['args']}; "
                             f"this run has {_run_identity(args)}. Use another --out, or the same settings.")
        minippl.backend.global_rng().bit_generator.state = meta["minippl_rng"]
        shuffle_rng.bit_generator.state = meta["shuffle_rng"]
        picture_rng.bit_generator.state = meta["picture_rng"]
        if binarize_rng is not None:
            binarize_rng.bit_generator.state = meta["binarize_rng"]
        first_epoch = meta["epoch"] + 1
        rows = read_metrics(metrics_path, meta["epoch"])
        print(f"resumed from {checkpoint} after epoch {meta['epoch']}")

    for epoch in range(first_epoch, args.num_epochs + 1):
        start = time.perf_counter()
        train_loss = train_epoch(svi, x_train, args.batch_size, shuffle_rng, binarize_rng, epoch)
        seconds = time.perf_counter() - start
        test_loss = None
        if (epoch - 1) % args.test_frequency == 0 or epoch == args.num_epochs:
            test_loss = evaluate(svi, x_test, args.batch_size)
            save_pictures(vae, x_test, out, epoch, picture_rng)
        rows.append({"epoch": epoch, "train_loss": train_loss, "test_loss": test_loss, "seconds": seconds})
        test_text = f"  test loss {test_loss:.2f}" if test_loss is not None else ""
        print(f"epoch {epoch}  train loss {train_loss:.2f}{test_text}  time {seconds:.1f} s", flush=True)
        write_metrics(metrics_path, rows)
        save_checkpoint(
            checkpoint, optimizer, epoch=epoch, args=_run_identity(args),
            minippl_rng=minippl.backend.global_rng().bit_generator.state,
            shuffle_rng=shuffle_rng.bit_generator.state, picture_rng=picture_rng.bit_generator.state,
            binarize_rng=binarize_rng.bit_generator.state if binarize_rng is not None else None,
        )
    if rows:
        plot_losses(rows, out / "loss_curve.png", pyro_reference(args))
    return rows


def _run_identity(args):
    """The settings a resumed run must share with the run it continues."""
    keys = ("learning_rate", "batch_size", "z_dim", "hidden_dim", "seed", "binarize", "train_limit", "test_limit")
    return {k: getattr(args, k) for k in keys}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Pyro's MNIST VAE, trained by minippl (no PyTorch).")
    parser.add_argument("-n", "--num-epochs", type=int, default=10)
    parser.add_argument("-tf", "--test-frequency", type=int, default=1, help="test every this many epochs")
    parser.add_argument("-lr", "--learning-rate", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--z-dim", type=int, default=50)
    parser.add_argument("--hidden-dim", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--data-dir", default=None, help="folder with the four MNIST IDX .gz files")
    parser.add_argument("--sync-every", type=int, default=None,
                        help="read the loss and the NaN check every N steps (SVI's sync_every); default: "
                             "every step on the CPU, once per epoch on the GPU, where a read waits for it")
    parser.add_argument("--out", default="runs/vae", help="folder for metrics, checkpoint and pictures")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    parser.add_argument("--binarize", action="store_true", help="dynamic binarisation of the pixels")
    parser.add_argument("--train-limit", type=int, default=None, help="use only the first N training images")
    parser.add_argument("--test-limit", type=int, default=None, help="use only the first N test images")
    args = parser.parse_args(argv)
    if args.num_epochs < 1 or args.test_frequency < 1 or args.batch_size < 1 or (args.sync_every is not None and args.sync_every < 1):
        parser.error("--num-epochs, --test-frequency, --batch-size and --sync-every must be positive")
    return args


if __name__ == "__main__":
    main()
