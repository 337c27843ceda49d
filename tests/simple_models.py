"""The smallest complete model and guide, shared by the SVI, NaN-guard and checkpoint tests.

z ~ N(0, 1); x_i ~ N(z, 1) in a plate. The guide N(loc, scale) has a positive-constrained
scale, so both an unconstrained and a constrained param are trained.
"""
import numpy as np

import minippl
import minippl.distributions as dist
from minippl.distributions import constraints


def model(x):
    z = minippl.sample("z", dist.Normal(0.0, 1.0))
    with minippl.plate("data", len(x)):
        minippl.sample("x", dist.Normal(z, 1.0), obs=x)


def guide(x):
    loc = minippl.param("loc", np.array(0.0))
    scale = minippl.param("scale", np.array(1.0), constraint=constraints.positive)
    minippl.sample("z", dist.Normal(loc, scale))
