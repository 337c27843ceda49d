"""Fused GPU kernels (numba.cuda) launched on CuPy arrays: the same math as kernels/cpu.py.

Teaches: one CUDA thread per element, a grid-stride loop, and why numba.cuda rather than CuPy
RawKernels: these kernels are Python functions that Numba's CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``) runs on a CPU, so CI tests every one against the NumPy reference
without a GPU (tests/test_kernels_gpu_sim.py); a RawKernel is a CUDA C string only a real GPU runs.
CuPy arrays go straight in (they export ``__cuda_array_interface__``); matrix products stay with
cuBLAS through CuPy. Entry points have the names and signatures of kernels/cpu.py. Builds on
cpu.py (the same math) and cpu_adam.py (the settings rows).
"""
import math

import numpy as np
from numba import config, cuda

from ..backend import array_module
from .cpu_adam import adam_settings  # the same rows on both devices (plain Python)

F32 = np.float32
_THREADS = 256  # per block; the grid-stride loops below cover any size with a bounded grid


def check_device():
    """Raise a RuntimeError that says what is missing when CuPy or a CUDA GPU is absent."""
    try:
        import cupy  # noqa: F401
    except ImportError as error:
        raise RuntimeError(
            f"GPU arrays need CuPy ({error}): install it with pip install 'minippl[gpu]' "
            f"(cupy-cuda12x) on a machine with an NVIDIA GPU, or keep the arrays in NumPy (CPU).") from None
    if not cuda.is_available():
        raise RuntimeError(
            "minippl's GPU kernels need a CUDA GPU that numba.cuda can use, and none was found "
            "(check nvidia-smi and the CUDA driver); keep the arrays in NumPy to train on the CPU, "
            "or call minippl.set_backend('numpy') to run the NumPy-syntax reference on CuPy arrays.")


def _launch(kernel, size, *args):
    if config.ENABLE_CUDASIM:  # the simulator copies every array argument back after the launch
        args = [a.copy() if isinstance(a, np.ndarray) and not a.flags.writeable else a for a in args]
    threads = min(_THREADS, max(32, size))  # a small array gets one small block (cheap in the simulator too)
    blocks = max(1, min(-(-size // threads), 4096))
    kernel[blocks, threads](*args)


# ---------------------------------------------------------------- device functions
@cuda.jit(device=True, inline=True)
def _sigmoid_and_softplus(z):
    # e = exp(-|z|) <= 1 never overflows; sigmoid = (1 or e) / (1 + e), softplus = max(z, 0) + log1p(e)
    e = math.exp(-abs(z))
    sig = (F32(1.0) if z >= F32(0.0) else e) / (F32(1.0) + e)
    return sig, max(z, F32(0.0)) + math.log1p(e)


@cuda.jit(device=True, inline=True)
def _clamp_probs(p, eps):
    # clip to [eps, 1 - eps] with comparisons, so NaN passes through as NaN
    return eps if p < eps else (F32(1.0) - eps if p > F32(1.0) - eps else p)


# ---------------------------------------------------------------- activations
@cuda.jit
def _softplus(x, beta, threshold, out, slope):
    # y = softplus(beta x) / beta (x above the threshold); slope = sigmoid(beta x) (1 above)
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        z = x[i] * beta
        sig, soft = _sigmoid_and_softplus(z)
        above = z > threshold
        out[i] = x[i] if above else soft / beta
        slope[i] = F32(1.0) if above else sig


@cuda.jit
def _sigmoid(x, out):
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        e = math.exp(-abs(x[i]))
        out[i] = (F32(1.0) if x[i] >= F32(0.0) else e) / (F32(1.0) + e)


@cuda.jit
def _sigmoid_backward(y, grad_y, out):
    # d sigmoid / dx = s (1 - s)
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        out[i] = grad_y[i] * ((F32(1.0) - y[i]) * y[i])


@cuda.jit
def _exp(x, out):
    # exp(89) already overflows float32 to inf; the cap keeps Python's math.exp (the simulator's)
    # from raising OverflowError, and the comparison lets NaN through
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        out[i] = math.exp(x[i] if not x[i] > F32(89.0) else F32(89.0))


@cuda.jit
def _tanh_backward(y, grad_y, out):
    # d tanh / dx = 1 - t^2
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        out[i] = grad_y[i] * (F32(1.0) - y[i] * y[i])


@cuda.jit
def _relu_backward(y, grad_y, out):
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        out[i] = grad_y[i] * (F32(1.0) if y[i] > F32(0.0) else F32(0.0))


@cuda.jit
def _add_bias(y, bias, cols):
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        y[i] += bias[i % cols]


@cuda.jit
def _column_sum(g, out):
    # one thread per column: out[c] = sum_r g[r, c] (reads are coalesced across the threads)
    rows, cols = g.shape
    for c in range(cuda.grid(1), cols, cuda.gridsize(1)):
        acc = F32(0.0)
        for r in range(rows):
            acc += g[r, c]
        out[c] = acc


# ---------------------------------------------------------------- Bernoulli (x, p: rows x cols)
@cuda.jit
def _bernoulli_probs_log_prob(x, p, eps, out):
    # x log p + (1 - x) log(1 - p), p clamped to [eps, 1 - eps]
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        pc = _clamp_probs(p[i], eps)
        out[i] = x[i] * math.log(pc) + (F32(1.0) - x[i]) * math.log1p(-pc)


@cuda.jit
def _bernoulli_probs_grad(x, p, g, cols, eps, out):
    # x / p - (1 - x) / (1 - p); 0 where the clamp is active. g: one value per row, or per element
    per_row = g.size * cols == x.size and cols > 1
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        gi = g[i // cols] if per_row else g[i]
        pc = _clamp_probs(p[i], eps)
        d = gi * (x[i] / pc - (F32(1.0) - x[i]) / (F32(1.0) - pc))
        out[i] = d if pc == p[i] else F32(0.0)


@cuda.jit
def _bernoulli_logits_log_prob(x, logits, out):
    # x l - softplus(l)
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        _, soft = _sigmoid_and_softplus(logits[i])
        out[i] = x[i] * logits[i] - soft


@cuda.jit
def _bernoulli_logits_grad(x, logits, g, cols, out):
    # x - sigmoid(l)
    per_row = g.size * cols == x.size and cols > 1
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        gi = g[i // cols] if per_row else g[i]
        sig, _ = _sigmoid_and_softplus(logits[i])
        out[i] = gi * (x[i] - sig)


# ---------------------------------------------------------------- Normal and KL
@cuda.jit
def _normal_rsample(loc, scale, noise, out):
    for i in range(cuda.grid(1), loc.size, cuda.gridsize(1)):
        out[i] = loc[i] + scale[i] * noise[i]


@cuda.jit
def _normal_log_prob(x, loc, scale, half_log_2pi, out):
    # -z^2 / 2 - log(scale) - log(2 pi) / 2
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        z = (x[i] - loc[i]) / scale[i]
        out[i] = F32(-0.5) * z * z - math.log(scale[i]) - half_log_2pi


@cuda.jit
def _normal_grads(x, loc, scale, g, grad_value, grad_loc, grad_scale, want_value, want_loc, want_scale):
    # d/dx = -(x - loc) / scale^2 = -d/dloc ; d/dscale = (z^2 - 1) / scale
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        z = (x[i] - loc[i]) / scale[i]
        g_residual = g[i] * z / scale[i]
        if want_value:
            grad_value[i] = -g_residual
        if want_loc:
            grad_loc[i] = g_residual
        if want_scale:
            grad_scale[i] = g[i] * (z * z - F32(1.0)) / scale[i]


@cuda.jit
def _kl_normal_normal(loc_p, scale_p, loc_q, scale_q, out):
    # (r + t - 1 - log r) / 2, r = (sp / sq)^2, t = ((mp - mq) / sq)^2
    for i in range(cuda.grid(1), loc_p.size, cuda.gridsize(1)):
        ratio = scale_p[i] / scale_q[i]
        var_ratio = ratio * ratio
        d = (loc_p[i] - loc_q[i]) / scale_q[i]
        out[i] = F32(0.5) * (var_ratio + d * d - F32(1.0) - math.log(var_ratio))


@cuda.jit
def _kl_normal_normal_grads(loc_p, scale_p, loc_q, scale_q, g, grad_loc_p, grad_scale_p, grad_loc_q, grad_scale_q,
                            want_loc_p, want_scale_p, want_loc_q, want_scale_q):
    for i in range(cuda.grid(1), loc_p.size, cuda.gridsize(1)):
        var_q = scale_q[i] * scale_q[i]
        diff = loc_p[i] - loc_q[i]
        if want_loc_p:
            grad_loc_p[i] = g[i] * (diff / var_q)
        if want_loc_q:
            grad_loc_q[i] = -g[i] * (diff / var_q)
        if want_scale_p:
            grad_scale_p[i] = g[i] * (scale_p[i] / var_q - F32(1.0) / scale_p[i])
        if want_scale_q:
            grad_scale_q[i] = g[i] * (F32(1.0) - (scale_p[i] * scale_p[i] + diff * diff) / var_q) / scale_q[i]


# ---------------------------------------------------------------- Adam / ClippedAdam
@cuda.jit
def _adam(param, grad, exp_avg, exp_avg_sq, beta1, beta2, eps, weight_decay, step_size, sqrt_bc2, clip, centered):
    # the update of kernels/cpu.py _adam (sqrt_bc2 = 1 for ClippedAdam, whose eps is inside)
    for i in range(cuda.grid(1), param.size, cuda.gridsize(1)):
        g = grad[i]
        g = -clip if g < -clip else (clip if g > clip else g)
        g = g + weight_decay * param[i]
        m = exp_avg[i] * beta1 + g * (F32(1.0) - beta1)
        d = g - m if centered else g
        v = exp_avg_sq[i] * beta2 + (d * d) * (F32(1.0) - beta2)
        exp_avg[i] = m
        exp_avg_sq[i] = v
        param[i] -= step_size * (m / (math.sqrt(v) / sqrt_bc2 + eps))


# ================================================================ entry points (as in kernels/cpu.py)
def _flat(a):
    return a.reshape(-1)


def _contiguous_like(g, like):
    """A cotangent of ``like``'s shape as a C-contiguous array (a broadcast one is materialised)."""
    xp = array_module(like)
    return xp.ascontiguousarray(g if g.shape == like.shape else xp.broadcast_to(g, like.shape))


def _per_row_or_full(g, shape):
    """The cotangent as one value per row when it is constant along the last axis, else in full."""
    xp = array_module(g)
    g = g if g.shape == tuple(shape) else xp.broadcast_to(g, shape)
    if len(shape) and g.strides[-1] == 0:
        return xp.ascontiguousarray(g[..., 0]).reshape(-1)
    return xp.ascontiguousarray(g).reshape(-1)


def _cols(shape):
    return shape[-1] if len(shape) else 1


def softplus_forward(x, beta=1.0, threshold=20.0):
    xp = array_module(x)
    out, slope = xp.empty_like(x), xp.empty_like(x)
    _launch(_softplus, x.size, _flat(x), F32(beta), F32(threshold), _flat(out), _flat(slope))
    return out, slope


def sigmoid_forward(x):
    out = array_module(x).empty_like(x)
    _launch(_sigmoid, x.size, _flat(x), _flat(out))
    return out


def sigmoid_backward(y, grad_y):
    out = array_module(y).empty_like(y)
    _launch(_sigmoid_backward, y.size, _flat(y), _flat(_contiguous_like(grad_y, y)), _flat(out))
    return out


def exp_forward(x):
    out = array_module(x).empty_like(x)
    _launch(_exp, x.size, _flat(x), _flat(out))
    return out


def tanh_backward(y, grad_y):
    out = array_module(y).empty_like(y)
    _launch(_tanh_backward, y.size, _flat(y), _flat(_contiguous_like(grad_y, y)), _flat(out))
    return out


def relu_backward(y, grad_y):
    out = array_module(y).empty_like(y)
    _launch(_relu_backward, y.size, _flat(y), _flat(_contiguous_like(grad_y, y)), _flat(out))
    return out


def add_bias_(y, bias):
    _launch(_add_bias, y.size, _flat(y), bias, _cols(y.shape))
    return y


def bias_grad(g):
    xp = array_module(g)
    out = xp.empty(g.shape[-1], dtype=g.dtype)
    _launch(_column_sum, g.shape[-1], xp.ascontiguousarray(g).reshape(-1, g.shape[-1]), out)
    return out


_EPS = float(np.finfo(np.float32).eps)


def bernoulli_probs_log_prob(x, probs):
    out = array_module(probs).empty_like(probs)
    _launch(_bernoulli_probs_log_prob, probs.size, _flat(x), _flat(probs), F32(_EPS), _flat(out))
    return out


def bernoulli_probs_grad(x, probs, grad_log_prob):
    out = array_module(probs).empty_like(probs)
    g = _per_row_or_full(grad_log_prob, probs.shape)
    _launch(_bernoulli_probs_grad, probs.size, _flat(x), _flat(probs), g, _cols(probs.shape), F32(_EPS), _flat(out))
    return out


def bernoulli_logits_log_prob(x, logits):
    out = array_module(logits).empty_like(logits)
    _launch(_bernoulli_logits_log_prob, logits.size, _flat(x), _flat(logits), _flat(out))
    return out


def bernoulli_logits_grad(x, logits, grad_log_prob):
    out = array_module(logits).empty_like(logits)
    g = _per_row_or_full(grad_log_prob, logits.shape)
    _launch(_bernoulli_logits_grad, logits.size, _flat(x), _flat(logits), g, _cols(logits.shape), _flat(out))
    return out


def normal_rsample(loc, scale, noise):
    out = array_module(loc).empty_like(loc)
    _launch(_normal_rsample, loc.size, _flat(loc), _flat(scale), _flat(noise), _flat(out))
    return out


def normal_log_prob(x, loc, scale):
    out = array_module(loc).empty_like(loc)
    _launch(_normal_log_prob, loc.size, _flat(x), _flat(loc), _flat(scale), F32(0.5 * math.log(2 * math.pi)),
            _flat(out))
    return out


def normal_log_prob_grads(x, loc, scale, grad_log_prob, wrt):
    xp = array_module(loc)
    g = _contiguous_like(grad_log_prob, loc)
    out = {name: xp.empty_like(loc) if name in wrt else xp.empty(1, dtype=loc.dtype)
           for name in ("value", "loc", "scale")}
    _launch(_normal_grads, loc.size, _flat(x), _flat(loc), _flat(scale), _flat(g), _flat(out["value"]),
            _flat(out["loc"]), _flat(out["scale"]), "value" in wrt, "loc" in wrt, "scale" in wrt)
    return {name: out[name] for name in wrt}


def kl_normal_normal(loc_p, scale_p, loc_q, scale_q):
    out = array_module(loc_p).empty_like(loc_p)
    _launch(_kl_normal_normal, loc_p.size, _flat(loc_p), _flat(scale_p), _flat(loc_q), _flat(scale_q), _flat(out))
    return out


def kl_normal_normal_grads(loc_p, scale_p, loc_q, scale_q, grad_kl, wrt_p, wrt_q):
    xp = array_module(loc_p)
    g = _contiguous_like(grad_kl, loc_p)
    want = ("loc" in wrt_p, "scale" in wrt_p, "loc" in wrt_q, "scale" in wrt_q)
    outs = [xp.empty_like(loc_p) if w else xp.empty(1, dtype=loc_p.dtype) for w in want]
    _launch(_kl_normal_normal_grads, loc_p.size, _flat(loc_p), _flat(scale_p), _flat(loc_q), _flat(scale_q),
            _flat(g), *[_flat(o) for o in outs], *want)
    grads_p = {name: outs[i] for i, name in enumerate(("loc", "scale")) if want[i]}
    grads_q = {name: outs[2 + i] for i, name in enumerate(("loc", "scale")) if want[2 + i]}
    return grads_p, grads_q


def adam_update_many(params, grads, exp_avgs, exp_avg_sqs, settings):
    """One launch per parameter array; ``settings`` rows as from ``adam_settings`` (kernels/cpu.py)."""
    for param, grad, exp_avg, exp_avg_sq, row in zip(params, grads, exp_avgs, exp_avg_sqs, settings):
        beta1, beta2, eps, weight_decay, step_size, sqrt_bc2, clip, centered = row
        grad = array_module(param).ascontiguousarray(grad)
        _launch(_adam, param.size, _flat(param), _flat(grad), _flat(exp_avg), _flat(exp_avg_sq), F32(beta1),
                F32(beta2), F32(eps), F32(weight_decay), F32(step_size), F32(sqrt_bc2), F32(clip), bool(centered))


def adam_update(param, grad, exp_avg, exp_avg_sq, **hyper):
    adam_update_many([param], [grad], [exp_avg], [exp_avg_sq], [adam_settings(**hyper)])
