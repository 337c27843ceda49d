"""Dirichlet: a vector event drawn by normalising Gamma draws, differentiated through them.

Teaches: implicit reparameterisation carries over to anything computed from Gamma draws, by
the chain rule. A Dirichlet(alpha) vector is ``x = z / sum(z)`` with independent
``z_i ~ Gamma(alpha_i, 1)``; each ``z_i`` moves with its own ``alpha_i`` by gamma.py's slope
``dz_i/dalpha_i``, and the normalisation ``x_i = z_i / S`` has the Jacobian
``dx_i/dz_j = (delta_ij - x_i) / S``, so a cotangent ``g`` on x reaches ``alpha_j`` as

    d <g, x> / dalpha_j = (g_j - <g, x>) / S * dz_j/dalpha_j.

The noise is the Gamma draws themselves (float64, by gamma.py's inverse-CDF sampler), so a draw
is a deterministic function of the seed and alpha, as the Distribution contract's test wants.
Also: an event of size K (``event_shape = (K,)``), ``constraints.simplex`` as support, and the
closed-form KL between two Dirichlets (kl.py). Builds on gamma.py (the sampler, the slope and
digamma) and counts.py (``lgamma``).
"""
import numpy as np

from .. import backend
from ..backend import shape_of
from . import constraints
from .counts import lgamma
from .distribution import Distribution, check_types, grad_like, promote
from .gamma import _host_slope, _log_at_edge, _power_of_zero, _standard_gamma, digamma


class Dirichlet(Distribution):
    """Dirichlet(concentration): density ``Gamma(a_0) / prod Gamma(a_i) * prod x_i^(a_i - 1)`` on
    the simplex, ``a_0 = sum_i a_i``; the last dim of ``concentration`` indexes the K entries
    (event_shape ``(K,)``). Mean ``a_i / a_0``, variance ``a_i (a_0 - a_i) / (a_0^2 (a_0 + 1))``.

    >>> d = Dirichlet(np.array([1.0, 2.0, 3.0]))
    >>> round(float(d.log_prob(np.array([0.2, 0.3, 0.5]))), 8)  # log 60 + log 0.3 + 2 log 0.5
    1.5040774
    >>> d.mean
    array([0.16666667, 0.33333333, 0.5       ])
    >>> x = d.sample((4,), np.random.default_rng(0))
    >>> x.shape, bool(np.allclose(x.sum(-1), 1))
    ((4, 3), True)
    """

    has_rsample = True
    arg_names = ("concentration",)
    arg_constraints = {"concentration": constraints.positive}
    support = constraints.simplex

    def __init__(self, concentration, validate_args=None):
        check_types("Dirichlet", concentration=concentration)
        shape = shape_of(concentration)
        if len(shape) < 1:
            raise ValueError("Dirichlet: concentration needs a last dim indexing the K entries, e.g. shape (K,) "
                             f"or (batch, K); got shape {shape}. Wrap a scalar as np.array([...]).")
        self.concentration = concentration  # as given: the ELBO finds gradients by id()
        super().__init__(shape[:-1], shape[-1:], validate_args=validate_args)

    @property
    def mean(self):
        xp, _, (a,) = promote(self.concentration)
        return xp.broadcast_to(a / a.sum(-1, keepdims=True), self.shape())

    @property
    def variance(self):
        xp, _, (a,) = promote(self.concentration)
        total = a.sum(-1, keepdims=True)  # a_i (a_0 - a_i) / (a_0^2 (a_0 + 1))
        return xp.broadcast_to(a * (total - a) / (total * total * (total + 1)), self.shape())

    # ---------------------------------------------------------------- sampling
    def rsample_with_noise(self, sample_shape=(), rng=None):
        rng = backend.global_rng() if rng is None else rng
        xp, dtype, (a,) = promote(self.concentration)
        z = xp.asarray(_standard_gamma(rng, a, self.shape(sample_shape)))  # noise: z_i ~ Gamma(a_i, 1), float64
        info = np.finfo(dtype)  # x = z / sum(z) in float64, then kept inside (0, 1] in dtype
        x = xp.clip((z / z.sum(-1, keepdims=True)).astype(dtype), info.tiny, 1)
        return x, z

    def rsample_vjp(self, noise, grad_value, wrt):
        z = noise
        xp, dtype, (a, g) = promote(self.concentration, grad_value)
        total = z.sum(-1, keepdims=True)
        x = z / total
        grads = {}
        for name in self._check_wrt(wrt, with_value=False):  # the only name is "concentration"
            # d <g, x> / dz_j = (g_j - <g, x>) / S, since dx_i/dz_j = (delta_ij - x_i) / S
            grad_z = (g - (g * x).sum(-1, keepdims=True)) / total
            slope = xp.asarray(_host_slope(a, z))  # dz_j/da_j, gamma.py's implicit slope
            grads[name] = grad_like((grad_z * slope).astype(dtype), self.concentration)
        return grads

    # ------------------------------------------------------------- log-density
    def _parts(self, value, *more):
        self._check_event_shape(value)
        xp, dtype, (x, a, *more) = promote(value, self.concentration, *more)
        positive = x > 0
        return xp, positive, x, xp.where(positive, x, 1), a, more  # log and / only ever see positive numbers

    def log_prob(self, value):
        xp, positive, x, safe_x, a, _ = self._parts(value)
        # log p = lgamma(a_0) - sum_i lgamma(a_i) + sum_i (a_i - 1) log x_i; at x_i = 0 the term is 0, +inf or
        # -inf as a_i = 1, < 1 or > 1, as Beta's at its edges (two zeros with a_i < 1 < a_j: inf - inf, NaN,
        # the density has no limit there); a negative entry (or NaN): -inf
        terms = xp.where(positive, (a - 1) * xp.log(safe_x), _power_of_zero(a - 1, xp))
        log_p = lgamma(a.sum(-1)) - lgamma(a).sum(-1) + terms.sum(-1)
        return self._batch_result(xp.where(xp.all(x >= 0, axis=-1), log_p, -xp.inf), value)

    def log_prob_vjp(self, value, grad_log_prob, wrt):
        wrt = self._check_wrt(wrt)
        xp, positive, x, safe_x, a, (g,) = self._parts(value, grad_log_prob)
        # gradients only where log p is finite (the contract): every entry positive, or 0 with a_i = 1 (its
        # factor x_i^0 is 1; the slopes are one-sided there); one cotangent per event, for its K entries
        g = xp.where(xp.all(positive | ((x == 0) & (a == 1)), axis=-1), g, 0)[..., None]
        grads = {}
        if "value" in wrt:  # d/dx_i log p = (a_i - 1) / x_i  (0 / 1 at an entry x_i = 0 with a_i = 1)
            grads["value"] = grad_like(g * (a - 1) / safe_x, value)
        if "concentration" in wrt:  # d/da_i log p = psi(a_0) - psi(a_i) + log x_i  (-inf at x_i = 0)
            log_x = _log_at_edge(xp.log(safe_x), positive, g, xp)
            psi_total = digamma(a.sum(-1, keepdims=True))
            grads["concentration"] = grad_like(g * (psi_total - digamma(a) + log_x), self.concentration)
        return grads
