"""check_gradients: test the hand-propagated ELBO gradient against finite differences.

Teaches: the gradient that the tape computes can be checked without knowing
anything about the model. Hold the random noise fixed (same seed for every
evaluation), move one param along a random direction d, and compare the
analytic slope <grad, d> with the central difference of the loss in float64.
A disagreement names the param; the usual cause is a hand-written backward that
does not match its forward. Builds on elbo.py.
"""
import numpy as np

from ..handlers import seed, substitute, trace
from ..params import get_param_store
from ..validation import mixed_precision_allowed
from .elbo import Trace_ELBO, get_traces, is_reparameterized


class GradientCheckError(AssertionError):
    """The hand-propagated gradient disagrees with finite differences."""


def check_gradients(model, guide, *args, loss=None, rng_seed=0, num_directions=2, rtol=1e-6, step=1e-4,
                    **kwargs):
    """Compare the ELBO gradient with a float64 finite difference, param by param.

    Runs in float64 (params and float array arguments are cast for the check,
    then restored). Returns ``{name: (analytic, numeric)}`` for the last
    direction tried; raises :class:`GradientCheckError` naming every param
    whose slopes differ by more than ``rtol`` relative.
    """
    loss = Trace_ELBO() if loss is None else loss
    store = get_param_store()
    with seed(rng_seed=rng_seed):
        probe = trace(guide).get_trace(*args, **kwargs)  # also creates params on first use
        get_traces(model, guide, args, kwargs)
    # discrete (score-function) choices are held at their probed values, so every
    # evaluation below differentiates the same surrogate objective
    fixed = {n: s["value"] for n, s in probe.sample_sites().items() if not is_reparameterized(s)}
    guide_fixed = substitute(guide, data=fixed) if fixed else guide
    args64 = tuple(_to_float64(a) for a in args)
    kwargs64 = {k: _to_float64(v) for k, v in kwargs.items()}
    originals = {name: store.get_unconstrained(name) for name in store.keys()}
    try:
        for name, value in originals.items():
            store.set_unconstrained(name, np.array(value, dtype=np.float64))

        def run(want_grads):
            # float64 params may now meet float32 constants of the model: expected here
            with seed(rng_seed=rng_seed), mixed_precision_allowed():
                model_trace, guide_trace = get_traces(model, guide_fixed, args64, kwargs64, record=want_grads)
                return loss._particle(model_trace, guide_trace, want_grads), guide_trace

        base, _ = run(want_grads=True)
        rng = np.random.default_rng(rng_seed)
        report, bad = {}, []
        for name in sorted(originals):
            array = store.get_unconstrained(name)
            start = array.copy()
            analytic_grad = base.grads.get(name, np.zeros_like(array))
            for _ in range(num_directions):
                direction = rng.standard_normal(array.shape)
                direction /= max(np.linalg.norm(direction), 1e-300)

                def along(t):
                    array[...] = start + t * direction
                    return surrogate_loss(*run(want_grads=False), base.log_r)

                numeric = (8 * (along(step) - along(-step)) - (along(2 * step) - along(-2 * step))) / (12 * step)
                array[...] = start
                analytic = float(np.sum(analytic_grad * direction))
                report[name] = (analytic, numeric)
                scale = max(abs(analytic), abs(numeric), 1e-8 * (1 + abs(base.loss)))
                if abs(analytic - numeric) > rtol * scale:
                    bad.append(f"'{name}': analytic slope {analytic:.8g}, finite difference {numeric:.8g}")
                    break
    finally:
        for name, value in originals.items():
            store.set_unconstrained(name, value)
    if bad:
        raise GradientCheckError(
            "the hand-propagated ELBO gradient disagrees with finite differences for "
            + "; ".join(bad)
            + ". Usually a hand-written backward (a custom layer's, or a distribution's VJP) does not "
            "match its forward; check it alone against finite differences (tests/finite_diff.py)."
        )
    return report


def surrogate_loss(particle, guide_trace, log_r):
    """The loss whose gradient Trace_ELBO computes: with score-function sites, not the loss itself.

    Each non-reparameterised guide site's ``+scale * log q`` is replaced by
    ``-stop(log_r) * log q`` (log q unscaled and unmasked, as in Pyro: log_r carries the scale).
    ``log_r`` is held at the base point's value: a constant of the surrogate, so finite
    differences see exactly what the tape differentiates.
    """
    total = particle.loss
    for name, site in guide_trace.sample_sites().items():
        if not is_reparameterized(site) and "log_prob" in site:
            total -= float(np.sum(site["log_prob"])) + float(np.sum(log_r[name] * site["unscaled_log_prob"]))
    return total


def _to_float64(x):
    if isinstance(x, np.ndarray) and np.issubdtype(x.dtype, np.floating):
        return x.astype(np.float64)
    return x
