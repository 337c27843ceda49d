"""minippl: Pyro's programming model on NumPy, with every gradient derived by hand.

Read the source as a course, in the order of README.md's "Read the source as a course": from
``backend.py`` (arrays) and ``traced.py`` (traced values) through the distributions, the effect
system, params, neural modules and inference, to the fused kernels. That order is also the
import order (tests/test_course_order.py).
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
