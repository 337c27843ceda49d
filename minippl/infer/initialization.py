"""Where an autoguide starts: Pyro's initialisation strategies (``init_to_median`` and friends).

Teaches: a guide's first values come from the model itself: a prototype run in which each latent
site takes ``init_loc_fn(site)`` (a prior draw, the prior median or mean, the middle of the
support, or a value you give) instead of a fresh draw. ``InitMessenger`` is that run's handler.
Pyro keeps these in ``pyro.infer.autoguide.initialization``; autoguide.py (next) imports them,
and they are importable from there as in Pyro. Builds on runtime.py (a handler), handlers.py
(``seed``) and constraint_registry.py (``biject_to``: which supports a guide can reach).
"""
import numpy as np

from .. import backend, runtime
from ..distributions.constraint_registry import biject_to
from ..handlers import seed


def _float_zeros(site):
    fn = site["fn"]
    dtype = backend.float_dtype(*[a for a in fn.arg_arrays().values()])
    return np.zeros(fn.shape(site["kwargs"].get("sample_shape", ())), dtype)


def init_to_feasible(site=None):
    """The point 0 of unconstrained space mapped into the support (0, 1, an interval's midpoint)."""
    if site is None:
        return init_to_feasible
    return biject_to(site["fn"].support).forward(_float_zeros(site))


def init_to_sample(site=None):
    """One draw from the prior."""
    if site is None:
        return init_to_sample
    return site["fn"].sample(site["kwargs"].get("sample_shape", ()), rng=site["rng"])


def init_to_median(site=None, num_samples=15):
    """The elementwise median of ``num_samples`` prior draws (Pyro's default for AutoDelta)."""
    if site is None:
        return lambda site: init_to_median(site, num_samples)
    draws = site["fn"].sample((num_samples,) + tuple(site["kwargs"].get("sample_shape", ())), rng=site["rng"])
    value = np.median(draws, axis=0).astype(draws.dtype)
    return value if np.all(site["fn"].support.check(value)) else init_to_feasible(site)


def init_to_mean(site=None):
    """The prior mean where the distribution has one, else the median."""
    if site is None:
        return init_to_mean
    try:
        return np.array(np.broadcast_to(site["fn"].mean, site["fn"].shape()))
    except (AttributeError, NotImplementedError):
        return init_to_median(site)


def init_to_value(site=None, values=None):
    """``values[name]`` for the sites it names, the median for the others."""
    if site is None:
        return lambda site: init_to_value(site, values)
    values = values or {}
    return np.asarray(values[site["name"]]) if site["name"] in values else init_to_median(site)


class InitMessenger(runtime.Messenger):
    """Give each latent site the value ``init_loc_fn(site)`` and each draw the caller's generator."""

    def __init__(self, init_loc_fn, rng):
        super().__init__()
        self.init_loc_fn, self.rng = init_loc_fn, rng

    def process_message(self, msg):
        if msg["type"] in ("sample", "plate") and msg["rng"] is None:
            msg["rng"] = self.rng
        # a discrete site is left to draw from its prior; _LatentSite then says why it cannot be guided
        if msg["type"] == "sample" and not msg["done"] and has_bijection(msg["fn"]):
            msg["value"] = self.init_loc_fn(msg)
            msg["done"] = True


def has_bijection(fn):
    """Whether some transform maps R onto the support of ``fn`` (False for a discrete one)."""
    try:
        biject_to(fn.support)
    except (NotImplementedError, TypeError):
        return False
    return True


def innermost_rng():
    """The generator of the innermost active ``seed`` handler, else the global one."""
    for handler in reversed(runtime._STACK):
        if isinstance(handler, seed):
            return handler.rng
    return backend.global_rng()
