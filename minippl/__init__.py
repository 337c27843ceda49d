"""minippl: Pyro's programming model on NumPy, with every gradient derived by hand.

Read the source as a course, in this order:

1. ``distributions/``  sampling, log_prob, reparameterisation and their derivatives
2. ``runtime.py``, ``traced.py``, ``ops_elementwise.py``, ``ops_arrays.py``, ``ops_products.py``,
   ``handlers.py``, ``plate.py``, ``primitives.py``  the effect system, and traced values (NumPy arithmetic
   between sites, recorded with hand-written VJPs); ``validation.py``  the checks that name
   the site and the fix (``enable_validation``)
3. ``distributions/constraints.py``, ``params.py``  unconstrained storage and its VJPs
4. ``nn/``  dense layers with manual backprop; ``module()`` registration
5. ``infer/tape.py``, ``infer/elbo.py``  the ELBO: trace the guide, replay the model,
   read both traces backwards
6. ``infer/svi.py``, ``optim.py``  SVI and optimisers
7. ``kernels/``  the same math, fused, on CPU and GPU
"""
from . import distributions, handlers, ops_arrays, ops_elementwise, ops_products  # the ops register themselves
from .backend import get_backend, set_backend, set_global_rng
from .params import clear_param_store, get_param_store
from .plate import plate
from .primitives import deterministic, module, param, sample
from .validation import enable_validation, is_validation_enabled, validation_enabled
from . import kernels  # noqa: E402,F401  (chapter 7 plugs the fused kernels into backend.fusable)

__version__ = "0.1.0"


def set_rng_seed(rng_seed):
    """Seed minippl's global generator (used by every draw outside a ``seed`` handler)."""
    set_global_rng(rng_seed)


__all__ = [
    "clear_param_store", "deterministic", "distributions", "enable_validation", "get_backend", "get_param_store",
    "handlers", "set_backend",
    "is_validation_enabled", "module", "param", "plate", "sample", "set_rng_seed", "validation_enabled",
]
