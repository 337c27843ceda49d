"""Training checkpoints: the param store, the optimiser state and your own metadata in one file.

Teaches: what must be saved so that a resumed run continues *exactly* where an
interrupted one stopped: every unconstrained param, every optimiser moment and
step count, and the random generators' states (pass them in ``metadata``).
The file is an .npz read with ``allow_pickle=False`` and written atomically
(temporary file, then rename), so a crash mid-save keeps the previous file.
Builds on params.py and optim.py.
"""
import json

import numpy as np

from . import backend
from .distributions import constraints
from .params import get_param_store, read_npz, save_npz_atomically

_FORMAT = "minippl.checkpoint/1"


def save_checkpoint(path, optim=None, **metadata):
    """Write the active param store, ``optim``'s state and JSON-able ``metadata`` to ``path``.

    >>> save_checkpoint("run/checkpoint.npz", optim, epoch=3, rng_state=rng.bit_generator.state)  # doctest: +SKIP
    """
    arrays = {"__format__": np.array(_FORMAT), "metadata": np.array(json.dumps(metadata))}
    store = get_param_store()
    for name, u in store.named_parameters():
        arrays[f"param/{name}"] = _to_host(u)
        arrays[f"constraint/{name}"] = np.array(store.get_constraint(name).spec)
    if optim is not None:
        arrays["optim"] = np.array(type(optim).__name__)
        for name, entry in optim.get_state().items():
            for field, value in entry.items():
                arrays[f"optim/{name}/{field}"] = _to_host(np.asarray(value) if np.isscalar(value) else value)
    return save_npz_atomically(path, arrays)


def load_checkpoint(path, optim=None):
    """Restore the param store (and ``optim``) from ``path``; return the metadata dict.

    Everything is read and checked before anything changes: a corrupt file, or
    one whose params or optimiser do not match, raises ValueError naming the
    file, and leaves the store and the optimiser as they were.
    """
    path, arrays = read_npz(path, "checkpoint")
    marker = arrays.pop("__format__", None)
    if marker is None or marker.dtype.kind != "U" or str(marker) != _FORMAT:
        raise ValueError(f"{path!r} is not a minippl checkpoint (no '{_FORMAT}' marker)")
    try:
        metadata = json.loads(str(arrays.pop("metadata")))
    except (KeyError, ValueError) as error:
        raise ValueError(f"{path!r}: unreadable metadata ({error})") from None
    store_state = {"params": {}, "constraints": {}}
    optim_state, saved_optim = {}, arrays.pop("optim", None)
    for key, array in arrays.items():
        kind, _, rest = key.partition("/")
        if kind == "param":
            store_state["params"][rest] = array
        elif kind == "constraint":
            try:
                store_state["constraints"][rest] = constraints.from_spec(str(array))
            except ValueError as error:
                raise ValueError(f"{path!r}: param '{rest}': {error}") from None
        elif kind == "optim":
            name, _, field = rest.rpartition("/")
            # kept as arrays: a scalar param's moments are 0-d arrays (_checked_entry makes "step" an int)
            optim_state.setdefault(name, {})[field] = array
        else:
            raise ValueError(f"{path!r}: unexpected entry {key!r}")
    store = get_param_store()
    try:
        store._validate_state(store_state, where=repr(path))
        if optim is not None:
            if saved_optim is None or str(saved_optim) != type(optim).__name__:
                raise ValueError(f"it holds {saved_optim} state, not {type(optim).__name__} state")
            checked = {name: optim._checked_entry(name, entry) for name, entry in optim_state.items()}
    except ValueError as error:
        raise ValueError(f"cannot resume from {path!r}: {error}") from None
    store.set_state(_to_device_like(store_state, store))
    if optim is not None:
        optim.state.update(_optim_to_device(checked, store))
    return metadata


def _to_host(array):
    return array.get() if backend.array_module(array) is not np else np.asarray(array)


def _to_device_like(state, store):
    """Put each loaded array on the device of the store's current array of that name."""
    params = {}
    for name, u in state["params"].items():
        current = store.get_unconstrained(name) if name in store else None
        xp = backend.array_module(current)
        params[name] = xp.asarray(u)
    return {"params": params, "constraints": state["constraints"]}


def _optim_to_device(state, store):
    out = {}
    for name, entry in state.items():
        like = store.get_unconstrained(name) if name in store else None
        xp = backend.array_module(like)
        out[name] = {k: (xp.asarray(v) if hasattr(v, "shape") else v) for k, v in entry.items()}
    return out
