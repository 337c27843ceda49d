"""Every GPU kernel (kernels/gpu.py) against its NumPy reference, on a CUDA GPU; skipped without one.

The same checks as tests/test_kernels_cpu.py: the reference runs on the host under
``set_backend("numpy")``, the kernel on CuPy copies of the same float32 inputs (0, subnormals, the
ends of float32's range, +-inf and NaN included), and the results are compared on the host.
CUDA's expf, logf and log1pf are within 2 ulp, so the tolerances are those of the CPU kernels.
Without CuPy or a GPU this file is skipped; tests/test_kernels_gpu_compile.py checks what a CPU
can (compilation, PTX, launch arguments), tests/test_kernels_gpu_on_host.py the kernels' numbers on
one host thread, and benchmarks/gpu_check.sh runs this file on a GPU.
"""
import numpy as np
import pytest

import minippl
import minippl.distributions as dist
from minippl import nn
from minippl.optim import Adam, ClippedAdam
from test_kernels_cpu import F32, assert_close, probs_with_edges, randn, wide

cupy = pytest.importorskip("cupy", reason="the GPU kernels need CuPy (pip install -e '.[cuda12]' or '.[cuda13]')")


def _gpu_count():
    try:
        return cupy.cuda.runtime.getDeviceCount()
    except cupy.cuda.runtime.CUDARuntimeError:
        return 0


pytestmark = pytest.mark.skipif(_gpu_count() == 0, reason="no CUDA GPU")


@pytest.fixture(scope="module")
def gpu():
    from minippl.kernels import gpu

    print(gpu.check_device())  # the GPU and its compute capability, in the log of the run
    return gpu


@pytest.fixture(autouse=True)
def reference_backend():
    """The expected values come from the NumPy reference; the kernels are called directly."""
    previous = minippl.get_backend()
    minippl.set_backend("numpy")
    with np.errstate(all="ignore"):
        yield
    minippl.set_backend(previous)


def dev(a):
    """A CuPy copy of a NumPy array; a broadcast view stays a broadcast (stride-0) view, as the ELBO passes it."""
    if a.ndim and 0 in a.strides:
        base = a[tuple(slice(0, 1) if s == 0 else slice(None) for s in a.strides)]
        return cupy.broadcast_to(cupy.asarray(np.ascontiguousarray(base)), a.shape)
    return cupy.asarray(a)


def host(a):
    return a.get() if hasattr(a, "get") else a


# ---------------------------------------------------------------- activations and bias
@pytest.mark.parametrize("beta, threshold", [(1.0, 20.0), (2.0, 20.0), (0.5, 5.0)])
def test_softplus_value_and_slope(gpu, beta, threshold):
    x = wide()
    layer = nn.Softplus(beta, threshold)
    y_ref, cache = layer.forward(x)
    (slope_ref,), _ = layer.backward(cache, np.ones_like(x), (True,))
    y, slope = gpu.softplus_forward(dev(x), beta, threshold)
    assert_close(host(y), y_ref, rtol=1e-6)
    assert_close(host(slope), slope_ref, rtol=1e-6, atol=1e-7)


def test_sigmoid_exp_tanh_relu(gpu):
    x, g = wide(), wide()
    g_rounding = 3e-7 * np.abs(g)  # 1 - y^2 rounds to ulp(1) in the reference, fused (FMA) in the kernel
    y = nn.Sigmoid().forward(x)[0]
    assert_close(host(gpu.sigmoid_forward(dev(x))), y, rtol=1e-6)
    assert_close(host(gpu.sigmoid_backward(dev(y), dev(g))), nn.Sigmoid().backward(y, g, (True,))[0][0],
                 rtol=1e-6, atol=g_rounding)
    assert_close(host(gpu.exp_forward(dev(x))), np.exp(x), rtol=5e-7)
    t = np.tanh(x)
    assert_close(host(gpu.tanh_backward(dev(t), dev(g))), nn.Tanh().backward(t, g, (True,))[0][0], rtol=1e-6,
                 atol=g_rounding)
    r = np.maximum(x, 0)
    assert_close(host(gpu.relu_backward(dev(r), dev(g))), nn.ReLU().backward(r, g, (True,))[0][0])
    two = np.broadcast_to(F32(2.0), y.shape)  # a broadcast cotangent is materialised, not misread
    assert_close(host(gpu.sigmoid_backward(dev(y), dev(two))), 2 * (1 - y) * y, rtol=1e-6)


def test_bias_add_and_bias_gradient(gpu):
    y, bias = randn(7, 5, 3), randn(3)
    assert_close(host(gpu.add_bias_(dev(y), dev(bias))), y + bias)
    g = randn(300, 11, scale=3.0)
    assert_close(host(gpu.bias_grad(dev(g))), g.sum(axis=0), rtol=1e-5, atol=1e-5)
    assert_close(host(gpu.bias_grad(dev(g).T.copy().T)), g.sum(axis=0), rtol=1e-5, atol=1e-5)  # strided input


def test_all_finite_many_finds_every_nan_and_inf(gpu):
    arrays = [randn(400, 784), randn(400), randn(3, 7, 5), randn(1)]
    arrays[2].flat[:4] = [3.4e38, -3.4e38, 1e-45, -0.0]  # finite, however large or tiny
    assert gpu.all_finite_many([dev(a) for a in arrays])
    for bad in (np.nan, np.inf, -np.inf):
        for k, array in enumerate(arrays):
            for position in (0, array.size // 2, array.size - 1):
                spoiled = [dev(a) for a in arrays]
                spoiled[k].reshape(-1)[position] = bad
                assert not gpu.all_finite_many(spoiled), (bad, k, position)


# ---------------------------------------------------------------- Bernoulli
@pytest.mark.parametrize("per_row", [True, False])
def test_bernoulli_probs_and_logits(gpu, per_row):
    p = probs_with_edges((6, 784))
    x = np.random.default_rng(1).uniform(0, 1, p.shape).astype(F32)
    x[:, :100] = np.round(x[:, :100])  # some binary pixels, some grey
    g = np.broadcast_to(randn(6, 1), p.shape) if per_row else randn(6, 784)
    d = dist.Bernoulli(probs=p, validate_args=False)
    assert_close(host(gpu.bernoulli_probs_log_prob(dev(x), dev(p))), d.log_prob(x), rtol=2e-6, atol=1e-6)
    assert_close(host(gpu.bernoulli_probs_grad(dev(x), dev(p), dev(g))), d.log_prob_vjp(x, g, ["probs"])["probs"],
                 rtol=2e-6, atol=1e-6)
    logits = randn(6, 784, scale=10.0)
    logits.flat[:4] = [0.0, 100.0, -100.0, np.nan]
    d = dist.Bernoulli(logits=logits, validate_args=False)
    assert_close(host(gpu.bernoulli_logits_log_prob(dev(x), dev(logits))), d.log_prob(x), rtol=2e-6, atol=1e-6)
    assert_close(host(gpu.bernoulli_logits_grad(dev(x), dev(logits), dev(g))),
                 d.log_prob_vjp(x, g, ["logits"])["logits"], rtol=2e-6, atol=1e-6)


# ---------------------------------------------------------------- Normal and KL
def test_normal_sample_log_prob_and_gradients(gpu):
    loc, scale, noise, g = randn(8, 50, scale=3.0), np.exp(randn(8, 50, scale=2.0)), randn(8, 50), randn(8, 50)
    scale.flat[:2] = [1e-30, 1e30]
    d = dist.Normal(loc, scale, validate_args=False)
    x = loc + scale * noise
    assert_close(host(gpu.normal_rsample(dev(loc), dev(scale), dev(noise))), x, rtol=1e-6)  # FMA: one rounding less
    assert_close(host(gpu.normal_log_prob(dev(x), dev(loc), dev(scale))), d.log_prob(x), rtol=1e-5, atol=1e-5)
    expected = d.log_prob_vjp(x, g, ["value", "loc", "scale"])
    for wrt in (["value", "loc", "scale"], ["scale"], ["loc"], []):
        got = gpu.normal_log_prob_grads(dev(x), dev(loc), dev(scale), dev(g), wrt)
        assert list(got) == wrt
        for name in wrt:
            assert_close(host(got[name]), expected[name], rtol=1e-5, atol=1e-6)


def test_kl_normal_normal_and_gradients(gpu):
    shape = (16, 50)
    p = dist.Normal(randn(*shape), np.exp(randn(*shape)), validate_args=False)
    q = dist.Normal(randn(*shape), np.exp(randn(*shape)), validate_args=False)
    g = randn(*shape)
    on_gpu = [dev(a) for a in (p.loc, p.scale, q.loc, q.scale)]
    assert_close(host(gpu.kl_normal_normal(*on_gpu)), dist.kl_divergence(p, q), rtol=1e-5, atol=1e-6)
    ref_p, ref_q = dist.kl_divergence_vjp(p, q, g, ["loc", "scale"], ["loc", "scale"])
    got_p, got_q = gpu.kl_normal_normal_grads(*on_gpu, dev(g), ["loc", "scale"], ["scale"])
    assert set(got_p) == {"loc", "scale"} and set(got_q) == {"scale"}
    for name in got_p:
        assert_close(host(got_p[name]), ref_p[name], rtol=1e-5, atol=1e-6)
    assert_close(host(got_q["scale"]), ref_q["scale"], rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- Adam
@pytest.mark.parametrize("optim_cls, args", [
    (Adam, {"lr": 1e-2}),
    (Adam, {"lr": 1e-3, "betas": (0.8, 0.99), "weight_decay": 0.1, "eps": 1e-6}),
    (ClippedAdam, {"lr": 1e-2, "clip_norm": 0.5, "lrd": 0.99}),
    (ClippedAdam, {"lr": 1e-2, "clip_norm": 2.0, "weight_decay": 0.01, "centered_variance": True}),
])
def test_adam_kernel_follows_the_reference_for_several_steps(gpu, optim_cls, args):
    params = {"w": randn(40, 30), "b": randn(30)}
    grads = [{name: randn(*a.shape, scale=3.0) for name, a in params.items()} for _ in range(5)]
    reference, expected = optim_cls(dict(args)), {k: v.copy() for k, v in params.items()}
    for step_grads in grads:
        reference.step(expected, step_grads)
    minippl.set_backend("numba")  # the registry's adam entry, on CuPy arrays: the GPU kernel
    fused, got = optim_cls(dict(args)), {k: dev(v) for k, v in params.items()}
    for step_grads in grads:
        fused.step(got, {k: dev(v) for k, v in step_grads.items()})
    for name in params:
        assert_close(host(got[name]), expected[name], rtol=1e-5, atol=1e-6)
        for key in ("exp_avg", "exp_avg_sq"):
            assert_close(host(fused.get_state()[name][key]), reference.get_state()[name][key], rtol=1e-5, atol=1e-6)


def test_adam_kernel_leaves_nan_visible(gpu):
    param, grad = randn(10), randn(10)
    grad[3] = np.nan
    param, m, v = dev(param), cupy.zeros(10, F32), cupy.zeros(10, F32)
    gpu.adam_update(param, dev(grad), m, v, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, step=1)
    param = host(param)
    assert np.isnan(param[3]) and np.isfinite(np.delete(param, 3)).all()


def test_the_finite_flag_of_a_deferred_step_stays_on_the_gpu(gpu):
    from minippl.infer.sync_window import finite_flag

    minippl.set_backend("numba")  # the registry's all_finite_flag entry: gpu.nonfinite_flag
    loss, grads = cupy.asarray(np.float32(1.0)), {"a": dev(randn(5)), "b": dev(randn(3, 4))}
    ok = finite_flag(loss, grads)
    assert isinstance(ok, cupy.ndarray) and ok.shape == () and bool(ok)
    grads["b"][1, 2] = cupy.nan
    assert not bool(finite_flag(loss, grads))
    assert not bool(finite_flag(cupy.asarray(np.float32(np.inf)), {"a": grads["a"]}))


@pytest.mark.parametrize("ok", [True, False])
def test_adam_kernel_reads_the_device_flag_of_a_conditional_update(gpu, ok):
    # SVI(sync_every=k): a refused step (flag False) changes neither the param nor the moments
    params, g = {"w": randn(40, 30)}, {"w": randn(40, 30)}
    minippl.set_backend("numba")
    conditional, ordinary = Adam({"lr": 1e-2}), Adam({"lr": 1e-2})
    got, expected = {"w": dev(params["w"])}, {"w": dev(params["w"])}
    conditional.step(got, {"w": dev(g["w"])}, only_if=cupy.asarray(ok))
    if ok:
        ordinary.step(expected, {"w": dev(g["w"])})
    assert_close(host(got["w"]), host(expected["w"]), rtol=0, atol=0)
    moments = host(conditional.state["w"]["exp_avg"])
    assert (np.abs(moments).max() > 0) == ok


# ---------------------------------------------------------------- dispatch: CuPy arrays take the GPU kernels
def test_layers_on_cupy_arrays_take_the_gpu_kernels_and_match_the_reference(gpu, monkeypatch):
    from minippl import backend

    net = nn.Sequential(nn.Dense(7, 5), nn.Softplus(), nn.Dense(5, 4), nn.Tanh(), nn.Dense(4, 3), nn.Sigmoid())
    x, g = randn(6, 7), randn(6, 3)

    def forward_backward(x, g):
        caches, y = [], x
        for layer in net.children():
            y, cache = layer.forward(y)
            caches.append(cache)
        grad = g
        for layer, cache in zip(reversed(list(net.children())), reversed(caches)):
            (grad,), _ = layer.backward(cache, grad, (True,))
        return y, grad
    y_ref, grad_ref = forward_backward(x, g)
    for path, array in list(net.named_parameters()):
        net.set_parameter(path, dev(array))
    minippl.set_backend("numba")
    calls = []
    original = gpu.sigmoid_forward
    monkeypatch.setattr(gpu, "sigmoid_forward", lambda a: calls.append(a) or original(a))
    y, grad = forward_backward(dev(x), dev(g))
    assert calls and backend._gpu_kernels() is gpu
    assert_close(host(y), y_ref, rtol=1e-5, atol=1e-6)
    assert_close(host(grad), grad_ref, rtol=1e-5, atol=1e-6)
