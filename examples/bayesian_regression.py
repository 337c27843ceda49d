"""Bayesian linear regression as in Pyro's tutorial: priors on the weights and the noise, AutoNormal.

The data are made here, so the truth is known: y = 1.0 + 1.5 x - 0.8 g + noise of scale 0.5,
with x continuous and g = -1 or +1 a group. The model is Pyro's ``BayesianRegression`` (a
``PyroModule[nn.Linear]`` with ``PyroSample`` weight and bias, and ``sigma ~ Uniform(0, 10)``),
fitted by SVI with ``AutoNormal``. It prints each site's posterior median and 90% interval
beside the truth, checks the fit against the exact Gaussian posterior of the same model with
the noise known, and draws the posterior predictive band of each group.

    python examples/bayesian_regression.py            # 2000 steps (a few seconds), runs/bayesian_regression
    python examples/bayesian_regression.py --num-steps 500 --seed 1 --out /tmp/reg
"""
import argparse
import pathlib
import time

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

import minippl
import minippl.distributions as dist
from minippl import handlers, nn
from minippl.infer import SVI, Predictive, Trace_ELBO
from minippl.infer.autoguide import AutoNormal
from minippl.nn import PyroModule, PyroSample
from minippl.optim import ClippedAdam

matplotlib.use("Agg")  # pictures go to files, never to a window: no display is needed (CI, ssh)

TRUTH = {"linear.weight": np.array([[1.5, -0.8]]), "linear.bias": np.array([1.0]), "sigma": np.array(0.5)}
WEIGHT_SCALE, BIAS_SCALE = 1.0, 10.0  # the priors' scales, as in Pyro's tutorial


def make_data(rng, num_points):
    """Columns x ~ U(-2, 2) and g = -1 / +1 (half each): centred and nearly orthogonal."""
    x = rng.uniform(-2.0, 2.0, num_points)
    g = rng.permutation(np.repeat([-1.0, 1.0], [num_points // 2, num_points - num_points // 2]))
    features = np.stack([x, g], axis=1)
    noise = TRUTH["sigma"] * rng.standard_normal(num_points)
    y = features @ TRUTH["linear.weight"][0] + TRUTH["linear.bias"][0] + noise
    return features, y


class BayesianRegression(PyroModule):
    """y ~ Normal(x @ weight.T + bias, sigma): Pyro's tutorial model, ported by imports.

    ``noise=None`` puts the prior Uniform(0, 10) on sigma; a number fixes it (the conjugate case).
    """

    def __init__(self, in_features, out_features=1, noise=None):
        super().__init__()
        self.linear = PyroModule[nn.Linear](in_features, out_features)
        self.linear.weight = PyroSample(dist.Normal(0.0, WEIGHT_SCALE).expand([out_features, in_features]).to_event(2))
        self.linear.bias = PyroSample(dist.Normal(0.0, BIAS_SCALE).expand([out_features]).to_event(1))
        self.noise = noise

    def forward(self, x, y=None):
        sigma = minippl.sample("sigma", dist.Uniform(0.0, 10.0)) if self.noise is None else self.noise
        mean = self.linear(x).squeeze(-1)  # (N, 1) -> (N,), exactly Pyro's line: recorded on the tape
        with minippl.plate("data", x.shape[0]):
            minippl.sample("obs", dist.Normal(mean, sigma), obs=y)
        return mean


def fit(model, x, y, num_steps, learning_rate=0.05):
    """SVI with AutoNormal; the learning rate decays a hundredfold, so the last steps settle."""
    guide = AutoNormal(model)
    optimizer = ClippedAdam({"lr": learning_rate, "lrd": 0.01 ** (1.0 / max(num_steps, 1))})
    svi = SVI(model, guide, optimizer, Trace_ELBO())
    return guide, [svi.step(x, y) for _ in range(num_steps)]


def exact_posterior(x, y, noise):
    """The Gaussian posterior of (weight, bias) when sigma = ``noise`` is known.

    Prior N(0, diag(s^2)), likelihood N(A theta, noise^2 I) with A = [x, 1]:
    precision P = diag(1/s^2) + A^T A / noise^2, mean = P^-1 A^T y / noise^2.
    Returns ``{site: (mean, marginal sd, 1/sqrt(P_ii))}``; the last is what a mean-field
    Gaussian converges to (equal to the marginal sd when P is diagonal).
    """
    design = np.column_stack([x, np.ones(len(x))])
    prior_var = np.array([WEIGHT_SCALE**2] * x.shape[1] + [BIAS_SCALE**2])
    precision = np.diag(1 / prior_var) + design.T @ design / noise**2
    covariance = np.linalg.inv(precision)
    mean = covariance @ design.T @ y / noise**2
    sd, mean_field_sd = np.sqrt(np.diag(covariance)), 1 / np.sqrt(np.diag(precision))
    d = x.shape[1]
    return {"linear.weight": (mean[:d][None], sd[:d][None], mean_field_sd[:d][None]),
            "linear.bias": (mean[d:], sd[d:], mean_field_sd[d:])}


def conjugate_check(x, y, num_steps, noise=None):
    """Fit with the noise known and compare AutoNormal with the exact posterior.

    Returns the largest |mean error| and the largest relative error of the sds (against the
    exact marginal sds) over all weights and the bias.
    """
    noise = float(TRUTH["sigma"]) if noise is None else noise
    exact = exact_posterior(x, y, noise)
    with minippl.get_param_store().scope() as store:  # leave the caller's params alone
        fit(BayesianRegression(x.shape[1], noise=noise), x, y, num_steps)
        mean_error = max(float(np.max(np.abs(store[f"AutoNormal.locs.{s}"] - exact[s][0]))) for s in exact)
        sd_error = max(float(np.max(np.abs(store[f"AutoNormal.scales.{s}"] / exact[s][1] - 1))) for s in exact)
    return mean_error, sd_error


def predictive_bands(model, guide, num_samples=500, seed=0):
    """Per group: (x grid, mean, 5% and 95% quantiles) of the posterior predictive of y."""
    grid = np.linspace(-2.0, 2.0, 41)
    bands = {}
    for group in (-1.0, 1.0):
        features = np.column_stack([grid, np.full_like(grid, group)])
        with handlers.seed(rng_seed=seed):
            draws = Predictive(model, guide=guide, num_samples=num_samples, return_sites=["obs"])(features)["obs"]
        bands[group] = (grid, draws.mean(axis=0), *np.quantile(draws, [0.05, 0.95], axis=0))
    return bands


def plot(out, bands, x, y, losses):
    """regression.png: each group's data, predictive mean and 90% band; regression_loss.png: the loss by step."""
    fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    for (group, (grid, mean, lower, upper)), color in zip(bands.items(), ("C0", "C1")):
        name = f"g = {group:+.0f}"
        ax.fill_between(grid, lower, upper, color=color, alpha=0.2, label=f"90% band, {name}")
        ax.plot(grid, mean, color=color, label=f"mean, {name}")
        ax.plot(x[x[:, 1] == group, 0], y[x[:, 1] == group], ".", color=color, label=f"data, {name}")
    ax.set(title="Bayesian regression: posterior predictive", xlabel="x", ylabel="y")
    ax.legend(fontsize="small")
    fig.savefig(out / "regression.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    ax.plot(losses)
    ax.set(title="Bayesian regression: negative ELBO", xlabel="SVI step", ylabel="loss")
    ax.grid(alpha=0.3)
    fig.savefig(out / "regression_loss.png", dpi=120)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    minippl.clear_param_store()
    minippl.set_rng_seed(args.seed)
    x, y = make_data(np.random.default_rng(args.seed), args.num_points)

    model = BayesianRegression(x.shape[1])
    start = time.perf_counter()
    guide, losses = fit(model, x, y, args.num_steps)
    print(f"SVI: {args.num_steps} steps in {time.perf_counter() - start:.1f} s, final loss {losses[-1]:.1f}")
    medians, intervals = guide.median(), guide.quantiles([0.05, 0.95])
    print(f"{'site':<16}{'truth':>10}{'median':>10}{'5%':>10}{'95%':>10}  inside")
    inside = {}
    for site, truth in TRUTH.items():
        for index in np.ndindex(truth.shape):
            low, high = intervals[site][(0, *index)], intervals[site][(1, *index)]
            inside[f"{site}{list(index) if index else ''}"] = bool(low <= truth[index] <= high)
            print(f"{site + (str(list(index)) if index else ''):<16}{truth[index]:>10.3f}{medians[site][index]:>10.3f}"
                  f"{low:>10.3f}{high:>10.3f}  {'yes' if low <= truth[index] <= high else 'NO'}")

    mean_error, sd_error = conjugate_check(x, y, args.num_steps)
    print(f"noise known: AutoNormal vs the exact Gaussian posterior: means within {mean_error:.4f}, "
          f"sds within {100 * sd_error:.1f}%")

    plot(out, predictive_bands(model, guide, seed=args.seed), x, y, losses)
    print(f"wrote {out / 'regression.png'} and {out / 'regression_loss.png'}")
    return {"medians": medians, "inside": inside, "mean_error": mean_error, "sd_error": sd_error}


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Bayesian linear regression with AutoNormal (minippl).")
    parser.add_argument("-n", "--num-steps", type=int, default=2000)
    parser.add_argument("--num-points", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/bayesian_regression", help="folder for the pictures")
    args = parser.parse_args(argv)
    if args.num_steps < 1 or args.num_points < 4:
        parser.error("--num-steps must be >= 1 and --num-points >= 4")
    return args


if __name__ == "__main__":
    main()
