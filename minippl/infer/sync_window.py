"""SVI's sync window: a training step that never waits for the GPU.

Teaches: reading a number off a GPU (``float(loss)``, ``bool(all finite)``) makes the host wait
for everything queued there, so a step that reads its NaN check each time runs at the speed of
the round trip. ``SVI(..., sync_every=k)`` reads it once every k steps instead:

* the check becomes a 0-d boolean on the device (``finite_flag``), never read;
* the window keeps, on the device, the first step whose check failed (0: none yet), and the
  optimiser's update is made conditional on "none failed since the last sync": x = where(ok,
  x_new, x_old), decided on the device (``PyroOptim.step(..., only_if=ok)``);
* at a sync point the host reads that one number; if a step failed, the step count and the
  optimiser's host-side counters (which cannot wait for a device flag) are put back to what they
  were before it, and a FloatingPointError names it.

Between sync points the value checks that read arrays are skipped too (validation.py's
``device_values_read``); they run on the first step and at each sync point. Builds on
backend.py (``fusable``: the flag is one kernel on a GPU) and on optim.py's ``only_if``.
"""
import numpy as np

from .. import backend


def finite_flag(loss, grads):
    """A 0-d boolean array, on the loss's device: the loss and every gradient are finite. Not read."""
    xp = backend.array_module(loss, *grads.values())
    ok = xp.isfinite(xp.asarray(loss)) if backend.array_module(loss) is xp else xp.asarray(np.isfinite(loss))
    return ok & _all_finite_flag(list(grads.values())) if grads else ok


@backend.fusable("all_finite_flag")
def _all_finite_flag(arrays):
    """A 0-d boolean array on the arrays' device: no NaN or inf in any of them (one kernel on a GPU)."""
    xp = backend.array_module(arrays[0])
    return xp.all(xp.stack([xp.isfinite(a).all() for a in arrays]))


def host_counters(optim):
    """{name: {key: number}}: the per-param numbers an optimiser keeps on the host (the step count,
    ClippedAdam's decayed lr). A refused step has already moved them; ``restore_host_counters``
    puts them back."""
    return {name: {k: s[k] for k in ("step", *optim.initial_scalars(optim.hyperparameters(name)))}
            for name, s in optim.state.items()}


def restore_host_counters(optim, counters):
    """Put back numbers saved by ``host_counters``; a param first seen since then is forgotten
    (its moments never changed from zero: its updates were all refused)."""
    for name in list(optim.state):
        if name in counters:
            optim.state[name].update(counters[name])
        else:
            del optim.state[name]


class SyncWindow:
    """The deferred NaN check of ``SVI(..., sync_every=k)``, k > 1 (see the module docstring)."""

    def __init__(self, optim, sync_every):
        self.optim, self.sync_every = optim, sync_every
        self._first_refused = None  # on the device: the first refused step since the last sync (0: none)
        self._counters = []  # (step, host_counters(optim) before it)

    def reads_at(self, step):
        """Whether ``step`` may read device values: the first step and the sync points."""
        return step == 1 or step % self.sync_every == 0

    def guard(self, step, loss, grads):
        """Note (on the device) whether this step's loss and gradients are finite; return the flag
        "no step refused since the last sync", which this step's update is made to depend on."""
        ok = finite_flag(loss, grads)
        xp = backend.array_module(ok)
        first = self._first_refused if self._first_refused is not None else xp.full((), 0, dtype=np.int64)
        self._first_refused = xp.where((first == 0) & ~ok, step, first)
        self._counters.append((step, host_counters(self.optim)))
        return self._first_refused == 0

    def sync(self, svi):
        """Read the flag (the one read); if a step was refused, put ``svi.step_count`` and the
        optimiser's counters back to before it and raise FloatingPointError naming it. From that
        step on no param or optimiser moment changed: the updates were conditional on the flag."""
        if self._first_refused is None:
            return
        refused, counters = int(self._first_refused), self._counters
        self._first_refused, self._counters = None, []
        if refused == 0:
            return
        restore_host_counters(self.optim, dict(counters)[refused])
        last, svi.step_count = svi.step_count, refused - 1
        raise FloatingPointError(
            f"step {refused}: the loss or a gradient was not finite, so steps {refused} to {last} changed no "
            f"parameter (SVI(sync_every={self.sync_every}) reads the check at its sync points). Run with "
            f"sync_every=1 to name the site or param, then lower the learning rate or bound the values that feed it.")
