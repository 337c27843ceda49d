"""Fused GPU kernels for CuPy arrays: the kernels of gpu_sources.py, compiled once and launched.

Teaches: how a CUDA kernel is run from Python. CuPy compiles gpu_sources.SOURCE with NVRTC on first
use (and keeps the binary in its on-disk cache), and each entry point below allocates its outputs,
then launches one kernel on CuPy's current stream: a grid of blocks of 256 threads, the arguments
in the order of the kernel's parameter list. Kernel arguments are passed by value and typed by
their NumPy dtype, so every scalar is wrapped (np.float32 for ``float``, np.int32 for ``int``,
np.int64 for ``long long``): a bare Python float would arrive as a double and be read as garbage.
tests/test_kernels_gpu_compile.py checks each launch against its parameter list without a GPU;
tests/test_kernels_gpu.py checks the numbers on one. Matrix products stay with cuBLAS through
CuPy. Entry points have the names and signatures of kernels/cpu.py. Builds on gpu_sources.py,
cpu.py (the same entry points) and cpu_adam.py (the settings rows).
"""
import numpy as np

from ..backend import array_module
from .cpu_adam import adam_settings  # the same settings rows on both devices
from .gpu_sources import KERNELS, SOURCE

F32, I32, I64 = np.float32, np.int32, np.int64
_THREADS = 256  # per block
_MAX_BLOCKS = 8192  # enough to fill an H200 (132 SMs x 2048 threads); the grid-stride loops cover the rest


def check_device():
    """Check that CuPy imports, that a CUDA GPU is there and that NVRTC compiles the kernels;
    return a line naming the GPU and its compute capability. Raises a RuntimeError saying what is
    missing and how to fix it."""
    try:
        import cupy
    except ImportError as error:
        raise RuntimeError(
            f"GPU arrays need CuPy ({error}). Install minippl's extra for your NVIDIA driver (nvidia-smi shows "
            f"its version): pip install 'minippl[cuda12]' for drivers >= 525, 'minippl[cuda13]' for drivers "
            f">= 580. Or keep the arrays in NumPy to run on the CPU.") from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except cupy.cuda.runtime.CUDARuntimeError as error:
        raise RuntimeError(
            f"CuPy {cupy.__version__} cannot use a GPU here ({error}). cudaErrorNoDevice / "
            f"cudaErrorInsufficientDriver: no NVIDIA driver, or one older than this CuPy's CUDA (CUDA 12 wheels "
            f"need driver >= 525, CUDA 13 wheels >= 580: install the extra that matches, minippl[cuda12] or "
            f"minippl[cuda13]). Or keep the arrays in NumPy to run on the CPU.") from None
    if count == 0:
        raise RuntimeError("CuPy sees no CUDA GPU (check nvidia-smi and CUDA_VISIBLE_DEVICES); keep the arrays in "
                           "NumPy to run on the CPU.")
    device = cupy.cuda.Device()
    props = cupy.cuda.runtime.getDeviceProperties(device.id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    try:
        _module().get_function(next(iter(KERNELS)))  # compiles SOURCE now: a missing NVRTC shows here
    except Exception as error:  # noqa: BLE001 - CuPy reports a missing libnvrtc in several types
        raise RuntimeError(
            f"CuPy could not compile minippl's GPU kernels with NVRTC ({type(error).__name__}: {error}). The "
            f"extras minippl[cuda12] / minippl[cuda13] install NVRTC from PyPI (cuda-toolkit[nvrtc]); with "
            f"CuPy alone, install the CUDA toolkit's NVRTC for its CUDA version.") from None
    return (f"GPU {device.id}: {name}, compute capability {props['major']}.{props['minor']}, CuPy {cupy.__version__}, "
            f"CUDA runtime {cupy.cuda.runtime.runtimeGetVersion()}, driver {cupy.cuda.runtime.driverGetVersion()}")


_MODULE, _FUNCTIONS = None, {}


def _module():
    """gpu_sources.SOURCE as one CuPy RawModule: compiled once, for the current GPU's architecture."""
    global _MODULE
    if _MODULE is None:
        import cupy

        _MODULE = cupy.RawModule(code=SOURCE)
    return _MODULE


def _launch(name, n, *args):
    """Run kernel ``name`` over indices 0..n-1 on CuPy's current stream; ``args`` as its parameter
    list in gpu_sources.py, minus the final ``long long n`` (appended here)."""
    function = _FUNCTIONS.get(name)
    if function is None:
        function = _FUNCTIONS[name] = _module().get_function(name)
    blocks = min(max(1, -(-n // _THREADS)), _MAX_BLOCKS)
    function((blocks,), (_THREADS,), (*args, I64(n)))


# ================================================================ entry points (as in kernels/cpu.py)
def _flat(a):
    return a.reshape(-1)


def _contiguous_like(g, like):
    """A cotangent of ``like``'s shape as a C-contiguous array (a broadcast one is materialised)."""
    xp = array_module(like)
    return xp.ascontiguousarray(g if g.shape == like.shape else xp.broadcast_to(g, like.shape))


def _row_cotangent(g, shape):
    """(g flat, per_row): one value per row when g is constant along the last axis (Independent's
    broadcast: stride 0), else every element."""
    xp = array_module(g)
    g = g if g.shape == tuple(shape) else xp.broadcast_to(g, shape)
    if len(shape) and g.strides[-1] == 0:
        return xp.ascontiguousarray(g[..., 0]).reshape(-1), I32(1)
    return xp.ascontiguousarray(g).reshape(-1), I32(0)


def _cols(shape):
    return I64(shape[-1] if len(shape) else 1)


def softplus_forward(x, beta=1.0, threshold=20.0):
    """(softplus output, its slope dy/dx): backward is then ``grad_y * slope``."""
    xp = array_module(x)
    out, slope = xp.empty_like(x), xp.empty_like(x)
    _launch("softplus_kernel", x.size, x, F32(beta), F32(threshold), out, slope)
    return out, slope


def sigmoid_forward(x):
    out = array_module(x).empty_like(x)
    _launch("sigmoid_kernel", x.size, x, out)
    return out


def sigmoid_backward(y, grad_y):
    out = array_module(y).empty_like(y)
    _launch("sigmoid_backward_kernel", y.size, y, _contiguous_like(grad_y, y), out)
    return out


def exp_forward(x):
    out = array_module(x).empty_like(x)
    _launch("exp_kernel", x.size, x, out)
    return out


def tanh_backward(y, grad_y):
    out = array_module(y).empty_like(y)
    _launch("tanh_backward_kernel", y.size, y, _contiguous_like(grad_y, y), out)
    return out


def relu_backward(y, grad_y):
    out = array_module(y).empty_like(y)
    _launch("relu_backward_kernel", y.size, y, _contiguous_like(grad_y, y), out)
    return out


def add_bias_(y, bias):
    """y += bias over the last axis, in place (y C-contiguous float32, bias of shape (y.shape[-1],))."""
    _launch("add_bias_kernel", y.size, y, bias, _cols(y.shape))
    return y


def bias_grad(g):
    """The gradient of a bias added along the last axis: g summed over every other axis."""
    xp = array_module(g)
    cols = g.shape[-1]
    out = xp.empty(cols, dtype=g.dtype)
    _launch("column_sum_kernel", cols, xp.ascontiguousarray(g), out, I64(g.size // cols if cols else 0))
    return out


def nonfinite_flag(arrays):
    """A 1-element int32 array on the GPU, 1 if any element of ``arrays`` is NaN or inf, else 0: one
    launch per array and no wait for the GPU (reading the flag is what waits)."""
    xp = array_module(arrays[0])
    flag = xp.zeros(1, dtype=I32)
    for a in arrays:
        _launch("flag_nonfinite_kernel", a.size, xp.ascontiguousarray(a), flag)
    return flag


def all_finite_many(arrays):
    """True if no element of any of ``arrays`` is NaN or inf (as kernels/cpu.py); waits for the GPU once."""
    return not int(nonfinite_flag(arrays)[0])


_EPS = F32(np.finfo(np.float32).eps)  # probs are clamped to [eps, 1 - eps], as torch does


def bernoulli_probs_log_prob(x, probs):
    out = array_module(probs).empty_like(probs)
    _launch("bernoulli_probs_log_prob_kernel", probs.size, x, probs, _EPS, out)
    return out


def bernoulli_probs_grad(x, probs, grad_log_prob):
    out = array_module(probs).empty_like(probs)
    g, per_row = _row_cotangent(grad_log_prob, probs.shape)
    _launch("bernoulli_probs_grad_kernel", probs.size, x, probs, g, per_row, _cols(probs.shape), _EPS, out)
    return out


def bernoulli_logits_log_prob(x, logits):
    out = array_module(logits).empty_like(logits)
    _launch("bernoulli_logits_log_prob_kernel", logits.size, x, logits, out)
    return out


def bernoulli_logits_grad(x, logits, grad_log_prob):
    out = array_module(logits).empty_like(logits)
    g, per_row = _row_cotangent(grad_log_prob, logits.shape)
    _launch("bernoulli_logits_grad_kernel", logits.size, x, logits, g, per_row, _cols(logits.shape), out)
    return out


def normal_rsample(loc, scale, noise):
    out = array_module(loc).empty_like(loc)
    _launch("normal_rsample_kernel", loc.size, loc, scale, noise, out)
    return out


def normal_log_prob(x, loc, scale):
    out = array_module(loc).empty_like(loc)
    _launch("normal_log_prob_kernel", loc.size, x, loc, scale, out)
    return out


def _outputs(like, wanted):
    """One output per flag: an array like ``like`` if wanted, else a 1-element placeholder the kernel never writes."""
    xp = array_module(like)
    return [xp.empty_like(like) if w else xp.empty(1, dtype=like.dtype) for w in wanted]


def normal_log_prob_grads(x, loc, scale, grad_log_prob, wrt):
    """{name: gradient} for the names in ``wrt`` among "value", "loc", "scale", in one pass."""
    names = ("value", "loc", "scale")
    want = [name in wrt for name in names]
    outs = _outputs(loc, want)
    _launch("normal_grads_kernel", loc.size, x, loc, scale, _contiguous_like(grad_log_prob, loc), *outs,
            *[I32(w) for w in want])
    return {name: out for name, out, w in zip(names, outs, want) if w}


def kl_normal_normal(loc_p, scale_p, loc_q, scale_q):
    out = array_module(loc_p).empty_like(loc_p)
    _launch("kl_normal_normal_kernel", loc_p.size, loc_p, scale_p, loc_q, scale_q, out)
    return out


def kl_normal_normal_grads(loc_p, scale_p, loc_q, scale_q, grad_kl, wrt_p, wrt_q):
    """({name: grad} for p, {name: grad} for q), names among "loc", "scale"."""
    want = ["loc" in wrt_p, "scale" in wrt_p, "loc" in wrt_q, "scale" in wrt_q]
    outs = _outputs(loc_p, want)
    _launch("kl_normal_normal_grads_kernel", loc_p.size, loc_p, scale_p, loc_q, scale_q,
            _contiguous_like(grad_kl, loc_p), *outs, *[I32(w) for w in want])
    grads_p = {name: outs[i] for i, name in enumerate(("loc", "scale")) if want[i]}
    grads_q = {name: outs[2 + i] for i, name in enumerate(("loc", "scale")) if want[2 + i]}
    return grads_p, grads_q


ADAM_READS_FLAG = True  # adam_update_many takes SVI's device flag (registry.py asks)


def adam_update_many(params, grads, exp_avgs, exp_avg_sqs, settings, ok=None):
    """One step on every parameter, in place: one launch per array, its settings passed by value (no
    copy to the GPU, no wait). ``settings``: one ``adam_settings(...)`` row per parameter. ``ok``, a
    boolean flag on the GPU: each kernel reads it and changes nothing where it is False."""
    if not all(a.flags.c_contiguous for arrays in (params, exp_avgs, exp_avg_sqs) for a in arrays):
        raise ValueError("adam_update_many updates in place: params and moments must be C-contiguous")
    xp = array_module(params[0])
    ok = xp.ones(1, dtype=bool) if ok is None else xp.ascontiguousarray(ok, dtype=bool).reshape(1)
    for param, grad, exp_avg, exp_avg_sq, row in zip(params, grads, exp_avgs, exp_avg_sqs, settings):
        *floats, centered = row
        _launch("adam_kernel", param.size, param, xp.ascontiguousarray(grad), exp_avg, exp_avg_sq, ok,
                *[F32(value) for value in floats], I32(centered))


def adam_update(param, grad, exp_avg, exp_avg_sq, **hyper):
    """``adam_update_many`` for one parameter; ``hyper`` as for ``adam_settings``."""
    adam_update_many([param], [grad], [exp_avg], [exp_avg_sq], [adam_settings(**hyper)])
