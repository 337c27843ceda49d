"""The contract of each extension point, run on every implementation: distributions, layers, transforms.

Each contract is written once, in its base class's docstring, with a complete small example:
``Distribution`` (distributions/distribution.py), ``Module`` (nn/module.py) and ``Transform``
(distributions/constraint_registry.py). This file runs every registered distribution, every layer that
minippl.nn exports, every transform ``biject_to`` returns and those of tests/test_transforms.py's MAKERS,
and those three docstring examples, through its contract. Float64 finite differences (finite_diff.py)
are the oracle for every derivative. A new distribution needs a case in CASES, a new transform class
a maker in MAKERS or a constraint biject_to maps onto with it (tests say so); a new layer is found on its own.
"""
import doctest
import functools
import inspect
import sys
from dataclasses import dataclass

import numpy as np
import pytest
from finite_diff import check_vjp, directional_derivative

import minippl.distributions as dist
from minippl import nn, traced
from minippl.distributions import constraint_registry, constraints
from minippl.distributions.distribution import Distribution, check_args
from minippl.nn.module import Module
from test_transforms import MAKERS as TRANSFORM_MAKERS


# ---------------------------------------------------------------- the docstring examples
@functools.lru_cache(maxsize=None)
def docstring_example(cls):
    """Run the examples in ``cls``'s docstring (they must pass) and return the names they define."""
    globs = dict(vars(sys.modules[cls.__module__]))
    test = doctest.DocTestParser().get_doctest(cls.__doc__, globs, cls.__qualname__, None, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test, clear_globs=False, out=lambda text: None)
    assert runner.failures == 0, f"the example in {cls.__qualname__}'s docstring fails: run its doctest"
    return test.globs


def example_distribution():
    return docstring_example(Distribution)["Exponential"]


def example_transform():
    return docstring_example(constraint_registry.Transform)["Affine"]


def example_layer():
    return docstring_example(Module)["Scale"]


# ---------------------------------------------------------------- distributions
@dataclass
class Case:
    """One distribution at one point: ``make(**args)`` and a ``value`` where ``log_prob`` is finite.

    ``smooth``: the names ("value" and argument names) in which log_prob is differentiable
    there, checked against finite differences; log_prob is piecewise constant in every other
    name, so its gradient there must be zero.
    """

    make: object
    args: dict
    value: np.ndarray
    smooth: tuple


def positive(rng, *shape):
    return np.exp(0.3 * rng.standard_normal(shape))


def normal_case(rng):
    # loc (3, 1) and scale (2,) broadcast to batch (3, 2): each gradient is summed back to its shape
    return Case(lambda loc, scale: dist.Normal(loc, scale),
                {"loc": rng.standard_normal((3, 1)), "scale": positive(rng, 2)},
                rng.standard_normal((4, 3, 2)), ("value", "loc", "scale"))


def bernoulli_probs_case(rng):
    return Case(lambda probs: dist.Bernoulli(probs=probs), {"probs": rng.uniform(0.2, 0.8, 3)},
                rng.uniform(0, 1, (4, 3)), ("value", "probs"))  # grey values: log_prob is linear in them


def bernoulli_logits_case(rng):
    return Case(lambda logits: dist.Bernoulli(logits=logits), {"logits": rng.standard_normal(3)},
                (rng.uniform(0, 1, (4, 3)) < 0.5).astype(float), ("value", "logits"))


def categorical_probs_case(rng):
    return Case(lambda probs: dist.Categorical(probs=probs), {"probs": rng.uniform(0.5, 1.5, (3, 4))},
                rng.integers(0, 4, (5, 3)).astype(float), ("probs",))


def categorical_logits_case(rng):
    return Case(lambda logits: dist.Categorical(logits=logits), {"logits": rng.standard_normal((3, 4))},
                rng.integers(0, 4, (5, 3)).astype(float), ("logits",))


def counts(rng, *shape, high=6):
    return rng.integers(0, high, shape).astype(float)  # integral floats, as sample() returns


def poisson_case(rng):
    # rate (3, 1) against values (4, 3, 2): the gradient is summed back to (3, 1)
    return Case(lambda rate: dist.Poisson(rate), {"rate": 3 * positive(rng, 3, 1)}, counts(rng, 4, 3, 2), ("rate",))


def geometric_probs_case(rng):
    return Case(lambda probs: dist.Geometric(probs=probs), {"probs": rng.uniform(0.2, 0.8, 3)},
                counts(rng, 4, 3), ("probs",))


def geometric_logits_case(rng):
    return Case(lambda logits: dist.Geometric(logits=logits), {"logits": rng.standard_normal(3)},
                counts(rng, 4, 3), ("logits",))


BINOMIAL_COUNTS = np.array([[6], [8], [11]])  # total_count (3, 1) broadcasts with probs (2,): batch (3, 2)


def binomial_probs_case(rng):
    return Case(lambda probs: dist.Binomial(BINOMIAL_COUNTS, probs=probs), {"probs": rng.uniform(0.2, 0.8, 2)},
                counts(rng, 4, 3, 2, high=7), ("probs",))


def binomial_logits_case(rng):
    return Case(lambda logits: dist.Binomial(BINOMIAL_COUNTS, logits=logits), {"logits": rng.standard_normal(2)},
                counts(rng, 4, 3, 2, high=7), ("logits",))


def one_hot_categorical_probs_case(rng):
    return Case(lambda probs: dist.OneHotCategorical(probs=probs), {"probs": rng.uniform(0.5, 1.5, (3, 4))},
                np.eye(4)[rng.integers(0, 4, (5, 3))], ("probs",))


def one_hot_categorical_logits_case(rng):
    return Case(lambda logits: dist.OneHotCategorical(logits=logits), {"logits": rng.standard_normal((3, 4))},
                np.eye(4)[rng.integers(0, 4, (5, 3))], ("logits",))


def uniform_case(rng):
    low = rng.standard_normal(3)
    high = low + 1 + rng.uniform(0, 1, 3)
    value = low + (high - low) * rng.uniform(0.1, 0.9, (4, 3))  # inside, away from the bounds
    return Case(lambda low, high: dist.Uniform(low, high), {"low": low, "high": high}, value,
                ("value", "low", "high"))


def delta_case(rng):
    v = rng.standard_normal((3, 2))
    return Case(lambda v, log_density: dist.Delta(v, log_density, event_dim=1),
                {"v": v, "log_density": rng.standard_normal(3)}, v.copy(), ("log_density",))


def independent_case(rng):
    return Case(lambda loc, scale: dist.Normal(loc, scale).to_event(1),
                {"loc": rng.standard_normal((3, 2)), "scale": positive(rng, 2)},
                rng.standard_normal((4, 3, 2)), ("value", "loc", "scale"))


def masked_case(rng):
    mask = np.array([True, False, True])
    return Case(lambda loc, scale: dist.Normal(loc, scale).mask(mask),
                {"loc": rng.standard_normal(3), "scale": positive(rng, 3)},
                rng.standard_normal((4, 3)), ("value", "loc", "scale"))


def example_case(rng):
    return Case(lambda rate: example_distribution()(rate), {"rate": positive(rng, 3)},
                positive(rng, 4, 3), ("value", "rate"))


def lognormal_case(rng):
    return Case(lambda loc, scale: dist.LogNormal(loc, scale),
                {"loc": 0.5 * rng.standard_normal((3, 1)), "scale": positive(rng, 2)},
                positive(rng, 4, 3, 2), ("value", "loc", "scale"))


def exponential_case(rng):
    return Case(lambda rate: dist.Exponential(rate), {"rate": positive(rng, 3)},
                positive(rng, 4, 3), ("value", "rate"))


def laplace_case(rng):
    loc = rng.standard_normal((3, 1))
    side = np.where(rng.uniform(size=(4, 3, 2)) < 0.5, -1.0, 1.0)
    value = loc + side * rng.uniform(0.2, 2.0, (4, 3, 2))  # away from the kink at loc
    return Case(lambda loc, scale: dist.Laplace(loc, scale), {"loc": loc, "scale": positive(rng, 2)},
                value, ("value", "loc", "scale"))


def cauchy_case(rng):
    return Case(lambda loc, scale: dist.Cauchy(loc, scale),
                {"loc": rng.standard_normal((3, 1)), "scale": positive(rng, 2)},
                3 * rng.standard_normal((4, 3, 2)), ("value", "loc", "scale"))


def half_normal_case(rng):
    return Case(lambda scale: dist.HalfNormal(scale), {"scale": positive(rng, 3)},
                positive(rng, 4, 3), ("value", "scale"))


def half_cauchy_case(rng):
    return Case(lambda scale: dist.HalfCauchy(scale), {"scale": positive(rng, 3)},
                3 * positive(rng, 4, 3), ("value", "scale"))


def gumbel_case(rng):
    return Case(lambda loc, scale: dist.Gumbel(loc, scale),
                {"loc": rng.standard_normal((3, 1)), "scale": positive(rng, 2)},
                rng.standard_normal((4, 3, 2)), ("value", "loc", "scale"))


def gamma_case(rng):
    # concentration (3, 1) on both sides of 1 and rate (2,): batch (3, 2), gradients summed back
    return Case(lambda concentration, rate: dist.Gamma(concentration, rate),
                {"concentration": np.array([[0.4], [1.7], [6.0]]), "rate": positive(rng, 2)},
                positive(rng, 4, 3, 2), ("value", "concentration", "rate"))


def beta_case(rng):
    return Case(lambda concentration1, concentration0: dist.Beta(concentration1, concentration0),
                {"concentration1": np.array([[0.6], [2.5], [9.0]]), "concentration0": 2 * positive(rng, 2)},
                rng.uniform(0.1, 0.9, (4, 3, 2)), ("value", "concentration1", "concentration0"))


def dirichlet_case(rng):
    # concentration (2, 3): batch (2,), event (3,); values (4, 2, 3) on the simplex, away from its edges
    return Case(lambda concentration: dist.Dirichlet(concentration),
                {"concentration": np.array([[0.5, 1.5, 4.0], [2.0, 0.8, 3.0]])},
                rng.dirichlet([3.0, 3.0, 3.0], (4, 2)), ("value", "concentration"))


def chi2_case(rng):
    return Case(lambda df: dist.Chi2(df), {"df": np.array([0.8, 3.0, 12.0])}, positive(rng, 4, 3), ("value", "df"))


def inverse_gamma_case(rng):
    return Case(lambda concentration, rate: dist.InverseGamma(concentration, rate),
                {"concentration": np.array([[0.4], [1.7], [6.0]]), "rate": positive(rng, 2)},
                positive(rng, 4, 3, 2), ("value", "concentration", "rate"))


def student_t_case(rng):
    # df (3, 1), loc (2,) and scale (2,): batch (3, 2)
    return Case(lambda df, loc, scale: dist.StudentT(df, loc, scale),
                {"df": np.array([[0.7], [3.0], [25.0]]), "loc": rng.standard_normal(2), "scale": positive(rng, 2)},
                3 * rng.standard_normal((4, 3, 2)), ("value", "df", "loc", "scale"))


def lower_cholesky(rng, *batch, d=3):
    return np.tril(0.4 * rng.standard_normal(batch + (d, d)), -1) + np.eye(d) * positive(rng, *batch, d)[..., None]


def mvn_scale_tril_case(rng):
    # loc (2, 1, 3) and scale_tril (4, 3, 3) broadcast to batch (2, 4). validate_args=False: the finite
    # differences move the upper triangle too, which MultivariateNormal never reads (its gradient is 0)
    return Case(lambda loc, scale_tril: dist.MultivariateNormal(loc, scale_tril=scale_tril, validate_args=False),
                {"loc": rng.standard_normal((2, 1, 3)), "scale_tril": lower_cholesky(rng, 4)},
                rng.standard_normal((5, 2, 4, 3)), ("value", "loc", "scale_tril"))


def mvn_covariance_case(rng):
    L = lower_cholesky(rng)
    return Case(lambda loc, covariance_matrix: dist.MultivariateNormal(loc, covariance_matrix=covariance_matrix),
                {"loc": rng.standard_normal((2, 3)), "covariance_matrix": L @ L.T},
                rng.standard_normal((4, 2, 3)), ("value", "loc", "covariance_matrix"))


def mvn_precision_case(rng):
    L = lower_cholesky(rng, 2)
    return Case(lambda loc, precision_matrix: dist.MultivariateNormal(loc, precision_matrix=precision_matrix),
                {"loc": rng.standard_normal(3), "precision_matrix": L @ np.swapaxes(L, -1, -2)},
                rng.standard_normal((4, 2, 3)), ("value", "loc", "precision_matrix"))


def low_rank_mvn_case(rng):
    # loc (2, 1, 3), cov_factor (4, 3, 2) (rank 2) and cov_diag (3,) broadcast to batch (2, 4)
    return Case(lambda loc, cov_factor, cov_diag: dist.LowRankMultivariateNormal(loc, cov_factor, cov_diag),
                {"loc": rng.standard_normal((2, 1, 3)), "cov_factor": rng.standard_normal((4, 3, 2)),
                 "cov_diag": positive(rng, 3)},
                rng.standard_normal((5, 2, 4, 3)), ("value", "loc", "cov_factor", "cov_diag"))


def transformed_case(rng):
    # Normal (3, 1) pushed through an affine map whose loc and scale are arguments too, then exp
    def make(**a):
        affine = dist.transforms.AffineTransform(a["transforms.0.loc"], a["transforms.0.scale"])
        return dist.TransformedDistribution(dist.Normal(a["loc"], a["scale"]), [affine, dist.transforms.ExpTransform()])
    return Case(make, {"loc": rng.standard_normal((3, 1)), "scale": positive(rng, 2), "transforms.0.loc":
                       0.5 * rng.standard_normal(2), "transforms.0.scale": positive(rng, 3, 1)},
                positive(rng, 4, 3, 2), ("value", "loc", "scale", "transforms.0.loc", "transforms.0.scale"))


CASES = {
    "Normal": normal_case,
    "LogNormal": lognormal_case,
    "Exponential": exponential_case,
    "Laplace": laplace_case,
    "Cauchy": cauchy_case,
    "HalfNormal": half_normal_case,
    "HalfCauchy": half_cauchy_case,
    "Gumbel": gumbel_case,
    "Gamma": gamma_case,
    "Beta": beta_case,
    "Dirichlet": dirichlet_case,
    "Chi2": chi2_case,
    "InverseGamma": inverse_gamma_case,
    "StudentT": student_t_case,
    "Bernoulli(probs)": bernoulli_probs_case,
    "Bernoulli(logits)": bernoulli_logits_case,
    "Categorical(probs)": categorical_probs_case,
    "Categorical(logits)": categorical_logits_case,
    "Poisson": poisson_case,
    "Geometric(probs)": geometric_probs_case,
    "Geometric(logits)": geometric_logits_case,
    "Binomial(probs)": binomial_probs_case,
    "Binomial(logits)": binomial_logits_case,
    "OneHotCategorical(probs)": one_hot_categorical_probs_case,
    "OneHotCategorical(logits)": one_hot_categorical_logits_case,
    "Uniform": uniform_case,
    "Delta": delta_case,
    "Independent": independent_case,
    "MaskedDistribution": masked_case,
    "TransformedDistribution": transformed_case,
    "MultivariateNormal(scale_tril)": mvn_scale_tril_case,
    "MultivariateNormal(covariance_matrix)": mvn_covariance_case,
    "MultivariateNormal(precision_matrix)": mvn_precision_case,
    "LowRankMultivariateNormal": low_rank_mvn_case,
    "Exponential (Distribution's docstring)": example_case,
}


def case_named(name):
    return CASES[name](np.random.default_rng(sorted(CASES).index(name)))


def test_every_exported_distribution_has_a_case():
    exported = {getattr(dist, name) for name in dist.__all__}
    exported = {c for c in exported if isinstance(c, type) and issubclass(c, Distribution) and c is not Distribution}
    covered = {type(case.make(**case.args)) for case in map(case_named, CASES)}
    missing = sorted(c.__name__ for c in exported - covered)
    assert not missing, f"add a case to CASES for {missing}: every distribution goes through the contract"


def assert_stored_as_given(make, args):
    """``arg_arrays()`` returns the very objects passed in, also after ``expand``, and traced
    arguments are stored as their plain arrays, given back by ``traced_args()``."""
    d = make(**args)
    assert set(d.arg_arrays()) == set(d.arg_names)
    for copy in (d, d.expand((2,) + d.batch_shape)):
        for name, arg in copy.arg_arrays().items():
            assert arg is args[name], f"{type(d).__name__} stores a new object for {name!r}, not the one given"
    wrapped = {name: traced.Traced(arg) for name, arg in args.items()}
    d = make(**wrapped)
    for name, arg in d.arg_arrays().items():
        assert arg is wrapped[name].data, f"{type(d).__name__}: traced {name!r} not stored as its array"
        assert d.traced_args()[name] is wrapped[name]


@pytest.mark.parametrize("name", CASES)
def test_arguments_are_stored_as_given(name):
    case = case_named(name)
    assert_stored_as_given(case.make, case.args)


@pytest.mark.parametrize("name", CASES)
def test_shapes(name):
    case = case_named(name)
    d = case.make(**case.args)
    rng = np.random.default_rng(0)
    batch = np.broadcast_shapes(case.value.shape[: case.value.ndim - d.event_dim], d.batch_shape)
    assert d.log_prob(case.value).shape == batch
    for sample_shape in [(), (5,), (2, 1)]:
        shape = sample_shape + d.batch_shape + d.event_shape
        assert d.shape(sample_shape) == shape
        x = d.sample(sample_shape, rng)
        assert np.shape(x) == shape
        assert d.log_prob(x).shape == sample_shape + d.batch_shape
        if d.has_rsample:
            value, _ = d.rsample_with_noise(sample_shape, rng)
            assert np.shape(value) == shape
    if not d.has_rsample:
        with pytest.raises(NotImplementedError):
            d.rsample_with_noise((), rng)
    bigger = (2,) + d.batch_shape
    assert d.expand(bigger).sample((), rng).shape == bigger + d.event_shape


def assert_no_alias(grads, cotangent):
    for name, grad in grads.items():
        assert not np.shares_memory(grad, cotangent), f"the gradient of {name!r} is the cotangent itself"


@pytest.mark.parametrize("name", CASES)
def test_log_prob_vjp_matches_finite_differences(name):
    case = case_named(name)

    def log_prob(value, **args):
        return case.make(**args).log_prob(value)

    def vjp(cotangent, value, **args):
        grads = case.make(**args).log_prob_vjp(value, cotangent, case.smooth)
        assert set(grads) == set(case.smooth)
        assert_no_alias(grads, cotangent)
        return grads

    point = dict(case.args, value=case.value)
    check_vjp(log_prob, point, vjp)
    d = case.make(**case.args)
    g = np.ones(d.log_prob(case.value).shape)
    flat = [n for n in ("value",) + tuple(d.arg_names) if n not in case.smooth]
    for n, grad in d.log_prob_vjp(case.value, g, flat).items():  # piecewise constant: zero gradient
        assert np.shape(grad) == np.shape(point[n]) and not np.any(grad), n
    with pytest.raises(ValueError, match="cannot differentiate"):
        d.log_prob_vjp(case.value, g, ["not_an_argument"])


@pytest.mark.parametrize("name", [n for n in CASES if case_named(n).make(**case_named(n).args).has_rsample])
def test_rsample_vjp_matches_finite_differences(name):
    case = case_named(name)
    names = tuple(case.make(**case.args).arg_names)

    def draw(**args):  # the same noise at every point: a fresh generator with the same seed
        return case.make(**args).rsample_with_noise((5,), np.random.default_rng(1))

    noise = draw(**case.args)[1]

    def vjp(cotangent, **args):
        grads = case.make(**args).rsample_vjp(noise, cotangent, names)
        assert set(grads) == set(names)
        assert_no_alias(grads, cotangent)
        return grads

    check_vjp(lambda **args: draw(**args)[0], case.args, vjp)


@pytest.mark.parametrize("make", [
    lambda: dist.Normal(0.5, 2.0), lambda: dist.Uniform(-1.0, 2.0), lambda: dist.Delta(0.3, 0.1),
    lambda: dist.Bernoulli(probs=0.3), lambda: dist.Bernoulli(logits=0.2), lambda: example_distribution()(1.5),
    lambda: dist.Poisson(2.5), lambda: dist.Geometric(probs=0.3), lambda: dist.Geometric(logits=0.2),
    lambda: dist.Binomial(5, probs=0.3), lambda: dist.Binomial(5, logits=-0.4),
    lambda: dist.Chi2(3.0), lambda: dist.InverseGamma(2.0, 1.5), lambda: dist.StudentT(4.0, 0.5, 2.0),
], ids=["Normal", "Uniform", "Delta", "Bernoulli(probs)", "Bernoulli(logits)", "Exponential", "Poisson",
        "Geometric(probs)", "Geometric(logits)", "Binomial(probs)", "Binomial(logits)", "Chi2", "InverseGamma",
        "StudentT"])
def test_python_float_arguments_get_0d_gradients(make):
    d = make()
    value = d.sample((4,), np.random.default_rng(0))
    grads = d.log_prob_vjp(value, np.ones(4), d.arg_names)
    if d.has_rsample:
        value, noise = d.rsample_with_noise((4,), np.random.default_rng(0))
        grads = dict(grads, **{f"rsample {n}": g for n, g in d.rsample_vjp(noise, np.ones(4), d.arg_names).items()})
    for name, grad in grads.items():
        assert np.shape(grad) == () and hasattr(grad, "shape"), f"{name}: {grad!r}"


# ------------------------------------------------ violations the contract catches
class CopyingNormal(dist.Normal):
    """Stores a copy of loc: passes construction (only the caller can see the copy), fails the test."""

    def __init__(self, loc, scale):
        super().__init__(np.array(loc, copy=True), scale)


def test_a_forgotten_argument_is_a_clear_error_at_construction():
    class Forgetful(dist.Normal):
        def __init__(self, loc, scale):
            self.loc = loc  # scale is never stored
            Distribution.__init__(self, check_args("Forgetful", loc=loc, scale=scale))

    with pytest.raises(TypeError, match=r"Forgetful: arg_names lists 'scale', but __init__ did not store it; "
                                        r"assign self.scale = scale"):
        Forgetful(np.zeros(2), 1.0)


def test_an_argument_stored_as_something_else_is_a_clear_error_at_construction():
    class Listed(dist.Normal):
        def __init__(self, loc, scale):
            batch_shape = check_args("Listed", loc=loc, scale=scale)
            self.loc, self.scale = list(loc), scale
            Distribution.__init__(self, batch_shape)

    with pytest.raises(TypeError, match="Listed: loc must be a float or an array, got list"):
        Listed(np.zeros(2), 1.0)


def test_a_copied_argument_fails_the_identity_check():
    with pytest.raises(AssertionError, match="CopyingNormal stores a new object for 'loc'"):
        assert_stored_as_given(CopyingNormal, {"loc": np.zeros(3), "scale": np.ones(3)})


# ---------------------------------------------------------------- layers
def exported_layers():
    """Every Module subclass minippl.nn exports that defines its own backward (a layer)."""
    found = {}
    for name in nn.__all__:
        obj = getattr(nn, name)
        if isinstance(obj, type) and issubclass(obj, Module) and obj.backward is not Module.backward:
            found.setdefault(obj, name)  # Linear is Dense: one entry
    return list(found)


# layers whose constructor needs arguments, or whose settings change the math; others are made as cls()
LAYER_FACTORIES = {
    nn.Dense: [lambda: nn.Dense(3, 2, rng=np.random.default_rng(0), dtype=np.float64),
               lambda: nn.Dense(3, 2, bias=False, rng=np.random.default_rng(0), dtype=np.float64)],
    nn.Softplus: [lambda: nn.Softplus(), lambda: nn.Softplus(beta=2.5), lambda: nn.Softplus(beta=0.5, threshold=1.0)],
}


def layer_makers():
    makers = [(f"{cls.__name__}#{i}", make) for cls in exported_layers()
              for i, make in enumerate(LAYER_FACTORIES.get(cls, [cls]))]
    return makers + [("Scale (Module's docstring)", lambda: example_layer()())]


def layer_input(rng):
    z = rng.standard_normal((4, 3))
    return np.sign(z) * (0.1 + 2 * np.abs(z))  # away from 0 (ReLU's kink)


def arrays_in(obj):
    """The arrays inside a cache (an array, or tuples of them and of other values)."""
    if isinstance(obj, np.ndarray):
        return [obj]
    if isinstance(obj, tuple):
        return [a for item in obj for a in arrays_in(item)]
    return []


def test_the_layers_are_found():
    assert {nn.Dense, nn.Sigmoid, nn.Softplus, nn.Tanh, nn.ReLU, nn.Exp} <= set(exported_layers())


@pytest.mark.parametrize("name, make", layer_makers(), ids=[n for n, _ in layer_makers()])
def test_layer_backward_matches_finite_differences(name, make):
    layer = make()
    params = dict(layer.current_parameters())
    x = layer_input(np.random.default_rng(0))
    y, cache = layer.forward(x)
    assert np.array_equal(layer(x), y)  # outside any handler, a call is forward's output

    def run(x, **values):
        for n, value in values.items():
            setattr(layer, n, np.asarray(value))  # a moved 0-d parameter arrives as a NumPy scalar
        return layer.forward(x)

    def vjp(cotangent, x, **values):
        y, cache = run(x, **values)
        (grad_x,), grad_params = layer.backward(cache, cotangent, (True,))
        assert set(grad_params) == set(params), "backward returns one gradient per parameter"
        return dict(grad_params, x=grad_x)

    check_vjp(lambda **values: run(**values)[0], dict(params, x=x), vjp)
    y, cache = run(x, **params)
    (grad_x,), _ = layer.backward(cache, np.ones_like(y), (False,))
    assert grad_x is None  # an input gradient nobody needs is not computed


@pytest.mark.parametrize("name, make", layer_makers(), ids=[n for n, _ in layer_makers()])
def test_layer_backward_reads_only_its_cache(name, make):
    layer = make()
    x = layer_input(np.random.default_rng(1))
    y, cache = layer.forward(x)
    grad_y = np.random.default_rng(2).standard_normal(np.shape(y))
    snapshot = [(a, a.copy()) for a in arrays_in(cache) + [grad_y]]
    before = layer.backward(cache, grad_y, (True,))
    for attr, value in list(vars(layer).items()):  # garbage in every parameter and float setting
        if attr.startswith("_"):
            continue
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            setattr(layer, attr, np.full_like(value, np.nan))
        elif isinstance(value, float):
            setattr(layer, attr, float("nan"))
    (grad_x,), grad_params = layer.backward(cache, grad_y, (True,))
    assert np.array_equal(grad_x, before[0][0]), f"{name}.backward reads an attribute of the layer"
    assert grad_params.keys() == before[1].keys()
    for n, g in grad_params.items():
        assert np.array_equal(g, before[1][n]), f"{name}.backward reads the attribute {n!r}"
    for array, copy in snapshot:
        assert np.array_equal(array, copy), f"{name}.backward wrote into its cache or grad_outputs"


# ---------------------------------------------------------------- transforms
def constraints_in_module():
    """Every constraint constraints.py defines: its instances, and one of each class that takes bounds."""
    found = [v for v in vars(constraints).values() if isinstance(v, constraints.Constraint)]
    bounds = {0: (), 1: (-1.5,), 2: (-1.0, 2.0)}
    for cls in vars(constraints).values():
        if isinstance(cls, type) and issubclass(cls, constraints.Constraint) and cls is not constraints.Constraint:
            required = [p for p in inspect.signature(cls).parameters.values() if p.default is p.empty]
            found.append(cls(*bounds[len(required)]))
    unique = {}
    for c in found:
        unique.setdefault(c.spec, c)
    return list(unique.values())


def transform_makers():
    makers = []
    for c in constraints_in_module():
        try:
            constraint_registry.biject_to(c)
        except NotImplementedError:
            continue  # a discrete set (boolean): no transform reaches it
        makers.append((f"biject_to({c.spec})", lambda c=c: (constraint_registry.biject_to(c), c)))
    for name, make in TRANSFORM_MAKERS.items():  # the transforms with arguments, and compositions
        makers.append((f"{name} (test_transforms.py)", lambda make=make: (make(), make().codomain)))
    for a, b in [(1.0, 3.0), (-0.5, -2.0)]:
        makers.append((f"Affine({a}, {b}) (Transform's docstring)",
                       lambda a=a, b=b: (example_transform()(a, b), constraints.real)))
    return makers


def transform_classes(module):
    return {cls for cls in vars(module).values() if isinstance(cls, type)
            and issubclass(cls, constraint_registry.Transform) and cls is not constraint_registry.Transform}


def test_every_transform_class_is_run_through_the_contract():
    in_registry = transform_classes(constraint_registry)
    reached = {type(make()[0]) for name, make in transform_makers() if name.startswith("biject_to")}
    assert in_registry <= reached, f"not reached by biject_to: {sorted(c.__name__ for c in in_registry - reached)}"
    defined = in_registry | transform_classes(dist.transforms)
    run = {type(make()[0]) for _, make in transform_makers()}
    missing = sorted(c.__name__ for c in defined - run)
    assert not missing, f"add a maker to tests/test_transforms.py's MAKERS for {missing}"
    names = {n for n, _ in transform_makers()}
    assert {"biject_to(real)", "biject_to(positive)", "biject_to(greater_than(-1.5))",
            "biject_to(interval(-1.0, 2.0))", "biject_to(interval(0.0, 1.0))"} <= names


@pytest.mark.parametrize("name, make", transform_makers(), ids=[n for n, _ in transform_makers()])
def test_transform_contract(name, make):
    t, constraint = make()
    if t.event_dim == 2:  # a map of whole square matrices (lower_cholesky): its own check
        return assert_matrix_transform_contract(t, constraint)
    if t.event_dim:  # a map of whole vectors (stick-breaking): its own check
        return assert_vector_transform_contract(t, constraint)
    assert t.codomain == constraint and t.event_dim == 0
    u = 2 * np.random.default_rng(0).standard_normal((3, 4))
    x = t(u)
    assert x.shape == u.shape and np.all(constraint.check(x))
    np.testing.assert_allclose(t.inverse(x), u, rtol=1e-9, atol=1e-12)
    # log |dx/du| against the slope of forward (elementwise: one directional derivative gives them all)
    slope = directional_derivative(lambda s: t.forward(u + s))
    log_det = t.log_abs_det_jacobian(u, x)
    assert log_det.shape == u.shape
    np.testing.assert_allclose(log_det, np.log(np.abs(slope)), rtol=1e-8, atol=1e-8)
    check_vjp(t.forward, {"u": u}, lambda g, u: {"u": t.vjp(u, t.forward(u), g)})
    check_vjp(lambda u: t.log_abs_det_jacobian(u, t.forward(u)), {"u": u},
              lambda g, u: {"u": t.log_abs_det_jacobian_vjp(u, t.forward(u), g)})
    check_vjp(t.inverse, {"x": x}, lambda g, x: {"x": t.inverse_vjp(t.inverse(x), x, g)})


def assert_vector_transform_contract(t, constraint):
    """event_dim 1: shapes, round trip, log |det J| against the finite-difference Jacobian, VJPs."""
    assert t.codomain == constraint and t.event_dim == 1
    u = np.random.default_rng(0).standard_normal((3, 4))
    x = t(u)
    assert x.shape == t.forward_shape(u.shape) and t.inverse_shape(x.shape) == u.shape
    assert np.all(constraint.check(x))
    np.testing.assert_allclose(t.inverse(x), u, rtol=1e-9, atol=1e-12)
    log_det = t.log_abs_det_jacobian(u, x)
    assert log_det.shape == u.shape[:-1]
    n = u.shape[-1]
    for row in range(u.shape[0]):  # the square Jacobian of the first n outputs (the last is determined)
        jac = np.stack([directional_derivative(lambda s: t.forward(u[row] + s * np.eye(n)[j])[:n])
                        for j in range(n)], axis=1)
        np.testing.assert_allclose(log_det[row], np.linalg.slogdet(jac)[1], rtol=1e-8, atol=1e-8)
    check_vjp(t.forward, {"u": u}, lambda g, u: {"u": t.vjp(u, t.forward(u), g)})
    check_vjp(lambda u: t.log_abs_det_jacobian(u, t.forward(u)), {"u": u},
              lambda g, u: {"u": t.log_abs_det_jacobian_vjp(u, t.forward(u), g)})

    def on_simplex(head):  # x = (head, 1 - sum(head)): a move that stays on the simplex
        return np.concatenate([head, 1 - head.sum(-1, keepdims=True)], -1)

    def inverse_vjp(g, head):  # the chain rule through on_simplex: d/dhead_i = d/dx_i - d/dx_K
        full = t.inverse_vjp(t.inverse(on_simplex(head)), on_simplex(head), g)
        return {"head": full[..., :-1] - full[..., -1:]}

    check_vjp(lambda head: t.inverse(on_simplex(head)), {"head": x[..., :-1]}, inverse_vjp)


def assert_matrix_transform_contract(t, constraint):
    """event_dim 2, square matrices onto lower-triangular ones (the upper triangle of u is not read):
    round trip on lower-triangular u, log |det J| against the finite-difference Jacobian on the
    lower-triangle coordinates, and the VJPs (the inverse's too) against finite differences."""
    assert t.codomain == constraint and t.event_dim == 2
    u = np.tril(np.random.default_rng(0).standard_normal((2, 3, 3)))
    x = t(u)
    assert x.shape == t.forward_shape(u.shape) == u.shape and np.all(constraint.check(x))
    np.testing.assert_allclose(t.inverse(x), u, rtol=1e-9, atol=1e-12)
    log_det = t.log_abs_det_jacobian(u, x)
    assert log_det.shape == u.shape[:-2]
    rows, cols = np.tril_indices(3)
    for k in range(u.shape[0]):
        def coords(s, j):
            moved = u[k].copy()
            moved[rows[j], cols[j]] += s
            return t.forward(moved)[rows, cols]
        jac = np.stack([directional_derivative(lambda s: coords(s, j)) for j in range(len(rows))], axis=1)
        np.testing.assert_allclose(log_det[k], np.linalg.slogdet(jac)[1], rtol=1e-8, atol=1e-8)
    check_vjp(t.forward, {"u": u}, lambda g, u: {"u": t.vjp(u, t.forward(u), g)})
    check_vjp(lambda u: t.log_abs_det_jacobian(u, t.forward(u)), {"u": u},
              lambda g, u: {"u": t.log_abs_det_jacobian_vjp(u, t.forward(u), g)})
    check_vjp(t.inverse, {"x": x}, lambda g, x: {"x": t.inverse_vjp(t.inverse(x), x, g)})
