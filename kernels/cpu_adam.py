"""The fused Adam / ClippedAdam update (Numba): every parameter array, one pass each, one call.

Teaches: an optimiser step is elementwise, so it fuses like an activation: read the param, its
gradient and both moments once, write three of them back. One call updates every array (a
tuple of flat arrays and a table of per-array settings), so a VAE step pays one dispatch, not
ten. The readable reference is minippl/optim.py (adam_update); the entry points that
registry.py calls (adam_update_many, adam_update) are in cpu.py. Builds on cpu_math.py.
"""
import math

import numpy as np
from numba import njit

from .cpu_math import F32, JIT as _JIT


# ---------------------------------------------------------------- optimisers (flat 1-d arrays)
@njit(inline="always", **_JIT)
def _adam(param, grad, exp_avg, exp_avg_sq, settings):
    """One Adam or ClippedAdam step, in place, in one pass:
        g = clip(g, -clip, clip) + wd * theta        (clip = inf for Adam)
        m = b1 m + (1 - b1) g ;  v = b2 v + (1 - b2) d^2,  d = g or g - m (centered)
        theta -= step_size * m / (sqrt(v) / sqrt_bc2 + eps)
    Adam: step_size = lr / bc1 (torch's order); ClippedAdam: step_size = lr sqrt(bc2) / bc1 and
    sqrt_bc2 = 1 (eps added before the bias correction). settings: the row of ADAM_SETTINGS."""
    b1, b2, e, wd = F32(settings[0]), F32(settings[1]), F32(settings[2]), F32(settings[3])
    size, sqrt_bc2, c, centered = F32(settings[4]), F32(settings[5]), F32(settings[6]), settings[7] != 0.0
    one_m_b1, one_m_b2 = F32(1.0) - b1, F32(1.0) - b2
    for i in range(param.size):
        g = grad[i]
        g = -c if g < -c else (c if g > c else g)  # comparisons let NaN through, as np.clip
        g = g + wd * param[i]
        m = exp_avg[i] * b1 + g * one_m_b1
        d = g - m if centered else g
        v = exp_avg_sq[i] * b2 + (d * d) * one_m_b2
        exp_avg[i] = m
        exp_avg_sq[i] = v
        param[i] -= size * (m / (np.sqrt(v) / sqrt_bc2 + e))


ADAM_SETTINGS = ("beta1", "beta2", "eps", "weight_decay", "step_size", "sqrt_bias_correction2", "clip", "centered")


@njit(**_JIT)
def adam_many_kernel(params, grads, exp_avgs, exp_avg_sqs, settings):
    # every parameter array (tuples of flat arrays) in one call; settings[k]: array k's ADAM_SETTINGS
    for k in range(len(params)):
        _adam(params[k], grads[k], exp_avgs[k], exp_avg_sqs[k], settings[k])


def adam_settings(*, lr, beta1, beta2, eps, weight_decay, step, clip=math.inf, centered=False, clipped_adam=False):
    """One parameter's row of ADAM_SETTINGS: Adam (torch's order of operations) or, with
    ``clipped_adam``, Pyro's ClippedAdam; ``step`` counts from 1, ``lr`` is this step's rate."""
    bias_correction1, bias_correction2 = 1.0 - beta1**step, 1.0 - beta2**step
    if clipped_adam:
        step_size, sqrt_bc2 = lr * math.sqrt(bias_correction2) / bias_correction1, 1.0
    else:
        step_size, sqrt_bc2 = lr / bias_correction1, math.sqrt(bias_correction2)
    return (beta1, beta2, eps, weight_decay, step_size, sqrt_bc2, clip, float(centered))
