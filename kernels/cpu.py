"""Fused CPU kernels (Numba): the reference NumPy math of minippl, one pass over memory each.

Teaches: when fusing pays on a CPU. Numba's ``np.exp``/``np.log`` are scalar libm calls (no SIMD
here), 5x slower than NumPy's vectorised ufuncs, so this file builds float32 exp and log from
the float's bits and a short polynomial, which LLVM vectorises (AVX-512: 16 lanes). Every kernel
is serial: BLAS owns the cores during the matrix products, and a second thread pool fights it.
Builds on nothing in minippl; the callers (nn/layers.py, distributions, optim.py) choose these
kernels through ``minippl.backend.fused_kernels``. Inputs: float32, C-contiguous, equal shapes.
"""
import math

import numpy as np
from llvmlite import ir
from numba import njit
from numba.core import types
from numba.extending import intrinsic

F32 = np.float32
_INF, _NAN = F32(np.inf), F32(np.nan)  # float32 constants keep every kernel in float32
# error_model numpy: x / 0 gives inf as in NumPy, no exception; fastmath "contract" only lets
# LLVM fuse a * b + c into one FMA (no NaN/inf assumptions, which would break NaN propagation)
_JIT = {"cache": True, "nogil": True, "error_model": "numpy", "fastmath": {"contract"}}


# ---------------------------------------------------------------- float32 exp and log, vectorisable
@intrinsic
def _float_from_bits(typingctx, bits):
    """Reinterpret an int32 as a float32 (a bitcast LLVM vectorises, unlike 2.0 ** k)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen


@intrinsic
def _bits_from_float(typingctx, x):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))
    return types.int32(types.float32), codegen


@njit(inline="always", **_JIT)
def _times_pow2(y, k):
    """y 2^k for an integer-valued float32 k in [-252, 254]: two factors built from exponent bits
    (each a normal float), so results between 2^-149 and 2^-126 come out subnormal, as np.exp's,
    and y 2^128 (y < 1) does not overflow on the way."""
    half = np.int32(k) >> 1
    first = _float_from_bits((half + np.int32(127)) << 23)
    second = _float_from_bits((np.int32(k) - half + np.int32(127)) << 23)
    return (y * first) * second


@njit(inline="always", **_JIT)
def expf(x):
    """exp(x) in float32 within 2 ulp (Cephes' expf): x = k ln 2 + r with |r| <= ln 2 / 2,
    exp(r) from a degree-6 polynomial, 2^k from bits. Overflows to inf and underflows to 0 as np.exp."""
    xc = min(max(x, F32(-104.0)), F32(89.0))
    k = np.floor(xc * F32(1.44269504088896341) + F32(0.5))
    r = xc - k * F32(0.693359375)  # ln 2 in two parts: k * hi is exact
    r = r + k * F32(2.12194440e-4)
    p = F32(1.9875691500e-4)
    p = p * r + F32(1.3981999507e-3)
    p = p * r + F32(8.3334519073e-3)
    p = p * r + F32(4.1665795894e-2)
    p = p * r + F32(1.6666665459e-1)
    p = p * r + F32(5.0000001201e-1)
    y = _times_pow2(p * r * r + r + F32(1.0), k)
    return x if x != x else y  # NaN stays NaN (the clamp above would hide it)


@njit(inline="always", **_JIT)
def _log_normal_range(x):
    """log(x) in float32 within 2 ulp (Cephes' logf) for a positive normal float x (or NaN):
    x = m 2^e with m in [sqrt(1/2), sqrt(2)), log(m) = t - t^2/2 + t^3 P(t), t = m - 1."""
    bits = _bits_from_float(x)
    e = F32((bits >> np.int32(23)) - np.int32(126))  # int32 throughout: int64 would halve the lanes
    m = _float_from_bits((bits & np.int32(0x7FFFFF)) | np.int32(0x3F000000))  # in [0.5, 1)
    small = m < F32(0.707106781186547524)
    e = e - F32(1.0) if small else e
    t = (m + m - F32(1.0)) if small else (m - F32(1.0))
    z = t * t
    p = F32(7.0376836292e-2)
    p = p * t - F32(1.1514610310e-1)
    p = p * t + F32(1.1676998740e-1)
    p = p * t - F32(1.2420140846e-1)
    p = p * t + F32(1.4249322787e-1)
    p = p * t - F32(1.6668057665e-1)
    p = p * t + F32(2.0000714765e-1)
    p = p * t - F32(2.4999993993e-1)
    p = p * t + F32(3.3333331174e-1)
    y = p * t * z + e * F32(-2.12194440e-4) - F32(0.5) * z
    y = t + y + e * F32(0.693359375)
    return x if x != x else y


@njit(inline="always", **_JIT)
def logf(x):
    """log(x) for any float32, as np.log: subnormals scaled by 2^23 first, log(0) = -inf,
    log(x < 0) = NaN, log(inf) = inf. Kernels whose inputs are clamped use _log_normal_range."""
    tiny = x < F32(1.17549435e-38)
    y = _log_normal_range(x * F32(8388608.0) if tiny else x) - (F32(15.942385152878742) if tiny else F32(0.0))
    y = -_INF if x == F32(0.0) else y
    y = _NAN if not x >= F32(0.0) else y  # negative or NaN
    return x if x == _INF else y


@njit(inline="always", **_JIT)
def _log1p_given(t, u, inv_u):
    """log(1 + t) accurate for tiny t, from u = 1 + t (rounded) and 1 / u, for u a positive normal
    float: log1p(t) = log(u) + (t - (u - 1)) / u, the second term restoring what rounding u lost."""
    return _log_normal_range(u) + (t - (u - F32(1.0))) * inv_u


@njit(inline="always", **_JIT)
def log1pf(t):
    """log(1 + t) for any float32, as np.log1p (log1p(-1) = -inf, NaN below -1)."""
    u = F32(1.0) + t
    y = logf(u) + (t - (u - F32(1.0))) / u
    y = -_INF if u == F32(0.0) else y
    return t if t == _INF else y


@njit(inline="always", **_JIT)
def _sigmoid_and_softplus(z):
    """(sigmoid(z), softplus(z)) from one exp and one log: e = exp(-|z|) <= 1 never overflows;
    sigmoid = (1 or e) / (1 + e), softplus = max(z, 0) + log1p(e)."""
    e = expf(-abs(z))
    u = F32(1.0) + e  # in (1, 2]
    inv_u = F32(1.0) / u
    sig = (F32(1.0) if z >= F32(0.0) else e) * inv_u
    return sig, max(z, F32(0.0)) + _log1p_given(e, u, inv_u)


# ---------------------------------------------------------------- activations (flat 1-d arrays)
@njit(**_JIT)
def softplus_kernel(x, beta, threshold, out, slope):
    # y = softplus(beta x) / beta, and y = x where beta x > threshold (linear there, as torch)
    # slope = dy/dx = sigmoid(beta x), 1 above the threshold: kept for backward
    b, limit = F32(beta), F32(threshold)
    for i in range(x.size):
        z = x[i] * b
        sig, soft = _sigmoid_and_softplus(z)
        above = z > limit
        out[i] = x[i] if above else soft / b
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
def tanh_kernel(x, out):
    # tanh|x| = (1 - e) / (1 + e) with e = exp(-2|x|); for |x| < 0.625 Cephes' odd polynomial,
    # because 1 - e loses the low bits of a small |x|
    for i in range(x.size):
        a = abs(x[i])
        e = expf(F32(-2.0) * a)
        big = (F32(1.0) - e) / (F32(1.0) + e)
        z = a * a
        p = F32(-5.70498872745e-3)
        p = p * z + F32(2.06390887954e-2)
        p = p * z - F32(5.37397155531e-2)
        p = p * z + F32(1.33314422036e-1)
        p = p * z - F32(3.33332819422e-1)
        small = a + a * z * p
        t = small if a < F32(0.625) else big
        out[i] = -t if x[i] < F32(0.0) else (t if x[i] == x[i] else x[i])


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
            one_m_pc = F32(1.0) - pc  # log1p(-pc) as log(u) + correction, u = 1 - pc in [eps, 1 - eps]
            log1m = _log_normal_range(one_m_pc) + (-pc - (one_m_pc - F32(1.0))) / one_m_pc
            out[r, c] = x[r, c] * _log_normal_range(pc) + (F32(1.0) - x[r, c]) * log1m


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
            _, soft = _sigmoid_and_softplus(logits[r, c])
            out[r, c] = x[r, c] * logits[r, c] - soft


@njit(**_JIT)
def bernoulli_logits_grad_kernel(x, logits, g, out):
    # d/dl log p(x | l) = x - sigmoid(l)
    rows, cols = x.shape
    per_row = g.shape[1] == 1
    for r in range(rows):
        for c in range(cols):
            gi = g[r, 0] if per_row else g[r, c]
            sig, _ = _sigmoid_and_softplus(logits[r, c])
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


# ---------------------------------------------------------------- optimisers (flat 1-d arrays)
@njit(**_JIT)
def adam_kernel(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, step_size,
                sqrt_bias_correction2, clip, centered, eps_inside):
    """One Adam or ClippedAdam step, in place, in one pass:
        g = clip(g, -clip, clip) + wd * theta        (clip = inf for Adam)
        m = b1 m + (1 - b1) g ;  v = b2 v + (1 - b2) d^2,  d = g or g - m (centered)
        Adam:        theta -= step_size * m / (sqrt(v) / sqrt(bc2) + eps),  step_size = lr / bc1
        ClippedAdam: theta -= step_size * m / (sqrt(v) + eps),  step_size = lr sqrt(bc2) / bc1
    """
    b1, b2, e, wd = F32(beta1), F32(beta2), F32(eps), F32(weight_decay)
    one_m_b1, one_m_b2 = F32(1.0) - b1, F32(1.0) - b2
    size, c = F32(step_size), F32(clip)
    sqrt_bc2 = F32(1.0) if eps_inside else F32(sqrt_bias_correction2)
    for i in range(param.size):
        g = grad[i]
        g = -c if g < -c else (c if g > c else g)  # comparisons let NaN through, as np.clip
        g = g + wd * param[i]
        m = exp_avg[i] * b1 + g * one_m_b1
        d = g - m if centered else g
        v = exp_avg_sq[i] * b2 + (d * d) * one_m_b2
        exp_avg[i] = m
        exp_avg_sq[i] = v
        denom = np.sqrt(v) / sqrt_bc2 + e
        param[i] -= size * (m / denom)


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


def tanh_forward(x):
    out = np.empty_like(x)
    tanh_kernel(_flat(x), _flat(out))
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


def _rows(a):
    return a.reshape(-1, a.shape[-1]) if a.ndim else a.reshape(1, 1)


def _row_cotangent(g, shape):
    """The cotangent as (rows, 1) if it is constant along the last axis (Independent's
    broadcast: stride 0), else as a contiguous (rows, cols) array."""
    g = np.broadcast_to(g, shape)
    if g.ndim and g.strides[-1] == 0:
        return np.ascontiguousarray(g[..., :1]).reshape(-1, 1)
    return _rows(_contiguous(g))


def bernoulli_probs_log_prob(x, probs):
    out = np.empty_like(probs)
    eps = float(np.finfo(np.float32).eps)
    bernoulli_probs_log_prob_kernel(_rows(x), _rows(probs), eps, _rows(out))
    return out


def bernoulli_probs_grad(x, probs, grad_log_prob):
    out = np.empty_like(probs)
    eps = float(np.finfo(np.float32).eps)
    bernoulli_probs_grad_kernel(_rows(x), _rows(probs), _row_cotangent(grad_log_prob, probs.shape), eps, _rows(out))
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
    g = _contiguous(np.broadcast_to(grad_log_prob, loc.shape))
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
    g = _contiguous(np.broadcast_to(grad_kl, loc_p.shape))
    want = np.array(["loc" in wrt_p, "scale" in wrt_p, "loc" in wrt_q, "scale" in wrt_q])
    outs = [np.empty_like(loc_p) if w else _EMPTY for w in want]
    kl_normal_normal_grads_kernel(_flat(loc_p), _flat(scale_p), _flat(loc_q), _flat(scale_q), _flat(g),
                                  *[_flat(o) for o in outs], want)
    grads_p = {name: outs[i] for i, name in enumerate(("loc", "scale")) if want[i]}
    grads_q = {name: outs[2 + i] for i, name in enumerate(("loc", "scale")) if want[2 + i]}
    return grads_p, grads_q


def adam_update(param, grad, exp_avg, exp_avg_sq, *, lr, beta1, beta2, eps, weight_decay, step,
                clip=math.inf, centered=False, clipped_adam=False):
    """Adam (torch's order of operations) or, with ``clipped_adam``, Pyro's ClippedAdam: one
    step in place on ``param``, ``exp_avg`` and ``exp_avg_sq``; ``step`` counts from 1."""
    bias_correction1, bias_correction2 = 1.0 - beta1**step, 1.0 - beta2**step
    if clipped_adam:
        step_size = lr * math.sqrt(bias_correction2) / bias_correction1
    else:
        step_size = lr / bias_correction1
    adam_kernel(_flat(param), _flat(_contiguous(grad)), _flat(exp_avg), _flat(exp_avg_sq), lr, beta1, beta2, eps,
                weight_decay, step_size, math.sqrt(bias_correction2), clip, centered, clipped_adam)


def _contiguous(a):
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)


def _contiguous_like(g, like):
    """A cotangent of ``like``'s shape as a C-contiguous array (a broadcast one is materialised)."""
    if g.shape != like.shape:
        g = np.broadcast_to(g, like.shape)
    return _contiguous(g)
