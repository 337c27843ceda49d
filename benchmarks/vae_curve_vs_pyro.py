"""Plot a vae_mnist.py run's test loss against Pyro's measured curve (for the README).

    python benchmarks/vae_curve_vs_pyro.py runs/vae/metrics.jsonl docs/vae_loss_curve.png

Pyro's numbers are the reference run of ../shared/anchors/pyro_vae_cpu.md (Pyro 1.9.2,
torch 2.13 CPU, same data, model and hyperparameters, seed 0). Prints both curves
side by side and the difference at each epoch Pyro was measured at.
"""
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "examples"))
from images import line_plot_png  # noqa: E402

PYRO_TEST_LOSS = {1: 155.90, 2: 137.80, 3: 127.02, 4: 120.72, 5: 116.50, 6: 113.72, 8: 110.48,
                  10: 108.97, 12: 107.23, 15: 106.17, 20: 104.97, 21: 104.83}


def main(metrics_path, png_path):
    rows = [json.loads(line) for line in pathlib.Path(metrics_path).read_text().splitlines() if line.strip()]
    ours = {r["epoch"]: r["test_loss"] for r in rows if r["test_loss"] is not None}
    print(f"{'epoch':>5} {'minippl':>9} {'pyro':>9} {'diff':>7}")
    for epoch, pyro in PYRO_TEST_LOSS.items():
        if epoch in ours:
            print(f"{epoch:>5} {ours[epoch]:>9.2f} {pyro:>9.2f} {ours[epoch] - pyro:>+7.2f}")
    shown = {e: v for e, v in PYRO_TEST_LOSS.items() if e <= max(ours)}
    line_plot_png(png_path, {
        "minippl train": ([r["epoch"] for r in rows], [r["train_loss"] for r in rows]),
        "minippl test": (list(ours), list(ours.values())),
        "pyro test": (list(shown), list(shown.values())),
    }, title="MNIST VAE: minippl vs Pyro", xlabel="epoch", ylabel="loss per image (nats)")


if __name__ == "__main__":
    main(*sys.argv[1:3])
