"""Property-based tests (hypothesis): random shapes and parameters, float64 oracles.

For shapes and arguments drawn at random: every distribution's log_prob matches its closed
form computed in float64; every hand-written VJP (distributions, KL, constraint transforms,
layers) matches a float64 finite difference; every constraint transform round-trips; and the
effect handlers compose as documented (condition beats replay in either order, seed repeats,
block hides, scale multiplies). Example counts are kept modest so the file runs in seconds.
"""
import math

import numpy as np
import pytest
from finite_diff import directional_derivative
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minippl
import minippl.distributions as dist
from minippl import handlers, nn
from minippl.distributions import constraint_registry, constraints
from minippl.nn import functional

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


# ---------------------------------------------------------------- strategies
def shapes(n, max_dims=3):
    """``n`` mutually broadcastable shapes and their broadcast."""
    return hnp.mutually_broadcastable_shapes(num_shapes=n, min_dims=0, max_dims=max_dims, max_side=3)


def arrays(shape, low, high):
    return hnp.arrays(np.float64, shape, elements=st.floats(low, high, allow_nan=False, allow_subnormal=False))


seeds = st.integers(0, 2**32 - 1)


def assert_vjp(fn, inputs, vjp, seed, rtol=1e-6):
    """``vjp`` is the VJP of ``fn``: <vjp(u), d> equals the float64 five-point slope of <u, fn> along d.

    tests/finite_diff.py's check, with one addition for random inputs: an absolute floor of
    1e-9 times the size of <u, fn>, so that a slope that cancels to ~0 is not judged on the
    rounding noise of the finite difference alone.
    """
    rng = np.random.default_rng(seed)
    inputs = {k: np.asarray(v, dtype=np.float64) for k, v in inputs.items()}
    out = np.asarray(fn(**inputs))
    u = rng.standard_normal(out.shape)
    floor = 1e-9 * (1.0 + float(np.sum(np.abs(u * out))))
    for name, grad in vjp(u, **inputs).items():
        x = inputs[name]
        assert np.shape(grad) == x.shape, f"d/d{name}: shape {np.shape(grad)}, expected {x.shape}"
        d = rng.standard_normal(x.shape)
        numeric = directional_derivative(lambda t: float(np.sum(u * fn(**dict(inputs, **{name: x + t * d})))))
        analytic = float(np.sum(np.asarray(grad) * d))
        assert abs(analytic - numeric) <= rtol * max(abs(analytic), abs(numeric)) + floor, \
            f"d/d{name}: analytic {analytic!r}, finite difference {numeric!r}"


# ---------------------------------------------------------------- log_prob against closed forms
@SETTINGS
@given(st.data(), shapes(3))
def test_normal_log_prob(data, s):
    loc = data.draw(arrays(s.input_shapes[0], -5, 5))
    scale = data.draw(arrays(s.input_shapes[1], 0.1, 5))
    x = data.draw(arrays(s.input_shapes[2], -10, 10))
    d = dist.Normal(loc, scale)
    expected = -0.5 * ((x - loc) / scale) ** 2 - np.log(scale) - HALF_LOG_2PI
    lp = d.log_prob(x)
    assert lp.shape == s.result_shape and lp.dtype == np.float64
    np.testing.assert_allclose(lp, expected, rtol=1e-12, atol=1e-12)
    lp32 = dist.Normal(loc.astype(np.float32), scale.astype(np.float32)).log_prob(x.astype(np.float32))
    assert lp32.dtype == np.float32
    np.testing.assert_allclose(lp32, expected, rtol=1e-4, atol=1e-4)


@SETTINGS
@given(st.data(), shapes(2), st.booleans())
def test_bernoulli_log_prob_on_grey_values(data, s, use_logits):
    x = data.draw(arrays(s.input_shapes[1], 0, 1))
    if use_logits:
        logits = data.draw(arrays(s.input_shapes[0], -30, 30))
        d = dist.Bernoulli(logits=logits)
        expected = x * logits - np.logaddexp(0.0, logits)  # x l - log(1 + e^l)
    else:
        probs = data.draw(arrays(s.input_shapes[0], 1e-3, 1 - 1e-3))
        d = dist.Bernoulli(probs=probs)
        expected = x * np.log(probs) + (1 - x) * np.log1p(-probs)
    lp = d.log_prob(x)
    assert lp.shape == s.result_shape
    np.testing.assert_allclose(lp, expected, rtol=1e-10, atol=1e-12)


@SETTINGS
@given(st.data(), shapes(3))
def test_uniform_log_prob_inside_and_outside(data, s):
    low = data.draw(arrays(s.input_shapes[0], -5, 5))
    high = low + data.draw(arrays(s.input_shapes[1], 0.1, 5))
    x = data.draw(arrays(s.input_shapes[2], -12, 12))
    d = dist.Uniform(low, high)
    inside = (low <= x) & (x < high)
    expected = np.where(inside, -np.log(np.broadcast_to(high - low, np.shape(inside))), -np.inf)
    np.testing.assert_allclose(d.log_prob(x), expected, rtol=1e-12)


@SETTINGS
@given(st.data(), hnp.array_shapes(min_dims=1, max_dims=3, max_side=3), st.integers(0, 3), st.floats(-5, 5))
def test_delta_log_prob_with_events(data, shape, event_dim, log_density):
    event_dim = min(event_dim, len(shape))
    v = data.draw(arrays(shape, -3, 3))
    hit = data.draw(hnp.arrays(bool, shape))
    x = np.where(hit, v, v + 1.0)
    d = dist.Delta(v, log_density, event_dim=event_dim)
    all_hit = hit.all(axis=tuple(range(len(shape) - event_dim, len(shape)))) if event_dim else hit
    np.testing.assert_array_equal(d.log_prob(x), np.where(all_hit, log_density, -np.inf))


@SETTINGS
@given(st.data(), hnp.array_shapes(min_dims=1, max_dims=3, max_side=3), st.integers(2, 4), st.booleans())
def test_categorical_log_prob(data, batch, k, use_logits):
    param = data.draw(arrays(batch + (k,), -4, 4) if use_logits else arrays(batch + (k,), 0.05, 1))
    x = data.draw(hnp.arrays(np.int64, batch, elements=st.integers(0, k - 1)))
    d = dist.Categorical(logits=param) if use_logits else dist.Categorical(probs=param)
    log_p = param - np.logaddexp.reduce(param, axis=-1, keepdims=True) if use_logits \
        else np.log(param / param.sum(-1, keepdims=True))
    expected = np.take_along_axis(log_p, x[..., None], axis=-1)[..., 0]
    np.testing.assert_allclose(d.log_prob(x), expected, rtol=1e-12, atol=1e-12)


@SETTINGS
@given(st.data(), hnp.array_shapes(min_dims=1, max_dims=3, max_side=3), st.integers(0, 3))
def test_wrappers_sum_and_mask_the_base_log_prob(data, shape, n):
    n = min(n, len(shape))
    loc = data.draw(arrays(shape, -3, 3))
    x = data.draw(arrays(shape, -3, 3))
    mask = data.draw(hnp.arrays(bool, shape))
    base = -0.5 * (x - loc) ** 2 - HALF_LOG_2PI
    summed = base.sum(axis=tuple(range(len(shape) - n, len(shape)))) if n else base
    np.testing.assert_allclose(dist.Normal(loc, 1.0).to_event(n).log_prob(x), summed, rtol=1e-12, atol=1e-12)
    masked = np.where(mask, base, 0.0)
    np.testing.assert_allclose(dist.Normal(loc, 1.0).mask(mask).log_prob(x), masked, rtol=1e-12, atol=1e-12)


@SETTINGS
@given(st.data(), shapes(4))
def test_kl_normal_normal(data, s):
    lp, sp, lq, sq = (data.draw(arrays(shape, lo, hi)) for shape, (lo, hi)
                      in zip(s.input_shapes, [(-3, 3), (0.2, 3), (-3, 3), (0.2, 3)]))
    kl = dist.kl_divergence(dist.Normal(lp, sp), dist.Normal(lq, sq))
    expected = np.log(sq / sp) + (sp**2 + (lp - lq) ** 2) / (2 * sq**2) - 0.5
    np.testing.assert_allclose(kl, np.broadcast_to(expected, s.result_shape), rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- VJPs against finite differences
@SETTINGS
@given(st.data(), shapes(3), seeds)
def test_normal_vjps(data, s, seed):
    inputs = {"x": data.draw(arrays(s.input_shapes[2], -4, 4)), "loc": data.draw(arrays(s.input_shapes[0], -3, 3)),
              "scale": data.draw(arrays(s.input_shapes[1], 0.3, 3))}
    def log_prob_vjp(u, x, loc, scale):
        grads = dist.Normal(loc, scale).log_prob_vjp(x, u, ["value", "loc", "scale"])
        return {"x": grads["value"], "loc": grads["loc"], "scale": grads["scale"]}

    assert_vjp(lambda x, loc, scale: dist.Normal(loc, scale).log_prob(x), inputs, log_prob_vjp, seed)
    noise = np.random.default_rng(seed).standard_normal(s.result_shape)
    draw = lambda loc, scale: dist.Normal(loc, scale).expand(s.result_shape)  # noqa: E731
    assert_vjp(lambda loc, scale: loc + scale * noise, {"loc": inputs["loc"], "scale": inputs["scale"]},
               lambda u, loc, scale: draw(loc, scale).rsample_vjp(noise, u, ["loc", "scale"]), seed)


@SETTINGS
@given(st.data(), shapes(2), st.booleans(), seeds)
def test_bernoulli_vjps(data, s, use_logits, seed):
    name = "logits" if use_logits else "probs"
    param = data.draw(arrays(s.input_shapes[0], -8, 8) if use_logits else arrays(s.input_shapes[0], 0.05, 0.95))
    x = data.draw(arrays(s.input_shapes[1], 0, 1))

    def fn(x, p):
        return dist.Bernoulli(**{name: p}).log_prob(x)

    def vjp(u, x, p):
        grads = dist.Bernoulli(**{name: p}).log_prob_vjp(x, u, ["value", name])
        return {"x": grads["value"], "p": grads[name]}

    assert_vjp(fn, {"x": x, "p": param}, vjp, seed)


@SETTINGS
@given(st.data(), shapes(3), seeds)
def test_uniform_vjps(data, s, seed):
    low = data.draw(arrays(s.input_shapes[0], -3, -1))
    high = data.draw(arrays(s.input_shapes[1], 1, 3))
    x = data.draw(arrays(s.input_shapes[2], -0.9, 0.9))  # inside every [low, high): the bounds' gradient
    assert_vjp(lambda low, high: dist.Uniform(low, high).log_prob(x), {"low": low, "high": high},
               lambda u, low, high: dist.Uniform(low, high).log_prob_vjp(x, u, ["low", "high"]), seed)
    noise = np.random.default_rng(seed).random(np.broadcast_shapes(np.shape(low), np.shape(high)))
    assert_vjp(lambda low, high: low + (high - low) * noise, {"low": low, "high": high},
               lambda u, low, high: dist.Uniform(low, high).rsample_vjp(noise, u, ["low", "high"]), seed)


@SETTINGS
@given(st.data(), hnp.array_shapes(min_dims=1, max_dims=3, max_side=3), st.integers(0, 3), seeds)
def test_independent_vjp_broadcasts_back_over_event_dims(data, shape, n, seed):
    n = min(n, len(shape))
    inputs = {"x": data.draw(arrays(shape, -3, 3)), "loc": data.draw(arrays(shape[len(shape) - n:], -3, 3))}
    d = lambda loc: dist.Normal(loc, 1.5).expand(shape).to_event(n)  # noqa: E731
    assert_vjp(lambda x, loc: d(loc).log_prob(x), inputs,
               lambda u, x, loc: {("x" if k == "value" else k): g
                                  for k, g in d(loc).log_prob_vjp(x, u, ["value", "loc"]).items()}, seed)


@SETTINGS
@given(st.data(), hnp.array_shapes(min_dims=1, max_dims=2, max_side=3), st.integers(2, 4), st.booleans(), seeds)
def test_categorical_vjp(data, batch, k, use_logits, seed):
    name = "logits" if use_logits else "probs"
    param = data.draw(arrays(batch + (k,), -3, 3) if use_logits else arrays(batch + (k,), 0.1, 1))
    x = data.draw(hnp.arrays(np.int64, batch, elements=st.integers(0, k - 1)))
    assert_vjp(lambda p: dist.Categorical(**{name: p}).log_prob(x), {"p": param},
               lambda u, p: {"p": dist.Categorical(**{name: p}).log_prob_vjp(x, u, [name])[name]}, seed)


@SETTINGS
@given(st.data(), shapes(4), seeds)
def test_kl_vjp(data, s, seed):
    names = ["lp", "sp", "lq", "sq"]
    inputs = {n: data.draw(arrays(shape, lo, hi)) for n, shape, (lo, hi)
              in zip(names, s.input_shapes, [(-3, 3), (0.3, 3), (-3, 3), (0.3, 3)])}

    def fn(lp, sp, lq, sq):
        return dist.kl_divergence(dist.Normal(lp, sp), dist.Normal(lq, sq))

    def vjp(u, lp, sp, lq, sq):
        gp, gq = dist.kl_divergence_vjp(dist.Normal(lp, sp), dist.Normal(lq, sq), u, ["loc", "scale"], ["loc", "scale"])
        return {"lp": gp["loc"], "sp": gp["scale"], "lq": gq["loc"], "sq": gq["scale"]}

    assert_vjp(fn, inputs, vjp, seed)


CONSTRAINTS = st.one_of(
    st.just(constraints.real), st.just(constraints.positive), st.just(constraints.unit_interval),
    st.floats(-10, 10).map(constraints.greater_than),
    st.tuples(st.floats(-10, 10), st.floats(0.5, 10)).map(lambda t: constraints.interval(t[0], t[0] + t[1])),
)


@SETTINGS
@given(st.data(), CONSTRAINTS, hnp.array_shapes(min_dims=0, max_dims=2, max_side=3), seeds)
def test_transform_vjps(data, constraint, shape, seed):
    transform = constraint_registry.biject_to(constraint)
    u = data.draw(arrays(shape, -5, 5))
    assert_vjp(lambda u: transform.forward(u), {"u": u},
               lambda g, u: {"u": transform.vjp(u, transform.forward(u), g)}, seed)
    assert_vjp(lambda u: transform.log_abs_det_jacobian(u, transform.forward(u)), {"u": u},
               lambda g, u: {"u": transform.log_abs_det_jacobian_vjp(u, transform.forward(u), g)}, seed)


@SETTINGS
@given(st.data(), st.integers(1, 4), st.integers(1, 4), hnp.array_shapes(min_dims=0, max_dims=2, max_side=3),
       st.booleans(), seeds)
def test_dense_backward(data, n_in, n_out, batch, bias, seed):
    layer = nn.Dense(n_in, n_out, bias=bias, dtype=np.float64, rng=np.random.default_rng(seed))
    inputs = {"x": data.draw(arrays(batch + (n_in,), -3, 3)), "weight": layer.weight}
    if bias:
        inputs["bias"] = layer.bias

    def fn(x, weight, bias=None):
        return x @ weight.T + (0.0 if bias is None else bias)

    def vjp(u, x, weight, bias=None):
        layer.weight, layer.bias = weight, bias
        (grad_x,), grad_params = layer.backward(layer.forward(x)[1], u, (True,))
        return {"x": grad_x, **grad_params}

    assert_vjp(fn, inputs, vjp, seed)


ACTIVATIONS = [(nn.Sigmoid(), lambda x: 1 / (1 + np.exp(-x))), (nn.Tanh(), np.tanh), (nn.Exp(), np.exp),
               (nn.Softplus(), lambda x: np.where(x > 20, x, np.log1p(np.exp(np.minimum(x, 20))))),
               (nn.Softplus(beta=2.0, threshold=5.0),
                lambda x: np.where(2 * x > 5, x, np.log1p(np.exp(np.minimum(2 * x, 5))) / 2)),
               (nn.ReLU(), lambda x: np.maximum(x, 0))]


@SETTINGS
@given(st.data(), st.sampled_from(ACTIVATIONS), hnp.array_shapes(min_dims=0, max_dims=2, max_side=4), seeds)
def test_activation_values_and_backward(data, activation, shape, seed):
    layer, closed_form = activation
    # keep 0.01 away from the kinks (relu at 0, softplus at its threshold): slopes jump there
    x = data.draw(arrays(shape, -25, 25).filter(lambda a: np.all(np.abs(a) > 0.01) and np.all(np.abs(a - 2.5) > 0.01)
                                                 and np.all(np.abs(a - 20) > 0.01)))
    y, cache = layer.forward(x)
    np.testing.assert_allclose(y, closed_form(x), rtol=1e-12, atol=1e-300)

    def vjp(u, x):
        return {"x": layer.backward(layer.forward(x)[1], u, (True,))[0][0]}

    assert_vjp(lambda x: layer.forward(x)[0], {"x": x}, vjp, seed)


@SETTINGS
@given(st.data(), shapes(2), st.sampled_from(["add", "mul"]), seeds)
def test_broadcasting_binary_backward(data, s, op, seed):
    layer = functional.Add() if op == "add" else functional.Mul()
    inputs = {"a": data.draw(arrays(s.input_shapes[0], -3, 3)), "b": data.draw(arrays(s.input_shapes[1], -3, 3))}

    def vjp(u, a, b):
        grad_a, grad_b = layer.backward(layer.forward(a, b)[1], u, (True, True))[0]
        return {"a": grad_a, "b": grad_b}

    assert_vjp(lambda a, b: layer.forward(a, b)[0], inputs, vjp, seed)


@SETTINGS
@given(st.data(), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3),
       hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=2, max_side=2), seeds)
def test_matmul_and_sum_backward(data, m, k, n, batch, seed):
    layer = functional.MatMul()
    inputs = {"a": data.draw(arrays(batch.input_shapes[0] + (m, k), -2, 2)),
              "b": data.draw(arrays(batch.input_shapes[1] + (k, n), -2, 2))}

    def vjp(u, a, b):
        grad_a, grad_b = layer.backward(layer.forward(a, b)[1], u, (True, True))[0]
        return {"a": grad_a, "b": grad_b}

    assert_vjp(lambda a, b: layer.forward(a, b)[0], inputs, vjp, seed)
    x = inputs["a"]
    axis = data.draw(st.sampled_from([None] + list(range(x.ndim))))
    keepdims = data.draw(st.booleans())
    total = functional.Sum(axis, keepdims)
    assert_vjp(lambda x: total.forward(x)[0], {"x": x},
               lambda u, x: {"x": total.backward(total.forward(x)[1], u, (True,))[0][0]}, seed)


# ---------------------------------------------------------------- constraint transforms round-trip
@SETTINGS
@given(st.data(), CONSTRAINTS, hnp.array_shapes(min_dims=0, max_dims=2, max_side=4),
       st.sampled_from([np.float64, np.float32]))
def test_transforms_round_trip_and_land_in_the_support(data, constraint, shape, dtype):
    transform = constraint_registry.biject_to(constraint)
    u = data.draw(arrays(shape, -8, 8)).astype(dtype)
    x = transform.forward(u)
    assert np.dtype(getattr(x, "dtype", dtype)) == dtype
    assert np.all(constraint.check(x))
    tol = {np.float64: 1e-9, np.float32: 2e-3}[dtype]
    # inverse(forward(u)) = u, where forward does not saturate (sigmoid of |u| <= 8 does not)
    np.testing.assert_allclose(transform.inverse(x), u, rtol=tol, atol=tol * (1 + np.max(np.abs(u), initial=0)))
    # forward(inverse(x)) = x for x inside the support
    np.testing.assert_allclose(transform.forward(transform.inverse(x)), x, rtol=tol, atol=tol)
    assert constraints.from_spec(constraint.spec) == constraint


# ---------------------------------------------------------------- handlers compose as documented
def random_model(names, plated):
    """Sites ``names`` in order; those in ``plated`` inside a plate of size 2."""

    def model():
        values = {}
        for i, name in enumerate(names):
            d = dist.Normal(float(i), 1.0 + i)
            if name in plated:
                with minippl.plate(f"plate_{name}", 2):
                    values[name] = minippl.sample(name, d)
            else:
                values[name] = minippl.sample(name, d)
        return values

    return model


SITE_SETS = st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=6, unique=True)


@FEW
@given(st.data(), SITE_SETS, seeds)
def test_trace_of_replay_of_condition(data, names, seed):
    plated = set(data.draw(st.lists(st.sampled_from(names), unique=True)))
    conditioned = data.draw(st.lists(st.sampled_from(names), unique=True))
    replayed = data.draw(st.lists(st.sampled_from(names), unique=True))
    model = random_model(names, plated)
    condition_data = {n: np.full((2,) if n in plated else (), 10.0 + i) for i, n in enumerate(conditioned)}
    guide_trace = handlers.trace(handlers.seed(handlers.block(model, expose=replayed), rng_seed=seed + 1)).get_trace()
    assert set(guide_trace.nodes) == set(replayed)  # block(expose=...) hides the plates' messages too

    traces = [handlers.trace(handlers.seed(handlers.replay(handlers.condition(model, data=condition_data),
                                                           trace=guide_trace), rng_seed=seed)).get_trace(),
              handlers.trace(handlers.seed(handlers.condition(handlers.replay(model, trace=guide_trace),
                                                              data=condition_data), rng_seed=seed)).get_trace()]
    for tr in traces:
        sites = tr.sample_sites()
        assert list(sites) == names
        for name, site in sites.items():
            if name in condition_data:  # condition wins, whichever handler is outside
                assert site["value"] is condition_data[name] and site["is_observed"]
            elif name in replayed:
                assert site["value"] is guide_trace.nodes[name]["value"] and not site["is_observed"]
            else:
                assert not site["is_observed"]
            assert np.shape(site["value"]) == ((2,) if name in plated else ())
            assert [f.name for f in site["cond_indep_stack"]] == ([f"plate_{name}"] if name in plated else [])
    for name in names:  # the same seed draws the same values, in both orders
        np.testing.assert_array_equal(traces[0].nodes[name]["value"], traces[1].nodes[name]["value"])
    expected = sum(float(np.sum(s["fn"].log_prob(s["value"]))) for s in traces[0].sample_sites().values())
    assert traces[0].log_prob_sum() == pytest.approx(expected, rel=1e-12)


@FEW
@given(SITE_SETS, st.floats(0.1, 10), st.floats(0.1, 10), st.integers(1, 4), seeds)
@example(names=["a", "b"], a=2.0, b=0.5, subsample=1, seed=0)  # a hidden site, and a plate of size 1
def test_scale_block_and_subsampling_compose(names, a, b, subsample, seed):
    hidden = names[: len(names) // 2]

    def model():
        with minippl.plate("data", 4, subsample_size=subsample):
            for name in names:
                minippl.sample(name, dist.Normal(0.0, 1.0))

    tr = handlers.trace(handlers.seed(handlers.scale(handlers.scale(handlers.block(model, hide=hidden), scale=a),
                                                     scale=b), rng_seed=seed)).get_trace()
    assert list(tr.sample_sites()) == [n for n in names if n not in hidden]
    for site in tr.sample_sites().values():
        assert site["scale"] == pytest.approx(a * b * 4 / subsample, rel=1e-12)
        assert site["value"].shape == (subsample,)
    again = handlers.trace(handlers.seed(model, rng_seed=seed)).get_trace()
    for name in tr.sample_sites():
        np.testing.assert_array_equal(tr.nodes[name]["value"], again.nodes[name]["value"])
