"""Memory of a long VAE run: the process's resident memory must stay flat after epoch 1.

Trains Pyro's MNIST VAE (examples/vae_mnist.py: 784-400-50, batch 256, Adam 1e-3) as the
example does, with a test evaluation and an atomic checkpoint after every epoch, and prints
the resident set size (RSS) after each epoch. Exits 1 if any epoch's RSS is more than
``--tolerance`` (default 5%) above the RSS after epoch 1, the sign of something kept per step
(traces, tapes, warnings, optimiser state) that should have been freed.

    python benchmarks/vae_memory.py                 # 20 epochs, about 70 s on a 2-core CPU
    python benchmarks/vae_memory.py -n 3 --train-limit 6000
"""
import argparse
import gc
import os
import pathlib
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))

import minippl  # noqa: E402
from minippl.checkpoint import save_checkpoint  # noqa: E402
from minippl.infer import SVI, Trace_ELBO  # noqa: E402
from minippl.optim import Adam  # noqa: E402
from mnist import load_mnist  # noqa: E402
from vae_mnist import VAE, evaluate, prepare, train_epoch  # noqa: E402


def rss_mib():
    """Current resident set size of this process in MiB (Linux /proc; else the peak, from getrusage)."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--num-epochs", type=int, default=20)
    parser.add_argument("--train-limit", type=int, default=None, help="use only the first N training images")
    parser.add_argument("--tolerance", type=float, default=0.05, help="allowed RSS growth after epoch 1")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    train_images, _, test_images, _ = load_mnist()
    x_train = prepare(train_images[: args.train_limit], np)
    x_test = prepare(test_images, np)
    minippl.clear_param_store()
    minippl.set_rng_seed(args.seed)
    vae = VAE()
    optim = Adam({"lr": 1e-3})
    svi = SVI(vae.model, vae.guide, optim, Trace_ELBO())
    shuffle_rng = np.random.default_rng([args.seed, 1])

    start_rss = rss_mib()
    print(f"before training: RSS {start_rss:.1f} MiB ({len(x_train)} training images)")
    print(f"{'epoch':>5} {'seconds':>8} {'train loss':>11} {'test loss':>10} {'RSS MiB':>9} {'vs epoch 1':>11}")
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for epoch in range(1, args.num_epochs + 1):
            started = time.perf_counter()
            train_loss = train_epoch(svi, x_train, 256, shuffle_rng, None, epoch)
            test_loss = evaluate(svi, x_test, 256)
            save_checkpoint(pathlib.Path(scratch) / "checkpoint.npz", optim, epoch=epoch)
            gc.collect()  # count only memory that is still referenced
            rss = rss_mib()
            rows.append(rss)
            growth = rss / rows[0] - 1
            print(f"{epoch:5d} {time.perf_counter() - started:8.1f} {train_loss:11.2f} {test_loss:10.2f} "
                  f"{rss:9.1f} {100 * growth:+10.2f}%", flush=True)
    worst = max(rows) / rows[0] - 1
    verdict = "flat" if worst <= args.tolerance else "GROWING"
    print(f"largest RSS after epoch 1: {max(rows):.1f} MiB, {100 * worst:+.2f}% of epoch 1's "
          f"{rows[0]:.1f} MiB (tolerance {100 * args.tolerance:.0f}%): {verdict}")
    return 0 if worst <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
