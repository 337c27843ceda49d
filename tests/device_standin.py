"""A stand-in GPU for tests without one: NumPy arrays that play device arrays and count every
time the host reads one or copies one over.

``DeviceArray`` is a NumPy array whose type is not ``numpy.ndarray``, so ``backend.array_module``
hands it ``standin`` (registered with ``backend.register_array_module``) as CuPy arrays get
``cupy``. Like a CuPy array, NumPy functions and ufuncs applied to it return device arrays (NEP 18),
and the host reads its numbers only on purpose: ``float()``, ``int()``, ``bool()``, ``.item()``,
``.tolist()``, ``.get()`` and ``standin.asnumpy``. Each of those is a device-to-host copy that
waits for the GPU, and is counted in ``COUNTS["reads"]``; ``standin.asarray`` of a host value
is a host-to-device copy, counted in ``COUNTS["copies_to_device"]``. What it cannot see:
``np.asarray(device_array)``, which CuPy refuses and NumPy answers silently with a view.
"""
import contextlib
import traceback

import numpy as np

from minippl import backend

COUNTS = {"reads": 0, "copies_to_device": 0}
WHERE = []  # (kind, the library line that did it), for the failure message of a test


def _count(kind):
    COUNTS[kind] += 1
    frames = [f for f in traceback.extract_stack()[:-2] if "device_standin" not in f.filename]
    WHERE.append((kind, next((f"{f.filename}:{f.lineno} {f.line}" for f in reversed(frames)
                              if "/minippl/" in f.filename), f"{frames[-1].filename}:{frames[-1].lineno}")))


def reset():
    COUNTS.update(reads=0, copies_to_device=0)
    WHERE.clear()


def _to_device(x):
    if isinstance(x, np.ndarray) and not isinstance(x, DeviceArray):
        return x.view(DeviceArray)
    if isinstance(x, np.generic):  # a NumPy scalar result: the GPU keeps a 0-d array
        return np.asarray(x).view(DeviceArray)
    if isinstance(x, tuple):
        return tuple(_to_device(v) for v in x)
    if isinstance(x, list):
        return [_to_device(v) for v in x]
    return x


def _plain(x):
    if isinstance(x, DeviceArray):
        return x.view(np.ndarray)
    if isinstance(x, (list, tuple)):
        return type(x)(_plain(v) for v in x)
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    return x


class DeviceArray(np.ndarray):
    """A NumPy array that stands for an array in GPU memory."""

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if "out" in kwargs:
            kwargs["out"] = tuple(_plain(o) for o in kwargs["out"])
        result = getattr(ufunc, method)(*_plain(inputs), **kwargs)
        return _to_device(result)

    def __array_function__(self, func, types, args, kwargs):
        return _to_device(func(*_plain(args), **_plain(kwargs)))

    def __getitem__(self, index):
        return _to_device(self.view(np.ndarray)[_plain(index)])

    def __setitem__(self, index, value):
        self.view(np.ndarray)[_plain(index)] = _plain(value)

    # the host reading the device: each is a copy that waits for the GPU
    def __float__(self):
        _count("reads")
        return float(self.view(np.ndarray))

    def __int__(self):
        _count("reads")
        return int(self.view(np.ndarray))

    def __index__(self):
        _count("reads")
        return self.view(np.ndarray).__index__()

    def __bool__(self):
        _count("reads")
        return bool(self.view(np.ndarray))

    def item(self, *args):
        _count("reads")
        return self.view(np.ndarray).item(*args)

    def tolist(self):
        _count("reads")
        return self.view(np.ndarray).tolist()

    def get(self):
        _count("reads")
        return self.view(np.ndarray).copy()


class _Generator:
    """A device random generator: draws land on the device, as cupy.random.Generator's do."""

    def __init__(self, seed=None):
        self._rng = np.random.default_rng(seed)

    def __getattr__(self, name):
        method = getattr(self._rng, name)
        return lambda *args, **kwargs: _to_device(np.asarray(method(*args, **kwargs)))


class _Module:
    """The array module of DeviceArray: NumPy's functions, returning device arrays."""

    ndarray = DeviceArray

    def __init__(self, numpy_namespace, name):
        self._np, self.__name__ = numpy_namespace, name

    def __getattr__(self, name):
        attribute = getattr(self._np, name)
        if isinstance(attribute, type(np)):  # a submodule: np.linalg
            return _Module(attribute, f"{self.__name__}.{name}")
        if not callable(attribute) or isinstance(attribute, type):
            return attribute  # float32, newaxis, pi, finfo, dtype
        return lambda *args, **kwargs: _to_device(attribute(*_plain(args), **_plain(kwargs)))

    def asarray(self, x, dtype=None):
        if isinstance(x, DeviceArray):
            return x if dtype is None or x.dtype == dtype else x.astype(dtype)
        _count("copies_to_device")
        return np.array(x, dtype=dtype).view(DeviceArray)

    array = asarray

    def asnumpy(self, x):
        _count("reads")
        return np.array(_plain(x))


standin = _Module(np, "standin")
standin.random = type("random", (), {"default_rng": staticmethod(lambda seed=None: _Generator(seed))})


@contextlib.contextmanager
def installed():
    """``backend.array_module`` answers ``standin`` for a DeviceArray while this is active."""
    backend.register_array_module(DeviceArray, standin)
    reset()
    try:
        yield standin
    finally:
        backend.register_array_module(DeviceArray, None)


def to_device(x):
    """A host array copied to the stand-in device (counted)."""
    return standin.asarray(np.asarray(x))
