"""Constraints and their bijections: round trips, check(), specs, and float64
finite-difference tests of every hand-written derivative (transform VJP and the
VJP of log |dx/du|), plus extreme inputs that must not produce NaN."""
import numpy as np
import pytest

import minippl
import minippl.distributions as dist
from minippl.distributions import constraint_registry, constraints
from minippl.infer import SVI, Trace_ELBO, check_gradients
from minippl.infer.autoguide import AutoNormal
from minippl.optim import Adam
from tests.finite_diff import check_vjp

CONTINUOUS = [
    constraints.real,
    constraints.positive,
    constraints.unit_interval,
    constraints.interval(-2.0, 5.0),
    constraints.greater_than(2.0),
    constraints.less_than(0.5),
]
IDS = [c.spec for c in CONTINUOUS]


def unconstrained_points(rng, shape=(4, 3)):
    return 3.0 * rng.standard_normal(shape)


@pytest.mark.parametrize("constraint", CONTINUOUS, ids=IDS)
def test_round_trip_and_support(constraint):
    rng = np.random.default_rng(1)
    transform = constraint_registry.biject_to(constraint)
    u = unconstrained_points(rng)
    x = transform.forward(u)
    assert x.shape == u.shape and x.dtype == u.dtype
    assert constraint.check(x).all()
    np.testing.assert_allclose(transform.inverse(x), u, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(transform.forward(transform.inverse(x)), x, rtol=1e-12)
    assert transform(u).shape == u.shape  # transforms are callable, as in torch


@pytest.mark.parametrize("constraint", CONTINUOUS, ids=IDS)
def test_float32_stays_float32(constraint):
    transform = constraint_registry.biject_to(constraint)
    u = np.linspace(-3, 3, 7, dtype=np.float32)
    x = transform.forward(u)
    grad = np.ones_like(x)
    outputs = [x, transform.inverse(x), transform.vjp(u, x, grad),
               transform.log_abs_det_jacobian(u, x), transform.log_abs_det_jacobian_vjp(u, x, grad)]
    assert all(out.dtype == np.float32 for out in outputs)


@pytest.mark.parametrize("constraint", CONTINUOUS, ids=IDS)
def test_transform_vjp_matches_finite_differences(constraint):
    transform = constraint_registry.biject_to(constraint)
    u = unconstrained_points(np.random.default_rng(2))
    check_vjp(lambda u: transform.forward(u), {"u": u},
              lambda cotangent, u: {"u": transform.vjp(u, transform.forward(u), cotangent)})


@pytest.mark.parametrize("constraint", CONTINUOUS, ids=IDS)
def test_log_abs_det_jacobian_vjp_matches_finite_differences(constraint):
    transform = constraint_registry.biject_to(constraint)
    u = unconstrained_points(np.random.default_rng(3))

    def log_det(u):
        return transform.log_abs_det_jacobian(u, transform.forward(u))

    def log_det_vjp(cotangent, u):
        return {"u": transform.log_abs_det_jacobian_vjp(u, transform.forward(u), cotangent)}

    if constraint == constraints.real:  # log|dx/du| = 0: compare with zero directly
        assert not log_det(u).any() and not log_det_vjp(np.ones_like(u), u)["u"].any()
        return
    check_vjp(log_det, {"u": u}, log_det_vjp)


def test_log_abs_det_jacobian_values():
    u = np.array([-2.0, 0.0, 1.5])
    exp = constraint_registry.biject_to(constraints.positive)
    np.testing.assert_allclose(exp.log_abs_det_jacobian(u, exp.forward(u)), u)
    lo, hi = -2.0, 5.0
    sigmoid = 1 / (1 + np.exp(-u))
    interval = constraint_registry.biject_to(constraints.interval(lo, hi))
    expected = np.log((hi - lo) * sigmoid * (1 - sigmoid))
    np.testing.assert_allclose(interval.log_abs_det_jacobian(u, interval.forward(u)), expected, rtol=1e-12)


def test_identity_returns_the_same_object():
    transform = constraint_registry.biject_to(constraints.real)
    u = np.zeros(3, dtype=np.float32)
    assert transform.forward(u) is u
    assert transform.inverse(u) is u


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("constraint", CONTINUOUS[1:], ids=IDS[1:])
def test_extreme_inputs_give_no_nan(constraint, dtype):
    transform = constraint_registry.biject_to(constraint)
    u = np.array([-1e30, -1e4, -800.0, -50.0, 0.0, 50.0, 800.0, 1e4, 1e30]).astype(dtype)
    if isinstance(transform, (constraint_registry.ExpTransform, constraint_registry.LessThanTransform)):
        u = u[u <= 50]  # exp overflows to inf beyond that; inf, not NaN, is the right answer there
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        x = transform.forward(u)
        grad = np.ones_like(x)
        results = [x, transform.vjp(u, x, grad), transform.log_abs_det_jacobian(u, x),
                   transform.log_abs_det_jacobian_vjp(u, x, grad)]
    for result in results:
        assert np.isfinite(result).all(), result
    assert constraint.check(x).all()


def test_interval_inverse_is_finite_at_the_bounds():
    transform = constraint_registry.biject_to(constraints.interval(-1.0, 3.0))
    for dtype in (np.float32, np.float64):
        u = transform.inverse(np.array([-1.0, 3.0], dtype=dtype))
        assert np.isfinite(u).all() and u[0] < 0 < u[1]


def test_positive_inverse_of_tiny_values_is_finite():
    transform = constraint_registry.biject_to(constraints.positive)
    assert np.isfinite(transform.inverse(np.array([1e-300, 1e300]))).all()


def test_check():
    x = np.array([-1.0, 0.0, 0.5, 1.0, 2.0, np.nan])
    np.testing.assert_array_equal(constraints.real.check(x), [1, 1, 1, 1, 1, 0])
    np.testing.assert_array_equal(constraints.positive.check(x), [0, 0, 1, 1, 1, 0])
    np.testing.assert_array_equal(constraints.unit_interval.check(x), [0, 1, 1, 1, 0, 0])
    np.testing.assert_array_equal(constraints.greater_than(0.5).check(x), [0, 0, 0, 1, 1, 0])
    np.testing.assert_array_equal(constraints.interval(0.5, 2.0).check(x), [0, 0, 1, 1, 1, 0])
    np.testing.assert_array_equal(constraints.boolean.check(x), [0, 1, 0, 1, 0, 0])
    assert constraints.real.check(np.inf)  # torch counts infinities as real
    assert constraints.positive.check(3.0).dtype == np.bool_


def test_spec_strings_and_round_trip():
    assert constraints.real.spec == "real"
    assert constraints.positive.spec == "positive"
    assert constraints.boolean.spec == "boolean"
    assert constraints.unit_interval.spec == "interval(0.0, 1.0)"
    assert constraints.greater_than(2).spec == "greater_than(2.0)"
    assert constraints.interval(0.1, 1e-3 + 1).spec == "interval(0.1, 1.001)"
    for constraint in CONTINUOUS + [constraints.boolean, constraints.interval(1 / 3, 2 / 3)]:
        parsed = constraints.from_spec(constraint.spec)
        assert parsed == constraint and type(parsed) is type(constraint)
        assert parsed.spec == constraint.spec
    assert constraints.from_spec("interval( -1 , 1e2 )") == constraints.interval(-1, 100)
    assert constraints.from_spec("unit_interval") == constraints.unit_interval
    assert constraints.from_spec("positive") is constraints.positive


@pytest.mark.parametrize("spec", ["", "reals", "interval(0.0)", "interval(1.0, 0.0)", "interval(0, nan)",
                                  "greater_than(inf)", "greater_than(__import__('os'))", "interval(0, 1) "
                                  "+ 1", "exp(1)"])
def test_bad_specs_raise_value_error(spec):
    with pytest.raises(ValueError):
        constraints.from_spec(spec)


def test_constructor_errors():
    with pytest.raises(TypeError):
        constraints.from_spec(3)
    with pytest.raises(TypeError, match="scalar"):
        constraints.greater_than(np.zeros(2))  # only interval takes array bounds (a Uniform's support)
    with pytest.raises(ValueError, match="empty"):
        constraints.interval(1.0, 1.0)
    with pytest.raises(ValueError, match=r"constraints.interval\(array of shape \(3,\), 1.0\) is empty or "
                                         r"unbounded at 2 of 3 entries"):
        constraints.interval(np.array([0.0, 1.0, np.nan]), 1.0)
    with pytest.raises(NotImplementedError):
        constraint_registry.biject_to(constraints.boolean)
    with pytest.raises(TypeError):
        constraint_registry.biject_to("positive")


def test_equality_and_hash():
    assert constraints.interval(0.0, 1.0) == constraints.unit_interval
    assert constraints.greater_than(0.0) != constraints.positive  # different names, same set: kept apart
    assert constraints.positive != constraints.real
    assert len({constraints.interval(0, 1), constraints.unit_interval, constraints.real}) == 2


NEW = [constraints.nonnegative, constraints.softplus_positive, constraints.greater_than_eq(-1.5),
       constraints.simplex, constraints.integer, constraints.nonnegative_integer, constraints.boolean,
       constraints.less_than(-2.5), constraints.positive_definite]


@pytest.mark.parametrize("constraint", NEW, ids=[c.spec for c in NEW])
def test_new_constraints_round_trip_through_spec(constraint):
    parsed = constraints.from_spec(constraint.spec)
    assert parsed == constraint and type(parsed) is type(constraint) and parsed.spec == constraint.spec


def test_new_constraints_check():
    x = np.array([-1.0, 0.0, 0.5, 2.0, np.nan])
    np.testing.assert_array_equal(constraints.nonnegative.check(x), [0, 1, 1, 1, 0])
    np.testing.assert_array_equal(constraints.softplus_positive.check(x), [0, 0, 1, 1, 0])
    np.testing.assert_array_equal(constraints.integer.check(x), [1, 1, 0, 1, 0])
    np.testing.assert_array_equal(constraints.nonnegative_integer.check(x), [0, 1, 0, 1, 0])
    infinities = np.array([np.inf, -np.inf])  # no integers, as in torch (inf % 1 is NaN)
    for whole in (constraints.integer, constraints.nonnegative_integer, constraints.integer_interval(0, 3)):
        assert not whole.check(infinities).any()
    np.testing.assert_array_equal(constraints.integer_interval(0, 3).check(np.array([-1, 0, 2.5, 3, 4])),
                                  [0, 1, 0, 1, 0])
    vectors = np.array([[0.2, 0.8], [0.5, 0.6], [-0.1, 1.1], [1.0, 0.0]])
    np.testing.assert_array_equal(constraints.simplex.check(vectors), [1, 0, 0, 1])  # one answer per vector
    assert constraints.softplus_positive != constraints.positive and constraints.nonnegative != constraints.positive


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softplus_and_stick_breaking_extremes_give_no_nan(dtype):
    u = np.array([-1e30, -1e4, -800.0, -50.0, 0.0, 50.0, 800.0, 1e4]).astype(dtype)
    for constraint, point in [(constraints.softplus_positive, u), (constraints.simplex, u.reshape(2, 4))]:
        t = constraint_registry.biject_to(constraint)
        with np.errstate(over="ignore"):
            x = t.forward(point)
            results = [x, t.vjp(point, x, np.ones_like(x)), t.log_abs_det_jacobian(point, x),
                       t.log_abs_det_jacobian_vjp(point, x, np.ones(x.shape[:x.ndim - t.event_dim], dtype))]
        assert all(np.isfinite(r).all() and r.dtype == dtype for r in results), (constraint, results)
        assert np.all(constraint.check(x))


def test_less_than_and_positive_definite():
    t, u = constraint_registry.biject_to(constraints.less_than(-1.0)), np.array([-2.0, 0.0, 1.5])
    np.testing.assert_allclose(t.forward(u), -1.0 - np.exp(u), rtol=1e-15)  # Pyro's upper_bound - exp(u)
    np.testing.assert_allclose(t.log_abs_det_jacobian(u, t.forward(u)), u)
    np.testing.assert_array_equal(constraints.less_than(0.5).check(np.array([-1.0, 0.5, 1.0, np.nan])), [1, 0, 0, 0])
    assert constraints.less_than(0.5) != constraints.greater_than(0.5)
    matrices = np.array([[[2.0, 1.0], [1.0, 2.0]],      # positive definite
                         [[1.0, 2.0], [2.0, 1.0]],      # symmetric, eigenvalue -1
                         [[2.0, 1.0], [0.0, 2.0]],      # not symmetric
                         [[np.nan, 0.0], [0.0, 1.0]],   # NaN
                         [[0.0, 0.0], [0.0, 1.0]]])     # semi-definite only
    pd = constraints.positive_definite
    assert pd.event_dim == 2
    np.testing.assert_array_equal(pd.check(matrices), [1, 0, 0, 0, 0])  # one answer per matrix
    assert pd.check(np.eye(3)).shape == () and not pd.check(np.ones((2, 3))).any()
    with pytest.raises(NotImplementedError, match="lower_cholesky"):
        constraint_registry.biject_to(pd)


def test_every_distributions_constraints_are_discrete_exactly_where_no_bijection_reaches_them():
    # a distribution's own supports and argument constraints: a Poisson's rate (nonnegative) can be a param's
    # constraint like constraints.nonnegative itself; a count or a category cannot
    from test_contracts import CASES

    for name, make_case in CASES.items():
        case = make_case(np.random.default_rng(0))
        d = case.make(**case.args)
        for c in [d.support, *d.arg_constraints.values()]:
            try:
                constraint_registry.biject_to(c)
                reached = True
            except NotImplementedError:
                reached = False
            assert reached != c.is_discrete or c == constraints.positive_definite, (name, c)


def test_is_discrete_marks_exactly_the_sets_no_bijection_reaches():
    # as torch: boolean and the integer sets are discrete; every continuous constraint but
    # positive_definite (made from a lower_cholesky factor instead) has a bijection from R
    named = [constraints.real, constraints.positive, constraints.softplus_positive, constraints.nonnegative,
             constraints.boolean, constraints.integer, constraints.nonnegative_integer, constraints.simplex,
             constraints.lower_cholesky, constraints.unit_interval, constraints.greater_than(1.0),
             constraints.less_than(0.0), constraints.interval(-1.0, 2.0)]
    assert {c.spec for c in named if c.is_discrete} == {"boolean", "integer", "nonnegative_integer"}
    for c in named:
        if c.is_discrete:
            with pytest.raises(NotImplementedError, match="discrete"):
                constraint_registry.biject_to(c)
        else:
            assert constraint_registry.biject_to(c).codomain == c


# ---------------------------------------------------------------- intervals with array bounds
LOW, HIGH = np.array([-1.0, 0.0, 2.0]), np.array([0.0, 5.0, 2.5])


def test_an_interval_may_have_array_bounds_as_a_uniforms_support():
    support = dist.Uniform(LOW, HIGH).support
    assert support == dist.Uniform(LOW, HIGH).support == constraints.interval(LOW.copy(), HIGH.copy())
    assert support != constraints.interval(LOW, HIGH + 1) and support != constraints.interval(-1.0, 0.0)
    assert constraints.real != support and len({support, dist.Uniform(LOW, HIGH).support}) == 1
    assert repr(support) == "constraints.interval(array of shape (3,), array of shape (3,))"
    np.testing.assert_array_equal(support.check(np.array([[-0.5, 5.0, 2.0], [0.5, 1.0, 3.0]])),
                                  [[True, True, True], [False, True, False]])
    with pytest.raises(ValueError, match=r"has array bounds, so it has no spec and cannot be saved as a param's "
                                         r"constraint"):
        support.spec  # what saving a param store writes: refused, rather than written unreadable
    assert constraints.interval(np.float64(0.0), np.array(1.0)).spec == "interval(0.0, 1.0)"  # 0-d: scalars


def test_biject_to_an_array_interval_maps_each_entry_into_its_own_bounds():
    # what AutoNormal does with a Uniform(lows, highs) site: x = biject_to(support)(u), u in R^3
    t = constraint_registry.biject_to(dist.Uniform(LOW, HIGH).support)
    u = unconstrained_points(np.random.default_rng(4), (5, 3))
    x = t(u)
    assert x.shape == u.shape and np.all((LOW <= x) & (x <= HIGH))
    for i in range(3):  # column by column, the scalar interval's map
        scalar = constraint_registry.biject_to(constraints.interval(LOW[i], HIGH[i]))
        np.testing.assert_allclose(x[:, i], scalar(u[:, i]), rtol=1e-15)
        np.testing.assert_allclose(t.log_abs_det_jacobian(u, x)[:, i], scalar.log_abs_det_jacobian(u[:, i], x[:, i]),
                                   rtol=1e-14)
    np.testing.assert_allclose(t.inverse(x), u, rtol=1e-9, atol=1e-9)
    check_vjp(t.forward, {"u": u}, lambda g, u: {"u": t.vjp(u, t(u), g)})
    check_vjp(lambda u: t.log_abs_det_jacobian(u, t(u)), {"u": u},
              lambda g, u: {"u": t.log_abs_det_jacobian_vjp(u, t(u), g)})
    x = t(u / 3)  # the inverse (a logit) curves steeply near the bounds: finite differences away from them
    check_vjp(t.inverse, {"x": x}, lambda g, x: {"x": t.inverse_vjp(t.inverse(x), x, g)})


def test_autonormal_guides_a_uniform_with_array_bounds():
    def model():
        theta = minippl.sample("theta", dist.Uniform(LOW, HIGH).to_event(1))
        minippl.sample("obs", dist.Normal(theta, 1.0).to_event(1), obs=np.array([-0.3, 4.0, 2.2]))

    guide = AutoNormal(model)
    check_gradients(model, guide)
    svi = SVI(model, guide, Adam({"lr": 0.05}), Trace_ELBO())
    for _ in range(5):
        svi.step()
    draws = np.stack([guide()["theta"] for _ in range(20)])
    assert np.all((LOW <= draws) & (draws <= HIGH))
