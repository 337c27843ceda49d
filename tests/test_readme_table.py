"""README.md's table of distributions is rebuilt from the code here, so it cannot go stale.

Each distribution that ``minippl.distributions`` exports (the wrappers ``Independent``,
``MaskedDistribution`` and ``TransformedDistribution`` aside: all three keep their base's rsample,
the first two its support; ``Independent`` keeps its closed-form KL, the other two have none; a
TransformedDistribution's support is its last transform's codomain) must have a row, and each row
must say what the code says:

* rsample: ``none`` where ``has_rsample`` is False; ``implicit`` where the gradient is an
  implicit slope (the class lives in gamma.py or beta.py, or is made from gamma.py's Gamma
  draws: its module imports gamma.py's sampler); ``explicit`` otherwise;
* KL: ``yes`` where ``kl_divergence(d, d)`` has a closed form (kl.py's pairs are all of one
  family), ``no`` where it raises ``NotImplementedError``;
* ``enumerate_support``: ``has_enumerate_support`` (Pyro's flag), or else whether the method exists;
* support: the constraint's name (``support.spec`` up to its arguments, which depend on the
  distribution's own, so the README names them).
"""
import inspect
import pathlib
import re

import numpy as np
import pytest

import minippl.distributions as dist
from minippl.distributions import beta, gamma

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
HEADING = "## The distributions at a glance"
WRAPPERS = {"Distribution", "Independent", "MaskedDistribution", "TransformedDistribution"}

# one small instance of each (a new distribution needs a line here and a row in the README)
EXAMPLES = {
    "Bernoulli": lambda: dist.Bernoulli(probs=0.3),
    "Beta": lambda: dist.Beta(2.0, 3.0),
    "Binomial": lambda: dist.Binomial(5, probs=0.3),
    "Categorical": lambda: dist.Categorical(probs=np.array([0.2, 0.8])),
    "Cauchy": lambda: dist.Cauchy(0.0, 1.0),
    "Chi2": lambda: dist.Chi2(3.0),
    "Delta": lambda: dist.Delta(1.0),
    "Dirichlet": lambda: dist.Dirichlet(np.array([1.0, 2.0])),
    "Exponential": lambda: dist.Exponential(2.0),
    "Gamma": lambda: dist.Gamma(2.0, 3.0),
    "Geometric": lambda: dist.Geometric(probs=0.3),
    "Gumbel": lambda: dist.Gumbel(0.0, 1.0),
    "HalfCauchy": lambda: dist.HalfCauchy(1.0),
    "HalfNormal": lambda: dist.HalfNormal(1.0),
    "InverseGamma": lambda: dist.InverseGamma(2.0, 3.0),
    "Laplace": lambda: dist.Laplace(0.0, 1.0),
    "LogNormal": lambda: dist.LogNormal(0.0, 1.0),
    "LowRankMultivariateNormal": lambda: dist.LowRankMultivariateNormal(np.zeros(2), np.ones((2, 1)), np.ones(2)),
    "MultivariateNormal": lambda: dist.MultivariateNormal(np.zeros(2), scale_tril=np.eye(2)),
    "Normal": lambda: dist.Normal(0.0, 1.0),
    "OneHotCategorical": lambda: dist.OneHotCategorical(probs=np.array([0.2, 0.8])),
    "Poisson": lambda: dist.Poisson(2.0),
    "StudentT": lambda: dist.StudentT(3.0),
    "Uniform": lambda: dist.Uniform(0.0, 2.0),
}


def exported_distributions():
    return sorted(name for name in dist.__all__ if inspect.isclass(getattr(dist, name))
                  and issubclass(getattr(dist, name), dist.Distribution) and name not in WRAPPERS)


def facts(d):
    """(rsample, KL, enumerate_support, support name) as the README writes them."""
    module = inspect.getmodule(type(d))
    if not d.has_rsample:
        rsample = "none"
    elif module in (gamma, beta) or getattr(module, "Gamma", None) is gamma.Gamma or hasattr(module, "_standard_gamma"):
        rsample = "implicit"
    else:
        rsample = "explicit"
    try:
        dist.kl_divergence(d, d)
        kl = "yes"
    except NotImplementedError:
        kl = "no"
    # Pyro's flag where the class has it, else whether the method exists
    enumerable = getattr(d, "has_enumerate_support", None)
    enumerable = hasattr(d, "enumerate_support") if enumerable is None else enumerable
    enumerate_support = "yes" if enumerable else "no"
    return rsample, kl, enumerate_support, re.match(r"\w+", d.support.spec).group()


def readme_rows():
    """``{name: (rsample, KL, enumerate_support, support name)}`` from the README's table."""
    text = README.read_text(encoding="utf-8")
    assert HEADING in text, f"README.md has no section {HEADING!r}"
    section = text.split(HEADING, 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip().strip("`") for cell in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 5:
            rows[cells[0]] = (*cells[1:4], re.match(r"\w+", cells[4]).group())
    return rows


def test_every_exported_distribution_has_an_example_and_a_row():
    names = exported_distributions()
    assert sorted(EXAMPLES) == names, "add the new distribution to EXAMPLES here and to the README's table"
    assert sorted(readme_rows()) == names


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_readme_row_matches_the_code(name):
    rows = readme_rows()
    assert name in rows, f"README.md's table has no row for {name}"
    assert rows[name] == facts(EXAMPLES[name]()), f"{name}: README row vs the code"
