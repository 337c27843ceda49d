"""minippl.distributions, imported as ``import minippl.distributions as dist``.

Read in this order: distribution.py (shapes, wrappers, the VJP contract),
normal.py, bernoulli.py, categorical.py, uniform.py, delta.py, kl.py. constraints.py belongs to
part 3 of the course (params and constraints).
"""
from . import constraints
from .bernoulli import Bernoulli
from .categorical import Categorical
from .delta import Delta
from .distribution import Distribution, Independent, MaskedDistribution
from .kl import kl_divergence, kl_divergence_vjp
from .normal import Normal
from .uniform import Uniform

__all__ = [
    "Bernoulli",
    "Categorical",
    "Delta",
    "Distribution",
    "Independent",
    "MaskedDistribution",
    "Normal",
    "Uniform",
    "constraints",
    "kl_divergence",
    "kl_divergence_vjp",
]
