"""Stochastic variational inference: loss, gradient, update, repeat.

Teaches: ``SVI(model, guide, optim, loss).step(*args)`` does three things: ask
the loss for its value and the gradient of every unconstrained param, check
that nothing is NaN or inf, and let the optimiser update the param store in
place. ``SVI(..., sync_every=k)`` reads that check only every k steps, so a GPU step never
waits (sync_window.py). Builds on elbo.py, guards.py (the NaN guard), params.py, optim.py
and sync_window.py.
"""
import warnings

import numpy as np

from ..optim import PyroOptim
from ..params import get_param_store
from ..validation import device_values_read, errors_say
from .guards import check_finite
from .sync_window import SyncWindow


class SVI:
    """Pyro's SVI: ``step`` returns the loss (negative ELBO) and updates the params.

    ``validate=True`` runs :func:`check_gradients` (a float64 finite-difference
    test of the whole ELBO gradient) before the first update and raises if a
    gradient is wrong (for example a custom layer's backward or VJP with a mistake in it).

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

    def __init__(self, model, guide, optim, loss, validate=False, sync_every=1):
        if not (isinstance(sync_every, int) and sync_every >= 1):
            raise ValueError(f"sync_every must be a whole number >= 1, got {sync_every!r}")
        if sync_every > 1 and not isinstance(optim, PyroOptim):
            raise TypeError(f"SVI(sync_every={sync_every}) makes each update conditional on a device flag, which "
                            f"only minippl.optim's optimisers take (step(..., only_if=)); {type(optim).__name__} "
                            f"is not one: use sync_every=1, or an optimiser from minippl.optim")
        self.model, self.guide, self.optim, self.loss = model, guide, optim, loss
        self.validate, self.sync_every = validate, sync_every
        self.step_count = 0
        self._names_before = set(get_param_store().keys())
        self.window = SyncWindow(optim, sync_every) if sync_every > 1 else None

    def step(self, *args, **kwargs):
        """One update; returns the loss (a float, or with ``sync_every > 1`` a 0-d array of the
        params' device, which ``float()`` reads)."""
        if self.window is None:
            return self._step(args, kwargs)
        try:
            return self._step(args, kwargs)
        except Exception as error:  # the window ends here: a step refused in it must not go unsaid
            try:
                self.sync()
            except FloatingPointError as refused:
                raise refused from error
            raise

    def _step(self, args, kwargs):
        step, window = self.step_count + 1, self.window  # counts the updates made; a refused step makes none
        with errors_say(step=step), device_values_read(window is None or window.reads_at(step)):
            loss, grads, site_log_probs = self.loss.loss_and_grads(self.model, self.guide, *args, **kwargs)
        store = get_param_store()
        params = {name: store.get_unconstrained(name) for name in grads}
        # checked in the dtype the optimiser will use: a finite float64 gradient can be inf in float32
        with np.errstate(over="ignore"):
            grads = {n: g if g.dtype == params[n].dtype else g.astype(params[n].dtype) for n, g in grads.items()}
        if window is None:
            check_finite(loss, grads, site_log_probs, step, order=store.keys())
        if step == 1:
            self._first_step_checks(grads, args, kwargs)
        if window is None:
            self.optim.step(params, grads)  # an optimiser written to step(params, grads) works unchanged
        else:
            self.optim.step(params, grads, only_if=window.guard(step, loss, grads))
        self.step_count = step
        if window is None:
            return float(loss)
        if step % self.sync_every == 0:
            self.sync()
        return loss

    def sync(self):
        """With ``sync_every > 1``: read whether a step since the last sync was refused and, if one
        was, raise FloatingPointError naming it (SyncWindow.sync). Call it before saving a
        checkpoint, so that the saved step counts are the true ones."""
        if self.window is not None:
            self.window.sync(self)

    def evaluate_loss(self, *args, **kwargs):
        """The loss at the current params; changes neither params nor optimiser state."""
        loss = self.loss.loss(self.model, self.guide, *args, **kwargs)
        return loss if self.sync_every > 1 else float(loss)

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
