"""Predictive: run the model many times with its latent sites set to posterior draws.

Teaches: prediction is conditioning. Each posterior draw (from a guide, or given) is fed to the
model with ``condition``; what the model then samples is a draw from the posterior predictive.
Builds on handlers.py (trace, condition) and plate.py (``parallel=True`` adds one outer plate).
"""
import numpy as np

from ..handlers import block, condition, trace
from ..plate import plate

_RETURN = "_RETURN"  # Pyro's name for the model's return value in return_sites
_VECTORIZE_PLATE = "_num_predictive_samples"


class Predictive:
    """Pyro's Predictive: ``Predictive(model, guide=guide, num_samples=100)(*args)``.

    Returns ``{site: array}``, each draw stacked along a new leading dim of size
    ``num_samples``: shape ``(num_samples,) + site value shape`` by default, so a global scalar
    is (S,) and a site's draws index as its values do, whether or not ``parallel``. With
    ``pyro_shapes=True`` the shapes are Pyro's: 1s padded after the sample dim for the plates a
    site is not in, up to the model's plate nesting, e.g. (S, 1) for a global scalar of a model
    with one plate (so every site broadcasts against the plated ones); ``"_RETURN"`` is not padded.

    - ``posterior_samples``: ``{site: array with a leading sample dim}`` to condition on
      (``num_samples`` is then their leading size); or
    - ``guide``: drawn ``num_samples`` times, and the model conditioned on each draw; or
    - neither: the prior predictive, ``num_samples`` runs of the model.

    ``return_sites``: a list of site names (``"_RETURN"`` is the model's return value). By
    default, every sample site of the model when a guide is given (latent draws and
    predictions), else the sites not in ``posterior_samples``, as in Pyro.
    ``parallel=True`` runs the guide and model once inside a plate of size ``num_samples``
    (dim left of all the model's plates): fast, but the model must broadcast over that dim
    (Pyro's rule), which layers written for one weight matrix (``nn.Linear``) do not.

    The second positional argument is ``posterior_samples`` (Pyro's order); a guide given there
    (anything callable) is taken as ``guide=``.

    >>> import minippl, minippl.distributions as dist
    >>> def model():
    ...     z = minippl.sample("z", dist.Normal(0., 1.))
    ...     return minippl.sample("x", dist.Normal(z, 1.))
    >>> Predictive(model, num_samples=5)()["x"].shape
    (5,)
    """

    def __init__(self, model, posterior_samples=None, guide=None, num_samples=None, return_sites=None,
                 parallel=False, pyro_shapes=False):
        if callable(posterior_samples) and not isinstance(posterior_samples, dict) and guide is None:
            posterior_samples, guide = None, posterior_samples
        posterior_samples = dict(posterior_samples or {})
        if guide is not None and posterior_samples:
            raise ValueError("Predictive takes posterior_samples or a guide, not both: the guide would "
                             "draw the latent sites the samples already give")
        for name, value in posterior_samples.items():
            size = np.shape(value)[0] if np.ndim(value) else None
            if size is None:
                raise ValueError(f"posterior_samples['{name}'] needs a leading sample dim (one row per draw)")
            if num_samples is None:
                num_samples = size
            elif size != num_samples:
                raise ValueError(f"posterior_samples['{name}'] has {size} draws but num_samples={num_samples} "
                                 f"(or another site) says otherwise: give every site the same leading size, "
                                 f"and leave num_samples out")
        if num_samples is None:
            raise ValueError("Predictive needs num_samples (how many draws) when no posterior_samples are given")
        if num_samples < 1:
            raise ValueError(f"num_samples must be at least 1, got {num_samples}")
        if return_sites is not None and not isinstance(return_sites, (list, tuple, set)):
            raise TypeError(f"return_sites must be a list, tuple or set of site names, got "
                            f"{type(return_sites).__name__}")
        self.model, self.guide = model, guide
        self.posterior_samples = posterior_samples
        self.num_samples = int(num_samples)
        self.return_sites = tuple(return_sites) if return_sites else None
        self.parallel = parallel
        self.pyro_shapes = pyro_shapes

    def __call__(self, *args, **kwargs):
        samples = self.posterior_samples
        return_sites = self.return_sites
        if self.guide is not None:
            # every latent draw of the guide, then (Pyro's default) every site of the model
            samples = self._run(self.guide, {}, None, args, kwargs, latent_only=True)
        out = self._run(self.model, samples, return_sites, args, kwargs,
                        exclude=() if self.guide is not None else tuple(samples))
        return self._pad_like_pyro(out, self._probe(self.model, samples, args, kwargs)) if self.pyro_shapes else out

    forward = __call__
    get_samples = __call__

    # ------------------------------------------------------------ running
    def _run(self, fn, samples, return_sites, args, kwargs, latent_only=False, exclude=()):
        if self.parallel:
            return self._run_vectorized(fn, samples, return_sites, args, kwargs, latent_only, exclude)
        draws = []
        for i in range(self.num_samples):
            data = {name: value[i] for name, value in samples.items()}
            with trace() as tape:
                result = condition(fn, data=data)(*args, **kwargs) if data else fn(*args, **kwargs)
            draws.append(self._collect(tape.trace, result, return_sites, latent_only, exclude))
        return {name: np.stack([np.asarray(d[name]) for d in draws]) for name in draws[0]}

    def _run_vectorized(self, fn, samples, return_sites, args, kwargs, latent_only, exclude):
        probe = self._probe(fn, samples, args, kwargs)
        nesting = max([-f.dim for s in probe.sample_sites().values() for f in s["cond_indep_stack"]
                       if f.dim is not None], default=0)
        data = {}
        for name, value in samples.items():  # (S, *shape) -> (S, 1, ..., 1, *shape): left of every plate
            site = probe.nodes.get(name)
            batch_ndim = len(site["fn"].batch_shape) if site is not None else 0
            value = np.asarray(value)
            data[name] = value.reshape((self.num_samples,) + (1,) * max(nesting - batch_ndim, 0) + value.shape[1:])
        with trace() as tape, plate(_VECTORIZE_PLATE, self.num_samples, dim=-nesting - 1):
            result = condition(fn, data=data)(*args, **kwargs) if data else fn(*args, **kwargs)
        collected = self._collect(tape.trace, result, return_sites, latent_only, exclude)
        out = {}
        for name, value in collected.items():
            one = np.shape(probe.nodes[name]["value"]) if name != _RETURN else None  # one draw's shape
            value = np.asarray(value)
            if one is None:
                out[name] = value
            elif value.size == int(np.prod(one)):  # the same for every draw (an observed site)
                out[name] = np.broadcast_to(value.reshape(one), (self.num_samples,) + one).copy()
            elif value.size == self.num_samples * int(np.prod(one)):
                out[name] = value.reshape((self.num_samples,) + one)
            else:
                raise ValueError(f"Predictive(parallel=True): site '{name}' has shape {value.shape}, which does "
                                 f"not hold {self.num_samples} draws of shape {one}; the model does not broadcast "
                                 f"over the sample plate (dim {-nesting - 1}). Use parallel=False.")
        return out

    def _pad_like_pyro(self, out, probe):
        """(S,) + value shape -> (S,) + (1,) * (plate nesting - batch ndim) + value shape, as Pyro returns."""
        nesting = max([-f.dim for s in probe.sample_sites().values() for f in s["cond_indep_stack"]
                       if f.dim is not None], default=0)
        padded = {}
        for name, value in out.items():
            site = probe.nodes.get(name)
            pad = 0 if site is None else max(nesting - len(site["fn"].batch_shape), 0)  # _RETURN: none
            padded[name] = value.reshape(value.shape[:1] + (1,) * pad + value.shape[1:])
        return padded

    def _probe(self, fn, samples, args, kwargs):
        """One blocked, unvectorised run (at the first draw) to learn plate nesting and site shapes."""
        data = {name: np.asarray(value)[0] for name, value in samples.items()}
        with block(hide_calls=True), trace() as tape:
            condition(fn, data=data)(*args, **kwargs) if data else fn(*args, **kwargs)
        return tape.trace

    @staticmethod
    def _collect(tr, result, return_sites, latent_only, exclude):
        sites = tr.sample_sites()
        if latent_only:
            return {n: s["value"] for n, s in sites.items() if not s["is_observed"]}
        if return_sites is None:
            return {n: s["value"] for n, s in sites.items() if n not in exclude}
        missing = [n for n in return_sites if n != _RETURN and n not in sites]
        if missing:
            raise KeyError(f"return_sites names {missing}, which the model did not sample; its sample sites "
                           f"are {sorted(sites)} (and '{_RETURN}' for its return value)")
        return {n: (result if n == _RETURN else sites[n]["value"]) for n in return_sites}


__all__ = ["Predictive"]
