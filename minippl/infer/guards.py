"""The guards of inference: what the ELBO and SVI check on every step, always on.

Teaches: three structural checks that cost almost nothing and turn silent nonsense into an
error naming the site or param and the fix: the guide samples exactly the model's latent sites;
every batch dim of a site's log-prob is explained by a plate (or is an event dim the user forgot
to declare); and no NaN or inf becomes an update (the guard SVI runs before the optimiser).
Builds on validation.py (the finiteness checks, all_finite and all_finite_many) and backend.py.
"""
import numpy as np

from .. import backend
from ..validation import all_finite, all_finite_many


def check_model_guide_match(model_trace, guide_trace):
    """Every latent site of the model is sampled by the guide, and the guide samples nothing else."""
    model_sites = {n for n, s in model_trace.sample_sites().items() if not s["is_observed"]}
    guide_sites = {n for n, s in guide_trace.sample_sites().items() if not s["infer"].get("is_auxiliary")}
    for name in model_sites - guide_sites:
        raise ValueError(
            f"sample site '{name}' is latent in the model but the guide does not sample it: add "
            f"minippl.sample('{name}', ...) to the guide, or observe it in the model with obs=..."
        )
    for name in guide_sites - set(model_trace.sample_sites()):
        raise ValueError(
            f"the guide samples '{name}' but the model has no site of that name: rename it to match "
            f"a latent site of the model, or remove it from the guide."
        )
    for name in guide_sites & model_sites:
        if guide_trace.nodes[name]["is_observed"]:
            raise ValueError(f"site '{name}' is observed in the guide: a guide only samples latent sites")


def check_log_prob_shape(site, log_prob):
    """Every non-trivial batch dim of a site's log-prob must be explained by a plate around it."""
    plate_sizes = {f.dim: (f.name, f.size) for f in site["cond_indep_stack"] if f.dim is not None}
    shape = np.shape(log_prob)
    for dim in range(-len(shape), 0):
        size = shape[dim]
        name, expected = plate_sizes.get(dim, (None, 1))
        if size in (1, expected):
            continue
        where = f"plate '{name}' has size {expected} there" if name else "no plate covers it"
        raise ValueError(
            f"sample site '{site['name']}': log_prob has shape {shape}, and dim {dim} (size {size}) "
            f"is not explained by the plates around the site ({where}). If that dim is part of one "
            f"event (e.g. the pixels of an image), use .to_event(1) on the distribution; if it "
            f"indexes independent data, wrap the site in minippl.plate('name', {size}, dim={dim})."
        )


def check_finite(loss, grads, site_log_probs, step, order=()):
    """Raise FloatingPointError before a NaN or inf can become an update.

    Names the first culprit in the order things ran: the guide's sites before the
    model's (a NaN drawn in the guide also spoils the model's terms for that site),
    and params in the order they were created (``order``, the store's).
    """
    if not np.isfinite(loss):
        ran_first = sorted(site_log_probs, key=lambda key: not key.startswith("guide"))
        culprits = [site for site in ran_first if not np.isfinite(site_log_probs[site])]
        where = (f"the log-probability of {culprits[0]} is {site_log_probs[culprits[0]]}" if culprits
                 else "a term outside the sample sites")
        also = f" (then also: {', '.join(culprits[1:4])})" if len(culprits) > 1 else ""
        raise FloatingPointError(
            f"step {step}: the loss is {loss}; {where}{also}. No parameter was changed. Check that site's "
            f"data and distribution arguments (a scale <= 0, probs outside [0, 1], NaN inputs)."
        )
    with np.errstate(over="ignore", invalid="ignore"):  # all_finite's <g, g> may overflow: it then looks closer
        if all_finite_many(list(grads.values())):  # the usual case: one pass, nothing to name
            return
        bad = [name for name, g in grads.items() if not all_finite(g)]
    rank = {name: i for i, name in enumerate(order)}
    bad.sort(key=lambda name: rank.get(name, len(rank)))
    if bad:
        g = grads[bad[0]]
        g = backend.to_host(g)  # CuPy -> host, for the message
        what = f"{int(np.isnan(g).sum())} NaN and {int(np.isinf(g).sum())} inf of {g.size} entries"
        also = f" (also: {', '.join(repr(n) for n in bad[1:4])})" if len(bad) > 1 else ""
        raise FloatingPointError(
            f"step {step}: the gradient of param '{bad[0]}' is not finite ({what}; loss {loss:.6g}){also}. "
            f"No parameter was changed. Lower the learning rate, or bound the values that feed it."
        )
