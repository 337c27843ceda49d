"""Training checkpoints: the param store, the optimiser state and your own metadata in one file.

Teaches: what must be saved so that a resumed run continues *exactly* where an
interrupted one stopped: every unconstrained param, every optimiser moment and
step count, and the random generators' states (pass them in ``metadata``).
The file holds the entries of a param store file and of an optimiser file side by
side, so saving.py's guarantees hold: plain .npz read with ``allow_pickle=False``,
written atomically (temporary file, then rename), checked whole before anything
changes. With ``SVI(..., sync_every=k)``, call ``svi.sync()`` first: a step refused since the
last sync point has not yet been taken back from the optimiser's step counts. Builds on
params.py, optim.py and saving.py.
"""
import json

from . import saving
from .params import get_param_store

_FORMAT = "minippl.checkpoint/1"


def save_checkpoint(path, optim=None, **metadata):
    """Write the active param store, ``optim``'s state and JSON-able ``metadata`` to ``path``.

    >>> save_checkpoint("run/checkpoint.npz", optim, epoch=3, rng_state=rng.bit_generator.state)  # doctest: +SKIP
    """
    entries = {"metadata": json.dumps(metadata), **saving.store_entries(get_param_store())}
    if optim is not None:
        entries["optim"] = type(optim).__name__  # which optimiser: Adam moments are no use to SGD
        entries.update(saving.optim_entries(optim, kind="optim"))
    return saving.write_npz(path, _FORMAT, entries)


def load_checkpoint(path, optim=None):
    """Restore the param store (and ``optim``) from ``path``; return the metadata dict.

    Everything is read and checked before anything changes: a corrupt file, or
    one whose params or optimiser do not match, raises ValueError naming the
    file, and leaves the store and the optimiser as they were.
    """
    path, entries = saving.read_npz(path, "checkpoint", _FORMAT)
    try:
        metadata = json.loads(str(entries.pop("metadata")))
    except (KeyError, ValueError) as error:
        raise ValueError(f"{path!r}: unreadable metadata ({error})") from None
    saved_optim = entries.pop("optim", None)
    groups = saving.unflatten(path, entries, param=1, constraint=1, optim=2)
    store_state = saving.store_state(path, groups)
    store = get_param_store()
    try:
        store._validate_state(store_state, where=repr(path))
        if optim is not None:
            if saved_optim is None or str(saved_optim) != type(optim).__name__:
                raise ValueError(f"it holds {saved_optim} state, not {type(optim).__name__} state")
            optim_state = optim._checked_state(groups["optim"])
            for name, entry in optim_state.items():  # each moment the shape of its param, before anything changes
                param = store_state["params"].get(name, store.get_unconstrained(name) if name in store else None)
                for key in optim.state_arrays(optim.hyperparameters(name)):
                    if param is not None and entry[key].shape != param.shape:
                        raise ValueError(f"optimiser state {key!r} of {name!r} has shape {entry[key].shape}, "
                                         f"its param has {param.shape}")
    except ValueError as error:
        raise ValueError(f"cannot resume from {path!r}: {error}") from None
    # set_state copies each array onto the device of the store's array of that name;
    # the optimiser's moments follow their params at the next step (optim._match_param)
    store.set_state(store_state)
    if optim is not None:
        optim.state.update(optim_state)
    return metadata
