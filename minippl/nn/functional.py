"""Functional forms: activations as recorded layers, and arithmetic as recorded ops.

Teaches: nothing new since traced values (traced.py): ``np.exp(x)`` or ``a + b`` on a traced
value is recorded by itself. These functions remain for code written the PyTorch way
(``F.softplus(x)``): the activations are the layers of layers.py, whose fused kernels make them
faster than the NumPy ufunc on float32; ``add``/``mul``/``matmul``/``sum`` are the very ops that
the operators record (ops_elementwise.py, ops_arrays.py, ops_products.py). Builds on layers.py and the ops.
"""
from .. import traced
from ..ops_arrays import Sum
from ..ops_products import MatMul
from ..ops_elementwise import Add, Mul
from .layers import Exp, ReLU, Sigmoid, Softplus, Tanh

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


# ---------------------------------------------------------------- arithmetic: the recorded ops
def add(a, b):
    """a + b, broadcasting; either may be a Python float (a constant)."""
    return traced.apply(Add(), a, b)


def mul(a, b):
    """a * b, broadcasting; either may be a Python float (a constant)."""
    return traced.apply(Mul(), a, b)


def matmul(a, b):
    """a @ b for 1-D, 2-D and batched arrays, as np.matmul."""
    return traced.apply(MatMul(), a, b)


def sum(x, axis=None, keepdims=False):  # noqa: A001 (np.sum's name on purpose)
    """x summed over ``axis`` (None: every axis)."""
    return traced.apply(Sum(axis, keepdims), x)
