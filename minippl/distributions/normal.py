"""Normal: a log-density, its derivatives, and the reparameterisation trick.

Teaches: ``log_prob`` and its three partial derivatives written by hand, and the draw ``value = loc + scale * eps``
that lets gradients flow from a sample back to ``loc`` and ``scale``. Builds on distribution.py (shapes, VJPs).
"""
import math

from .. import backend
from . import constraints
from .distribution import Distribution, check_args, grad_like, promote

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class LocScale:
    """A location-scale family, x = loc + scale * eps (Normal, Cauchy, Laplace, Gumbel: only the
    law of eps differs): its two arguments, stored as given, and the sampler's VJP (``noise`` is eps).
    A subclass adds its support, log-density and noise."""

    has_rsample = True
    arg_names = ("loc", "scale")
    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}

    def __init__(self, loc, scale, validate_args=None):
        batch_shape = check_args(type(self).__name__, loc=loc, scale=scale)
        self.loc, self.scale = loc, scale  # stored as passed: the ELBO finds gradients by id(loc)
        super().__init__(batch_shape, validate_args=validate_args)

    def rsample_vjp(self, noise, grad_value, wrt):
        grads = {}
        for name in self._check_wrt(wrt, with_value=False):
            if name == "loc":  # d/dloc (loc + scale * eps) = 1
                grads["loc"] = grad_like(grad_value, self.loc, copy=True)
            else:  # d/dscale (loc + scale * eps) = eps
                grads["scale"] = grad_like(grad_value * noise, self.scale)
        return grads


class Normal(LocScale, Distribution):
    """Normal(loc, scale): density exp(-(x - loc)^2 / (2 scale^2)) / (scale sqrt(2 pi)).

    >>> import numpy as np
    >>> d = Normal(np.array([0.0, 1.0]), 2.0)  # batch_shape (2,): the loc is broadcast
    >>> d.log_prob(np.array(1.0))  # -(x - loc)^2 / 8 - log 2 - log(2 pi) / 2
    array([-1.73708571, -1.61208571])
    >>> grads = d.log_prob_vjp(np.array(1.0), np.ones(2), ["loc", "scale"])
    >>> grads["loc"]  # (x - loc) / scale^2
    array([0.25, 0.  ])
    >>> grads["scale"]  # ((x - loc)^2 / scale^2 - 1) / scale, summed to the float's shape ()
    array(-0.875)
    """

    support = constraints.real  # loc and scale, and how they are stored: LocScale above

    @property
    def mean(self):
        return backend.array_module(self.loc).broadcast_to(self.loc, self.batch_shape)

    @property
    def variance(self):
        return backend.array_module(self.scale).broadcast_to(self.scale**2, self.batch_shape)

    def rsample_with_noise(self, sample_shape=(), rng=None):
        rng = backend.global_rng() if rng is None else rng
        dtype = backend.float_dtype(self.loc, self.scale)
        eps = backend.standard_normal(rng, self.shape(sample_shape), dtype, like=self._like())
        return normal_rsample(self.loc, self.scale, eps), eps

    def log_prob(self, value):
        return self._batch_result(normal_log_prob(value, self.loc, self.scale), value)

    def log_prob_vjp(self, value, grad_log_prob, wrt):
        return normal_log_prob_grads(value, self.loc, self.scale, grad_log_prob, self._check_wrt(wrt))


# ---- the reference math: a fused kernel (kernels/registry.py) may replace each with the same numbers in one
# pass; the tests compare them
@backend.fusable("normal_rsample")
def normal_rsample(loc, scale, eps):
    return loc + scale * eps  # z = loc + scale * eps, eps ~ N(0, 1)


@backend.fusable("normal_log_prob")
def normal_log_prob(value, loc, scale):
    xp, _, (x, loc, scale) = promote(value, loc, scale)
    z = (x - loc) / scale
    # log N(x | loc, scale) = -(x - loc)^2 / (2 scale^2) - log(scale) - log(2 pi) / 2
    return -0.5 * z * z - xp.log(scale) - _HALF_LOG_2PI


@backend.fusable("normal_log_prob_grads")
def normal_log_prob_grads(value, loc_arg, scale_arg, grad_log_prob, wrt):
    """{name: d <g, log N(value | loc, scale)> / d name} for the names in ``wrt``."""
    _, _, (x, loc, scale, g) = promote(value, loc_arg, scale_arg, grad_log_prob)
    z = (x - loc) / scale  # the standardised residual; every derivative uses it
    grads = {}
    if "value" in wrt or "loc" in wrt:
        g_residual = g * z / scale
        if "value" in wrt:  # d/dx log N(x | loc, scale) = -(x - loc) / scale^2
            grads["value"] = grad_like(-g_residual, value)
        if "loc" in wrt:  # d/dloc log N(x | loc, scale) = (x - loc) / scale^2
            grads["loc"] = grad_like(g_residual, loc_arg)
    if "scale" in wrt:  # d/dscale log N(x | loc, scale) = ((x - loc)^2 / scale^2 - 1) / scale
        grads["scale"] = grad_like(g * (z * z - 1) / scale, scale_arg)
    return grads
