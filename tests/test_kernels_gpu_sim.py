"""The GPU kernels (kernels/gpu.py) against the NumPy reference, run by Numba's CUDA simulator.

``NUMBA_ENABLE_CUDASIM=1`` must be set before numba.cuda is first imported, and this pytest
process has imported Numba long before, so the checks run in a fresh Python process: this file
run as a script. The simulator executes each CUDA thread in Python, so the arrays are tiny; it
checks the kernels' math and indexing, not their speed (benchmarks/ times them on a real GPU).
"""
import os
import subprocess
import sys
import types

import numpy as np


def test_gpu_kernels_match_the_reference_under_the_cuda_simulator():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    result = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all GPU kernel checks passed" in result.stdout, result.stdout + result.stderr


# ================================================================ the checks (run in the subprocess)
def run_checks():
    from numba import config

    assert config.ENABLE_CUDASIM, "run with NUMBA_ENABLE_CUDASIM=1"
    import minippl
    import minippl.distributions as dist
    from minippl import backend, nn
    from minippl.kernels import gpu
    from minippl.optim import Adam, ClippedAdam
    from test_kernels_cpu import SPECIAL, assert_close, probs_with_edges

    rng = np.random.default_rng(1)
    f32 = np.float32

    def randn(*shape, scale=1.0):
        return (rng.standard_normal(shape) * scale).astype(f32)

    minippl.set_backend("numpy")  # the reference, for every expected value below
    np.seterr(all="ignore")
    x = np.concatenate([SPECIAL, randn(40, scale=5.0)])
    g = randn(x.size, scale=2.0)
    g_rounding = 3e-7 * np.abs(g)

    for beta, threshold in ((1.0, 20.0), (2.0, 5.0)):
        layer = nn.Softplus(beta, threshold)
        y_ref, cache = layer.forward(x)
        (slope_ref,), _ = layer.backward(cache, np.ones_like(x), (True,))
        y, slope = gpu.softplus_forward(x, beta, threshold)
        assert_close(y, y_ref, rtol=1e-6)
        assert_close(slope, slope_ref, rtol=1e-6, atol=1e-7)
    s = nn.Sigmoid().forward(x)[0]
    assert_close(gpu.sigmoid_forward(x), s, rtol=1e-6)
    assert_close(gpu.sigmoid_backward(s, g), nn.Sigmoid().backward(s, g, (True,))[0][0], rtol=1e-6, atol=g_rounding)
    assert_close(gpu.exp_forward(x), np.exp(x), rtol=1e-6)
    t = np.tanh(x)
    assert_close(gpu.tanh_backward(t, g), nn.Tanh().backward(t, g, (True,))[0][0], rtol=1e-6, atol=g_rounding)
    r = np.maximum(x, 0)
    assert_close(gpu.relu_backward(r, g), nn.ReLU().backward(r, g, (True,))[0][0])
    assert_close(gpu.sigmoid_backward(s, np.broadcast_to(f32(2.0), s.shape)), 2 * (1 - s) * s, rtol=1e-6)

    y, bias = randn(4, 6), randn(6)
    assert_close(gpu.add_bias_(y.copy(), bias), y + bias)
    assert_close(gpu.bias_grad(y), y.sum(axis=0), rtol=1e-5, atol=1e-6)

    p = probs_with_edges((3, 9))
    data = rng.uniform(0, 1, p.shape).astype(f32)
    bern = dist.Bernoulli(probs=p, validate_args=False)
    logits = randn(3, 9, scale=10.0)
    bern_logits = dist.Bernoulli(logits=logits, validate_args=False)
    assert_close(gpu.bernoulli_probs_log_prob(data, p), bern.log_prob(data), rtol=2e-6, atol=1e-6)
    assert_close(gpu.bernoulli_logits_log_prob(data, logits), bern_logits.log_prob(data), rtol=2e-6, atol=1e-6)
    for cot in (np.broadcast_to(randn(3, 1), p.shape), randn(3, 9)):
        assert_close(gpu.bernoulli_probs_grad(data, p, cot), bern.log_prob_vjp(data, cot, ["probs"])["probs"],
                     rtol=2e-6, atol=1e-6)
        assert_close(gpu.bernoulli_logits_grad(data, logits, cot),
                     bern_logits.log_prob_vjp(data, cot, ["logits"])["logits"], rtol=2e-6, atol=1e-6)

    loc, scale, noise, cot = randn(4, 5, scale=3.0), np.exp(randn(4, 5)), randn(4, 5), randn(4, 5)
    normal = dist.Normal(loc, scale, validate_args=False)
    value = loc + scale * noise
    assert_close(gpu.normal_rsample(loc, scale, noise), value)
    assert_close(gpu.normal_log_prob(value, loc, scale), normal.log_prob(value), rtol=1e-5, atol=1e-6)
    expected = normal.log_prob_vjp(value, cot, ["value", "loc", "scale"])
    got = gpu.normal_log_prob_grads(value, loc, scale, cot, ["value", "loc", "scale"])
    for name in expected:
        assert_close(got[name], expected[name], rtol=1e-5, atol=1e-6)
    q = dist.Normal(randn(4, 5), np.exp(randn(4, 5)), validate_args=False)
    assert_close(gpu.kl_normal_normal(loc, scale, q.loc, q.scale), dist.kl_divergence(normal, q), rtol=1e-5, atol=1e-6)
    ref_p, ref_q = dist.kl_divergence_vjp(normal, q, cot, ["loc", "scale"], ["loc", "scale"])
    got_p, got_q = gpu.kl_normal_normal_grads(loc, scale, q.loc, q.scale, cot, ["loc", "scale"], ["loc", "scale"])
    for name in ref_p:
        assert_close(got_p[name], ref_p[name], rtol=1e-5, atol=1e-6)
        assert_close(got_q[name], ref_q[name], rtol=1e-5, atol=1e-6)

    for optim_cls, args in ((Adam, {"lr": 1e-2, "weight_decay": 0.1}),
                            (ClippedAdam, {"lr": 1e-2, "clip_norm": 0.5, "lrd": 0.99, "centered_variance": True})):
        reference, params = optim_cls(dict(args)), {"w": randn(3, 4)}
        moments = {"exp_avg": np.zeros_like(params["w"]), "exp_avg_sq": np.zeros_like(params["w"])}
        fused, lr = params["w"].copy(), args["lr"]
        for step in range(1, 4):
            grads = {"w": randn(3, 4, scale=2.0)}
            reference.step(params, grads)
            lr *= args.get("lrd", 1.0)
            gpu.adam_update(fused, grads["w"], moments["exp_avg"], moments["exp_avg_sq"], lr=lr, beta1=0.9,
                            beta2=0.999, eps=1e-8, weight_decay=args.get("weight_decay", 0.0), step=step,
                            clip=args.get("clip_norm", np.inf), centered=args.get("centered_variance", False),
                            clipped_adam=optim_cls is ClippedAdam)
        assert_close(fused, params["w"], rtol=1e-5, atol=1e-6)

    # without CuPy (or without a GPU) a CuPy-looking array gets a clear error, not a crash
    try:
        import cupy  # noqa: F401
    except ImportError:
        fake_cupy_array = type("ndarray", (), {"__module__": "cupy._core.core", "dtype": np.dtype(f32),
                                               "flags": types.SimpleNamespace(c_contiguous=True)})
        minippl.set_backend("numba")
        try:
            backend._kernels_for(fake_cupy_array())
        except RuntimeError as error:
            assert "CuPy" in str(error) and "pip install" in str(error), error
        else:
            raise AssertionError("no error for GPU arrays without CuPy")
    print("all GPU kernel checks passed")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    run_checks()
