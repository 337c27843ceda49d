"""Microseconds per SVI step of Pyro's intro-tutorial Bayesian regression (``mean = a + b * x``): minippl and Pyro.

The model is written as Pyro's tutorial writes it, with plain arithmetic between the sites, so
minippl differentiates it through traced values (minippl/traced.py)::

    a ~ Normal(0, 10); b ~ Normal(0, 10); mean = a + b * x
    with plate("data", N): obs ~ Normal(mean, 0.5)        # sigma fixed at 0.5 in both systems

and the guide is hand-written: ``a_loc``, ``a_scale`` (positive), ``b_loc``, ``b_scale`` (positive),
``Normal(loc, scale)`` sites. Trace_ELBO with one particle, Adam lr 0.01, validation at each
library's default (on). Each system runs in its own worker process on one thread (OMP, OPENBLAS,
MKL and NUMBA_NUM_THREADS=1, ``torch.set_num_threads(1)``), pinned to the same core; the parent
runs one round on each worker in turn (warm-up steps, then K timed steps), waiting before each for
other processes to leave the cores, and prints the median microseconds per step and the ratio to
Pyro. Every worker keeps training across its rounds, and the learned posterior of each is printed
next to the exact one (sigma is known, so the posterior is Gaussian): they should agree.

Pyro runs under a separate interpreter (``--pyro-python``, default /work/.venv-pyro/bin/python) that
has torch and pyro-ppl; minippl's worker never imports either. Without it, only minippl is timed.
The worker processes, the alternating rounds and the wait for quiet cores are timing.py's, shared
with vae_epoch.py.

    python benchmarks/regression_step.py                              # 5 rounds of 2000 steps each
    python benchmarks/regression_step.py --rounds 1 --steps 200        # a quick look
    python benchmarks/regression_step.py --n 1000 --json /tmp/regression_step.json
"""
import argparse
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_PYRO_PYTHON = "/work/.venv-pyro/bin/python"
SYSTEMS = ("minippl", "pyro")
LABELS = {"minippl": "minippl, traced a + b * x (NumPy)", "pyro": "Pyro, Trace_ELBO (torch CPU)"}
SIGMA, PRIOR_SCALE, LR = 0.5, 10.0, 0.01
TRUE_A, TRUE_B = 1.0, 2.0
sys.path.insert(0, str(ROOT / "benchmarks"))
import timing  # noqa: E402  (standard library only: Pyro's interpreter imports it too)


def make_data(n, seed, dtype):
    """x ~ U(-2, 2), y = 1 + 2 x + N(0, 0.5^2): NumPy's PCG64 stream, the same in every interpreter."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.uniform(-2.0, 2.0, n)
    y = TRUE_A + TRUE_B * x + SIGMA * rng.standard_normal(n)
    return x.astype(dtype), y.astype(dtype)


def exact_posterior(x, y):
    """Means and sds of (a, b) under the model, sigma known: a conjugate Gaussian."""
    import numpy as np

    design = np.stack([np.ones_like(x), x], axis=1).astype(np.float64)
    precision = design.T @ design / SIGMA**2 + np.eye(2) / PRIOR_SCALE**2
    covariance = np.linalg.inv(precision)
    mean = covariance @ design.T @ y.astype(np.float64) / SIGMA**2
    return {"a_loc": mean[0], "b_loc": mean[1], "a_sd": np.sqrt(covariance[0, 0]), "b_sd": np.sqrt(covariance[1, 1])}


# ================================================================ the workers: one system each
def minippl_stepper(x, y, dtype):
    import numpy as np

    import minippl
    import minippl.distributions as dist
    from minippl.distributions import constraints
    from minippl.infer import SVI, Trace_ELBO
    from minippl.optim import Adam

    def model(x, y):
        a = minippl.sample("a", dist.Normal(0.0, PRIOR_SCALE))
        b = minippl.sample("b", dist.Normal(0.0, PRIOR_SCALE))
        mean = a + b * x
        with minippl.plate("data", len(x)):
            minippl.sample("obs", dist.Normal(mean, SIGMA), obs=y)

    def guide(x, y):
        for name in ("a", "b"):
            loc = minippl.param(f"{name}_loc", np.array(0.0, dtype=dtype))
            scale = minippl.param(f"{name}_scale", np.array(1.0, dtype=dtype), constraint=constraints.positive)
            minippl.sample(name, dist.Normal(loc, scale))

    minippl.clear_param_store()
    minippl.set_rng_seed(0)
    svi = SVI(model, guide, Adam({"lr": LR}), Trace_ELBO())
    store = minippl.get_param_store()
    info = {"backend": minippl.get_backend(), "minippl": str(pathlib.Path(minippl.__file__).parent),
            "numpy": np.__version__}
    return (lambda: svi.step(x, y)), (lambda: {name: float(value) for name, value in store.items()}), info


def pyro_stepper(x, y, dtype):
    import numpy as np
    import pyro
    import pyro.distributions as dist
    import torch
    from pyro.distributions import constraints
    from pyro.infer import SVI, Trace_ELBO
    from pyro.optim import Adam

    torch.set_num_threads(1)
    torch.set_default_dtype(getattr(torch, dtype))  # Normal(0., 10.) and torch.tensor(0.) in the data's dtype

    def model(x, y):
        a = pyro.sample("a", dist.Normal(0.0, PRIOR_SCALE))
        b = pyro.sample("b", dist.Normal(0.0, PRIOR_SCALE))
        mean = a + b * x
        with pyro.plate("data", len(x)):
            pyro.sample("obs", dist.Normal(mean, SIGMA), obs=y)

    def guide(x, y):
        for name in ("a", "b"):
            loc = pyro.param(f"{name}_loc", torch.tensor(0.0))
            scale = pyro.param(f"{name}_scale", torch.tensor(1.0), constraint=constraints.positive)
            pyro.sample(name, dist.Normal(loc, scale))

    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    svi = SVI(model, guide, Adam({"lr": LR}), loss=Trace_ELBO())
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    store = pyro.get_param_store()
    info = {"torch": torch.__version__, "pyro": pyro.__version__, "numpy": np.__version__,
            "torch_threads": torch.get_num_threads()}
    return (lambda: svi.step(tx, ty)), (lambda: {name: float(value.detach()) for name, value in store.items()}), info


def worker(system, args):
    x, y = make_data(args.n, args.seed, args.dtype)
    step, params, info = (minippl_stepper if system == "minippl" else pyro_stepper)(x, y, args.dtype)
    info.update(data_sum=float(x.sum() + y.sum()), python=platform.python_version(),
                imported_torch_or_pyro=sorted(m for m in ("torch", "pyro") if m in sys.modules))

    def run_round(warmup, steps):
        for _ in range(int(warmup)):
            step()
        start = time.perf_counter()
        for _ in range(int(steps)):
            loss = step()
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "steps": int(steps), "us_per_step": 1e6 * seconds / int(steps),
                "loss": float(loss), "params": params()}

    timing.serve(info, "round", run_round)


# ================================================================ the parent: alternate (timing.py), then tabulate
def pyro_interpreter(path):
    """``path`` if it runs and imports torch and pyro, else None and the reason."""
    if not path or not os.path.exists(path):
        return None, f"no interpreter at {path}"
    probe = subprocess.run([path, "-c", "import numpy, torch, pyro"], capture_output=True, text=True)
    if probe.returncode != 0:
        return None, f"{path} cannot import numpy, torch and pyro ({probe.stderr.strip().splitlines()[-1:]})"
    return path, None


def start_worker(system, python, args):
    command = [python, __file__, "--worker", system, "--n", str(args.n), "--seed", str(args.seed),
               "--dtype", args.dtype, "--core", str(args.core)]
    return timing.start_worker(system, command, timing.thread_environment(1), ROOT)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="data points")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per system")
    parser.add_argument("--steps", type=int, default=2000, help="timed steps per round (minippl; Pyro too by default)")
    parser.add_argument("--pyro-steps", type=int, default=None, help="timed steps per round for Pyro")
    parser.add_argument("--warmup", type=int, default=200, help="untimed steps at the start of every round")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data")
    parser.add_argument("--core", type=int, default=0, help="the core both workers are pinned to (-1: not pinned)")
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    parser.add_argument("--pyro-python", default=DEFAULT_PYRO_PYTHON,
                        help="an interpreter with torch and pyro-ppl (default %(default)s)")
    timing.add_options(parser, "also write the table, raw rounds and settings to this file")
    parser.add_argument("--worker", choices=SYSTEMS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        if args.core >= 0:
            os.sched_setaffinity(0, {args.core})
        return worker(args.worker, args)

    pythons = {"minippl": sys.executable}
    if "pyro" in args.systems:
        pythons["pyro"], why = pyro_interpreter(args.pyro_python)
        if why:
            print(f"Pyro skipped: {why}; pass --pyro-python PATH (an interpreter with torch and pyro-ppl)")
    systems = [s for s in args.systems if pythons.get(s)]
    steps = {"minippl": args.steps, "pyro": args.pyro_steps or args.steps}
    load_before = os.getloadavg()
    workers, infos = timing.start_workers(systems, lambda system: start_worker(system, pythons[system], args))
    runs = timing.alternate(workers, lambda system: f"round {args.warmup} {steps[system]}", args.rounds, args,
                            describe=lambda run: f"{run['us_per_step']:.1f} us/step")
    table = tabulate(systems, runs, infos, args)
    table["loadavg_before"], table["loadavg_after"] = load_before, os.getloadavg()
    table["machine"] = f"{timing.cpu_name()}, {os.cpu_count()} cores"
    print_table(table)
    timing.write_json(args.json, table)
    return table


def tabulate(systems, runs, infos, args):
    x, y = make_data(args.n, args.seed, args.dtype)
    exact = {k: float(v) for k, v in exact_posterior(x, y).items()}
    rows = []
    for system in systems:
        us = [r["us_per_step"] for r in runs[system]]
        rows.append({"system": system, "label": LABELS[system], "us_per_step": statistics.median(us),
                     "rounds_us_per_step": us, "steps_per_round": runs[system][-1]["steps"],
                     "other_load": [r.get("foreign_load") for r in runs[system]],
                     "final_loss": runs[system][-1]["loss"], "params": runs[system][-1]["params"],
                     "same_data": abs(infos[system]["data_sum"] - float(x.sum() + y.sum())) < 1e-6 * args.n,
                     "worker": {k: v for k, v in infos[system].items() if k not in ("ready", "data_sum")}})
    by = {r["system"]: r["us_per_step"] for r in rows}
    for row in rows:
        row["vs_pyro"] = row["us_per_step"] / by["pyro"] if "pyro" in by else None
    return {"rows": rows, "exact_posterior": exact, "n": args.n, "dtype": args.dtype, "rounds": args.rounds,
            "warmup_steps": args.warmup, "threads": 1, "core": args.core, "sigma": SIGMA, "lr": LR,
            "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def print_table(table):
    pinned = f"pinned to core {table['core']}" if table["core"] >= 0 else "not pinned"
    print(f"\nBayesian regression a + b * x, N = {table['n']}, sigma fixed {table['sigma']}, {table['dtype']}; "
          f"one SVI step (Trace_ELBO, 1 particle, Adam lr {table['lr']})")
    print(f"1 thread per system (OMP/OPENBLAS/MKL/NUMBA_NUM_THREADS=1, torch.set_num_threads(1)), {pinned}; "
          f"{table['machine']}; median of {table['rounds']} rounds ({table['warmup_steps']} warm-up steps each); "
          f"load average before/after {table['loadavg_before'][0]:.1f}/{table['loadavg_after'][0]:.1f}")
    print(f"{'system':36s} {'us/step':>9s} {'vs Pyro':>8s} {'steps':>6s} {'others':>7s}")
    for row in table["rows"]:
        ratio = f"{row['vs_pyro']:8.2f}" if row["vs_pyro"] is not None else f"{'-':>8s}"
        loads = [v for v in row["other_load"] if v is not None]
        others = f"{statistics.median(loads):7.2f}" if loads else f"{'?':>7s}"
        print(f"{row['label']:36s} {row['us_per_step']:9.1f} {ratio} {row['steps_per_round']:6d} {others}")
    print("others: cores kept busy by other processes during that system's timed rounds (median)")
    exact = table["exact_posterior"]
    print(f"\nposterior after all rounds (exact: a {exact['a_loc']:.4f} sd {exact['a_sd']:.4f}, "
          f"b {exact['b_loc']:.4f} sd {exact['b_sd']:.4f}):")
    for row in table["rows"]:
        p = row["params"]
        print(f"  {row['system']:8s} a_loc {p['a_loc']:8.4f}  a_scale {p['a_scale']:.4f}  "
              f"b_loc {p['b_loc']:8.4f}  b_scale {p['b_scale']:.4f}  last loss {row['final_loss']:.2f}"
              + ("" if row["same_data"] else "  (DIFFERENT DATA: check the workers' numpy)"))


if __name__ == "__main__":
    main()
