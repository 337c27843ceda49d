"""The systems that benchmarks/vae_epoch.py times: one trainer per system, each returning an epoch function.

Every trainer builds the same model (784-400-50, softplus, Normal latent, Bernoulli pixels / 255,
batch 256 reshuffled each epoch, Adam 1e-3, one-particle Trace_ELBO, float32) in its own way:
minippl (either backend) through examples/vae_mnist.py exactly as users run it (this tree's, or
another checkout's minippl and examples/ after use_tree: vae_epoch.py's --baseline), Pyro and
NumPyro as their own examples write it, the hand-written step of vae_plain_step.py, and the GEMM floor.
Pyro, torch, NumPyro and JAX are imported only inside their trainers.
"""
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
BATCH, HIDDEN, Z_DIM, LR = 256, 400, 50, 1e-3
EXAMPLES = ROOT / "examples"  # where vae_mnist.py and mnist.py come from: use_tree() points it elsewhere


def use_tree(tree):
    """Make this process import minippl, and the VAE example, from another checkout at ``tree``.

    Call before anything imports minippl. ``PYTHONPATH=tree`` alone is not enough: it finds
    ``tree/minippl``, but setup.cfg installs ``kernels/`` as ``minippl.kernels`` (package_dir), and
    the editable install's finder would still answer that name with THIS tree's kernels/. So a
    finder put first on ``sys.meta_path`` maps both names into ``tree``, as the install maps them.
    """
    import importlib.util

    global EXAMPLES
    tree = pathlib.Path(tree).resolve()
    folders = {"minippl": tree / "minippl", "minippl.kernels": tree / "kernels"}

    class TreeFinder:
        @staticmethod
        def find_spec(fullname, path=None, target=None):
            folder = folders.get(fullname)
            if folder is None or not (folder / "__init__.py").is_file():
                return None
            return importlib.util.spec_from_file_location(fullname, folder / "__init__.py",
                                                          submodule_search_locations=[str(folder)])

    sys.meta_path.insert(0, TreeFinder)
    EXAMPLES = tree / "examples"


def minippl_outside(tree):
    """The loaded minippl modules whose file is not inside ``tree`` (empty when the right checkout ran)."""
    tree = pathlib.Path(tree).resolve()
    return sorted(name for name, module in list(sys.modules.items())
                  if name.split(".")[0] == "minippl" and getattr(module, "__file__", None)
                  and tree not in pathlib.Path(module.__file__).resolve().parents)


def load_pixels(train_limit):
    """uint8 MNIST training images -> float32 (N, 784) in [0, 1], as examples/vae_mnist.py prepares them."""
    import numpy as np

    sys.path.insert(0, str(EXAMPLES))
    from mnist import load_mnist

    images = load_mnist()[0][:train_limit]
    return images.reshape(len(images), 784).astype(np.float32) / np.float32(255.0)


def batches(n, rng):
    order = rng.permutation(n)
    return [order[start:start + BATCH] for start in range(0, n, BATCH)]


def minippl_trainer(backend, x, step_only=False):
    """An epoch function; with ``step_only``, a function of one batch's row indices instead."""
    import numpy as np

    import minippl
    from minippl.infer import SVI, Trace_ELBO
    from minippl.optim import Adam
    from vae_mnist import VAE  # the example's model and guide, exactly as users run them

    minippl.set_backend(backend)
    minippl.clear_param_store()
    minippl.set_rng_seed(0)
    vae = VAE(Z_DIM, HIDDEN)
    svi = SVI(vae.model, vae.guide, Adam({"lr": LR}), Trace_ELBO())
    rng = np.random.default_rng(1)
    if step_only:
        return lambda idx: svi.step(x[idx])

    def epoch():
        return sum(svi.step(x[idx]) for idx in batches(len(x), rng))
    return epoch


def pyro_trainer(x):
    import numpy as np
    import pyro
    import pyro.distributions as dist
    import torch
    from pyro.infer import SVI, Trace_ELBO
    from pyro.optim import Adam

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc21, self.fc22 = (torch.nn.Linear(784, HIDDEN), torch.nn.Linear(HIDDEN, Z_DIM),
                                              torch.nn.Linear(HIDDEN, Z_DIM))

        def forward(self, x):
            hidden = torch.nn.functional.softplus(self.fc1(x.reshape(-1, 784)))
            return self.fc21(hidden), torch.exp(self.fc22(hidden))

    class Decoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc21 = torch.nn.Linear(Z_DIM, HIDDEN), torch.nn.Linear(HIDDEN, 784)

        def forward(self, z):
            return torch.sigmoid(self.fc21(torch.nn.functional.softplus(self.fc1(z))))

    encoder, decoder = Encoder(), Decoder()

    def model(x):
        pyro.module("decoder", decoder)
        with pyro.plate("data", x.shape[0]):
            z_loc = x.new_zeros(torch.Size((x.shape[0], Z_DIM)))
            z_scale = x.new_ones(torch.Size((x.shape[0], Z_DIM)))
            z = pyro.sample("latent", dist.Normal(z_loc, z_scale).to_event(1))
            # grey pixels in [0, 1]: Pyro's own example turns the Bernoulli's validation off for them
            pyro.sample("obs", dist.Bernoulli(decoder(z), validate_args=False).to_event(1), obs=x.reshape(-1, 784))

    def guide(x):
        pyro.module("encoder", encoder)
        with pyro.plate("data", x.shape[0]):
            z_loc, z_scale = encoder(x)
            pyro.sample("latent", dist.Normal(z_loc, z_scale).to_event(1))

    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    svi = SVI(model, guide, Adam({"lr": LR}), loss=Trace_ELBO())
    data = torch.from_numpy(x)
    rng = np.random.default_rng(1)

    def epoch():
        return sum(svi.step(data[torch.from_numpy(idx)]) for idx in batches(len(x), rng))
    return epoch


def numpyro_trainer(x):
    import jax
    import jax.numpy as jnp
    import numpy as np
    import numpyro
    import numpyro.distributions as dist
    from jax.example_libraries import stax
    from numpyro.infer import SVI, Trace_ELBO

    encoder_net = stax.serial(stax.Dense(HIDDEN), stax.Softplus, stax.FanOut(2),
                              stax.parallel(stax.Dense(Z_DIM), stax.serial(stax.Dense(Z_DIM), stax.Exp)))
    decoder_net = stax.serial(stax.Dense(HIDDEN), stax.Softplus, stax.Dense(784), stax.Sigmoid)

    eps = float(jnp.finfo(jnp.float32).eps)

    def model(x):
        decode = numpyro.module("decoder", decoder_net, (BATCH, Z_DIM))
        with numpyro.plate("data", x.shape[0]):
            z = numpyro.sample("latent", dist.Normal(jnp.zeros((x.shape[0], Z_DIM)), 1.0).to_event(1))
            # torch (so Pyro and minippl) clamps Bernoulli probs to [eps, 1 - eps]; NumPyro does not,
            # and a saturated sigmoid would make the loss infinite: clamp as they do. Grey pixels are
            # outside the support, which NumPyro's validation turns into -inf: off, as Pyro's example
            probs = jnp.clip(decode(z), eps, 1 - eps)
            numpyro.sample("obs", dist.Bernoulli(probs, validate_args=False).to_event(1), obs=x)

    def guide(x):
        encode = numpyro.module("encoder", encoder_net, (BATCH, 784))
        with numpyro.plate("data", x.shape[0]):
            z_loc, z_scale = encode(x)
            numpyro.sample("latent", dist.Normal(z_loc, z_scale).to_event(1))

    svi = SVI(model, guide, numpyro.optim.Adam(LR), Trace_ELBO())
    state = [svi.init(jax.random.PRNGKey(0), jnp.asarray(x[:BATCH]))]
    update = jax.jit(svi.update)
    rng = np.random.default_rng(1)

    def epoch():
        total = 0.0
        for idx in batches(len(x), rng):
            state[0], loss = update(state[0], jnp.asarray(x[idx]))
            total = total + loss  # stays on the device: no synchronisation per step
        return float(total)  # waits for the epoch's last update
    return epoch


def gemm_trainer(x):
    """Only the matrix products of each step, at the VAE's shapes and in Dense's layouts:
    forward x @ W.T (5), weight gradients g.T @ x (5), input gradients g @ W (4: not the first
    layer's, whose input is data)."""
    import numpy as np

    rng = np.random.default_rng(0)
    layers = [(784, HIDDEN, False), (HIDDEN, Z_DIM, True), (HIDDEN, Z_DIM, True), (Z_DIM, HIDDEN, True),
              (HIDDEN, 784, True)]
    weights = [rng.standard_normal((out, inp), dtype=np.float32) for inp, out, _ in layers]
    arrays = {n: rng.standard_normal((BATCH, n), dtype=np.float32) for n in (784, HIDDEN, Z_DIM)}
    shuffle = np.random.default_rng(1)

    def epoch():
        for idx in batches(len(x), shuffle):
            rows = len(idx)
            for (inp, out, input_grad), w in zip(layers, weights):
                a, g = arrays[inp][:rows], arrays[out][:rows]  # an input and a gradient of the output
                a @ w.T
                g.T @ a
                if input_grad:
                    g @ w
        return 0.0
    return epoch


def plain_trainer(x):
    """vae_plain_step.py: the numba backend's math and kernels as one straight function."""
    import numpy as np

    from vae_plain_step import PlainTrainer

    trainer = PlainTrainer(seed=0, lr=LR)
    rng = np.random.default_rng(1)

    def epoch():
        return sum(trainer.step(x[idx]) for idx in batches(len(x), rng))
    return epoch


TRAINERS = {"numba": lambda x: minippl_trainer("numba", x), "numpy": lambda x: minippl_trainer("numpy", x),
            "pyro": pyro_trainer, "numpyro": numpyro_trainer, "plain": plain_trainer, "gemm": gemm_trainer}
