"""Gradients that used to be lost without a word, each refused or kept now.

Refused where it happens, naming the layer and the fix: a layer's forward computing with a traced value it was not
given as an input, a Bayesian layer's backward reading its random attribute (a fresh draw, not the one forward
used), a layer returning a list or a number. Kept: a composite's arrays, and a child's that it reads directly
(tied weights), reach the param store (float64 finite differences); arrays not in the store warn. And the tape:
an error inside a backward names its record; one dict of produced values per step, one message for a value kept
from an earlier run.
"""
import warnings

import numpy as np
import pytest
from finite_diff import check_vjp

import minippl
import minippl.distributions as dist
from minippl import handlers, nn, traced
from minippl.backend import sum_to_shape
from minippl.infer import Trace_ELBO, tape
from minippl.infer.autoguide import AutoNormal
from minippl.nn import PyroModule, PyroSample
from minippl.traced import LostGradientError, Traced

X = np.array([[1.0, -2.0], [0.5, 3.0], [-1.5, 0.25]])


def observe(value):
    """The model's only observation: -log N(0 | value, 1), so d loss / d value = value."""
    minippl.sample("obs", dist.Normal(value, 1.0).to_event(np.ndim(value)), obs=np.zeros(np.shape(value)))


def no_guide():
    pass


# ---------------------------------------------------------------- a layer computes with its inputs only
class Shift(nn.Module):
    """y = x + s, both inputs: the right way to use a value computed outside the layer."""

    def forward(self, x, s):
        return x + s, np.shape(s)

    def backward(self, s_shape, grad_y, needs_input_grad):
        # dy/dx = 1 ; dy/ds = 1, summed over the broadcast dims
        return (grad_y if needs_input_grad[0] else None,
                sum_to_shape(grad_y, s_shape) if needs_input_grad[1] else None), {}


USES = {  # how a forward may compute with a traced value it holds as an attribute
    "x + s": lambda x, s: x + s,
    "s * x": lambda x, s: s * x,
    "np.exp(s)": lambda x, s: x * np.exp(s),
    "np.sum(s)": lambda x, s: x + np.sum(s),
    "s.sum()": lambda x, s: x + s.sum(),
    "s[0]": lambda x, s: x + s[0],
    "s.cumprod()": lambda x, s: x + s.cumprod(),
    "float(s[0])": lambda x, s: x + float(s[0]),
    "np.asarray(s)": lambda x, s: x + np.asarray(s),
}


@pytest.mark.parametrize("use", list(USES))
def test_a_layer_forward_using_a_traced_value_it_was_not_given_raises(use):
    class Peeks(nn.Module):
        def forward(self, x):
            return USES[use](x, self.s), None  # self.s: a param read, set from outside (not an input)

        def backward(self, cache, grad_y, needs_input_grad):
            return (grad_y if needs_input_grad[0] else None,), {}

    layer = Peeks()

    def model():
        layer.s = minippl.param("s", np.array([0.5, 1.5]))
        observe(layer(X))

    with pytest.raises(LostGradientError, match=r"Peeks\.forward used a value computed from param 's' that it was "
                                                r"not given as an input.*pass it as an input to the layer, or "
                                                r"compute it outside the layer"):
        Trace_ELBO().loss_and_grads(model, no_guide)


def test_a_value_passed_as_an_input_gets_its_gradient_and_untraced_values_compute_freely():
    layer = Shift()

    def model():
        observe(layer(X, minippl.param("s", np.array([0.5, 1.5]))))

    _, grads, _ = Trace_ELBO().loss_and_grads(model, no_guide)
    np.testing.assert_allclose(grads["s"], (X + [0.5, 1.5]).sum(axis=0))  # d loss/ds = sum of y = x + s

    class HoldsADraw(nn.Module):  # a value with no gradient (a discrete draw) may be used anywhere
        def forward(self, x):
            return x * self.k, None

        def backward(self, cache, grad_y, needs_input_grad):
            return (grad_y * 2.0 if needs_input_grad[0] else None,), {}

    holder = HoldsADraw()
    with handlers.trace(), traced.recording():
        holder.k = traced.wrap(np.array(2.0))  # traced, no root
        np.testing.assert_array_equal(traced.unwrap(holder(traced.wrap(X, "param 'x'"))), 2 * X)
    leftover = Traced(np.array([0.5, 1.5]), "param 's'")  # outside a gradient run, nothing is refused
    with handlers.trace():
        np.testing.assert_array_equal(Shift()(X, leftover), X + [0.5, 1.5])


# ---------------------------------------------------------------- a backward reads only its cache
class Scale(nn.Module):
    """y = w * x: backward reads w from its cache."""

    def __init__(self):
        super().__init__()
        self.w = np.array([1.0, 2.0])

    def forward(self, x):
        return x * self.w, (x, self.w)

    def backward(self, cache, grad_y, needs_input_grad):
        x, w = cache
        # dy/dx = w ; dy/dw = x, summed over the batch
        return (grad_y * w if needs_input_grad[0] else None,), {"w": (grad_y * x).sum(axis=0)}


class PeekingScale(Scale):
    def backward(self, cache, grad_y, needs_input_grad):
        x, _ = cache
        w = self.w  # wrong: for a Bayesian layer, a new draw, not the w that forward used
        return (grad_y * w if needs_input_grad[0] else None,), {"w": (grad_y * x).sum(axis=0)}


@pytest.mark.parametrize("layer_class", [Scale, PeekingScale])
def test_a_bayesian_layer_whose_backward_reads_its_random_attribute_raises(layer_class):
    layer = PyroModule[layer_class]()
    layer.w = PyroSample(dist.Normal(0.0, 1.0).expand([2]).to_event(1))

    def model():
        observe(layer(X))

    guide = AutoNormal(model)
    if layer_class is Scale:
        Trace_ELBO().loss_and_grads(model, guide)  # reading only its cache: fine
        return
    with pytest.raises(RuntimeError) as info:
        Trace_ELBO().loss_and_grads(model, guide)
    message = str(info.value)
    assert "the backward of a recorded PyroPeekingScale raised RuntimeError" in message
    assert "PyroPeekingScale.backward read self.w; a backward reads only its cache" in message
    assert "put w in the cache in forward" in message


def test_an_error_inside_a_backward_names_its_record():
    class Broken(nn.Module):
        def forward(self, x):
            return 2 * x, {}

        def backward(self, cache, grad_y, needs_input_grad):
            return (grad_y * cache["slope"],), {}  # forgot to cache it

    def model():
        observe(Broken()(minippl.param("p", np.ones(2))))

    with pytest.raises(RuntimeError, match=r"the backward of a recorded Broken raised KeyError: 'slope'") as info:
        Trace_ELBO().loss_and_grads(model, no_guide)
    assert isinstance(info.value.__cause__, KeyError)  # chained: the traceback shows the backward's line too


# ---------------------------------------------------------------- a layer's outputs
@pytest.mark.parametrize("outputs, kind", [(lambda y: [y], "list"), (lambda y: float(y.sum()), "float"),
                                           (lambda y: (y, [y]), "tuple")])
def test_a_layer_returning_a_list_or_a_number_raises(outputs, kind):
    class Listy(nn.Module):
        def forward(self, x):
            return outputs(2 * x), None

        def backward(self, cache, grad_y, needs_input_grad):
            return (2 * grad_y,), {}

    def model():
        observe(np.asarray(Listy()(minippl.param("p", np.ones(2)))).sum())

    match = rf"Listy\.forward returned a {kind} as its outputs: return an array or a tuple of arrays"
    with pytest.raises(TypeError, match=match):
        Trace_ELBO().loss_and_grads(model, no_guide)
    with pytest.raises(TypeError, match=match):  # the same rule outside any handler
        Listy()(np.ones(2))


# ---------------------------------------------------------------- composites: their arrays and their children's
class Tied(nn.Module):
    """A composite with an array of its own, reading its child's weight directly too (tied weights)."""

    def __init__(self):
        super().__init__()
        self.enc = nn.Dense(2, 2, dtype=np.float64)
        self.gain = np.array([1.5, -0.5])

    def forward(self, x):
        return self.enc(x) * self.gain + x @ self.enc.weight.T  # x: plain data


class Outer(nn.Module):
    """A composite two levels up, reading its grandchild's bias directly."""

    def __init__(self):
        super().__init__()
        self.inner = Tied()

    def forward(self, x):
        return self.inner(x) + np.tanh(self.inner.enc.bias)


def test_arrays_a_composite_reads_directly_reach_the_param_store():
    net = Outer()
    names = [name for name, _ in net.named_parameters()]
    assert names == ["inner.gain", "inner.enc.weight", "inner.enc.bias"]

    def model():
        minippl.module("net", net)
        observe(net(X))

    def at(params):
        minippl.clear_param_store()  # so that minippl.module stores the arrays set here
        for name, value in params.items():
            net.set_parameter(name, value)

    def loss(**params):
        at(params)
        return np.asarray(Trace_ELBO().loss(model, no_guide))

    def vjp(cotangent, **params):
        at(params)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # every array is registered: no warning
            _, grads, _ = Trace_ELBO().loss_and_grads(model, no_guide)
        return {name: cotangent * grads[f"net$$${name}"] for name in names}

    check_vjp(loss, dict(net.named_parameters()), vjp)
    # afterwards the modules hold their plain arrays, and the Dense layer computed on them
    assert all(type(array) is np.ndarray for _, array in net.named_parameters())
    with handlers.trace() as tr, traced.recording():
        minippl.module("net", net)
        net(X)
    dense = next(m for m in tr.trace.records if m["type"] == "call" and m["fn"] is net.inner.enc)
    assert dense["param_arrays"]["weight"] is net.inner.enc.weight and dense["cache"].weight is net.inner.enc.weight


def test_a_composite_whose_own_arrays_are_not_in_the_param_store_warns():
    net = Tied()

    def model(register):
        if register:
            minippl.module("net", net)
        observe(net(minippl.param("x", X)))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Trace_ELBO().loss_and_grads(model, lambda register: None, False)
    said = [str(w.message) for w in caught]
    assert any("parameters of a Tied module are used in a gradient computation but are not in the param store, so "
               "they will not be trained: register the network with minippl.module" in m for m in said), said
    assert any("parameters of a Dense module" in m for m in said), said  # the tape's, for its layer: the same
    minippl.clear_param_store()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Trace_ELBO().loss_and_grads(model, lambda register: None, True)


# ---------------------------------------------------------------- the tape's messages
def test_a_value_of_an_earlier_run_is_refused_by_the_tape_with_the_structural_checks_message():
    def guide():
        minippl.sample("z", dist.Normal(minippl.param("loc", np.array(0.5)), 1.0))

    with traced.recording():
        guide_trace = handlers.trace(handlers.seed(guide, rng_seed=0)).get_trace()
    produced = tape.produced_by(guide_trace, handlers.Trace())
    kept = Traced(np.array(1.0), "param 'loc'")  # as if kept from an earlier step
    with pytest.raises(LostGradientError, match=r"a record uses a value computed from param 'loc' in an earlier run"
                                                r".*read the param or sample the site again in each run"):
        tape.GradientTape(produced).is_traced(kept)
