"""Seconds per training epoch of the MNIST VAE: minippl's backends, Pyro, NumPyro and the GEMM floor.

Every system trains the same model (784-400-50, softplus, Normal latent, Bernoulli pixels / 255,
batch 256 reshuffled each epoch, Adam 1e-3, one-particle Trace_ELBO, float32) in its own worker
process, with the same threads on the same cores. The parent runs one epoch on each worker in
turn, so a noisy neighbour slows every system alike; before each run it waits for other processes
to leave the cores (``--quiet-limit``) and records how busy they kept them. It prints the median
seconds per epoch (each worker's first epoch, warm-up and JIT compilation, excluded), ms per step,
the ratio to Pyro, and to the "GEMM floor": this machine running only the step's 14 matrix
products at these shapes. Pyro (``pip install torch pyro-ppl``) and NumPyro (``pip install
numpyro``) are timed when they import; they are never minippl dependencies.

``--baseline PATH`` adds "baseline": the numba backend of another checkout of minippl at PATH (its
own minippl/, kernels/ and examples/vae_mnist.py; the worker runs with PYTHONPATH=PATH), timed in the
same alternating rounds, and a "vs base" column: each system's time over the baseline's, so the numba
row reads this tree / that checkout. The worker processes, the alternating rounds and the wait for
quiet cores are timing.py's, shared with regression_step.py.

    python benchmarks/vae_epoch.py                           # 5 rounds, every system found
    python benchmarks/vae_epoch.py --rounds 9 --json runs/vae_epoch.json    # as the README's table
    python benchmarks/vae_epoch.py --rounds 2 --train-limit 12800 --json /tmp/vae_epoch.json
    python benchmarks/vae_epoch.py --systems numba gemm      # only these (or --systems numba,gemm)
    python benchmarks/vae_epoch.py --systems numba,baseline --baseline /tmp/main_before
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
SYSTEMS = ("numba", "numpy", "pyro", "numpyro", "plain", "gemm")
LABELS = {
    "numba": "minippl, numba backend (fused kernels)",
    "numpy": "minippl, numpy backend (reference)",
    "pyro": "Pyro, Trace_ELBO (torch CPU)",
    "numpyro": "NumPyro, jitted SVI.update (JAX CPU)",
    "plain": "the same step written out by hand (no PPL)",
    "gemm": "GEMM floor: the 14 matrix products only",
    "baseline": "minippl numba (baseline)",
}
ALL_SYSTEMS = SYSTEMS + ("baseline",)
sys.path.insert(0, str(ROOT / "benchmarks"))
import timing  # noqa: E402
import vae_systems  # noqa: E402
from vae_systems import BATCH, TRAINERS, load_pixels, minippl_outside  # noqa: E402


def worker(system, train_limit, threads, baseline=None):
    tree = pathlib.Path(baseline).resolve() if system == "baseline" else ROOT
    if system == "baseline":
        vae_systems.use_tree(tree)  # its minippl, kernels and examples/, not this tree's
    x = load_pixels(train_limit)
    epoch = TRAINERS["numba" if system == "baseline" else system](x)
    if system == "pyro":
        import torch

        torch.set_num_threads(threads)
    steps = -(-len(x) // BATCH)

    def run_epoch():
        start = time.perf_counter()
        loss = epoch()
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "steps": steps, "loss_per_image": loss / len(x), "outside": minippl_outside(tree)}

    minippl = sys.modules.get("minippl")
    timing.serve({"minippl": minippl and str(pathlib.Path(minippl.__file__).parent),
                  "examples": str(vae_systems.EXAMPLES), "outside": minippl_outside(tree)}, "epoch", run_epoch)


def worker_environment(threads):
    env = timing.thread_environment(threads)
    env["XLA_FLAGS"] = env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=1"
    env["JAX_PLATFORMS"] = "cpu"
    return env


# ================================================================ the parent: alternate (timing.py), then tabulate
def available(system, baseline=None):
    if system == "baseline" and not (baseline and (pathlib.Path(baseline) / "minippl" / "__init__.py").is_file()):
        return False
    modules = {"pyro": ("torch", "pyro"), "numpyro": ("jax", "numpyro"), "numba": ("numba",),
               "plain": ("numba",), "baseline": ("numba",)}.get(system, ())
    try:
        for module in modules:
            __import__(module)
    except ImportError:
        return False
    return True


def start_worker(system, args):
    command = [sys.executable, __file__, "--worker", system, "--threads", str(args.threads)]
    if args.train_limit:
        command += ["--train-limit", str(args.train_limit)]
    env = worker_environment(args.threads)
    if system == "baseline":
        command += ["--baseline", args.baseline]
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [args.baseline, env.get("PYTHONPATH")]))
    process, ready = timing.start_worker(system, command, env, ROOT)
    check_tree(system, ready, args.baseline)
    if ready["minippl"]:
        print(f"{system}: minippl from {ready['minippl']}, examples from {ready['examples']}")
    return process, ready


def check_tree(system, reply, baseline):
    """With a baseline, each minippl worker must have imported only its own tree's minippl."""
    if baseline and reply.get("outside"):
        raise RuntimeError(f"worker {system} imported minippl modules from the wrong checkout: {reply['outside']}")


def parse_systems(parser, args):
    """--systems as words or comma lists; "baseline" needs --baseline and is in the default when given."""
    if args.systems is None:
        return [s for s in ("numba", "baseline") + SYSTEMS[1:] if s != "baseline" or args.baseline]
    systems = [s for item in args.systems for s in item.split(",") if s]
    wrong = [s for s in systems if s not in ALL_SYSTEMS]
    if wrong:
        parser.error(f"unknown system(s) {', '.join(wrong)}; choose from {', '.join(ALL_SYSTEMS)}")
    if "baseline" in systems and not args.baseline:
        parser.error("the baseline system needs --baseline PATH (a checkout of minippl)")
    return list(dict.fromkeys(systems))


def git_commit(path):
    run = lambda *a: subprocess.run(["git", "-C", str(path), *a], capture_output=True, text=True)  # noqa: E731
    commit = run("rev-parse", "--short", "HEAD")
    if commit.returncode:
        return None
    return commit.stdout.strip() + ("+changes" if run("status", "--porcelain", "--untracked-files=no").stdout.strip()
                                    else "")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", nargs="+", default=None, metavar="SYSTEM",
                        help=f"any of {', '.join(ALL_SYSTEMS)}, as words or comma lists (default: all; "
                             f"baseline only with --baseline)")
    parser.add_argument("--baseline", default=None, metavar="PATH",
                        help="another checkout of minippl: adds the system 'baseline', its numba backend")
    parser.add_argument("--rounds", type=int, default=5, help="timed epochs per system (after one warm-up)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="threads (and cores) per system")
    parser.add_argument("--train-limit", type=int, default=None, help="train on the first N images only")
    timing.add_options(parser, "also write the table and settings to this file")
    parser.add_argument("--worker", choices=ALL_SYSTEMS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        if args.threads < (os.cpu_count() or 1):
            os.sched_setaffinity(0, set(range(args.threads)))
        return worker(args.worker, args.train_limit, args.threads, args.baseline)

    if args.baseline:
        args.baseline = str(pathlib.Path(args.baseline).resolve())
    requested = parse_systems(parser, args)
    systems = [s for s in requested if available(s, args.baseline)]
    skipped = [s for s in requested if s not in systems]
    if skipped:
        print(f"not installed, skipped: {', '.join(skipped)} (pip install torch pyro-ppl numpyro to compare)")
    load_before = os.getloadavg()
    workers, _ = timing.start_workers(systems, lambda system: start_worker(system, args))
    # round 0: every worker's first epoch (warm-up, JIT compilation), not counted
    runs = timing.alternate(workers, lambda system: "epoch", args.rounds, args,
                            describe=lambda run: f"{run['seconds']:.2f}s", warmup_rounds=1,
                            check=lambda system, run: check_tree(system, run, args.baseline))
    seconds = {s: [run["seconds"] for run in runs[s][1:]] for s in systems}
    table = tabulate(systems, seconds, runs, args)
    table["loadavg_before"], table["loadavg_after"] = load_before, os.getloadavg()
    print_table(table)
    timing.write_json(args.json, table)
    return table


def tabulate(systems, seconds, runs, args):
    rows = []
    for system in systems:
        median = statistics.median(seconds[system])
        steps = runs[system][-1]["steps"]
        rows.append({"system": system, "label": LABELS[system], "seconds_per_epoch": median,
                     "ms_per_step": 1e3 * median / steps, "epochs": seconds[system],
                     "other_load": [r.get("foreign_load") for r in runs[system][1:]],
                     "loss_per_image": runs[system][-1]["loss_per_image"] if system != "gemm" else None})
    by = {r["system"]: r["seconds_per_epoch"] for r in rows}
    for row in rows:
        row["vs_pyro"] = row["seconds_per_epoch"] / by["pyro"] if "pyro" in by else None
        row["vs_gemm_floor"] = row["seconds_per_epoch"] / by["gemm"] if "gemm" in by else None
        row["vs_baseline"] = row["seconds_per_epoch"] / by["baseline"] if "baseline" in by else None
    return {"rows": rows, "threads": args.threads, "rounds": args.rounds, "train_images": args.train_limit or 60000,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "tree": {"path": str(ROOT), "commit": git_commit(ROOT)},
            "baseline": {"path": args.baseline, "commit": git_commit(args.baseline)} if "baseline" in by else None,
            "machine": f"{timing.cpu_name()}, {os.cpu_count()} cores",
            "python": platform.python_version(), "versions": versions(systems)}


def versions(systems):
    import numpy

    found = {"numpy": numpy.__version__}
    for module in ("numba", "torch", "pyro", "jax", "numpyro"):
        try:
            found[module] = __import__(module).__version__
        except ImportError:
            pass
    return found


def print_table(table):
    base = table.get("baseline")
    print(f"\nMNIST VAE, batch 256, {table['train_images']} images, {table['threads']} threads, "
          f"median of {table['rounds']} epochs (first excluded); load average before/after "
          f"{table['loadavg_before'][0]:.1f}/{table['loadavg_after'][0]:.1f}")
    print(f"{'system':44s} {'s/epoch':>8s} {'ms/step':>8s} {'vs Pyro':>8s} {'vs GEMM':>8s}"
          + (f" {'vs base':>8s}" if base else "") + f" {'others':>7s} {'loss':>7s}")
    for row in table["rows"]:
        ratio = lambda r: f"{r:8.2f}" if r is not None else f"{'-':>8s}"  # noqa: E731
        loads = [v for v in row["other_load"] if v is not None]
        others = f"{statistics.median(loads):7.2f}" if loads else f"{'?':>7s}"
        loss = f"{row['loss_per_image']:7.2f}" if row["loss_per_image"] is not None else f"{'-':>7s}"
        print(f"{row['label']:44s} {row['seconds_per_epoch']:8.2f} {row['ms_per_step']:8.2f} "
              f"{ratio(row['vs_pyro'])} {ratio(row['vs_gemm_floor'])}"
              + (f" {ratio(row['vs_baseline'])}" if base else "") + f" {others} {loss}")
    print("others: cores kept busy by other processes during that system's timed epochs (median); "
          "loss: training loss per image in the last epoch (every system learns)")
    if base:
        tree = table["tree"]
        numba = next((r for r in table["rows"] if r["system"] == "numba"), None)
        print(f"baseline: {base['path']} at {base['commit']}; this tree: {tree['path']} at {tree['commit']}"
              + (f"; numba backend, this tree / baseline: {numba['vs_baseline']:.3f}" if numba else ""))

if __name__ == "__main__":
    main()
