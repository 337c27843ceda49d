"""minippl: Pyro's programming model on NumPy, with every gradient derived by hand.

Read the source as a course, in the order of README.md's "Read the source as a course": from
``backend.py`` (arrays) and ``traced.py`` (traced values) through the distributions, the effect
system, params, neural modules and inference, to the fused kernels. That order is also the
import order (tests/test_course_order.py).
"""
import random

import numpy as np

from . import distributions, handlers, ops_arrays, ops_elementwise, ops_products  # the ops register themselves
from .backend import get_backend, set_backend, set_global_rng
from .handlers import condition, do
from .params import clear_param_store, get_param_store
from .plate import plate, plate_stack
from .primitives import deterministic, factor, module, param, sample
from .validation import enable_validation, is_validation_enabled, validation_enabled
from . import kernels  # noqa: E402,F401  (chapter 7 plugs the fused kernels into backend.fusable)
from . import infer, nn, optim  # noqa: E402  (so `import minippl` alone gives minippl.infer..., as Pyro does)

__version__ = "0.1.0"


def set_rng_seed(rng_seed):
    """Seed minippl's global generator (used by every draw outside a ``seed`` handler), and, as
    Pyro's does, NumPy's legacy global generator (``np.random.rand``...) and Python's ``random``."""
    set_global_rng(rng_seed)
    np.random.seed(rng_seed % 2**32 if isinstance(rng_seed, int) else rng_seed)  # the legacy one takes 32 bits
    random.seed(rng_seed)


__all__ = [
    "clear_param_store", "condition", "deterministic", "distributions", "do", "enable_validation", "factor",
    "get_backend", "get_param_store", "handlers", "infer", "nn", "optim", "set_backend",
    "is_validation_enabled", "module", "param", "plate", "plate_stack", "sample", "set_rng_seed",
    "validation_enabled",
]
