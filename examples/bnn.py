"""A Bayesian neural network for 1-D regression, and where it knows that it does not know.

The inputs come in two clusters with a gap between them. Every weight of the network is a
random variable (``PyroSample``); ``AutoNormal`` fits a mean-field Gaussian posterior by SVI;
``Predictive`` draws functions from it. The 90% predictive band is narrow on the data and
opens up in the gap and away from the data; the picture shows the band, the mean and the data.

    python examples/bnn.py                    # 3000 steps (about 10 s), writes runs/bnn/bnn.png
    python examples/bnn.py --num-steps 500 --out /tmp/bnn --seed 1

Why two kinds of hidden units: under a mean-field Gaussian posterior, a one-hidden-layer ReLU
network is never more uncertain between two inputs than at both of them (Foong et al., 2020,
"On the Expressiveness of Approximate Inference in Bayesian Neural Networks"); tanh units can
be: a steep tanh unit whose step sits in the gap looks the same to every data point wherever
the step is, so the posterior leaves its place open, and the band opens there. But tanh units
saturate, so far from the data they agree again; a few ReLU units, whose slopes stay
uncertain, make the band grow there.
"""
import argparse
import math
import pathlib
import time

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

import minippl
import minippl.distributions as dist
from minippl import handlers, nn
from minippl.infer import SVI, Predictive, Trace_ELBO
from minippl.infer.autoguide import AutoNormal, init_to_sample
from minippl.nn import PyroModule, PyroSample
from minippl.optim import ClippedAdam

matplotlib.use("Agg")  # pictures go to files, never to a window: no display is needed (CI, ssh)

NOISE = 0.05  # the observation noise, known to the model
GAP = (-1.0, 1.0)  # no training inputs in between
DATA_RANGE = (-2.0, 2.0)


def true_function(x):
    return np.sin(2 * x)


def make_data(rng, num_points):
    """``num_points`` inputs, half in [-2, -1] and half in [1, 2], and noisy targets."""
    half = num_points // 2
    x = np.concatenate([rng.uniform(DATA_RANGE[0], GAP[0], half),
                        rng.uniform(GAP[1], DATA_RANGE[1], num_points - half)])
    y = true_function(x) + NOISE * rng.standard_normal(num_points)
    return x[:, None], y


# ---------------------------------------------------------------- the model
def bayesian_linear(in_features, out_features, prior_scale, bias_scale=None, bias=True):
    """nn.Linear whose weight and bias are random: N(0, prior_scale^2) for every weight,
    N(0, bias_scale^2) (default: the same scale) for every bias."""
    layer = PyroModule[nn.Linear](in_features, out_features, bias=bias)
    layer.weight = PyroSample(dist.Normal(0.0, prior_scale).expand([out_features, in_features]).to_event(2))
    if bias:
        bias_scale = prior_scale if bias_scale is None else bias_scale
        layer.bias = PyroSample(dist.Normal(0.0, bias_scale).expand([out_features]).to_event(1))
    return layer


class BNN(PyroModule):
    """y ~ Normal(f(x), NOISE), f(x) = tanh part + ReLU part, every weight random.

    Steep tanh units (weights of prior scale 2) shape the function on the data and leave the
    gap open; a few ReLU units (small output weights, kinks spread wide by their bias prior)
    extrapolate. Site names are the module paths: "tanh_in.weight", ..., "relu_out.weight".
    """

    def __init__(self, tanh_units=16, relu_units=4):
        super().__init__()
        self.tanh_in = bayesian_linear(1, tanh_units, prior_scale=2.0)
        self.tanh_out = bayesian_linear(tanh_units, 1, prior_scale=2.0 / math.sqrt(tanh_units))
        self.relu_in = bayesian_linear(1, relu_units, prior_scale=1.0, bias_scale=3.0)
        self.relu_out = bayesian_linear(relu_units, 1, prior_scale=0.3, bias=False)
        self.tanh, self.relu = nn.Tanh(), nn.ReLU()

    def forward(self, x, y=None):
        smooth = self.tanh_out(self.tanh(self.tanh_in(x)))
        ramp = self.relu_out(self.relu(self.relu_in(x)))
        mean = (smooth + ramp).squeeze(-1)  # (N, 1) -> (N,): plain NumPy, recorded on the tape
        with minippl.plate("data", x.shape[0]):
            minippl.sample("obs", dist.Normal(mean, NOISE), obs=y)
        return mean


# ---------------------------------------------------------------- inference
def train(model, x, y, num_steps, learning_rate=0.03, log_every=0):
    """SVI with AutoNormal; the learning rate decays tenfold over the run. Returns (guide, losses)."""
    guide = AutoNormal(model, init_loc_fn=init_to_sample)  # prior draws: hidden units start apart
    decay = 0.1 ** (1.0 / max(num_steps, 1))
    svi = SVI(model, guide, ClippedAdam({"lr": learning_rate, "lrd": decay}), Trace_ELBO())
    losses = []
    for step in range(num_steps):
        losses.append(svi.step(x, y))
        if log_every and (step % log_every == 0 or step == num_steps - 1):
            print(f"step {step:5d}  loss {losses[-1]:10.2f}")
    return guide, losses


def predictive_band(model, guide, x, num_samples=300, seed=0):
    """Mean and 5% / 95% quantiles of the posterior predictive of y at inputs ``x``."""
    with handlers.seed(rng_seed=seed):
        draws = Predictive(model, guide=guide, num_samples=num_samples, return_sites=["obs"])(x)["obs"]
    lower, upper = np.quantile(draws, [0.05, 0.95], axis=0)
    return draws.mean(axis=0), lower, upper


def evaluate(model, guide, rng, num_samples=300, seed=0):
    """The numbers the picture should show: how much wider the band is in the gap and far
    from the data than on it, and how often it covers fresh points from the data region."""
    grid = np.linspace(-4.0, 4.0, 161)
    _, lower, upper = predictive_band(model, guide, grid[:, None], num_samples, seed)
    width = upper - lower
    in_gap = (grid > GAP[0] + 0.1) & (grid < GAP[1] - 0.1)
    on_data = (((grid > DATA_RANGE[0] + 0.1) & (grid < GAP[0] - 0.1))
               | ((grid > GAP[1] + 0.1) & (grid < DATA_RANGE[1] - 0.1)))
    far = np.abs(grid) > 3.0
    x_test, y_test = make_data(rng, 400)
    _, test_lower, test_upper = predictive_band(model, guide, x_test, num_samples, seed + 1)
    return {
        "gap_ratio": float(width[in_gap].mean() / width[on_data].mean()),
        "far_ratio": float(width[far].mean() / width[on_data].mean()),
        "coverage": float(np.mean((y_test >= test_lower) & (y_test <= test_upper))),
        "width_on_data": float(width[on_data].mean()),
    }


def plot(out, model, guide, x, y, losses, seed=0):
    """bnn.png: the data, the predictive mean and its 90% band; bnn_loss.png: the loss by step."""
    grid = np.linspace(-4.0, 4.0, 161)
    mean, lower, upper = predictive_band(model, guide, grid[:, None], seed=seed)
    fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    ax.fill_between(grid, lower, upper, color="C0", alpha=0.25, label="90% band")
    ax.plot(grid, mean, color="C0", label="predictive mean")
    ax.plot(x[:, 0], y, ".", color="C1", label="data")
    ax.set(title="Bayesian neural network (AutoNormal)", xlabel="x", ylabel="y")
    ax.legend()
    fig.savefig(out / "bnn.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    ax.plot(losses)
    # The first steps (weights drawn from the prior) lose 100 times more than the last: a log scale
    # shows both, and its symmetric form also takes negative losses (the noise is small, so the
    # likelihood's density can exceed 1).
    ax.set_yscale("symlog")
    ax.set(title="BNN: negative ELBO", xlabel="SVI step", ylabel="loss")
    ax.grid(alpha=0.3)
    fig.savefig(out / "bnn_loss.png", dpi=120)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    minippl.clear_param_store()
    minippl.set_rng_seed(args.seed)  # prior draws for the initial weights, and the ELBO's noise
    rng = np.random.default_rng(args.seed)
    x, y = make_data(rng, args.num_points)
    model = BNN()
    start = time.perf_counter()
    guide, losses = train(model, x, y, args.num_steps, args.learning_rate, log_every=max(args.num_steps // 10, 1))
    print(f"trained {args.num_steps} steps in {time.perf_counter() - start:.1f} s")
    metrics = evaluate(model, guide, rng, seed=args.seed)
    print(f"90% band: {metrics['gap_ratio']:.2f}x as wide in the gap as on the data, "
          f"{metrics['far_ratio']:.2f}x as wide beyond |x| = 3; it covers {100 * metrics['coverage']:.0f}% "
          f"of 400 fresh points from the data region")
    plot(out, model, guide, x, y, losses, seed=args.seed)
    print(f"wrote {out / 'bnn.png'} and {out / 'bnn_loss.png'}")
    return metrics


def parse_args(argv):
    parser = argparse.ArgumentParser(description="A Bayesian neural network with a gap in its inputs (minippl).")
    parser.add_argument("-n", "--num-steps", type=int, default=3000)
    parser.add_argument("-lr", "--learning-rate", type=float, default=0.03)
    parser.add_argument("--num-points", type=int, default=60, help="training points, half in each cluster")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/bnn", help="folder for the pictures")
    args = parser.parse_args(argv)
    if args.num_steps < 1 or args.num_points < 2:
        parser.error("--num-steps must be >= 1 and --num-points >= 2")
    return args


if __name__ == "__main__":
    main()
