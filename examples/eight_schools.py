"""Eight schools (Rubin 1981), non-centred, as in Pyro's and NumPyro's examples: AutoNormal + Adam.

Eight coaching programmes, each with an estimated effect y_j and its known standard error
sigma_j. The hierarchical model shares strength between schools:

    mu ~ Normal(0, 5),  tau ~ HalfCauchy(5),  and for each school j (a plate):
    eta_j ~ Normal(0, 1),  theta_j = mu + tau * eta_j,  y_j ~ Normal(theta_j, sigma_j).

Writing theta through eta (non-centred) rather than theta_j ~ Normal(mu, tau) keeps the
posterior free of the funnel that makes tau hard to learn when it is small. The guide is
``AutoNormal`` (tau is fitted on the log scale: HalfCauchy's support is nonnegative, mapped by
exp), trained by SVI with ``Trace_ELBO`` and ``Adam``. It prints the posterior mean and 90%
interval of mu, tau and each theta_j, from draws of the guide, and draws each school's interval
beside its data. ``tests/test_eight_schools.py`` checks a shorter run (2000 steps, lr 0.02, 2000
guide draws, seed 0) against the median summaries of Pyro 1.9.2 run with the same model, guide
and those settings over 16 seeds; the default run's numbers (5000 steps, lr 0.01) are not checked.

    python examples/eight_schools.py                  # 5000 steps (a few seconds), runs/eight_schools
    python examples/eight_schools.py --num-steps 2000 --lr 0.02 --seed 1 --out /tmp/schools
"""
import argparse
import pathlib
import time

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

import minippl
import minippl.distributions as dist
from minippl import handlers
from minippl.infer import SVI, Trace_ELBO
from minippl.infer.autoguide import AutoNormal
from minippl.optim import Adam

matplotlib.use("Agg")  # pictures go to files, never to a window: no display is needed (CI, ssh)

Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])  # estimated effects
SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])  # their standard errors


def model(sigma, y=None):
    """Pyro's non-centred eight schools, ported by imports."""
    mu = minippl.sample("mu", dist.Normal(0.0, 5.0))
    tau = minippl.sample("tau", dist.HalfCauchy(5.0))
    with minippl.plate("schools", len(sigma)):
        eta = minippl.sample("eta", dist.Normal(0.0, 1.0))
        theta = minippl.deterministic("theta", mu + tau * eta)  # NumPy between sites: recorded
        minippl.sample("obs", dist.Normal(theta, sigma), obs=y)


def fit(num_steps, learning_rate):
    """SVI with AutoNormal and Adam; returns the guide and the loss of every step."""
    guide = AutoNormal(model)
    svi = SVI(model, guide, Adam({"lr": learning_rate}), Trace_ELBO())
    return guide, [svi.step(SIGMA, Y) for _ in range(num_steps)]


def posterior_draws(guide, num_samples, seed):
    """``{"mu": (S,), "tau": (S,), "theta": (S, 8)}`` from S draws of the guide.

    theta = mu + tau * eta is computed from the draws, as the model computes it.
    """
    draws = {"mu": [], "tau": [], "eta": []}
    with handlers.seed(rng_seed=seed):
        for _ in range(num_samples):
            sample = guide(SIGMA, Y)
            for name in draws:
                draws[name].append(np.asarray(sample[name], dtype=float))
    draws = {name: np.stack(values) for name, values in draws.items()}
    draws["theta"] = draws["mu"][:, None] + draws["tau"][:, None] * draws.pop("eta")
    return draws


def summarise(draws):
    """``{site: (mean, 5% quantile, 95% quantile)}``, each of the site's shape."""
    return {name: (values.mean(axis=0), *np.quantile(values, [0.05, 0.95], axis=0))
            for name, values in draws.items()}


def plot(out, summary, losses):
    """eight_schools.png: each school's data (y +- sigma) beside theta's mean and 90% interval,
    with mu's; and the loss by step (smoothed)."""
    fig, (ax, ax_loss) = plt.subplots(1, 2, figsize=(10, 4.5), layout="constrained")
    schools = np.arange(len(Y))
    ax.errorbar(schools - 0.12, Y, yerr=SIGMA, fmt="o", color="C7", label="data: y +- sigma")
    mean, low, high = summary["theta"]
    ax.errorbar(schools + 0.12, mean, yerr=[mean - low, high - mean], fmt="s", color="C0",
                label="theta: mean, 90% interval")
    mu_mean, mu_low, mu_high = summary["mu"]
    ax.axhspan(float(mu_low), float(mu_high), color="C1", alpha=0.15, label="mu: 90% interval")
    ax.axhline(float(mu_mean), color="C1")
    ax.set(title="Eight schools: posterior (AutoNormal)", xlabel="school", ylabel="effect",
           xticks=schools)
    ax.legend(fontsize="small")
    window = max(1, len(losses) // 50)
    ax_loss.plot(np.convolve(losses, np.ones(window) / window, mode="valid"))
    ax_loss.set(title=f"negative ELBO (moving average of {window})", xlabel="SVI step", ylabel="loss")
    ax_loss.grid(alpha=0.3)
    fig.savefig(out / "eight_schools.png", dpi=120)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    minippl.clear_param_store()
    minippl.set_rng_seed(args.seed)

    start = time.perf_counter()
    guide, losses = fit(args.num_steps, args.lr)
    tail = float(np.mean(losses[-max(1, args.num_steps // 10):]))
    print(f"SVI: {args.num_steps} steps in {time.perf_counter() - start:.1f} s, "
          f"mean loss of the last 10%: {tail:.2f}")

    summary = summarise(posterior_draws(guide, args.num_samples, args.seed))
    print(f"posterior from {args.num_samples} guide draws:")
    print(f"{'site':<10}{'mean':>8}{'5%':>8}{'95%':>8}   data y (sigma)")
    for name in ("mu", "tau", "theta"):
        mean, low, high = summary[name]
        for index in np.ndindex(np.shape(mean)):
            label = f"{name}[{index[0]}]" if index else name
            data = f"   {Y[index[0]]:>4.0f} ({SIGMA[index[0]]:.0f})" if index else ""
            print(f"{label:<10}{mean[index]:>8.2f}{low[index]:>8.2f}{high[index]:>8.2f}{data}")

    plot(out, summary, losses)
    print(f"wrote {out / 'eight_schools.png'}")
    return {"summary": summary, "losses": losses}


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Eight schools, non-centred, with AutoNormal (minippl).")
    parser.add_argument("-n", "--num-steps", type=int, default=5000)
    parser.add_argument("-lr", "--lr", "--learning-rate", dest="lr", type=float, default=0.01)
    parser.add_argument("--num-samples", type=int, default=4000, help="guide draws for the summaries")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/eight_schools", help="folder for the picture")
    args = parser.parse_args(argv)
    if args.num_steps < 1 or args.num_samples < 20 or not args.lr > 0:
        parser.error("--num-steps must be >= 1, --num-samples >= 20 and --lr > 0")
    return args


if __name__ == "__main__":
    main()
