"""minippl.distributions, imported as ``import minippl.distributions as dist``.

Chapter 2 of the course (README.md): constraints.py, distribution.py, then one file per
distribution, then kl.py.
"""
from . import constraints
from .bernoulli import Bernoulli
from .categorical import Categorical
from .cauchy import Cauchy
from .delta import Delta
from .distribution import Distribution, Independent, MaskedDistribution
from .exponential import Exponential, Laplace
from .gumbel import Gumbel
from .half import HalfCauchy, HalfNormal
from .kl import kl_divergence, kl_divergence_vjp
from .lognormal import LogNormal
from .normal import Normal
from .uniform import Uniform

__all__ = [
    "Bernoulli",
    "Categorical",
    "Cauchy",
    "Delta",
    "Distribution",
    "Exponential",
    "Gumbel",
    "HalfCauchy",
    "HalfNormal",
    "Independent",
    "Laplace",
    "LogNormal",
    "MaskedDistribution",
    "Normal",
    "Uniform",
    "constraints",
    "kl_divergence",
    "kl_divergence_vjp",
]
