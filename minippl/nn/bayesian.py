"""Bayesian modules (Pyro's PyroModule): attributes that are constrained params or random variables.

Teaches: reading a ``PyroParam``/``PyroSample`` attribute is a ``param``/``sample`` site named by its
path ("bnn.fc1.weight"), so every handler sees it, and it keeps one value per call of the root
module, so a Bayesian layer's forward and its call record share one weight. Its backward needs
nothing more: it reads only the cache its forward made (the layer contract, module.py). Builds
on module.py.
"""
from collections import namedtuple

from .. import primitives, traced
from ..distributions import constraints
from ..distributions.distribution import Distribution
from ..params import get_param_store
from .module import Module

PyroParam = namedtuple("PyroParam", ["init_value", "constraint", "event_dim"], defaults=(constraints.real, None))
PyroParam.__doc__ = """A learnable attribute: ``module.scale = PyroParam(np.ones(3), constraints.positive)``.

Reading it is ``minippl.param(fullname, init_value, constraint)``: stored unconstrained in the
param store under the attribute's path, returned constrained. ``init_value`` may be a callable
returning the value (lazy initialisation); it is used only when the store lacks the name."""


class PyroSample(namedtuple("PyroSample", ["prior"])):
    """A random attribute: ``module.weight = PyroSample(dist.Normal(0., 1.).expand([3, 2]).to_event(2))``.

    ``prior`` is a distribution, or a function of the module returning one (a hierarchical
    prior such as ``lambda self: dist.Normal(0., self.prior_scale)``). Reading the attribute is
    ``minippl.sample(fullname, prior)``, once per call of the root module."""

    __slots__ = ()

    def __new__(cls, prior):
        if not (isinstance(prior, Distribution) or callable(prior)):
            raise TypeError(f"PyroSample needs a distribution or a function module -> distribution, "
                            f"got {type(prior).__name__}")
        return super().__new__(cls, prior)


# Short aliases of minippl's own (Pyro spells only the long names, pyro.nn.PyroParam and PyroSample).
Param, Sample = PyroParam, PyroSample


def _make_name(prefix, name):
    return f"{prefix}.{name}" if prefix else name


class _Context:
    """The values a module tree's random and constrained attributes hold during one call.

    Shared by a root PyroModule and every PyroModule below it. Entered by each call
    (nested calls only count depth); the outermost exit forgets the values, so the
    next top-level call draws afresh.
    """

    def __init__(self):
        self.depth = 0
        self.cache = {}  # fullname -> value read in this call

    def __enter__(self):
        self.depth += 1

    def __exit__(self, *exc):
        self.depth -= 1
        if self.depth == 0:
            self.cache.clear()


_CACHE_MISS = object()


class PyroModule(Module):
    """A Module whose attributes may be :class:`PyroParam` or :class:`PyroSample` (Pyro's PyroModule).

    Three ways to make one, as in Pyro: subclass it (``class BNN(PyroModule)``); mix it into a
    layer class with ``PyroModule[nn.Linear](3, 2)``; or nest ``PyroModule[nn.Sequential](...)``.
    A root module's sites are named from ``name`` (default ""), a child's by its attribute path:

    - a ``PyroSample`` attribute is a ``sample`` site, a ``PyroParam`` attribute a ``param`` site;
    - a plain float array of a PyroModule is a point estimate: ``param(fullname)``, sharing the
      array with the store (Pyro's rule for ``nn.Parameter``s);
    - a plain (non-Pyro) child module is registered with ``minippl.module(fullname, child)``.

    Each call of the root module reads every attribute at most once (a cache cleared when the
    call returns), so a Bayesian layer's forward and its call record see one weight (and its
    backward, which reads only forward's cache, sees it too: a read there raises); a read outside
    any call is its own site and draws afresh. Don't also register a PyroModule with ``minippl.module``: its
    state is in the param store already, by path, and ``get_param_store().save/load`` covers it.

    >>> import numpy as np, minippl, minippl.distributions as dist
    >>> from minippl import nn
    >>> from minippl.handlers import trace
    >>> layer = PyroModule[nn.Linear](2, 1)
    >>> layer.weight = PyroSample(dist.Normal(0., 1.).expand([1, 2]).to_event(2))
    >>> tr = trace(layer).get_trace(np.ones((4, 2)))
    >>> [name for name in tr.nodes]
    ['bias', 'weight']
    >>> minippl.clear_param_store()
    """

    def __init__(self, *args, name="", **kwargs):
        # set before Module.__init__ so that __setattr__ works while subclasses build themselves
        object.__setattr__(self, "_pyro_name", name)
        object.__setattr__(self, "_pyro_context", _Context())
        object.__setattr__(self, "_pyro_params", {})
        object.__setattr__(self, "_pyro_samples", {})
        super().__init__(*args, **kwargs)

    def __class_getitem__(cls, module_class):
        """``PyroModule[Layer]``: ``Layer`` with PyroModule mixed in (a cached class named "PyroLayer")."""
        if cls is not PyroModule:
            name = getattr(module_class, "__name__", module_class)
            raise TypeError(f"{cls.__name__}[...] is not supported; write PyroModule[{name}]")
        if not (isinstance(module_class, type) and issubclass(module_class, Module)):
            raise TypeError(f"PyroModule[...] takes a minippl.nn.Module subclass, got {module_class!r}")
        if issubclass(module_class, PyroModule):
            return module_class
        if module_class is Module:
            return PyroModule
        if module_class not in _MIXINS:
            # the layer class first, as Pyro does: its __init__ runs, and its super().__init__()
            # reaches PyroModule.__init__ before any attribute is assigned
            _MIXINS[module_class] = type(f"Pyro{module_class.__name__}", (module_class, PyroModule),
                                         {"__module__": module_class.__module__})
        return _MIXINS[module_class]

    # ------------------------------------------------------------ names
    def _pyro_fullname(self, name):
        return _make_name(self._pyro_name, name)

    def _pyro_set_supermodule(self, name, context):
        """Become part of a parent's tree: take its context and name every PyroModule below by path."""
        object.__setattr__(self, "_pyro_name", name)
        object.__setattr__(self, "_pyro_context", context)
        for child_name in self._module_names:
            child = getattr(self, child_name)
            if isinstance(child, PyroModule):
                child._pyro_set_supermodule(_make_name(name, child_name), context)

    # ------------------------------------------------------------ attributes
    def __setattr__(self, name, value):
        if "_pyro_params" not in self.__dict__:
            raise AttributeError(f"cannot assign {name!r} before PyroModule.__init__() ran: call "
                                 f"super().__init__() at the top of {type(self).__name__}.__init__")
        if isinstance(value, (PyroParam, PyroSample)):
            self._pyro_forget(name)
            if isinstance(value, PyroParam):
                self._pyro_params[name] = value
            else:
                self._pyro_samples[name] = value
            return
        self._pyro_params.pop(name, None)
        self._pyro_samples.pop(name, None)
        super().__setattr__(name, value)
        if isinstance(value, PyroModule):
            value._pyro_set_supermodule(self._pyro_fullname(name), self._pyro_context)

    def _pyro_forget(self, name):
        """Drop whatever ``name`` was (a parameter, a submodule, a Pyro attribute) before it is redefined."""
        self._pyro_params.pop(name, None)
        self._pyro_samples.pop(name, None)
        if name in self.__dict__:
            super().__delattr__(name)

    def __delattr__(self, name):
        if name in self._pyro_params or name in self._pyro_samples:
            self._pyro_params.pop(name, None)
            self._pyro_samples.pop(name, None)
        else:
            super().__delattr__(name)

    def __getattr__(self, name):
        # only reached when normal lookup fails: Pyro attributes are kept out of __dict__
        state = self.__dict__
        if name in state.get("_pyro_samples", ()) or name in state.get("_pyro_params", ()):
            running = traced.running()
            if running is not None and running[1] == "backward":  # a read here would be a site of its own
                raise RuntimeError(
                    f"{type(running[0]).__name__}.backward read self.{name}; a backward reads only its cache "
                    f"(the layer contract, nn/module.py): put {name} in the cache in forward. Read here, it "
                    f"would be a new {'sample' if name in state['_pyro_samples'] else 'param'} site of its own.")
            with self._pyro_context:
                value = self._pyro_read(name)
            # In a gradient run the site's value is traced, and model code computes on it as such.
            # A layer's forward runs with recording off (traced.call_plain) and computes on plain
            # arrays, fused kernels included: there the read is the plain array. (The tape links
            # the layer call to the traced value, which current_parameters() gives the record.)
            return value if traced.is_recording() else traced.unwrap(value)
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def _pyro_read(self, name):
        """The attribute's value in the current call: a cached one, or a new param/sample site."""
        cache, fullname = self._pyro_context.cache, self._pyro_fullname(name)
        value = cache.get(fullname, _CACHE_MISS)
        if value is not _CACHE_MISS:
            return value
        if name in self._pyro_params:
            init, constraint, event_dim = self._pyro_params[name]
            value = primitives.param(fullname, init, constraint=constraint, event_dim=event_dim)
        else:
            prior = self._pyro_samples[name].prior
            if not isinstance(prior, Distribution):
                prior = prior(self)  # a hierarchical prior: a function of the module
                if not isinstance(prior, Distribution):
                    raise TypeError(f"the prior of PyroSample attribute '{fullname}' returned "
                                    f"{type(prior).__name__}; it must return a distribution")
            value = primitives.sample(fullname, prior)
        cache[fullname] = value
        return value

    def _pyro_register_point_estimates(self):
        """Put this module's plain arrays and plain child modules in the param store, by path."""
        cache, store = self._pyro_context.cache, get_param_store()
        for name in self._parameter_names:
            fullname = self._pyro_fullname(name)
            if fullname not in cache:
                # the store keeps this very array (or, after a load, rebinds the module to its own); unwrap:
                # an enclosing composite may show it traced (module.py)
                store.register_module_array(fullname, traced.unwrap(getattr(self, name)), owner=self, path=name)
                cache[fullname] = primitives.param(fullname)
        for name in self._module_names:
            child = getattr(self, name)
            fullname = self._pyro_fullname(name)
            if not isinstance(child, PyroModule) and fullname not in cache:
                cache[fullname] = primitives.module(fullname, child)

    def current_parameters(self):
        """The arrays this layer computes with in this call: plain parameters, then Pyro attributes
        as their sites gave them (read through the cache, so the record gets the very sampled
        weight forward used, traced in a gradient run)."""
        values = super().current_parameters()
        with self._pyro_context:
            for name in (*self._pyro_params, *self._pyro_samples):
                values[name] = self._pyro_read(name)
        return values

    def __repr__(self):
        # Show Pyro attributes as their declarations. While the module's own repr is made they
        # sit in __dict__, so a layer's extra_repr reading ``self.bias`` finds the declaration
        # there and draws no sample just to print the module.
        declarations = {**self._pyro_params, **self._pyro_samples}
        self.__dict__.update(declarations)
        try:
            text = super().__repr__()
        finally:
            for name in declarations:
                del self.__dict__[name]
        declared = [f"  ({name}): {value!r}" for name, value in declarations.items()]
        if not declared:
            return text
        # "Name(settings" or "Name(\n  children\n" + one line per Pyro attribute + ")"
        return text[:-1].rstrip("\n") + "\n" + "\n".join(declared) + "\n)"

    # ------------------------------------------------------------ calling
    def __call__(self, *inputs, **kwargs):
        with self._pyro_context:
            self._pyro_register_point_estimates()
            if self._is_layer:
                # read every Pyro attribute now, so their sites come before the layer's call record
                self.current_parameters()
            return super().__call__(*inputs, **kwargs)


_MIXINS = {}  # Layer class -> PyroModule[Layer]


__all__ = ["Param", "PyroModule", "PyroParam", "PyroSample", "Sample"]
