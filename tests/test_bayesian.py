"""PyroModule / PyroParam / PyroSample: site names, one value per call, what handlers see,
gradients through Bayesian layers (finite differences), mixing with point-estimated layers,
and saving the module state with the param store."""
import warnings

import numpy as np
import pytest
from finite_diff import check_vjp

import minippl
import minippl.distributions as dist
from minippl import handlers, nn
from minippl.distributions import constraints
from minippl.infer import SVI, Trace_ELBO, check_gradients
from minippl.infer.autoguide import AutoNormal
from minippl.nn import Param, PyroModule, PyroParam, PyroSample, Sample
from minippl.nn import functional as F
from minippl.optim import Adam

X = np.random.default_rng(0).standard_normal((6, 2))
Y = np.random.default_rng(1).standard_normal(6)


def bayesian_linear(in_features, out_features, bias=True):
    layer = PyroModule[nn.Linear](in_features, out_features, bias=bias)
    layer.weight = PyroSample(dist.Normal(0.0, 1.0).expand([out_features, in_features]).to_event(2))
    if bias:
        layer.bias = PyroSample(dist.Normal(0.0, 1.0).expand([out_features]).to_event(1))
    return layer


class Net(PyroModule):
    """Bayesian fc1, a point-estimated plain fc2, a half-Bayesian fc3 (plain bias), a PyroParam noise."""

    def __init__(self, name="net"):
        super().__init__(name=name)
        self.fc1 = bayesian_linear(2, 3)
        self.fc2 = nn.Linear(3, 3, dtype=np.float64)
        self.fc3 = PyroModule[nn.Linear](3, 1, dtype=np.float64)
        self.fc3.weight = PyroSample(dist.Normal(0.0, 1.0).expand([1, 3]).to_event(2))
        self.noise = PyroParam(np.array(0.5), constraints.positive)

    def forward(self, x, y=None):
        h = nn.functional.tanh(self.fc2(nn.functional.tanh(self.fc1(x))))
        mean = F.sum(self.fc3(h), axis=-1)
        with minippl.plate("data", x.shape[0]):
            return minippl.sample("obs", dist.Normal(mean, self.noise), obs=y)


# ---------------------------------------------------------------- names and caching
def test_sites_are_named_by_module_path_and_kinds_are_right():
    tr = handlers.trace(Net()).get_trace(X, Y)
    kinds = {name: site["type"] for name, site in tr.nodes.items()}
    assert kinds == {
        "net.fc2$$$weight": "param", "net.fc2$$$bias": "param",  # plain child: minippl.module, as Pyro
        "net.fc1.weight": "sample", "net.fc1.bias": "sample",
        "net.fc3.bias": "param", "net.fc3.weight": "sample",  # a plain array of a PyroModule: a param
        "data": "plate", "net.noise": "param", "obs": "sample",
    }
    assert tr.nodes["net.fc1.weight"]["value"].shape == (3, 2)


def test_default_root_name_and_sequential_children():
    seq = PyroModule[nn.Sequential](bayesian_linear(2, 3), nn.Tanh(), bayesian_linear(3, 1))
    assert isinstance(seq, nn.Sequential) and isinstance(seq, PyroModule)
    names = [n for n, s in handlers.trace(seq).get_trace(X).nodes.items() if s["type"] == "sample"]
    assert names == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert PyroModule[nn.Linear] is PyroModule[nn.Linear]  # the mixin class is made once
    assert PyroModule[nn.Linear].__name__ == "PyroDense"


class Reader(PyroModule):
    def __init__(self):
        super().__init__()
        self.w = PyroSample(dist.Normal(0.0, 1.0))

    def forward(self):
        return self.w, self.w  # two reads within one call


def test_one_value_per_call_fresh_values_per_call():
    reader = Reader()
    first, again = reader()
    assert first is again
    second, _ = reader()
    assert second != first
    assert reader.w != reader.w  # outside a call every read is its own draw


def test_handlers_see_the_sites_condition_seed_replay():
    layer = bayesian_linear(2, 1)
    weight, bias = np.array([[2.0, -1.0]]), np.array([0.5])
    out = handlers.condition(layer, data={"weight": weight, "bias": bias})(X)
    np.testing.assert_allclose(out, X @ weight.T + bias)
    seeded = [handlers.seed(layer, rng_seed=3)(X) for _ in range(2)]
    np.testing.assert_array_equal(*seeded)
    tr = handlers.trace(layer).get_trace(X)
    replayed = handlers.replay(layer, trace=tr)(X)
    np.testing.assert_allclose(replayed, X @ tr.nodes["weight"]["value"].T + tr.nodes["bias"]["value"])


def test_param_attribute_is_constrained_stored_by_path_and_lazy():
    calls = []

    class Scaled(PyroModule):
        def __init__(self):
            super().__init__(name="m")
            self.scale = Param(lambda: calls.append(1) or np.array([1.0, 2.0]), constraints.positive)

        def forward(self):
            return self.scale

    m = Scaled()
    assert not calls  # lazy: nothing made until read
    np.testing.assert_allclose(m(), [1.0, 2.0])
    store = minippl.get_param_store()
    np.testing.assert_allclose(store.get_unconstrained("m.scale"), np.log([1.0, 2.0]))
    assert store.get_constraint("m.scale") == constraints.positive
    m()
    assert len(calls) == 1  # the store holds it now
    assert Param is PyroParam and Sample is PyroSample


def test_hierarchical_prior_reads_other_attributes_and_trains():
    class Hier(PyroModule):
        def __init__(self):
            super().__init__()
            self.prior_scale = PyroParam(np.array(0.7), constraints.positive)
            self.w = PyroSample(lambda self: dist.Normal(0.0, self.prior_scale).expand([2]).to_event(1))

        def forward(self, x, y=None):
            mean = F.matmul(x, self.w)
            with minippl.plate("data", x.shape[0]):
                minippl.sample("obs", dist.Normal(mean, 1.0), obs=y)

    model = Hier()
    tr = handlers.trace(model).get_trace(X, Y)
    assert [n for n in tr.nodes] == ["prior_scale", "w", "data", "obs"]
    check_gradients(model, AutoNormal(model), X, Y)


# ---------------------------------------------------------------- gradients
def test_bayesian_layer_backward_matches_finite_differences():
    layer = bayesian_linear(2, 3)

    def record(weight, bias, x):
        data = {"weight": weight, "bias": bias}
        tr = handlers.trace(handlers.condition(layer, data=data)).get_trace(x)
        return next(m for m in tr.records if m["type"] == "call")

    def forward(weight, bias, x):
        return record(weight, bias, x)["value"]

    def vjp(cotangent, weight, bias, x):
        msg = record(weight, bias, x)
        assert msg["param_arrays"]["weight"] is weight  # the tape maps grads to the sampled value
        (grad_x,), grads = layer.backward(msg["cache"], cotangent, (True,))
        return {"x": grad_x, **grads}

    rng = np.random.default_rng(2)
    check_vjp(forward, {"weight": rng.standard_normal((3, 2)), "bias": rng.standard_normal(3),
                        "x": rng.standard_normal((4, 2))}, vjp)


def test_backward_reuses_the_sampled_values_and_draws_nothing():
    layer = bayesian_linear(2, 3)
    tr = handlers.trace(layer).get_trace(X)
    msg = next(m for m in tr.records if m["type"] == "call")
    state = minippl.backend.global_rng().bit_generator.state
    with handlers.trace() as outer:
        _, grads = layer.backward(msg["cache"], np.ones((6, 3)), (False,))
    assert not outer.trace.records  # no sample site, no draw
    assert minippl.backend.global_rng().bit_generator.state == state
    np.testing.assert_allclose(grads["bias"], np.full(3, 6.0))


def test_gradients_reach_the_guide_through_mixed_layers():
    net = Net()
    check_gradients(net, AutoNormal(net), X, Y)


def test_svi_trains_bayesian_and_point_estimated_parts_together():
    net = Net()
    guide = AutoNormal(net)
    svi = SVI(net, guide, Adam({"lr": 0.05}), Trace_ELBO())
    svi.step(X, Y)
    store = minippl.get_param_store()
    before = {name: np.array(store.get_unconstrained(name)) for name in store.keys()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "not in the param store, so they will not be trained"
        for _ in range(5):
            svi.step(X, Y)
    for name in ["net.fc2$$$weight", "net.fc3.bias", "net.noise", "AutoNormal.locs.net.fc1.weight",
                 "AutoNormal.scales.net.fc3.weight"]:
        assert not np.allclose(store.get_unconstrained(name), before[name]), name
    assert net.fc2.weight is store.get_unconstrained("net.fc2$$$weight")  # shared, not copied


def test_state_saves_and_loads_with_the_param_store(tmp_path):
    net = Net()
    guide = AutoNormal(net)
    svi = SVI(net, guide, Adam({"lr": 0.05}), Trace_ELBO())
    for _ in range(3):
        svi.step(X, Y)
    path = minippl.get_param_store().save(tmp_path / "params")
    with handlers.seed(rng_seed=5):
        expected = net(X)
    medians = guide.median()

    minippl.clear_param_store()
    fresh = Net()
    minippl.get_param_store().load(path)
    fresh_guide = AutoNormal(fresh)
    with handlers.seed(rng_seed=5):
        np.testing.assert_allclose(fresh(X), expected)  # the plain layers were rebound to the loaded arrays
    fresh_guide(X, Y)
    for name, value in medians.items():
        np.testing.assert_allclose(fresh_guide.median()[name], value)


# ---------------------------------------------------------------- details and errors
def test_repr_shows_declarations_and_draws_nothing():
    net = Net()
    with handlers.trace() as tr:
        text = repr(net)
    assert not tr.trace.records
    assert "(weight): PyroSample(prior=Independent(" in text and "(noise): PyroParam(" in text
    assert "PyroDense(in_features=2, out_features=3, bias=True" in text


def test_reassigning_and_deleting_attributes():
    layer = PyroModule[nn.Linear](2, 1, dtype=np.float64)
    assert [n for n, _ in layer.named_parameters()] == ["weight", "bias"]
    layer.bias = PyroSample(dist.Normal(0.0, 1.0).expand([1]).to_event(1))
    assert [n for n, _ in layer.named_parameters()] == ["weight"]
    layer.bias = np.zeros(1)  # a plain array again: a point estimate
    assert [n for n, _ in layer.named_parameters()] == ["weight", "bias"]
    layer.weight = PyroSample(dist.Normal(0.0, 1.0).expand([1, 2]).to_event(2))
    del layer.weight
    with pytest.raises(AttributeError, match="no attribute 'weight'"):
        layer.weight


def test_clear_errors():
    with pytest.raises(TypeError, match="PyroSample needs a distribution"):
        PyroSample(3.0)
    with pytest.raises(TypeError, match="Module subclass"):
        PyroModule[int]

    class Bad(PyroModule):
        def __init__(self):
            super().__init__()
            self.w = PyroSample(lambda self: 1.0)

    with pytest.raises(TypeError, match="prior of PyroSample attribute 'w' returned float"):
        Bad().w

    class Early(PyroModule):
        def __init__(self):
            self.w = PyroSample(dist.Normal(0.0, 1.0))

    with pytest.raises(AttributeError, match="super"):
        Early()
