"""Saving and loading: the param store, an optimiser and a checkpoint, as plain .npz data.

Teaches: the state worth saving is named arrays, so one file format does for all three.
A file is an .npz archive (a zip of .npy arrays, readable by NumPy alone) whose keys say
where each array belongs ("param/loc", "state/loc/exp_avg"), plus a "__format__" marker
saying what wrote it. There is no pickle either way, so reading a file can never run code.
A save writes a temporary file beside the target, then renames it over the target: a
crash mid-write leaves the previous file whole. A load reads the whole file and checks it
before anything changes: a bad file raises ValueError naming it, and nothing is half-set.
Builds on backend.py and constraints.py (a constraint is saved as its spec string);
params.py, optim.py and checkpoint.py use it.
"""
import contextlib
import os
import tempfile

import numpy as np

from .backend import to_host
from .distributions import constraints

_MARKER = "__format__"


# ------------------------------------------------------------------ state <-> npz keys
def flatten(kind, state):
    """{name: value} -> {"kind/name": value}; {name: {field: value}} -> {"kind/name/field": value}.

    >>> flatten("state", {"loc": {"step": 3, "exp_avg": 0.5}})
    {'state/loc/step': 3, 'state/loc/exp_avg': 0.5}
    """
    entries = {}
    for name, value in state.items():
        if isinstance(value, dict):
            entries.update({f"{kind}/{name}/{field}": v for field, v in value.items()})
        else:
            entries[f"{kind}/{name}"] = value
    return entries


def unflatten(path, entries, **depths):
    """Undo ``flatten`` for each ``kind=depth`` (1: "kind/name", 2: "kind/name/field").

    Names may contain "/"; kinds and fields never do. Any other key is an error naming the file.

    >>> unflatten("run.npz", {"state/a/b/step": 3, "state/a/b/exp_avg": 0.5}, state=2)
    {'state': {'a/b': {'step': 3, 'exp_avg': 0.5}}}
    """
    state = {kind: {} for kind in depths}
    for key, value in entries.items():
        kind, _, name = key.partition("/")
        nested = depths.get(kind) == 2
        if nested:
            name, _, field = name.rpartition("/")
        if kind not in depths or not name:
            raise ValueError(f"{path!r}: unexpected entry {key!r}")
        if nested:
            state[kind].setdefault(name, {})[field] = value
        else:
            state[kind][name] = value
    return state


# ------------------------------------------------------------------ files
def _npz_path(path):
    path = os.fspath(path)
    return path if path.endswith(".npz") else path + ".npz"  # np.savez's own convention


def write_npz(path, marker, entries):
    """Write ``entries`` (arrays, numbers or strings, on any device) and the format ``marker``
    to ``path`` (".npz" appended if missing). np.savez writes into a temporary file beside
    ``path``, then os.replace renames it over ``path`` in one step, so a crash mid-write
    leaves the previous file intact. Returns the path written."""
    arrays = {_MARKER: np.array(marker), **{key: to_host(value) for key, value in entries.items()}}
    path = _npz_path(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as file:
            np.savez(file, **arrays)  # a file object: np.savez appends no suffix
            file.flush()
            os.fsync(file.fileno())  # the bytes are on disk before the rename makes them the file
        os.chmod(temporary, 0o644)  # mkstemp makes 0600; give the usual permissions
        os.replace(temporary, path)
    except BaseException:  # Ctrl-C too: never leave the temporary file behind
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return path


def read_npz(path, what, marker):
    """Read every array of the .npz at ``path`` (else ``path`` + ".npz") without pickle, and
    check that ``marker`` wrote it. Returns (path, {key: array}) without the marker. Any
    failure is a ValueError that names the file and ``what`` it should hold."""
    path = os.fspath(path)
    if not os.path.exists(path) and os.path.exists(_npz_path(path)):
        path = _npz_path(path)
    problem = f"cannot read {what} file {path!r} (corrupt, truncated or not written by minippl)"
    with open(path, "rb") as file:  # a missing file raises FileNotFoundError here, as it should
        if file.read(4) != b"PK\x03\x04":  # otherwise np.load would try it as a pickle
            raise ValueError(f"{problem}: it is not an .npz (zip) archive")
    try:
        with np.load(path, allow_pickle=False) as npz:
            entries = {key: npz[key] for key in npz.files}  # all of it now: the file may change later
    except Exception as error:  # zipfile, OSError, EOFError, ValueError: all mean "unreadable"
        raise ValueError(f"{problem}: {type(error).__name__}: {error}") from None
    _check_marker(path, entries.pop(_MARKER, None), what, marker)
    return path, entries


def _check_marker(path, found, what, marker):
    """A file written by something else (another optimiser, plain np.savez) is refused by name."""
    found = str(found) if found is not None and found.dtype.kind == "U" and found.ndim == 0 else None
    if found is None:
        raise ValueError(f"{path!r} is not a minippl {what} file (no '{marker}' marker)")
    if found != marker:
        raise ValueError(f"{path!r} is not a minippl {what} file (it is marked '{found}', not '{marker}')")


# ------------------------------------------------------------------ what a store's and an optimiser's files hold
# (a checkpoint holds both side by side: checkpoint.py)
STORE_FORMAT = "minippl.ParamStore/1"


def optim_format(optim):
    return f"minippl.optim.{type(optim).__name__}/1"  # another optimiser's file is refused by name


def optim_entries(optim, kind="state"):
    """An optimiser's state as entries "<kind>/<param name>/<field>" (its step count and moments)."""
    return flatten(kind, optim.state)


def store_entries(store):
    """A param store as entries: "param/<name>" its unconstrained array, "constraint/<name>" its spec."""
    specs = {name: store.get_constraint(name).spec for name in store}
    return {**flatten("param", dict(store.named_parameters())), **flatten("constraint", specs)}


def store_state(path, entries):
    """Undo ``store_entries`` (after ``unflatten``): a ``ParamStore.get_state()`` dict, specs parsed."""
    state = {"params": entries["param"], "constraints": {}}
    for name, spec in entries["constraint"].items():
        if spec.dtype.kind != "U" or spec.ndim != 0:
            raise ValueError(f"{path!r}: unexpected entry {'constraint/' + name!r}")
        try:
            state["constraints"][name] = constraints.from_spec(str(spec))  # parsed, never evaluated
        except ValueError as error:
            raise ValueError(f"{path!r}: param '{name}': {error}") from None
    return state


def read_store(path):
    """(path, state) from a file written by ``ParamStore.save``."""
    path, entries = read_npz(path, "param store", STORE_FORMAT)
    return path, store_state(path, unflatten(path, entries, param=1, constraint=1))


def read_optim_state(path, optim):
    """(path, {name: {field: array}}) from a file written by ``optim.save`` (undoes ``optim_entries``)."""
    path, entries = read_npz(path, f"{type(optim).__name__} state", optim_format(optim))
    return path, unflatten(path, entries, state=2)["state"]
