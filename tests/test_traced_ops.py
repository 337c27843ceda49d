"""Every op reachable from a traced value, checked end to end against float64 finite differences.

Each test writes a NumPy expression in its public spelling (``a * b``, ``np.exp(x)``, ``x.sum(axis=0)``,
``x[idx]``, ``np.einsum(...)``) and hands it to :func:`check_traced_vjp`, which

* evaluates the expression on plain float64 arrays: NumPy itself is the oracle of the value;
* evaluates it again on :class:`~minippl.traced.Traced` inputs, under ``traced.recording()`` inside
  ``handlers.trace()``, so that every operation lands on ``tr.trace.records`` as a "call" record;
* reads those records backwards with each record's ``fn.backward(cache, grad, needs_input_grad)``,
  accumulating gradients by ``id()`` of values, as the ELBO's tape does (infer/tape.py);
* compares the gradients reaching the inputs with tests/finite_diff.py's ``check_vjp``.

Shapes, axes, indices and broadcasting are drawn by hypothesis (modest example counts); input
domains keep each function differentiable and away from its kinks (positive inputs for log,
distinct values for max and min, values a fixed gap away from the other operand for maximum,
minimum and clip). The last section checks, without finite differences, that a traced value looks
and compares like its array and that what cannot be differentiated or recorded raises.
"""
import operator

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from minippl import handlers, traced
from minippl.traced import Traced

from traced_check import (SETTINGS, any_shape, arrays, axes, bands, bases, check_traced_vjp, distinct, exponents,
                          nonzero, on_grid, seeds, shapes, some_shape, tape_vjp, traced_run)


# ---------------------------------------------------------------- operators and binary ufuncs
# name: (function, left domain, right domain, left float constant, right float constant)
BINARY = {
    "+": (operator.add, arrays, arrays, 1.7, -0.3),
    "-": (operator.sub, arrays, arrays, 1.7, -0.3),
    "*": (operator.mul, arrays, arrays, 1.7, -0.3),
    "/": (operator.truediv, arrays, nonzero, 1.7, -0.3),
    "**": (operator.pow, bases, exponents, 1.7, 2.5),
    "np.add": (np.add, arrays, arrays, 1.7, -0.3),
    "np.subtract": (np.subtract, arrays, arrays, 1.7, -0.3),
    "np.multiply": (np.multiply, arrays, arrays, 1.7, -0.3),
    "np.divide": (np.divide, arrays, nonzero, 1.7, -0.3),
    "np.power": (np.power, bases, exponents, 1.7, 2.5),
    # a on the grid k/2 + u, b on k/2 + 0.25 + u: never within 0.05 of each other (nor of the constants)
    "np.maximum": (np.maximum, on_grid, lambda s: on_grid(s, 0.25), 0.0, 0.25),
    "np.minimum": (np.minimum, on_grid, lambda s: on_grid(s, 0.25), 0.0, 0.25),
    "np.logaddexp": (np.logaddexp, arrays, arrays, 1.7, -0.3),
}
# which operands are traced: both, one (the other a plain array), or one with a Python float
OPERANDS = ["traced, traced", "traced, array", "array, traced", "traced, float", "float, traced",
            "numpy scalar, traced"]


@SETTINGS
@pytest.mark.parametrize("name", list(BINARY))
@pytest.mark.parametrize("operands", OPERANDS)
@given(data=st.data(), s=shapes(2), seed=seeds)
def test_binary_ops_broadcast_in_either_order(name, operands, data, s, seed):
    fn, left, right, left_float, right_float = BINARY[name]
    a = data.draw(left(s.input_shapes[0]))
    b = data.draw(right(s.input_shapes[1]))
    expr, inputs = {
        "traced, traced": (lambda a, b: fn(a, b), {"a": a, "b": b}),
        "traced, array": (lambda a: fn(a, b), {"a": a}),
        "array, traced": (lambda b: fn(a, b), {"b": b}),
        "traced, float": (lambda a: fn(a, right_float), {"a": a}),
        "float, traced": (lambda b: fn(left_float, b), {"b": b}),
        "numpy scalar, traced": (lambda b: fn(np.float64(left_float), b), {"b": b}),
    }[operands]
    check_traced_vjp(expr, inputs, seed)


@SETTINGS
@given(data=st.data(), shape=any_shape, seed=seeds)
def test_integer_powers_of_negative_numbers(data, shape, seed):
    x = data.draw(arrays(shape))
    check_traced_vjp(lambda x: x ** 2 + x ** 3 - 0.5 * np.power(x, 4) + x ** 1.0, {"x": x}, seed)


def test_the_power_of_zero_has_slope_zero_even_at_zero():
    """d a^0/da = 0 everywhere (a^0 = 1): at a = 0 too, where b a^(b-1) would be 0 * 0^-1 = NaN (torch: 0)."""
    a = np.array([0.0, 0.0, 2.0, -1.5])
    for b, expected in [(0, 0.0), (0.0, 0.0), (np.zeros(4), 0.0), (np.array([0.0, 2.0, 0.0, 3.0]), [0, 0, 0, 6.75])]:
        with np.errstate(all="raise"):  # no 0^-1 computed on the way
            grads = tape_vjp(lambda a: a ** b, {"a": a}, np.ones(4))
        np.testing.assert_array_equal(grads["a"], np.broadcast_to(expected, (4,)))
    check_traced_vjp(lambda a: a ** 0 + a ** np.array([0.0, 1.0, 2.0]), {"a": np.array([0.5, -1.0, 2.0])})
    x32 = np.array([0.0, 1.5], np.float32)  # a Python exponent keeps a float32 base's dtype in the backward
    leaves, out, records = traced_run(lambda x: x ** 2, {"x": x32})
    (grad, _), _ = records[0]["fn"].backward(records[0]["cache"], np.ones(2, np.float32), (True, False))
    assert out.dtype == grad.dtype == np.float32


@SETTINGS
@pytest.mark.parametrize("spelling", ["a % b", "np.remainder", "a % 1.5", "2.5 % b", "divmod(a, b)"])
@given(data=st.data(), shape=any_shape, seed=seeds)
def test_remainder(spelling, data, shape, seed):
    """a % b = a - floor(a / b) b: d/da = 1, d/db = -floor(a / b); a / b stays 0.2 or more from an integer."""
    k = data.draw(hnp.arrays(np.int64, shape, elements=st.integers(1, 3)))
    u = data.draw(arrays(shape, 0.2, 0.8))
    b = data.draw(bands(shape, (-2.0, -0.5), (0.5, 2.0)))
    sign = data.draw(hnp.arrays(bool, shape)) * 2 - 1
    a = (sign * k + u) * b
    expr, inputs = {
        "a % b": (lambda a, b: a % b, {"a": a, "b": b}),
        "np.remainder": (lambda a, b: np.remainder(a, b), {"a": a, "b": b}),
        "a % 1.5": (lambda a: a % 1.5, {"a": (sign * k + u) * 1.5}),
        "2.5 % b": (lambda b: 2.5 % b, {"b": 2.5 / (sign * k + u)}),
        "divmod(a, b)": (lambda a, b: divmod(a, b)[1] + divmod(a, b)[0], {"a": a, "b": b}),
    }[spelling]
    check_traced_vjp(expr, inputs, seed)


def test_an_operand_used_twice_collects_both_gradients():
    x = np.array([0.5, -1.0, 2.0])
    check_traced_vjp(lambda x: x * x - x / (x * x + 1), {"x": x})
    grads = tape_vjp(lambda x: x * x, {"x": x}, np.ones(3))
    np.testing.assert_allclose(grads["x"], 2 * x)


# ---------------------------------------------------------------- unary functions
# name: (function, domain)
UNARY = {
    "-x": (operator.neg, arrays),
    "+x": (operator.pos, arrays),
    "abs(x)": (abs, nonzero),
    "np.negative": (np.negative, arrays),
    "np.exp": (np.exp, arrays),
    "np.log": (np.log, lambda s: arrays(s, 0.1, 5.0)),
    "np.log1p": (np.log1p, lambda s: arrays(s, -0.9, 5.0)),
    "np.expm1": (np.expm1, arrays),
    "np.sqrt": (np.sqrt, lambda s: arrays(s, 0.1, 5.0)),
    "np.square": (np.square, nonzero),  # d x^2/dx = 2x: not near 0, where the slope vanishes
    "np.abs": (np.abs, nonzero),
    "np.absolute": (np.absolute, nonzero),
    "np.tanh": (np.tanh, arrays),
    "np.sin": (np.sin, lambda s: arrays(s, -1.3, 1.3)),  # away from the stationary points +-pi/2
    "np.cos": (np.cos, lambda s: bands(s, (-2.9, -0.2), (0.2, 2.9))),  # and 0, +-pi
    "np.reciprocal": (np.reciprocal, nonzero),
}


@SETTINGS
@pytest.mark.parametrize("name", list(UNARY))
@given(data=st.data(), shape=any_shape, seed=seeds)
def test_unary_functions(name, data, shape, seed):
    fn, domain = UNARY[name]
    check_traced_vjp(lambda x: fn(x), {"x": data.draw(domain(shape))}, seed)


# ---------------------------------------------------------------- where, clip, and the tie rule
@SETTINGS
@pytest.mark.parametrize("spelling", ["plain condition", "traced comparison", "float branch", "array branch"])
@given(data=st.data(), s=shapes(3), seed=seeds)
def test_where(spelling, data, s, seed):
    c = data.draw(arrays(s.input_shapes[0]))
    a = data.draw(nonzero(s.input_shapes[1]))
    b = data.draw(arrays(s.input_shapes[2]))
    expr, inputs = {
        "plain condition": (lambda a, b: np.where(c > 0, a, b), {"a": a, "b": b}),
        "traced comparison": (lambda a, b: np.where(a > 0, a, b * a), {"a": a, "b": b}),  # a: |a| >= 0.2
        "float branch": (lambda a: np.where(a < 0, 0.5, a), {"a": a}),
        "array branch": (lambda b: np.where(c > 0, a, b), {"b": b}),
    }[spelling]
    check_traced_vjp(expr, inputs, seed)


@SETTINGS
@pytest.mark.parametrize("spelling", ["np.clip", "method", "upper only", "lower only", "traced bounds"])
@given(data=st.data(), s=shapes(3), seed=seeds)
def test_clip(spelling, data, s, seed):
    # x on k/2 + u (|u| <= 0.1); the bounds on k/2 + 0.2 (+-0.04) and k/2 + 0.3 (+-0.04): no ties
    x = data.draw(on_grid(s.input_shapes[0]))
    lo = data.draw(on_grid(s.input_shapes[1], 0.2, 0.04))
    hi = data.draw(on_grid(s.input_shapes[2], 0.3, 0.04))
    expr, inputs = {
        "np.clip": (lambda x: np.clip(x, -0.8, 1.3), {"x": x}),
        "method": (lambda x: x.clip(-0.8, 1.3), {"x": x}),
        "upper only": (lambda x: np.clip(x, None, 0.3), {"x": x}),
        "lower only": (lambda x: np.clip(x, lo, None), {"x": x}),
        "traced bounds": (lambda x, lo, hi: np.clip(x, lo, hi), {"x": x, "lo": lo, "hi": hi}),
    }[spelling]
    check_traced_vjp(expr, inputs, seed)


@pytest.mark.parametrize("fn", [np.maximum, np.minimum])
def test_a_tie_splits_the_gradient_in_halves(fn):
    """max(a, b) at a = b: each input gets half the gradient (as torch)."""
    a = np.array([1.0, -2.0, 3.0])
    b = np.array([1.0, -2.0, 0.0])
    g = np.array([2.0, 4.0, 8.0])
    grads = tape_vjp(lambda a, b: fn(a, b), {"a": a, "b": b}, g)
    a_share = np.array([0.5, 0.5, 1.0 if fn is np.maximum else 0.0])
    np.testing.assert_array_equal(grads["a"], g * a_share)
    np.testing.assert_array_equal(grads["b"], g * (1 - a_share))
    np.testing.assert_array_equal(tape_vjp(lambda a: fn(a, a), {"a": a}, g)["a"], g)  # max(a, a) = a


@pytest.mark.parametrize("fn", [np.max, np.min])
def test_a_reduction_tie_splits_the_gradient_evenly(fn):
    x = np.array([[1.0, 3.0, 3.0, 3.0], [-1.0, -1.0, 0.5, 0.5]])
    grads = tape_vjp(lambda x: fn(x, axis=1), {"x": x}, np.array([3.0, 2.0]))
    winners = x == fn(x, axis=1, keepdims=True)
    expected = np.where(winners, np.array([[3.0], [2.0]]) / winners.sum(1, keepdims=True), 0.0)
    np.testing.assert_array_equal(grads["x"], expected)


# ---------------------------------------------------------------- reductions
REDUCTIONS = {
    "np.sum": lambda x, axis, keepdims: np.sum(x, axis=axis, keepdims=keepdims),
    "np.mean": lambda x, axis, keepdims: np.mean(x, axis=axis, keepdims=keepdims),
    "np.max": lambda x, axis, keepdims: np.max(x, axis=axis, keepdims=keepdims),
    "np.min": lambda x, axis, keepdims: np.min(x, axis=axis, keepdims=keepdims),
    "np.amax": lambda x, axis, keepdims: np.amax(x, axis=axis, keepdims=keepdims),
    "np.amin": lambda x, axis, keepdims: np.amin(x, axis=axis, keepdims=keepdims),
    ".sum": lambda x, axis, keepdims: x.sum(axis=axis, keepdims=keepdims),
    ".mean": lambda x, axis, keepdims: x.mean(axis=axis, keepdims=keepdims),
    ".max": lambda x, axis, keepdims: x.max(axis=axis, keepdims=keepdims),
    ".min": lambda x, axis, keepdims: x.min(axis=axis, keepdims=keepdims),
    "np.maximum.reduce": lambda x, axis, keepdims: np.maximum.reduce(x, axis=axis, keepdims=keepdims),
    "np.add.reduce": lambda x, axis, keepdims: np.add.reduce(x, axis=axis, keepdims=keepdims),
}


@SETTINGS
@pytest.mark.parametrize("name", list(REDUCTIONS))
@given(data=st.data(), shape=any_shape, keepdims=st.booleans(), seed=seeds)
def test_reductions(name, data, shape, keepdims, seed):
    x = data.draw(distinct(shape))
    axis = data.draw(axes(len(shape)))
    check_traced_vjp(lambda x: REDUCTIONS[name](x, axis, keepdims), {"x": x}, seed)


@pytest.mark.parametrize("axis", [None, 0, -1, (0, 1)])
@pytest.mark.parametrize("ddof, keepdims", [(0, False), (1, True)])
def test_var_and_std_composed_of_recorded_ops(axis, ddof, keepdims):
    x = np.array([[0.3, -1.2, 2.0, 0.7], [1.1, 0.4, -0.6, 2.5], [-2.2, 0.9, 1.6, -0.1]])
    check_traced_vjp(lambda x: np.var(x, axis=axis, ddof=ddof, keepdims=keepdims), {"x": x})
    check_traced_vjp(lambda x: x.std(axis=axis, ddof=ddof, keepdims=keepdims), {"x": x})
    check_traced_vjp(lambda x: np.ravel(x) * 2.0, {"x": x})


def test_reductions_by_position_without_arguments_and_by_iteration():
    x = np.arange(12.0).reshape(3, 4) / 7
    check_traced_vjp(lambda x: x.sum() + x.mean(0).sum() + x.max(-1).sum() + np.sum(x, 1).sum(), {"x": x})
    check_traced_vjp(lambda x: sum(x) * 2.0, {"x": x})  # Python's sum: iterates over rows, adds them
    check_traced_vjp(lambda x: np.add.reduce(x, axis=0), {"x": x})


@pytest.mark.parametrize("reduce", [np.add.reduce, np.maximum.reduce, np.minimum.reduce])
def test_a_ufunc_reduce_without_axis_reduces_the_first_axis(reduce):
    x = np.array([[1.0, 5.0, -2.0], [3.0, 0.5, 4.0]])
    check_traced_vjp(lambda x: reduce(x), {"x": x})


@SETTINGS
@pytest.mark.parametrize("spelling", ["np.cumsum", "method"])
@given(data=st.data(), shape=any_shape, seed=seeds)
def test_cumsum(spelling, data, shape, seed):
    x = data.draw(arrays(shape))
    axis = data.draw(st.none() | st.integers(-len(shape), len(shape) - 1)) if shape else None
    fn = (lambda x: np.cumsum(x, axis=axis)) if spelling == "np.cumsum" else (lambda x: x.cumsum(axis=axis))
    check_traced_vjp(fn, {"x": x}, seed)


# ---------------------------------------------------------------- composed expressions
@SETTINGS
@given(data=st.data(), shape=some_shape, seed=seeds)
def test_logsumexp_written_out(data, shape, seed):
    def logsumexp(x):
        m = np.max(x, axis=-1, keepdims=True)
        return m + np.log(np.sum(np.exp(x - m), axis=-1, keepdims=True))

    check_traced_vjp(logsumexp, {"x": data.draw(distinct(shape))}, seed)  # distinct: m moves smoothly


@SETTINGS
@given(data=st.data(), s=shapes(3), seed=seeds)
def test_softplus_sigmoid_and_a_small_network(data, s, seed):
    h = data.draw(arrays(s.input_shapes[0], -10.0, 10.0))
    check_traced_vjp(lambda h: np.logaddexp(0, h), {"h": h}, seed)
    check_traced_vjp(lambda h: 1 / (1 + np.exp(-h)), {"h": h}, seed)
    h, w, b = (data.draw(nonzero(shape)) for shape in s.input_shapes)  # no factor near 0: no vanishing slope
    check_traced_vjp(lambda h, w, b: 3.0 * np.tanh(0.3 * (w * h + b)) + np.exp(-h / 2.0) / (1.0 + b ** 2),
                     {"h": h, "w": w, "b": b}, seed)


# ---------------------------------------------------------------- a traced value looks like its array
def test_a_traced_value_prints_and_compares_like_its_array():
    a = np.array([[1.5, -2.0, 3.0], [0.0, 4.0, -1.0]])
    x = Traced(a)
    assert repr(x) == repr(a) and str(x) == str(a) and f"{Traced(np.float64(2.5)):.2f}" == "2.50"
    assert x.shape == (2, 3) and x.dtype == np.float64 and x.ndim == 2 and x.size == 6 and len(x) == 2
    assert float(Traced(np.array(2.5))) == 2.5 and type(float(Traced(np.array(2.5)))) is float
    for recording in (False, True):
        with traced.recording(recording):
            for result, expected in [(x > 0, a > 0), (x <= 1.5, a <= 1.5), (x == a, a == a), (x != 0, a != 0),
                                     (0 < x, 0 < a), (x >= Traced(a.T.T), a >= a)]:
                assert type(result) is np.ndarray and result.dtype == bool
                np.testing.assert_array_equal(result, expected)


def test_outside_recording_an_op_gives_a_plain_array():
    a = np.array([[1.0, 2.0], [3.0, 4.0]])
    x = Traced(a)
    results = [x + 1, 2.0 * x, x @ x, -x, np.exp(x), x[0], x[[0, 0]], x.sum(axis=0), np.mean(x), x.T,
               x.reshape(-1), np.einsum("ij->i", x), np.concatenate([x, a]), x.astype(np.float32), x.copy(),
               np.where(a > 2, x, 0.0), np.maximum(x, 2.5), x.max()]
    for r in results:
        assert type(r) is not Traced and isinstance(r, (np.ndarray, np.generic))
    np.testing.assert_array_equal(results[0], a + 1)
    with handlers.trace() as tr:  # traced values, but no recording: nothing on the tape
        np.exp(x) + x
    assert tr.trace.records == []


@pytest.mark.filterwarnings("ignore:'where' used without 'out'")  # NumPy's note: the masked-out entries are unset
@pytest.mark.parametrize("recording", [False, True])
def test_a_traced_keyword_argument_is_unwrapped_too(recording):
    # where= holds a traced mask: it reaches NumPy as its plain array (it used to recurse forever)
    a, mask = np.array([1.0, -2.0, 3.0]), np.array([True, False, True])
    with traced.recording(recording):
        got = np.isfinite(Traced(a), where=Traced(mask))  # a ufunc without a derivative
        np.testing.assert_array_equal(got[mask], [True, True])
        if not recording:
            out = np.zeros(3)
            np.testing.assert_array_equal(np.add(Traced(a), 1.0, where=Traced(mask), out=out), [2.0, 0.0, 4.0])


@pytest.mark.parametrize("call, name", [
    (lambda x: np.sort(x), "numpy.sort"),
    (lambda x: np.arctan2(x, 1.0), "numpy.arctan2"),
    (lambda x: np.median(x), "numpy.median"),
    (lambda x: np.exp(x, where=x.data > 0), "numpy.exp with where="),
    (lambda x: np.logaddexp.reduce(x), "numpy.logaddexp.reduce"),
])
def test_a_function_with_no_derivative_raises_and_names_itself(call, name):
    x = Traced(np.array([3.0, 1.0, 2.0]))
    with traced.recording(), pytest.raises(TypeError, match="no hand-written derivative") as info:
        call(x)
    assert name in str(info.value)


def test_out_into_a_plain_array_while_recording_raises():
    x, buffer = Traced(np.array([3.0, 1.0])), np.empty(2)
    with traced.recording(), pytest.raises(TypeError, match=r"numpy\.exp\(\.\.\., out=m\).*m = m \+ x"):
        np.exp(x, out=buffer)


def test_where_with_one_branch_raises_as_numpy_does():
    x = Traced(np.array([1.0, -2.0]), "param 'x'")
    for recording in (False, True):
        with traced.recording(recording):
            with pytest.raises(ValueError, match="either both or neither of x and y"):
                np.where(x > 0, x)


def test_a_list_operand_is_an_array():
    for expr in (lambda x: x @ [1.0, -2.0], lambda x: [0.5, 2.0] @ x.T, lambda x: x ** [1.0, 2.0],
                 lambda x: np.einsum("ij,j->i", x, [1.0, 3.0]), lambda x: np.where([True, False], x, [4.0, 5.0])):
        check_traced_vjp(expr, {"x": np.array([[0.5, 1.5], [2.0, 1.25], [0.75, 3.0]])})


def test_methods_and_operators_without_a_derivative_compute_or_name_themselves():
    a = np.array([[1.25, -2.5], [3.75, 0.5]])
    x = Traced(a, "param 'x'")
    with traced.recording():
        # piecewise constant: plain results (their gradient is 0), as np.floor
        for got, expected in [(x.round(), a.round()), (x // 2, a // 2), (3 // x, 3 // a), (x.argsort(), a.argsort()),
                              (divmod(x, 2)[0], a // 2), (x.nonzero()[0], a.nonzero()[0])]:
            assert type(got) is np.ndarray
            np.testing.assert_array_equal(got, expected)
        assert type(x.take([0, 3])) is Traced and type(x.sum()) is Traced and type(x % 2) is Traced
        for method in ("repeat", "cumprod", "prod", "trace"):
            with pytest.raises(AttributeError, match=rf"x\.{method}\(\) \(numpy\.ndarray\.{method}\).*no hand-written"):
                getattr(x, method)
        with pytest.raises(AttributeError, match="no attribute 'not_a_method'"):
            x.not_a_method
    np.testing.assert_array_equal(x.repeat(2), a.repeat(2))  # not recording: as the plain array
    check_traced_vjp(lambda x: x.take([0, 3, 0]) * x.sum(axis=1).max(), {"x": a})


@pytest.mark.parametrize("recording", [False, True])
def test_in_place_updates_raise(recording):
    def augmented(x):
        x += 1

    def item(x):
        x[0] = 1

    def out_into_itself(x):
        np.multiply(x, 2, out=x)

    for update in (augmented, item, out_into_itself, lambda x: x.fill(0.0)):
        x = Traced(np.array([1.0, 2.0]))
        with traced.recording(recording), pytest.raises(TypeError, match="in place"):
            update(x)
        np.testing.assert_array_equal(x.data, [1.0, 2.0])
