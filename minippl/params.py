"""The param store: learnable arrays live here, unconstrained; reading one applies its transform.

Teaches: ``value = biject_to(constraint).forward(u)`` with ``u`` the stored array, so an optimiser
may move ``u`` anywhere in R; and module weights are stored as the very arrays the module holds
(no copies). Builds on constraints.py, constraint_registry.py (biject_to) and saving.py (its file).
"""
import contextlib
import re
import warnings
import weakref

import numpy as np

from . import saving
from .backend import array_module
from .distributions import constraints
from .distributions.constraint_registry import biject_to


def _as_float_array(value):
    """A floating ndarray stays the very same object; a Python or NumPy scalar becomes
    a 0-d array (updatable in place); integers become float64."""
    xp = array_module(value)
    array = value if xp is not np or isinstance(value, np.ndarray) else np.asarray(value)
    return array if array.dtype.kind == "f" else array.astype(np.float64)


def _unconstrained(name, value, constraint):
    """u = inverse(value) after checking that value lies in the constraint's support."""
    if not isinstance(constraint, constraints.Constraint):
        raise TypeError(f"param '{name}': constraint must be a Constraint such as "
                        f"constraints.positive, got {type(constraint).__name__}")
    value = _as_float_array(value)
    if not bool(array_module(value).all(constraint.check(value))):
        raise ValueError(f"param '{name}': initial value is outside {constraint!r} "
                         "(the value given is the CONSTRAINED one, e.g. a scale must be > 0)")
    return _as_float_array(biject_to(constraint).inverse(value))


class ParamStore:
    """Dict-like: ``store[name]`` is the constrained value; ``get_unconstrained(name)`` the stored array.

    >>> store = ParamStore()
    >>> float(store.setdefault("scale", 2.0, constraints.positive))
    2.0
    >>> float(store.get_unconstrained("scale"))  # log 2
    0.6931471805599453
    """

    def __init__(self):
        self._params = {}  # name -> unconstrained array (what optimisers update in place)
        self._constraints = {}  # name -> Constraint (its transform is biject_to(constraint), built when read)
        self._owners = {}  # name -> [(weakref to module, dotted path)]: who else holds the array

    # ---------------------------------------------------------- dict behaviour
    def __getitem__(self, name):
        return self.constrained(name)

    def __setitem__(self, name, value):  # a constrained value; the name keeps its constraint (real if new)
        constraint = self._constraints.get(name, constraints.real)
        self._set(name, _unconstrained(name, value, constraint), constraint)

    def __repr__(self):
        return f"ParamStore({', '.join(self._params) or 'empty'})"

    def __contains__(self, name):
        return name in self._params

    def __len__(self):
        return len(self._params)

    def __iter__(self):
        return iter(self._params)

    def __delitem__(self, name):
        self._require(name)
        del self._params[name], self._constraints[name]
        self._owners.pop(name, None)

    def keys(self):
        return self._params.keys()

    def items(self):  # (name, constrained value) pairs
        return [(name, self.constrained(name)) for name in self._params]

    def values(self):  # the constrained values, in the order of keys()
        return [self.constrained(name) for name in self._params]

    def clear(self):
        for table in (self._params, self._constraints, self._owners):
            table.clear()

    def is_empty(self):
        return not self._params

    # ---------------------------------------------------------- reading and writing
    def setdefault(self, name, init, constraint=constraints.real):
        """Store ``init`` (a CONSTRAINED value, or a callable returning one) unless ``name``
        exists; return the constrained value. With ``constraints.real`` and a float
        ndarray ``init``, the store keeps that very array, not a copy."""
        if name not in self._params:
            value = init() if callable(init) else init
            self._set(name, _unconstrained(name, value, constraint), constraint)
        return self.constrained(name)

    def get_unconstrained(self, name):
        self._require(name)
        return self._params[name]

    def get_constraint(self, name):
        self._require(name)
        return self._constraints[name]

    def get_transform(self, name):  # a small object, built on each read
        return biject_to(self.get_constraint(name))

    def constrained(self, name):
        """``forward(unconstrained)``; for a real param the stored array object itself."""
        return self.get_transform(name).forward(self._params[name])

    def get_param(self, name, init_tensor=None, constraint=constraints.real, event_dim=None):
        """Pyro's: ``store[name]``, or ``setdefault(name, init_tensor, constraint)``; ``event_dim`` is
        ignored, as in Pyro (it matters to ``minippl.param`` inside a plate, not to the store)."""
        if init_tensor is None:
            return self[name]
        return self.setdefault(name, init_tensor, constraint)

    def get_all_param_names(self):  # deprecated for keys(), as in Pyro
        warnings.warn("ParamStore.get_all_param_names() is deprecated; use .keys() instead.", DeprecationWarning,
                      stacklevel=2)
        return self.keys()

    def replace_param(self, param_name, new_param, old_param):
        """``store[param_name] = new_param`` once ``old_param`` is checked to be the current value
        (Pyro's check; deprecated there too)."""
        warnings.warn("ParamStore.replace_param() is deprecated; use store[name] = new_value instead.",
                      DeprecationWarning, stacklevel=2)
        current = self.constrained(param_name)  # raises a KeyError naming the known params
        same = old_param is current or old_param is self._params[param_name] or (
            getattr(old_param, "shape", None) == current.shape
            and bool(array_module(current).array_equal(old_param, current)))
        if not same:
            raise ValueError(f"replace_param('{param_name}', ...): old_param is not the param's current value; "
                             f"read it with store['{param_name}'] first (or just set store['{param_name}'] = ...)")
        self[param_name] = new_param

    def match(self, name):
        """``{param name: constrained value}`` for the names that the regular expression ``name``
        matches at their start (``re.match``, as in Pyro).

        >>> store = ParamStore()
        >>> _ = store.setdefault("loc_a", 0.0); _ = store.setdefault("scale_a", 1.0)
        >>> sorted(store.match("loc"))
        ['loc_a']
        """
        pattern = re.compile(name)
        return {key: self.constrained(key) for key in self._params if pattern.match(key)}

    def named_parameters(self):  # (name, unconstrained array): what an optimiser updates in place
        return list(self._params.items())

    def set_unconstrained(self, name, array):
        """Replace the stored array object by ``array`` and rebind every module holding it."""
        self._require(name)
        self._set(name, array, self._constraints[name])

    # ---------------------------------------------------------- modules
    def register_module_array(self, name, array, owner, path):
        """Share a module's parameter array with the store; return the array both now hold. A new name
        stores ``array`` itself (constraint real) and remembers ``owner`` and its dotted ``path``
        ("fc1.weight"); a known name keeps the store's array (one just loaded, say) and rebinds it
        into the module with ``owner.set_parameter(path, store_array)``."""
        if name not in self._params:
            self._set(name, array, constraints.real)
        else:
            stored = self._params[name]
            if self._constraints[name] != constraints.real:
                raise ValueError(f"param '{name}' is in the store with {self._constraints[name]!r}, "
                                 "but module parameters are unconstrained (real); use another name")
            if stored.shape != array.shape or stored.dtype != array.dtype:
                raise ValueError(
                    f"param '{name}' is in the store with shape {stored.shape} and dtype {stored.dtype}, "
                    f"but module path '{path}' has shape {array.shape} and dtype {array.dtype}; "
                    "call minippl.clear_param_store() (or use a scope()) before registering a changed module")
            if stored is not array:
                owner.set_parameter(path, stored)
        owners = self._owners.setdefault(name, [])
        if not any(ref() is owner and p == path for ref, p in owners):
            owners.append((_reference(owner), path))
        return self._params[name]

    # ---------------------------------------------------------- state
    def get_state(self):
        """Pyro's layout: {"params": {name: copy of unconstrained}, "constraints": {name: Constraint}}."""
        return {"params": {name: u.copy() for name, u in self._params.items()},
                "constraints": dict(self._constraints)}

    def set_state(self, state, where="set_state"):
        """Set every name in ``state`` (other names are kept, as in Pyro). Into an array of the same
        shape and dtype the values are copied, so modules sharing it see them; otherwise a copy of
        the state's array replaces it, and its owners are rebound. ``where`` names the state in an
        error (a file's path)."""
        params, constraints_ = self._validate_state(state, where=where)
        for name, u in params.items():
            current = self._params.get(name)
            xp = array_module(current if current is not None else u)  # a new name stays on its array's device
            if current is not None and current.shape == u.shape and current.dtype == u.dtype:
                current[...] = xp.asarray(u)
                self._constraints[name] = constraints_[name]
            else:
                self._set(name, xp.array(u, copy=True), constraints_[name])

    def save(self, path):  # atomically, to path (".npz" appended if missing); returns that path
        return saving.write_npz(path, saving.STORE_FORMAT, saving.store_entries(self))

    def load(self, path):
        """Read a file written by ``save`` and ``set_state`` it. The whole file is read and
        checked first: a corrupt file raises ValueError and leaves the store unchanged."""
        path, state = saving.read_store(path)
        self.set_state(state, where=repr(path))  # checked whole before anything changes

    @contextlib.contextmanager
    def scope(self, state=None):
        """Make a fresh store (or ``state``: a store from an earlier scope, or a ``get_state()`` dict)
        the active one inside the block; yield it. Pyro's scope swaps the contents of its one store;
        minippl swaps which store is active, so the outer store and the modules bound to its arrays
        are untouched."""
        global _ACTIVE_STORE
        inner = state if isinstance(state, ParamStore) else ParamStore()
        if state is not None and not isinstance(state, ParamStore):
            inner.set_state(state)
        previous, _ACTIVE_STORE = _ACTIVE_STORE, inner
        try:
            yield inner
        finally:
            _ACTIVE_STORE = previous

    # ---------------------------------------------------------- internals
    def _require(self, name):
        if name not in self._params:
            known = ", ".join(repr(n) for n in list(self._params)[:10]) or "none"
            raise KeyError(f"no param named {name!r} in the param store (known: {known})")

    def _set(self, name, array, constraint):
        if getattr(array, "dtype", None) is None or array.dtype.kind != "f":
            raise TypeError(f"param '{name}': the stored array must be a floating ndarray, "
                            f"got {type(array).__name__}")
        self._check_module_shape(name, array.shape, where="set")
        old = self._params.get(name)
        self._params[name] = array
        self._constraints[name] = constraint
        if old is not None and old is not array:  # every module holding the old array gets the new one
            alive = []
            for ref, path in self._owners.get(name, []):
                owner = ref()
                if owner is not None:  # a module that was garbage-collected is forgotten
                    owner.set_parameter(path, array)
                    alive.append((ref, path))
            self._owners[name] = alive

    def _check_module_shape(self, name, shape, where):
        """A module's layer sizes are fixed: its arrays may be replaced, never reshaped."""
        current = self._params.get(name)
        owned = any(ref() is not None for ref, _ in self._owners.get(name, []))
        if owned and current.shape != tuple(shape):
            raise ValueError(f"{where}: param {name!r} belongs to a module and has shape {current.shape}, "
                             f"the new value has shape {tuple(shape)}; build the module with matching "
                             "sizes, or clear the param store first")

    def _validate_state(self, state, where):
        """Check a state dict completely before anything changes; return (params, constraints)."""
        if not isinstance(state, dict) or "params" not in state or "constraints" not in state:
            raise ValueError(f"{where}: a state is a dict with keys 'params' and 'constraints' "
                             "(see get_state())")
        params, constraints_ = state["params"], state["constraints"]
        if set(params) != set(constraints_):
            missing = sorted(set(params) ^ set(constraints_))
            raise ValueError(f"{where}: params and constraints name different sites: {missing}")
        for name, u in params.items():
            if getattr(u, "dtype", None) is None or u.dtype.kind != "f":
                raise ValueError(f"{where}: param {name!r} is not a floating array "
                                 f"({getattr(u, 'dtype', type(u))})")
            if not isinstance(constraints_[name], constraints.Constraint):
                raise ValueError(f"{where}: constraint of {name!r} is not a Constraint")
            self._check_module_shape(name, u.shape, where)
        return params, constraints_


def _reference(owner):
    """A weak reference where the owner allows one (a store must not keep dead modules alive)."""
    try:
        return weakref.ref(owner)
    except TypeError:
        return lambda: owner


# ------------------------------------------------------------------ the active store
_ACTIVE_STORE = ParamStore()


def get_param_store():
    """The active param store (a fresh one inside ``get_param_store().scope()``)."""
    return _ACTIVE_STORE


def clear_param_store():
    """Empty the active param store (Pyro's ``pyro.clear_param_store()``)."""
    _ACTIVE_STORE.clear()
