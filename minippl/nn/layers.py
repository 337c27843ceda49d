"""Layers: a dense layer and the usual activations, each backward written right under its forward.

Teaches: the vector-Jacobian products of ``x @ W.T + b`` and of elementwise functions, written to stay finite
in float32 for any input and to reuse what forward kept in its cache (an activation's derivative is cheapest
to get from its output); each backward reads only its cache (module.py's layer contract). The elementwise
math is written once, as plain functions at the end of the file; a fused kernel may replace each one
(``@backend.fusable``, kernels/registry.py). Builds on module.py.
"""
import math
from collections import namedtuple

import numpy as np

from .. import backend
from .module import Module


# Dense's cache: the input, the weight forward used and whether it added a bias.
_DenseCache = namedtuple("_DenseCache", ["x", "weight", "has_bias"])


class Dense(Module):
    """``y = x @ weight.T + bias`` over any leading batch dimensions (PyTorch's ``nn.Linear``).

    ``weight`` has shape (out_features, in_features) and ``bias`` (out_features,), both drawn from
    U(-1/sqrt(in), 1/sqrt(in)) as nn.Linear does: its kaiming_uniform(a=sqrt(5)) bound sqrt(6 / ((1 + a^2) in))
    is exactly 1/sqrt(in).

    >>> layer = Dense(3, 2)
    >>> layer(np.ones((5, 3), dtype=np.float32)).shape
    (5, 2)
    """

    def __init__(self, in_features, out_features, bias=True, *, rng=None, dtype=np.float32):
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ValueError(f"Dense needs at least one input and one output feature, "
                             f"got in_features={in_features}, out_features={out_features}")
        self.in_features, self.out_features = int(in_features), int(out_features)
        rng = backend.global_rng() if rng is None else rng
        bound = 1.0 / math.sqrt(in_features)

        def uniform(shape):  # U(-bound, bound) from U[0, 1)
            return (2 * backend.uniform(rng, shape, dtype) - 1) * bound

        self.weight = uniform((self.out_features, self.in_features))
        self.bias = uniform((self.out_features,)) if bias else None

    def forward(self, x):
        if backend.shape_of(x)[-1:] != (self.in_features,):
            raise ValueError(f"{self!r} expects inputs whose last dimension is {self.in_features}, "
                             f"got shape {backend.shape_of(x)}")
        weight = self.weight
        y = x @ weight.T
        if self.bias is not None:
            y = add_bias(y, self.bias)
        return y, _DenseCache(x, weight, self.bias is not None)

    def backward(self, cache, grad_y, needs_input_grad):
        # dL/dW = g^T x ; dL/db = sum over the batch of g ; dL/dx = g W
        x, weight, has_bias = _DenseCache(*cache)
        g = grad_y.reshape(-1, grad_y.shape[-1])  # fold all leading batch dims into one
        grad_params = {"weight": g.T @ x.reshape(-1, x.shape[-1])}
        if has_bias:
            grad_params["bias"] = bias_grad(g)
        grad_x = grad_y @ weight if needs_input_grad[0] else None
        return (grad_x,), grad_params

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


Linear = Dense  # PyTorch's name, so Pyro code ports by changing imports


# ---------------------------------------------------------------- activations
# Each is parameterless: backward returns an empty dict of parameter gradients, and (None,) as input
# gradients when the input needs none.
class Sigmoid(Module):
    """sigmoid(x) = 1 / (1 + exp(-x)), finite for every float32 input."""

    def forward(self, x):
        y = sigmoid(x)
        return y, y

    def backward(self, y, grad_y, needs_input_grad):
        return ((sigmoid_backward(y, grad_y) if needs_input_grad[0] else None),), {}


class Softplus(Module):
    """softplus(x) = log(1 + exp(beta x)) / beta, and exactly x where beta x > threshold (PyTorch's
    ``nn.Softplus(beta=1, threshold=20)``: linear above it). Forward keeps the slope for backward."""

    def __init__(self, beta=1.0, threshold=20.0):
        super().__init__()
        self.beta, self.threshold = float(beta), float(threshold)

    def forward(self, x):
        return softplus_with_slope(x, self.beta, self.threshold)  # (y, slope): the slope is the cache

    def backward(self, slope, grad_y, needs_input_grad):
        return ((grad_y * slope if needs_input_grad[0] else None),), {}  # dL/dx = g softplus'(x)

    def extra_repr(self):
        return f"beta={self.beta}, threshold={self.threshold}"


class Tanh(Module):
    """tanh(x), elementwise."""

    def forward(self, x):
        y = backend.array_module(x).tanh(x)  # NumPy's SIMD tanh beats a fused kernel (benchmarks/kernels_cpu.py)
        return y, y

    def backward(self, y, grad_y, needs_input_grad):
        return ((tanh_backward(y, grad_y) if needs_input_grad[0] else None),), {}


class ReLU(Module):
    """max(x, 0), elementwise."""

    def forward(self, x):
        y = backend.array_module(x).maximum(x, 0)
        return y, y

    def backward(self, y, grad_y, needs_input_grad):
        return ((relu_backward(y, grad_y) if needs_input_grad[0] else None),), {}


class Exp(Module):
    """exp(x), elementwise (overflows to inf above about 88 in float32, as np.exp does)."""

    def forward(self, x):
        y = exp(x)
        return y, y

    def backward(self, y, grad_y, needs_input_grad):
        return ((grad_y * y if needs_input_grad[0] else None),), {}  # exp'(x) = exp(x): reuse the output y


# ---------------------------------------------------------------- the reference math
# Each function may be replaced by a fused kernel that computes the same numbers in one pass
# (kernels/registry.py; tests/test_kernels_cpu.py compares them).
@backend.fusable("add_bias")
def add_bias(y, bias):
    y += bias  # y = x W^T is a fresh array: add the bias in place
    return y


@backend.fusable("bias_grad")
def bias_grad(g):
    return g.sum(axis=0)  # dL/db = the sum over the batch of g (g folded to (rows, features))


@backend.fusable("sigmoid")
def sigmoid(x):
    return backend.sigmoid(x)


@backend.fusable("sigmoid_backward")
def sigmoid_backward(y, grad_y):
    return grad_y * (y * (1 - y))  # sigmoid'(x) = s (1 - s), with s = y the output


@backend.fusable("softplus_with_slope")
def softplus_with_slope(x, beta, threshold):
    """(softplus(x), its slope): log(1 + e^(beta x)) / beta and sigmoid(beta x), or x and 1 above the threshold."""
    xp = backend.array_module(x)
    z = beta * x
    above = z > threshold
    # softplus'(x) = e^(beta x) / (1 + e^(beta x)) = sigmoid(beta x)
    return xp.where(above, x, backend.softplus(z) / beta), xp.where(above, 1, backend.sigmoid(z))


@backend.fusable("tanh_backward")
def tanh_backward(y, grad_y):
    return grad_y * (1 - y * y)  # tanh'(x) = 1 - t^2, with t = y the output


@backend.fusable("relu_backward")
def relu_backward(y, grad_y):
    return grad_y * (y > 0)  # relu'(x) = 1 where x > 0 (exactly where y > 0), else 0; 0 at 0, as torch


@backend.fusable("exp")
def exp(x):
    return backend.array_module(x).exp(x)
