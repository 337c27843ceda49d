"""Traced functions: arithmetic a model can do on traced arrays without breaking the tape.

Teaches: raw NumPy math on a sampled or computed array is invisible to the ELBO's backward
pass (``Normal(a + b * x, s)`` loses the gradients of a and b); these functions are layers,
recorded like any other, whose VJPs undo broadcasting with backend.sum_to_shape.
Builds on module.py and layers.py.
"""
from .. import backend
from .layers import Exp, ReLU, Sigmoid, Softplus, Tanh
from .module import Module

# ---------------------------------------------------------------- elementwise
# Activations have no parameters, so one shared instance of each serves every call.
_EXP, _SIGMOID, _RELU, _TANH, _SOFTPLUS = Exp(), Sigmoid(), ReLU(), Tanh(), Softplus()


def exp(x):
    return _EXP(x)


def sigmoid(x):
    return _SIGMOID(x)


def relu(x):
    return _RELU(x)


def tanh(x):
    return _TANH(x)


def softplus(x, beta=1.0, threshold=20.0):
    """log(1 + exp(beta x)) / beta, linear where beta x > threshold (torch's F.softplus)."""
    layer = _SOFTPLUS if (beta, threshold) == (1.0, 20.0) else Softplus(beta, threshold)
    return layer(x)


# ---------------------------------------------------------------- binary, broadcasting
# Inputs may be arrays or Python floats. An input broadcast up to the output's shape was
# used by every element it was copied to, so its gradient is summed back to its shape.


class Add(Module):
    def forward(self, a, b):
        return a + b, (backend.shape_of(a), backend.shape_of(b))

    def backward(self, shapes, grad_out, needs_input_grad):
        # d(a + b)/da = d(a + b)/db = 1
        return tuple(backend.sum_to_shape(grad_out, shape) if needed else None
                     for shape, needed in zip(shapes, needs_input_grad)), {}


class Mul(Module):
    def forward(self, a, b):
        return a * b, (a, b)

    def backward(self, inputs, grad_out, needs_input_grad):
        # d(a b)/da = b ; d(a b)/db = a
        a, b = inputs
        grad_a = backend.sum_to_shape(grad_out * b, backend.shape_of(a)) if needs_input_grad[0] else None
        grad_b = backend.sum_to_shape(grad_out * a, backend.shape_of(b)) if needs_input_grad[1] else None
        return (grad_a, grad_b), {}


class MatMul(Module):
    """``a @ b`` with NumPy's rules: 1-D operands act as a row (a) or a column (b), and the
    leading (batch) dimensions broadcast."""

    def forward(self, a, b):
        return backend.array_module(a, b).matmul(a, b), (a, b)

    def backward(self, inputs, grad_out, needs_input_grad):
        # C = A B: dL/dA = G B^T ; dL/dB = A^T G (summed over broadcast batch dimensions)
        a, b = inputs
        xp = backend.array_module(a, b, grad_out)
        # Promote 1-D operands to matrices, and put back the dimension each removed from G.
        a2 = a[None, :] if a.ndim == 1 else a          # (k,) -> (1, k)
        b2 = b[:, None] if b.ndim == 1 else b          # (k,) -> (k, 1)
        g = grad_out[..., None] if b.ndim == 1 else grad_out
        g = g[..., None, :] if a.ndim == 1 else g
        grad_a = grad_b = None
        if needs_input_grad[0]:
            grad_a = backend.sum_to_shape(g @ xp.swapaxes(b2, -1, -2), a2.shape).reshape(a.shape)
        if needs_input_grad[1]:
            grad_b = backend.sum_to_shape(xp.swapaxes(a2, -1, -2) @ g, b2.shape).reshape(b.shape)
        return (grad_a, grad_b), {}


class Sum(Module):
    """Sum over ``axis`` (None: all), as ``np.sum(x, axis, keepdims=keepdims)``."""

    def __init__(self, axis=None, keepdims=False):
        super().__init__()
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        xp = backend.array_module(x)
        return xp.sum(x, axis=self.axis, keepdims=self.keepdims), backend.shape_of(x)

    def backward(self, shape, grad_out, needs_input_grad):
        # d sum(x)/dx_i = 1 for every summed x_i: broadcast the gradient back over the summed axes
        if not needs_input_grad[0]:
            return (None,), {}
        xp = backend.array_module(grad_out)
        if self.axis is not None and not self.keepdims:
            grad_out = xp.expand_dims(grad_out, self.axis)  # put the summed axes back, as size 1
        return (xp.broadcast_to(grad_out, shape),), {}  # a read-only view: no copy

    def extra_repr(self):
        return f"axis={self.axis}, keepdims={self.keepdims}"


_ADD, _MUL, _MATMUL = Add(), Mul(), MatMul()


def add(a, b):
    """a + b, broadcasting; either may be a Python float (a constant)."""
    return _ADD(a, b)


def mul(a, b):
    """a * b, broadcasting; either may be a Python float (a constant)."""
    return _MUL(a, b)


def matmul(a, b):
    """a @ b for 1-D, 2-D and batched arrays, as np.matmul."""
    return _MATMUL(a, b)


def sum(x, axis=None, keepdims=False):  # noqa: A001 (np.sum's name on purpose)
    """x summed over ``axis`` (None: every axis)."""
    return Sum(axis, keepdims)(x)
