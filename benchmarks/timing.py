"""What vae_epoch.py and regression_step.py share: systems in worker processes, timed in alternating rounds.

Each system runs in its own worker process (the benchmark script started again with ``--worker``).
The worker builds its system, prints one JSON line with ``"ready": true``, then answers each request
line on stdin (``epoch``, ``round 200 2000``) with one JSON line, until stdin closes (``serve``).
The parent starts the workers (``start_worker``), then runs the rounds (``alternate``): one request
to each worker in turn, so that a noisy neighbour slows every system alike, and before each request
it waits for other processes to leave the cores and records how busy they kept them
(``ForeignLoad``). Standard library only: Pyro's worker may run under another interpreter.
"""
import json
import os
import pathlib
import platform
import subprocess
import sys
import time

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


# ================================================================ the worker's side
def serve(ready, verb, handle):
    """Print ``ready`` (a dict) with ``"ready": true`` as one JSON line; then, for each stdin line
    ``verb ARG...``, print ``handle(*ARGS)`` (a dict) as one JSON line. Stops at any other line or EOF."""
    print(json.dumps(dict(ready, ready=True)), flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] != verb:
            break
        print(json.dumps(handle(*words[1:])), flush=True)


# ================================================================ the parent's side
def add_options(parser, json_help):
    """The options every alternating benchmark takes: --pause, --quiet-limit, --max-wait, --json."""
    parser.add_argument("--pause", type=float, default=0.5, help="seconds between runs (idle thread pools park)")
    parser.add_argument("--quiet-limit", type=float, default=0.15,
                        help="before each run, wait until other processes use fewer cores than this")
    parser.add_argument("--max-wait", type=float, default=30.0, help="seconds to wait for that, at most")
    parser.add_argument("--json", default=None, help=json_help)


def thread_environment(threads):
    """This process's environment with OMP, OPENBLAS, MKL and NUMBA_NUM_THREADS set to ``threads``."""
    return dict(os.environ, **{name: str(threads) for name in THREAD_VARIABLES})


def start_worker(name, command, env, cwd):
    """Start ``command`` and wait for its ready line: returns (process, the ready line as a dict)."""
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=cwd)
    reply = process.stdout.readline()
    ready = json.loads(reply) if reply.startswith("{") else {}
    if not ready.get("ready"):
        process.kill()
        process.wait()
        raise RuntimeError(f"worker {name} failed to start (its error is printed above)")
    return process, ready


def start_workers(systems, start):
    """``start(system)`` -> (process, ready) for each system: returns ({system: process}, {system: ready}).
    If one fails to start, the ones already started are stopped."""
    workers, readies = {}, {}
    try:
        for system in systems:
            workers[system], readies[system] = start(system)
    except BaseException:
        stop_workers(workers)
        raise
    return workers, readies


def ask(process, request):
    """Send one request line to a worker and return its JSON reply."""
    process.stdin.write(request + "\n")
    process.stdin.flush()
    return json.loads(process.stdout.readline())


def stop_workers(workers):
    for process in workers.values():
        try:
            process.stdin.close()  # the worker's stdin ends: it leaves its loop
        except OSError:
            pass
        process.wait()


def alternate(workers, request, rounds, args, describe, warmup_rounds=0, check=None):
    """``warmup_rounds`` untimed rounds, then ``rounds`` timed ones; in each, ``request(system)`` is sent
    to every worker in turn, ``args.pause`` seconds apart. Before each timed request, wait until other
    processes use fewer than ``args.quiet_limit`` cores (at most ``args.max_wait`` s). Each reply gets
    ``foreign_load`` (cores kept busy by others meanwhile) and goes through ``check(system, reply)``;
    after each round one line is printed with ``describe(reply)`` per system. Returns
    {system: [reply of each round, warm-up rounds first]}. Closes the workers, also on an error."""
    meter = ForeignLoad()
    runs = {system: [] for system in workers}
    try:
        for round_ in range(1 - warmup_rounds, rounds + 1):  # rounds <= 0 are warm-up
            for system, process in workers.items():
                time.sleep(args.pause)
                meter.own_pids = [os.getpid(), process.pid]
                if round_ > 0:
                    meter.wait_for_quiet(args.quiet_limit, args.max_wait)
                meter.start()
                result = ask(process, request(system))
                result["foreign_load"] = meter.stop()
                if check:
                    check(system, result)
                runs[system].append(result)
            print(f"round {round_}{' (warm-up)' if round_ <= 0 else ''}: "
                  + ", ".join(f"{s} {describe(runs[s][-1])}" for s in workers)
                  + "; other processes' load " + ", ".join(load(runs[s][-1]) for s in workers), flush=True)
    finally:
        stop_workers(workers)
    return runs


def write_json(path, table):
    if path:
        pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(path).write_text(json.dumps(table, indent=2) + "\n")
        print(f"wrote {path}")


class ForeignLoad:
    """How busy the machine's cores were with OTHER processes over a span (the idle workers of the
    other systems count as others): 0 = idle besides us, 1 = one whole core. Linux /proc; None elsewhere."""

    def __init__(self, own_pids=()):
        self.own_pids = list(own_pids)

    @staticmethod
    def _busy_ticks():
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
        return sum(fields) - fields[3] - fields[4]  # all but idle and iowait

    def _own_ticks(self):
        total = 0
        for pid in self.own_pids:
            try:
                with open(f"/proc/{pid}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime + stime, all threads
            except (OSError, IndexError, ValueError):
                pass
        return total

    def start(self):
        try:
            self._mark = (time.perf_counter(), self._busy_ticks(), self._own_ticks())
        except OSError:
            self._mark = None

    def stop(self):
        if self._mark is None:
            return None
        start, busy, own = self._mark
        elapsed = time.perf_counter() - start
        foreign = (self._busy_ticks() - busy) - (self._own_ticks() - own)
        return max(foreign, 0) / os.sysconf("SC_CLK_TCK") / max(elapsed, 1e-9)

    def wait_for_quiet(self, limit, max_seconds):
        """Sleep until other processes use less than ``limit`` cores (or ``max_seconds`` pass)."""
        deadline = time.perf_counter() + max_seconds
        while True:
            self.start()
            time.sleep(0.5)
            load = self.stop()
            if load is None or load < limit or time.perf_counter() > deadline:
                return load


def load(run):
    value = run.get("foreign_load")
    return "?" if value is None else f"{value:.2f}"


def cpu_name():
    try:
        with open("/proc/cpuinfo") as info:
            return next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()
