"""Stochastic variational inference: loss, gradient, update, repeat.

Teaches: ``SVI(model, guide, optim, loss).step(*args)`` is three lines: ask
the loss for its value and the gradient of every unconstrained param, check
that nothing is NaN or inf, and let the optimiser update the param store in
place. Builds on elbo.py, params.py and optim.py.
"""
import warnings

import numpy as np

from ..params import get_param_store


class SVI:
    """Pyro's SVI: ``step`` returns the loss (negative ELBO) and updates the params.

    ``validate=True`` runs :func:`check_gradients` (a float64 finite-difference
    test of the whole ELBO gradient) before the first update and raises if a
    gradient is wrong (for example a chain broken by raw NumPy arithmetic).
    """

    def __init__(self, model, guide, optim, loss, validate=False):
        self.model, self.guide, self.optim, self.loss = model, guide, optim, loss
        self.validate = validate
        self.step_count = 0
        self._names_before = set(get_param_store().keys())

    def step(self, *args, **kwargs):
        loss, grads, site_log_probs = self.loss.loss_and_grads(self.model, self.guide, *args, **kwargs)
        self.step_count += 1
        check_finite(loss, grads, site_log_probs, self.step_count)
        if self.step_count == 1:
            self._first_step_checks(grads, args, kwargs)
        store = get_param_store()
        params = {name: store.get_unconstrained(name) for name in grads}
        self.optim.step(params, grads)
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


def check_finite(loss, grads, site_log_probs, step):
    """Raise FloatingPointError before a NaN or inf can become an update."""
    if not np.isfinite(loss):
        culprit = next((site for site, lp in site_log_probs.items() if not np.isfinite(lp)), None)
        where = f"the log-probability of {culprit} is {site_log_probs[culprit]}" if culprit else "a term"
        raise FloatingPointError(
            f"step {step}: the loss is {loss}; {where}. No parameter was changed. Check that site's "
            f"data and distribution arguments (a scale <= 0, probs outside [0, 1], NaN inputs)."
        )
    for name, g in grads.items():
        if not np.all(np.isfinite(g)):
            raise FloatingPointError(
                f"step {step}: the gradient of param '{name}' is not finite (loss {loss:.6g}). No "
                f"parameter was changed. Lower the learning rate, or bound the values that feed it."
            )
