"""Traced values: NumPy arithmetic between sites, recorded on the tape.

Teaches: micrograd's idea at array granularity. While the ELBO's gradient is computed, every value a record
produces (a param read, a sample drawn or replayed, a layer's output) reaches the model as a :class:`Traced`
value: the same array, wrapped. NumPy operations on it (``a + b * x``, ``np.exp(log_s)``, ``locs[k]``,
``w @ X.T``) run on the plain array and become "call" records, exactly like a layer call: the effect system
(runtime.py, next chapters) sends them through its handler stack, where ``trace`` puts them on the tape. Each
operation's backward is written by hand next to its forward, in ops_elementwise.py, ops_arrays.py and
ops_products.py; the tape (infer/tape.py) reads them backwards like any other record.

Why a wrapper, not an ``ndarray`` subclass: it also carries CuPy arrays; NumPy hands it every ufunc and ``np.*``
function (``__array_ufunc__``, ``__array_function__``), so nothing computes on it unseen (C code strips a
subclass silently); and library code unwraps it on purpose, so kernels and VJPs see only plain arrays.

Nothing dangles silently. Each traced value knows its ``root``, the first param or reparameterised site it was
computed from. A NumPy function with no hand-written VJP raises a ``TypeError`` naming it; so does an in-place
update; converting a value that carries a gradient to a plain one (``np.asarray``, ``float()``, ``.item()``,
``.astype(int)``) raises :class:`LostGradientError` on that very line, naming its root, and so does a layer's
forward that computes with one it was not given as an input (forward runs on plain arrays). Printing needs no
conversion (``print(x)``, f-strings), a value with no gradient (a discrete draw) converts freely, and the ELBO's
structural check (infer/tape.py) catches the rest. Outside gradient computation (plain sampling, ``Predictive``,
``evaluate_loss``) nothing is wrapped; a leftover traced value computes as a plain array. Builds on backend.py.
"""
import contextlib

import numpy as np

from .backend import to_host


class LostGradientError(RuntimeError):
    """A value that carries a gradient left the tape, so its gradient would be silently lost."""


# ---------------------------------------------------------------- when values are traced
class _State:
    recording = False  # True while a gradient run's guide and model execute (Trace_ELBO turns it on)
    param_reads = {}  # id(plain array) -> its traced read, this run: a module's arrays (nn/module.py)
    running = None  # (layer, "forward") in a gradient run, (layer, "backward") on the tape: see _refuse_inside


def is_recording():
    return _State.recording


def running():  # (layer, "forward" or "backward") while call_plain runs it watched, else None
    return _State.running


@contextlib.contextmanager
def recording(active=True):
    """Wrap the values records produce (``active=True``), or compute on plain arrays (False)."""
    previous = _State.recording, _State.param_reads
    _State.recording = active
    if active and not previous[0]:
        _State.param_reads = {}  # a new gradient run
    try:
        yield
    finally:
        _State.recording, _State.param_reads = previous


def unwrap(x):
    """The plain array inside a traced value; anything else unchanged."""
    return x.data if type(x) is Traced else x


def wrap(value, root=None):
    """A record's output as the model sees it: traced while recording (tuples item by item), with ``root``
    where its gradient goes ("param 'loc'"; None: it has none)."""
    if not _State.recording:
        return value
    if type(value) is tuple:
        return tuple(wrap(v, root) for v in value)
    if isinstance(value, np.generic):  # NumPy returns scalars for 0-d results: keep an array
        value = np.asarray(value)
    return Traced(value, root) if hasattr(value, "shape") and type(value) is not Traced else value


def wrap_param_read(value, name):
    """A param read, traced; remembered by its plain array, which a module's forward may hold."""
    read = wrap(value, f"param '{name}'")
    if type(read) is Traced:
        _State.param_reads[id(value)] = read
    return read


def traced_read_of(array):
    """The traced read of a param's plain array in this gradient run, or None."""
    return _State.param_reads.get(id(array))


def mark_used(values):
    """Count one use of each traced value among ``values`` (a record consumed it)."""
    for v in values:
        if type(v) is Traced:
            v.uses += 1


# ---------------------------------------------------------------- recording one operation
class Op:
    """A recorded NumPy operation: a layer's forward and backward (nn/module.py) without parameters. An op is built
    for one call with its settings fixed (an axis, a shape, an index), so its backward may read them on ``self``::

        forward(*plain_inputs) -> (output, cache)
        backward(cache, grad_output, needs_input_grad) -> (grad_inputs, {})
    """

    __slots__ = ()

    def current_parameters(self):
        return {}

    def __repr__(self):
        return type(self).__name__


def call_plain(layer, phase, *args):
    """``layer.forward(*args)`` or ``layer.backward(*args)`` (``phase``) on plain arrays, with recording off (a
    layer's own arithmetic is never recorded twice). In a gradient run, and on the tape, it may use no traced
    value but its inputs (which the caller unwraps): one that carries a gradient raises (_refuse_inside)."""
    previous = _State.recording, _State.running
    watched = phase == "backward" or previous[0] or previous[1] is not None
    _State.recording, _State.running = False, ((layer, phase) if watched else None)
    try:  # (set here, not with recording(False): its generator costs more than a small op's forward)
        return getattr(layer, phase)(*args)
    finally:
        _State.recording, _State.running = previous


def apply(op, *inputs):
    """``op`` on ``inputs``: a record on the tape if one is traced and we are recording."""
    if _State.recording and any(type(x) is Traced for x in inputs):
        # a list operand (x @ [1.0, 2.0]) becomes the array NumPy makes of it: each backward reads arrays
        return send_call(op, tuple(np.asarray(x) if type(x) in (list, tuple) else x for x in inputs))
    _refuse_inside(inputs)
    return op.forward(*[unwrap(x) for x in inputs])[0]


def send_call(fn, inputs):
    """Record a call of ``fn`` (an op or a layer): set by runtime.py, the effect system, which sends it through
    its handler stack as a "call" message whose default action runs forward with :func:`call_plain`."""
    raise RuntimeError("minippl.runtime is not loaded: import minippl")


# ---------------------------------------------------------------- what NumPy may do to a traced value
UFUNC_OPS = {}  # np ufunc -> Op class taking (a) or (a, b); filled by ops_elementwise.py
FUNCTION_OPS = {}  # np function -> implementation taking traced values; filled by the ops files
# These give no gradient (integer, boolean or piecewise-constant results): they compute on the
# plain arrays and count as a use of their inputs.
NON_DIFFERENTIABLE = {
    np.greater, np.greater_equal, np.less, np.less_equal, np.equal, np.not_equal, np.isfinite, np.isnan,
    np.isinf, np.signbit, np.sign, np.floor, np.ceil, np.rint, np.trunc, np.logical_and, np.logical_or,
    np.logical_not, np.logical_xor, np.shape, np.ndim, np.size, np.result_type, np.argmax, np.argmin,
    np.argsort, np.any, np.all, np.count_nonzero, np.nonzero, np.allclose, np.isclose, np.array_equal,
    np.round, np.iscomplexobj, np.isrealobj, np.may_share_memory, np.shares_memory, np.floor_divide,
    np.zeros_like, np.ones_like, np.empty_like,  # constants of the value's shape (full_like: ops_arrays.py)
}


def implements(*numpy_functions):
    """Register the decorated function as what ``numpy_functions`` do to traced values."""
    def register(implementation):
        for function in numpy_functions:
            FUNCTION_OPS[function] = implementation
        return implementation
    return register


def _unwrap_nested(x):
    if type(x) in (list, tuple):
        return type(x)(_unwrap_nested(v) for v in x)
    if type(x) is dict:  # keyword arguments: where=, out=, ...
        return {key: _unwrap_nested(v) for key, v in x.items()}
    return unwrap(x)


def _traced_in(x):
    """The traced values in ``x``: a value, or a function's arguments (nested lists, tuples and dicts)."""
    if type(x) in (list, tuple, dict):
        for v in (x.values() if type(x) is dict else x):
            yield from _traced_in(v)
    elif type(x) is Traced:
        yield x


def _full_name(function):
    """``numpy.exp``, ``numpy.linalg.inv``, ``scipy.special.expit``: where a function comes from."""
    if isinstance(function, np.ufunc):
        return f"numpy.{function.__name__}" if getattr(np, function.__name__, None) is function \
            else f"the ufunc {function.__name__} (not NumPy's own)"
    module = getattr(function, "__module__", None) or "numpy"
    return f"{module.replace('._core', '').replace('.lib._', '.').split('._')[0]}.{function.__name__}"


def _no_vjp(name):
    supported = ", ".join(sorted({f.__name__ for f in (*UFUNC_OPS, *FUNCTION_OPS) if not isinstance(f, str)}))
    return TypeError(
        f"{name} was applied to a traced value, and minippl has no hand-written derivative for it, so the gradient "
        f"would be lost. Use the operations that have one ({supported}; the operators + - * / ** % @, indexing, .T, "
        f".astype and the ndarray methods of those), or write the step as a minippl.nn layer (forward, backward).")


def _refuse_inside(values):
    """Inside a watched forward or backward (:func:`call_plain`), a traced value that carries a gradient would
    compute as its plain array, unseen by the tape, and its gradient would be lost: raise instead."""
    if _State.running is None:  # (the common case: a flag check, nothing walked)
        return
    value = next((v for v in _traced_in(values) if v.root), None)
    if value is not None:
        layer, phase = _State.running
        fix = ("pass it as an input to the layer, or compute it outside the layer (an input: an array, not a list)"
               if phase == "forward" else "a backward reads only its cache: put what it needs in the cache in forward")
        raise LostGradientError(f"{type(layer).__name__}.{phase} used a value computed from {value.root} that it "
                                f"was not given as an input, so its gradient would be lost (a layer computes on "
                                f"plain arrays). Fix: {fix}.")


def _refuse_in_place(what, value=None):
    source = f" (computed from {value.root})" if value is not None and value.root else ""
    return TypeError(
        f"{what} would change a traced value{source} in place, which the tape cannot record (the records "
        f"that already used it would see another value). Compute a new array instead, e.g. x = x + 1 "
        f"or np.where(mask, new, x).")


class Traced:
    """An array produced by a record during a gradient run; behaves as the array it holds. ``data``: the plain
    NumPy or CuPy array; ``root``: where its gradient goes (None: it carries none). The tape's structural check
    reads ``uses`` (the records that consumed it) and ``held_by`` (the distribution that stored it)."""

    __slots__ = ("data", "root", "uses", "held_by")

    def __init__(self, data, root=None):
        self.data = data
        self.root = root
        self.uses = 0
        self.held_by = None

    # ------------------------------------------------------------ the same value
    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: self.data.size)
    T = property(lambda self: np.transpose(self))
    mT = property(lambda self: np.swapaxes(self, -1, -2))
    __hash__ = None  # like an array: unhashable
    __len__ = lambda self: len(self.data)  # noqa: E731 (one line each, as the properties above)
    __iter__ = lambda self: (self[i] for i in range(len(self.data)))  # noqa: E731
    __repr__ = lambda self: repr(self.data)  # noqa: E731
    __str__ = lambda self: str(self.data)  # noqa: E731
    __format__ = lambda self, spec: format(self.data, spec)  # noqa: E731
    __copy__ = lambda self: self.copy()  # noqa: E731
    __deepcopy__ = lambda self, memo: self.copy()  # noqa: E731

    def __round__(self, ndigits=None):  # for printing: a rounded value has no gradient anyway
        self.uses += 1
        return round(self.data[()] if self.data.ndim == 0 else self.data, ndigits)

    # ------------------------------------------------------------ conversions
    def _escape(self, how):
        """The plain value, unless that would drop a gradient that is being computed: then raise."""
        _refuse_inside(self)
        if _State.recording and self.root:
            raise LostGradientError(
                f"{how} converted a value computed from {self.root} to a plain value while its gradient is "
                f"being computed, so that gradient would be lost. Fix: compute with the value itself (NumPy "
                f"arithmetic on it is recorded); print(x) and f-strings need no conversion, and for plots "
                f"convert after svi.step(). A distribution must store its arguments as given, not copies.")
        self.uses += 1
        return self.data

    def __array__(self, dtype=None, copy=None):
        data = to_host(self._escape("numpy.asarray / numpy.array"))  # CuPy: to the host (its arrays refuse silently)
        return data if dtype is None else data.astype(dtype, copy=False)

    def __float__(self):
        return float(self._escape("float()"))

    def __int__(self):
        return int(self._escape("int()"))

    def __index__(self):  # a sampled category as a Python index: [a, b, c][k], range(k)
        return int(np.asarray(self._escape("an index")).item())

    def __bool__(self):
        return bool(self._escape("bool() (an if or while on its value)"))

    def item(self, *args):
        return self._escape(".item()").item(*args)

    def tolist(self):
        return self._escape(".tolist()").tolist()

    def astype(self, dtype, copy=True):  # a float dtype is a recorded cast; any other, a conversion to plain
        if np.dtype(dtype).kind == "f":
            return FUNCTION_OPS["astype"](self, dtype)
        return self._escape(f".astype({np.dtype(dtype).name})").astype(dtype)

    # ------------------------------------------------------------ NumPy's two protocols
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if "out" in kwargs:
            mine = next((o for o in kwargs["out"] if type(o) is Traced), None)
            if mine is not None:
                raise _refuse_in_place(f"numpy.{ufunc.__name__}(..., out=<traced value>) or an augmented "
                                       f"assignment (+=, *=, ...)", mine)
            if _State.recording:
                raise TypeError(
                    f"an augmented assignment into a plain array (m += x, m *= x, ...) or numpy."
                    f"{ufunc.__name__}(..., out=m) would write a traced result into the plain array m, where "
                    f"the tape cannot see it. Write m = m + x (a new, traced array) instead.")
        if not _State.recording:
            _refuse_inside((inputs, kwargs))
            return getattr(ufunc, method)(*_unwrap_nested(inputs), **_unwrap_nested(kwargs))
        if method == "__call__" and ufunc in NON_DIFFERENTIABLE:
            mark_used(_traced_in((inputs, kwargs)))
            return ufunc(*_unwrap_nested(inputs), **_unwrap_nested(kwargs))
        if method == "__call__" and ufunc in UFUNC_OPS and not kwargs:
            return apply(UFUNC_OPS[ufunc](), *inputs)
        if method == "reduce" and ufunc in (np.add, np.maximum, np.minimum) and len(inputs) == 1:
            reduction = {np.add: np.sum, np.maximum: np.max, np.minimum: np.min}[ufunc]
            kwargs.setdefault("axis", 0)  # a ufunc's reduce runs along axis 0 unless told otherwise
            return reduction(inputs[0], **kwargs)
        name = _full_name(ufunc) if method == "__call__" else f"{_full_name(ufunc)}.{method}"
        if kwargs:
            name += f" with {', '.join(sorted(kwargs))}="
        raise _no_vjp(name)

    def __array_function__(self, func, types, args, kwargs):
        if not _State.recording:
            _refuse_inside((args, kwargs))
            return func(*_unwrap_nested(args), **_unwrap_nested(kwargs))
        if func in FUNCTION_OPS:
            return FUNCTION_OPS[func](*args, **kwargs)
        if func in NON_DIFFERENTIABLE:
            mark_used(_traced_in((args, kwargs)))
            return func(*_unwrap_nested(args), **_unwrap_nested(kwargs))
        raise _no_vjp(_full_name(func))

    # ------------------------------------------------------------ operators: NumPy's ufuncs (set below)
    __neg__ = lambda self: np.negative(self)  # noqa: E731
    __pos__ = lambda self: np.positive(self)  # noqa: E731
    __abs__ = lambda self: np.absolute(self)  # noqa: E731
    __divmod__ = lambda self, other: (self // other, self % other)  # noqa: E731
    __rdivmod__ = lambda self, other: (other // self, other % self)  # noqa: E731

    def _in_place(self, *_):
        raise _refuse_in_place("an augmented assignment (+=, -=, *=, /=, //=, %=, **=, @=)", self)

    __iadd__ = __isub__ = __imul__ = __itruediv__ = __ifloordiv__ = __imod__ = __ipow__ = __imatmul__ = _in_place

    def __setitem__(self, index, value):
        raise _refuse_in_place("item assignment (x[...] = ...)", self)

    def fill(self, value):
        raise _refuse_in_place("x.fill(...)", self)

    # ------------------------------------------------------------ methods: NumPy's functions
    def __getitem__(self, index):
        return FUNCTION_OPS["getitem"](self, index)

    def reshape(self, *shape):
        return np.reshape(self, shape[0] if len(shape) == 1 else shape)

    def ravel(self):
        return np.reshape(self, -1)

    flatten = ravel

    def transpose(self, *axes):
        return np.transpose(self, axes[0] if len(axes) == 1 else (axes or None))

    def clip(self, min=None, max=None):  # noqa: A002 (NumPy's names)
        return np.clip(self, min, max)

    def copy(self):
        return FUNCTION_OPS["copy"](self)

    def __getattr__(self, name):
        """Any other ndarray method: ``x.sum(axis)`` is ``np.sum(x, axis)`` (same arguments, same order), where
        that function has a VJP or needs none (``x.take``, ``x.argsort``); while recording, no other has one."""
        if name[:1] == "_" or not callable(getattr(np.ndarray, name, None)):
            raise AttributeError(f"'Traced' object (a traced array) has no attribute {name!r}")
        function = getattr(np, name, None)
        if function in FUNCTION_OPS or function in NON_DIFFERENTIABLE:
            return lambda *args, **kwargs: function(self, *args, **kwargs)
        _refuse_inside(self)
        if not _State.recording:
            return getattr(self.data, name)  # a leftover traced value computes as its plain array
        raise AttributeError(str(_no_vjp(f"x.{name}() (numpy.ndarray.{name})")))


# x + y is np.add(x, y) and 2 * x, reflected, np.multiply(2, x): as an ndarray's, each operator is its ufunc
for _name, _ufunc in (("add", np.add), ("sub", np.subtract), ("mul", np.multiply), ("truediv", np.divide),
                      ("pow", np.power), ("matmul", np.matmul), ("floordiv", np.floor_divide), ("mod", np.remainder)):
    setattr(Traced, f"__{_name}__", lambda self, other, ufunc=_ufunc: ufunc(self, other))
    setattr(Traced, f"__r{_name}__", lambda self, other, ufunc=_ufunc: ufunc(other, self))
for _name, _ufunc in (("lt", np.less), ("le", np.less_equal), ("gt", np.greater), ("ge", np.greater_equal),
                      ("eq", np.equal), ("ne", np.not_equal)):
    setattr(Traced, f"__{_name}__", lambda self, other, ufunc=_ufunc: ufunc(self, other))
