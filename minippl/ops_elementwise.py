"""Elementwise operations on traced values, each backward written under its forward.

Teaches: the vector-Jacobian products of NumPy's elementwise functions and operators. An
elementwise function's Jacobian is diagonal, so its VJP is ``g * f'(x)`` (often cheapest from
the output y it cached); a binary operation that broadcast an input up to the output's shape
sums that input's gradient back down (backend.sum_to_shape). Each op is registered for the
NumPy ufunc it replaces, so ``np.exp(x)`` and ``a * b`` on traced values land here.
Builds on traced.py.
"""
import numpy as np

from .backend import array_module, shape_of, sum_to_shape
from .traced import UFUNC_OPS, Op, apply, implements


# ---------------------------------------------------------------- one input: y = f(x), cache (x, y)
def _unary(ufunc):
    """Register ``vjp(x, y, g) -> g * f'(x)`` as the backward of ``y = ufunc(x)``."""
    def register(vjp):
        def forward(self, x):
            y = ufunc(x)
            return y, (x, y)

        def backward(self, cache, g, needs_input_grad):
            return ((vjp(*cache, g) if needs_input_grad[0] else None),), {}

        UFUNC_OPS[ufunc] = type(ufunc.__name__.capitalize(), (Op,),
                                {"__slots__": (), "forward": forward, "backward": backward})
        return vjp
    return register


@_unary(np.negative)
def _(x, y, g):
    return -g  # d(-x)/dx = -1


@_unary(np.positive)
def _(x, y, g):
    return g  # d(+x)/dx = 1


@_unary(np.exp)
def _(x, y, g):
    return g * y  # d exp(x)/dx = exp(x) = y


@_unary(np.expm1)
def _(x, y, g):
    return g * (y + 1)  # d (e^x - 1)/dx = e^x = y + 1


@_unary(np.log)
def _(x, y, g):
    return g / x  # d log(x)/dx = 1/x


@_unary(np.log1p)
def _(x, y, g):
    return g / (1 + x)  # d log(1 + x)/dx = 1/(1 + x)


@_unary(np.sqrt)
def _(x, y, g):
    return g / (2 * y)  # d sqrt(x)/dx = 1/(2 sqrt(x))


@_unary(np.square)
def _(x, y, g):
    return g * (2 * x)  # d x^2/dx = 2x


@_unary(np.reciprocal)
def _(x, y, g):
    return -g * (y * y)  # d (1/x)/dx = -1/x^2 = -y^2


@_unary(np.absolute)
def _(x, y, g):
    return g * array_module(x).sign(x)  # d|x|/dx = sign(x), 0 at 0 (as torch)


@_unary(np.tanh)
def _(x, y, g):
    return g * (1 - y * y)  # d tanh(x)/dx = 1 - tanh(x)^2


@_unary(np.sin)
def _(x, y, g):
    return g * array_module(x).cos(x)  # d sin(x)/dx = cos(x)


@_unary(np.cos)
def _(x, y, g):
    return -g * array_module(x).sin(x)  # d cos(x)/dx = -sin(x)


# ---------------------------------------------------------------- two inputs, broadcasting
# Either input may be a Python number or a plain array (a constant): backward computes only the
# gradients asked for in needs_input_grad, each summed back to its input's shape.
def _reduced(grads, inputs, needs_input_grad):
    return tuple(sum_to_shape(g, shape_of(x)) if needed else None
                 for g, x, needed in zip(grads, inputs, needs_input_grad)), {}


class Add(Op):
    __slots__ = ()

    def forward(self, a, b):
        return a + b, (a, b)

    def backward(self, inputs, g, needs_input_grad):
        return _reduced((g, g), inputs, needs_input_grad)  # d(a + b)/da = d(a + b)/db = 1


class Subtract(Op):
    __slots__ = ()

    def forward(self, a, b):
        return a - b, (a, b)

    def backward(self, inputs, g, needs_input_grad):
        return _reduced((g, -g if needs_input_grad[1] else None), inputs, needs_input_grad)  # d/da = 1, d/db = -1


class Mul(Op):
    __slots__ = ()

    def forward(self, a, b):
        return a * b, (a, b)

    def backward(self, inputs, g, needs_input_grad):
        a, b = inputs
        # d(a b)/da = b ; d(a b)/db = a
        return _reduced((g * b if needs_input_grad[0] else None, g * a if needs_input_grad[1] else None),
                        inputs, needs_input_grad)


class Divide(Op):
    __slots__ = ()

    def forward(self, a, b):
        y = a / b
        return y, (a, b, y)

    def backward(self, cache, g, needs_input_grad):
        a, b, y = cache
        # d(a/b)/da = 1/b ; d(a/b)/db = -a/b^2 = -y/b
        grad_a = g / b if needs_input_grad[0] else None
        grad_b = -g * y / b if needs_input_grad[1] else None
        return _reduced((grad_a, grad_b), (a, b), needs_input_grad)


class Power(Op):
    __slots__ = ()

    def forward(self, a, b):
        y = a ** b
        return y, (a, b, y)

    def backward(self, cache, g, needs_input_grad):
        a, b, y = cache
        xp = array_module(a, b)
        grad_a = grad_b = None
        if needs_input_grad[0]:
            # d a^b/da = b a^(b-1): finite at a = 0 for b >= 1. Where b = 0 it is 0 (a^0 = 1 is constant), but
            # 0 * 0^-1 is NaN at a = 0: there the exponent is b + 1 instead, so 0 * 0^1 = 0 (as torch). A Python
            # number b (x ** 2) stays a number, so that a float32 a keeps its dtype.
            exponent = (b + 1 if b == 0 else b - 1) if isinstance(b, (int, float)) else xp.where(b == 0, b + 1, b - 1)
            grad_a = g * b * a ** exponent
        if needs_input_grad[1]:
            # d a^b/db = a^b log(a); 0 where a = 0 (the limit of a^b log a for b > 0)
            grad_b = g * xp.where(a == 0, 0, y * xp.log(xp.where(a == 0, 1, a)))
        return _reduced((grad_a, grad_b), (a, b), needs_input_grad)


class Remainder(Op):
    """``a % b`` (``np.remainder``, with b's sign) = a - floor(a / b) b: differentiable where a / b is not an
    integer (there it jumps, and floor's slope is taken as 0, as for np.floor)."""
    __slots__ = ()

    def forward(self, a, b):
        return array_module(a, b).remainder(a, b), (a, b)

    def backward(self, inputs, g, needs_input_grad):
        a, b = inputs
        # d(a mod b)/da = 1 ; d(a mod b)/db = -floor(a / b)
        grad_b = -g * array_module(a, b).floor(a / b) if needs_input_grad[1] else None
        return _reduced((g, grad_b), inputs, needs_input_grad)


class _Select(Op):
    """maximum / minimum: the gradient goes to the input that was selected; a tie splits it
    in halves (as torch does), so the VJP is the average of the two one-sided derivatives."""
    __slots__ = ()
    ufunc = None

    def forward(self, a, b):
        return type(self).ufunc(a, b), (a, b)

    def backward(self, inputs, g, needs_input_grad):
        a, b = inputs
        xp = array_module(a, b)
        # d max(a, b)/da = 1 where a > b, 1/2 where a = b, 0 where a < b (with < for minimum)
        a_wins = type(self).ufunc(a, b) == a
        share = xp.where(a == b, 0.5, xp.where(a_wins, 1.0, 0.0)).astype(g.dtype, copy=False)
        return _reduced((g * share if needs_input_grad[0] else None,
                         g * (1 - share) if needs_input_grad[1] else None), inputs, needs_input_grad)


class Maximum(_Select):
    __slots__ = ()
    ufunc = np.maximum


class Minimum(_Select):
    __slots__ = ()
    ufunc = np.minimum


class LogAddExp(Op):
    __slots__ = ()

    def forward(self, a, b):
        y = array_module(a, b).logaddexp(a, b)
        return y, (a, b, y)

    def backward(self, cache, g, needs_input_grad):
        a, b, y = cache
        xp = array_module(a, b)
        # d log(e^a + e^b)/da = e^a / (e^a + e^b) = exp(a - y); likewise for b
        return _reduced((g * xp.exp(a - y) if needs_input_grad[0] else None,
                         g * xp.exp(b - y) if needs_input_grad[1] else None), (a, b), needs_input_grad)


UFUNC_OPS.update({np.add: Add, np.subtract: Subtract, np.multiply: Mul, np.divide: Divide, np.power: Power,
                  np.remainder: Remainder, np.maximum: Maximum, np.minimum: Minimum, np.logaddexp: LogAddExp})


# ---------------------------------------------------------------- three inputs
class Where(Op):
    """``where(condition, a, b)``: the condition is a constant (booleans have no gradient)."""
    __slots__ = ()

    def forward(self, condition, a, b):
        return array_module(a, b).where(condition, a, b), (condition, a, b)

    def backward(self, cache, g, needs_input_grad):
        condition, a, b = cache
        xp = array_module(g)
        # d where(c, a, b)/da = c ; d/db = not c
        return (None,) + _reduced((xp.where(condition, g, 0) if needs_input_grad[1] else None,
                                   xp.where(condition, 0, g) if needs_input_grad[2] else None),
                                  (a, b), needs_input_grad[1:])[0], {}


@implements(np.where)
def where(condition, a=None, b=None):
    if a is None and b is None:
        return np.nonzero(condition)
    if a is None or b is None:  # NumPy's own error: one branch alone would make an object array here
        raise ValueError("either both or neither of x and y should be given")
    return apply(Where(), condition, a, b)


@implements(np.clip)
def clip(x, a_min=None, a_max=None, **kwargs):
    """clip = minimum(maximum(x, a_min), a_max): two recorded selections (bounds may be traced too)."""
    if kwargs:
        raise TypeError(f"numpy.clip on a traced value takes no {sorted(kwargs)}: compute it without out=")
    if a_min is not None:
        x = np.maximum(x, a_min)
    if a_max is not None:
        x = np.minimum(x, a_max)
    return x


# ---------------------------------------------------------------- casts and copies
class Cast(Op):
    """``x.astype(dtype)`` between float dtypes: the value is rounded, the gradient cast back."""
    __slots__ = ("dtype",)

    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)

    def forward(self, x):
        return x.astype(self.dtype), x.dtype

    def backward(self, dtype, g, needs_input_grad):
        return ((g.astype(dtype) if needs_input_grad[0] else None),), {}  # d cast(x)/dx = 1


@implements("astype")
def astype(x, dtype):
    return apply(Cast(dtype), x)


@implements("copy", np.copy)
def copy(x, **kwargs):
    return apply(Cast(x.dtype), x)  # a cast to its own dtype is a copy: astype copies by default
