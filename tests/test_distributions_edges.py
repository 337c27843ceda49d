"""The edges of the supports, and what lies beyond them: log-densities at a closed end (Gamma and
Dirichlet at 0, Beta at 0 and 1), their one-sided gradients against float64 finite differences taken
from inside the support (and Exponential's closed forms), the contract's rule that every gradient is 0
where log p is infinite, stddev as the base class's sqrt(variance), and the clear errors for values of
the wrong shape or kind."""
import re

import numpy as np
import pytest
import scipy.special as sp
from finite_diff import check_vjp
from test_contracts import CASES, case_named

import minippl.distributions as dist
from minippl import validation

RNG = np.random.default_rng(0)


def one_sided(f, h=1e-5):
    """d/dt f(t) at t = 0 from the right: (-3 f(0) + 4 f(h) - f(2h)) / (2h), error O(h^2)."""
    return (-3 * f(0.0) + 4 * f(h) - f(2 * h)) / (2 * h)


# ---------------------------------------------------------------- Dirichlet at a zero entry
def test_dirichlet_scores_a_zero_entry_as_beta_does():
    x = np.array([0.0, 0.5, 0.5])
    # a_0 = 1: the factor x_0^0 is 1, so log p = log(Gamma(6) / (Gamma(2) Gamma(3))) + 1 log 0.5 + 2 log 0.5
    np.testing.assert_allclose(dist.Dirichlet(np.array([1.0, 2.0, 3.0])).log_prob(x), np.log(60.0) + 3 * np.log(0.5),
                               rtol=1e-14)
    assert dist.Dirichlet(np.array([0.5, 2.0, 3.0])).log_prob(x) == np.inf  # x_0^(-1/2): unbounded
    assert dist.Dirichlet(np.array([2.0, 2.0, 3.0])).log_prob(x) == -np.inf  # x_0^1: density 0
    assert dist.Dirichlet(np.array([1.0, 2.0, 3.0])).log_prob(np.array([-0.1, 0.6, 0.5])) == -np.inf
    # with two entries, a Dirichlet is the Beta of its first entry, edges included
    for a in (0.5, 1.0, 2.0):
        for b in (0.5, 1.0, 3.0):
            for z in (0.0, 1.0, 0.3):
                expected = dist.Beta(a, b).log_prob(np.array(z))
                got = dist.Dirichlet(np.array([a, b])).log_prob(np.array([z, 1 - z]))
                assert got == expected or np.isclose(got, expected, rtol=1e-13), (a, b, z, got, expected)


def test_dirichlet_gradients_at_a_zero_entry_with_concentration_one():
    x = np.array([[0.0, 0.5, 0.5], [0.2, 0.0, 0.8]])
    a = np.array([1.0, 1.0, 3.0])  # a_i = 1 where x_i = 0: log p finite

    def make(rest):  # a_0 = a_1 = 1 held (log p is infinite for any other value of either)
        return dist.Dirichlet(np.concatenate([[1.0, 1.0], rest]))

    check_vjp(lambda rest: make(rest).log_prob(x), {"rest": a[2:]},
              lambda g, rest: {"rest": make(rest).log_prob_vjp(x, g, ["concentration"])["concentration"][2:]})
    nonzero = x > 0  # the value: its nonzero entries by central differences, the zero ones below

    def with_entries(v):
        moved = x.copy()
        moved[nonzero] = v
        return moved

    check_vjp(lambda v: dist.Dirichlet(a).log_prob(with_entries(v)), {"v": x[nonzero]},
              lambda g, v: {"v": dist.Dirichlet(a).log_prob_vjp(with_entries(v), g, ["value"])["value"][nonzero]})
    g = np.array([1.0, -2.0])
    grad_x = dist.Dirichlet(a).log_prob_vjp(x, g, ["value"])["value"]
    for row, i in ((0, 0), (1, 1)):
        moved = lambda t: float(dist.Dirichlet(a).log_prob(x[row] + t * np.eye(3)[i]))  # noqa: E731
        assert grad_x[row, i] == 0.0 and abs(one_sided(moved)) < 1e-9  # x_i^0 = 1: flat from inside
    # d/da_i at x_i = 0 is log 0: -inf (log p is -inf for a_i > 1), signed by the cotangent, 0 where g = 0
    grad_a = dist.Dirichlet(a).log_prob_vjp(x, g, ["concentration"])["concentration"]
    assert grad_a[0] == -np.inf and grad_a[1] == np.inf
    grad_a = dist.Dirichlet(a).log_prob_vjp(x, np.array([1.0, 0.0]), ["concentration"])["concentration"]
    assert grad_a[0] == -np.inf and np.isfinite(grad_a[1:]).all()


# ---------------------------------------------------------------- Gamma and Beta at their edges
def test_gamma_one_at_zero_has_exponentials_gradients():
    rate, z, g = np.array([0.5, 2.0, 3.0]), np.zeros(3), np.array([1.0, -0.5, 2.0])
    grads = dist.Gamma(np.ones(3), rate).log_prob_vjp(z, g, ["value", "rate", "concentration"])
    expected = dist.Exponential(rate).log_prob_vjp(z, g, ["value", "rate"])
    np.testing.assert_allclose(grads["value"], expected["value"], rtol=1e-15)  # -rate g
    np.testing.assert_allclose(grads["rate"], expected["rate"], rtol=1e-15)  # (1 / rate - 0) g
    check_vjp(lambda rate: dist.Gamma(1.0, rate).log_prob(z), {"rate": rate},
              lambda g, rate: dist.Gamma(1.0, rate).log_prob_vjp(z, g, ["rate"]))
    for i in range(3):  # the value from inside: z -> 0+
        moved = lambda t: float(dist.Gamma(1.0, rate[i]).log_prob(np.array(t)))  # noqa: E731
        np.testing.assert_allclose(grads["value"][i] / g[i], one_sided(moved), rtol=1e-9)
    # d/da log p = log rate + log z - psi(a): log 0 = -inf (a > 1 makes log p -inf), signed by g; 0 where g = 0
    assert grads["concentration"].tolist() == [-np.inf, np.inf, -np.inf]
    assert dist.Gamma(np.ones(2), 1.0).log_prob_vjp(np.zeros(2), np.array([-1.0, 0.0]),
                                                    ["concentration"])["concentration"].tolist() == [np.inf, 0.0]


@pytest.mark.parametrize("edge", [0.0, 1.0])
def test_beta_with_a_power_zero_at_its_edge_has_one_sided_gradients(edge):
    other = np.array([0.5, 2.0, 4.0])  # the concentration whose factor does not vanish at the edge

    def make(c):  # Beta(1, b) scored at 0, Beta(a, 1) at 1
        return dist.Beta(np.ones_like(c), c) if edge == 0.0 else dist.Beta(c, np.ones_like(c))

    name, flat = ("concentration0", "concentration1") if edge == 0.0 else ("concentration1", "concentration0")
    z = np.full(3, edge)
    assert np.isfinite(make(other).log_prob(z)).all()
    check_vjp(lambda c: make(c).log_prob(z), {"c": other}, lambda g, c: {"c": make(c).log_prob_vjp(z, g, [name])[name]})
    g = np.array([1.0, -0.5, 2.0])
    grads = make(other).log_prob_vjp(z, g, ["value", flat])
    inward = 1.0 if edge == 0.0 else -1.0
    for i in range(3):  # from inside: z = edge + inward t, t -> 0+
        moved = lambda t: float(make(other[i]).log_prob(np.array(edge + inward * t)))  # noqa: E731
        np.testing.assert_allclose(grads["value"][i] / g[i], inward * one_sided(moved), rtol=1e-7)
    assert grads[flat].tolist() == [-np.inf, np.inf, -np.inf]  # log 0, signed by g


# ---------------------------------------------------------------- no gradient where log p is infinite
INFINITE = {
    "Exponential below 0": (lambda: dist.Exponential(np.array([2.0, 0.5])), np.array([-1.0, -0.5])),
    "HalfNormal below 0": (lambda: dist.HalfNormal(np.array([2.0, 0.5])), np.array([-1.0, -0.5])),
    "HalfCauchy below 0": (lambda: dist.HalfCauchy(np.array([2.0, 0.5])), np.array([-1.0, -0.5])),
    "LogNormal at and below 0": (lambda: dist.LogNormal(np.array([0.3, -1.0]), 2.0), np.array([0.0, -0.5])),
    "Uniform outside": (lambda: dist.Uniform(np.array([0.0, -1.0]), 1.0), np.array([1.5, -2.0])),
    "Delta off its point": (lambda: dist.Delta(np.array([0.3, 0.1]), np.array([0.5, -1.0])), np.array([0.2, 0.0])),
    "Gamma at 0 (a > 1, a < 1), below": (lambda: dist.Gamma(np.array([2.0, 0.5, 1.0]), 1.5),
                                         np.array([0.0, 0.0, -1.0])),
    "Beta at its edges, outside": (lambda: dist.Beta(np.array([2.0, 0.5, 1.0]), np.array([3.0, 0.5, 0.7])),
                                   np.array([0.0, 1.0, 1.5])),
    "Dirichlet at 0 (a > 1, a < 1), negative": (lambda: dist.Dirichlet(np.array([[2.0, 1.0, 3.0], [0.5, 2.0, 1.0],
                                                                                 [1.0, 1.0, 1.0]])),
                                                np.array([[0.0, 0.5, 0.5], [0.0, 0.5, 0.5], [-0.1, 0.6, 0.5]])),
    "Chi2 below 0": (lambda: dist.Chi2(np.array([3.0, 0.5])), np.array([-1.0, -2.0])),
    "InverseGamma at and below 0": (lambda: dist.InverseGamma(np.array([3.0, 0.5]), 2.0), np.array([0.0, -1.0])),
    "Poisson off the counts": (lambda: dist.Poisson(np.array([2.0, 0.5])), np.array([1.5, -1.0])),
    "Binomial above total_count": (lambda: dist.Binomial(5, probs=np.array([0.3, 0.6])), np.array([6.0, -1.0])),
    "Geometric off the counts": (lambda: dist.Geometric(logits=np.array([0.3, -1.0])), np.array([0.5, -1.0])),
    "Categorical off the classes": (lambda: dist.Categorical(logits=np.zeros((2, 3))), np.array([3.0, 0.5])),
    "OneHotCategorical off the one-hot vectors": (lambda: dist.OneHotCategorical(probs=np.ones((2, 3)),
                                                                                 validate_args=False),
                                                  np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])),
}


@pytest.mark.parametrize("name", INFINITE)
def test_every_gradient_is_zero_where_log_p_is_infinite(name):
    make, value = INFINITE[name]
    d = make()
    assert np.isinf(d.log_prob(value)).all()
    g = RNG.standard_normal(d.log_prob(value).shape)
    grads = d.log_prob_vjp(value, g, ["value", *d.arg_names])
    for n, grad in grads.items():
        assert np.shape(grad) == np.shape(value if n == "value" else d.arg_arrays()[n])
        assert np.all(grad == 0), (n, grad)


# ---------------------------------------------------------------- stddev
@pytest.mark.parametrize("name", CASES)
def test_stddev_is_the_square_root_of_the_variance(name):
    case = case_named(name)
    d = case.make(**case.args)
    try:
        variance = d.variance
    except NotImplementedError:
        return
    with np.errstate(invalid="ignore"):
        np.testing.assert_allclose(d.stddev, np.sqrt(variance), rtol=1e-15)


def test_exponential_stddev_is_one_over_rate_where_the_variance_leaves_float64():
    rate = np.array([1e-200, 1e200])  # 1 / rate^2 overflows and underflows: sqrt(variance) would be inf and 0
    np.testing.assert_array_equal(dist.Exponential(rate).stddev, 1 / rate)
    assert dist.HalfCauchy(np.ones(2)).stddev.tolist() == [np.inf, np.inf]
    assert np.isnan(dist.Cauchy(0.0, np.ones(2)).mean).all() and (dist.Cauchy(0.0, np.ones(2)).stddev == np.inf).all()


# ---------------------------------------------------------------- values of the wrong shape or kind
@pytest.mark.parametrize("make", [lambda: dist.Dirichlet(np.ones(3)),
                                  lambda: dist.MultivariateNormal(np.zeros(3), np.eye(3)),
                                  lambda: dist.LowRankMultivariateNormal(np.zeros(3), np.ones((3, 1)), np.ones(3)),
                                  lambda: dist.OneHotCategorical(probs=np.ones(3))])
def test_a_value_of_the_wrong_event_size_is_a_clear_error(make):
    d = make()
    name = type(d).__name__
    for value in (np.ones(4) / 4, np.ones((2, 1)), np.array(1.0)):  # too long, a size-1 event NumPy would broadcast
        for call in (lambda: d.log_prob(value), lambda: d.log_prob_vjp(value, np.ones(value.shape[:-1]), ["value"])):
            message = f"{name}: a value ends in one event, of shape (3,), got {value.shape}; pass shape (..., 3)"
            with pytest.raises(ValueError, match=re.escape(message)):
                call()


def test_one_hot_categorical_refuses_what_is_not_a_one_hot_vector():
    values = np.array([[0.0, 0.0, 1.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    with pytest.raises(validation.ValidationError, match=r"outside the support constraints.one_hot of "
                                                         r"OneHotCategorical.* Fix: a value is a one-hot vector of "
                                                         r"length K = 3.*use Categorical, or np.eye\(3\)\[c\]"):
        dist.OneHotCategorical(probs=np.array([0.2, 0.3, 0.5])).log_prob(values)
    unchecked = dist.OneHotCategorical(probs=np.array([0.2, 0.3, 0.5]), validate_args=False)
    np.testing.assert_allclose(unchecked.log_prob(values), [np.log(0.5), -np.inf, -np.inf])  # not read by argmax


def test_low_rank_scale_tril_of_a_covariance_that_is_not_positive_definite_names_the_fix():
    d = dist.LowRankMultivariateNormal(np.zeros(2), np.ones((2, 1)), np.array([1.0, -0.9]), validate_args=False)
    with pytest.raises(ValueError, match=r"LowRankMultivariateNormal: the covariance W W\^T \+ diag\(cov_diag\) is "
                                         r"not positive definite .*cov_diag must be positive"):
        d.scale_tril
    np.testing.assert_allclose(dist.LowRankMultivariateNormal(np.zeros(2), np.ones((2, 1)), np.ones(2)).scale_tril,
                               np.linalg.cholesky(np.ones((2, 2)) + np.eye(2)), rtol=1e-15)


def test_special_function_is_scipys_on_the_host():  # the one SciPy/CuPy dispatch behind lgamma and digamma
    from minippl.distributions.counts import lgamma, special_function
    x = np.array([0.3, 2.0, 50.0])
    np.testing.assert_array_equal(lgamma(x), sp.gammaln(x))
    np.testing.assert_array_equal(special_function("digamma", x), sp.digamma(x))
    np.testing.assert_array_equal(special_function("polygamma", 1, x), sp.polygamma(1, x))
