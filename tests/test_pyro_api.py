"""The primitives and API a Pyro user reaches for: factor, plate_stack, condition and do, the
package's attributes, set_rng_seed, the param store's Pyro methods, Pyro-style custom handlers
(``_pyro_sample``...), and Predictive's Pyro shapes."""
import random
import subprocess
import sys

import numpy as np
import pytest

import minippl
import minippl.distributions as dist
from minippl import handlers
from minippl.distributions import constraints
from minippl.infer import Predictive, Trace_ELBO, check_gradients
from minippl.runtime import Messenger


# ------------------------------------------------------------------ 1. factor
def test_factor_adds_its_log_factor_to_the_log_joint():
    def model():
        minippl.sample("z", dist.Normal(0.0, 1.0), obs=0.0)
        minippl.factor("penalty", -2.5)
        with minippl.plate("N", 3):
            minippl.factor("per_item", np.array([-1.0, -2.0, -3.0]))

    tr = handlers.trace(model).get_trace()
    site = tr.nodes["penalty"]
    assert site["is_observed"] and site["value"].shape == (0,) and site["infer"]["is_auxiliary"]
    assert tr.nodes["per_item"]["value"].shape == (3, 0)
    assert tr.log_prob_sum() == pytest.approx(-0.5 * np.log(2 * np.pi) - 2.5 - 6.0)


def test_factor_in_a_subsampling_plate_is_scaled_and_broadcast():
    def model():
        with minippl.plate("N", 10, subsample_size=2):
            minippl.factor("f", -1.0)  # one factor per item, scaled by 10 / 2

    assert handlers.trace(model).get_trace().log_prob_sum() == pytest.approx(-10.0)


def test_factor_gradient_reaches_a_param_exactly():
    def model():
        w = minippl.param("w", np.array(1.0))
        minippl.factor("f", -0.5 * (w - 3.0) ** 2)  # loss = 0.5 (w - 3)^2

    def guide():
        pass

    loss, grads, _ = Trace_ELBO().loss_and_grads(model, guide)
    assert loss == pytest.approx(2.0)
    np.testing.assert_allclose(grads["w"], -2.0)  # d loss / dw = w - 3
    check_gradients(model, guide)


def test_factor_gradient_through_a_reparameterised_draw():
    def model():
        z = minippl.sample("z", dist.Normal(0.0, 1.0))
        minippl.factor("soft_constraint", -4.0 * (z - 1.0) ** 2)

    def guide():
        loc = minippl.param("loc", np.array(0.3))
        scale = minippl.param("scale", np.array(0.7), constraint=constraints.positive)
        minippl.sample("z", dist.Normal(loc, scale))

    report = check_gradients(model, guide)
    assert set(report) == {"loc", "scale"}


def test_factor_refuses_what_is_not_a_log_density():
    with pytest.raises(TypeError, match="factor 'f': log_factor must be a real number or array"):
        minippl.factor("f", "high")
    with pytest.raises(TypeError, match="log_factor must be"):
        minippl.factor("f", np.array([1j]))


# ------------------------------------------------------------------ 2. plate_stack
def test_plate_stack_enters_one_plate_per_size_from_the_right():
    with handlers.trace() as tr, minippl.plate_stack("batch", (2, 3)):
        x = minippl.sample("x", dist.Normal(0.0, 1.0))
    assert x.shape == (2, 3)
    frames = {f.name: f.dim for f in tr.trace.nodes["x"]["cond_indep_stack"]}
    assert frames == {"batch_0": -1, "batch_1": -2}
    assert tr.trace.nodes["batch_0"]["args"][0] == 3

    with handlers.trace() as tr, minippl.plate_stack("b", [4], rightmost_dim=-2):
        x = minippl.sample("x", dist.Normal(0.0, 1.0))
    assert x.shape == (4, 1) and tr.trace.nodes["x"]["cond_indep_stack"][0].dim == -2
    with pytest.raises(ValueError, match="rightmost_dim must be a negative int"):
        with minippl.plate_stack("b", [4], rightmost_dim=0):
            pass


# ------------------------------------------------------------------ 3. condition and do
def chain():
    z = minippl.sample("z", dist.Normal(0.0, 1.0))
    return minippl.sample("x", dist.Normal(z, 0.01))


def test_condition_and_do_are_top_level():
    assert minippl.condition is handlers.condition and minippl.do is handlers.do
    assert minippl.condition(chain, data={"x": 2.0})() == 2.0


def test_do_sets_the_value_downstream_and_keeps_a_fresh_draw_of_the_site():
    with handlers.trace() as tr, handlers.seed(rng_seed=0):
        x = minippl.do(chain, data={"z": 5.0})()
    assert abs(x - 5.0) < 0.1  # x follows the intervention
    nodes = tr.trace.nodes
    assert list(nodes) == ["z", "x"]  # the intervened site "z__CF" is hidden from the handlers outside
    assert nodes["z"]["value"] != 5.0 and not nodes["z"]["is_observed"]  # the fresh draw
    expected = dist.Normal(0.0, 1.0).log_prob(nodes["z"]["value"]) + dist.Normal(5.0, 0.01).log_prob(x)
    assert tr.trace.log_prob_sum() == pytest.approx(float(expected))


def test_a_handler_inside_do_sees_the_intervened_site():
    with handlers.seed(rng_seed=0), handlers.trace() as tr:
        minippl.do(handlers.trace(chain), data={"z": 5.0})()
    assert "z" in tr.trace.nodes  # outside: the fresh draw only
    inner = handlers.trace(chain)
    minippl.do(inner, data={"z": 5.0})()
    assert inner.trace.nodes["z__CF"]["value"] == 5.0 and inner.trace.nodes["z__CF"]["is_observed"]


def test_do_inside_a_subsampling_plate_counts_the_plate_once():
    def model():
        with minippl.plate("N", 10, subsample_size=5):
            return minippl.do(lambda: minippl.sample("z", dist.Normal(0.0, 1.0)), data={"z": np.zeros(5)})()

    tr = handlers.trace(model).get_trace()
    assert len(tr.nodes["z"]["cond_indep_stack"]) == 1 and tr.nodes["z"]["scale"] == 2.0

    def plated_inside():
        with minippl.plate("N", 10, subsample_size=5):
            return minippl.sample("z", dist.Normal(0.0, 1.0))

    tr = handlers.trace(minippl.do(plated_inside, data={"z": np.zeros(5)})).get_trace()
    assert len(tr.nodes["z"]["cond_indep_stack"]) == 1 and tr.nodes["z"]["scale"] == 2.0


def test_do_and_condition_compose_into_a_counterfactual():
    # observe x, intervene on z: x keeps its observed value, z's fresh draw is the one conditioned
    model = minippl.condition(minippl.do(chain, data={"z": 5.0}), data={"x": 1.0, "z": 0.5})
    tr = handlers.trace(model).get_trace()
    assert tr.nodes["z"]["value"] == 0.5 and tr.nodes["x"]["value"] == 1.0


def test_do_errors_are_clear():
    with pytest.raises(ValueError, match="do needs data"):
        minippl.do(chain)
    with pytest.raises(TypeError, match="intervention at site 'z' must be a number or an array"):
        minippl.do(chain, data={"z": "five"})()


# ------------------------------------------------------------------ 4. the package's attributes
def test_import_minippl_alone_gives_the_subpackages():
    code = ("import minippl; minippl.infer.SVI; minippl.infer.Trace_ELBO; minippl.optim.Adam; "
            "minippl.handlers.trace; minippl.distributions.Normal; minippl.nn.Linear; print('ok')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


# ------------------------------------------------------------------ 5. set_rng_seed
def test_set_rng_seed_also_seeds_numpy_legacy_and_python_random():
    minippl.set_rng_seed(3)
    first = (np.random.rand(), random.random(), minippl.sample("z", dist.Normal(0.0, 1.0)))
    minippl.set_rng_seed(3)
    assert (np.random.rand(), random.random(), minippl.sample("z", dist.Normal(0.0, 1.0))) == first
    minippl.set_rng_seed(2**40)  # beyond NumPy's legacy 32-bit seeds: still accepted


# ------------------------------------------------------------------ 6. the param store
def test_param_store_pyro_methods():
    store = minippl.get_param_store()
    loc = minippl.param("loc", np.zeros(2))
    minippl.param("scale", np.ones(2), constraint=constraints.positive)
    assert [v.tolist() for v in store.values()] == [[0.0, 0.0], [1.0, 1.0]]

    assert store.get_param("loc") is loc
    assert store.get_param("loc", np.ones(2)) is loc  # an existing param ignores the init
    new = store.get_param("rate", np.array(2.0), constraint=constraints.positive, event_dim=0)
    assert float(new) == pytest.approx(2.0) and store.get_constraint("rate") == constraints.positive
    with pytest.raises(KeyError, match="no param named 'missing'"):
        store.get_param("missing")

    with pytest.warns(DeprecationWarning, match="use .keys"):
        assert list(store.get_all_param_names()) == ["loc", "scale", "rate"]

    assert set(store.match("sc|ra")) == {"scale", "rate"} and set(store.match("oc")) == set()  # re.match
    np.testing.assert_allclose(store.match("scale")["scale"], [1.0, 1.0])


def test_replace_param_checks_the_old_value():
    store = minippl.get_param_store()
    minippl.param("scale", np.ones(2), constraint=constraints.positive)
    with pytest.warns(DeprecationWarning):
        store.replace_param("scale", np.full(2, 3.0), store["scale"])
    np.testing.assert_allclose(store["scale"], [3.0, 3.0])
    assert store.get_constraint("scale") == constraints.positive  # the constraint is kept
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="old_param is not the param's current"):
        store.replace_param("scale", np.ones(2), np.ones(2))


# ------------------------------------------------------------------ 7. Pyro-style custom handlers
class LogJointMessenger(Messenger):
    """The handler of Pyro's Poutine tutorial, as written there (no super().__init__())."""

    def __init__(self, cond_data):
        self.data = cond_data

    def __enter__(self):
        self.logp = 0.0
        return super().__enter__()

    def _pyro_sample(self, msg):
        if msg["name"] in self.data:
            msg["value"] = self.data[msg["name"]]
            msg["done"] = True

    def _pyro_post_sample(self, msg):
        self.logp = self.logp + float((msg["scale"] * msg["fn"].log_prob(msg["value"])).sum())


def test_the_poutine_tutorial_log_joint_handler():
    with LogJointMessenger({"z": 0.5, "x": 1.0}) as joint:
        chain()
    expected = dist.Normal(0.0, 1.0).log_prob(0.5) + dist.Normal(0.5, 0.01).log_prob(1.0)
    assert joint.logp == pytest.approx(float(expected))
    # used as a wrapper too
    wrapped = LogJointMessenger({"z": 0.5, "x": 1.0})(chain)
    assert wrapped() == 1.0


class ScaleSamples(Messenger):
    def __init__(self, fn=None, factor=2.0):
        super().__init__(fn)
        self.factor = factor

    def _pyro_sample(self, msg):
        msg["scale"] = self.factor * msg["scale"]


class RecordNames(Messenger):
    def __enter__(self):
        self.names = []
        return super().__enter__()

    def _pyro_post_sample(self, msg):
        self.names.append(("sample", msg["name"]))

    def _pyro_param(self, msg):
        self.names.append(("param", msg["name"]))


def test_pyro_style_methods_are_dispatched_by_message_type():
    def model():
        loc = minippl.param("loc", np.array(0.0))
        minippl.sample("z", dist.Normal(loc, 1.0), obs=1.0)

    plain = handlers.trace(model).get_trace().log_prob_sum()
    with handlers.trace() as tr, ScaleSamples(factor=3.0), RecordNames() as names:
        model()
    assert tr.trace.log_prob_sum() == pytest.approx(3.0 * plain)
    assert names.names == [("param", "loc"), ("sample", "z")]
    loss = Trace_ELBO().loss(ScaleSamples(model, factor=3.0), lambda: None)
    assert loss == pytest.approx(-3.0 * plain)


def test_a_handler_with_both_styles_runs_the_minipyro_method_outside():
    seen = []

    class Both(Messenger):
        def process_message(self, msg):
            seen.append("process_message")

        def _pyro_sample(self, msg):
            seen.append("_pyro_sample")

        def _pyro_post_sample(self, msg):
            seen.append("_pyro_post_sample")

        def postprocess_message(self, msg):
            seen.append("postprocess_message")

    with Both():
        minippl.sample("z", dist.Normal(0.0, 1.0))
    assert seen == ["process_message", "_pyro_sample", "_pyro_post_sample", "postprocess_message"]


# ------------------------------------------------------------------ 8. Predictive's Pyro shapes
def regression(x, y=None):
    a = minippl.sample("a", dist.Normal(0.0, 1.0))
    b = minippl.sample("b", dist.Normal(np.zeros(2), 1.0).to_event(1))
    with minippl.plate("N", len(x)):
        minippl.sample("y", dist.Normal(a + b[..., 0] * x, 1.0), obs=y)
    return a


@pytest.mark.parametrize("parallel", [False, True])
def test_predictive_pyro_shapes(parallel):
    x = np.linspace(0.0, 1.0, 3)
    sites = ["a", "b", "y"]
    ours = Predictive(regression, num_samples=4, parallel=parallel, return_sites=sites)(x)
    pyro = Predictive(regression, num_samples=4, parallel=parallel, return_sites=sites, pyro_shapes=True)(x)
    assert {k: v.shape for k, v in ours.items()} == {"a": (4,), "b": (4, 2), "y": (4, 3)}
    assert {k: v.shape for k, v in pyro.items()} == {"a": (4, 1), "b": (4, 1, 2), "y": (4, 3)}

    def guide(x, y=None):
        minippl.sample("a", dist.Normal(minippl.param("a_loc", np.array(0.0)), 1.0))
        minippl.sample("b", dist.Normal(np.zeros(2), 1.0).to_event(1))

    out = Predictive(regression, guide=guide, num_samples=4, parallel=parallel, pyro_shapes=True)(x)
    assert {k: v.shape for k, v in out.items()} == {"a": (4, 1), "b": (4, 1, 2), "y": (4, 3)}
