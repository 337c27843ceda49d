"""Arrays and randomness, on whichever device the arrays live.

Teaches: minippl has no tensor type of its own. User arrays stay plain
``numpy.ndarray`` (CPU) or ``cupy.ndarray`` (GPU); every function that needs the
array library asks the arrays for it with :func:`array_module`. Gradients of a
broadcast argument are summed back to the argument's shape by :func:`sum_to_shape`,
the one helper every hand-written VJP in the library ends with. Builds on NumPy alone.
"""
import functools
import math
import warnings

import numpy as np


_ARRAY_MODULES = {}  # array type -> its array module, for arrays that are not NumPy's


def array_module(*arrays):
    """Return ``cupy`` if any argument is a CuPy array, else ``numpy``.

    Python scalars and NumPy arrays both mean NumPy, so ``Normal(0., 1.)`` works
    anywhere. CuPy is imported lazily: it is an optional dependency.
    """
    for a in arrays:
        kind = type(a)
        if kind in _ARRAY_MODULES:
            return _ARRAY_MODULES[kind]
        if kind.__module__.startswith("cupy"):
            import cupy

            return cupy
    return np


def on_device(x):
    """True for an array in GPU memory (a CuPy array), found by its type: nothing is imported."""
    kind = type(x)
    return kind in _ARRAY_MODULES or kind.__module__.startswith("cupy")


def register_array_module(array_type, module):
    """Make ``array_module`` answer ``module`` for arrays of ``array_type`` (None: forget it).
    CuPy is found by its name; the tests register a counting stand-in for a GPU this way."""
    if module is None:
        _ARRAY_MODULES.pop(array_type, None)
    else:
        _ARRAY_MODULES[array_type] = module


def is_float_array(value):
    """True for a NumPy or CuPy array of floats (not a Python number, not a NumPy scalar)."""
    if not (isinstance(value, np.ndarray) or array_module(value) is not np):
        return False
    return getattr(value, "dtype", None) is not None and value.dtype.kind == "f"


def to_host(array):
    """The NumPy array of ``array``, on the host: CuPy's ``.get()`` copies it off the GPU;
    anything else goes through ``np.asarray`` (a NumPy array is returned as it is)."""
    return array.get() if array_module(array) is not np else np.asarray(array)


def shape_of(x):
    """Shape of an array or ``()`` for a Python number."""
    return tuple(getattr(x, "shape", ()))


def sum_to_shape(grad, shape):
    """Undo broadcasting in a gradient: sum ``grad`` down to ``shape``.

    If ``y = f(x)`` broadcast ``x`` of shape ``shape`` up to ``grad.shape``, each
    element of ``x`` was used by every element it was broadcast to, so its
    gradient is the sum over those elements (the chain rule over a fan-out).
    """
    shape = tuple(shape)
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = grad.sum(axis=tuple(range(extra)))
    kept_ones = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if kept_ones:
        grad = grad.sum(axis=kept_ones, keepdims=True)
    return grad


def unsum_last(grad, n, *shapes):
    """The VJP of summing the last ``n`` dims: ``grad`` broadcast back over them.

    d/dx_i sum_i x_i = 1, so each summed entry gets the cotangent of its sum: append ``n``
    dims of size 1 and broadcast to ``grad``'s shape joined with ``shapes`` (a read-only view).
    """
    xp = array_module(grad)
    grad = xp.asarray(grad)
    grad = grad.reshape(grad.shape + (1,) * n)
    return xp.broadcast_to(grad, broadcast_shapes(grad.shape, *shapes))


def broadcast_shapes(*shapes):
    """``numpy.broadcast_shapes`` with a message that says what did not fit."""
    first = tuple(shapes[0]) if shapes else ()
    if all(tuple(s) == first for s in shapes):  # the usual case, and 20x cheaper than NumPy's general rule
        return first
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        raise ValueError(f"shapes {', '.join(map(str, shapes))} do not broadcast together") from None


def float_dtype(*values):
    """The floating dtype a computation on ``values`` produces.

    Python numbers are "weak" (NumPy 2 rules): ``float32 array + 1.0`` stays
    float32, and only an all-Python computation is float64.
    """
    arrays = [v for v in values if hasattr(v, "dtype")]
    if not arrays:
        return np.dtype(np.float64)
    dtype = np.result_type(*[a.dtype for a in arrays])
    return dtype if np.issubdtype(dtype, np.floating) else np.dtype(np.float64)


# ---------------------------------------------------------------- what every distribution computes with
def promote(*values):
    """The array module, the float dtype, and ``values`` ready to compute with.

    Float arrays pass through untouched (never copied: they are the caller's).
    Python numbers and integer or boolean arrays become arrays of the float
    dtype, so ``Normal(0., 1.).log_prob(float32_x)`` stays float32 (``np.log(1.0)``
    is a NumPy float64 scalar, which would promote the whole result to float64).
    """
    xp = array_module(*values)
    dtype = float_dtype(*[v for v in values if is_float_array(v)])
    return xp, dtype, [v if is_float_array(v) else _float_array(v, xp, dtype) for v in values]


def _float_array(value, xp, dtype):
    if xp is not np and isinstance(value, (bool, int, float)):
        return xp.full((), value, dtype=dtype)  # filled on the GPU (a kernel argument), not copied there
    return xp.asarray(value, dtype=dtype)


def grad_like(grad, arg, copy=False):
    """``grad`` summed down to the shape of ``arg`` (undoing broadcasting).

    A Python-float argument gets a 0-d array. ``copy=True`` where ``grad`` is the
    caller's own cotangent passed straight through (d value/d arg = 1), so that
    the gradient handed back never aliases it: callers may add into it in place.
    """
    xp = array_module(grad)
    summed = sum_to_shape(grad, shape_of(arg))
    if copy and summed is grad:
        summed = summed.copy()
    return xp.asarray(summed)


def batch_dims_of(value, event_dim):
    """The leading (sample and batch) dims of ``value``: all but its last ``event_dim``."""
    shape = shape_of(value)
    return shape[: max(len(shape) - event_dim, 0)]


# ---------------------------------------------------------------- stable elementwise math
# Used by the layers, the Bernoulli and the interval transform alike: written once, here.


def sigmoid(x):
    """1 / (1 + exp(-x)) without overflow: exp(min(x, 0)) / (1 + exp(-|x|)).

    exp only ever sees arguments <= 0, and the two forms agree on both sides of 0.
    Returns a fresh array (also for 0-d input), so callers may work on it in place.
    """
    xp = array_module(x)
    x = xp.asarray(x)
    denominator = xp.abs(x, out=xp.empty_like(x, dtype=float_dtype(x)))
    xp.negative(denominator, out=denominator)
    xp.exp(denominator, out=denominator)
    denominator += 1
    y = xp.minimum(x, 0, out=xp.empty_like(denominator))
    xp.exp(y, out=y)
    y /= denominator
    return y


def softplus(x):
    """log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)): exact, and exp cannot overflow.

    Returns a fresh array (also for 0-d input), so callers may work on it in place.
    """
    xp = array_module(x)
    x = xp.asarray(x)
    y = xp.abs(x, out=xp.empty_like(x, dtype=float_dtype(x)))
    xp.negative(y, out=y)
    xp.exp(y, out=y)  # e^-|x| in (0, 1]
    xp.log1p(y, out=y)
    y += xp.maximum(x, 0)
    return y


# ---------------------------------------------------------------- randomness
# One global generator for code run outside any ``seed`` handler, reset by
# ``minippl.set_rng_seed``. Sample sites inside ``seed`` use the handler's own
# generator instead (see handlers.seed), so a seeded block is reproducible
# whatever ran before it.
_GLOBAL_RNG = np.random.default_rng()


def set_global_rng(seed):
    global _GLOBAL_RNG
    _GLOBAL_RNG = np.random.default_rng(seed)


def global_rng():
    return _GLOBAL_RNG


def device_generator(rng, xp, size):
    """A generator on ``xp``'s device (a GPU) for one draw of ``size`` numbers, seeded by one
    number drawn from the host generator ``rng``.

    Drawing the noise on the host would cost a copy to the GPU per draw; drawing it there from a
    generator seeded by the host keeps the host generator in charge: its state alone (what
    ``set_rng_seed``, ``seed`` and a checkpoint set) fixes every draw, on either device, so a
    seeded or resumed run draws the same noise again. The seed is a host number passed to the
    GPU as a kernel argument (no copy). A counter-based Philox generator sized to the draw is
    cheap to start, unlike CuPy's default XORWOW, which prepares 256,000 states.
    """
    seed = int(rng.integers(2**63))
    philox = getattr(xp.random, "Philox4x3210", None)
    return xp.random.Generator(philox(seed, size=max(int(size), 1))) if philox else xp.random.default_rng(seed)


def standard_normal(rng, shape, dtype, like=None):
    """Draw N(0, 1) noise of ``shape`` and ``dtype`` on the device of ``like``."""
    xp = array_module(like)
    if xp is np:
        return rng.standard_normal(shape, dtype=np.float32 if dtype == np.float32 else np.float64)
    return device_generator(rng, xp, math.prod(shape)).standard_normal(shape, dtype=dtype)


def uniform(rng, shape, dtype, like=None):
    """Draw U[0, 1) noise of ``shape`` and ``dtype`` on the device of ``like``."""
    xp = array_module(like)
    if xp is np:
        return rng.random(shape, dtype=np.float32 if dtype == np.float32 else np.float64)
    return device_generator(rng, xp, math.prod(shape)).random(shape, dtype=dtype)


# ---------------------------------------------------------------- backends: reference or fused
# "numpy" runs the readable NumPy-syntax code in every file (the reference, also on CuPy arrays);
# "numba" offers each call of a function marked @fusable to the fused kernel registered for it in
# minippl/kernels/registry.py: kernels/cpu.py for NumPy arrays, kernels/gpu.py for CuPy arrays (the
# device follows the arrays). What a kernel does not take (float64, broadcast or strided arrays)
# still runs the reference, under either backend.
_BACKEND = None  # chosen on first use: "numba" if the fused kernels load, else "numpy" (with a warning)
_CPU_KERNELS = None
_REGISTRY = None
_PLUGGED = None  # (load_cpu, load_gpu, entries), given by minippl/kernels when it loads


def plug_in(load_cpu, load_gpu, entries):
    """How the fused kernels (chapter 7, minippl/kernels) plug into this chapter: loaders for the CPU
    and GPU kernel modules, and ``entries``, the registry of which kernel replaces which reference."""
    global _PLUGGED
    _PLUGGED = (load_cpu, load_gpu, entries)


FUSABLE = {}  # name -> reference function: every function a kernel may replace


def set_backend(name):
    """Choose ``"numpy"`` (the reference) or ``"numba"`` (fused kernels) for float32 arrays.

    The default is "numba" where Numba imports. The device follows the arrays: under "numba",
    CuPy arrays take the GPU kernels. Float64 and strided arrays always take the reference.

    >>> import minippl
    >>> minippl.get_backend() in ("numba", "numpy")
    True
    """
    global _BACKEND, _CPU_KERNELS, _REGISTRY
    if name not in ("numpy", "numba"):
        raise ValueError(f"unknown backend {name!r}: choose 'numpy' (the reference) or 'numba' (fused kernels)")
    if name == "numba":
        try:
            if _PLUGGED is None:
                raise ImportError("no fused kernels are plugged in (minippl.kernels did not load)")
            load_cpu, _, entries = _PLUGGED
            cpu = load_cpu()
        except Exception as error:  # an ImportError, or a Numba that breaks on this NumPy in its own way
            raise ImportError(f"set_backend('numba') could not load the fused CPU kernels: {type(error).__name__}: "
                              f"{error}. Numba is a dependency of minippl: pip install -U numba (one that supports "
                              f"NumPy {np.__version__}), or choose the reference with set_backend('numpy')") from error
        _CPU_KERNELS, _REGISTRY = cpu, entries
    _BACKEND = name


def get_backend():
    """The active backend: ``"numba"`` by default; ``"numpy"``, with a warning naming the cause, where
    the fused kernels fail to load (nothing wrong is silent: the reference is several times slower)."""
    if _BACKEND is None:
        try:
            set_backend("numba")
        except ImportError as error:
            warnings.warn(f"minippl runs the NumPy reference, not the fused kernels: {error}", RuntimeWarning,
                          stacklevel=2)
            set_backend("numpy")
    return _BACKEND


def fusable(name):
    """Mark a reference function that the fused kernel registered as ``name`` may replace.

    The one dispatch point between the teaching files and minippl/kernels: under the "numba"
    backend, a call is first offered to ``kernels.registry.ENTRIES[name]`` for the device of its
    first argument (an array, or a list whose first item is one); the entry returns NotImplemented
    unless its kernel takes the arguments, and then the reference (also at ``.reference``) runs.
    """
    def decorate(reference):
        FUSABLE[name] = reference

        @functools.wraps(reference)  # name, docstring, and __wrapped__ for help()'s signature
        def dispatch(*args, **kwargs):
            if _BACKEND == "numba" or (_BACKEND is None and get_backend() == "numba"):
                kernels = _kernels_for(_first_array(args[0]))
                if kernels is not None:
                    result = _REGISTRY[name](kernels, *args, **kwargs)
                    if result is not NotImplemented:
                        return result
            return reference(*args, **kwargs)

        dispatch.reference = reference
        return dispatch
    return decorate


def _first_array(x):
    """The first argument, or the first item of a list (of tuples) of them: what decides the device."""
    while type(x) in (list, tuple) and x:
        x = x[0]
    return x


def _kernels_for(array):
    kind = type(array)
    if kind is np.ndarray:
        return _CPU_KERNELS
    return _gpu_kernels() if kind.__module__.startswith("cupy") else None  # Python numbers: the reference


_GPU_KERNELS = None


def _gpu_kernels():
    """kernels/gpu.py, after checking once that CuPy and a CUDA GPU are there (a clear error if not)."""
    global _GPU_KERNELS
    if _GPU_KERNELS is None:
        _GPU_KERNELS = _PLUGGED[1]()  # imports kernels/gpu.py and checks CuPy and the GPU
    return _GPU_KERNELS
