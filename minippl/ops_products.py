"""Products of traced values: matmul, dot, outer and einsum, each backward under its forward.

Teaches: a product's backward is another product. For C = A B, dA = G B^T and dB = A^T G; for an
einsum, each operand's gradient is the einsum of the output's gradient with the other operands,
into that operand's letters. Builds on traced.py and ops_arrays.py (reshape).
"""
import numpy as np

from .backend import array_module, sum_to_shape
from .ops_arrays import _no_extra
from .traced import UFUNC_OPS, Op, apply, implements, unwrap


class MatMul(Op):
    """``a @ b`` with NumPy's rules: 1-D operands act as a row (a) or a column (b), and the
    leading (batch) dimensions broadcast."""
    __slots__ = ()

    def forward(self, a, b):
        return array_module(a, b).matmul(a, b), (a, b)

    def backward(self, inputs, grad_out, needs_input_grad):
        # C = A B: dL/dA = G B^T ; dL/dB = A^T G (summed over broadcast batch dimensions)
        a, b = inputs
        xp = array_module(a, b, grad_out)
        # Promote 1-D operands to matrices, and put back the dimension each removed from G.
        a2 = a[None, :] if a.ndim == 1 else a          # (k,) -> (1, k)
        b2 = b[:, None] if b.ndim == 1 else b          # (k,) -> (k, 1)
        g = grad_out[..., None] if b.ndim == 1 else grad_out
        g = g[..., None, :] if a.ndim == 1 else g
        grad_a = grad_b = None
        if needs_input_grad[0]:
            grad_a = sum_to_shape(g @ xp.swapaxes(b2, -1, -2), a2.shape).reshape(a.shape)
        if needs_input_grad[1]:
            grad_b = sum_to_shape(xp.swapaxes(a2, -1, -2) @ g, b2.shape).reshape(b.shape)
        return (grad_a, grad_b), {}


UFUNC_OPS[np.matmul] = MatMul


@implements(np.dot)
def dot(a, b):
    """np.dot: a product for 0-d operands, matmul for 1-D and 2-D ones."""
    if np.ndim(unwrap(a)) == 0 or np.ndim(unwrap(b)) == 0:
        return np.multiply(a, b)
    if np.ndim(unwrap(a)) > 2 or np.ndim(unwrap(b)) > 2:
        raise TypeError("numpy.dot of arrays with more than 2 dims on a traced value has no VJP here: "
                        "use a @ b (batched matmul) or np.einsum, which have one")
    return apply(MatMul(), a, b)


@implements(np.outer)
def outer(a, b):
    # outer(a, b)[i, j] = a_i b_j: the broadcast product of a column and a row
    return np.multiply(np.reshape(a, (-1, 1)), np.reshape(b, (1, -1)))


class Einsum(Op):
    """``np.einsum("ij,jk->ik", a, b, ...)`` without ellipses or repeated letters in one operand."""
    __slots__ = ("inputs", "output")

    def __init__(self, subscripts):
        spec = subscripts.replace(" ", "")
        if "." in spec:
            raise TypeError("np.einsum with '...' on a traced value has no VJP here: write the letters out")
        inputs, _, output = spec.partition("->")
        self.inputs = inputs.split(",")
        if any(len(set(s)) != len(s) for s in self.inputs):
            raise TypeError(f"np.einsum('{subscripts}') repeats a letter within one operand (a diagonal): "
                            f"on a traced value that has no VJP here")
        if "->" not in spec:  # implicit output: the letters used once, in alphabetical order
            letters = "".join(self.inputs)
            output = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
        self.output = output

    def forward(self, *operands):
        spec = ",".join(self.inputs) + "->" + self.output
        return array_module(*operands).einsum(spec, *operands), operands

    def backward(self, operands, g, needs_input_grad):
        # out = sum over the other letters of prod_k x_k, so dL/dx_i = einsum(g and every x_k, k != i)
        # into x_i's letters. Along a letter only x_i has (summed over alone), or one that is size 1 in
        # every other operand, x_i's gradient is constant: broadcast it; along one where x_i has size 1
        # and another operand more (NumPy's einsum broadcasts size 1), sum it back (keepdims)
        xp = array_module(g)
        grads = []
        for i, needed in enumerate(needs_input_grad):
            if not needed:
                grads.append(None)
                continue
            others = [s for k, s in enumerate(self.inputs) if k != i]
            available = set(self.output).union(*others)
            target = "".join(c for c in self.inputs[i] if c in available)
            spec = ",".join([self.output] + others) + "->" + target
            grad = xp.einsum(spec, g, *[x for k, x in enumerate(operands) if k != i])
            sizes = dict(zip(self.inputs[i], operands[i].shape))
            grad = sum_to_shape(grad, [sizes[c] for c in target])
            shape = [grad.shape[target.index(c)] if c in available else 1 for c in self.inputs[i]]
            grads.append(xp.broadcast_to(grad.reshape(shape), operands[i].shape))
        return tuple(grads), {}


@implements(np.einsum)
def einsum(subscripts, *operands, **kwargs):
    _no_extra("einsum", {k: v for k, v in kwargs.items() if k != "optimize"}, "subscripts, operands and optimize=")
    return apply(Einsum(subscripts), *operands)
