"""The effect system: each handler as context manager, decorator and wrapper; plates."""
import numpy as np
import pytest

import minippl
import minippl.distributions as dist
from minippl import handlers
from minippl.runtime import Messenger, _STACK


def model():
    a = minippl.sample("a", dist.Normal(0.0, 1.0))
    b = minippl.sample("b", dist.Normal(a, 1.0))
    return a, b


def test_sampling_outside_any_handler():
    minippl.set_rng_seed(0)
    a, b = model()
    assert np.shape(a) == () and np.isfinite(b)
    assert minippl.sample("x", dist.Normal(0.0, 1.0), obs=3.0) == 3.0


def test_set_rng_seed_repeats_draws():
    minippl.set_rng_seed(1)
    first = model()
    minippl.set_rng_seed(1)
    assert model() == first


def test_stack_order_top_is_the_innermost_handler():
    seen = []

    class Tag(Messenger):
        def __init__(self, tag):
            super().__init__()
            self.tag = tag

        def process_message(self, msg):
            seen.append(("process", self.tag))

        def postprocess_message(self, msg):
            seen.append(("post", self.tag))

    with Tag("outer"), Tag("inner"):
        assert _STACK[-1].tag == "inner"
        minippl.sample("z", dist.Normal(0.0, 1.0))
    assert seen == [("process", "inner"), ("process", "outer"), ("post", "outer"), ("post", "inner")]
    assert not _STACK


def test_trace_records_sites_in_order_three_ways():
    tr = handlers.trace(model).get_trace()
    assert list(tr.nodes) == ["a", "b"]
    with handlers.trace() as t:
        model()
    assert list(t.trace.nodes) == ["a", "b"]

    @handlers.trace
    def decorated():
        return model()

    decorated()
    assert list(decorated.trace.nodes) == ["a", "b"]


def test_replay_reuses_values_and_the_model_sees_them():
    guide_tr = handlers.trace(model).get_trace()
    replayed = handlers.trace(handlers.replay(model, trace=guide_tr)).get_trace()
    for name in ("a", "b"):
        assert replayed.nodes[name]["value"] is guide_tr.nodes[name]["value"]


def test_block_hide_expose_hide_fn():
    assert list(handlers.trace(handlers.block(model)).get_trace().nodes) == []
    assert list(handlers.trace(handlers.block(model, hide=["a"])).get_trace().nodes) == ["b"]
    assert list(handlers.trace(handlers.block(model, expose=["a"])).get_trace().nodes) == ["a"]
    hide_b = handlers.block(model, hide_fn=lambda msg: msg["name"] == "b")
    assert list(handlers.trace(hide_b).get_trace().nodes) == ["a"]
    with handlers.trace() as t, handlers.block(hide=["b"]):
        model()
    assert list(t.trace.nodes) == ["a"]


def test_seed_three_ways():
    seeded = handlers.seed(model, rng_seed=3)
    assert seeded() == seeded()
    with handlers.seed(rng_seed=3):
        in_block = model()
    assert in_block == seeded()

    @handlers.seed(rng_seed=3)
    def decorated():
        return model()

    assert decorated() == seeded()
    assert handlers.seed(model, rng_seed=4)() != seeded()


def test_innermost_seed_wins():
    with handlers.seed(rng_seed=0):
        with handlers.seed(rng_seed=5):
            inner = model()
    assert inner == handlers.seed(model, rng_seed=5)()


def test_condition_makes_a_site_observed():
    tr = handlers.trace(handlers.condition(model, data={"a": 2.0})).get_trace()
    assert tr.nodes["a"]["value"] == 2.0 and tr.nodes["a"]["is_observed"]
    assert not tr.nodes["b"]["is_observed"]
    with handlers.condition(data={"b": 1.0}):
        assert model()[1] == 1.0


def test_substitute_params():
    def with_param():
        return minippl.param("w", np.zeros(2))

    np.testing.assert_array_equal(handlers.substitute(with_param, data={"w": np.ones(2)})(), np.ones(2))
    out = handlers.substitute(with_param, substitute_fn=lambda msg: np.full(2, 7.0))()
    np.testing.assert_array_equal(out, np.full(2, 7.0))
    np.testing.assert_array_equal(with_param(), np.zeros(2))  # the store is untouched


def test_scale_and_mask_compose_and_change_log_prob_sum():
    x = np.array([0.5, -1.0, 2.0])

    def obs_model():
        with minippl.plate("data", 3):
            minippl.sample("x", dist.Normal(0.0, 1.0), obs=x)

    full = handlers.trace(obs_model).get_trace().log_prob_sum()
    scaled = handlers.trace(handlers.scale(obs_model, scale=2.5)).get_trace().log_prob_sum()
    assert scaled == pytest.approx(2.5 * full)
    keep = np.array([True, False, True])
    masked = handlers.trace(handlers.mask(obs_model, mask=keep)).get_trace().log_prob_sum()
    per_item = -0.5 * x**2 - 0.5 * np.log(2 * np.pi)
    assert masked == pytest.approx(per_item[keep].sum())
    with pytest.raises(ValueError, match="scale must be positive"):
        handlers.scale(obs_model, scale=0.0)


# ---------------------------------------------------------------- plates
def test_plate_broadcasts_and_allocates_dims_from_the_right():
    with handlers.trace() as t:
        with minippl.plate("outer", 3):
            with minippl.plate("inner", 2):
                z = minippl.sample("z", dist.Normal(0.0, 1.0))
    assert z.shape == (2, 3)
    frames = t.trace.nodes["z"]["cond_indep_stack"]
    assert {f.name: f.dim for f in frames} == {"outer": -1, "inner": -2}


def test_plate_with_explicit_dim_and_conflict():
    with minippl.plate("a", 4, dim=-2):
        assert minippl.sample("z", dist.Normal(0.0, 1.0)).shape == (4, 1)
        with pytest.raises(ValueError, match="already uses"):
            with minippl.plate("b", 3, dim=-2):
                pass


def test_plate_mismatch_says_to_event():
    with pytest.raises(ValueError, match=r"to_event\(1\)"):
        with handlers.trace(), minippl.plate("data", 5):
            minippl.sample("x", dist.Normal(np.zeros((5, 3)), 1.0))


def test_subsample_indices_and_true_division_scale():
    with handlers.trace() as t, handlers.seed(rng_seed=0):
        with minippl.plate("data", 10, subsample_size=4) as idx:
            minippl.sample("x", dist.Normal(0.0, 1.0))
    assert idx.shape == (4,) and len(set(idx.tolist())) == 4 and idx.max() < 10
    assert t.trace.nodes["x"]["scale"] == 2.5  # 10 / 4, true division
    assert t.trace.nodes["data"]["type"] == "plate"


def test_subsample_indices_are_replayed_into_the_model():
    def guide():
        with minippl.plate("data", 100, subsample_size=5) as idx:
            return idx

    guide_tr = handlers.trace(guide).get_trace()
    model_idx = handlers.replay(guide, trace=guide_tr)()
    np.testing.assert_array_equal(model_idx, guide_tr.nodes["data"]["value"])


def test_plate_without_subsampling_gives_arange():
    with minippl.plate("data", 4) as idx:
        np.testing.assert_array_equal(idx, np.arange(4))


def test_sequential_plate():
    with handlers.trace() as t:
        for i in minippl.plate("items", 3):
            minippl.sample(f"x_{i}", dist.Normal(0.0, 1.0))
    assert [n for n in t.trace.nodes if n.startswith("x_")] == ["x_0", "x_1", "x_2"]
    assert t.trace.nodes["x_1"]["cond_indep_stack"][0].name == "items"


def test_duplicate_site_names_are_refused():
    def twice():
        minippl.sample("z", dist.Normal(0.0, 1.0))
        minippl.sample("z", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match="used twice"):
        handlers.trace(twice).get_trace()


def test_sample_needs_a_distribution():
    with pytest.raises(TypeError, match="sample site 'z'"):
        minippl.sample("z", 3.0)


def test_deterministic_is_recorded_and_adds_nothing():
    def m():
        z = minippl.sample("z", dist.Normal(0.0, 1.0), obs=1.0)
        minippl.deterministic("double", np.asarray(2 * z))

    tr = handlers.trace(m).get_trace()
    assert tr.nodes["double"]["value"] == 2.0
    assert tr.log_prob_sum() == pytest.approx(-0.5 - 0.5 * np.log(2 * np.pi))


def test_param_init_callable_constraint_and_missing_init():
    from minippl.distributions import constraints

    s = minippl.param("s", lambda: np.array([2.0]), constraint=constraints.positive)
    np.testing.assert_allclose(s, [2.0])
    np.testing.assert_allclose(minippl.get_param_store().get_unconstrained("s"), np.log([2.0]))
    np.testing.assert_allclose(minippl.param("s"), [2.0])  # init is used only once
    with pytest.raises(KeyError, match="no initial value"):
        minippl.param("missing")


HANDLER_FORMS = {
    "trace": (lambda: handlers.trace(), lambda fn: handlers.trace(fn)),
    "replay": (lambda: handlers.replay(trace=REPLAYED), lambda fn: handlers.replay(fn, trace=REPLAYED)),
    "block": (lambda: handlers.block(hide=["a"]), lambda fn: handlers.block(fn, hide=["a"])),
    "seed": (lambda: handlers.seed(rng_seed=1), lambda fn: handlers.seed(fn, rng_seed=1)),
    "condition": (lambda: handlers.condition(data={"a": 0.5}), lambda fn: handlers.condition(fn, data={"a": 0.5})),
    "substitute": (lambda: handlers.substitute(data={"a": 0.25}), lambda fn: handlers.substitute(fn, data={"a": 0.25})),
    "scale": (lambda: handlers.scale(scale=3.0), lambda fn: handlers.scale(fn, scale=3.0)),
    "mask": (lambda: handlers.mask(mask=False), lambda fn: handlers.mask(fn, mask=False)),
}
REPLAYED = None


@pytest.mark.parametrize("name", sorted(HANDLER_FORMS))
def test_every_handler_is_a_context_manager_a_decorator_and_a_wrapper(name):
    global REPLAYED
    REPLAYED = handlers.trace(handlers.seed(model, rng_seed=99)).get_trace()  # unlike record()'s draws
    make, wrap = HANDLER_FORMS[name]

    def record(run):
        with handlers.trace() as t, handlers.seed(rng_seed=0):
            run()
        return {n: (float(s["value"]), s["scale"], s["is_observed"], None if s["mask"] is None else bool(s["mask"]))
                for n, s in t.trace.nodes.items()}

    def in_block():
        with make():
            model()

    @make()
    def decorated():
        model()

    wrapped = record(lambda: wrap(model)())
    assert record(in_block) == wrapped
    assert record(decorated) == wrapped
    assert wrapped != record(model) or name == "trace"  # the handler did something
