"""The float64 check of a recorded NumPy expression, shared by test_traced_ops.py and test_traced_arrays.py.

:func:`check_traced_vjp` evaluates an expression on plain float64 arrays (NumPy is the oracle of
the value), again on traced inputs under ``traced.recording()`` inside ``handlers.trace()`` (so
every operation lands on the trace as a "call" record), reads those records backwards with each
record's hand-written ``backward`` as the ELBO's tape does, and compares the gradients with
finite_diff.check_vjp. The hypothesis strategies below keep inputs away from kinks.
"""

import numpy as np
from finite_diff import check_vjp
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from minippl import handlers, traced
from minippl.traced import Traced

# derandomize: the same examples each run. check_vjp's test is relative only, so a random cotangent and
# direction whose slope cancels to ~1e-7 of the output would fail on finite-difference rounding alone
# (about one check in a million); a fixed set of examples cannot flake. Raise max_examples to explore.
SETTINGS = settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])



# ---------------------------------------------------------------- the one shared helper
def traced_run(expr, inputs):
    """``expr`` on traced copies of ``inputs``, recorded: (traced inputs, traced output, records)."""
    leaves = {name: Traced(value) for name, value in inputs.items()}
    with handlers.trace() as tr, traced.recording():
        out = expr(**leaves)
    return leaves, out, tr.trace.records


def tape_vjp(expr, inputs, cotangent):
    """The gradient of ``<cotangent, expr(**inputs)>`` for every input, read off the recorded trace.

    Also checks what the tape relies on: the traced forward equals NumPy's on plain arrays, every
    record is a "call" record of an op with no parameters, each gradient has its input's shape,
    and every gradient reaches the record (or input) that produced its value.
    """
    leaves, out, records = traced_run(expr, inputs)
    expected = np.asarray(expr(**inputs))
    assert type(out) is Traced, f"the expression gave {type(out).__name__}, not a traced value"
    assert np.shape(out.data) == expected.shape and out.dtype == expected.dtype
    np.testing.assert_allclose(out.data, expected, rtol=1e-12, atol=1e-12)
    assert records and all(msg["type"] == "call" for msg in records)
    grads = {id(out): cotangent}
    for msg in reversed(records):  # records (and leaves) keep every value alive: ids stay unique
        grad = grads.pop(id(msg["value"]), None)
        if grad is None:
            continue
        args = msg["args"]
        needs_input_grad = tuple(type(a) is Traced for a in args)
        grad_inputs, grad_params = msg["fn"].backward(msg["cache"], grad, needs_input_grad)
        assert grad_params == {} and len(grad_inputs) == len(args), f"{msg['fn']!r}: layer contract"
        for a, g, needed in zip(args, grad_inputs, needs_input_grad):
            if needed and a.dtype.kind == "f":  # an integer index that is traced gets None
                assert g is not None and np.shape(g) == a.shape, \
                    f"{msg['fn']!r}: gradient of shape {np.shape(g)} for an input of shape {a.shape}"
                grads[id(a)] = g if id(a) not in grads else grads[id(a)] + g  # never in place
    result = {name: grads.pop(id(leaf)) for name, leaf in leaves.items()}
    assert not grads, "a gradient never reached the record that produced its value"
    for name, g in result.items():
        assert np.asarray(g).dtype == np.float64, f"d/d{name} is {np.asarray(g).dtype}"
    return result


def check_traced_vjp(expr, inputs, seed=0):
    """Finite-difference check of the recorded VJP of ``expr`` (a NumPy expression of ``inputs``)."""
    check_vjp(lambda **xs: np.asarray(expr(**xs)), inputs,
              lambda u, **xs: tape_vjp(expr, xs, u), rng=np.random.default_rng(seed))


# ---------------------------------------------------------------- strategies
seeds = st.integers(0, 2**32 - 1)
any_shape = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=3)
some_shape = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=3)


def shapes(n, max_dims=3):
    """``n`` mutually broadcastable shapes and their broadcast."""
    return hnp.mutually_broadcastable_shapes(num_shapes=n, min_dims=0, max_dims=max_dims, max_side=3)


def arrays(shape, low=-3.0, high=3.0):
    return hnp.arrays(np.float64, shape, elements=st.floats(low, high, allow_nan=False, allow_subnormal=False))


def bands(shape, low, high):
    """Values in [low[0], low[1]] or [high[0], high[1]]: away from a point where a slope vanishes."""
    return st.tuples(arrays(shape, *low), arrays(shape, *high), hnp.arrays(bool, shape)).map(
        lambda t: np.where(t[2], t[1], t[0]))


def nonzero(shape):
    """Values with |x| in [0.2, 3]: away from the kink of abs and the pole of 1/x."""
    return bands(shape, (-3.0, -0.2), (0.2, 3.0))


# a ** b: a base away from 1 (d a^b/db = a^b log a) and an exponent away from 0 (d a^b/da = b a^(b-1)),
# so that no slope is ~0 next to a value of size ~1, which float64 differences cannot resolve
def bases(shape):
    return bands(shape, (0.3, 0.8), (1.25, 3.0))


def exponents(shape):
    return bands(shape, (-2.0, -0.2), (0.2, 2.0))


def on_grid(shape, offset=0.0, spread=0.1):
    """k/2 + offset + u with |u| <= spread: two grids with different offsets never come close."""
    value = st.builds(lambda k, u: k / 2 + offset + u, st.integers(-6, 6), st.floats(-spread, spread))
    return hnp.arrays(np.float64, shape, elements=value)


def distinct(shape):
    """Values at least 0.25 apart (no ties for max and min, even after a finite-difference step)."""
    return hnp.arrays(np.int64, shape, elements=st.integers(-40, 40), unique=True).map(lambda k: k * 0.25)


def axes(ndim):
    """An axis argument: None, one axis (maybe negative) or a tuple of axes."""
    options = [st.none(), hnp.valid_tuple_axes(ndim)]
    if ndim:
        options.append(st.integers(-ndim, ndim - 1))
    return st.one_of(*options)
