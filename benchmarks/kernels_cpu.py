"""Each fused CPU kernel against the NumPy reference it replaces, at the VAE's shapes (float32).

A kernel is only worth having where it beats the reference's in-place ufuncs, which NumPy
vectorises with AVX-512; this prints both times (best of several repeats, one thread) and the
speed-up, so that claim is checked on the machine at hand.

    python benchmarks/kernels_cpu.py
"""
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import time  # noqa: E402

import numpy as np  # noqa: E402

import minippl  # noqa: E402
import minippl.distributions as dist  # noqa: E402
from minippl import nn  # noqa: E402
from minippl.kernels import cpu  # noqa: E402
from minippl.optim import Adam  # noqa: E402


def best_ms(fn, number=30, repeats=15):
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - start) / number)
    return 1e3 * best


def cases():
    rng = np.random.default_rng(0)
    f32 = np.float32
    hidden = (rng.standard_normal((256, 400)) * 3).astype(f32)
    logits = (rng.standard_normal((256, 784)) * 3).astype(f32)
    pixels = rng.random((256, 784), dtype=f32)
    probs = cpu.sigmoid_forward(logits)
    per_row = np.broadcast_to(f32(-1.0), probs.shape)
    z = rng.standard_normal((256, 50)).astype(f32)
    scale = np.exp(z)
    bias = rng.standard_normal(784).astype(f32)
    bernoulli = dist.Bernoulli(probs, validate_args=False)
    normal = dist.Normal(z, scale, validate_args=False)
    softplus, sigmoid, tanh = nn.Softplus(), nn.Sigmoid(), nn.Tanh()
    # Adam over the VAE's 688,884 parameters, in its two big matrices and the rest
    sizes = (313600, 313600, 40000, 20000, 1684)
    params = [rng.standard_normal(n).astype(f32) for n in sizes]
    grads = [rng.standard_normal(n).astype(f32) for n in sizes]
    adam = Adam({"lr": 1e-3})
    moments = [(np.zeros_like(p), np.zeros_like(p)) for p in params]
    state = {i: {"step": 0, "exp_avg": m.copy(), "exp_avg_sq": v.copy()} for i, (m, v) in enumerate(moments)}
    hyper = adam.hyperparameters("p")

    def adam_reference():
        for i, (p, g) in enumerate(zip(params, grads)):
            Adam.update(adam, p, g, state[i], hyper)

    settings = [cpu.adam_settings(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, step=10)] * len(sizes)

    def adam_fused():  # what optim.Adam does under the numba backend: one call for all parameters
        cpu.adam_update_many(params, grads, [m for m, _ in moments], [v for _, v in moments], settings)

    return [
        ("softplus forward 256x400 (+ slope)", lambda: softplus.forward(hidden), lambda: cpu.softplus_forward(hidden)),
        ("sigmoid forward 256x784", lambda: sigmoid.forward(logits), lambda: cpu.sigmoid_forward(logits)),
        ("sigmoid backward 256x784", lambda: sigmoid.backward(probs, pixels, (True,)),
         lambda: cpu.sigmoid_backward(probs, pixels)),
        ("tanh backward 256x400", lambda: tanh.backward(hidden, hidden, (True,)),
         lambda: cpu.tanh_backward(hidden, hidden)),
        ("exp 256x784", lambda: np.exp(logits), lambda: cpu.exp_forward(logits)),
        ("bias add 256x784", lambda: logits.__iadd__(bias), lambda: cpu.add_bias_(logits, bias)),
        ("bias gradient 256x784", lambda: pixels.sum(axis=0), lambda: cpu.bias_grad(pixels)),
        ("Bernoulli(probs) log_prob 256x784", lambda: bernoulli.log_prob(pixels),
         lambda: cpu.bernoulli_probs_log_prob(pixels, probs)),
        ("Bernoulli(probs) grad 256x784", lambda: bernoulli.log_prob_vjp(pixels, per_row, ["probs"]),
         lambda: cpu.bernoulli_probs_grad(pixels, probs, per_row)),
        ("Normal log_prob 256x50", lambda: normal.log_prob(z), lambda: cpu.normal_log_prob(z, z, scale)),
        ("Normal grads (value, loc, scale) 256x50", lambda: normal.log_prob_vjp(z, z, ["value", "loc", "scale"]),
         lambda: cpu.normal_log_prob_grads(z, z, scale, z, ["value", "loc", "scale"])),
        ("Adam step, 688,884 params in 5 arrays", adam_reference, adam_fused),
    ]


def main():
    previous = minippl.get_backend()
    minippl.set_backend("numpy")  # the layers and distributions below run their reference code
    print(f"{'kernel':42s} {'numpy ms':>9s} {'fused ms':>9s} {'speed-up':>9s}")
    for name, reference, fused in cases():
        ref, new = best_ms(reference), best_ms(fused)
        print(f"{name:42s} {ref:9.3f} {new:9.3f} {ref / new:8.1f}x")
    minippl.set_backend(previous)


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    main()
