"""The GPU kernels' numbers, checked without a GPU: their CUDA C compiled for the host, run as one thread.

tests/test_kernels_gpu.py compares every kernel with its reference on a GPU, and
tests/test_kernels_gpu_compile.py checks here what NVRTC makes of them; neither sees a wrong number
on a machine without a GPU. So this file compiles kernels/gpu_sources.py's CUDA C with the host's C++
compiler, behind a prelude that makes a kernel a plain C function run by one thread (blockIdx = 0,
blockDim = gridDim = 1: the grid-stride loop then visits every index), swaps gpu.py's launcher for a
ctypes call, and runs gpu.py's own entry points on NumPy float32 arrays against the references, with
tests/test_kernels_cpu.py's inputs and tolerances. What one thread cannot show (races between
threads, CUDA's own expf) is left to the GPU run. Skipped without a C++ compiler.
"""
import ctypes
import shutil
import subprocess

import numpy as np
import pytest

import minippl
import minippl.distributions as dist
from minippl import nn
from minippl.kernels import cpu_adam, gpu, gpu_sources
from minippl.kernels.registry import ENTRIES
from minippl.optim import Adam, ClippedAdam
from test_kernels_cpu import F32, assert_close, probs_with_edges, randn, wide

COMPILER = shutil.which("g++") or shutil.which("c++")
pytestmark = pytest.mark.skipif(COMPILER is None, reason="no C++ compiler to build the CUDA C for the host")

# CUDA's keywords and built-ins as one-thread host C++
PRELUDE = """
#include <cmath>
#include <cstring>
#include <math.h>
struct Dim { unsigned x; };
static const Dim blockIdx = {0}, blockDim = {1}, threadIdx = {0}, gridDim = {1};
#define __global__
#define __device__
#define __forceinline__ inline
static inline unsigned __float_as_uint(float f) { unsigned u; std::memcpy(&u, &f, 4); return u; }
"""
CTYPES = {"float": (np.float32, ctypes.c_float), "int": (np.int32, ctypes.c_int),
          "long long": (np.int64, ctypes.c_longlong)}


@pytest.fixture(scope="module")
def kernels_on_host(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gpu_on_host")
    (folder / "kernels.cpp").write_text(PRELUDE + gpu_sources.SOURCE)
    subprocess.run([COMPILER, "-O1", "-shared", "-fPIC", "-o", str(folder / "kernels.so"),
                    str(folder / "kernels.cpp")], check=True, capture_output=True)
    return ctypes.CDLL(str(folder / "kernels.so"))


@pytest.fixture(autouse=True)
def host_launcher(kernels_on_host, monkeypatch):
    def launch(name, n, *args):
        """gpu._launch's contract, checked as the GPU would need it: every argument of the declared kind."""
        params = gpu_sources.KERNELS[name].params
        full = (*args, np.int64(n))
        assert len(full) == len(params), name
        converted = []
        for (ctype, pname), a in zip(params, full):
            if ctype.endswith("*"):
                assert isinstance(a, np.ndarray) and a.flags.c_contiguous, (name, pname)
                converted.append(ctypes.c_void_p(a.ctypes.data))
            else:
                kind, c_type = CTYPES[ctype]
                assert type(a) is kind, (name, pname, type(a))
                converted.append(c_type(a))
        getattr(kernels_on_host, name)(*converted)

    monkeypatch.setattr(gpu, "_launch", launch)
    previous = minippl.get_backend()
    minippl.set_backend("numpy")  # the expected values are the reference's
    with np.errstate(all="ignore"):
        yield
    minippl.set_backend(previous)


@pytest.mark.parametrize("beta, threshold", [(1.0, 20.0), (2.0, 20.0), (0.5, 5.0)])
def test_softplus_value_and_slope(beta, threshold):
    x = wide()
    out, slope = gpu.softplus_forward(x, beta, threshold)
    expected_out, expected_slope = nn.layers.softplus_with_slope.reference(x, beta, threshold)
    assert_close(out, expected_out, rtol=3e-6, atol=1e-7)
    assert_close(slope, expected_slope.astype(F32), rtol=3e-6, atol=1e-7)


def test_activations_and_their_backwards():
    x, g = wide(), wide()
    g_rounding = 3e-7 * np.abs(g)  # 1 - y^2 rounds to ulp(1) in the reference, fused in the kernel
    y = gpu.sigmoid_forward(x)
    assert_close(y, nn.Sigmoid().forward(x)[0], rtol=1e-6)
    assert_close(gpu.exp_forward(x), np.exp(x), rtol=3e-7)
    assert_close(gpu.sigmoid_backward(y, g), nn.Sigmoid().backward(y, g, (True,))[0][0], rtol=1e-6, atol=g_rounding)
    t = np.tanh(x)
    assert_close(gpu.tanh_backward(t, g), nn.Tanh().backward(t, g, (True,))[0][0], rtol=1e-6, atol=g_rounding)
    r = np.maximum(x, 0)
    assert_close(gpu.relu_backward(r, g), nn.ReLU().backward(r, g, (True,))[0][0])


def test_bias_and_finiteness():
    y, b, g = randn(7, 5, 3), randn(3), randn(300, 11, scale=3.0)
    assert_close(gpu.add_bias_(y.copy(), b), y + b)
    assert_close(gpu.bias_grad(g), g.sum(0), rtol=1e-5, atol=1e-5)
    arrays = [randn(40, 7), randn(5)]
    assert gpu.all_finite_many(arrays)
    arrays[1][2] = np.inf
    assert not gpu.all_finite_many(arrays)


@pytest.mark.parametrize("per_row", [True, False])
def test_bernoulli_probs_and_logits(per_row):
    probs = probs_with_edges((6, 784))
    x = np.random.default_rng(0).uniform(0, 1, probs.shape).astype(F32)
    g = np.broadcast_to(randn(6, 1), probs.shape) if per_row else randn(6, 784)
    d = dist.Bernoulli(probs=probs, validate_args=False)
    assert_close(gpu.bernoulli_probs_log_prob(x, probs), d.log_prob(x), rtol=2e-6, atol=1e-6)
    assert_close(gpu.bernoulli_probs_grad(x, probs, g), d.log_prob_vjp(x, g, ["probs"])["probs"], rtol=2e-6, atol=1e-6)
    logits = randn(6, 784, scale=10.0)
    logits.flat[:4] = [0, 100, -100, np.nan]
    d = dist.Bernoulli(logits=logits, validate_args=False)
    assert_close(gpu.bernoulli_logits_log_prob(x, logits), d.log_prob(x), rtol=2e-6, atol=1e-6)
    assert_close(gpu.bernoulli_logits_grad(x, logits, g), d.log_prob_vjp(x, g, ["logits"])["logits"],
                 rtol=2e-6, atol=1e-6)


def test_normal_and_kl():
    loc, scale, noise, g = randn(8, 50, scale=3.0), np.exp(randn(8, 50, scale=2.0)), randn(8, 50), randn(8, 50)
    scale.flat[:2] = [1e-30, 1e30]
    d = dist.Normal(loc, scale, validate_args=False)
    x = loc + scale * noise
    assert_close(gpu.normal_rsample(loc, scale, noise), x)
    assert_close(gpu.normal_log_prob(x, loc, scale), d.log_prob(x), rtol=1e-5, atol=1e-5)
    expected = d.log_prob_vjp(x, g, ["value", "loc", "scale"])
    for wrt in (["value", "loc", "scale"], ["scale"], ["loc"]):
        got = gpu.normal_log_prob_grads(x, loc, scale, g, wrt)
        for name in wrt:
            assert_close(got[name], expected[name], rtol=1e-5, atol=1e-6)
    p = dist.Normal(randn(16, 50), np.exp(randn(16, 50)), validate_args=False)
    q = dist.Normal(randn(16, 50), np.exp(randn(16, 50)), validate_args=False)
    g = randn(16, 50)
    assert_close(gpu.kl_normal_normal(p.loc, p.scale, q.loc, q.scale), dist.kl_divergence(p, q), rtol=1e-5, atol=1e-6)
    expected = dist.kl_divergence_vjp(p, q, g, ["loc", "scale"], ["loc", "scale"])
    got = gpu.kl_normal_normal_grads(p.loc, p.scale, q.loc, q.scale, g, ["loc", "scale"], ["loc", "scale"])
    for want, have in zip(expected, got):
        for name in want:
            assert_close(have[name], want[name], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("optim_cls, args", [
    (Adam, {"lr": 1e-2}),
    (Adam, {"lr": 1e-3, "betas": (0.8, 0.99), "weight_decay": 0.1, "eps": 1e-6}),
    (ClippedAdam, {"lr": 1e-2, "clip_norm": 0.5, "lrd": 0.99}),
    (ClippedAdam, {"lr": 1e-2, "clip_norm": 2.0, "weight_decay": 0.01, "centered_variance": True}),
])
def test_adam_through_the_registry_entry_follows_the_reference(optim_cls, args):
    params = {"w": randn(40, 30), "b": randn(30)}
    steps = [{k: randn(*a.shape, scale=3.0) for k, a in params.items()} for _ in range(5)]
    reference, expected = optim_cls(dict(args)), {k: v.copy() for k, v in params.items()}
    for grads in steps:
        reference.step(expected, grads)
    fused, got = optim_cls(dict(args)), {k: v.copy() for k, v in params.items()}
    for grads in steps:  # the registry's entry with gpu.py as its kernel module, as on a GPU
        work = []
        for name, param in got.items():
            hyper = fused.hyperparameters(name)
            state = fused.state.setdefault(name, fused._initial_state(param, hyper))
            work.append((param, grads[name], state, hyper))
        ENTRIES["adam_update_all"](gpu, work, fused.clipped, np.array(True))
    for name in params:
        assert_close(got[name], expected[name], rtol=1e-5, atol=1e-6)
        assert fused.state[name]["step"] == reference.state[name]["step"] == 5


def test_a_refused_adam_update_changes_nothing():
    param, grad = randn(10), randn(10)
    moment, second = np.zeros(10, F32), np.zeros(10, F32)
    kept = param.copy()
    settings = cpu_adam.adam_settings(lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, step=1)
    gpu.adam_update_many([kept], [grad], [moment], [second], [settings], np.array(False))
    assert np.array_equal(kept, param) and not moment.any() and not second.any()
