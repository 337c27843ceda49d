"""The GPU kernels as CUDA C source: one kernel per fused pass of kernels/cpu.py, as plain strings.

Teaches: a GPU kernel is the body of a loop run by thousands of threads at once. Each kernel here
is the loop body of its kernels/cpu.py twin, written once as a parameter list (what the Python
launcher in gpu.py must pass, in order) and a body; ``SOURCE`` joins them into one CUDA C file
that CuPy hands to NVRTC at run time. This module imports nothing but the standard library, so CI
compiles ``SOURCE`` for sm_90 on a machine without a GPU and inspects the PTX
(tests/test_kernels_gpu_compile.py). Every float is a float: a literal without ``f`` (``0.5``) is a
double and would make the kernel compute in float64, which the PTX check rejects. expf, logf and
log1pf are CUDA's accurate versions (within 2 ulp; no --use_fast_math), so the exp/log tricks of
cpu_math.py are not needed here. Builds on kernels/cpu.py (the same math, kernel by kernel).
"""
from collections import namedtuple

Kernel = namedtuple("Kernel", "params body")  # params: ((C type, name), ...); body: CUDA C
KERNELS = {}  # kernel name -> Kernel, in source order


def kernel(name, params, body):
    """Register a kernel. Every kernel takes ``long long n`` last: how many indices its grid-stride
    loop visits; gpu.py's launcher appends it, so ``params`` lists only the arguments before it."""
    params = tuple(tuple(p.rsplit(" ", 1)) for p in params.split(", ")) + (("long long", "n"),)
    KERNELS[name] = Kernel(params, body.strip("\n"))


PRELUDE = r"""
// A grid of B blocks of T threads runs a kernel; thread t (0 <= t < B T) visits t, t + B T, ...:
// a "grid-stride loop", so any n is covered by a grid of bounded size. 64-bit indices: an H200
// holds float32 arrays of more than 2^31 elements.
#define FOR_EACH(i, n) for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < (n); \
                            i += (long long)gridDim.x * blockDim.x)

__device__ __forceinline__ float clamp_probs(float p, float eps) {
    // clip to [eps, 1 - eps] with comparisons, so NaN passes through as NaN (fminf would drop it)
    return p < eps ? eps : (p > 1.0f - eps ? 1.0f - eps : p);
}

__device__ __forceinline__ void sigmoid_and_softplus(float z, float* sig, float* soft) {
    // e = exp(-|z|) <= 1 never overflows; sigmoid = (1 or e) / (1 + e), softplus = max(z, 0) + log1p(e)
    float e = expf(-fabsf(z));
    *sig = (z >= 0.0f ? 1.0f : e) / (1.0f + e);
    *soft = (z > 0.0f ? z : 0.0f) + log1pf(e);
}
"""

# ---------------------------------------------------------------- activations and bias
kernel("softplus_kernel", "const float* x, float beta, float threshold, float* out, float* slope", r"""
    // y = softplus(beta x) / beta, and y = x where beta x > threshold (linear there, as torch);
    // slope = dy/dx = sigmoid(beta x), 1 above the threshold: kept for backward
    FOR_EACH(i, n) {
        float z = x[i] * beta, sig, soft;
        sigmoid_and_softplus(z, &sig, &soft);
        bool above = z > threshold;
        out[i] = above ? x[i] : soft / beta;
        slope[i] = above ? 1.0f : sig;
    }""")

kernel("sigmoid_kernel", "const float* x, float* out", r"""
    FOR_EACH(i, n) {
        float e = expf(-fabsf(x[i]));  // sigmoid(x) = (1 or e) / (1 + e), e = exp(-|x|)
        out[i] = (x[i] >= 0.0f ? 1.0f : e) / (1.0f + e);
    }""")

kernel("sigmoid_backward_kernel", "const float* y, const float* grad_y, float* out", r"""
    FOR_EACH(i, n) out[i] = grad_y[i] * ((1.0f - y[i]) * y[i]);  // d sigmoid / dx = s (1 - s)""")

kernel("exp_kernel", "const float* x, float* out", r"""
    FOR_EACH(i, n) out[i] = expf(x[i]);  // overflows to inf, NaN stays NaN, as np.exp""")

kernel("tanh_backward_kernel", "const float* y, const float* grad_y, float* out", r"""
    FOR_EACH(i, n) out[i] = grad_y[i] * (1.0f - y[i] * y[i]);  // d tanh / dx = 1 - t^2""")

kernel("relu_backward_kernel", "const float* y, const float* grad_y, float* out", r"""
    // d relu / dx = 1 where y > 0, else 0 (a product, so a NaN or inf cotangent stays visible)
    FOR_EACH(i, n) out[i] = grad_y[i] * (y[i] > 0.0f ? 1.0f : 0.0f);""")

kernel("add_bias_kernel", "float* y, const float* bias, long long cols", r"""
    FOR_EACH(i, n) y[i] += bias[i % cols];  // y[r, c] += bias[c], in place (y: rows x cols)""")

kernel("column_sum_kernel", "const float* g, float* out, long long rows", r"""
    // out[c] = sum_r g[r, c] (n = cols): one thread per column, so neighbouring threads read
    // neighbouring floats of each row (coalesced). Rows add in order, as the CPU kernel.
    FOR_EACH(c, n) {
        float acc = 0.0f;
        for (long long r = 0; r < rows; r++) acc += g[r * n + c];
        out[c] = acc;
    }""")

kernel("flag_nonfinite_kernel", "const float* x, int* flag", r"""
    // a float32 is NaN or inf exactly when its 8 exponent bits are all ones. Threads that find
    // one all store the same 1, so the race is harmless and needs no atomic
    FOR_EACH(i, n) if ((__float_as_uint(x[i]) & 0x7F800000u) == 0x7F800000u) *flag = 1;""")

# ---------------------------------------------------------------- Bernoulli (x, p: rows x cols, flat)
# A log-prob cotangent usually arrives as one number per row (Independent broadcasts it over the
# event dim): per_row = 1 reads g[i / cols], else g holds one value per element.
kernel("bernoulli_probs_log_prob_kernel", "const float* x, const float* p, float eps, float* out", r"""
    // log p(x | p) = x log p + (1 - x) log(1 - p), p clamped to [eps, 1 - eps]
    FOR_EACH(i, n) {
        float pc = clamp_probs(p[i], eps);
        out[i] = x[i] * logf(pc) + (1.0f - x[i]) * log1pf(-pc);
    }""")

kernel("bernoulli_probs_grad_kernel",
       "const float* x, const float* p, const float* g, int per_row, long long cols, float eps, float* out", r"""
    // d/dp log p(x | p) = x / p - (1 - x) / (1 - p); 0 where the clamp is active
    FOR_EACH(i, n) {
        float gi = per_row ? g[i / cols] : g[i];
        float pc = clamp_probs(p[i], eps);
        float d = gi * (x[i] / pc - (1.0f - x[i]) / (1.0f - pc));
        out[i] = pc == p[i] ? d : 0.0f;
    }""")

kernel("bernoulli_logits_log_prob_kernel", "const float* x, const float* logits, float* out", r"""
    FOR_EACH(i, n) {  // log p(x | l) = x l - softplus(l)
        float sig, soft;
        sigmoid_and_softplus(logits[i], &sig, &soft);
        out[i] = x[i] * logits[i] - soft;
    }""")

kernel("bernoulli_logits_grad_kernel",
       "const float* x, const float* logits, const float* g, int per_row, long long cols, float* out", r"""
    FOR_EACH(i, n) {  // d/dl log p(x | l) = x - sigmoid(l)
        float gi = per_row ? g[i / cols] : g[i];
        float sig, soft;
        sigmoid_and_softplus(logits[i], &sig, &soft);
        out[i] = gi * (x[i] - sig);
    }""")

# ---------------------------------------------------------------- Normal and the Normal-Normal KL
kernel("normal_rsample_kernel", "const float* loc, const float* scale, const float* noise, float* out", r"""
    FOR_EACH(i, n) out[i] = loc[i] + scale[i] * noise[i];  // value = loc + scale * eps""")

kernel("normal_log_prob_kernel", "const float* x, const float* loc, const float* scale, float* out", r"""
    // log N(x | loc, scale) = -z^2 / 2 - log(scale) - log(2 pi) / 2, z = (x - loc) / scale
    FOR_EACH(i, n) {
        float z = (x[i] - loc[i]) / scale[i];
        out[i] = -0.5f * z * z - logf(scale[i]) - 0.918938533204672742f;
    }""")

kernel("normal_grads_kernel",
       "const float* x, const float* loc, const float* scale, const float* g, "
       "float* grad_value, float* grad_loc, float* grad_scale, int want_value, int want_loc, int want_scale", r"""
    // d/dx = -(x - loc) / scale^2 ; d/dloc = (x - loc) / scale^2 ; d/dscale = (z^2 - 1) / scale.
    // An output not wanted is a 1-element placeholder and is never written.
    FOR_EACH(i, n) {
        float z = (x[i] - loc[i]) / scale[i];
        float g_residual = g[i] * z / scale[i];
        if (want_value) grad_value[i] = -g_residual;
        if (want_loc) grad_loc[i] = g_residual;
        if (want_scale) grad_scale[i] = g[i] * (z * z - 1.0f) / scale[i];
    }""")

kernel("kl_normal_normal_kernel", "const float* loc_p, const float* scale_p, const float* loc_q, const float* scale_q, "
                           "float* out", r"""
    // KL(p || q) = (r + t - 1 - log r) / 2, r = (sp / sq)^2, t = ((mp - mq) / sq)^2
    FOR_EACH(i, n) {
        float ratio = scale_p[i] / scale_q[i];
        float var_ratio = ratio * ratio;
        float d = (loc_p[i] - loc_q[i]) / scale_q[i];
        out[i] = 0.5f * (var_ratio + d * d - 1.0f - logf(var_ratio));
    }""")

kernel("kl_normal_normal_grads_kernel",
       "const float* loc_p, const float* scale_p, const float* loc_q, const float* scale_q, const float* g, "
       "float* grad_loc_p, float* grad_scale_p, float* grad_loc_q, float* grad_scale_q, "
       "int want_loc_p, int want_scale_p, int want_loc_q, int want_scale_q", r"""
    // d/dmp = (mp - mq) / sq^2 = -d/dmq ; d/dsp = sp / sq^2 - 1 / sp ; d/dsq = (1 - (sp^2 + (mp - mq)^2) / sq^2) / sq
    FOR_EACH(i, n) {
        float var_q = scale_q[i] * scale_q[i];
        float diff = loc_p[i] - loc_q[i];
        if (want_loc_p) grad_loc_p[i] = g[i] * (diff / var_q);
        if (want_loc_q) grad_loc_q[i] = -g[i] * (diff / var_q);
        if (want_scale_p) grad_scale_p[i] = g[i] * (scale_p[i] / var_q - 1.0f / scale_p[i]);
        if (want_scale_q)
            grad_scale_q[i] = g[i] * (1.0f - (scale_p[i] * scale_p[i] + diff * diff) / var_q) / scale_q[i];
    }""")

# ---------------------------------------------------------------- Adam / ClippedAdam (kernels/cpu_adam.py)
kernel("adam_kernel", "float* param, const float* grad, float* exp_avg, float* exp_avg_sq, const bool* ok, "
               "float beta1, float beta2, float eps, float weight_decay, float step_size, float sqrt_bc2, float clip, "
               "int centered", r"""
    // g = clip(g, -clip, clip) + wd theta ; m = b1 m + (1 - b1) g ; v = b2 v + (1 - b2) d^2 (d = g, or
    // g - m centered) ; theta -= step_size m / (sqrt(v) / sqrt_bc2 + eps): adam_settings' row, in place.
    // ok[0] false: a refused step (SVI(sync_every=k): a NaN or inf loss or gradient): change nothing.
    if (!ok[0]) return;
    FOR_EACH(i, n) {
        float g = grad[i];
        g = g < -clip ? -clip : (g > clip ? clip : g);  // comparisons let NaN through, as np.clip
        g = g + weight_decay * param[i];
        float m = exp_avg[i] * beta1 + g * (1.0f - beta1);
        float d = centered ? g - m : g;
        float v = exp_avg_sq[i] * beta2 + (d * d) * (1.0f - beta2);
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
        param[i] -= step_size * (m / (sqrtf(v) / sqrt_bc2 + eps));
    }""")


def signature(name):
    """The kernel's C declaration; pointers are ``__restrict__`` (no output aliases another argument),
    which lets the compiler read the const ones through the read-only cache."""
    params = ", ".join(f"{ctype} __restrict__ {pname}" if ctype.endswith("*") else f"{ctype} {pname}"
                       for ctype, pname in KERNELS[name].params)
    return f'extern "C" __global__ void {name}({params})'


SOURCE = PRELUDE + "".join(f"\n{signature(name)} {{\n{k.body}\n}}\n" for name, k in KERNELS.items())
