"""Every fused CPU kernel (kernels/cpu.py) against its NumPy reference, in float32.

The references are minippl's own readable code run under ``set_backend("numpy")`` (whose
derivatives the finite-difference tests check), or NumPy's ufuncs for exp, log and tanh.
Inputs are random plus the values that break careless code: 0, -0, subnormals, the ends of
float32's range, +-inf and NaN (which must stay NaN: SVI's guard relies on it).
"""
import numpy as np
import pytest
from numba import njit

import minippl
import minippl.distributions as dist
from minippl import backend, nn
from minippl.kernels import cpu, cpu_math
from minippl.optim import Adam, ClippedAdam

RNG = np.random.default_rng(0)
F32 = np.float32
SPECIAL = np.array([0.0, -0.0, 1e-45, -1e-45, 1e-40, 1e-30, -1e-30, 1e-8, -1e-8, 0.5, -0.5, 20.0, 20.5, -20.0,
                    87.0, 88.7, 89.0, -87.0, -103.0, -104.0, -110.0, 1e30, -1e30, np.inf, -np.inf, np.nan], F32)


def randn(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(F32)


def wide(n=4000):
    """Random float32 values from tiny to huge, both signs, plus the special values."""
    magnitudes = np.exp(RNG.uniform(-12, 5, n)) * RNG.choice([-1, 1], n)
    return np.concatenate([magnitudes.astype(F32), randn(n), SPECIAL])


def assert_close(actual, expected, rtol=2e-6, atol=1e-38):
    """float32 agreement: same NaN and inf pattern, finite values within rtol (or atol, which may
    be an array: a cotangent's rounding error scales with the cotangent)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape and actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(actual[~finite & ~np.isnan(expected)], expected[~finite & ~np.isnan(expected)])
    error = np.abs(actual[finite].astype(np.float64) - expected[finite])
    allowed = rtol * np.abs(expected[finite].astype(np.float64)) + np.broadcast_to(atol, expected.shape)[finite]
    worst = np.argmax(error - allowed)
    assert np.all(error <= allowed), (f"{np.sum(error > allowed)} of {error.size} differ; worst: "
                                      f"{actual[finite][worst]!r} vs {expected[finite][worst]!r}")


@pytest.fixture
def reference():
    """Run the enclosed code on the NumPy reference path, then restore the backend."""
    previous = backend.get_backend()
    minippl.set_backend("numpy")
    yield
    minippl.set_backend(previous)


# ---------------------------------------------------------------- exp and log from the float bits
@njit(error_model="numpy")
def _map_logf(x, out):
    for i in range(x.size):
        out[i] = cpu_math.logf(x[i])


@njit(error_model="numpy")
def _map_log1pf(x, out):
    for i in range(x.size):
        out[i] = cpu_math.log1pf(x[i])


def test_exp_matches_numpy_everywhere():
    x = wide()
    with np.errstate(over="ignore"):
        assert_close(cpu.exp_forward(x), np.exp(x), rtol=3e-7)


def test_log_and_log1p_match_numpy_everywhere():
    x = wide()
    out = np.empty_like(x)
    _map_logf(x, out)
    with np.errstate(divide="ignore", invalid="ignore"):
        assert_close(out, np.log(x), rtol=3e-7)
    t = np.concatenate([x[np.abs(x) < 1] , np.array([-1, -0.9999999, 1e-40, 3.0, np.inf, -2], F32)])
    out = np.empty_like(t)
    _map_log1pf(t, out)
    with np.errstate(divide="ignore", invalid="ignore"):
        assert_close(out, np.log1p(t), rtol=3e-7)


# ---------------------------------------------------------------- activations and bias
@pytest.mark.parametrize("beta, threshold", [(1.0, 20.0), (2.0, 20.0), (0.5, 5.0)])
def test_softplus_value_and_slope(reference, beta, threshold):
    x = wide()
    layer = nn.Softplus(beta, threshold)
    y_ref, cache = layer.forward(x)
    (slope_ref,), _ = layer.backward(cache, np.ones_like(x), (True,))
    y, slope = cpu.softplus_forward(x, beta, threshold)
    assert_close(y, y_ref, rtol=1e-6)
    assert_close(slope, slope_ref, rtol=1e-6, atol=1e-7)


def test_sigmoid_tanh_relu_forward_and_backward(reference):
    x, g = wide(), wide()
    g_rounding = 3e-7 * np.abs(g)  # 1 - y^2 rounds to ulp(1) in the reference, fused (FMA) in the kernel
    y_ref, y = nn.Sigmoid().forward(x)[0], cpu.sigmoid_forward(x)
    assert_close(y, y_ref, rtol=1e-6)
    with np.errstate(invalid="ignore", over="ignore"):
        assert_close(cpu.sigmoid_backward(y, g), nn.Sigmoid().backward(y, g, (True,))[0][0], rtol=1e-6,
                     atol=g_rounding)
        t = np.tanh(x)
        assert_close(cpu.tanh_backward(t, g), nn.Tanh().backward(t, g, (True,))[0][0], rtol=1e-6, atol=g_rounding)
        r = np.maximum(x, 0)
        assert_close(cpu.relu_backward(r, g), nn.ReLU().backward(r, g, (True,))[0][0])


def test_backward_kernels_take_a_broadcast_cotangent():
    y = cpu.sigmoid_forward(randn(4, 3))
    g = np.broadcast_to(F32(2.0), y.shape)
    assert_close(cpu.sigmoid_backward(y, g), 2 * (1 - y) * y)


def test_bias_add_and_bias_gradient():
    y, bias = randn(7, 5, 3), randn(3)
    expected = y + bias
    assert_close(cpu.add_bias_(y, bias), expected)
    g = randn(300, 11, scale=3.0)
    assert_close(cpu.bias_grad(g), g.sum(axis=0), rtol=1e-5, atol=1e-5)
    assert_close(cpu.bias_grad(g.T.copy().T), g.sum(axis=0), rtol=1e-5, atol=1e-5)  # strided input


# ---------------------------------------------------------------- Bernoulli
def probs_with_edges(shape):
    p = RNG.uniform(0, 1, shape).astype(F32)
    p.flat[:8] = [0.0, 1.0, 1e-9, 1 - 1e-8, np.finfo(F32).eps, 1 - np.finfo(F32).eps, 0.5, np.nan]
    return p


@pytest.mark.parametrize("per_row", [True, False])
def test_bernoulli_probs(reference, per_row):
    p = probs_with_edges((6, 784))
    x = RNG.uniform(0, 1, p.shape).astype(F32)
    x[:, :100] = np.round(x[:, :100])  # some binary pixels, some grey
    d = dist.Bernoulli(probs=p, validate_args=False)
    g = np.broadcast_to(randn(6, 1), p.shape) if per_row else randn(6, 784)
    with np.errstate(invalid="ignore"):
        assert_close(cpu.bernoulli_probs_log_prob(x, p), d.log_prob(x), rtol=2e-6, atol=1e-6)
        assert_close(cpu.bernoulli_probs_grad(x, p, g), d.log_prob_vjp(x, g, ["probs"])["probs"], rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("per_row", [True, False])
def test_bernoulli_logits(reference, per_row):
    logits = randn(5, 33, scale=10.0)
    logits.flat[:4] = [0.0, 100.0, -100.0, np.nan]
    x = RNG.uniform(0, 1, logits.shape).astype(F32)
    d = dist.Bernoulli(logits=logits, validate_args=False)
    g = np.broadcast_to(randn(5, 1), logits.shape) if per_row else randn(5, 33)
    assert_close(cpu.bernoulli_logits_log_prob(x, logits), d.log_prob(x), rtol=2e-6, atol=1e-6)
    assert_close(cpu.bernoulli_logits_grad(x, logits, g), d.log_prob_vjp(x, g, ["logits"])["logits"],
                 rtol=2e-6, atol=1e-6)


# ---------------------------------------------------------------- Normal and KL
def test_normal_sample_log_prob_and_gradients(reference):
    loc, scale, noise, g = randn(8, 50, scale=3.0), np.exp(randn(8, 50, scale=2.0)), randn(8, 50), randn(8, 50)
    scale.flat[:2] = [1e-30, 1e30]
    d = dist.Normal(loc, scale, validate_args=False)
    x = loc + scale * noise
    assert_close(cpu.normal_rsample(loc, scale, noise), x)
    with np.errstate(over="ignore", invalid="ignore"):
        assert_close(cpu.normal_log_prob(x, loc, scale), d.log_prob(x), rtol=1e-5, atol=1e-5)
        expected = d.log_prob_vjp(x, g, ["value", "loc", "scale"])
        for wrt in (["value", "loc", "scale"], ["scale"], ["loc"], []):
            got = cpu.normal_log_prob_grads(x, loc, scale, g, wrt)
            assert list(got) == wrt
            for name in wrt:
                assert_close(got[name], expected[name], rtol=1e-5, atol=1e-6)


def test_kl_normal_normal_and_gradients(reference):
    shape = (16, 50)
    p = dist.Normal(randn(*shape), np.exp(randn(*shape)), validate_args=False)
    q = dist.Normal(randn(*shape), np.exp(randn(*shape)), validate_args=False)
    g = randn(*shape)
    kl_ref = dist.kl_divergence(p, q)
    assert_close(cpu.kl_normal_normal(p.loc, p.scale, q.loc, q.scale), kl_ref, rtol=1e-5, atol=1e-6)
    ref_p, ref_q = dist.kl_divergence_vjp(p, q, g, ["loc", "scale"], ["loc", "scale"])
    got_p, got_q = cpu.kl_normal_normal_grads(p.loc, p.scale, q.loc, q.scale, g, ["loc", "scale"], ["scale"])
    assert set(got_p) == {"loc", "scale"} and set(got_q) == {"scale"}
    for name in got_p:
        assert_close(got_p[name], ref_p[name], rtol=1e-5, atol=1e-6)
    assert_close(got_q["scale"], ref_q["scale"], rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- optimisers
@pytest.mark.parametrize("optim_cls, args", [
    (Adam, {"lr": 1e-2}),
    (Adam, {"lr": 1e-3, "betas": (0.8, 0.99), "weight_decay": 0.1, "eps": 1e-6}),
    (ClippedAdam, {"lr": 1e-2, "clip_norm": 0.5, "lrd": 0.99}),
    (ClippedAdam, {"lr": 1e-2, "clip_norm": 2.0, "weight_decay": 0.01, "centered_variance": True}),
])
def test_adam_kernel_follows_the_reference_for_several_steps(optim_cls, args):
    params = {"w": randn(40, 30), "b": randn(30)}
    grads = [{name: randn(*a.shape, scale=3.0) for name, a in params.items()} for _ in range(5)]
    results = {}
    for name in ("numpy", "numba"):
        minippl.set_backend(name)
        optim, copies = optim_cls(dict(args)), {k: v.copy() for k, v in params.items()}
        for step_grads in grads:
            optim.step(copies, step_grads)
        results[name] = (copies, optim.get_state())
    minippl.set_backend("numba")
    (ref, ref_state), (got, got_state) = results["numpy"], results["numba"]
    for name in params:  # a few float32 roundings of params of size ~1 and gradients of size ~3
        assert_close(got[name], ref[name], rtol=1e-5, atol=1e-6)
        for key in ("exp_avg", "exp_avg_sq"):
            assert_close(got_state[name][key], ref_state[name][key], rtol=1e-5, atol=1e-6)
        assert got_state[name]["step"] == ref_state[name]["step"] == 5


def test_adam_kernel_leaves_nan_visible():
    param, m, v = randn(10), np.zeros(10, F32), np.zeros(10, F32)
    grad = randn(10)
    grad[3] = np.nan
    cpu.adam_update(param, grad, m, v, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, step=1)
    assert np.isnan(param[3]) and np.isfinite(np.delete(param, 3)).all()


# ---------------------------------------------------------------- dispatch
def test_the_dispatch_point_sends_a_kernel_only_what_it_takes(monkeypatch):
    from minippl.nn import layers

    calls = []
    monkeypatch.setattr(cpu, "exp_forward", lambda x: calls.append(x) or np.exp(x))
    minippl.set_backend("numba")
    x = randn(4, 3)
    for array, fused in [(x, True), (x.astype(np.float64), False), (x.T, False), (np.float32(1.0), False)]:
        calls.clear()
        np.testing.assert_allclose(layers.exp(array), np.exp(array), rtol=1e-6)
        assert bool(calls) == fused, (array.dtype, array.shape)
    minippl.set_backend("numpy")
    calls.clear()
    layers.exp(x)
    assert not calls and layers.exp.reference(x).dtype == np.float32
    minippl.set_backend("numba")


def test_set_backend_names_the_choices():
    with pytest.raises(ValueError, match="'numpy'.*'numba'"):
        minippl.set_backend("cuda")
    assert minippl.get_backend() in ("numpy", "numba")


def test_layers_give_the_same_values_and_gradients_on_both_backends():
    net = nn.Sequential(nn.Dense(7, 5), nn.Softplus(), nn.Dense(5, 4), nn.Tanh(), nn.Dense(4, 3), nn.Sigmoid())
    x, g = randn(6, 7), randn(6, 3)
    results = {}
    for name in ("numpy", "numba"):
        minippl.set_backend(name)
        values, caches, y = [], [], x
        for layer in net.children():
            y, cache = layer.forward(y)
            values.append(y)
            caches.append(cache)
        grads, grad = [], g
        for layer, cache in zip(reversed(list(net.children())), reversed(caches)):
            (grad,), params = layer.backward(cache, grad, (True,))
            grads.append((grad, params))
        results[name] = (values, grads)
    minippl.set_backend("numba")
    for ref, got in zip(results["numpy"][0], results["numba"][0]):
        assert_close(got, ref, rtol=1e-5, atol=1e-6)
    for (ref_grad, ref_params), (got_grad, got_params) in zip(results["numpy"][1], results["numba"][1]):
        assert_close(got_grad, ref_grad, rtol=1e-5, atol=1e-6)
        for name in ref_params:
            assert_close(got_params[name], ref_params[name], rtol=1e-5, atol=1e-6)


def test_relu_and_tanh_layers_keep_their_reference_forward():
    # np.maximum and np.tanh are one SIMD pass each: no kernel beats them (benchmarks/kernels_cpu.py)
    minippl.set_backend("numba")
    x = randn(5, 4)
    np.testing.assert_array_equal(nn.ReLU().forward(x)[0], np.maximum(x, 0))
    np.testing.assert_array_equal(nn.Tanh().forward(x)[0], np.tanh(x))
    assert_close(nn.Exp().forward(x)[0], np.exp(x), rtol=3e-7)  # fused, within 2 ulp of np.exp



def test_all_finite_many_finds_every_nan_and_inf():
    # SVI's guard before an update: one call over all gradients must agree with np.isfinite,
    # whichever array holds the bad value and wherever in it (start, middle, the vector tail)
    from minippl.validation import all_finite_many

    arrays = [randn(400, 784), randn(400), randn(3, 7, 5), randn(1)]
    extremes = np.array([3.4e38, -3.4e38, 1e-45, -0.0], F32)  # finite, however large or tiny
    arrays[2].flat[:4] = extremes
    assert cpu.all_finite_many(arrays) and all_finite_many(arrays)
    for bad in (np.nan, np.inf, -np.inf):
        for k, array in enumerate(arrays):
            for position in (0, array.size // 2, array.size - 1):
                spoiled = [a.copy() for a in arrays]
                spoiled[k].flat[position] = bad
                assert not cpu.all_finite_many(spoiled), (bad, k, position)
                assert not all_finite_many(spoiled), (bad, k, position)
    # float64 or mixed lists take the reference path, with the same answers
    assert all_finite_many([a.astype(np.float64) for a in arrays])
    assert not all_finite_many([arrays[0], np.array([np.nan])])
