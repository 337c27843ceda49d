"""Uniform: a distribution whose support depends on its arguments.

Teaches: a log-density that is -inf outside [low, high), and gradients that
flow to the *bounds* both through a reparameterised draw ``low + (high - low) u``
and through the normaliser ``-log(high - low)``. Builds on distribution.py.
"""
from .. import backend, validation
from . import constraints
from .distribution import Distribution, check_args, grad_like, promote


class Uniform(Distribution):
    """Uniform(low, high): density 1 / (high - low) on [low, high)."""

    has_rsample = True
    arg_names = ("low", "high")
    arg_constraints = {"low": constraints.real, "high": constraints.real}

    def __init__(self, low, high, validate_args=None):
        batch_shape = check_args("Uniform", low=low, high=high)
        self.low = low  # stored as passed: the ELBO finds gradients by id()
        self.high = high
        super().__init__(batch_shape, validate_args=validate_args)

    def _check_args(self):
        super()._check_args()
        validation.check_less_than("Uniform", "low", self.low, "high", self.high)

    def _validate_sample(self, value, what="value", masked=False):
        # the support depends on the arguments: [low, high), half-open as log_prob is
        xp, _, (x, low, high) = promote(value, self.low, self.high)
        outside = (x < low) | (x >= high) | (x != x)
        if bool(outside.any()):
            validation.report_outside(self, value, xp.broadcast_to(outside, backend.shape_of(value)),
                                      "[low, high)", what, masked)

    @property
    def support(self):
        return constraints.interval(self.low, self.high)

    @property
    def mean(self):
        return backend.array_module(self.low, self.high).broadcast_to((self.low + self.high) / 2, self.batch_shape)

    @property
    def variance(self):
        width = self.high - self.low
        return backend.array_module(self.low, self.high).broadcast_to(width * width / 12, self.batch_shape)

    def rsample_with_noise(self, sample_shape=(), rng=None):
        rng = backend.global_rng() if rng is None else rng
        dtype = backend.float_dtype(self.low, self.high)
        u = backend.uniform(rng, self.shape(sample_shape), dtype, like=self._like())
        return self.low + (self.high - self.low) * u, u

    def rsample_vjp(self, noise, grad_value, wrt):
        grads = {}
        for name in self._check_wrt(wrt, with_value=False):
            if name == "low":
                # d/dlow (low + (high - low) u) = 1 - u
                grads["low"] = grad_like(grad_value * (1 - noise), self.low)
            else:
                # d/dhigh (low + (high - low) u) = u
                grads["high"] = grad_like(grad_value * noise, self.high)
        return grads

    def log_prob(self, value):
        xp, _, (x, low, high) = promote(value, self.low, self.high)
        inside = (low <= x) & (x < high)
        # log p(x) = -log(high - low) on [low, high), -inf elsewhere
        return self._batch_result(xp.where(inside, -xp.log(high - low), -xp.inf), value)

    def log_prob_vjp(self, value, grad_log_prob, wrt):
        wrt = self._check_wrt(wrt)
        xp, dtype, (x, low, high, g) = promote(value, self.low, self.high, grad_log_prob)
        # no gradient where log p = -inf (the contract; torch's is that of -log(high - low) whatever x is)
        g = xp.where((low <= x) & (x < high), g, 0)
        grads = {}
        if "value" in wrt:
            # d/dx log p(x) = 0: the density is flat inside the support
            grads["value"] = xp.zeros(backend.shape_of(value), dtype)
        if "low" in wrt:
            # d/dlow -log(high - low) = 1 / (high - low)
            grads["low"] = grad_like(g / (high - low), self.low)
        if "high" in wrt:
            # d/dhigh -log(high - low) = -1 / (high - low)
            grads["high"] = grad_like(-g / (high - low), self.high)
        return grads
