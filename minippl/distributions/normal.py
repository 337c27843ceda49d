"""Normal: a log-density, its derivatives, and the reparameterisation trick.

Teaches: writing ``log_prob`` and its three partial derivatives by hand, and
drawing ``value = loc + scale * eps`` so gradients flow from a sample back to
``loc`` and ``scale``. Builds on distribution.py (shapes and the VJP contract).
"""
import math

from .. import backend
from . import constraints
from .distribution import Distribution, check_args, grad_like, promote

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class Normal(Distribution):
    """Normal(loc, scale): density exp(-(x - loc)^2 / (2 scale^2)) / (scale sqrt(2 pi))."""

    has_rsample = True
    arg_names = ("loc", "scale")
    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.real

    def __init__(self, loc, scale, validate_args=None):
        batch_shape = check_args("Normal", loc=loc, scale=scale)
        self.loc = loc  # stored as passed: the ELBO finds gradients by id(loc)
        self.scale = scale
        super().__init__(batch_shape, validate_args=validate_args)

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
        fused = backend.fused_kernels(self.loc, self.scale, eps)
        if fused is not None and self.loc.shape == self.scale.shape == eps.shape:
            return fused.normal_rsample(self.loc, self.scale, eps), eps
        return self.loc + self.scale * eps, eps

    def rsample_vjp(self, noise, grad_value, wrt):
        grads = {}
        for name in self._check_wrt(wrt, with_value=False):
            if name == "loc":
                # d/dloc (loc + scale * eps) = 1
                grads["loc"] = grad_like(grad_value, self.loc, copy=True)
            else:
                # d/dscale (loc + scale * eps) = eps
                grads["scale"] = grad_like(grad_value * noise, self.scale)
        return grads

    def log_prob(self, value):
        fused = backend.fused_kernels(value, self.loc, self.scale)
        if fused is not None and value.shape == self.loc.shape == self.scale.shape:  # float32, one pass
            return self._batch_result(fused.normal_log_prob(value, self.loc, self.scale), value)
        xp, _, (x, loc, scale) = promote(value, self.loc, self.scale)
        z = (x - loc) / scale
        # log N(x | loc, scale) = -(x - loc)^2 / (2 scale^2) - log(scale) - log(2 pi) / 2
        return self._batch_result(-0.5 * z * z - xp.log(scale) - _HALF_LOG_2PI, value)

    def log_prob_vjp(self, value, grad_log_prob, wrt):
        wrt = self._check_wrt(wrt)
        fused = backend.fused_kernels(value, self.loc, self.scale)
        if (fused is not None and value.shape == self.loc.shape == self.scale.shape
                and backend.is_float32_like(grad_log_prob, value)):
            return fused.normal_log_prob_grads(value, self.loc, self.scale, grad_log_prob, wrt)  # one pass
        _, _, (x, loc, scale, g) = promote(value, self.loc, self.scale, grad_log_prob)
        z = (x - loc) / scale  # the standardised residual; every derivative uses it
        grads = {}
        if "value" in wrt or "loc" in wrt:
            g_residual = g * z / scale
            if "value" in wrt:
                # d/dx log N(x | loc, scale) = -(x - loc) / scale^2
                grads["value"] = grad_like(-g_residual, value)
            if "loc" in wrt:
                # d/dloc log N(x | loc, scale) = (x - loc) / scale^2
                grads["loc"] = grad_like(g_residual, self.loc)
        if "scale" in wrt:
            # d/dscale log N(x | loc, scale) = ((x - loc)^2 / scale^2 - 1) / scale
            grads["scale"] = grad_like(g * (z * z - 1) / scale, self.scale)
        return grads
