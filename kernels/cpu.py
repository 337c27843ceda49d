"""Fused CPU kernels (Numba): the reference NumPy math of minippl, one pass over memory each.

Teaches: when fusing pays on a CPU. Each kernel reads its inputs once and writes its outputs
once, with exp and log from cpu_math.py (NumPy's SIMD ufuncs would beat Numba's own scalar ones).
Kernels are serial: BLAS owns both cores for the matrix products, and splitting a pass over a
second thread measured no faster here (OpenBLAS's idle threads keep spinning on that core).
The Adam update lives in cpu_adam.py. The teaching files reach these only through registry.py
(the one dispatch point). Inputs: float32, C-contiguous arrays of equal shapes. Builds on
cpu_math.py and cpu_adam.py.
"""
import math

import numpy as np
from numba import njit

from .cpu_adam import ADAM_SETTINGS, adam_many_kernel, adam_settings  # noqa: F401  (adam_settings: callers' API)
from .cpu_math import (F32, JIT as _JIT, bits_from_float, expf, log1p_given, log_normal_range, logf,
                       sigmoid_and_softplus)


# ---------------------------------------------------------------- activations (flat 1-d arrays)
@njit(**_JIT)
def softplus_kernel(x, beta, threshold, out, slope):
    # y = softplus(beta x) / beta, and y = x where beta x > threshold (linear there, as torch)
    # slope = dy/dx = sigmoid(beta x), 1 above the threshold: kept for backward
    b, limit = F32(beta), F32(threshold)
    inv_b = F32(1.0) / b  # a multiply per element instead of a divide (exact for the usual beta = 1)
    for i in range(x.size):
        z = x[i] * b
        sig, soft = sigmoid_and_softplus(z)
        above = z > limit
        out[i] = x[i] if above else soft * inv_b
        slope[i] = F32(1.0) if above else sig


@njit(**_JIT)
def sigmoid_kernel(x, out):
    # sigmoid(x) = (1 or e) / (1 + e), e = exp(-|x|)
    for i in range(x.size):
        e = expf(-abs(x[i]))
        out[i] = (F32(1.0) if x[i] >= F32(0.0) else e) / (F32(1.0) + e)


@njit(**_JIT)
def sigmoid_backward_kernel(y, grad_y, out):
    # d sigmoid / dx = s (1 - s), s the output
    for i in range(y.size):
        out[i] = grad_y[i] * ((F32(1.0) - y[i]) * y[i])


@njit(**_JIT)
def exp_kernel(x, out):
    for i in range(x.size):
        out[i] = expf(x[i])


@njit(**_JIT)
def tanh_backward_kernel(y, grad_y, out):
    # d tanh / dx = 1 - t^2, t the output
    for i in range(y.size):
        out[i] = grad_y[i] * (F32(1.0) - y[i] * y[i])


@njit(**_JIT)
def relu_backward_kernel(y, grad_y, out):
    # d relu / dx = 1 where y > 0, else 0 (a product, so a NaN or inf cotangent stays visible)
    for i in range(y.size):
        out[i] = grad_y[i] * (F32(1.0) if y[i] > F32(0.0) else F32(0.0))


@njit(**_JIT)
def add_bias_kernel(y, bias):
    # y[r, :] += bias, in place (y is (rows, cols) C-contiguous)
    rows, cols = y.shape
    for r in range(rows):
        for c in range(cols):
            y[r, c] += bias[c]


@njit(**_JIT)
def column_sum_kernel(g, out):
    # out[c] = sum_r g[r, c]: the bias gradient. Rows are added one after another (a vectorised
    # row pass each), not in NumPy's pairwise order: equal up to float32 rounding.
    rows, cols = g.shape
    acc = np.zeros(cols, dtype=np.float32)
    for r in range(rows):
        for c in range(cols):
            acc[c] += g[r, c]
    out[:] = acc


@njit(**_JIT)
def all_finite_many_kernel(arrays):
    # a float32 is NaN or inf exactly when its 8 exponent bits are all ones; OR-ing an integer
    # flag over the array vectorises (a float sum would not: its order is fixed without fastmath)
    for k in range(len(arrays)):
        a = arrays[k]
        bad = 0
        for i in range(a.size):
            bad |= (bits_from_float(a[i]) & 0x7F800000) == 0x7F800000
        if bad:
            return False
    return True


# ---------------------------------------------------------------- Bernoulli (2-d: rows, cols)
# A log-prob cotangent usually arrives as one number per row (Independent broadcasts it over
# the event dim): ``g`` has shape (rows, 1) or (rows, cols).
@njit(inline="always", **_JIT)
def _clamp_probs(p, eps):
    # clip to [eps, 1 - eps] written with comparisons, so NaN passes through as NaN
    return eps if p < eps else (F32(1.0) - eps if p > F32(1.0) - eps else p)


@njit(**_JIT)
def bernoulli_probs_log_prob_kernel(x, p, eps, out):
    # log p(x | p) = x log p + (1 - x) log(1 - p), p clamped to [eps, 1 - eps]
    e = F32(eps)
    rows, cols = x.shape
    for r in range(rows):
        for c in range(cols):
            pc = _clamp_probs(p[r, c], e)
            u = F32(1.0) - pc  # in [eps, 1 - eps]: log1p(-pc) from log(u) plus the rounding correction
            log1m = log1p_given(-pc, u, F32(1.0) / u)
            out[r, c] = x[r, c] * log_normal_range(pc) + (F32(1.0) - x[r, c]) * log1m


@njit(**_JIT)
def bernoulli_probs_grad_kernel(x, p, g, eps, out):
    # d/dp log p(x | p) = x / p - (1 - x) / (1 - p); 0 where the clamp is active
    e = F32(eps)
    rows, cols = x.shape
    per_row = g.shape[1] == 1
    for r in range(rows):
        for c in range(cols):
            gi = g[r, 0] if per_row else g[r, c]
            pi = p[r, c]
            pc = _clamp_probs(pi, e)
            d = gi * (x[r, c] / pc - (F32(1.0) - x[r, c]) / (F32(1.0) - pc))
            out[r, c] = d if pc == pi else F32(0.0)


@njit(**_JIT)
def bernoulli_logits_log_prob_kernel(x, logits, out):
    # log p(x | l) = x l - softplus(l)
    rows, cols = x.shape
    for r in range(rows):
        for c in range(cols):
            _, soft = sigmoid_and_softplus(logits[r, c])
            out[r, c] = x[r, c] * logits[r, c] - soft


@njit(**_JIT)
def bernoulli_logits_grad_kernel(x, logits, g, out):
    # d/dl log p(x | l) = x - sigmoid(l)
    rows, cols = x.shape
    per_row = g.shape[1] == 1
    for r in range(rows):
        for c in range(cols):
            gi = g[r, 0] if per_row else g[r, c]
            sig, _ = sigmoid_and_softplus(logits[r, c])
            out[r, c] = gi * (x[r, c] - sig)


# ---------------------------------------------------------------- Normal (flat 1-d arrays)
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


@njit(**_JIT)
def normal_rsample_kernel(loc, scale, noise, out):
    # value = loc + scale * eps
    for i in range(loc.size):
        out[i] = loc[i] + scale[i] * noise[i]


@njit(**_JIT)
def normal_log_prob_kernel(x, loc, scale, out):
    # log N(x | loc, scale) = -z^2 / 2 - log(scale) - log(2 pi) / 2, z = (x - loc) / scale
    half_log_2pi = F32(_HALF_LOG_2PI)
    for i in range(x.size):
        z = (x[i] - loc[i]) / scale[i]
        out[i] = F32(-0.5) * z * z - logf(scale[i]) - half_log_2pi


@njit(**_JIT)
def normal_grads_kernel(x, loc, scale, g, grad_value, grad_loc, grad_scale, want_value, want_loc, want_scale):
    # d/dx = -(x - loc) / scale^2 ; d/dloc = (x - loc) / scale^2 ; d/dscale = (z^2 - 1) / scale
    for i in range(x.size):
        z = (x[i] - loc[i]) / scale[i]
        g_residual = g[i] * z / scale[i]
        if want_value:
            grad_value[i] = -g_residual
        if want_loc:
            grad_loc[i] = g_residual
        if want_scale:
            grad_scale[i] = g[i] * (z * z - F32(1.0)) / scale[i]


@njit(**_JIT)
def kl_normal_normal_kernel(loc_p, scale_p, loc_q, scale_q, out):
    # KL(p || q) = (r + t - 1 - log r) / 2, r = (sp / sq)^2, t = ((mp - mq) / sq)^2
    for i in range(loc_p.size):
        ratio = scale_p[i] / scale_q[i]
        var_ratio = ratio * ratio
        d = (loc_p[i] - loc_q[i]) / scale_q[i]
        out[i] = F32(0.5) * (var_ratio + d * d - F32(1.0) - logf(var_ratio))


@njit(**_JIT)
def kl_normal_normal_grads_kernel(loc_p, scale_p, loc_q, scale_q, g, grad_loc_p, grad_scale_p, grad_loc_q,
                                  grad_scale_q, want):
    # d/dmp = (mp - mq) / sq^2 = -d/dmq ; d/dsp = sp / sq^2 - 1 / sp ;
    # d/dsq = (1 - (sp^2 + (mp - mq)^2) / sq^2) / sq.  want: flags (loc_p, scale_p, loc_q, scale_q)
    for i in range(loc_p.size):
        var_q = scale_q[i] * scale_q[i]
        diff = loc_p[i] - loc_q[i]
        if want[0]:
            grad_loc_p[i] = g[i] * (diff / var_q)
        if want[2]:
            grad_loc_q[i] = -g[i] * (diff / var_q)
        if want[1]:
            grad_scale_p[i] = g[i] * (scale_p[i] / var_q - F32(1.0) / scale_p[i])
        if want[3]:
            grad_scale_q[i] = g[i] * (F32(1.0) - (scale_p[i] * scale_p[i] + diff * diff) / var_q) / scale_q[i]


# ================================================================ Python entry points
# Each allocates its outputs and hands flat (or 2-d) views of the arrays to a kernel above.
def _flat(a):
    return a.reshape(-1)


def softplus_forward(x, beta=1.0, threshold=20.0):
    """(softplus output, its slope dy/dx): backward is then ``grad_y * slope``."""
    out, slope = np.empty_like(x), np.empty_like(x)
    softplus_kernel(_flat(x), beta, threshold, _flat(out), _flat(slope))
    return out, slope


def sigmoid_forward(x):
    out = np.empty_like(x)
    sigmoid_kernel(_flat(x), _flat(out))
    return out


def sigmoid_backward(y, grad_y):
    out = np.empty_like(y)
    sigmoid_backward_kernel(_flat(y), _flat(_contiguous_like(grad_y, y)), _flat(out))
    return out


def exp_forward(x):
    out = np.empty_like(x)
    exp_kernel(_flat(x), _flat(out))
    return out


def tanh_backward(y, grad_y):
    out = np.empty_like(y)
    tanh_backward_kernel(_flat(y), _flat(_contiguous_like(grad_y, y)), _flat(out))
    return out


def relu_backward(y, grad_y):
    out = np.empty_like(y)
    relu_backward_kernel(_flat(y), _flat(_contiguous_like(grad_y, y)), _flat(out))
    return out


def add_bias_(y, bias):
    """y += bias over the last axis, in place (y C-contiguous float32, bias of shape (y.shape[-1],))."""
    add_bias_kernel(y.reshape(-1, y.shape[-1]), bias)
    return y


def bias_grad(g):
    """The gradient of a bias added along the last axis: g summed over every other axis."""
    out = np.empty(g.shape[-1], dtype=g.dtype)
    column_sum_kernel(_contiguous(g).reshape(-1, g.shape[-1]), out)
    return out


def all_finite_many(arrays):
    """True if no element of any of ``arrays`` is NaN or inf: one call, one read of each."""
    return all_finite_many_kernel(tuple(_flat(_contiguous(a)) for a in arrays))


def _rows(a):
    return a.reshape(-1, a.shape[-1]) if a.ndim else a.reshape(1, 1)


def _row_cotangent(g, shape):
    """The cotangent as (rows, 1) if it is constant along the last axis (Independent's
    broadcast: stride 0), else as a contiguous (rows, cols) array."""
    g = g if g.shape == shape else np.broadcast_to(g, shape)
    if g.ndim and g.strides[-1] == 0:
        return np.ascontiguousarray(g[..., :1]).reshape(-1, 1)
    return _rows(_contiguous(g))


_EPS = float(np.finfo(np.float32).eps)  # probs are clamped to [eps, 1 - eps], as torch does


def bernoulli_probs_log_prob(x, probs):
    out = np.empty_like(probs)
    bernoulli_probs_log_prob_kernel(_rows(x), _rows(probs), _EPS, _rows(out))
    return out


def bernoulli_probs_grad(x, probs, grad_log_prob):
    out = np.empty_like(probs)
    bernoulli_probs_grad_kernel(_rows(x), _rows(probs), _row_cotangent(grad_log_prob, probs.shape), _EPS, _rows(out))
    return out


def bernoulli_logits_log_prob(x, logits):
    out = np.empty_like(logits)
    bernoulli_logits_log_prob_kernel(_rows(x), _rows(logits), _rows(out))
    return out


def bernoulli_logits_grad(x, logits, grad_log_prob):
    out = np.empty_like(logits)
    bernoulli_logits_grad_kernel(_rows(x), _rows(logits), _row_cotangent(grad_log_prob, logits.shape), _rows(out))
    return out


def normal_rsample(loc, scale, noise):
    out = np.empty_like(loc)
    normal_rsample_kernel(_flat(loc), _flat(scale), _flat(noise), _flat(out))
    return out


def normal_log_prob(x, loc, scale):
    out = np.empty_like(loc)
    normal_log_prob_kernel(_flat(x), _flat(loc), _flat(scale), _flat(out))
    return out


_EMPTY = np.empty(0, dtype=np.float32)


def normal_log_prob_grads(x, loc, scale, grad_log_prob, wrt):
    """{name: gradient} for the names in ``wrt`` among "value", "loc", "scale", in one pass."""
    g = _contiguous_like(grad_log_prob, loc)
    out = {name: np.empty_like(loc) if name in wrt else _EMPTY for name in ("value", "loc", "scale")}
    normal_grads_kernel(_flat(x), _flat(loc), _flat(scale), _flat(g), _flat(out["value"]), _flat(out["loc"]),
                        _flat(out["scale"]), "value" in wrt, "loc" in wrt, "scale" in wrt)
    return {name: out[name] for name in wrt}


def kl_normal_normal(loc_p, scale_p, loc_q, scale_q):
    out = np.empty_like(loc_p)
    kl_normal_normal_kernel(_flat(loc_p), _flat(scale_p), _flat(loc_q), _flat(scale_q), _flat(out))
    return out


def kl_normal_normal_grads(loc_p, scale_p, loc_q, scale_q, grad_kl, wrt_p, wrt_q):
    """({name: grad} for p, {name: grad} for q), names among "loc", "scale"."""
    g = _contiguous_like(grad_kl, loc_p)
    want = np.array(["loc" in wrt_p, "scale" in wrt_p, "loc" in wrt_q, "scale" in wrt_q])
    outs = [np.empty_like(loc_p) if w else _EMPTY for w in want]
    kl_normal_normal_grads_kernel(_flat(loc_p), _flat(scale_p), _flat(loc_q), _flat(scale_q), _flat(g),
                                  *[_flat(o) for o in outs], want)
    grads_p = {name: outs[i] for i, name in enumerate(("loc", "scale")) if want[i]}
    grads_q = {name: outs[2 + i] for i, name in enumerate(("loc", "scale")) if want[2 + i]}
    return grads_p, grads_q


def adam_update_many(params, grads, exp_avgs, exp_avg_sqs, settings):
    """One step on every parameter, in place, in one kernel call. ``settings``: one
    ``adam_settings(...)`` row per parameter."""
    if not all(a.flags.c_contiguous for arrays in (params, exp_avgs, exp_avg_sqs) for a in arrays):
        raise ValueError("adam_update_many updates in place: params and moments must be C-contiguous")
    flat = [tuple(_flat(_contiguous(a)) for a in arrays) for arrays in (params, grads, exp_avgs, exp_avg_sqs)]
    table = np.array(settings, dtype=np.float64).reshape(len(params), len(ADAM_SETTINGS))
    adam_many_kernel(*flat, table)


def adam_update(param, grad, exp_avg, exp_avg_sq, **hyper):
    """``adam_update_many`` for one parameter; ``hyper`` as for ``adam_settings``."""
    adam_update_many([param], [grad], [exp_avg], [exp_avg_sq], [adam_settings(**hyper)])


def _contiguous(a):
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)


def _contiguous_like(g, like):
    """A cotangent of ``like``'s shape as a C-contiguous array (a broadcast one is materialised)."""
    if g.shape != like.shape:
        g = np.broadcast_to(g, like.shape)
    return _contiguous(g)
