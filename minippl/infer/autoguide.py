"""Automatic guides: AutoNormal (mean-field Normal in unconstrained space), AutoDelta (MAP), and
AutoDiagonalNormal, AutoMultivariateNormal and AutoLowRankMultivariateNormal (one Normal over all
latent sites, packed in a vector).

Teaches: a guide built by reading the model (one blocked *prototype* run lists the latent sites,
shapes, plates, supports), and the change of variables x = T(u), log q(x) = log q(u) - log|dx/du|,
with T and that term as recorded layers so the tape carries their VJPs. Builds on
initialization.py (the prototype run's first values), change_of_variables.py (T as a layer),
primitives.py and plate.py.
"""
import contextlib
import statistics

import numpy as np

from .. import backend
from ..distributions import constraints
from ..distributions.constraint_registry import IdentityTransform, biject_to
from ..distributions.delta import Delta
from ..distributions.multivariate_normal import LowRankMultivariateNormal, MultivariateNormal
from ..distributions.normal import Normal
from ..handlers import block, trace
from ..params import get_param_store
from ..plate import plate
from ..primitives import param, sample
from .change_of_variables import ToConstrained
from .initialization import (InitMessenger, init_to_feasible, init_to_mean, init_to_median, init_to_sample,
                             init_to_value, innermost_rng)


# ---------------------------------------------------------------- the guides
class _LatentSite:
    """What a guide keeps about one latent site of the prototype trace."""

    def __init__(self, guide_name, site):
        self.name, fn = site["name"], site["fn"]
        try:
            self.support = fn.support
            self.transform = biject_to(self.support)
        except (NotImplementedError, TypeError) as error:
            raise ValueError(
                f"{guide_name} cannot guide sample site '{self.name}' ({type(fn).__name__}): its support "
                f"cannot be reached from the real line ({error}). Discrete latent sites need a hand-written "
                f"guide (e.g. a Categorical or Bernoulli with learnable probs); or block the site from the "
                f"autoguide by observing it.") from None
        self.event_dim = fn.event_dim
        self.frames = [f for f in site["cond_indep_stack"] if f.dim is not None]  # vectorised plates
        self.constrain = ToConstrained(self.transform, self.event_dim)
        self.is_real = isinstance(self.transform, IdentityTransform)
        value = np.asarray(site["value"], dtype=backend.float_dtype(site["value"]))
        for frame in self.frames:  # subsampled: repeat the init periodically up to the full size
            if frame.full_size != frame.size:
                axis = frame.dim - self.event_dim
                value = np.take(value, np.arange(frame.full_size) % frame.size, axis=axis)
        self.init_value = value  # constrained, full size


class AutoGuide:
    """Base of the automatic guides: the prototype trace, plates, and what a call returns.

    Calling the guide with the model's arguments runs it (the first call also traces the
    model once, blocked, to find its latent sites) and returns ``{site: value}``.
    Sites inside plates get parameters of the plates' full size and are sampled inside
    plates of the same name, dim and size; the params are read with ``event_dim``, so a
    subsampling plate picks its items out of them (plate.py), and subsampled models need
    no extra code.
    """

    def __init__(self, model, *, create_plates=None):
        if create_plates is not None:
            raise NotImplementedError("create_plates: minippl's autoguides re-create the model's plates, "
                                      "subsampling included, by themselves; leave it None")
        self.model = model
        self.prototype_trace = None
        self._sites = []

    @property
    def prefix(self):
        """The start of every param name of this guide (Pyro uses the class name)."""
        return type(self).__name__

    def __call__(self, *args, **kwargs):
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        return self.forward(*args, **kwargs)

    def _setup_prototype(self, *args, **kwargs):
        with block(hide_calls=True), trace() as tape, InitMessenger(self.init_loc_fn, innermost_rng()):
            self.model(*args, **kwargs)
        self.prototype_trace = tape.trace
        self._sites = [_LatentSite(self.prefix, site) for site in tape.trace.sample_sites().values()
                       if not site["is_observed"]]
        store = get_param_store()
        for site in self._sites:  # made now (not at the first read) so median() works at once
            for name, init, constraint in self._params_of(site):
                store.setdefault(name, init, constraint)

    def _params_of(self, site):
        """``[(param name, initial constrained value, constraint)]`` for one latent site."""
        raise NotImplementedError

    def _require_prototype(self, args, kwargs, what):
        if self.prototype_trace is None:
            if not (args or kwargs):
                raise ValueError(f"{self.prefix}.{what}() before the guide has run: call the guide (or SVI.step) "
                                 f"once, or pass the model's arguments to {what}(...)")
            self._setup_prototype(*args, **kwargs)

    @contextlib.contextmanager
    def _plates(self, site, indices):
        """Enter the plates around ``site``.

        ``indices`` (plate name -> the items drawn in this call) keeps every site of one call
        on the same subsample, as the model will see it through replay.
        """
        with contextlib.ExitStack() as stack:
            for frame in site.frames:
                indices[frame.name] = stack.enter_context(plate(
                    frame.name, frame.full_size, subsample_size=frame.size, dim=frame.dim,
                    subsample=indices.get(frame.name)))
            yield

    def forward(self, *args, **kwargs):
        raise NotImplementedError

    def median(self, *args, **kwargs):
        raise NotImplementedError


def _standard_normal_quantiles(quantiles):
    """z_q with P(Z <= z_q) = q for a standard Normal Z, for each q strictly inside (0, 1)."""
    qs = [float(q) for q in np.atleast_1d(quantiles)]
    if not all(0.0 < q < 1.0 for q in qs):
        raise ValueError(f"quantiles must lie strictly between 0 and 1, got {qs}")
    return [statistics.NormalDist().inv_cdf(q) for q in qs]


class AutoNormal(AutoGuide):
    """Pyro's AutoNormal: each latent site is T(u), u ~ Normal(loc, scale) independently per element.

    T = biject_to(site support); params "AutoNormal.locs.<site>" (real) and
    "AutoNormal.scales.<site>" (positive, starting at ``init_scale``; ``softplus_positive``, as in
    Pyro: a store saved when it was ``positive``, i.e. exp, keeps that constraint per param and
    loads and trains as before). The auxiliary site
    "<site>_unconstrained" carries log q(u); the model's site gets
    ``Delta(T(u), log_density=-log|dT/du|)``, so together they score log q of the value.

    >>> import minippl, minippl.distributions as dist
    >>> def model():
    ...     minippl.sample("noise", dist.Uniform(0., 10.))
    >>> minippl.clear_param_store()
    >>> guide = AutoNormal(model)
    >>> sorted(guide())
    ['noise']
    >>> sorted(minippl.get_param_store().keys())
    ['AutoNormal.locs.noise', 'AutoNormal.scales.noise']
    >>> float(guide.median()["noise"])   # init_to_feasible: the interval's midpoint
    5.0
    >>> minippl.clear_param_store()
    """

    scale_constraint = constraints.softplus_positive  # Pyro's; exp (constraints.positive) before

    def __init__(self, model, *, init_loc_fn=init_to_feasible, init_scale=0.1, create_plates=None):
        if not (isinstance(init_scale, float) and init_scale > 0):
            raise ValueError(f"AutoNormal: init_scale must be a positive float, got {init_scale!r}")
        super().__init__(model, create_plates=create_plates)
        self.init_loc_fn, self.init_scale = init_loc_fn, init_scale

    def _params_of(self, site):
        loc = np.asarray(site.transform.inverse(site.init_value), dtype=site.init_value.dtype)
        return [(f"{self.prefix}.locs.{site.name}", loc, constraints.real),
                (f"{self.prefix}.scales.{site.name}", np.full_like(loc, self.init_scale), self.scale_constraint)]

    def forward(self, *args, **kwargs):
        indices, result = {}, {}
        for site in self._sites:
            with self._plates(site, indices):
                loc = param(f"{self.prefix}.locs.{site.name}", event_dim=site.event_dim)
                scale = param(f"{self.prefix}.scales.{site.name}", event_dim=site.event_dim)
                u = sample(f"{site.name}_unconstrained", Normal(loc, scale).to_event(site.event_dim),
                           infer={"is_auxiliary": True})
                value, log_density = (u, 0.0) if site.is_real else site.constrain(u)
                result[site.name] = sample(site.name, Delta(value, log_density=log_density, event_dim=site.event_dim))
        return result

    def median(self, *args, **kwargs):
        """``{site: T(loc)}``: the posterior median of each latent site (T is monotone)."""
        self._require_prototype(args, kwargs, "median")
        store = get_param_store()
        return {site.name: np.array(site.transform.forward(store[f"{self.prefix}.locs.{site.name}"]), copy=True)
                for site in self._sites}

    def quantiles(self, quantiles, *args, **kwargs):
        """``{site: array of shape (len(quantiles),) + site shape}``: T(loc + scale * z_q) for each q."""
        self._require_prototype(args, kwargs, "quantiles")
        normal_quantiles = _standard_normal_quantiles(quantiles)
        store, result = get_param_store(), {}
        for site in self._sites:
            loc = store[f"{self.prefix}.locs.{site.name}"]
            scale = store[f"{self.prefix}.scales.{site.name}"]
            result[site.name] = np.stack([site.transform.forward(loc + scale * z) for z in normal_quantiles])
        return result


class AutoDelta(AutoGuide):
    """Pyro's AutoDelta: a point estimate per latent site, so SVI finds the MAP.

    The param "AutoDelta.<site>" lives in the site's support (stored unconstrained by the
    param store, as any constrained param); the site is ``Delta(value)``, whose log q is 0.
    (MAP in the constrained space, as in Pyro: no Jacobian term.)
    """

    def __init__(self, model, *, init_loc_fn=init_to_median, create_plates=None):
        super().__init__(model, create_plates=create_plates)
        self.init_loc_fn = init_loc_fn

    def _params_of(self, site):
        return [(f"{self.prefix}.{site.name}", np.array(site.init_value, copy=True), site.support)]

    def forward(self, *args, **kwargs):
        indices, result = {}, {}
        for site in self._sites:
            with self._plates(site, indices):
                value = param(f"{self.prefix}.{site.name}", event_dim=site.event_dim)
                result[site.name] = sample(site.name, Delta(value, event_dim=site.event_dim))
        return result

    def median(self, *args, **kwargs):
        """``{site: the point estimate}`` (a copy)."""
        self._require_prototype(args, kwargs, "median")
        store = get_param_store()
        return {site.name: np.array(store[f"{self.prefix}.{site.name}"], copy=True) for site in self._sites}


class AutoDiagonalNormal(AutoGuide):
    """Pyro's AutoDiagonalNormal (an AutoContinuous): one Normal over all latent sites at once.

    Each site's unconstrained value is flattened and the pieces concatenated, in the model's
    order, into one vector u of length ``latent_dim``; u ~ Normal(loc, scale).to_event(1) is the
    auxiliary site "_AutoDiagonalNormal_latent" (params "AutoDiagonalNormal.loc" and
    "AutoDiagonalNormal.scale", softplus_positive, starting at ``init_scale``). Each site gets
    its slice of u, reshaped, through ToConstrained (change_of_variables.py): ``Delta(T(u_s), -log|dT/du_s|)``.
    Slicing and reshaping a traced u are recorded NumPy operations, so no VJP is new here.
    The latent dimension is fixed, so a plate that subsamples a latent site is refused.
    """

    scale_constraint = constraints.softplus_positive

    def __init__(self, model, init_loc_fn=init_to_median, init_scale=0.1):
        if not (isinstance(init_scale, float) and init_scale > 0):
            raise ValueError(f"AutoDiagonalNormal: init_scale must be a positive float, got {init_scale!r}")
        super().__init__(model)
        self.init_loc_fn, self.init_scale = init_loc_fn, init_scale

    def _params_of(self, site):
        return []  # the two params cover every site: made in _setup_prototype

    def _setup_prototype(self, *args, **kwargs):
        super()._setup_prototype(*args, **kwargs)
        inits = [np.asarray(site.transform.inverse(site.init_value)) for site in self._sites]
        self._shapes = [init.shape for init in inits]
        self.latent_dim = sum(init.size for init in inits)
        subsampled = [(site.name, frame.name) for site in self._sites
                      for frame in self.prototype_trace.nodes[site.name]["cond_indep_stack"]
                      if frame.full_size != frame.size]
        if subsampled or not self.latent_dim:
            self.prototype_trace, self._sites = None, []  # a later call fails the same way
        if subsampled:
            site_name, plate_name = subsampled[0]
            raise ValueError(f"{self.prefix}: sample site '{site_name}' is in plate '{plate_name}', which subsamples, "
                             f"so its number of values changes with the data; {self.prefix} (like Pyro's "
                             f"AutoContinuous) needs a fixed latent dimension. Use AutoNormal or AutoDelta for "
                             f"subsampled local latents.")
        if not self.latent_dim:
            raise RuntimeError(f"{self.prefix} found no latent variables; use an empty guide instead")
        loc = np.concatenate([init.reshape(-1) for init in inits])
        store = get_param_store()
        for name, init, constraint in self._latent_params(loc):
            if backend.shape_of(store.setdefault(name, init, constraint)) != init.shape:
                raise ValueError(f"param '{name}' in the store has shape {backend.shape_of(store[name])}, but the "
                                 f"model has {self.latent_dim} unconstrained latent values: clear the param store")

    def _latent_params(self, loc):
        """``[(param name, initial constrained value, constraint)]`` of the packed latent's distribution."""
        return [(f"{self.prefix}.loc", loc, constraints.real),
                (f"{self.prefix}.scale", np.full_like(loc, self.init_scale), self.scale_constraint)]

    def _loc_scale(self):
        """Plain ``(loc, marginal sd)`` of the packed latent, for median and quantiles."""
        store = get_param_store()
        return store[f"{self.prefix}.loc"], store[f"{self.prefix}.scale"]

    def _unpack_latent(self, latent):
        """Yield ``(site, its unconstrained value)``: the site's slice of the last dim, reshaped
        (leading dims of ``latent``, e.g. one per quantile, are kept)."""
        position = 0
        for site, shape in zip(self._sites, self._shapes):
            size = int(np.prod(shape, dtype=np.int64))
            yield site, latent[..., position:position + size].reshape(tuple(latent.shape[:-1]) + shape)
            position += size

    def get_posterior(self, *args, **kwargs):
        """``Normal(loc, scale).to_event(1)`` over the packed unconstrained latent, current params."""
        self._require_prototype(args, kwargs, "get_posterior")
        return Normal(param(f"{self.prefix}.loc"), param(f"{self.prefix}.scale")).to_event(1)

    def sample_latent(self, *args, **kwargs):
        """A draw of the packed unconstrained latent: the auxiliary site "_AutoDiagonalNormal_latent"."""
        return sample(f"_{self.prefix}_latent", self.get_posterior(*args, **kwargs), infer={"is_auxiliary": True})

    def forward(self, *args, **kwargs):
        latent = self.sample_latent()
        indices, result = {}, {}
        for site, u in self._unpack_latent(latent):
            value, log_density = (u, 0.0) if site.is_real else site.constrain(u)
            with self._plates(site, indices):
                result[site.name] = sample(site.name, Delta(value, log_density=log_density, event_dim=site.event_dim))
        return result

    def median(self, *args, **kwargs):
        """``{site: T(its slice of loc)}`` (T is monotone, so the median maps to the median)."""
        self._require_prototype(args, kwargs, "median")
        loc, _ = self._loc_scale()
        return {site.name: np.array(site.transform.forward(u), copy=True) for site, u in self._unpack_latent(loc)}

    def quantiles(self, quantiles, *args, **kwargs):
        """``{site: array of shape (len(quantiles),) + site shape}``: T of loc + scale * z_q, sliced."""
        self._require_prototype(args, kwargs, "quantiles")
        loc, scale = self._loc_scale()
        z = np.asarray(_standard_normal_quantiles(quantiles), dtype=loc.dtype)[:, None]  # (Q, 1) against (D,)
        latents = loc + scale * z
        return {site.name: site.transform.forward(u) for site, u in self._unpack_latent(latents)}


class AutoMultivariateNormal(AutoDiagonalNormal):
    """Pyro's AutoMultivariateNormal: AutoDiagonalNormal with a full covariance, so the packed
    latent is ``MultivariateNormal(loc, scale_tril=L)``; params "AutoMultivariateNormal.loc" and
    "AutoMultivariateNormal.scale_tril" (``lower_cholesky``: exp on the diagonal, where Pyro's is
    softplus_lower_cholesky), L starting at ``init_scale`` times the identity. Quantiles use the
    marginal sds, the row norms of L."""

    def _latent_params(self, loc):
        return [(f"{self.prefix}.loc", loc, constraints.real),
                (f"{self.prefix}.scale_tril", self.init_scale * np.eye(loc.size, dtype=loc.dtype),
                 constraints.lower_cholesky)]

    def _loc_scale(self):
        store = get_param_store()
        scale_tril = store[f"{self.prefix}.scale_tril"]
        return store[f"{self.prefix}.loc"], np.sqrt(np.square(scale_tril).sum(-1))

    def get_posterior(self, *args, **kwargs):
        """``MultivariateNormal(loc, scale_tril=L)`` over the packed unconstrained latent, current params."""
        self._require_prototype(args, kwargs, "get_posterior")
        return MultivariateNormal(param(f"{self.prefix}.loc"), scale_tril=param(f"{self.prefix}.scale_tril"))


class AutoLowRankMultivariateNormal(AutoDiagonalNormal):
    """Pyro's AutoLowRankMultivariateNormal: the packed latent is ``LowRankMultivariateNormal(loc,
    W, D)``, covariance W W^T + diag(D), with Pyro's params "<prefix>.loc", "<prefix>.scale" s
    (softplus_positive) and "<prefix>.cov_factor" F (latent_dim x rank; rank defaults to
    round(sqrt(latent_dim))): W = s F (row i scaled by s_i) and D = s^2. s starts at
    sqrt(1/2) init_scale and F ~ Normal(0, 1/sqrt(rank)), so W W^T + D averages init_scale^2 on
    the diagonal. The VJPs are LowRankMultivariateNormal's; the marginal sds, for quantiles, are
    sqrt(diag(W W^T + D)) = s sqrt(1 + sum_j F_ij^2)."""

    def __init__(self, model, init_loc_fn=init_to_median, init_scale=0.1, rank=None):
        if not (rank is None or isinstance(rank, int) and rank > 0):
            raise ValueError(f"AutoLowRankMultivariateNormal: rank must be a positive int or None, got {rank!r}")
        super().__init__(model, init_loc_fn=init_loc_fn, init_scale=init_scale)
        self.rank = rank

    def _latent_params(self, loc):
        rank = self.rank or int(round(self.latent_dim ** 0.5))
        cov_factor = innermost_rng().normal(0.0, rank ** -0.5, (loc.size, rank)).astype(loc.dtype)
        loc_param, (name, scale, constraint) = super()._latent_params(loc)  # the diagonal: Pyro's sqrt(1/2) of it
        return [loc_param, (name, 0.5 ** 0.5 * scale, constraint),
                (f"{self.prefix}.cov_factor", cov_factor, constraints.real)]

    def _loc_scale(self):
        loc, scale = super()._loc_scale()
        return loc, scale * np.sqrt(1.0 + np.square(get_param_store()[f"{self.prefix}.cov_factor"]).sum(-1))

    def get_posterior(self, *args, **kwargs):
        """``LowRankMultivariateNormal(loc, s F, s^2)`` over the packed unconstrained latent, current params."""
        self._require_prototype(args, kwargs, "get_posterior")
        scale = param(f"{self.prefix}.scale")
        cov_factor = param(f"{self.prefix}.cov_factor") * scale[:, None]
        return LowRankMultivariateNormal(param(f"{self.prefix}.loc"), cov_factor, scale * scale)


__all__ = ["AutoDelta", "AutoDiagonalNormal", "AutoGuide", "AutoLowRankMultivariateNormal", "AutoMultivariateNormal",
           "AutoNormal", "init_to_feasible", "init_to_mean", "init_to_median", "init_to_sample", "init_to_value"]
