"""float32 exp and log for Numba kernels, built from the float's bits so that LLVM vectorises them.

Teaches: why a fused CPU kernel needs its own transcendental functions. Inside ``@njit``,
``np.exp`` and ``np.log`` become scalar libm calls on this machine (no SVML), 5x slower than
NumPy's AVX-512 ufuncs; the Cephes polynomials below, with 2^k and the exponent read through
integer bitcasts, run 16 lanes at a time and stay within 2 ulp. Builds on Numba and llvmlite;
used by cpu.py and cpu_adam.py.
Numba's on-disk cache (cache=True) keys on the kernel's own file: after editing this one, touch
cpu.py and cpu_adam.py (or delete kernels/__pycache__) so the kernels are compiled again.
"""
import numpy as np
from llvmlite import ir
from numba import njit
from numba.core import types
from numba.extending import intrinsic

F32 = np.float32
_INF, _NAN = F32(np.inf), F32(np.nan)  # float32 constants keep every kernel in float32
# error_model numpy: x / 0 gives inf as in NumPy, no exception; fastmath "contract" only lets
# LLVM fuse a * b + c into one FMA (no NaN/inf assumptions, which would break NaN propagation)
JIT = {"cache": True, "nogil": True, "error_model": "numpy", "fastmath": {"contract"}}


@intrinsic
def _float_from_bits(typingctx, bits):
    """Reinterpret an int32 as a float32 (a bitcast LLVM vectorises, unlike 2.0 ** k)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen


@intrinsic
def bits_from_float(typingctx, x):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))
    return types.int32(types.float32), codegen


@njit(inline="always", **JIT)
def _times_pow2(y, k):
    """y 2^k for an integer-valued float32 k in [-252, 254]: two factors built from exponent bits
    (each a normal float), so results between 2^-149 and 2^-126 come out subnormal, as np.exp's,
    and y 2^128 (y < 1) does not overflow on the way."""
    half = np.int32(k) >> 1
    first = _float_from_bits((half + np.int32(127)) << 23)
    second = _float_from_bits((np.int32(k) - half + np.int32(127)) << 23)
    return (y * first) * second


@njit(inline="always", **JIT)
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


@njit(inline="always", **JIT)
def log_normal_range(x):
    """log(x) in float32 within 2 ulp (Cephes' logf) for a positive normal float x (or NaN):
    x = m 2^e with m in [sqrt(1/2), sqrt(2)), log(m) = t - t^2/2 + t^3 P(t), t = m - 1."""
    bits = bits_from_float(x)
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


@njit(inline="always", **JIT)
def logf(x):
    """log(x) for any float32, as np.log: subnormals scaled by 2^23 first, log(0) = -inf,
    log(x < 0) = NaN, log(inf) = inf. Kernels whose inputs are clamped use log_normal_range."""
    tiny = x < F32(1.17549435e-38)
    y = log_normal_range(x * F32(8388608.0) if tiny else x) - (F32(15.942385152878742) if tiny else F32(0.0))
    y = -_INF if x == F32(0.0) else y
    y = _NAN if not x >= F32(0.0) else y  # negative or NaN
    return x if x == _INF else y


@njit(inline="always", **JIT)
def log1p_given(t, u, inv_u):
    """log(1 + t) accurate for tiny t, from u = 1 + t (rounded) and 1 / u, for u a positive normal
    float: log1p(t) = log(u) + (t - (u - 1)) / u, the second term restoring what rounding u lost."""
    return log_normal_range(u) + (t - (u - F32(1.0))) * inv_u


@njit(inline="always", **JIT)
def log1pf(t):
    """log(1 + t) for any float32, as np.log1p (log1p(-1) = -inf, NaN below -1)."""
    u = F32(1.0) + t
    y = logf(u) + (t - (u - F32(1.0))) / u
    y = -_INF if u == F32(0.0) else y
    return t if t == _INF else y


@njit(inline="always", **JIT)
def sigmoid_and_softplus(z):
    """(sigmoid(z), softplus(z)) from one exp and one log: e = exp(-|z|) <= 1 never overflows;
    sigmoid = (1 or e) / (1 + e), softplus = max(z, 0) + log1p(e)."""
    e = expf(-abs(z))
    u = F32(1.0) + e  # in (1, 2]
    inv_u = F32(1.0) / u
    sig = (F32(1.0) if z >= F32(0.0) else e) * inv_u
    return sig, max(z, F32(0.0)) + log1p_given(e, u, inv_u)
