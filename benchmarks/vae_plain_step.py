"""The VAE's training step written out by hand: the fused kernels and BLAS, with no PPL around them.

Teaches (by contrast): what minippl's machinery costs. This is the same step that ``SVI.step``
takes for examples/vae_mnist.py (same math, same kernels from minippl.kernels.cpu, same Adam,
same matrix products in Dense's layouts), but as one straight function: no handlers, no traces,
no tape, no validation, no checks beyond one finiteness test before the update. The time between
it and the GEMM floor is the elementwise work itself; the time between it and minippl's numba
backend is what tracing, the tape and validation cost. ``tests/test_plain_step.py`` checks that
its loss and gradients equal minippl's for the same parameters and noise.

    python benchmarks/vae_plain_step.py        # ms per step: plain step, minippl, the products alone
"""
import math
import time

import numpy as np

from minippl.kernels import cpu

HALF_LOG_2PI = np.float32(0.5 * math.log(2 * math.pi))
# (store name, shape) of the VAE's parameters, in minippl.module's naming: Dense weight (out, in)
LAYERS = {"encoder$$$fc1": (784, 400), "encoder$$$fc21": (400, 50), "encoder$$$fc22": (400, 50),
          "decoder$$$fc1": (50, 400), "decoder$$$fc21": (400, 784)}


def dense(x, weight, bias):
    y = x @ weight.T
    return cpu.add_bias_(y, bias)


def dense_backward(x, weight, grad_y, grads, name, input_grad=True):
    # dW = g^T x ; db = sum over rows of g ; dx = g W (skipped for the data layer)
    grads[name + ".weight"] = grad_y.T @ x
    grads[name + ".bias"] = cpu.bias_grad(grad_y)
    return grad_y @ weight if input_grad else None


def loss_and_grads(params, x, noise):
    """-ELBO (one particle) and d(-ELBO)/d(every param) for a batch ``x`` (rows, 784) and the
    guide's N(0, 1) ``noise`` (rows, 50). ``params``: {store name: float32 array}."""
    w = lambda layer: (params[layer + ".weight"], params[layer + ".bias"])  # noqa: E731
    # guide: q(z | x) = N(loc, exp(pre_scale))
    h_enc, slope_enc = cpu.softplus_forward(dense(x, *w("encoder$$$fc1")))
    loc = dense(h_enc, *w("encoder$$$fc21"))
    scale = cpu.exp_forward(dense(h_enc, *w("encoder$$$fc22")))
    z = cpu.normal_rsample(loc, scale, noise)
    # model: p(z) = N(0, I), p(x | z) = Bernoulli(sigmoid(decoder(z)))
    h_dec, slope_dec = cpu.softplus_forward(dense(z, *w("decoder$$$fc1")))
    probs = cpu.sigmoid_forward(dense(h_dec, *w("decoder$$$fc21")))
    log_q = cpu.normal_log_prob(z, loc, scale)
    log_prior = -0.5 * z * z - HALF_LOG_2PI
    log_lik = cpu.bernoulli_probs_log_prob(x, probs)
    loss = float(log_q.sum(dtype=np.float64) - log_prior.sum(dtype=np.float64) - log_lik.sum(dtype=np.float64))

    grads = {}
    rows = x.shape[0]
    # d loss / d probs = -d log_lik / d probs, the cotangent -1 per image (one event per row)
    grad_probs = cpu.bernoulli_probs_grad(x, probs, np.full((rows, 1), -1.0, dtype=np.float32))
    grad_logits = cpu.sigmoid_backward(probs, grad_probs)
    grad_h_dec = dense_backward(h_dec, w("decoder$$$fc21")[0], grad_logits, grads, "decoder$$$fc21")
    grad_z = dense_backward(z, w("decoder$$$fc1")[0], grad_h_dec * slope_dec, grads, "decoder$$$fc1")
    grad_z += z  # -d log N(z | 0, 1) / dz = z
    ones = np.ones_like(z)  # log q enters the loss with +1
    guide = cpu.normal_log_prob_grads(z, loc, scale, ones, ["value", "loc", "scale"])
    grad_z += guide["value"]
    # z = loc + scale * noise: dloc = dz, dscale = dz * noise; scale = exp(pre): dpre = dscale * scale
    grad_loc = guide["loc"] + grad_z
    grad_pre_scale = (guide["scale"] + grad_z * noise) * scale
    grad_h_enc = dense_backward(h_enc, w("encoder$$$fc21")[0], grad_loc, grads, "encoder$$$fc21")
    grad_h_enc += dense_backward(h_enc, w("encoder$$$fc22")[0], grad_pre_scale, grads, "encoder$$$fc22")
    dense_backward(x, w("encoder$$$fc1")[0], grad_h_enc * slope_enc, grads, "encoder$$$fc1", input_grad=False)
    return loss, grads


def init_params(rng):
    params = {}
    for layer, (fan_in, fan_out) in LAYERS.items():
        bound = np.float32(1 / math.sqrt(fan_in))
        params[layer + ".weight"] = rng.uniform(-bound, bound, (fan_out, fan_in)).astype(np.float32)
        params[layer + ".bias"] = rng.uniform(-bound, bound, fan_out).astype(np.float32)
    return params


class PlainTrainer:
    """Adam 1e-3 on ``loss_and_grads``, refusing a non-finite step as SVI does."""

    def __init__(self, seed=0, lr=1e-3):
        self.rng = np.random.default_rng(seed)
        self.params = init_params(self.rng)
        self.names = list(self.params)
        self.moments = [(np.zeros_like(a), np.zeros_like(a)) for a in self.params.values()]
        self.lr, self.steps = lr, 0

    def step(self, x):
        noise = self.rng.standard_normal((x.shape[0], 50), dtype=np.float32)
        loss, grads = loss_and_grads(self.params, x, noise)
        ordered = [grads[name] for name in self.names]
        if not (math.isfinite(loss) and cpu.all_finite_many(ordered)):  # SVI's guard, the same kernel
            raise FloatingPointError(f"step {self.steps + 1}: loss or gradient not finite; nothing changed")
        self.steps += 1
        settings = [cpu.adam_settings(lr=self.lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                                      step=self.steps)] * len(ordered)
        cpu.adam_update_many([self.params[n] for n in self.names], ordered, [m for m, _ in self.moments],
                             [v for _, v in self.moments], settings)
        return loss


def main():
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
    from vae_systems import BATCH, batches, gemm_trainer, load_pixels, minippl_trainer

    x = load_pixels(60000)
    plain = PlainTrainer()
    rng = np.random.default_rng(1)
    systems = {"plain step (no PPL)": lambda idx: plain.step(x[idx]),
               "minippl numba backend": minippl_trainer("numba", x, step_only=True)}
    gemm_epoch = gemm_trainer(x)
    order = batches(len(x), rng)[:200]
    times = {name: [] for name in (*systems, "GEMM floor")}
    for _ in range(5):  # alternate, 200 steps each
        for name, step in systems.items():
            start = time.perf_counter()
            for idx in order:
                step(idx)
            times[name].append((time.perf_counter() - start) / len(order))
        start = time.perf_counter()
        gemm_epoch()
        times["GEMM floor"].append((time.perf_counter() - start) / -(-len(x) // BATCH))
    floor = np.median(times["GEMM floor"])
    print(f"{'system':24} {'ms/step':>8} {'x floor':>8}")
    for name, values in times.items():
        print(f"{name:24} {1e3 * np.median(values):8.2f} {np.median(values) / floor:8.2f}")


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    main()
