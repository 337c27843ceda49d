"""Tests of minippl.nn: every backward against float64 finite differences, the Module
bookkeeping (names, registration, set_parameter), recording on the trace, and float32 stability."""
import math
import warnings

import numpy as np
import pytest
from finite_diff import check_vjp

from minippl import runtime, traced
from minippl import nn
from minippl.nn import functional as F

RNG = np.random.default_rng(0)


def randn(*shape):
    return RNG.standard_normal(shape)


def check_layer(layer, *inputs, outputs=None):
    """Finite-difference check of ``layer.backward`` w.r.t. every input and parameter.

    ``outputs`` picks which outputs of a multi-output layer the scalar depends on
    (the others get a None gradient); by default all, concatenated.
    """
    input_names = [f"input{i}" for i in range(len(inputs))]
    named = list(layer.named_parameters()) if isinstance(layer, nn.Module) else []  # ops have none
    param_names = [name for name, _ in named]
    point = dict(zip(input_names, inputs), **dict(named))

    def run(**values):
        for name in param_names:
            layer.set_parameter(name, values[name])
        return layer.forward(*[values[n] for n in input_names])

    def flat(out):
        if not isinstance(out, tuple):
            return out
        picked = range(len(out)) if outputs is None else outputs
        return np.concatenate([out[i].ravel() for i in picked])

    def vjp(cotangent, **values):
        out, cache = run(**values)
        for name in param_names:  # backward reads only its cache: a parameter rebound now must change nothing
            layer.set_parameter(name, np.full_like(values[name], np.nan))
        if isinstance(out, tuple):  # split the flat cotangent back into one per output
            picked = range(len(out)) if outputs is None else outputs
            grads, start = [None] * len(out), 0
            for i in picked:
                grads[i] = cotangent[start:start + out[i].size].reshape(out[i].shape)
                start += out[i].size
            cotangent = tuple(grads)
        grad_inputs, grad_params = layer.backward(cache, cotangent, (True,) * len(inputs))
        assert len(grad_inputs) == len(inputs)
        assert set(grad_params) == set(param_names)
        return dict(zip(input_names, grad_inputs), **grad_params)

    check_vjp(lambda **values: flat(run(**values)[0]), point, vjp)


# ---------------------------------------------------------------- gradients


@pytest.mark.parametrize("batch_shape", [(), (5,), (2, 3)])
@pytest.mark.parametrize("bias", [True, False])
def test_dense_backward(batch_shape, bias):
    layer = nn.Dense(4, 3, bias=bias, dtype=np.float64)
    check_layer(layer, randn(*batch_shape, 4))


def away_from_zero(*shape):  # ReLU's kink: keep finite-difference steps from crossing it
    x = randn(*shape)
    return np.sign(x) * (0.1 + np.abs(x))


@pytest.mark.parametrize("layer, x", [
    (nn.Sigmoid(), 3 * randn(4, 5)),
    (nn.Softplus(), 3 * randn(4, 5)),
    (nn.Softplus(), np.array([-30.0, -5.0, 19.0, 21.0, 40.0])),  # both sides of the threshold
    (nn.Softplus(beta=2.0, threshold=5.0), np.array([-3.0, 0.5, 2.0, 2.6, 4.0])),
    (nn.Tanh(), 2 * randn(4, 5)),
    (nn.ReLU(), away_from_zero(4, 5)),
    (nn.Exp(), randn(4, 5)),
    (nn.Sigmoid(), np.array(0.7)), (nn.Softplus(), np.array(-0.4)), (nn.Tanh(), np.array(0.3)),  # 0-d
])
def test_activation_backward(layer, x):
    check_layer(layer, x)


@pytest.mark.parametrize("shape_a, shape_b", [
    ((3, 4), (3, 4)), ((3, 4), (4,)), ((3, 1), (1, 4)), ((2, 3, 4), (3, 1)), ((), (2, 3)),
])
@pytest.mark.parametrize("op", [nn.functional.Add(), nn.functional.Mul()])
def test_broadcasting_binary_backward(op, shape_a, shape_b):
    check_layer(op, randn(*shape_a), randn(*shape_b))


@pytest.mark.parametrize("shape_a, shape_b", [
    ((3, 4), (4, 5)), ((4,), (4, 5)), ((3, 4), (4,)), ((4,), (4,)),
    ((2, 3, 4), (4, 5)), ((2, 1, 3, 4), (5, 4, 2)), ((4,), (2, 4, 5)), ((2, 3, 4), (4,)),
])
def test_matmul_backward(shape_a, shape_b):
    check_layer(nn.functional.MatMul(), randn(*shape_a), randn(*shape_b))


@pytest.mark.parametrize("axis, keepdims", [(None, False), (None, True), (0, False), (-1, True),
                                            ((0, 2), False), (1, False)])
def test_sum_backward(axis, keepdims):
    check_layer(nn.functional.Sum(axis, keepdims), randn(2, 3, 4))


def test_python_float_operands():
    assert np.isclose(F.softplus(0.5), np.log1p(np.exp(0.5))) and np.isclose(F.sigmoid(0.0), 0.5)
    x = randn(3)
    assert np.allclose(F.add(x, 2.0), x + 2.0) and np.allclose(F.mul(2.0, x), 2.0 * x)
    (grad_a, grad_b), _ = nn.functional.Mul().backward((2.0, x), np.ones(3), (False, True))
    assert grad_a is None and np.allclose(grad_b, 2.0)


class LocScaleHead(nn.Module):
    """A two-output layer (as an encoder head): loc = W x, scale = exp(v x)."""

    def __init__(self):
        super().__init__()
        self.w, self.v = randn(2, 3), randn(1, 3)

    def forward(self, x):
        scale = np.exp(x @ self.v.T)
        return (x @ self.w.T, scale), (x, scale, self.w, self.v)  # backward reads only its cache

    def backward(self, cache, grad_outputs, needs_input_grad):
        # dL/dW = g_loc^T x ; dL/dv = (g_scale scale)^T x ; dL/dx = g_loc W + (g_scale scale) v
        x, scale, w, v = cache
        grad_loc, grad_scale = grad_outputs  # None: that output received no gradient
        grad_loc = np.zeros((len(x), len(w))) if grad_loc is None else grad_loc
        grad_scale = np.zeros_like(scale) if grad_scale is None else grad_scale
        grad_pre = grad_scale * scale
        grad_x = grad_loc @ w + grad_pre @ v if needs_input_grad[0] else None
        return (grad_x,), {"w": grad_loc.T @ x, "v": grad_pre.T @ x}


@pytest.mark.parametrize("outputs", [None, (0,), (1,)])
def test_multi_output_layer_backward(outputs):
    check_layer(LocScaleHead(), randn(5, 3), outputs=outputs)


# ---------------------------------------------------------------- needs_input_grad


class MustNotBeUsed:
    """Stands in for an array that backward must not touch when its gradient is not needed."""
    __array_ufunc__ = None  # NumPy defers every operator to this class, which refuses
    shape = (3,)

    def refuse(self, *args):
        raise AssertionError("backward computed an input gradient nobody asked for")

    __matmul__ = __rmatmul__ = __mul__ = __rmul__ = refuse


def test_dense_skips_the_data_gradient():
    layer = nn.Dense(3, 2, dtype=np.float64)
    x, grad_y = randn(4, 3), randn(4, 2)
    (grad_x,), grad_params = layer.backward((x, MustNotBeUsed(), True), grad_y, (False,))
    assert grad_x is None and set(grad_params) == {"weight", "bias"}


def test_binary_ops_skip_unneeded_gradients():
    grad_out = randn(3)
    (grad_a, grad_b), _ = nn.functional.Mul().backward((randn(3), MustNotBeUsed()), grad_out, (False, True))
    assert grad_a is None and grad_b.shape == (3,)
    for op in (nn.functional.Add(), nn.functional.MatMul()):
        _, cache = op.forward(randn(3, 3), randn(3, 3))
        assert op.backward(cache, randn(3, 3), (False, False))[0] == (None, None)


@pytest.mark.parametrize("layer", [nn.Sigmoid(), nn.Softplus(), nn.Tanh(), nn.ReLU(), nn.Exp(),
                                   nn.functional.Sum()])
def test_activation_without_input_grad(layer):
    out, cache = layer.forward(randn(3))
    assert layer.backward(cache, np.ones_like(out), (False,)) == ((None,), {})


# ---------------------------------------------------------------- Dense and Module bookkeeping


def test_dense_init_matches_torch_linear():
    layer = nn.Dense(400, 50, rng=np.random.default_rng(1))
    bound = 1 / math.sqrt(400)
    assert layer.weight.shape == (50, 400) and layer.bias.shape == (50,)
    assert layer.weight.dtype == np.float32 and layer.bias.dtype == np.float32
    for array in (layer.weight, layer.bias):
        assert np.all(np.abs(array) <= bound) and np.abs(array).max() > 0.9 * bound
    assert nn.Linear is nn.Dense
    again = nn.Dense(400, 50, rng=np.random.default_rng(1))
    assert np.array_equal(layer.weight, again.weight)
    no_bias = nn.Dense(3, 2, bias=False)
    assert no_bias.bias is None and [n for n, _ in no_bias.named_parameters()] == ["weight"]


def test_dense_forward_any_batch_and_wrong_width():
    layer = nn.Dense(3, 2)
    for shape in [(3,), (5, 3), (2, 4, 3)]:
        x = RNG.standard_normal(shape).astype(np.float32)
        y = layer(x)
        assert y.dtype == np.float32 and np.allclose(y, x @ layer.weight.T + layer.bias, atol=1e-6)
    with pytest.raises(ValueError, match="last dimension is 3"):
        layer(np.ones((5, 4), np.float32))


class Encoder(nn.Module):
    """Pyro's VAE encoder, written as a composite: it calls layers and has no backward."""

    def __init__(self, x_dim=6, hidden_dim=5, z_dim=2):
        super().__init__()
        self.fc1 = nn.Dense(x_dim, hidden_dim, dtype=np.float64)
        self.fc21 = nn.Dense(hidden_dim, z_dim, dtype=np.float64)
        self.fc22 = nn.Dense(hidden_dim, z_dim, dtype=np.float64)
        self.softplus = nn.Softplus()

    def forward(self, x):
        hidden = self.softplus(self.fc1(x))
        # hidden is used twice: its gradient must accumulate from both uses
        z_loc = F.add(self.fc21(hidden), F.sum(hidden, axis=-1, keepdims=True))
        z_scale = F.exp(self.fc22(hidden))
        return z_loc, z_scale


class TwoEncoders(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = np.ones(2)
        self.first = Encoder()
        self.register_buffer("mask", np.ones(2))
        self.second = nn.Sequential(nn.Dense(2, 2), nn.Tanh())


def test_named_parameters_order_and_names():
    model = TwoEncoders()
    names = [name for name, _ in model.named_parameters()]
    assert names == ["scale", "first.fc1.weight", "first.fc1.bias", "first.fc21.weight", "first.fc21.bias",
                     "first.fc22.weight", "first.fc22.bias", "second.0.weight", "second.0.bias"]
    assert all(a is b for a, b in zip(model.parameters(), (p for _, p in model.named_parameters())))
    assert [n for n, _ in model.named_buffers()] == ["mask"]
    assert [n for n, _ in model.named_modules()] == ["", "first", "first.fc1", "first.fc21", "first.fc22",
                                                    "first.softplus", "second", "second.0", "second.1"]
    assert [n for n, _ in model.first.named_parameters(prefix="encoder")][0] == "encoder.fc1.weight"


def test_set_parameter_rebinds_and_checks():
    model = TwoEncoders()
    new = np.zeros((5, 6))
    model.set_parameter("first.fc1.weight", new)
    assert model.first.fc1.weight is new and model.get_parameter("first.fc1.weight") is new
    assert [n for n, _ in model.named_parameters()][1] == "first.fc1.weight"  # position kept
    with pytest.raises(ValueError, match="shape"):
        model.set_parameter("first.fc1.weight", np.zeros((6, 5)))
    with pytest.raises(KeyError, match="first.fc1.bias"):
        model.set_parameter("first.fc1.weights", new)
    with pytest.raises(KeyError):
        model.set_parameter("mask", np.zeros(2))  # a buffer is not a parameter


def test_registration_rules():
    layer = nn.Dense(2, 2)
    with pytest.raises(TypeError, match="float array"):
        layer.weight = np.ones((2, 2), dtype=np.int64)
    layer.bias = None
    assert [n for n, _ in layer.named_parameters()] == ["weight"]

    class Forgetful(nn.Module):
        def __init__(self):
            self.fc = nn.Dense(2, 2)

    with pytest.raises(AttributeError, match=r"super\(\)\.__init__\(\)"):
        Forgetful()


def test_repr():
    assert repr(nn.Sequential(nn.Dense(2, 3), nn.Softplus())) == (
        "Sequential(\n  (0): Dense(in_features=2, out_features=3, bias=True)\n"
        "  (1): Softplus(beta=1.0, threshold=20.0)\n)")


# ---------------------------------------------------------------- calling and recording


class Recorder(runtime.Messenger):
    """Collects every message, with values traced as in a gradient run (so ops are recorded too)."""

    def __init__(self):
        super().__init__()
        self.msgs = []
        self._recording = traced.recording()

    def __enter__(self):
        self._recording.__enter__()
        return super().__enter__()

    def __exit__(self, *exc):
        super().__exit__(*exc)
        self._recording.__exit__(*exc)

    def postprocess_message(self, msg):
        self.msgs.append(msg)


def test_composite_outside_any_handler():
    encoder = Encoder()
    x = randn(4, 6)
    z_loc, z_scale = encoder(x)
    fc1, fc21, fc22 = encoder.fc1, encoder.fc21, encoder.fc22
    hidden = np.logaddexp(0, x @ fc1.weight.T + fc1.bias)
    assert np.allclose(z_loc, hidden @ fc21.weight.T + fc21.bias + hidden.sum(-1, keepdims=True))
    assert np.allclose(z_scale, np.exp(hidden @ fc22.weight.T + fc22.bias))
    seq = nn.Sequential(nn.Dense(6, 3, dtype=np.float64), nn.Tanh())
    assert np.allclose(seq(x), np.tanh(seq[0](x))) and len(seq) == 2


def test_layer_calls_are_recorded():
    encoder, x = Encoder(), randn(4, 6)
    with Recorder() as recorder:
        z_loc, z_scale = encoder(x)
    msgs = recorder.msgs
    assert all(m["type"] == "call" and "cache" in m for m in msgs)
    assert [type(m["fn"]).__name__ for m in msgs] == [
        "Dense", "Softplus", "Dense", "Sum", "Add", "Dense", "Exp"]
    assert msgs[0]["fn"] is encoder.fc1 and msgs[0]["args"][0] is x
    assert msgs[1]["args"][0] is msgs[0]["value"]  # records link by array identity
    assert msgs[4]["value"] is z_loc and msgs[-1]["value"] is z_scale


def test_backward_over_the_recorded_tape():
    """Read the records backwards (as the ELBO will) and compare with finite differences."""
    encoder = Encoder()
    module_names = {id(m): name for name, m in encoder.named_modules()}
    param_names = [name for name, _ in encoder.named_parameters()]

    def run(x, **params):
        for name in param_names:
            encoder.set_parameter(name, params[name])
        with Recorder() as recorder:
            outputs = encoder(x)
        return outputs, recorder.msgs

    def vjp(cotangent, x, **params):
        (z_loc, z_scale), msgs = run(x, **params)
        grads = {id(z_loc): cotangent[:, :2], id(z_scale): cotangent[:, 2:]}
        param_grads = {}
        for msg in reversed(msgs):
            if id(msg["value"]) not in grads:
                continue
            needs = (True,) * len(msg["args"])  # every input here is x or a traced array
            grad_inputs, grad_params = msg["fn"].backward(msg["cache"], grads[id(msg["value"])], needs)
            for arg, grad in zip(msg["args"], grad_inputs):
                grads[id(arg)] = grads[id(arg)] + grad if id(arg) in grads else grad  # never in place
            prefix = module_names.get(id(msg["fn"]))
            for name, grad in grad_params.items():
                param_grads[f"{prefix}.{name}"] = grad
        return dict(x=grads[id(x)], **param_grads)

    point = dict(x=randn(4, 6), **dict(encoder.named_parameters()))
    check_vjp(lambda **values: np.concatenate(run(**values)[0], axis=1), point, vjp)


def test_layer_contract_errors():
    class NoCache(nn.Module):
        def forward(self, x):
            return x * 2

        def backward(self, cache, grad_y, needs_input_grad):
            return (grad_y * 2,), {}

    with pytest.raises(TypeError, match=r"\(outputs, cache\)"):
        NoCache()(np.ones((2, 3)))
    with pytest.raises(TypeError, match="positionally"):
        nn.Dense(2, 2)(x=np.ones(2))
    with pytest.raises(NotImplementedError, match="composite"):
        Encoder().backward(None, None, ())


# ---------------------------------------------------------------- float32


def test_float32_stability_and_dtype():
    x = np.array([-1e4, -100.0, -20.0, 0.0, 20.0, 100.0, 1e4], dtype=np.float32)
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        for layer in (nn.Softplus(), nn.Softplus(beta=3.0), nn.Sigmoid(), nn.Tanh()):
            y, cache = layer.forward(x)
            (grad_x,), _ = layer.backward(cache, np.ones_like(y), (True,))
            assert y.dtype == grad_x.dtype == np.float32
            assert np.all(np.isfinite(y)) and np.all(np.isfinite(grad_x))
    softplus = nn.Softplus()(x)
    assert softplus[0] == 0 and np.array_equal(softplus[-3:], x[-3:])  # linear above 20, as torch
    sigmoid = nn.Sigmoid()(x)
    assert sigmoid[0] == 0 and sigmoid[-1] == 1
    ref = 1 / (1 + np.exp(-x[2:-2].astype(np.float64)))
    assert np.allclose(sigmoid[2:-2], ref, rtol=1e-6, atol=0)  # accurate in the tails too
