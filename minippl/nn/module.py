"""Modules without autograd: named parameters, submodules, and how a layer call lands on the tape.

Teaches: a Module holds float arrays (its parameters, named the PyTorch way, "fc1.weight") and child modules.
A *layer* writes forward and backward by hand and records each call as a "call" message (runtime.py), so the
ELBO can run its backward over the trace; a *composite* only calls layers and needs no backward of its own.
Builds on backend.py, traced.py and runtime.py.
"""
import warnings

import numpy as np

from .. import backend, runtime, traced


class Module:
    """Base class of every neural module (PyTorch's ``nn.Module``, without autograd).

    Assigning an attribute registers it, in assignment order: a float array (NumPy or CuPy) becomes a
    *parameter*, a Module a *submodule*, anything else (ints, None, strings) stays a plain attribute.
    Constant arrays that must not be trained go through :meth:`register_buffer`.

    A subclass that defines ``backward`` is a **layer**; any other is a **composite**::

        layer:      forward(*inputs) -> (outputs, cache)
                    backward(cache, grad_outputs, needs_input_grad) -> (grad_inputs, grad_params)
        composite:  forward(*inputs) -> outputs        # calls layers, which record themselves

    The layer contract: **backward reads only its cache**, never an attribute of ``self``; forward puts in the
    cache whatever backward needs (the weights it used, whether it added a bias, a setting such as softplus's
    beta). Backward runs later, when an attribute may have been rebound (an optimiser step, ``set_parameter``)
    or, for a Bayesian layer (bayesian.py), sampled afresh: the cache holds exactly what forward used (and a
    Bayesian layer's backward that reads a random attribute raises). Forward, in a gradient run, computes on
    its inputs and its parameters only: a traced value it holds otherwise raises (traced.py).

    ``outputs`` is an array or a tuple of arrays (anything else raises); ``grad_outputs`` has the same structure
    (None for a tuple entry that received no gradient). ``needs_input_grad`` holds one bool per input,
    ``grad_inputs`` one gradient per input, None (and never computed) where not needed. ``grad_params`` maps
    parameter names, as :meth:`current_parameters` gives them, to their gradients. A backward never writes into
    ``grad_outputs`` or the cache and may return ``grad_outputs`` itself (or a view of it), so whoever
    accumulates gradients must not add into a received array in place.

    >>> class Scale(Module):                     # a layer: y = w * x
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.w = np.array(2.0)
    ...     def forward(self, x):
    ...         return self.w * x, (x, self.w)   # the cache: all that backward needs
    ...     def backward(self, cache, grad_y, needs_input_grad):
    ...         x, w = cache                     # never self.w
    ...         # dL/dw = sum g x ; dL/dx = g w
    ...         grad_x = grad_y * w if needs_input_grad[0] else None
    ...         return (grad_x,), {"w": np.sum(grad_y * x)}
    >>> layer = Scale()
    >>> layer(np.array([1.0, 3.0]))               # outside any handler: just forward
    array([2., 6.])
    >>> [name for name, _ in layer.named_parameters()]
    ['w']
    >>> y, cache = layer.forward(np.array([1.0, 3.0]))
    >>> layer.w = np.array(5.0)                   # rebound after the call, as an optimiser may
    >>> (grad_x,), grad_params = layer.backward(cache, np.ones(2), (True,))
    >>> grad_x, float(grad_params["w"])           # the w = 2 that forward used
    (array([2., 2.]), 4.0)
    """

    _is_layer = False  # set for each subclass by __init_subclass__

    def __init__(self):
        # dicts used as ordered sets of attribute names: they keep registration order
        for registry in ("_parameter_names", "_module_names", "_buffer_names"):
            object.__setattr__(self, registry, {})

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls._is_layer = cls.backward is not Module.backward  # a layer: its calls go on the tape

    # ------------------------------------------------------------ registration
    def __setattr__(self, name, value):
        if "_parameter_names" not in self.__dict__:
            raise AttributeError(f"cannot assign {name!r} before Module.__init__() ran: "
                                 f"call super().__init__() at the top of {type(self).__name__}.__init__")
        if name in self._buffer_names:
            registry = self._buffer_names
        elif backend.is_float_array(value):  # exactly the attributes that become parameters
            registry = self._parameter_names
        elif isinstance(value, Module):
            registry = self._module_names
        elif name in self._parameter_names and value is not None:
            dtype = getattr(value, "dtype", None)
            raise TypeError(
                f"parameter {name!r} of {type(self).__name__} must be a float array, got "
                f"{type(value).__name__}{f' of dtype {dtype}' if dtype is not None else ''}: "
                f"cast it (e.g. value.astype(np.float32)), or assign None to remove the parameter")
        else:
            registry = None  # a plain attribute (None removes a parameter, as bias=False does)
        for names in (self._parameter_names, self._module_names):
            if names is not registry:
                names.pop(name, None)
        if registry is not None:
            registry[name] = None  # a name assigned again keeps its first position
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        for names in (self._parameter_names, self._module_names, self._buffer_names):
            names.pop(name, None)
        object.__delattr__(self, name)

    def register_buffer(self, name, array):
        """Keep ``array`` as attribute ``name`` without making it a parameter (a constant)."""
        if not (isinstance(array, np.ndarray) or backend.array_module(array) is not np):
            raise TypeError(f"buffer {name!r} must be a NumPy or CuPy array, got {type(array).__name__}")
        self._parameter_names.pop(name, None)
        self._module_names.pop(name, None)
        self._buffer_names[name] = None
        object.__setattr__(self, name, array)

    # ------------------------------------------------------------ traversal
    def named_modules(self, prefix=""):
        """Yield ``(dotted name, module)`` for this module (named ``prefix``) and every
        descendant, depth first in registration order; a module reached twice is yielded once."""
        seen = set()

        def walk(module, name):
            if id(module) in seen:
                return
            seen.add(id(module))
            yield name, module
            for child in module._module_names:
                yield from walk(getattr(module, child), f"{name}.{child}" if name else child)

        yield from walk(self, prefix)

    def _named_members(self, registry_name, prefix):
        for module_name, module in self.named_modules(prefix):
            for name in getattr(module, registry_name):
                yield (f"{module_name}.{name}" if module_name else name), getattr(module, name)

    def named_parameters(self, prefix=""):
        """Yield ``("fc1.weight", array)`` pairs: own parameters first, then each child's."""
        return self._named_members("_parameter_names", prefix)

    def parameters(self):
        return (array for _, array in self.named_parameters())

    def named_buffers(self, prefix=""):
        return self._named_members("_buffer_names", prefix)

    def children(self):
        return (getattr(self, name) for name in self._module_names)

    def _owner_of(self, path):
        """The module holding dotted ``path`` ("fc1.weight") and the last name ("weight")."""
        *module_path, name = path.split(".")
        module = self
        for part in module_path:
            if part not in module._module_names:
                break
            module = getattr(module, part)
        else:
            if name in module._parameter_names:
                return module, name
        known = ", ".join(n for n, _ in self.named_parameters()) or "none"
        raise KeyError(f"{type(self).__name__} has no parameter {path!r}; its parameters are: {known}")

    def get_parameter(self, path):
        """The parameter at dotted ``path``, e.g. ``"fc1.weight"``."""
        return getattr(*self._owner_of(path))

    def set_parameter(self, path, value):
        """Rebind the parameter at dotted ``path`` to ``value`` (same shape); the param store
        calls this so that the module computes with the store's arrays."""
        module, name = self._owner_of(path)
        old_shape, new_shape = backend.shape_of(getattr(module, name)), backend.shape_of(value)
        if old_shape != new_shape:
            raise ValueError(f"parameter {path!r} has shape {old_shape}; got a value of shape {new_shape}")
        setattr(module, name, value)

    def current_parameters(self):
        """``{name: array}`` this layer computes with now, by the names its backward returns. The call record
        keeps this dict, and the tape sends each gradient of ``grad_params`` to the array under its name here:
        the array that was used, even if the attribute is rebound before the backward pass. It must hold every
        array backward returns a gradient for (the tape raises otherwise)."""
        return {name: getattr(self, name) for name in self._parameter_names}

    # ------------------------------------------------------------ calling
    def forward(self, *inputs):
        raise NotImplementedError(f"{type(self).__name__} must define forward")

    def backward(self, cache, grad_outputs, needs_input_grad):
        raise NotImplementedError(f"{type(self).__name__} is a composite module: it has no backward, "
                                  f"because each layer it calls records itself on the trace")

    def __call__(self, *inputs, **kwargs):
        if not self._is_layer:
            if traced.is_recording():
                return self._forward_with_traced_arrays(inputs, kwargs)
            return self.forward(*inputs, **kwargs)
        if kwargs:
            raise TypeError(f"{type(self).__name__} is a layer: pass its inputs positionally "
                            f"(got keywords {sorted(kwargs)}), the trace records them as a tuple")
        reads = self.__dict__.get("_traced_reads")
        if reads:  # inside a composite that shows this layer's arrays traced: its own call computes on plain ones
            _show(self, None)
            try:
                return self._call_layer(inputs)
            finally:
                _show(self, reads)
        return self._call_layer(inputs)

    def _call_layer(self, inputs):
        if runtime.stack_is_empty():
            # nothing is recording: run forward on plain arrays and drop the cache backward would need
            result = self.forward(*[traced.unwrap(x) for x in inputs])
            if type(result) is not tuple or len(result) != 2:
                raise TypeError(f"{type(self).__name__}.forward must return (outputs, cache), "
                                f"because the class defines backward")
            runtime.check_outputs(self, result[0])
            return result[0]
        return runtime.send_call(self, inputs)

    def _forward_with_traced_arrays(self, inputs, kwargs):
        """A composite's forward is plain NumPy code: while it runs in a gradient run, the arrays of its whole
        subtree are their traced param reads (registered with ``minippl.module``), so ``x @ self.w``, and a tied
        ``x @ self.enc.weight``, are on the tape as in PyTorch. A layer called inside computes on its plain
        arrays again for its own call (``__call__``): its backward is written by hand. Its own arrays that are
        not in the param store would not be trained: a warning says so."""
        shown = []
        for _, module in self.named_modules():
            if "_traced_reads" in module.__dict__:  # an enclosing composite shows them already
                continue
            reads = {}
            for name in module._parameter_names:
                reads[name] = traced.traced_read_of(module.__dict__[name])
                if reads[name] is None:
                    del reads[name]
                    if module is self:
                        warn_unregistered(self)
            if reads:
                _show(module, reads)
                shown.append(module)
        try:
            return self.forward(*inputs, **kwargs)
        finally:
            for module in shown:
                _show(module, None)

    # ------------------------------------------------------------ printing
    def extra_repr(self):
        """What goes between the parentheses of this module's repr (its settings)."""
        return ""

    def __repr__(self):
        children = [f"  ({name}): " + repr(getattr(self, name)).replace("\n", "\n  ")
                    for name in self._module_names]
        if not children:
            return f"{type(self).__name__}({self.extra_repr()})"
        settings = [f"  {self.extra_repr()}"] if self.extra_repr() else []
        return f"{type(self).__name__}(\n" + "\n".join(settings + children) + "\n)"


def _show(module, reads):
    """Rebind ``module``'s arrays to their traced ``reads`` ({name: read}), or (None) back to the plain arrays."""
    if reads is not None:
        object.__setattr__(module, "_traced_reads", reads)
        for name, read in reads.items():
            object.__setattr__(module, name, read)
        return
    for name, read in module.__dict__.pop("_traced_reads").items():
        if module.__dict__.get(name) is read:  # (not if forward rebound it)
            object.__setattr__(module, name, read.data)


def warn_unregistered(module):
    """The warning for a module whose arrays are used in a gradient run but are not in the param store."""
    warnings.warn(f"the parameters of a {type(module).__name__} module are used in a gradient computation but are "
                  f"not in the param store, so they will not be trained: register the network with "
                  f"minippl.module('name', net) in the model or guide that uses it.", stacklevel=4)


class Sequential(Module):
    """A composite: call modules in turn (``nn.Sequential``), named "0", "1", ...; each records itself, so no
    backward."""

    def __init__(self, *modules):
        super().__init__()
        for index, module in enumerate(modules):
            if not isinstance(module, Module):
                raise TypeError(f"Sequential takes Modules; argument {index} is a {type(module).__name__}")
            setattr(self, str(index), module)

    def forward(self, x):
        for module in self.children():
            x = module(x)
        return x

    def __len__(self):
        return len(self._module_names)

    def __getitem__(self, index):
        return getattr(self, list(self._module_names)[index])
