"""Reshapes, indexing, joins, products and casts of traced values, checked end to end against
float64 finite differences (see traced_check.py for how; test_traced_ops.py has the elementwise ops)."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from minippl import traced
from minippl.traced import LostGradientError, Traced

from traced_check import SETTINGS, any_shape, arrays, check_traced_vjp, nonzero, seeds, shapes, some_shape, tape_vjp, traced_run


# ---------------------------------------------------------------- shapes
RESHAPES = {
    "np.reshape -1": lambda x: np.reshape(x, -1),
    "np.reshape reversed": lambda x: np.reshape(x, x.shape[::-1]),
    "np.reshape shape=": lambda x: np.reshape(x, shape=(1,) + x.shape),
    ".reshape tuple": lambda x: x.reshape(x.shape[::-1]),
    ".reshape varargs": lambda x: x.reshape(*x.shape[::-1]) if x.ndim else x.reshape(1),
    ".reshape 1, -1": lambda x: x.reshape(1, -1),
    ".ravel": lambda x: x.ravel(),
    ".flatten": lambda x: x.flatten(),
}


@SETTINGS
@pytest.mark.parametrize("name", list(RESHAPES))
@given(data=st.data(), shape=any_shape, seed=seeds)
def test_reshape(name, data, shape, seed):
    check_traced_vjp(RESHAPES[name], {"x": data.draw(arrays(shape))}, seed)


PERMUTATIONS = {
    "np.transpose": lambda x, p, i, j: np.transpose(x),
    ".T": lambda x, p, i, j: x.T,
    "np.transpose axes": lambda x, p, i, j: np.transpose(x, p),
    ".transpose()": lambda x, p, i, j: x.transpose(),
    ".transpose tuple": lambda x, p, i, j: x.transpose(p),
    ".transpose varargs": lambda x, p, i, j: x.transpose(*p) if p else x.transpose(),
    "np.swapaxes": lambda x, p, i, j: np.swapaxes(x, i, j),
    ".swapaxes": lambda x, p, i, j: x.swapaxes(i, j),
    "np.moveaxis": lambda x, p, i, j: np.moveaxis(x, i, j),
    ".mT": lambda x, p, i, j: x.mT,
}


@SETTINGS
@pytest.mark.parametrize("name", list(PERMUTATIONS))
@given(data=st.data(), shape=some_shape, seed=seeds)
def test_transposes(name, data, shape, seed):
    if name == ".mT" and len(shape) < 2:
        shape = shape + (2,)
    x = data.draw(arrays(shape))
    perm = tuple(data.draw(st.permutations(range(len(shape)))))
    i, j = (data.draw(st.integers(-len(shape), len(shape) - 1)) for _ in range(2))
    check_traced_vjp(lambda x: PERMUTATIONS[name](x, perm, i, j), {"x": x}, seed)


@SETTINGS
@given(data=st.data(), shape=hnp.array_shapes(min_dims=1, max_dims=4, max_side=2), seed=seeds)
def test_moveaxis_with_tuples(data, shape, seed):
    source = data.draw(st.lists(st.integers(0, len(shape) - 1), min_size=1, max_size=len(shape), unique=True))
    destination = data.draw(st.permutations(range(len(shape))))[:len(source)]
    negative = data.draw(st.booleans())  # the same axes counted from the end
    source = tuple(a - len(shape) if negative else a for a in source)
    check_traced_vjp(lambda x: np.moveaxis(x, source, destination), {"x": data.draw(arrays(shape))}, seed)


def test_atleast_1d_of_a_0d_value():
    check_traced_vjp(lambda x: np.atleast_1d(x) * 2.0, {"x": np.array(1.5)})


@SETTINGS
@given(data=st.data(), shape=any_shape, seed=seeds)
def test_expand_dims(data, shape, seed):
    axis = data.draw(st.integers(-len(shape) - 1, len(shape)))
    check_traced_vjp(lambda x: np.expand_dims(x, axis), {"x": data.draw(arrays(shape))}, seed)


@SETTINGS
@pytest.mark.parametrize("spelling", ["np.squeeze", "method"])
@given(data=st.data(), shape=hnp.array_shapes(min_dims=1, max_dims=4, max_side=2), seed=seeds)
def test_squeeze(spelling, data, shape, seed):
    ones = [i for i, n in enumerate(shape) if n == 1]
    axis = data.draw(st.sampled_from([None] + ones + [i - len(shape) for i in ones]))
    fn = (lambda x: np.squeeze(x, axis=axis)) if spelling == "np.squeeze" else (lambda x: x.squeeze(axis))
    check_traced_vjp(fn, {"x": data.draw(arrays(shape))}, seed)


@SETTINGS
@given(data=st.data(), s=shapes(2), seed=seeds)
def test_broadcast_to(data, s, seed):
    check_traced_vjp(lambda x: np.broadcast_to(x, s.result_shape), {"x": data.draw(arrays(s.input_shapes[0]))}, seed)


# ---------------------------------------------------------------- indexing
@SETTINGS
@given(data=st.data(), shape=some_shape, seed=seeds)
def test_basic_indexing(data, shape, seed):
    """Ints, slices (negative steps too), None and Ellipsis."""
    index = data.draw(hnp.basic_indices(shape, allow_newaxis=True, allow_ellipsis=True))
    check_traced_vjp(lambda x: x[index], {"x": data.draw(arrays(shape))}, seed)


@pytest.mark.parametrize("index", [
    0, -1, (slice(None, None, -1),), (slice(None, None, -2), None, Ellipsis), (Ellipsis, 1),
    (1, slice(None), None), (slice(2, 0, -1), -2), (None, Ellipsis, slice(1, None))])
def test_basic_indexing_examples(index):
    x = np.arange(12.0).reshape(3, 4) / 5
    check_traced_vjp(lambda x: x[index], {"x": x})


@SETTINGS
@pytest.mark.parametrize("where", ["first axis", "last axis", "two arrays", "list"])
@given(data=st.data(), shape=hnp.array_shapes(min_dims=2, max_dims=3, max_side=3), seed=seeds)
def test_integer_array_indexing_scatter_adds_repeats(where, data, shape, seed):
    def index_into(n):  # an index array that always repeats its first entry
        drawn = data.draw(hnp.arrays(np.intp, data.draw(st.integers(1, 4)), elements=st.integers(-n, n - 1)))
        return np.concatenate([drawn, drawn[:1]])

    first, last = index_into(shape[0]), index_into(shape[-1])
    expr = {
        "first axis": lambda x: x[first],
        "last axis": lambda x: x[..., last],
        "two arrays": lambda x: x[first, first[::-1] % shape[1]],
        "list": lambda x: x[first.tolist()],
    }[where]
    check_traced_vjp(expr, {"x": data.draw(arrays(shape))}, seed)


def test_a_repeated_index_collects_every_gradient():
    x = np.array([10.0, 20.0, 30.0])
    grads = tape_vjp(lambda x: x[np.array([0, 2, 0, 0])], {"x": x}, np.array([1.0, 2.0, 3.0, 4.0]))
    np.testing.assert_array_equal(grads["x"], [8.0, 0.0, 2.0])


@SETTINGS
@pytest.mark.parametrize("where", ["full mask", "leading mask", "leading mask and a slice", "traced comparison"])
@given(data=st.data(), shape=some_shape, seed=seeds)
def test_boolean_mask_indexing(where, data, shape, seed):
    full = data.draw(hnp.arrays(bool, shape))
    leading = data.draw(hnp.arrays(bool, shape[:1]))
    x = data.draw(nonzero(shape))
    expr = {
        "full mask": lambda x: x[full],
        "leading mask": lambda x: x[leading],
        "leading mask and a slice": lambda x: x[(leading, Ellipsis) + (slice(None, None, -1),) * (x.ndim > 1)],
        "traced comparison": lambda x: x[x > 0] * 2.0,
    }[where]
    check_traced_vjp(expr, {"x": x}, seed)


def test_indexing_with_a_traced_integer_index():
    """locs[k] with k a traced (sampled) category: k gets no gradient, locs a scatter-add."""
    locs, k = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]), np.array([2, 0, 2])
    check_traced_vjp(lambda locs: locs[traced.wrap(k)], {"locs": locs})  # wrap: traced while recording


@SETTINGS
@given(data=st.data(), shape=some_shape, seed=seeds)
def test_take(data, shape, seed):
    axis = data.draw(st.none() | st.integers(-len(shape), len(shape) - 1))
    n = int(np.prod(shape)) if axis is None else shape[axis]
    drawn = data.draw(hnp.arrays(np.intp, data.draw(any_shape), elements=st.integers(-n, n - 1)))
    indices = data.draw(st.sampled_from([drawn, int(drawn.flat[0])]))
    check_traced_vjp(lambda x: np.take(x, indices, axis=axis), {"x": data.draw(arrays(shape))}, seed)


# ---------------------------------------------------------------- joining
@SETTINGS
@pytest.mark.parametrize("join", ["np.concatenate", "np.stack"])
@given(data=st.data(), shape=some_shape, n=st.integers(1, 3), with_constant=st.booleans(), seed=seeds)
def test_concatenate_and_stack(join, data, shape, n, with_constant, seed):
    if join == "np.concatenate":
        axis = data.draw(st.none() | st.integers(-len(shape), len(shape) - 1))  # None: flattened first
        sizes = [data.draw(st.integers(1, 3)) for _ in range(n + 1)]
        k = 0 if axis is None else axis % len(shape)
        parts = [data.draw(arrays(shape[:k] + (m,) + shape[k + 1:])) for m in sizes]
    else:
        axis = data.draw(st.integers(-len(shape) - 1, len(shape)))
        parts = [data.draw(arrays(shape)) for _ in range(n + 1)]
    constant = parts.pop()  # a plain array among the traced ones (it gets no gradient)
    fn = np.concatenate if join == "np.concatenate" else np.stack

    def expr(**named):
        arrays_ = [named[f"x{i}"] for i in range(n)]
        return fn(arrays_ + [constant] if with_constant else arrays_, axis=axis)

    check_traced_vjp(expr, {f"x{i}": p for i, p in enumerate(parts)}, seed)


# ---------------------------------------------------------------- products
@SETTINGS
@pytest.mark.parametrize("spelling", ["a @ b", "np.matmul", "a @ B", "A @ b"])
@given(data=st.data(), s=hnp.mutually_broadcastable_shapes(signature=np.matmul.signature, max_dims=2, max_side=3),
       seed=seeds)
def test_matmul_with_batches_and_vectors(spelling, data, s, seed):
    a, b = data.draw(arrays(s.input_shapes[0])), data.draw(arrays(s.input_shapes[1]))
    expr, inputs = {
        "a @ b": (lambda a, b: a @ b, {"a": a, "b": b}),
        "np.matmul": (lambda a, b: np.matmul(a, b), {"a": a, "b": b}),
        "a @ B": (lambda a: a @ b, {"a": a}),
        "A @ b": (lambda b: a @ b, {"b": b}),
    }[spelling]
    check_traced_vjp(expr, inputs, seed)


@SETTINGS
@pytest.mark.parametrize("dims", ["1-D, 1-D", "2-D, 1-D", "1-D, 2-D", "2-D, 2-D", "0-D, 2-D"])
@pytest.mark.parametrize("spelling", ["np.dot", "method"])
@given(data=st.data(), m=st.integers(1, 3), k=st.integers(1, 3), n=st.integers(1, 3), seed=seeds)
def test_dot(dims, spelling, data, m, k, n, seed):
    left, right = {"1-D, 1-D": ((k,), (k,)), "2-D, 1-D": ((m, k), (k,)), "1-D, 2-D": ((k,), (k, n)),
                   "2-D, 2-D": ((m, k), (k, n)), "0-D, 2-D": ((), (k, n))}[dims]
    fn = np.dot if spelling == "np.dot" or dims == "0-D, 2-D" else (lambda a, b: a.dot(b))  # 0-d: a NumPy scalar
    check_traced_vjp(lambda a, b: fn(a, b), {"a": data.draw(arrays(left)), "b": data.draw(arrays(right))}, seed)


@SETTINGS
@given(data=st.data(), s=shapes(2, max_dims=2), seed=seeds)
def test_outer(data, s, seed):
    inputs = {"a": data.draw(arrays(s.input_shapes[0])), "b": data.draw(arrays(s.input_shapes[1]))}
    check_traced_vjp(lambda a, b: np.outer(a, b), inputs, seed)


EINSUMS = ["ij,jk->ik", "ij,ij->i", "bij,bjk->bik", "ij,jk", "ij->i", "ij->ji", "i,i->", "ij,j,k->ik",
           "i,j->ij", "ij,jk->i", "ij,k->i", "ij,ij->ij", "i j , j -> i"]  # ij,k->i: k summed in one operand


@SETTINGS
@pytest.mark.parametrize("spec", EINSUMS)
@given(data=st.data(), seed=seeds)
def test_einsum(spec, data, seed):
    operands = spec.replace(" ", "").partition("->")[0].split(",")
    sizes = {c: data.draw(st.integers(1, 3)) for c in sorted(set("".join(operands)))}
    inputs = {f"x{i}": data.draw(arrays(tuple(sizes[c] for c in letters))) for i, letters in enumerate(operands)}
    check_traced_vjp(lambda **xs: np.einsum(spec, *(xs[f"x{i}"] for i in range(len(operands)))), inputs, seed)


@SETTINGS
@pytest.mark.parametrize("spec", EINSUMS)
@given(data=st.data(), seed=seeds)
def test_einsum_broadcasting_size_1(spec, data, seed):
    """An operand may have size 1 along a letter another has larger (NumPy's einsum broadcasts it): its gradient
    is summed back down, and the other's broadcast up."""
    operands = spec.replace(" ", "").partition("->")[0].split(",")
    sizes = {c: data.draw(st.integers(2, 3)) for c in sorted(set("".join(operands)))}
    inputs = {f"x{i}": data.draw(arrays(tuple(1 if data.draw(st.booleans()) else sizes[c] for c in letters)))
              for i, letters in enumerate(operands)}
    check_traced_vjp(lambda **xs: np.einsum(spec, *(xs[f"x{i}"] for i in range(len(operands)))), inputs, seed)


def test_einsum_sums_a_broadcast_size_1_dim_back():
    a, b = np.array([[0.5, -1.0, 2.0]]), np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 4.0]])  # (1, 3) against (2, 3)
    check_traced_vjp(lambda a, b: np.einsum("ij,ij->ij", a, b), {"a": a, "b": b})
    np.testing.assert_allclose(tape_vjp(lambda a, b: np.einsum("ij,ij->ij", a, b), {"a": a, "b": b},
                                        np.ones((2, 3)))["a"], b.sum(axis=0, keepdims=True))


# ---------------------------------------------------------------- filling and keyword arguments
def test_a_fill_value_that_carries_a_gradient_is_refused():
    x, s = Traced(np.ones(3), "param 'x'"), Traced(np.array(2.0), "param 's'")
    with traced.recording():
        for fill in (lambda: np.full_like(x, s), lambda: np.full_like(np.ones(3), s),
                     lambda: np.full(3, s, dtype=float), lambda: np.full(3, s)):
            with pytest.raises(LostGradientError, match="param 's'"):
                fill()
        with pytest.raises(LostGradientError, match=r"s \* np\.ones_like\(x\)"):
            np.full_like(x, s)
        # x's shape is all np.full_like takes from x; a fill value without a gradient (a discrete draw) is fine
        for got in (np.full_like(x, 3.0), np.full_like(x, Traced(np.array(3.0))), np.zeros_like(x) + 3.0):
            np.testing.assert_array_equal(got if type(got) is not Traced else got.data, np.full(3, 3.0))
    check_traced_vjp(lambda x, s: s * np.ones_like(x) + x, {"x": np.ones(3), "s": np.array(2.0)})  # the fix


KEYWORDS = {  # a call with a keyword the traced version does not take: what it does take
    "np.sum dtype=": (lambda x: np.sum(x, dtype=np.float32), "axis= and keepdims="),
    "np.cumsum dtype=": (lambda x: np.cumsum(x, dtype=np.float32), "axis="),
    "np.var out=": (lambda x: np.var(x, out=np.empty(())), "axis=, ddof= and keepdims="),
    "np.reshape order=": (lambda x: np.reshape(x, 4, order="F"), "a shape (order='C')"),
    "np.ravel order=": (lambda x: np.ravel(x, order="F"), "order='C'"),
    "np.take mode=": (lambda x: np.take(x, [0], mode="clip"), "indices and axis="),
    "np.concatenate dtype=": (lambda x: np.concatenate([x, x], dtype=np.float32), "axis="),
    "np.stack out=": (lambda x: np.stack([x, x], out=np.empty((2, 2, 2))), "axis="),
    "np.einsum dtype=": (lambda x: np.einsum("ij->i", x, dtype=np.float32), "subscripts, operands and optimize="),
}


@pytest.mark.parametrize("name", list(KEYWORDS))
def test_an_unsupported_keyword_names_what_is_accepted(name):
    call, accepted = KEYWORDS[name]
    with traced.recording(), pytest.raises(TypeError) as info:
        call(Traced(np.ones((2, 2)), "param 'x'"))
    assert f"takes {accepted} only" in str(info.value)


# ---------------------------------------------------------------- casts and copies
@pytest.mark.parametrize("spelling", ["x.copy()", "np.copy", "astype float64"])
def test_copies(spelling):
    fn = {"x.copy()": lambda x: x.copy(), "np.copy": lambda x: np.copy(x),
          "astype float64": lambda x: x.astype(np.float64)}[spelling]
    check_traced_vjp(lambda x: fn(x) * 2.0, {"x": np.array([[1.0, -2.0], [0.5, 3.0]])})


def test_a_float32_round_trip_casts_the_gradient_back():
    x = np.array([1.0, -2.0, 1 / 3])
    leaves, out, records = traced_run(lambda x: (x.astype(np.float32) * 2.0).astype(np.float64), {"x": x})
    assert [type(m["fn"]).__name__ for m in records] == ["Cast", "Mul", "Cast"]
    assert records[0]["value"].dtype == records[1]["value"].dtype == np.float32 and out.dtype == np.float64
    u = np.array([0.1, 1.0, 1 / 7])
    (g32,), _ = records[2]["fn"].backward(records[2]["cache"], u, (True,))
    assert g32.dtype == np.float32  # the gradient of the float32 value is float32
    grads = tape_vjp(lambda x: (x.astype(np.float32) * 2.0).astype(np.float64), {"x": x}, u)
    assert grads["x"].dtype == np.float64
    np.testing.assert_allclose(grads["x"], 2 * u, rtol=1e-6)  # d cast/dx = 1, up to float32 rounding
