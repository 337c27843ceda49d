"""Bernoulli: a discrete likelihood, and computing it without overflow.

Teaches: two parametrisations of one distribution (``probs`` or ``logits``), and keeping log-densities and their
gradients finite in float32 (clamping probs; softplus and sigmoid written so that ``exp`` never overflows).
Builds on distribution.py. Bernoulli has no reparameterised sampler.
"""
import numpy as np

from .. import backend, validation
from . import constraints
from .distribution import Distribution, check_args, grad_like, promote


class ProbsOrLogits:
    """Given ``probs`` or ``logits`` (exactly one, stored as given in ``_param``, named by ``arg_names``): that
    argument, and the other as a property. Bernoulli, Binomial and Geometric use it (Bernoulli clamps probs first);
    Categorical and OneHotCategorical use its ``one_of`` check."""

    @staticmethod
    def one_of(dist_name, probs, logits):
        """``(name, argument)`` of the one given; a ValueError naming ``dist_name`` unless exactly one is."""
        if (probs is None) == (logits is None):
            given = "both" if probs is not None else "neither"
            raise ValueError(f"{dist_name} takes exactly one of probs= or logits=, got {given}")
        return ("probs", probs) if probs is not None else ("logits", logits)

    def arg_arrays(self):
        return {self.arg_names[0]: self._param}

    @property
    def probs(self):
        if self.arg_names == ("probs",):
            return self._param
        return backend.sigmoid(promote(self._param)[2][0])  # p = sigmoid(l)

    @property
    def logits(self):
        if self.arg_names == ("logits",):
            return self._param
        xp, _, (p,) = promote(self._param)
        with np.errstate(divide="ignore"):  # p = 0 or 1: logits -inf or inf, as torch gives
            return xp.log(p) - xp.log1p(-p)  # l = log p - log(1 - p)


class Bernoulli(ProbsOrLogits, Distribution):
    """Bernoulli(probs=None, logits=None): P(x = 1) = probs = sigmoid(logits).

    Give exactly one of ``probs`` or ``logits``; ``arg_names`` is that one, the other a computed property.
    ``log_prob`` accepts values anywhere in [0, 1], not just {0, 1}: ``x log p + (1 - x) log(1 - p)`` is then the
    binary cross-entropy used for grey-scale pixels (as in Pyro's VAE example; not a normalised density: binarise
    the data for one). Given ``probs``, they are clamped to [eps, 1 - eps] (eps = the dtype's machine epsilon, as
    torch does) so probs of exactly 0 or 1 give finite log-probs; the gradient is zero where the clamp is active.
    """

    support = constraints.boolean  # what sample() returns; log_prob also takes [0, 1]
    arg_constraints = {"probs": constraints.unit_interval, "logits": constraints.real}
    has_enumerate_support = True  # enumerate_support() below

    def __init__(self, probs=None, logits=None, validate_args=None):
        name, self._param = self.one_of("Bernoulli", probs, logits)  # stored as passed
        self.arg_names = (name,)
        super().__init__(check_args("Bernoulli", **{name: self._param}), validate_args=validate_args)

    def _validate_sample(self, value, what="value", masked=False):
        # grey values in [0, 1] are accepted (see the class docstring), so the check is unit_interval
        validation.check_support(self, value, constraints.unit_interval, what, masked, hint=(
            " Fix: Bernoulli takes 0/1 values, or grey values in [0, 1] (e.g. pixels / 255); binarise "
            "them with (x > 0.5) or (rng.random(x.shape) < x) for a proper Bernoulli likelihood."))

    @property
    def logits(self):  # ProbsOrLogits's, with probs clamped first
        if self.arg_names == ("logits",):
            return self._param
        xp, dtype, (probs,) = promote(self._param)
        p = self._clamp(probs, dtype, xp)
        return xp.log(p) - xp.log1p(-p)  # l = log p - log(1 - p)

    @staticmethod
    def _clamp(probs, dtype, xp):
        eps = xp.finfo(dtype).eps
        return xp.clip(probs, eps, 1 - eps)

    @property
    def mean(self):
        return backend.array_module(self._param).broadcast_to(self.probs, self.batch_shape)

    @property
    def variance(self):
        p = self.probs
        return backend.array_module(self._param).broadcast_to(p * (1 - p), self.batch_shape)

    def enumerate_support(self, expand=True):
        """The values 0., 1. along a new leftmost dim: shape ``(2,) + batch_shape`` if ``expand``,
        else ``(2,) + (1,) * len(batch_shape)`` (torch's shapes)."""
        xp = backend.array_module(self._param)
        values = xp.arange(2, dtype=backend.float_dtype(self._param)).reshape((-1,) + (1,) * len(self.batch_shape))
        return xp.broadcast_to(values, (2,) + self.batch_shape) if expand else values

    def sample(self, sample_shape=(), rng=None):
        rng = backend.global_rng() if rng is None else rng
        dtype = backend.float_dtype(self._param)
        u = backend.uniform(rng, self.shape(sample_shape), dtype, like=self._like())
        return (u < self.probs).astype(dtype)

    def log_prob(self, value):
        return self._batch_result(bernoulli_log_prob(value, self._param, self.arg_names == ("logits",)), value)

    def log_prob_vjp(self, value, grad_log_prob, wrt):
        return bernoulli_log_prob_grads(value, self._param, self.arg_names == ("logits",), grad_log_prob,
                                        self._check_wrt(wrt))


# ---- the reference math: a fused kernel (minippl/kernels/registry.py) may replace each; the tests compare them
@backend.fusable("bernoulli_log_prob")
def bernoulli_log_prob(value, param, is_logits):
    xp, dtype, (x, param) = promote(value, param)
    if is_logits:
        # log p(x | l) = x log sigmoid(l) + (1 - x) log sigmoid(-l) = x l - softplus(l)
        return x * param - backend.softplus(param)
    p = Bernoulli._clamp(param, dtype, xp)
    # log p(x | p) = x log p + (1 - x) log(1 - p)
    return x * xp.log(p) + (1 - x) * xp.log1p(-p)


@backend.fusable("bernoulli_log_prob_grads")
def bernoulli_log_prob_grads(value, param_arg, is_logits, grad_log_prob, wrt):
    """{name: d <g, log p(value)> / d name} for "value" and the one argument, probs or logits."""
    xp, dtype, (x, param, g) = promote(value, param_arg, grad_log_prob)
    grads = {}
    if is_logits:
        if "value" in wrt:  # d/dx (x l - softplus(l)) = l
            grads["value"] = grad_like(g * param, value)
        if "logits" in wrt:  # d/dl (x l - softplus(l)) = x - sigmoid(l)
            grads["logits"] = grad_like(g * (x - backend.sigmoid(param)), param_arg)
        return grads
    p = Bernoulli._clamp(param, dtype, xp)
    if "value" in wrt:  # d/dx (x log p + (1 - x) log(1 - p)) = log p - log(1 - p)
        grads["value"] = grad_like(g * (xp.log(p) - xp.log1p(-p)), value)
    if "probs" in wrt:  # d/dp (x log p + (1 - x) log(1 - p)) = x / p - (1 - x) / (1 - p); 0 where clamped
        unclamped = p == param  # torch's clamp passes the gradient at the bounds too
        grads["probs"] = grad_like(xp.where(unclamped, g * (x / p - (1 - x) / (1 - p)), 0.0), param_arg)
    return grads
