"""Reductions, reshapes, indexing and joins of traced values, each backward under its forward.

Teaches: the VJPs that move gradients between shapes. A reduction's backward broadcasts the
gradient back over the reduced axes; a reshape's or transpose's backward undoes it; indexing's
backward scatter-adds (an item picked twice collects both gradients); a join's backward splits.
Products are next, in ops_products.py. Builds on traced.py.
"""
import numpy as np

from .backend import array_module, shape_of, sum_to_shape
from .traced import LostGradientError, Op, Traced, _refuse_in_place, apply, implements, mark_used, unwrap


def _normalize_axes(axis, ndim):
    """``axis`` (None, an int or a tuple) as a sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = axis if isinstance(axis, tuple) else (axis,)
    return tuple(sorted(a % ndim if ndim else 0 for a in axes))


def _unreduce(g, shape, axis, keepdims):
    """A reduction's gradient shaped like its input: put the reduced axes back as size 1."""
    xp = array_module(g)
    g = xp.asarray(g)
    if not keepdims:
        g = g.reshape([1 if i in _normalize_axes(axis, len(shape)) else n for i, n in enumerate(shape)])
    return g


# ---------------------------------------------------------------- reductions
class Sum(Op):
    """Sum over ``axis`` (None: all), as ``np.sum(x, axis, keepdims=keepdims)``."""
    __slots__ = ("axis", "keepdims")

    def __init__(self, axis=None, keepdims=False):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        return array_module(x).sum(x, axis=self.axis, keepdims=self.keepdims), shape_of(x)

    def backward(self, shape, g, needs_input_grad):
        # d sum(x)/dx_i = 1 for every summed x_i: broadcast g back over the summed axes (a view)
        if not needs_input_grad[0]:
            return (None,), {}
        return (array_module(g).broadcast_to(_unreduce(g, shape, self.axis, self.keepdims), shape),), {}


class Mean(Sum):
    __slots__ = ()

    def forward(self, x):
        return array_module(x).mean(x, axis=self.axis, keepdims=self.keepdims), shape_of(x)

    def backward(self, shape, g, needs_input_grad):
        # d mean(x)/dx_i = 1/n, n the number of items averaged
        count = int(np.prod([shape[a] for a in _normalize_axes(self.axis, len(shape))]))
        return super().backward(shape, g / count, needs_input_grad)


class Extreme(Op):
    """max or min over ``axis``: the gradient goes to the entries equal to the result, split
    evenly among ties (as torch's amax/amin)."""
    __slots__ = ("name", "axis", "keepdims")

    def __init__(self, name, axis=None, keepdims=False):
        self.name, self.axis, self.keepdims = name, axis, keepdims  # name: "max" or "min"

    def forward(self, x):
        y = getattr(array_module(x), self.name)(x, axis=self.axis, keepdims=self.keepdims)
        return y, (x, y)

    def backward(self, cache, g, needs_input_grad):
        if not needs_input_grad[0]:
            return (None,), {}
        x, y = cache
        xp = array_module(x)
        # d max(x)/dx_i = [x_i = max] / (number of entries equal to the max)
        hit = x == _unreduce(y, x.shape, self.axis, self.keepdims)
        ties = hit.sum(axis=_normalize_axes(self.axis, x.ndim), keepdims=True)
        return (xp.where(hit, _unreduce(g, x.shape, self.axis, self.keepdims) / ties, 0).astype(g.dtype),), {}


class CumSum(Op):
    __slots__ = ("axis",)

    def __init__(self, axis):
        self.axis = axis

    def forward(self, x):
        return array_module(x).cumsum(x, axis=self.axis), shape_of(x)

    def backward(self, shape, g, needs_input_grad):
        if not needs_input_grad[0]:
            return (None,), {}
        xp = array_module(g)
        # y_j = sum_{i <= j} x_i, so dL/dx_i = sum_{j >= i} g_j: a cumulative sum from the end
        if self.axis is None:
            return (xp.flip(xp.cumsum(xp.flip(g))).reshape(shape),), {}
        return (xp.flip(xp.cumsum(xp.flip(g, self.axis), axis=self.axis), self.axis),), {}


@implements(np.sum)
def sum_(x, axis=None, keepdims=False, **kwargs):
    _no_extra("sum", kwargs)
    return apply(Sum(axis, keepdims), x)


@implements(np.mean)
def mean(x, axis=None, keepdims=False, **kwargs):
    _no_extra("mean", kwargs)
    return apply(Mean(axis, keepdims), x)


@implements(np.max, np.amax)
def max_(x, axis=None, keepdims=False, **kwargs):
    _no_extra("max", kwargs)
    return apply(Extreme("max", axis, keepdims), x)


@implements(np.min, np.amin)
def min_(x, axis=None, keepdims=False, **kwargs):
    _no_extra("min", kwargs)
    return apply(Extreme("min", axis, keepdims), x)


@implements(np.var)
def var(x, axis=None, ddof=0, keepdims=False, **kwargs):
    """sum((x - mean)^2) / (n - ddof), composed of recorded ops (so its VJP is theirs, composed)."""
    _no_extra("var", kwargs, "axis=, ddof= and keepdims=")
    count = int(np.prod([np.shape(unwrap(x))[a] for a in _normalize_axes(axis, np.ndim(unwrap(x)))]))
    centred = x - np.mean(x, axis=axis, keepdims=True)
    return np.sum(centred * centred, axis=axis, keepdims=keepdims) / (count - ddof)


@implements(np.std)
def std(x, axis=None, ddof=0, keepdims=False, **kwargs):
    return np.sqrt(var(x, axis=axis, ddof=ddof, keepdims=keepdims, **kwargs))


@implements(np.cumsum)
def cumsum(x, axis=None, **kwargs):
    _no_extra("cumsum", kwargs, "axis=")
    return apply(CumSum(axis), x)


def _no_extra(name, kwargs, accepted="axis= and keepdims="):
    """Refuse keyword arguments the traced version of ``numpy.name`` does not implement (out=, dtype=, ...)."""
    if any(value is not None for value in kwargs.values()):
        raise TypeError(f"numpy.{name} on a traced value takes {accepted} only, got {sorted(kwargs)}")


# ---------------------------------------------------------------- shapes: backward undoes the move
class Reshape(Op):
    __slots__ = ("shape",)

    def __init__(self, shape):
        self.shape = shape

    def forward(self, x):
        return x.reshape(self.shape), x.shape

    def backward(self, shape, g, needs_input_grad):
        return ((g.reshape(shape) if needs_input_grad[0] else None),), {}  # the same numbers, reshaped back


class Transpose(Op):
    __slots__ = ("axes",)

    def __init__(self, axes):
        self.axes = axes

    def forward(self, x):
        axes = tuple(range(x.ndim))[::-1] if self.axes is None else tuple(a % x.ndim for a in self.axes)
        return array_module(x).transpose(x, axes), axes

    def backward(self, axes, g, needs_input_grad):
        # out[..., i, ...] = x[..., axes[i], ...]: the inverse permutation carries g back
        return ((array_module(g).transpose(g, np.argsort(axes)) if needs_input_grad[0] else None),), {}


class BroadcastTo(Op):
    __slots__ = ("shape",)

    def __init__(self, shape):
        self.shape = tuple(shape) if np.ndim(shape) else (int(shape),)

    def forward(self, x):
        return array_module(x).broadcast_to(x, self.shape), shape_of(x)

    def backward(self, shape, g, needs_input_grad):
        return ((sum_to_shape(g, shape) if needs_input_grad[0] else None),), {}  # each copy's gradient adds up


@implements(np.reshape)
def reshape(x, shape=None, **kwargs):
    shape = kwargs.pop("newshape", shape)
    _no_extra("reshape", {k: v for k, v in kwargs.items() if k != "order" or v != "C"}, "a shape (order='C')")
    return apply(Reshape(shape), x)


@implements(np.ravel)
def ravel(x, order="C"):
    _no_extra("ravel", {} if order == "C" else {"order": order}, "order='C'")
    return apply(Reshape(-1), x)


@implements(np.transpose)
def transpose(x, axes=None):
    if isinstance(axes, (int, np.integer)):  # np.transpose(x, 0), x.transpose(0): a 1-D array's one axis
        axes = (axes,)
    return apply(Transpose(axes), x)


@implements(np.swapaxes)
def swapaxes(x, axis1, axis2):
    axes = list(range(np.ndim(unwrap(x))))
    axes[axis1], axes[axis2] = axes[axis2], axes[axis1]
    return apply(Transpose(tuple(axes)), x)


@implements(np.moveaxis)
def moveaxis(x, source, destination):
    """Axes moved (ints or tuples of them): a transpose by the permutation that moves them."""
    ndim = np.ndim(unwrap(x))
    source = [a % ndim for a in np.atleast_1d(source)]
    destination = [a % ndim for a in np.atleast_1d(destination)]
    order = [a for a in range(ndim) if a not in source]
    for to, moved in sorted(zip(destination, source)):  # as NumPy: fill the destinations left to right
        order.insert(to, moved)
    return apply(Transpose(tuple(order)), x)


@implements(np.expand_dims)
def expand_dims(x, axis):
    return apply(Reshape(array_module(unwrap(x)).expand_dims(unwrap(x), axis).shape), x)


@implements(np.squeeze)
def squeeze(x, axis=None):
    return apply(Reshape(array_module(unwrap(x)).squeeze(unwrap(x), axis).shape), x)


@implements(np.broadcast_to)
def broadcast_to(x, shape, **kwargs):
    return apply(BroadcastTo(shape), x)


@implements(np.atleast_1d)
def atleast_1d(x):
    return x if np.ndim(unwrap(x)) >= 1 else apply(Reshape((1,)), x)


# ---------------------------------------------------------------- filling: the fill value would escape
# np.zeros_like(x) depends on x's shape only (traced.NON_DIFFERENTIABLE), but np.full_like(x, s) and np.full(n, s,
# dtype) copy the value s into a plain array (np.copyto, under the hood), out of the tape's sight: refused for an
# s that carries a gradient (np.full(n, s) without a dtype converts s first: that raises in traced.py).
def _plain_fill(how, value):
    if type(value) is Traced and value.root:
        raise LostGradientError(
            f"{how} copies a value computed from {value.root} into a plain array, so its gradient would be lost. "
            f"Fix: write s * np.ones_like(x) (or s * np.ones(shape)), which is recorded.")
    mark_used((value,))
    return unwrap(value)


@implements(np.full_like)
def full_like(a, fill_value, *args, **kwargs):
    mark_used((a,))
    return np.full_like(unwrap(a), _plain_fill("numpy.full_like(x, s)", fill_value), *args, **kwargs)


@implements(np.copyto)
def copyto(dst, src, casting="same_kind", where=True):
    if type(dst) is Traced:
        raise _refuse_in_place("numpy.copyto(x, ...)", dst)
    mark_used((where,))  # a traced mask (no gradient): its plain array
    np.copyto(dst, _plain_fill("numpy.copyto(m, s) (also what numpy.full_like and numpy.full do)", src),
              casting=casting, where=unwrap(where))


# ---------------------------------------------------------------- indexing: backward scatter-adds
class Index(Op):
    """``x[index]``, basic (ints, slices, None, ...) or advanced (integer or boolean arrays)."""
    __slots__ = ("index",)

    def __init__(self, index):
        self.index = index

    def forward(self, x, *traced_index_parts):
        return x[self.index], shape_of(x)

    def backward(self, shape, g, needs_input_grad):
        rest = (None,) * (len(needs_input_grad) - 1)
        if not needs_input_grad[0]:
            return (None,) + rest, {}
        xp = array_module(g)
        grad = xp.zeros(shape, dtype=g.dtype)
        if _is_basic(self.index):
            grad[self.index] = g  # each entry picked at most once
        else:
            # d x[idx]_j / d x[idx_j] = 1: scatter-add, so an index drawn twice collects both
            xp.add.at(grad, self.index, g)
        return (grad,) + rest, {}


def _is_basic(index):
    parts = index if isinstance(index, tuple) else (index,)
    return all(p is None or p is Ellipsis or isinstance(p, (int, np.integer, slice)) for p in parts)


@implements("getitem")
def getitem(x, index):
    parts = index if isinstance(index, tuple) else (index,)
    traced_parts = [p for p in parts if type(p) is Traced]  # e.g. locs[k] with k a sampled category
    plain = tuple(unwrap(p) for p in parts) if isinstance(index, tuple) else unwrap(index)
    return apply(Index(plain), x, *traced_parts)


@implements(np.take)
def take(x, indices, axis=None, **kwargs):
    _no_extra("take", kwargs, "indices and axis=")
    if axis is None:
        return getitem(np.reshape(x, -1), indices)
    axis = axis % np.ndim(unwrap(x))
    return getitem(x, (slice(None),) * axis + (indices,))


# ---------------------------------------------------------------- joining: backward splits
class Concatenate(Op):
    __slots__ = ("axis", "stacked")

    def __init__(self, axis, stacked):
        self.axis, self.stacked = axis, stacked

    def forward(self, *arrays):
        xp = array_module(*arrays)
        arrays = [xp.asarray(a) for a in arrays]
        join = xp.stack if self.stacked else xp.concatenate
        out = join(arrays, axis=self.axis)
        return out, [a.shape for a in arrays]

    def backward(self, shapes, g, needs_input_grad):
        xp = array_module(g)
        axis = self.axis % g.ndim
        if self.stacked:  # stack: input i is the slice g[..., i, ...]
            return tuple(xp.take(g, i, axis=axis) if needed else None
                         for i, needed in enumerate(needs_input_grad)), {}
        # concatenate: input i is its block of rows along the axis
        ends = np.cumsum([s[axis] for s in shapes])
        pieces = xp.split(g, ends[:-1], axis=axis)
        return tuple(p if needed else None for p, needed in zip(pieces, needs_input_grad)), {}


@implements(np.concatenate)
def concatenate(arrays, axis=0, **kwargs):
    _no_extra("concatenate", kwargs, "axis=")
    if axis is None:  # NumPy joins the flattened arrays: a (recorded) reshape of each, then join along 0
        arrays, axis = [np.reshape(a, -1) for a in arrays], 0
    return apply(Concatenate(axis, stacked=False), *arrays)


@implements(np.stack)
def stack(arrays, axis=0, **kwargs):
    _no_extra("stack", kwargs, "axis=")
    return apply(Concatenate(axis, stacked=True), *arrays)
