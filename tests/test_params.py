"""The param store: dict behaviour, no copies for real arrays, constraints, state,
atomic save / validated load, scope(), and sharing arrays with modules."""
import os

import numpy as np
import pytest

from minippl import params as params_module
from minippl.distributions import constraints
from minippl.params import ParamStore, clear_param_store, get_param_store


class FakeModule:
    """Just enough of a Module: parameter attributes reached by a dotted path."""

    def __init__(self, weight):
        self.fc = type("Layer", (), {})()
        self.fc.weight = weight

    def set_parameter(self, path, array):
        owner_path, _, attribute = path.rpartition(".")
        owner = self
        for part in filter(None, owner_path.split(".")):
            owner = getattr(owner, part)
        setattr(owner, attribute, array)


@pytest.fixture
def store():
    return ParamStore()


def test_dict_behaviour(store):
    assert store.is_empty() and len(store) == 0
    loc = store.setdefault("loc", np.zeros(3))
    scale = store.setdefault("scale", np.full(3, 2.0), constraints.positive)
    np.testing.assert_allclose(scale, 2.0)
    assert "loc" in store and "nope" not in store and len(store) == 2
    assert list(store.keys()) == ["loc", "scale"] and list(store) == ["loc", "scale"]
    assert [name for name, _ in store.items()] == ["loc", "scale"]
    assert store["loc"] is loc
    np.testing.assert_allclose(store.get_unconstrained("scale"), np.log(2.0))
    assert store.get_constraint("scale") is constraints.positive
    assert dict(store.named_parameters())["scale"] is store.get_unconstrained("scale")
    del store["loc"]
    assert "loc" not in store and len(store) == 1
    with pytest.raises(KeyError, match="loc"):
        store["loc"]
    store.clear()
    assert store.is_empty()


def test_setdefault_keeps_the_first_value_and_accepts_callables(store):
    first = store.setdefault("w", lambda: np.ones(2))
    second = store.setdefault("w", np.zeros(2))
    assert second is first and (second == 1).all()
    calls = []
    store.setdefault("w", lambda: calls.append(1))
    assert not calls  # the initialiser is only called for a new name


def test_real_arrays_are_never_copied(store):
    weight = np.ones((2, 3), dtype=np.float32)
    store.setdefault("w", weight)
    assert store.get_unconstrained("w") is weight
    assert store["w"] is weight and store.constrained("w") is weight
    assert store.get_transform("w").forward(weight) is weight


def test_scalars_and_integers_become_float_arrays(store):
    store.setdefault("a", 1.5)
    store.setdefault("b", [1, 2])
    store.setdefault("c", np.float32(0.5), constraints.unit_interval)
    assert isinstance(store.get_unconstrained("a"), np.ndarray)
    assert store.get_unconstrained("a").dtype == np.float64
    assert store.get_unconstrained("b").dtype == np.float64
    assert store.get_unconstrained("c").dtype == np.float32
    np.testing.assert_allclose(store["c"], 0.5)


def test_initial_value_outside_the_support_is_an_error(store):
    with pytest.raises(ValueError, match="'scale'.*positive"):
        store.setdefault("scale", np.array([1.0, -1.0]), constraints.positive)
    with pytest.raises(TypeError, match="Constraint"):
        store.setdefault("x", 1.0, "positive")
    assert store.is_empty()


def test_setitem_keeps_the_constraint(store):
    store.setdefault("p", 0.5, constraints.unit_interval)
    store["p"] = np.array(0.25)
    assert store.get_constraint("p") == constraints.unit_interval
    np.testing.assert_allclose(store["p"], 0.25)


def test_get_state_copies_and_set_state_copies_in_place(store):
    weight = np.zeros(3)
    store.setdefault("w", weight)
    store.setdefault("s", np.ones(2), constraints.positive)
    state = store.get_state()
    assert state["params"]["w"] is not weight
    assert state["constraints"] == {"w": constraints.real, "s": constraints.positive}
    state["params"]["w"][:] = 7.0
    assert (weight == 0).all()  # get_state gave a copy
    store.set_state(state)
    assert store.get_unconstrained("w") is weight and (weight == 7).all()  # copied INTO the array
    state["params"]["w"][:] = 9.0
    assert (weight == 7).all()  # and not aliased to the state afterwards


def test_set_state_keeps_other_names_and_replaces_mismatched_shapes(store):
    store.setdefault("keep", np.ones(1))
    store.setdefault("w", np.zeros(3))
    store.set_state({"params": {"w": np.ones(5), "new": np.ones(2)},
                     "constraints": {"w": constraints.real, "new": constraints.positive}})
    assert store["w"].shape == (5,) and "keep" in store
    np.testing.assert_allclose(store["new"], np.e)  # the state holds unconstrained values
    with pytest.raises(ValueError, match="params and constraints"):
        store.set_state({"params": {"x": np.ones(1)}, "constraints": {}})


def test_save_load_round_trip(store, tmp_path):
    store.setdefault("w", np.arange(6, dtype=np.float32).reshape(2, 3))
    store.setdefault("scale", np.array([0.5, 2.0]), constraints.positive)
    store.setdefault("p", 0.3, constraints.interval(0.1, 0.9))
    store.setdefault("a$$$fc.weight/odd name", np.ones(1), constraints.greater_than(-1.0))
    written = store.save(tmp_path / "params")
    assert written == str(tmp_path / "params.npz") and os.path.exists(written)
    loaded = ParamStore()
    loaded.load(tmp_path / "params")  # the suffix is found as np.savez's convention adds it
    assert list(loaded.keys()) == list(store.keys())
    for name in store.keys():
        assert loaded.get_constraint(name) == store.get_constraint(name)
        assert loaded.get_unconstrained(name).dtype == store.get_unconstrained(name).dtype
        np.testing.assert_array_equal(loaded.get_unconstrained(name), store.get_unconstrained(name))
    assert sorted(os.listdir(tmp_path)) == ["params.npz"]  # no temporary file left behind


def test_load_copies_into_existing_arrays(store, tmp_path):
    weight = np.zeros(3)
    store.setdefault("w", weight)
    other = ParamStore()
    other.setdefault("w", np.full(3, 4.0))
    other.save(tmp_path / "p.npz")
    store.load(tmp_path / "p.npz")
    assert store.get_unconstrained("w") is weight and (weight == 4).all()


def test_failed_save_leaves_the_previous_file(store, tmp_path, monkeypatch):
    store.setdefault("w", np.ones(3))
    path = store.save(tmp_path / "p.npz")
    store["w"][:] = 5.0

    def broken_savez(file, **arrays):
        file.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        store.save(path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["p.npz"]
    reloaded = ParamStore()
    reloaded.load(path)
    np.testing.assert_array_equal(reloaded["w"], np.ones(3))


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_corrupt_file_raises_and_leaves_the_store_unchanged(store, tmp_path, damage):
    store.setdefault("w", np.ones(3))
    path = store.save(tmp_path / "p.npz")
    data = open(path, "rb").read()
    damaged = {"garbage": b"not a zip file at all", "truncated": data[: len(data) // 2], "empty": b""}[damage]
    open(path, "wb").write(damaged)
    store["w"][:] = 2.0
    before = store.get_state()
    with pytest.raises(ValueError, match="p.npz"):
        store.load(path)
    after = store.get_state()
    assert list(after["params"]) == list(before["params"])
    np.testing.assert_array_equal(after["params"]["w"], before["params"]["w"])


def test_bad_spec_or_foreign_file_raises_and_changes_nothing(store, tmp_path):
    store.setdefault("w", np.ones(3))
    bad_spec = tmp_path / "bad.npz"
    np.savez(bad_spec, __format__=np.array("minippl.ParamStore/1"), **{
        "param/w": np.zeros(3), "param/v": np.zeros(2),
        "constraint/w": np.array("real"), "constraint/v": np.array("interval(1.0, 0.0)")})
    with pytest.raises(ValueError, match=r"bad\.npz.*'v'.*empty"):
        store.load(bad_spec)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, x=np.zeros(2))
    with pytest.raises(ValueError, match="not a minippl param store"):
        store.load(foreign)
    assert list(store.keys()) == ["w"] and (store["w"] == 1).all()
    with pytest.raises(FileNotFoundError):
        store.load(tmp_path / "missing.npz")


def test_scope_activates_a_fresh_store():
    clear_param_store()
    outer = get_param_store()
    outer.setdefault("a", np.ones(1))
    with outer.scope() as first:
        assert get_param_store() is first and first is not outer and first.is_empty()
        get_param_store().setdefault("b", np.zeros(1))
        clear_param_store()  # clears the active (inner) store only
        get_param_store().setdefault("b", np.full(1, 3.0))
    assert get_param_store() is outer and list(outer.keys()) == ["a"]
    with get_param_store().scope(first) as again:  # go back to a store trained earlier
        assert again is first and (get_param_store()["b"] == 3).all()
    with get_param_store().scope(outer.get_state()) as copied:
        assert list(copied.keys()) == ["a"]
        assert copied.get_unconstrained("a") is not outer.get_unconstrained("a")
    assert get_param_store() is outer
    clear_param_store()


def test_register_module_array_shares_and_rebinds(store):
    weight = np.ones((2, 2))
    module = FakeModule(weight)
    returned = store.register_module_array("enc$$$fc.weight", weight, module, "fc.weight")
    assert returned is weight and store.get_unconstrained("enc$$$fc.weight") is weight

    # a second module under the same name is rebound to the store's array
    fresh = FakeModule(np.zeros((2, 2)))
    returned = store.register_module_array("enc$$$fc.weight", fresh.fc.weight, fresh, "fc.weight")
    assert returned is weight and fresh.fc.weight is weight

    # replacing the array rebinds every owner
    replacement = np.full((2, 2), 3.0)
    store.set_unconstrained("enc$$$fc.weight", replacement)
    assert module.fc.weight is replacement and fresh.fc.weight is replacement

    # set_state with another dtype replaces the array and rebinds too
    store.set_state({"params": {"enc$$$fc.weight": np.ones((2, 2), dtype=np.float32)},
                     "constraints": {"enc$$$fc.weight": constraints.real}})
    assert module.fc.weight is store.get_unconstrained("enc$$$fc.weight")
    assert module.fc.weight.dtype == np.float32

    # a module's array may not change shape: refused before anything changes
    with pytest.raises(ValueError, match="belongs to a module"):
        store.set_state({"params": {"other": np.ones(1), "enc$$$fc.weight": np.ones((3, 2))},
                         "constraints": {"other": constraints.real, "enc$$$fc.weight": constraints.real}})
    with pytest.raises(ValueError, match="belongs to a module"):
        store.set_unconstrained("enc$$$fc.weight", np.ones(3))
    assert "other" not in store and module.fc.weight.shape == (2, 2)
    with pytest.raises(ValueError, match="shape"):
        store.register_module_array("enc$$$fc.weight", np.ones(4), FakeModule(np.ones(4)), "fc.weight")


def test_dead_owners_are_forgotten(store):
    module = FakeModule(np.ones(2))
    store.register_module_array("m$$$fc.weight", module.fc.weight, module, "fc.weight")
    del module
    store.set_unconstrained("m$$$fc.weight", np.zeros(2))  # no error: the owner was only weakly held
    assert (store["m$$$fc.weight"] == 0).all()


def test_module_registered_after_load_takes_the_loaded_array(tmp_path):
    trained = ParamStore()
    trained.register_module_array("m$$$fc.weight", np.full(2, 5.0), FakeModule(None), "fc.weight")
    path = trained.save(tmp_path / "trained")
    store = ParamStore()
    store.load(path)
    module = FakeModule(np.zeros(2))
    store.register_module_array("m$$$fc.weight", module.fc.weight, module, "fc.weight")
    assert module.fc.weight is store.get_unconstrained("m$$$fc.weight") and (module.fc.weight == 5).all()


def test_module_level_functions_use_the_active_store():
    clear_param_store()
    get_param_store().setdefault("x", np.ones(1))
    assert params_module.get_param_store() is get_param_store() and len(get_param_store()) == 1
    clear_param_store()
    assert get_param_store().is_empty()
