"""Plot a vae_mnist.py run's train and test loss against Pyro's measured curves (for the README).

    python benchmarks/vae_curve_vs_pyro.py runs/vae/metrics.jsonl docs/vae_loss_curve.png

Pyro's numbers are the reference run of docs/pyro_vae_cpu.md (Pyro 1.9.2,
torch 2.13 CPU, same data, model and hyperparameters, seed 0), kept in the example as
``vae_mnist.PYRO_LOSSES``; the picture is the example's own loss curve. Prints both runs
side by side and the differences at each epoch Pyro was measured at.
"""
import argparse
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "examples"))
from vae_mnist import PYRO_LOSSES, plot_losses  # noqa: E402


def main(metrics_path, png_path):
    rows = [json.loads(line) for line in pathlib.Path(metrics_path).read_text().splitlines() if line.strip()]
    ours = {r["epoch"]: r for r in rows}
    print(f"{'epoch':>5} {'test':>9} {'pyro':>9} {'diff':>7}   {'train':>9} {'pyro':>9} {'diff':>7}")
    for epoch, (pyro_train, pyro_test) in PYRO_LOSSES.items():
        if epoch in ours and ours[epoch]["test_loss"] is not None:
            train, test = ours[epoch]["train_loss"], ours[epoch]["test_loss"]
            print(f"{epoch:>5} {test:>9.2f} {pyro_test:>9.2f} {test - pyro_test:>+7.2f}"
                  f"   {train:>9.2f} {pyro_train:>9.2f} {train - pyro_train:>+7.2f}")
    plot_losses(rows, png_path, PYRO_LOSSES)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("metrics", help="the run's metrics.jsonl (examples/vae_mnist.py --out FOLDER writes it)")
    parser.add_argument("png", help="where to draw the loss curve, e.g. docs/vae_loss_curve.png")
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    main(args.metrics, args.png)
