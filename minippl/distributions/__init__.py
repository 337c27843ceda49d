"""minippl.distributions, imported as ``import minippl.distributions as dist``.

Chapter 2 of the course (README.md): constraints.py, constraint_registry.py, distribution.py, then one file per
distribution, then kl.py.
"""
from . import constraint_registry, constraints, transforms
from .constraint_registry import biject_to
from .bernoulli import Bernoulli
from .beta import Beta
from .binomial import Binomial
from .categorical import Categorical
from .cauchy import Cauchy
from .counts import Geometric, Poisson
from .delta import Delta
from .dirichlet import Dirichlet
from .distribution import Distribution, Independent, MaskedDistribution
from .exponential import Exponential, Laplace
from .gamma import Gamma
from .gumbel import Gumbel
from .half import HalfCauchy, HalfNormal
from .kl import kl_divergence, kl_divergence_vjp
from .lognormal import LogNormal
from .multivariate_normal import LowRankMultivariateNormal, MultivariateNormal
from .normal import Normal
from .one_hot_categorical import OneHotCategorical
from .student_t import Chi2, InverseGamma, StudentT
from .transformed import TransformedDistribution
from .uniform import Uniform

__all__ = [
    "Bernoulli",
    "Beta",
    "Binomial",
    "Categorical",
    "Chi2",
    "Cauchy",
    "Delta",
    "Dirichlet",
    "Distribution",
    "Exponential",
    "Geometric",
    "Gamma",
    "Gumbel",
    "HalfCauchy",
    "HalfNormal",
    "Independent",
    "InverseGamma",
    "Laplace",
    "LogNormal",
    "MaskedDistribution",
    "LowRankMultivariateNormal",
    "MultivariateNormal",
    "Normal",
    "TransformedDistribution",
    "OneHotCategorical",
    "Poisson",
    "StudentT",
    "Uniform",
    "constraints",
    "kl_divergence",
    "kl_divergence_vjp",
    "transforms",
]
