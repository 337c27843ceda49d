"""The registry: which fused kernel replaces which reference function, and for which arrays.

Teaches: the one place where the fast path plugs in. A teaching file marks a reference function
with ``@minippl.backend.fusable("name")``; under the "numba" backend each call first offers its
arguments to the entry registered here under that name, for the device of the arrays (cpu.py for
NumPy, gpu.py for CuPy: the same entry points). An entry returns ``NotImplemented`` unless it
takes those arguments (float32, C-contiguous, one device, the shapes its kernel was written
for), and the reference runs instead. So float64, broadcast and strided arrays take the
reference, and the teaching files never mention a kernel. Builds on backend.py's ``fusable``
(kernels/__init__.py plugs this registry in) and names the entry points of cpu.py and gpu.py.
"""
import numpy as np

from ..optim import advance_counters

ENTRIES = {}  # operation name -> entry(kernels module, *args): a result or NotImplemented
_FLOAT32 = np.dtype(np.float32)


def entry(name):
    def register(function):
        ENTRIES[name] = function
        return function
    return register


def _takes(*arrays):
    """True for float32, C-contiguous arrays of one type (all NumPy or all CuPy) and one shape."""
    kind, shape = type(arrays[0]), getattr(arrays[0], "shape", None)
    for a in arrays:
        if type(a) is not kind or a.dtype != _FLOAT32 or not a.flags.c_contiguous or a.shape != shape:
            return False
    return True


def _cotangent(g, like):
    """A cotangent the kernels take as is: float32 and of ``like``'s shape (it may be a broadcast view)."""
    return getattr(g, "dtype", None) == _FLOAT32 and g.shape == like.shape


# ---------------------------------------------------------------- distributions
@entry("normal_rsample")
def _(k, loc, scale, noise):
    return k.normal_rsample(loc, scale, noise) if _takes(loc, scale, noise) else NotImplemented


@entry("normal_log_prob")
def _(k, x, loc, scale):
    return k.normal_log_prob(x, loc, scale) if _takes(x, loc, scale) else NotImplemented


@entry("normal_log_prob_grads")
def _(k, x, loc, scale, g, wrt):
    if not (_takes(x, loc, scale) and _cotangent(g, x)):
        return NotImplemented
    return k.normal_log_prob_grads(x, loc, scale, g, wrt)


@entry("bernoulli_log_prob")
def _(k, x, param, is_logits):
    if not _takes(x, param):
        return NotImplemented
    return (k.bernoulli_logits_log_prob if is_logits else k.bernoulli_probs_log_prob)(x, param)


@entry("bernoulli_log_prob_grads")
def _(k, x, param, is_logits, g, wrt):
    if "value" in wrt or not (_takes(x, param) and _cotangent(g, x)):
        return NotImplemented
    name = "logits" if is_logits else "probs"
    kernel = k.bernoulli_logits_grad if is_logits else k.bernoulli_probs_grad
    return {name: kernel(x, param, g)} if name in wrt else {}


@entry("kl_normal_normal")
def _(k, loc_p, scale_p, loc_q, scale_q):
    return k.kl_normal_normal(loc_p, scale_p, loc_q, scale_q) if _takes(loc_p, scale_p, loc_q, scale_q) \
        else NotImplemented


@entry("kl_normal_normal_grads")
def _(k, loc_p, scale_p, loc_q, scale_q, g, wrt_p, wrt_q):
    if not (_takes(loc_p, scale_p, loc_q, scale_q) and _cotangent(g, loc_p)):
        return NotImplemented
    return k.kl_normal_normal_grads(loc_p, scale_p, loc_q, scale_q, g, wrt_p, wrt_q)


# ---------------------------------------------------------------- layers
@entry("add_bias")
def _(k, y, bias):
    if not (_takes(y) and _takes(bias) and type(bias) is type(y) and bias.shape == y.shape[-1:]):
        return NotImplemented
    return k.add_bias_(y, bias)


@entry("bias_grad")
def _(k, g):
    return k.bias_grad(g) if g.ndim == 2 and g.dtype == _FLOAT32 else NotImplemented


@entry("sigmoid")
def _(k, x):
    return k.sigmoid_forward(x) if _takes(x) else NotImplemented


@entry("sigmoid_backward")
def _(k, y, grad_y):
    return k.sigmoid_backward(y, grad_y) if _takes(y, grad_y) else NotImplemented


@entry("softplus_with_slope")
def _(k, x, beta, threshold):
    return k.softplus_forward(x, beta, threshold) if _takes(x) else NotImplemented


@entry("tanh_backward")
def _(k, y, grad_y):
    return k.tanh_backward(y, grad_y) if _takes(y, grad_y) else NotImplemented


@entry("relu_backward")
def _(k, y, grad_y):
    return k.relu_backward(y, grad_y) if _takes(y, grad_y) else NotImplemented


@entry("exp")
def _(k, x):
    return k.exp_forward(x) if _takes(x) else NotImplemented


# ------------------------------------------------------- the optimiser, and the finiteness check before an update
@entry("adam_update_all")
def _(k, work, clipped, only_if=None):
    """All params in one kernel call; the step counts (and ClippedAdam's decayed lr) as the reference.
    A flag ``only_if`` goes to a kernel that reads it on the device (the GPU's); the CPU's does not."""
    arrays = [a for param, grad, state, _ in work for a in (param, grad, state["exp_avg"], state["exp_avg_sq"])]
    kind = type(arrays[0])
    if not all(type(a) is kind and a.dtype == _FLOAT32 and a.flags.c_contiguous for a in arrays):
        return NotImplemented
    if only_if is not None and not (getattr(k, "ADAM_READS_FLAG", False) and type(only_if) is kind):
        return NotImplemented
    settings = []
    for _, _, state, hyper in work:
        step, lr = advance_counters(state, hyper, clipped)
        beta1, beta2 = hyper["betas"]
        clipping = {"clip": hyper["clip_norm"], "centered": hyper["centered_variance"],
                    "clipped_adam": True} if clipped else {}
        settings.append(k.adam_settings(lr=lr, beta1=beta1, beta2=beta2, eps=hyper["eps"], step=step,
                                        weight_decay=hyper["weight_decay"], **clipping))
    arrays = zip(*[(p, g, s["exp_avg"], s["exp_avg_sq"]) for p, g, s, _ in work])
    if only_if is None:
        k.adam_update_many(*arrays, settings)
    else:
        k.adam_update_many(*arrays, settings, only_if)
    return None


@entry("all_finite_flag")
def _(k, arrays):
    """The GPU's flag kernel (a CPU reads its answer for free, so it keeps the reference)."""
    kind = type(arrays[0])
    if not hasattr(k, "nonfinite_flag") or not all(type(a) is kind and a.dtype == _FLOAT32 for a in arrays):
        return NotImplemented
    return k.nonfinite_flag(arrays)[0] == 0


@entry("all_finite_many")
def _(k, arrays):
    kind = type(arrays[0])
    if not all(type(a) is kind and a.dtype == _FLOAT32 for a in arrays):
        return NotImplemented
    return k.all_finite_many(arrays)
