#!/usr/bin/env bash
# The device check of minippl's GPU path, in one command, offline, in under 8 minutes:
#   bash benchmarks/gpu_check.sh            (from the repository root, on a machine with an NVIDIA GPU)
# Stages, each bounded by a timeout and by the whole run's deadline (MAX_SECONDS, default 460); a
# stage that fails is recorded and the next one runs:
#   env       nvidia-smi, Python and the packages that matter          -> $OUT/env.txt
#   install   minippl from this checkout into a scratch folder, with --no-deps: the preinstalled
#             CuPy and torch stay untouched (and Pyro from $WHEELS, if carried)
#   probe     versions, gpu.check_device() (GPU, compute capability), NVRTC compile time, backend
#   kernels   pytest tests/test_kernels_gpu.py (every GPU kernel against its NumPy reference) and
#             tests/test_kernels_gpu_compile.py
#   grads     one VAE ELBO gradient, GPU vs CPU, same parameters and same noise
#   vae_cuda, vae_cpu  examples/vae_mnist.py -n 2 on --device cuda and on --device cpu: train losses
#             must agree within 0.5 nats per image per epoch
#   pyro      Pyro's VAE on the same GPU (skipped unless Pyro's wheels are in $WHEELS), timed against
#             minippl's second epoch
# Results: $OUT/results.json (summary + every stage), results.jsonl, log.txt, env.txt and the two
# runs' metrics; a table at the end. $OUT defaults to /tmp/gpu_check_out. Without a GPU every
# stage that needs one fails or skips with its reason, and the script still ends with the table.
#
# Pyro (optional), fetched beforehand on a machine with network access, into the tree that travels:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 -d .whl pyro-ppl==1.9.2 pyro-api==0.1.2
# (Pyro's other needs, torch, opt-einsum, tqdm and NumPy, are on the GPU machine's image.)
# Environment: PY (default python3), OUT, MAX_SECONDS, MNIST_DIR (default ../shared/data/mnist
# beside the checkout if there, else the bundled examples/data/mnist), WHEELS (default: .whl/ in the
# checkout, the folder above benchmarks/, wherever the script is run from).
set -u
R=$(cd "$(dirname "$0")/.." && pwd)
O=${OUT:-/tmp/gpu_check_out}
PY=${PY:-python3}
WHEELS=${WHEELS:-$R/.whl}
W=$(mktemp -d /tmp/gpu_check.XXXXXX)
mkdir -p "$O" && rm -f "$O/results.jsonl" "$O/log.txt" "$O"/vae_*_metrics.jsonl
DEADLINE=$((SECONDS + ${MAX_SECONDS:-460}))
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg MNP_ROOT="$R" PYTHONPATH="$W/site"
cd "$W" || exit 1  # never run Python in $R: its ./minippl lacks the kernels subpackage (setup.cfg package_dir)
DATA=${MNIST_DIR:-}
for d in "$R/../shared/data/mnist" "$R/examples/data/mnist"; do [ -z "$DATA" ] && [ -d "$d" ] && DATA=$(cd "$d" && pwd); done

log() { echo "$*" | tee -a "$O/log.txt"; }
stage() {  # stage NAME MAX_SECONDS COMMAND...: JSON lines of its stdout -> results.jsonl, the rest -> log.txt
  local name=$1 max=$2 left=$((DEADLINE - SECONDS)) start=$SECONDS; shift 2
  [ "$left" -lt "$max" ] && max=$left
  if [ "$max" -lt 10 ]; then
    log "== $name skipped: the run's deadline"
    echo "{\"run\": \"$name\", \"skipped\": \"deadline\"}" >> "$O/results.jsonl"; return
  fi
  log "== $name (at most ${max}s) $(date +%T)"
  timeout "$max" "$@" > "$W/$name.out" 2>> "$W/$name.err"; local rc=$?
  local fields="\"run\": \"$name\", \"rc\": $rc, \"seconds\": $((SECONDS - start))"
  [ "$rc" = 124 ] && fields="$fields, \"failed\": \"timed out after ${max}s\""
  if grep -q '^{' "$W/$name.out"; then grep '^{' "$W/$name.out" | sed "s/^{/{$fields, /" >> "$O/results.jsonl"
  else echo "{$fields}" >> "$O/results.jsonl"; fi
  { grep -v '^{' "$W/$name.out"; cat "$W/$name.err"; } | tail -25 >> "$O/log.txt"
  log "   $name rc=$rc"
}

# ---- env
{ nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv 2>&1; "$PY" -V 2>&1
  "$PY" -m pip list 2>/dev/null | grep -iE '^(numpy|numba|llvmlite|cupy|cuda-|nvidia-cuda-nvrtc|nvidia-cublas|torch|pyro|pytest|setuptools) '
  echo "data: ${DATA:-none}"; echo "wheels: $(ls "$WHEELS"/*.whl 2>/dev/null | xargs -n1 basename 2>/dev/null | tr '\n' ' ')"
} > "$O/env.txt" 2>&1

# ---- install: minippl as setup.cfg maps it (minippl.kernels from kernels/), Pyro from carried wheels
install() {  # a function: stage runs it through bash -c, since timeout runs programs
  if ! "$PY" -m pip install -q --no-deps --no-build-isolation --no-index --target "$W/site" "$R"; then
    echo "pip install failed: copying the packages as setup.cfg maps them"
    rm -rf "$W/site/minippl" && mkdir -p "$W/site" && cp -r "$R/minippl" "$W/site/" && cp -r "$R/kernels" "$W/site/minippl/kernels" || return 1
  fi
  if ls "$WHEELS"/pyro_ppl-*.whl > /dev/null 2>&1; then
    "$PY" -m pip install -q --no-deps --no-index --target "$W/site" "$WHEELS"/*.whl || return 1
  fi
  "$PY" -c "import minippl.kernels.gpu_sources as s; print('{\"installed\": \"%s\", \"kernels\": %d, \"passed\": true}' % (s.__file__, len(s.KERNELS)))"
}
export -f install && export R W PY WHEELS
stage install 90 bash -c install

cat > "$W/gck.py" <<'PYEOF'
"""One stage per call (python gck.py STAGE), each printing one JSON line: probe, kernels, grads, pyro."""
import json
import os
import sys
import time
import traceback
import warnings

import numpy as np

R = os.environ["MNP_ROOT"]
sys.path[:0] = [os.path.join(R, "examples")]


def emit(**fields):
    print(json.dumps(fields, default=str), flush=True)


def probe():
    import cupy

    out = {"python": sys.version.split()[0], "numpy": np.__version__, "cupy": cupy.__version__}
    from cupy_backends.cuda.libs import nvrtc
    out["nvrtc"] = nvrtc.getVersion()
    from minippl.kernels import gpu
    start = time.perf_counter()
    out["device"] = gpu.check_device()  # compiles every kernel (CuPy caches the binary on disk)
    out["check_device_and_compile_s"] = round(time.perf_counter() - start, 3)
    import minippl
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out["default_backend"] = minippl.get_backend()
    out["backend_warnings"] = [str(w.message)[:300] for w in caught]
    emit(**out, passed=True)


def kernels():
    import pytest

    class Outcomes:
        def __init__(self):
            self.counts, self.failed, self.skipped = {}, [], []

        def pytest_runtest_logreport(self, report):
            if report.when == "call" or report.outcome != "passed":
                self.counts[report.outcome] = self.counts.get(report.outcome, 0) + 1
                if report.failed:
                    self.failed.append(f"{report.nodeid}: {str(report.longrepr)[-300:]}")
                if report.skipped:
                    self.skipped.append(str(report.longrepr)[-150:])

        def pytest_collectreport(self, report):
            if report.skipped:  # a whole module skipped (no CuPy, no GPU)
                self.skipped.append(f"{report.nodeid}: {str(report.longrepr)[-150:]}")
    outcomes = Outcomes()
    files = [os.path.join(R, "tests", f) for f in ("test_kernels_gpu.py", "test_kernels_gpu_compile.py")]
    code = pytest.main(["-q", "-p", "no:cacheprovider", "-o", "addopts=", *files], plugins=[outcomes])
    gpu_tests_ran = outcomes.counts.get("passed", 0) > 0 and not any("test_kernels_gpu.py" in s for s in outcomes.skipped)
    emit(pytest_exit=int(code), tests=outcomes.counts, failures=outcomes.failed[:10], skips=sorted(set(outcomes.skipped))[:10],
         passed=int(code) == 0 and gpu_tests_ran)


def grads():
    """One ELBO gradient of the example's VAE: same parameters, same noise, NumPy (CPU) vs CuPy (GPU)."""
    import cupy

    import minippl
    from minippl import backend
    from minippl.infer import Trace_ELBO
    from mnist import load_mnist
    from vae_mnist import VAE, prepare

    def same_noise(rng, shape, dtype, like=None):  # both devices get the very same N(0, 1) draws
        return backend.array_module(like).asarray(np.random.default_rng(7).standard_normal(shape).astype(dtype))
    backend.standard_normal = same_noise
    x = prepare(load_mnist(os.environ.get("MNP_DATA") or None)[0][:256], np)

    def on(xp):
        minippl.clear_param_store()
        minippl.set_rng_seed(0)
        vae = VAE(50, 400)
        for path, array in list(vae.named_parameters()):
            vae.set_parameter(path, xp.asarray(array))
        loss, g, _ = Trace_ELBO().loss_and_grads(vae.model, vae.guide, xp.asarray(x))
        return float(loss), {k: backend.to_host(v) for k, v in g.items()}
    cpu_loss, cpu = on(np)
    gpu_loss, gpu = on(cupy)
    worst = {k: float(np.max(np.abs(gpu[k] - cpu[k])) / max(float(np.max(np.abs(cpu[k]))), 1e-30)) for k in cpu}
    emit(backend=minippl.get_backend(), cpu_loss=cpu_loss, gpu_loss=gpu_loss,
         loss_rel_diff=abs(gpu_loss - cpu_loss) / abs(cpu_loss), worst_grad_diff_over_max=max(worst.values()),
         per_param=worst, gpu_kernels_used=backend._GPU_KERNELS is not None,
         passed=max(worst.values()) < 1e-3 and abs(gpu_loss - cpu_loss) < 1e-3 * abs(cpu_loss))


def pyro():
    """Pyro's VAE (Pyro's examples/vae/vae.py, as benchmarks/vae_systems.py) for 2 epochs on the GPU."""
    import pyro
    import pyro.distributions as dist
    import torch
    from pyro.infer import SVI, Trace_ELBO
    from pyro.optim import Adam

    from mnist import load_mnist
    device = torch.device("cuda")

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc21, self.fc22 = torch.nn.Linear(784, 400), torch.nn.Linear(400, 50), torch.nn.Linear(400, 50)

        def forward(self, x):
            hidden = torch.nn.functional.softplus(self.fc1(x))
            return self.fc21(hidden), torch.exp(self.fc22(hidden))

    class Decoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc21 = torch.nn.Linear(50, 400), torch.nn.Linear(400, 784)

        def forward(self, z):
            return torch.sigmoid(self.fc21(torch.nn.functional.softplus(self.fc1(z))))
    pyro.set_rng_seed(0)
    encoder, decoder = Encoder().to(device), Decoder().to(device)

    def model(x):
        pyro.module("decoder", decoder)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("latent", dist.Normal(x.new_zeros((x.shape[0], 50)), x.new_ones((x.shape[0], 50))).to_event(1))
            pyro.sample("obs", dist.Bernoulli(decoder(z), validate_args=False).to_event(1), obs=x)

    def guide(x):
        pyro.module("encoder", encoder)
        with pyro.plate("data", x.shape[0]):
            z_loc, z_scale = encoder(x)
            pyro.sample("latent", dist.Normal(z_loc, z_scale).to_event(1))
    svi = SVI(model, guide, Adam({"lr": 1e-3}), loss=Trace_ELBO())
    images = load_mnist(os.environ.get("MNP_DATA") or None)[0]
    data = torch.from_numpy(images.reshape(len(images), 784).astype(np.float32) / np.float32(255.0)).to(device)
    rng, epochs = np.random.default_rng(1), []
    for epoch in (1, 2):  # as the example: one shuffle per epoch, batches of 256
        order = torch.from_numpy(rng.permutation(len(data))).to(device)
        torch.cuda.synchronize()
        start = time.perf_counter()
        loss = sum(svi.step(data[order[s:s + 256]]) for s in range(0, len(data), 256))
        torch.cuda.synchronize()
        epochs.append({"epoch": epoch, "seconds": round(time.perf_counter() - start, 3),
                       "train_loss": round(loss / len(data), 3)})
    emit(pyro=pyro.__version__, torch=torch.__version__, epochs=epochs, passed=True)


if __name__ == "__main__":
    stage = sys.argv[1]
    try:
        {"probe": probe, "kernels": kernels, "grads": grads, "pyro": pyro}[stage]()
    except Exception as error:  # noqa: BLE001 - one JSON line whatever happens
        emit(passed=False, failed=f"{type(error).__name__}: {error}"[:600],
             where=traceback.format_exc().strip().splitlines()[-4:])
        sys.exit(1)
PYEOF

export MNP_DATA="$DATA"
stage probe 120 "$PY" "$W/gck.py" probe
stage kernels 150 "$PY" "$W/gck.py" kernels
stage grads 90 "$PY" "$W/gck.py" grads
for device in cuda cpu; do
  stage "vae_$device" 150 "$PY" "$R/examples/vae_mnist.py" --device "$device" -n 2 -tf 2 --data-dir "$DATA" --out "$W/vae_$device"
  cp "$W/vae_$device/metrics.jsonl" "$O/vae_${device}_metrics.jsonl" 2> /dev/null
done
if ls "$WHEELS"/pyro_ppl-*.whl > /dev/null 2>&1; then stage pyro 120 "$PY" "$W/gck.py" pyro
else echo "{\"run\": \"pyro\", \"skipped\": \"no Pyro wheels in $WHEELS (see the header for the download command)\"}" >> "$O/results.jsonl"; fi

# ---- summary: results.json and a table
"$PY" - "$O" <<'PYEOF'
import json, os, sys
out = sys.argv[1]
runs = [json.loads(line) for line in open(os.path.join(out, "results.jsonl"))]
by = {r["run"]: r for r in runs}


def metrics(device):
    path = os.path.join(out, f"vae_{device}_metrics.jsonl")
    return [json.loads(line) for line in open(path)] if os.path.exists(path) else []


gpu, cpu = metrics("cuda"), metrics("cpu")
loss_gaps = [abs(g["train_loss"] - c["train_loss"]) for g, c in zip(gpu, cpu)]
vae = {"passed": len(loss_gaps) == 2 and max(loss_gaps) < 0.5, "gpu_train_loss": [round(g["train_loss"], 3) for g in gpu],
       "cpu_train_loss": [round(c["train_loss"], 3) for c in cpu], "gpu_seconds": [round(g["seconds"], 2) for g in gpu],
       "cpu_seconds": [round(c["seconds"], 2) for c in cpu]}
pyro = by.get("pyro", {})
pyro_seconds = [e["seconds"] for e in pyro.get("epochs", [])]
summary = {
    "device": by.get("probe", {}).get("device"),
    "kernels_passed": by.get("kernels", {}).get("passed"),
    "grads_passed": by.get("grads", {}).get("passed"),
    "vae_gpu_vs_cpu_within_half_a_nat": vae["passed"],
    "vae": vae,
    "second_epoch_seconds": {"minippl_gpu": vae["gpu_seconds"][1:2], "pyro_gpu": pyro_seconds[1:2]},
    "failures": {r["run"]: r.get("failed") or f"rc {r.get('rc')}" for r in runs if r.get("rc", 0) != 0 or r.get("failed")},
    "skipped": {r["run"]: r["skipped"] for r in runs if r.get("skipped")},
}
json.dump({"summary": summary, "runs": runs}, open(os.path.join(out, "results.json"), "w"), indent=1, default=str)
print(f"\n{'stage':10} {'rc':>4} {'s':>5}  result")
for r in runs:
    result = r.get("skipped") or r.get("failed") or ("passed" if r.get("passed") else "NOT passed")
    if "tests" in r:
        result += f" {r['tests']}" + (f", skips: {r['skips'][0]}" if r.get("skips") else "")
    if r["run"].startswith("vae_") and not r.get("skipped"):  # the example prints no JSON: its metrics tell
        rows = gpu if r["run"] == "vae_cuda" else cpu
        if r.get("rc"):
            result = r.get("failed") or f"rc {r['rc']}, see log.txt"
        elif rows:
            result = "train loss " + ", ".join(f"{m['train_loss']:.2f} ({m['seconds']:.1f} s)" for m in rows)
        else:
            result = "no metrics.jsonl written, see log.txt"
    if r["run"] == "pyro" and pyro_seconds:
        result = "train loss " + ", ".join(f"{e['train_loss']:.2f} ({e['seconds']:.1f} s)" for e in pyro["epochs"])
    print(f"{r['run']:10} {str(r.get('rc', '-')):>4} {str(r.get('seconds', '-')):>5}  {str(result)[:150]}")
print(f"GPU vs CPU train loss per epoch: {vae['gpu_train_loss']} vs {vae['cpu_train_loss']} "
      f"({'within' if vae['passed'] else 'NOT within'} 0.5 nats)")
print(f"results: {os.path.join(out, 'results.json')}")
PYEOF
rm -rf "$W"
