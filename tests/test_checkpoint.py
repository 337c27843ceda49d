"""Lose nothing: a save that dies half-way keeps the previous file; a bad file changes nothing.

Saves (the param store, an optimiser, a training checkpoint) write a temporary file and
rename it, so a crash mid-write, whether an exception or a killed process, leaves the
previous file loadable. Loading checks everything first and never unpickles.
"""
import os
import pathlib
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import minippl
from minippl import nn
from minippl.checkpoint import load_checkpoint, save_checkpoint
from minippl.distributions import constraints
from minippl.infer import SVI, Trace_ELBO
from minippl.optim import SGD, Adam

ROOT = pathlib.Path(__file__).resolve().parent.parent


from simple_models import guide, model  # noqa: E402  (tests/ is on sys.path)


DATA = np.array([1.0, 2.0, 1.5, 0.5])


def trained(steps=5, seed=0):
    optim = Adam({"lr": 0.05})
    svi = SVI(model, guide, optim, Trace_ELBO())
    minippl.set_rng_seed(seed)
    for _ in range(steps):
        svi.step(DATA)
    return svi, optim


def state_of(optim):
    params = {k: v.copy() for k, v in minippl.get_param_store().get_state()["params"].items()}
    return params, optim.get_state()


def assert_state_equal(a, b):
    (params_a, optim_a), (params_b, optim_b) = a, b
    assert params_a.keys() == params_b.keys() and optim_a.keys() == optim_b.keys()
    for name in params_a:
        np.testing.assert_array_equal(params_a[name], params_b[name])
    for name in optim_a:
        for key in optim_a[name]:
            np.testing.assert_array_equal(optim_a[name][key], optim_b[name][key])


# ---------------------------------------------------------------- round trip
def test_resuming_from_a_checkpoint_continues_exactly(tmp_path):
    svi, optim = trained()
    path = save_checkpoint(tmp_path / "run.npz", optim, step=5, rng=minippl.backend.global_rng().bit_generator.state)
    for _ in range(3):
        svi.step(DATA)
    expected = state_of(optim)

    minippl.clear_param_store()
    fresh_optim = Adam({"lr": 0.05})
    metadata = load_checkpoint(path, fresh_optim)
    minippl.backend.global_rng().bit_generator.state = metadata["rng"]
    assert metadata["step"] == 5
    resumed = SVI(model, guide, fresh_optim, Trace_ELBO())
    for _ in range(3):
        resumed.step(DATA)
    assert_state_equal(state_of(fresh_optim), expected)


# ---------------------------------------------------------------- a save that dies half-way
def half_written_savez(error):
    def savez(file, **arrays):
        file.write(b"PK\x03\x04 the first half of a zip archive")
        raise error

    return savez


SAVERS = {
    "checkpoint": lambda path, optim: save_checkpoint(path, optim, note="first"),
    "param store": lambda path, optim: minippl.get_param_store().save(path),
    "optimiser": lambda path, optim: optim.save(path),
}
LOADERS = {
    "checkpoint": lambda path, optim: load_checkpoint(path, optim),
    "param store": lambda path, optim: minippl.get_param_store().load(path),
    "optimiser": lambda path, optim: optim.load(path),
}


@pytest.mark.parametrize("what", list(SAVERS))
@pytest.mark.parametrize("error", [OSError("No space left on device"), KeyboardInterrupt()],
                         ids=["disk full", "Ctrl-C"])
def test_a_save_that_raises_half_way_keeps_the_previous_file(tmp_path, monkeypatch, what, error):
    svi, optim = trained()
    path = SAVERS[what](tmp_path / "saved.npz", optim)
    saved = state_of(optim)
    svi.step(DATA)  # the state moves on
    monkeypatch.setattr(np, "savez", half_written_savez(error))
    with pytest.raises(type(error)):
        SAVERS[what](path, optim)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["saved.npz"]  # the temporary file is gone too
    LOADERS[what](path, optim)
    restored = state_of(optim)
    if what == "param store":
        assert_state_equal((restored[0], {}), (saved[0], {}))
    elif what == "optimiser":
        assert_state_equal(({}, restored[1]), ({}, saved[1]))
    else:
        assert_state_equal(restored, saved)


def test_a_failed_rename_keeps_the_previous_file(tmp_path, monkeypatch):
    _, optim = trained()
    path = save_checkpoint(tmp_path / "run.npz", optim)
    saved = state_of(optim)

    def refuse(*args):
        raise PermissionError("rename refused")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(PermissionError):
        save_checkpoint(path, SGD({"lr": 1.0}))
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["run.npz"]
    minippl.get_param_store()["loc"] = np.array(42.0)
    load_checkpoint(path, optim)
    assert_state_equal(state_of(optim), saved)


KILLED_MID_SAVE = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    import minippl
    from minippl.checkpoint import save_checkpoint
    from minippl.optim import Adam

    path, what = sys.argv[1], sys.argv[2]
    store = minippl.get_param_store()
    store.setdefault("w", np.full(1000, 1.0))
    optim = Adam({"lr": 0.1})
    optim.step({"w": store.get_unconstrained("w")}, {"w": np.ones(1000)})  # so there is Adam state to save
    store["w"] = np.full(1000, 1.0)
    save = (lambda: save_checkpoint(path, optim, version=1)) if what == "checkpoint" else (lambda: store.save(path))
    save()
    store["w"] = np.full(1000, 2.0)

    def savez_then_die(file, **arrays):
        file.write(b"PK\\x03\\x04" + b"half of the new archive" * 100)
        file.flush()
        os.kill(os.getpid(), signal.SIGKILL)  # the process dies in the middle of the write

    np.savez = savez_then_die
    save()
""")


@pytest.mark.parametrize("what", ["checkpoint", "param store"])
def test_a_process_killed_mid_save_leaves_the_previous_file_loadable(tmp_path, what):
    path = tmp_path / "saved.npz"
    result = subprocess.run([sys.executable, "-c", KILLED_MID_SAVE, str(path), what],
                            cwd=ROOT, capture_output=True, timeout=120)
    assert result.returncode == -signal.SIGKILL, result.stderr.decode()
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name != "saved.npz")
    assert len(leftovers) == 1 and leftovers[0].startswith("saved.npz.") and leftovers[0].endswith(".tmp")
    store = minippl.get_param_store()
    if what == "checkpoint":
        optim = Adam({"lr": 0.1})
        assert load_checkpoint(path, optim) == {"version": 1}
        assert optim.state["w"]["step"] == 1
    else:
        store.load(path)
    np.testing.assert_array_equal(store["w"], np.full(1000, 1.0))  # the first save, whole


# ---------------------------------------------------------------- a bad file changes nothing
class Exploit:
    """Unpickling this would run code (make a folder): minippl must never get that far."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def damaged_files(good, tmp_path):
    data = good.read_bytes()
    files = {"truncated": data[: len(data) // 2], "empty": b"", "garbage": b"\x00" * 64,
             "a pickle": b"\x80\x04\x95 not an archive"}
    for name, content in files.items():
        (tmp_path / f"{name}.npz").write_bytes(content)
    np.savez(tmp_path / "object array.npz", __format__=np.array("minippl.checkpoint/1"),
             metadata=np.array("{}"), **{"param/loc": np.array([Exploit(tmp_path / "unpickled")], dtype=object)})
    np.savez(tmp_path / "foreign.npz", weights=np.zeros(3))
    return sorted(tmp_path.glob("*.npz"))


def test_corrupt_or_foreign_checkpoints_are_refused_and_change_nothing(tmp_path):
    _, optim = trained()
    good = pathlib.Path(save_checkpoint(tmp_path / "good.npz", optim))
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    before = state_of(optim)
    for path in damaged_files(good, bad_dir):
        with pytest.raises(ValueError, match=path.name.replace("(", r"\(")):
            load_checkpoint(path, optim)
        assert_state_equal(state_of(optim), before)
        with pytest.raises(ValueError):
            minippl.get_param_store().load(path)
        assert_state_equal(state_of(optim), before)
    assert not (bad_dir / "unpickled").exists()


def test_mismatched_checkpoints_are_refused_and_change_nothing(tmp_path):
    _, optim = trained()
    path = save_checkpoint(tmp_path / "good.npz", optim)
    before = state_of(optim)
    with pytest.raises(ValueError, match="holds Adam state, not SGD state"):
        load_checkpoint(path, SGD({"lr": 0.1, "momentum": 0.9}))
    # a module whose layer sizes changed since the save
    assert_state_equal(state_of(optim), before)
    # a module whose layer sizes changed since the save
    net = nn.Dense(2, 3, dtype=np.float64)
    minippl.module("net", net)
    with minippl.get_param_store().scope():
        minippl.module("net", nn.Dense(2, 4, dtype=np.float64))
        wrong = save_checkpoint(tmp_path / "wrong.npz")
    weight = net.weight.copy()
    with pytest.raises(ValueError, match=r"cannot resume.*'net\$\$\$weight'.*shape \(3, 2\)"):
        load_checkpoint(wrong)
    np.testing.assert_array_equal(net.weight, weight)


def test_a_checkpoint_whose_moments_or_counts_do_not_fit_is_refused_and_changes_nothing(tmp_path):
    from minippl import saving

    _, optim = trained()
    store = minippl.get_param_store()
    params = {name: store.get_unconstrained(name).copy() for name in store.keys()}
    before = state_of(optim)
    name = next(iter(optim.state))
    for field, bad in [("exp_avg", np.zeros(5)), ("step", np.array([1, 2]))]:
        entries = {"metadata": "{}", **saving.store_entries(store), "optim": "Adam",
                   **saving.optim_entries(optim, kind="optim")}
        entries[f"optim/{name}/{field}"] = bad
        path = saving.write_npz(tmp_path / f"bad_{field}.npz", "minippl.checkpoint/1", entries)
        with pytest.raises(ValueError, match=rf"cannot resume.*{field!r} of {name!r}"):
            load_checkpoint(path, optim)
        assert_state_equal(state_of(optim), before)
        for n, value in params.items():
            np.testing.assert_array_equal(store.get_unconstrained(n), value)


def test_store_load_refuses_a_file_with_a_bad_constraint_spec(tmp_path):
    np.savez(tmp_path / "bad.npz", __format__=np.array("minippl.ParamStore/1"),
             **{"param/s": np.zeros(2), "constraint/s": np.array("__import__('os')")})
    store = minippl.get_param_store()
    store.setdefault("s", np.ones(2), constraints.positive)
    with pytest.raises(ValueError, match="unknown constraint spec"):
        store.load(tmp_path / "bad.npz")
    np.testing.assert_array_equal(store["s"], np.ones(2))
