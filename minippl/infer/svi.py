"""Stochastic variational inference: loss, gradient, update, repeat.

Teaches: ``SVI(model, guide, optim, loss).step(*args)`` does three things: ask
the loss for its value and the gradient of every unconstrained param, check
that nothing is NaN or inf, and let the optimiser update the param store in
place. Builds on elbo.py, params.py and optim.py.
"""
import warnings

import numpy as np

from ..params import get_param_store
from ..backend import to_host
from ..validation import ValidationError, all_finite, all_finite_many


class SVI:
    """Pyro's SVI: ``step`` returns the loss (negative ELBO) and updates the params.

    ``validate=True`` runs :func:`check_gradients` (a float64 finite-difference
    test of the whole ELBO gradient) before the first update and raises if a
    gradient is wrong (for example a chain broken by raw NumPy arithmetic).

    With z ~ N(0, 1) and x ~ N(z, 1), observing x = 2 makes the posterior of z
    N(1, 1/2); a Normal guide's loc moves there from 0:

    >>> import numpy as np
    >>> import minippl
    >>> import minippl.distributions as dist
    >>> from minippl.distributions import constraints
    >>> from minippl.infer import Trace_ELBO
    >>> from minippl.optim import Adam
    >>> def model(x):
    ...     z = minippl.sample("z", dist.Normal(0.0, 1.0))
    ...     minippl.sample("x", dist.Normal(z, 1.0), obs=x)
    >>> def guide(x):
    ...     loc = minippl.param("loc", np.array(0.0))
    ...     scale = minippl.param("scale", np.array(1.0), constraint=constraints.positive)
    ...     minippl.sample("z", dist.Normal(loc, scale))
    >>> minippl.clear_param_store()
    >>> minippl.set_rng_seed(0)
    >>> svi = SVI(model, guide, Adam({"lr": 0.05}), Trace_ELBO())
    >>> losses = [svi.step(np.array(2.0)) for _ in range(300)]
    >>> bool(np.mean(losses[-50:]) < np.mean(losses[:50]))  # the loss goes down
    True
    >>> loc = float(minippl.get_param_store()["loc"])  # one-sample noise keeps it wandering near 1
    >>> 0.5 < loc < 1.5
    True
    >>> minippl.clear_param_store()
    """

    def __init__(self, model, guide, optim, loss, validate=False):
        self.model, self.guide, self.optim, self.loss = model, guide, optim, loss
        self.validate = validate
        self.step_count = 0
        self._names_before = set(get_param_store().keys())

    def step(self, *args, **kwargs):
        step = self.step_count + 1  # counts the updates made; a refused step makes none
        try:
            loss, grads, site_log_probs = self.loss.loss_and_grads(self.model, self.guide, *args, **kwargs)
        except ValidationError as error:
            error.step = step
            raise
        store = get_param_store()
        params = {name: store.get_unconstrained(name) for name in grads}
        # checked in the dtype the optimiser will use: a finite float64 gradient can be inf in float32
        with np.errstate(over="ignore"):
            grads = {n: g if g.dtype == params[n].dtype else g.astype(params[n].dtype) for n, g in grads.items()}
        check_finite(loss, grads, site_log_probs, step, order=list(store.keys()))
        if step == 1:
            self._first_step_checks(grads, args, kwargs)
        self.optim.step(params, grads)
        self.step_count = step
        return loss

    def evaluate_loss(self, *args, **kwargs):
        """The loss at the current params; changes neither params nor optimiser state."""
        return self.loss.loss(self.model, self.guide, *args, **kwargs)

    def _first_step_checks(self, grads, args, kwargs):
        leftovers = sorted(self._names_before - set(grads))
        if leftovers:
            warnings.warn(
                f"the param store already held {len(leftovers)} param(s) that this model and guide do not "
                f"use (e.g. '{leftovers[0]}'), probably from an earlier run. Call "
                f"minippl.clear_param_store() before training, or train inside "
                f"`with minippl.get_param_store().scope():`.",
                stacklevel=3,
            )
        if self.validate:
            from .check import check_gradients

            check_gradients(self.model, self.guide, *args, loss=self.loss, **kwargs)


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
        g = to_host(g)  # CuPy -> host, for the message
        what = f"{int(np.isnan(g).sum())} NaN and {int(np.isinf(g).sum())} inf of {g.size} entries"
        also = f" (also: {', '.join(repr(n) for n in bad[1:4])})" if len(bad) > 1 else ""
        raise FloatingPointError(
            f"step {step}: the gradient of param '{bad[0]}' is not finite ({what}; loss {loss:.6g}){also}. "
            f"No parameter was changed. Lower the learning rate, or bound the values that feed it."
        )
