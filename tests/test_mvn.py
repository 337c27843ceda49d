"""MultivariateNormal and the lower_cholesky transform: log_prob against SciPy, every hand-written
VJP (log_prob, rsample, KL, the transform) against float64 finite differences, the three
parametrisations against each other, batch broadcasting, sampling moments, the MVN/MVN KL against
Monte Carlo, check_gradients on an MVN guide, SVI recovering a correlated Gaussian posterior, and
LowRankMultivariateNormal against SciPy, the dense MVN and finite differences."""
import numpy as np
import pytest
import scipy.stats
from finite_diff import check_vjp

import minippl
import minippl.distributions as dist
from minippl.distributions import constraint_registry, constraints
from minippl.distributions.transforms import LowerCholeskyTransform
from minippl.infer import SVI, Trace_ELBO, TraceMeanField_ELBO, check_gradients
from minippl.optim import Adam

D = 3


def random_tril(rng, *batch, d=D):
    return np.tril(0.5 * rng.standard_normal(batch + (d, d)), -1) + np.eye(d) * np.exp(
        0.3 * rng.standard_normal(batch + (d,)))[..., None]


def make(loc, matrix, kind):
    """MultivariateNormal with ``matrix`` as the named parametrisation; scale_tril read through its lower
    triangle, so finite differences move only that (the upper one is not an argument)."""
    if kind == "scale_tril":
        return dist.MultivariateNormal(loc, scale_tril=np.tril(matrix))
    return dist.MultivariateNormal(loc, **{kind: matrix})


def matrix_for(L, kind):
    cov = L @ np.swapaxes(L, -1, -2)
    return {"scale_tril": L, "covariance_matrix": cov, "precision_matrix": np.linalg.inv(cov)}[kind]


KINDS = ["scale_tril", "covariance_matrix", "precision_matrix"]


@pytest.mark.parametrize("kind", KINDS)
def test_log_prob_matches_scipy(kind):
    rng = np.random.default_rng(0)
    L, loc = random_tril(rng), rng.standard_normal(D)
    x = rng.standard_normal((7, D))
    d = make(loc, matrix_for(L, kind), kind)
    assert d.batch_shape == () and d.event_shape == (D,) and d.log_prob(x).shape == (7,)
    expected = scipy.stats.multivariate_normal(loc, L @ L.T).logpdf(x)
    np.testing.assert_allclose(d.log_prob(x), expected, rtol=1e-10)


def test_the_three_parametrisations_agree():
    rng = np.random.default_rng(1)
    L, loc = random_tril(rng, 2), rng.standard_normal((2, D))
    ds = [make(loc, matrix_for(L, kind), kind) for kind in KINDS]
    x = rng.standard_normal((4, 2, D))
    for d in ds[1:]:
        for prop in ("scale_tril", "covariance_matrix", "precision_matrix", "mean", "variance"):
            np.testing.assert_allclose(getattr(d, prop), getattr(ds[0], prop), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(d.log_prob(x), ds[0].log_prob(x), rtol=1e-10)
        np.testing.assert_allclose(d.rsample((5,), np.random.default_rng(3)),
                                   ds[0].rsample((5,), np.random.default_rng(3)), rtol=1e-10, atol=1e-12)
    assert [d.arg_names for d in ds] == [("loc", kind) for kind in KINDS]
    np.testing.assert_allclose(ds[0].variance, np.einsum("...ii->...i", L @ np.swapaxes(L, -1, -2)))


def test_batch_shapes_broadcast():
    rng = np.random.default_rng(2)
    loc, L = rng.standard_normal((2, 1, D)), random_tril(rng, 3)
    d = dist.MultivariateNormal(loc, scale_tril=L)
    assert d.batch_shape == (2, 3) and d.shape((5,)) == (5, 2, 3, D)
    x = rng.standard_normal((5, 2, 3, D))
    lp = d.log_prob(x)
    assert lp.shape == (5, 2, 3)
    for i in range(2):
        for j in range(3):
            np.testing.assert_allclose(lp[:, i, j], scipy.stats.multivariate_normal(loc[i, 0], L[j] @ L[j].T)
                                       .logpdf(x[:, i, j]), rtol=1e-10)
    assert d.sample((4,), rng).shape == (4, 2, 3, D)
    assert d.expand((6, 2, 3)).sample((), rng).shape == (6, 2, 3, D)
    assert d.log_prob(x[0, 0, 0]).shape == (2, 3)


@pytest.mark.parametrize("kind", KINDS)
def test_log_prob_vjps_match_finite_differences(kind):
    rng = np.random.default_rng(4)
    L = random_tril(rng, 3)
    point = {"value": rng.standard_normal((4, 2, 1, D)), "loc": rng.standard_normal((2, 1, D)),
             "matrix": matrix_for(L, kind)}

    def vjp(g, value, loc, matrix):
        grads = make(loc, matrix, kind).log_prob_vjp(value, g, ["value", "loc", kind])
        return {"value": grads["value"], "loc": grads["loc"], "matrix": grads[kind]}

    check_vjp(lambda value, loc, matrix: make(loc, matrix, kind).log_prob(value), point, vjp)
    grads = make(point["loc"], point["matrix"], kind).log_prob_vjp(point["value"], np.ones((4, 2, 3)), [kind])
    if kind == "scale_tril":
        assert not np.triu(grads[kind], 1).any()  # the upper triangle is not read
    else:
        np.testing.assert_allclose(grads[kind], np.swapaxes(grads[kind], -1, -2), rtol=1e-12)  # symmetric


@pytest.mark.parametrize("kind", KINDS)
def test_rsample_vjps_match_finite_differences_at_fixed_noise(kind):
    rng = np.random.default_rng(5)
    point = {"loc": rng.standard_normal((2, 1, D)), "matrix": matrix_for(random_tril(rng, 3), kind)}

    def draw(loc, matrix):
        return make(loc, matrix, kind).rsample_with_noise((4,), np.random.default_rng(6))

    noise = draw(**point)[1]

    def vjp(g, loc, matrix):
        grads = make(loc, matrix, kind).rsample_vjp(noise, g, ["loc", kind])
        return {"loc": grads["loc"], "matrix": grads[kind]}

    check_vjp(lambda loc, matrix: draw(loc, matrix)[0], point, vjp)


def test_rsample_vjp_is_g_and_tril_g_eps():
    rng = np.random.default_rng(7)
    loc, L = rng.standard_normal(D), random_tril(rng)
    d = dist.MultivariateNormal(loc, scale_tril=L)
    value, eps = d.rsample_with_noise((5,), rng)
    np.testing.assert_allclose(value, loc + eps @ L.T, rtol=1e-12)
    g = rng.standard_normal((5, D))
    grads = d.rsample_vjp(eps, g, ["loc", "scale_tril"])
    np.testing.assert_allclose(grads["loc"], g.sum(0))
    np.testing.assert_allclose(grads["scale_tril"], np.tril(g.T @ eps), rtol=1e-12)


def test_sampling_moments():
    # 200k draws: the mean within 4 standard errors, each covariance entry within 0.03 (its standard
    # error is about sqrt((S_ii S_jj + S_ij^2) / n) < 0.01 here)
    rng = np.random.default_rng(8)
    loc, L = rng.standard_normal(D), random_tril(rng)
    cov = L @ L.T
    x = dist.MultivariateNormal(loc, scale_tril=L).sample((200_000,), np.random.default_rng(9))
    se = np.sqrt(np.diag(cov) / len(x))
    assert np.all(np.abs(x.mean(0) - loc) < 4 * se)
    np.testing.assert_allclose(np.cov(x.T), cov, atol=0.03)


# ---------------------------------------------------------------- KL
def kl_numpy(mp, Sp, mq, Sq):
    Sq_inv = np.linalg.inv(Sq)
    diff = mq - mp
    return 0.5 * (np.trace(Sq_inv @ Sp) + diff @ Sq_inv @ diff - len(mp) + np.linalg.slogdet(Sq)[1]
                  - np.linalg.slogdet(Sp)[1])


def test_kl_matches_the_textbook_formula_and_monte_carlo():
    rng = np.random.default_rng(10)
    Lp, Lq = random_tril(rng), random_tril(rng)
    mp, mq = rng.standard_normal(D), rng.standard_normal(D)
    p, q = dist.MultivariateNormal(mp, scale_tril=Lp), dist.MultivariateNormal(mq, covariance_matrix=Lq @ Lq.T)
    kl = dist.kl_divergence(p, q)
    assert isinstance(kl, np.ndarray) and kl.shape == ()
    np.testing.assert_allclose(kl, kl_numpy(mp, Lp @ Lp.T, mq, Lq @ Lq.T), rtol=1e-10)
    z = p.sample((200_000,), np.random.default_rng(11))
    terms = p.log_prob(z) - q.log_prob(z)
    assert abs(kl - terms.mean()) < 5 * terms.std() / np.sqrt(len(z))  # 5 Monte Carlo standard errors
    np.testing.assert_allclose(dist.kl_divergence(p, p), 0.0, atol=1e-12)


def test_kl_broadcasts_over_batches():
    rng = np.random.default_rng(12)
    mp, Lp, mq, Lq = rng.standard_normal((2, 1, D)), random_tril(rng, 3), rng.standard_normal(D), random_tril(rng)
    kl = dist.kl_divergence(dist.MultivariateNormal(mp, scale_tril=Lp), dist.MultivariateNormal(mq, scale_tril=Lq))
    assert kl.shape == (2, 3)
    np.testing.assert_allclose(kl[1, 2], kl_numpy(mp[1, 0], Lp[2] @ Lp[2].T, mq, Lq @ Lq.T), rtol=1e-10)


@pytest.mark.parametrize("kind_p, kind_q", [("scale_tril", "scale_tril"), ("covariance_matrix", "precision_matrix"),
                                            ("precision_matrix", "scale_tril")])
def test_kl_vjps_match_finite_differences(kind_p, kind_q):
    rng = np.random.default_rng(13)
    point = {"mp": rng.standard_normal((2, 1, D)), "Mp": matrix_for(random_tril(rng, 3), kind_p),
             "mq": rng.standard_normal(D), "Mq": matrix_for(random_tril(rng), kind_q)}

    def kl(mp, Mp, mq, Mq):
        return dist.kl_divergence(make(mp, Mp, kind_p), make(mq, Mq, kind_q))

    def vjp(g, mp, Mp, mq, Mq):
        gp, gq = dist.kl_divergence_vjp(make(mp, Mp, kind_p), make(mq, Mq, kind_q), g, ["loc", kind_p], ["loc", kind_q])
        return {"mp": gp["loc"], "Mp": gp[kind_p], "mq": gq["loc"], "Mq": gq[kind_q]}

    check_vjp(kl, point, vjp)


# ---------------------------------------------------------------- lower_cholesky
def test_lower_cholesky_constraint_and_transform():
    t = constraint_registry.biject_to(constraints.lower_cholesky)
    assert isinstance(t, LowerCholeskyTransform) and t.codomain == constraints.lower_cholesky
    assert constraints.from_spec("lower_cholesky") is constraints.lower_cholesky
    good = np.array([[1.0, 0.0], [-3.0, 0.5]])
    bad = [np.array([[1.0, 0.1], [0.0, 1.0]]), np.array([[1.0, 0.0], [0.0, 0.0]]), np.array([[np.nan, 0.0], [0.0, 1]])]
    np.testing.assert_array_equal(constraints.lower_cholesky.check(np.stack([good] + bad)), [1, 0, 0, 0])
    rng = np.random.default_rng(14)
    u = rng.standard_normal((4, D, D))
    x = t(u)
    assert constraints.lower_cholesky.check(x).all()
    np.testing.assert_allclose(t.inverse(x), np.tril(u), rtol=1e-12)  # the upper triangle is not read
    np.testing.assert_allclose(t(t.inverse(x)), x, rtol=1e-12)
    np.testing.assert_allclose(t.log_abs_det_jacobian(u, x), np.einsum("...ii->...", u))
    check_vjp(t.forward, {"u": u}, lambda g, u: {"u": t.vjp(u, t(u), g)})
    check_vjp(lambda u: t.log_abs_det_jacobian(u, t(u)), {"u": u},
              lambda g, u: {"u": t.log_abs_det_jacobian_vjp(u, t(u), g)})
    u32 = u.astype(np.float32)
    assert all(a.dtype == np.float32 for a in (t(u32), t.inverse(t(u32)), t.vjp(u32, t(u32), t(u32))))


# ---------------------------------------------------------------- errors
def test_errors():
    L = np.eye(2)
    with pytest.raises(ValueError, match="exactly one of covariance_matrix=, precision_matrix= or scale_tril="):
        dist.MultivariateNormal(np.zeros(2), covariance_matrix=L, scale_tril=L)
    with pytest.raises(ValueError, match="exactly one"):
        dist.MultivariateNormal(np.zeros(2))
    with pytest.raises(ValueError, match=r"loc must have shape \(..., d\)"):
        dist.MultivariateNormal(np.zeros(3), scale_tril=L)
    with pytest.raises(ValueError, match="not positive definite"):
        dist.MultivariateNormal(np.zeros(2), covariance_matrix=np.array([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(ValueError, match="scale_tril must be lower-triangular with a positive diagonal, but 2 of 4"):
        dist.MultivariateNormal(np.zeros(2), scale_tril=np.array([[1.0, 1.0], [0.0, -1.0]]))
    with pytest.raises(ValueError, match="cannot differentiate"):
        dist.MultivariateNormal(np.zeros(2), covariance_matrix=L).log_prob_vjp(np.zeros(2), 1.0, ["scale_tril"])


# ---------------------------------------------------------------- inference
# y_n ~ MVN(z, R), z ~ MVN(0, S0): the posterior is MVN with precision S0^{-1} + N R^{-1}, correlated
S0 = np.array([[2.0, 0.6], [0.6, 1.0]])
R = np.array([[1.0, -0.8], [-0.8, 1.0]])
Y = np.random.default_rng(15).multivariate_normal([1.0, -1.0], R, size=10)
POST_COV = np.linalg.inv(np.linalg.inv(S0) + len(Y) * np.linalg.inv(R))
POST_MEAN = POST_COV @ (np.linalg.inv(R) @ Y.sum(0))


def model(y):
    z = minippl.sample("z", dist.MultivariateNormal(np.zeros(2), covariance_matrix=S0))
    with minippl.plate("data", len(y)):
        minippl.sample("obs", dist.MultivariateNormal(z, precision_matrix=np.linalg.inv(R)), obs=y)


def guide(y):
    loc = minippl.param("loc", np.zeros(2))
    scale_tril = minippl.param("scale_tril", 0.5 * np.eye(2), constraint=constraints.lower_cholesky)
    minippl.sample("z", dist.MultivariateNormal(loc, scale_tril=scale_tril))


def matrix_guide(kind):
    """The guide with its matrix built from the scale_tril param by traced NumPy (recorded on the
    tape): the gradient reaches the param through the Cholesky (and inverse) VJPs."""
    def guide_(y):
        loc = minippl.param("loc", np.zeros(2))
        L = minippl.param("scale_tril", 0.5 * np.eye(2), constraint=constraints.lower_cholesky)
        matrix = {"scale_tril": L, "covariance_matrix": L @ L.T, "precision_matrix": L @ L.T + 0.1 * np.eye(2)}[kind]
        minippl.sample("z", dist.MultivariateNormal(loc, **{kind: matrix}))
    return guide_


@pytest.mark.parametrize("kind", KINDS)
def test_check_gradients_with_an_mvn_guide(kind):
    minippl.param("scale_tril", np.array([[0.5, 0.0], [0.2, 0.3]]), constraint=constraints.lower_cholesky)
    report = check_gradients(model, matrix_guide(kind), Y, num_directions=3)
    assert set(report) == {"loc", "scale_tril"}
    check_gradients(model, guide, Y, num_directions=3)
    check_gradients(model, matrix_guide(kind), Y, loss=TraceMeanField_ELBO(), num_directions=3)  # the MVN/MVN KL


def test_float32_stays_float32():
    rng = np.random.default_rng(16)
    L, loc = random_tril(rng).astype(np.float32), rng.standard_normal(D).astype(np.float32)
    d = dist.MultivariateNormal(loc, scale_tril=L)
    x, eps = d.rsample_with_noise((4,), rng)
    g = np.ones(4, np.float32)
    outs = [x, d.log_prob(x), *d.log_prob_vjp(x, g, ["value", "loc", "scale_tril"]).values(),
            *d.rsample_vjp(eps, np.ones_like(x), ["loc", "scale_tril"]).values()]
    assert all(o.dtype == np.float32 for o in outs), [o.dtype for o in outs]


def test_svi_recovers_a_correlated_posterior():
    # 3000 steps of one-sample Trace_ELBO (about 1.6 s), then the iterates of the last 1000 averaged
    # (Polyak): the posterior mean within 0.04 (0.15 sd) and each covariance entry within 0.01 of the
    # exact [[0.084, -0.063], [-0.063, 0.082]] (correlation -0.76). Over seeds 0-5 the errors were at
    # most 0.028 and 0.006; seed 0 (conftest) gives 0.005 and 0.006.
    svi = SVI(model, guide, Adam({"lr": 0.01}), Trace_ELBO())
    store, locs, covs = minippl.get_param_store(), [], []
    for step in range(3000):
        svi.step(Y)
        if step >= 2000:
            L = store["scale_tril"]
            locs.append(store["loc"].copy())
            covs.append(L @ L.T)
    assert np.all(constraints.lower_cholesky.check(store["scale_tril"]))
    np.testing.assert_allclose(np.mean(locs, 0), POST_MEAN, atol=0.04)
    np.testing.assert_allclose(np.mean(covs, 0), POST_COV, atol=0.01)


# ---------------------------------------------------------------- LowRankMultivariateNormal
def low_rank_point(rng):
    return {"loc": rng.standard_normal((2, 1, D)), "cov_factor": rng.standard_normal((4, D, 2)),
            "cov_diag": np.exp(0.3 * rng.standard_normal(D))}


def test_low_rank_matches_scipy_and_the_dense_mvn():
    rng = np.random.default_rng(17)
    p = low_rank_point(rng)
    d = dist.LowRankMultivariateNormal(**p)
    assert d.batch_shape == (2, 4) and d.event_shape == (D,)
    cov = p["cov_factor"] @ np.swapaxes(p["cov_factor"], -1, -2) + np.diag(p["cov_diag"])
    dense = dist.MultivariateNormal(p["loc"], covariance_matrix=cov)
    x = rng.standard_normal((5, 2, 4, D))
    np.testing.assert_allclose(d.log_prob(x), dense.log_prob(x), rtol=1e-10)
    np.testing.assert_allclose(d.log_prob(x)[:, 1, 3], scipy.stats.multivariate_normal(p["loc"][1, 0], cov[3])
                               .logpdf(x[:, 1, 3]), rtol=1e-10)
    for prop in ("covariance_matrix", "precision_matrix", "scale_tril"):
        np.testing.assert_allclose(getattr(d, prop), getattr(dense, prop), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(d.variance, dense.variance, rtol=1e-12)


def test_low_rank_vjps_match_finite_differences():
    rng = np.random.default_rng(18)
    point = low_rank_point(rng)
    names = ("loc", "cov_factor", "cov_diag")

    def log_prob_vjp(g, value, **args):
        return dist.LowRankMultivariateNormal(**args).log_prob_vjp(value, g, ("value",) + names)

    check_vjp(lambda value, **args: dist.LowRankMultivariateNormal(**args).log_prob(value),
              dict(point, value=rng.standard_normal((5, 2, 4, D))), log_prob_vjp)

    def draw(**args):
        return dist.LowRankMultivariateNormal(**args).rsample_with_noise((3,), np.random.default_rng(19))

    noise = draw(**point)[1]
    assert noise.shape == (3, 2, 4, 2 + D)  # eps_W and eps_D side by side
    check_vjp(lambda **args: draw(**args)[0], point,
              lambda g, **args: dist.LowRankMultivariateNormal(**args).rsample_vjp(noise, g, names))


def test_low_rank_sampling_moments():
    # 200k draws: each covariance entry within 0.05 (standard errors below 0.015 here), the mean within 4 se
    rng = np.random.default_rng(20)
    W, D_ = rng.standard_normal((D, 2)), np.exp(0.3 * rng.standard_normal(D))
    x = dist.LowRankMultivariateNormal(np.ones(D), W, D_).sample((200_000,), np.random.default_rng(21))
    cov = W @ W.T + np.diag(D_)
    assert np.all(np.abs(x.mean(0) - 1) < 4 * np.sqrt(np.diag(cov) / len(x)))
    np.testing.assert_allclose(np.cov(x.T), cov, atol=0.05)
