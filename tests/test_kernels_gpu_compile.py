"""The GPU kernels, checked without a GPU: compiled by NVRTC, their PTX read, their launches typed.

A CUDA kernel's numbers need a GPU (tests/test_kernels_gpu.py, skipped here; benchmarks/gpu_check.sh
runs it on one). What a CPU-only machine can check, this file does:
1. NVRTC compiles kernels/gpu_sources.SOURCE for sm_90 (PTX, and a cubin: ptxas runs too), and the
   PTX has one entry per kernel, with parameters of the declared types;
2. no float32 kernel computes in double precision (a literal without ``f`` would make it do so);
3. every entry point of kernels/gpu.py passes its kernel the declared number of arguments, of the
   declared kinds: float32 arrays for ``float*``, np.float32 for ``float``, np.int32 for ``int``,
   np.int64 for ``long long`` (CuPy passes a bare Python float as a double: garbage in a float);
and that the loaders fail with messages that say what is missing (no CuPy, no GPU, no Numba).
NVRTC comes from the `test` extra: cuda-bindings and nvidia-cuda-nvrtc (CUDA 13), no driver needed.
"""
import os
import re
import sys
import types

import numpy as np
import pytest

import minippl
from minippl import backend
from minippl.kernels import gpu, gpu_sources

ARCH = "90"  # Hopper (H100/H200): the GPU the device checks run on


def nvrtc_module():
    try:
        from cuda.bindings import nvrtc
    except ImportError as error:
        if os.environ.get("CI"):  # CI installs .[test], so a missing NVRTC there is a broken extra, not a skip
            raise
        pytest.skip(f"NVRTC bindings not installed ({error}): pip install -e '.[test]'")
    return nvrtc


def compile_source(source, target):
    """NVRTC output for ``source``: PTX text for target "compute_XX", cubin bytes for "sm_XX"."""
    nvrtc = nvrtc_module()

    def check(result):
        if result[0] != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            raise AssertionError(f"NVRTC: {result[0]!r}")
        return result[1:]

    (program,) = check(nvrtc.nvrtcCreateProgram(source.encode(), b"minippl_kernels.cu", 0, [], []))
    options = [f"--gpu-architecture={target}".encode()]
    (status,) = nvrtc.nvrtcCompileProgram(program, len(options), options)
    (size,) = check(nvrtc.nvrtcGetProgramLogSize(program))
    log = b" " * size
    nvrtc.nvrtcGetProgramLog(program, log)
    assert status == nvrtc.nvrtcResult.NVRTC_SUCCESS, log.decode(errors="replace")
    get_size, get = ((nvrtc.nvrtcGetPTXSize, nvrtc.nvrtcGetPTX) if target.startswith("compute")
                     else (nvrtc.nvrtcGetCUBINSize, nvrtc.nvrtcGetCUBIN))
    (size,) = check(get_size(program))
    output = b" " * size
    check(get(program, output) + (None,))
    nvrtc.nvrtcDestroyProgram(program)
    return output.rstrip(b"\0").decode() if target.startswith("compute") else output


def ptx_entries(ptx):
    """{kernel name: ([PTX parameter types], body)} from the PTX text."""
    entries = {}
    for match in re.finditer(r"\.entry (\w+)\(([^)]*)\)\s*\{(.*?)\n\}", ptx, re.S):
        entries[match.group(1)] = (re.findall(r"\.param \.(\w+) ", match.group(2)), match.group(3))
    return entries


def double_precision(body):
    """The double-precision instructions and registers in a PTX body (%f64 is a float register's name)."""
    return re.findall(r"\S*\.f64\b\S*|%fd\d+", body)


@pytest.fixture(scope="module")
def ptx():
    return compile_source(gpu_sources.SOURCE, f"compute_{ARCH}")


# ---------------------------------------------------------------- 1. it compiles, one entry per kernel
PTX_TYPE = {"const float*": "u64", "float*": "u64", "int*": "u64", "const bool*": "u64", "float": "f32", "int": "u32", "long long": "u64"}


def test_the_kernels_compile_for_sm90_to_ptx_and_to_a_cubin(ptx):
    assert f".target sm_{ARCH}" in ptx
    assert compile_source(gpu_sources.SOURCE, f"sm_{ARCH}")[:4] == b"\x7fELF"  # ptxas ran: a loadable binary


def test_each_kernel_is_one_ptx_entry_with_the_declared_parameters(ptx):
    entries = ptx_entries(ptx)
    assert sorted(entries) == sorted(gpu_sources.KERNELS)  # extern "C": the names gpu.py asks for
    for name, kernel in gpu_sources.KERNELS.items():
        assert entries[name][0] == [PTX_TYPE[ctype] for ctype, _ in kernel.params], name


# ---------------------------------------------------------------- 2. float32 stays float32
def test_no_kernel_computes_in_double_precision(ptx):
    for name, (_, body) in ptx_entries(ptx).items():
        assert not double_precision(body), f"{name} uses float64: {double_precision(body)[:5]}"


def test_the_double_precision_check_sees_a_literal_without_f():
    ptx = compile_source('extern "C" __global__ void tenth(float* x) { x[0] = 0.1 * x[0]; }', f"compute_{ARCH}")
    assert double_precision(ptx_entries(ptx)["tenth"][1])


# ---------------------------------------------------------------- 3. launches match the parameter lists
ARG_KIND = {"const float*": np.float32, "float*": np.float32, "int*": np.int32, "const bool*": np.bool_}  # array element types
SCALAR_KIND = {"float": np.float32, "int": np.int32, "long long": np.int64}


@pytest.fixture
def launches(monkeypatch):
    """Run gpu.py's entry points on NumPy arrays with the kernels replaced by a recorder."""
    recorded = []

    class Module:
        def get_function(self, name):
            return lambda grid, block, args: recorded.append((name, grid, block, args))

    monkeypatch.setattr(gpu, "_module", Module)
    monkeypatch.setattr(gpu, "_FUNCTIONS", {})
    return recorded


def test_every_launch_passes_its_kernel_the_declared_arguments(launches):
    rng = np.random.default_rng(0)
    x, y, g = (rng.standard_normal((3, 5)).astype(np.float32) for _ in range(3))
    p, scale = np.full((3, 5), 0.5, np.float32), np.ones((3, 5), np.float32)
    per_row = np.broadcast_to(rng.standard_normal((3, 1)).astype(np.float32), (3, 5))
    gpu.softplus_forward(x, 1.0, 20.0)
    gpu.sigmoid_forward(x)
    gpu.sigmoid_backward(y, g)
    gpu.sigmoid_backward(y, np.broadcast_to(np.float32(2.0), y.shape))
    gpu.exp_forward(x)
    gpu.tanh_backward(y, g)
    gpu.relu_backward(y, g)
    gpu.add_bias_(y.copy(), x[0])
    gpu.bias_grad(g)
    gpu.all_finite_many([x, y])
    for cotangent in (g, per_row):
        gpu.bernoulli_probs_grad(x, p, cotangent)
        gpu.bernoulli_logits_grad(x, y, cotangent)
    gpu.bernoulli_probs_log_prob(x, p)
    gpu.bernoulli_logits_log_prob(x, y)
    gpu.normal_rsample(x, scale, y)
    gpu.normal_log_prob(x, y, scale)
    gpu.normal_log_prob_grads(x, y, scale, g, ["loc"])
    gpu.normal_log_prob_grads(x, y, scale, g, ["value", "loc", "scale"])
    gpu.kl_normal_normal(x, scale, y, scale)
    gpu.kl_normal_normal_grads(x, scale, y, scale, g, ["scale"], ["loc", "scale"])
    gpu.adam_update(x.copy(), g, np.zeros_like(x), np.zeros_like(x), lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                    weight_decay=0.0, step=1)
    gpu.adam_update(x.copy(), g, np.zeros_like(x), np.zeros_like(x), lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                    weight_decay=0.1, step=3, clip=1.0, centered=True, clipped_adam=True)
    gpu.adam_update_many([x.copy()], [g], [np.zeros_like(x)], [np.zeros_like(x)],
                         [gpu.adam_settings(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, step=1)],
                         np.array(False))  # SVI(sync_every=k)'s flag: a 0-d bool array

    assert {name for name, *_ in launches} == set(gpu_sources.KERNELS)  # every kernel was launched
    for name, grid, block, args in launches:
        params = gpu_sources.KERNELS[name].params
        assert len(args) == len(params), f"{name}: {len(args)} arguments for {len(params)} parameters"
        for (ctype, pname), arg in zip(params, args):
            if ctype.endswith("*"):
                assert isinstance(arg, np.ndarray) and arg.dtype == ARG_KIND[ctype] and arg.flags.c_contiguous, \
                    f"{name}({pname}): {type(arg).__name__} {getattr(arg, 'dtype', '')}"
            else:
                assert type(arg) is SCALAR_KIND[ctype], f"{name}({pname}): {type(arg).__name__} for {ctype}"
        assert len(grid) == len(block) == 1 and 1 <= grid[0] <= gpu._MAX_BLOCKS and block[0] == gpu._THREADS


# ---------------------------------------------------------------- loading: errors that say what is missing
def fake_cupy(device_count):
    """A module that imports as ``cupy`` and reports ``device_count`` GPUs, or raises it if an exception."""
    error = type("CUDARuntimeError", (RuntimeError,), {})

    def count():
        if isinstance(device_count, str):
            raise error(device_count)
        return device_count
    runtime = types.SimpleNamespace(CUDARuntimeError=error, getDeviceCount=count)
    return types.SimpleNamespace(__version__="14.x", cuda=types.SimpleNamespace(runtime=runtime))


def test_check_device_names_what_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy raises ImportError
    with pytest.raises(RuntimeError, match=r"need CuPy.*minippl\[cuda12\].*minippl\[cuda13\]"):
        gpu.check_device()
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy("cudaErrorInsufficientDriver: driver too old"))
    with pytest.raises(RuntimeError, match=r"driver too old.*driver >= 525.*>= 580"):
        gpu.check_device()
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(0))
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        gpu.check_device()


def test_gpu_arrays_without_cupy_get_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    monkeypatch.setattr(backend, "_GPU_KERNELS", None)
    fake_cupy_array = type("ndarray", (), {"__module__": "cupy._core.core"})
    with pytest.raises(RuntimeError, match="CuPy.*pip install"):
        backend._kernels_for(fake_cupy_array())


def test_a_fused_backend_that_fails_to_load_is_never_silent(monkeypatch):
    def broken_numba():
        raise AttributeError("module 'numpy' has no attribute 'row_stack'")
    monkeypatch.setattr(backend, "_PLUGGED", (broken_numba,) + backend._PLUGGED[1:])
    with pytest.raises(ImportError, match="could not load the fused CPU kernels: AttributeError.*row_stack"):
        minippl.set_backend("numba")
    monkeypatch.setattr(backend, "_BACKEND", None)  # the first use picks the default: warns, then the reference
    with pytest.warns(RuntimeWarning, match="NumPy reference, not the fused kernels.*row_stack"):
        assert minippl.get_backend() == "numpy"
