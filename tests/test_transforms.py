"""Pyro's transforms and TransformedDistribution: float64 finite-difference tests of every
hand-written VJP (input, inverse, log |det J|, and AffineTransform's loc and scale), round
trips, log |det J| against a numerical Jacobian, log-densities against SciPy, the eight schools
(non-centred) model through check_gradients, and a simplex param trained by SVI."""
import numpy as np
import pytest
import scipy.stats
from finite_diff import check_vjp, directional_derivative

import minippl
import minippl.distributions as dist
from minippl.distributions import constraint_registry, constraints, transforms
from minippl.infer import SVI, Trace_ELBO, check_gradients
from minippl.infer.autoguide import AutoNormal
from minippl.optim import Adam

RNG = np.random.default_rng(0)
T = transforms

MAKERS = {
    "Affine": lambda: T.AffineTransform(np.array([0.5, -1.0, 2.0, 0.0]), np.array([2.0, -0.5, 1.5, 3.0])),
    "Exp": T.ExpTransform,
    "Sigmoid": T.SigmoidTransform,
    "Softplus": T.SoftplusTransform,
    "StickBreaking": T.StickBreakingTransform,
    "Compose": lambda: T.ComposeTransform([T.AffineTransform(0.3, 1.7), T.SigmoidTransform()]),
    "Compose(Affine, StickBreaking)": lambda: T.ComposeTransform([T.AffineTransform(0.3, -1.2),
                                                                  T.StickBreakingTransform()]),
}


def point():
    return np.random.default_rng(1).standard_normal((3, 4))


@pytest.mark.parametrize("name", MAKERS)
def test_round_trip_and_codomain(name):
    t, u = MAKERS[name](), point()
    x = t(u)
    assert x.shape == t.forward_shape(u.shape) and t.inverse_shape(x.shape) == u.shape
    assert np.all(t.codomain.check(x))
    np.testing.assert_allclose(t.inverse(x), u, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name", MAKERS)
def test_log_abs_det_jacobian_against_a_numerical_jacobian(name):
    t, u = MAKERS[name](), point()
    log_det = t.log_abs_det_jacobian(u, t(u))
    n = u.shape[-1]
    if t.event_dim == 0:
        slope = directional_derivative(lambda s: t.forward(u + s))
        np.testing.assert_allclose(log_det, np.log(np.abs(slope)), rtol=1e-8, atol=1e-8)
        return
    for row in range(u.shape[0]):  # the full Jacobian of the n free outputs, column by column
        jac = np.stack([directional_derivative(lambda s: t.forward(u[row] + s * np.eye(n)[j])[:n])
                        for j in range(n)], axis=1)
        np.testing.assert_allclose(log_det[row], np.linalg.slogdet(jac)[1], rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("name", MAKERS)
def test_vjps_match_finite_differences(name):
    t, u = MAKERS[name](), point()
    check_vjp(t.forward, {"u": u}, lambda g, u: {"u": t.vjp(u, t(u), g)})
    check_vjp(lambda u: t.log_abs_det_jacobian(u, t(u)), {"u": u},
              lambda g, u: {"u": t.log_abs_det_jacobian_vjp(u, t(u), g)})
    x = t(u)
    if t.event_dim:  # the inverse reads only the free entries: move those
        check_vjp(lambda head: t.inverse(np.concatenate([head, 1 - head.sum(-1, keepdims=True)], -1)),
                  {"head": x[..., :-1]},
                  lambda g, head: {"head": (lambda full: full[..., :-1] - full[..., -1:])(
                      t.inverse_vjp(t.inverse(x), x, g))})
    else:
        check_vjp(t.inverse, {"x": x}, lambda g, x: {"x": t.inverse_vjp(t.inverse(x), x, g)})


def test_affine_argument_vjps():
    u = point()
    loc, scale = RNG.standard_normal(4), np.exp(RNG.standard_normal((3, 1)))
    for event_dim in (0, 1):
        def make(loc, scale, event_dim=event_dim):
            return T.AffineTransform(loc, scale, event_dim)

        check_vjp(lambda loc, scale: make(loc, scale)(u), {"loc": loc, "scale": scale},
                  lambda g, loc, scale: make(loc, scale).params_vjp(u, make(loc, scale)(u), g))
        x = make(loc, scale)(u)
        check_vjp(lambda loc, scale: make(loc, scale).inverse(x), {"loc": loc, "scale": scale},
                  lambda g, loc, scale: make(loc, scale).inverse_params_vjp(make(loc, scale).inverse(x), x, g))
        check_vjp(lambda scale: make(loc, scale).log_abs_det_jacobian(u, x), {"scale": scale},
                  lambda g, scale: {"scale": make(loc, scale).log_abs_det_jacobian_params_vjp(u, x, g)["scale"]})
        assert make(loc, scale).log_abs_det_jacobian(u, x).shape == (3, 4)[:2 - event_dim]


def test_biject_to_new_constraints():
    assert isinstance(constraint_registry.biject_to(constraints.softplus_positive), T.SoftplusTransform)
    assert isinstance(constraint_registry.biject_to(constraints.simplex), T.StickBreakingTransform)
    assert isinstance(constraint_registry.biject_to(constraints.nonnegative), T.ExpTransform)
    assert T.ExpTransform().codomain == constraints.positive
    for discrete in (constraints.integer, constraints.nonnegative_integer, constraints.boolean):
        with pytest.raises(NotImplementedError):
            constraint_registry.biject_to(discrete)


# ---------------------------------------------------------------- TransformedDistribution
def test_affine_normal_is_a_normal_and_exp_normal_is_a_lognormal():
    loc, scale, y = RNG.standard_normal(3), np.exp(RNG.standard_normal(3)), RNG.standard_normal((5, 3))
    d = dist.TransformedDistribution(dist.Normal(0.0, 1.0), T.AffineTransform(loc, scale))
    assert d.batch_shape == (3,) and d.event_shape == ()
    np.testing.assert_allclose(d.log_prob(y), scipy.stats.norm(loc, scale).logpdf(y), rtol=1e-12)
    x = np.exp(y)
    lognormal = dist.TransformedDistribution(dist.Normal(loc, scale), T.ExpTransform())
    np.testing.assert_allclose(lognormal.log_prob(x), scipy.stats.lognorm(scale, scale=np.exp(loc)).logpdf(x),
                               rtol=1e-12)
    np.testing.assert_allclose(lognormal.log_prob(x), dist.LogNormal(loc, scale).log_prob(x), rtol=1e-12)
    assert d.sample((7,), np.random.default_rng(0)).shape == (7, 3)
    assert d.expand((2, 3)).sample((), np.random.default_rng(0)).shape == (2, 3)


def stick_breaking_normal(loc, scale):
    return dist.TransformedDistribution(dist.Normal(loc, scale).to_event(1), T.StickBreakingTransform())


def test_stick_breaking_of_a_normal():
    loc, scale = RNG.standard_normal(3), np.exp(0.3 * RNG.standard_normal(3))
    d = stick_breaking_normal(loc, scale)
    assert d.event_shape == (4,) and d.batch_shape == ()
    value = d.sample((5,), np.random.default_rng(0))
    assert value.shape == (5, 4) and np.all(constraints.simplex.check(value))
    u = T.StickBreakingTransform().inverse(value)
    t = T.StickBreakingTransform()
    expected = scipy.stats.norm(loc, scale).logpdf(u).sum(-1) - t.log_abs_det_jacobian(u, value)
    np.testing.assert_allclose(d.log_prob(value), expected, rtol=1e-10)
    check_vjp(lambda loc, scale: stick_breaking_normal(loc, scale).log_prob(value), {"loc": loc, "scale": scale},
              lambda g, loc, scale: stick_breaking_normal(loc, scale).log_prob_vjp(value, g, ["loc", "scale"]))
    _, noise = d.rsample_with_noise((5,), np.random.default_rng(1))
    check_vjp(lambda loc, scale: stick_breaking_normal(loc, scale).rsample_with_noise((5,),
                                                                                      np.random.default_rng(1))[0],
              {"loc": loc, "scale": scale},
              lambda g, loc, scale: stick_breaking_normal(loc, scale).rsample_vjp(noise, g, ["loc", "scale"]))


def test_transformed_vjps_with_affine_arguments_event_dim_1():
    def make(mu, tau):
        base = dist.Normal(np.zeros(4), 1.0).to_event(1)
        return dist.TransformedDistribution(base, [T.AffineTransform(mu, tau, event_dim=1), T.ExpTransform()])

    mu, tau, value = RNG.standard_normal(4), np.exp(RNG.standard_normal(4)), np.exp(RNG.standard_normal((3, 4)))
    names = ["value", "transforms.0.loc", "transforms.0.scale"]
    check_vjp(lambda value, mu, tau: make(mu, tau).log_prob(value), {"value": value, "mu": mu, "tau": tau},
              lambda g, value, mu, tau: dict(zip(["value", "mu", "tau"],
                                                 make(mu, tau).log_prob_vjp(value, g, names).values())))
    assert make(mu, tau).log_prob(value).shape == (3,)


# ---------------------------------------------------------------- in models
J = 8
Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


def eight_schools(sigma, y=None):
    """Pyro's non-centred eight schools, as written for Pyro."""
    mu = minippl.sample("mu", dist.Normal(0.0, 5.0))
    tau = minippl.sample("tau", dist.HalfCauchy(5.0))
    with minippl.plate("J", J):
        theta = minippl.sample("theta", dist.TransformedDistribution(dist.Normal(0.0, 1.0),
                                                                      transforms.AffineTransform(mu, tau)))
        minippl.sample("obs", dist.Normal(theta, sigma), obs=y)


def eight_schools_guide(sigma, y=None):
    mu_loc = minippl.param("mu_loc", np.array(1.0))
    tau_loc = minippl.param("tau_loc", np.array(0.5))
    theta_loc = minippl.param("theta_loc", np.linspace(-1, 1, J))
    theta_scale = minippl.param("theta_scale", np.full(J, 2.0), constraint=constraints.softplus_positive)
    minippl.sample("mu", dist.Normal(mu_loc, 0.7))
    minippl.sample("tau", dist.LogNormal(tau_loc, 0.4))
    with minippl.plate("J", J):
        minippl.sample("theta", dist.Normal(theta_loc, theta_scale))


def transformed_guide(sigma, y=None):
    """theta drawn through an AffineTransform whose loc and scale are params: the sampler's VJP."""
    mu_loc = minippl.param("mu_loc", np.array(1.0))
    minippl.sample("mu", dist.Normal(mu_loc, 0.7))
    minippl.sample("tau", dist.LogNormal(minippl.param("tau_loc", np.array(0.5)), 0.4))
    theta_loc = minippl.param("theta_loc", np.linspace(-1, 1, J))
    theta_scale = minippl.param("theta_scale", np.full(J, 2.0), constraint=constraints.positive)
    with minippl.plate("J", J):
        minippl.sample("theta", dist.TransformedDistribution(
            dist.Normal(0.0, 1.0), transforms.AffineTransform(theta_loc + mu_loc, theta_scale)))


@pytest.mark.parametrize("guide", ["hand", "AutoNormal", "transformed"])
def test_eight_schools_gradients(guide):
    guide = {"hand": eight_schools_guide, "transformed": transformed_guide}.get(guide) or AutoNormal(eight_schools)
    check_gradients(eight_schools, guide, SIGMA, Y)


def test_eight_schools_svi_runs():
    svi = SVI(eight_schools, eight_schools_guide, Adam({"lr": 0.02}), Trace_ELBO())
    losses = [svi.step(SIGMA, Y) for _ in range(300)]
    assert np.isfinite(losses).all() and np.mean(losses[-50:]) < np.mean(losses[:50])


def test_a_simplex_param_trained_by_svi_stays_on_the_simplex():
    counts = np.array([20.0, 5.0, 50.0, 25.0])

    def model():
        probs = minippl.param("probs", np.full(4, 0.25), constraint=constraints.simplex)
        minippl.factor("multinomial", (counts * np.log(probs)).sum())  # maximised at counts / sum

    def guide():
        pass

    svi = SVI(model, guide, Adam({"lr": 0.05}), Trace_ELBO())
    for _ in range(500):
        svi.step()
        probs = minippl.get_param_store()["probs"]
        assert probs.shape == (4,) and constraints.simplex.check(probs)
    assert minippl.get_param_store().get_constraint("probs") == constraints.simplex
    np.testing.assert_allclose(probs, counts / counts.sum(), atol=0.02)


def test_affine_parameters_may_broadcast_past_the_base_batch_shape():
    # torch: a scalar Normal under AffineTransform(loc of shape (2,), scale of shape (2,)) has batch (2,)

    loc, scale = np.array([1.0, -2.0]), np.array([-2.0, 0.5])
    d = dist.TransformedDistribution(dist.Normal(np.array(0.0), np.array(1.0)), transforms.AffineTransform(loc, scale))
    assert d.batch_shape == (2,)
    np.testing.assert_allclose(d.log_prob(np.array(0.3)), scipy.stats.norm.logpdf(0.3, loc, np.abs(scale)), rtol=1e-12)


# ---------------------------------------------------------------- what is not a transform
@pytest.mark.parametrize("transforms, message", [
    (T.ExpTransform, r"got the class ExpTransform, not a transform; pass an instance: ExpTransform\(\)"),
    ([T.AffineTransform(0.0, 2.0), T.SigmoidTransform], r"got the class SigmoidTransform, .* SigmoidTransform\(\)"),
    (np.exp, r"each transform must be a Transform instance, got <ufunc 'exp'>; pass an instance, e.g. "
             r"ExpTransform\(\) for np.exp"),
])
def test_a_transform_class_or_function_is_a_clear_error(transforms, message):
    with pytest.raises(TypeError, match="TransformedDistribution: " + message):
        dist.TransformedDistribution(dist.Normal(0.0, 1.0), transforms)


def test_compose_transform_checks_its_parts_too():
    with pytest.raises(TypeError, match=r"ComposeTransform: got the class ExpTransform, not a transform; pass an "
                                        r"instance: ExpTransform\(\)"):
        T.ComposeTransform([T.AffineTransform(0.0, 2.0), T.ExpTransform])


def test_stick_breaking_of_a_scalar_names_the_vector_base_it_needs():
    fix = r"use a base like Normal\(np.zeros\(K - 1\), 1.\).to_event\(1\)"
    with pytest.raises(ValueError, match=r"StickBreakingTransform maps vectors \(event_dim 1\): its input needs a "
                                         r"last dim of K - 1 >= 1 entries, got shape \(\); .*" + fix):
        dist.TransformedDistribution(dist.Normal(0.0, 1.0), T.StickBreakingTransform())
    with pytest.raises(ValueError, match=r"its input needs .* got shape \(\); .*" + fix):
        T.StickBreakingTransform()(np.array(0.5))
    with pytest.raises(ValueError, match=r"its value needs a last dim of K >= 2 entries, got shape \(1,\)"):
        T.StickBreakingTransform().inverse_shape((1,))
    d = dist.TransformedDistribution(dist.Normal(np.zeros(2), 1.0).to_event(1), T.StickBreakingTransform())
    assert d.event_shape == (3,)
