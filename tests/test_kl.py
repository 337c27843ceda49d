"""kl_divergence against numerical integration and Monte Carlo; kl_divergence_vjp against
finite differences, with broadcasting, expand and to_event, and for every pair kl.py has a closed form for."""
import numpy as np
import pytest
import scipy.integrate
import scipy.stats
from finite_diff import check_vjp

import minippl.distributions as dist
from minippl.distributions.kl import _CLOSED_FORMS

RNG = np.random.default_rng(0)


def positive(*shape):
    return np.abs(RNG.standard_normal(shape)) + 0.5


def normal(*shape):
    return RNG.standard_normal(shape)


@pytest.mark.parametrize("loc_p, scale_p, loc_q, scale_q", [(0.0, 1.0, 0.0, 1.0), (0.3, 0.5, -1.0, 2.0), (2.0, 3.0, 0.5, 0.7)])
def test_normal_kl_matches_numerical_integration(loc_p, scale_p, loc_q, scale_q):
    p, q = scipy.stats.norm(loc_p, scale_p), scipy.stats.norm(loc_q, scale_q)
    expected, _ = scipy.integrate.quad(lambda z: p.pdf(z) * (p.logpdf(z) - q.logpdf(z)), -np.inf, np.inf, epsabs=1e-12)
    kl = dist.kl_divergence(dist.Normal(loc_p, scale_p), dist.Normal(loc_q, scale_q))
    assert isinstance(kl, np.ndarray) and kl.shape == ()
    np.testing.assert_allclose(kl, expected, rtol=1e-8, atol=1e-12)


def test_normal_kl_matches_monte_carlo():
    p, q = dist.Normal(np.array([0.5, -1.0]), np.array([0.8, 1.5])), dist.Normal(0.0, 1.0)
    z = p.sample((200_000,), rng=np.random.default_rng(2))
    terms = p.log_prob(z) - q.log_prob(z)
    assert (np.abs(dist.kl_divergence(p, q) - terms.mean(0)) < 5 * terms.std(0) / np.sqrt(len(z))).all()


def test_independent_kl_sums_over_event_dims_and_counts_expanded_elements():
    loc_p, scale_p, loc_q, scale_q = normal(4, 3), positive(4, 3), normal(3), positive()
    base = dist.kl_divergence(dist.Normal(loc_p, scale_p), dist.Normal(loc_q, scale_q))
    assert base.shape == (4, 3)
    kl = dist.kl_divergence(dist.Normal(loc_p, scale_p).to_event(1), dist.Normal(loc_q, scale_q).expand((4, 3)).to_event(1))
    np.testing.assert_allclose(kl, base.sum(-1), rtol=1e-12)
    # scalar arguments expanded to (5,): five equal terms
    kl = dist.kl_divergence(dist.Normal(0.5, 2.0).expand((5,)).to_event(1), dist.Normal(0.0, 1.0).expand((5,)).to_event(1))
    single = dist.kl_divergence(dist.Normal(0.5, 2.0), dist.Normal(0.0, 1.0))
    np.testing.assert_allclose(kl, 5 * single, rtol=1e-12)


KL_CASES = {
    "same shapes": (lambda p, q: (p, q), dict(loc_p=normal(3), scale_p=positive(3), loc_q=normal(3), scale_q=positive(3))),
    "scalar prior": (lambda p, q: (p, q), dict(loc_p=normal(2, 3), scale_p=positive(2, 3), loc_q=normal(), scale_q=positive())),
    "to_event with expanded prior": (
        lambda p, q: (p.to_event(1), q.expand((2, 3)).to_event(1)),
        dict(loc_p=normal(2, 3), scale_p=positive(3), loc_q=normal(), scale_q=positive()),
    ),
    "both expanded to_event(2)": (
        lambda p, q: (p.expand((4, 3)).to_event(2), q.expand((4, 3)).to_event(1).to_event(1)),
        dict(loc_p=normal(3), scale_p=positive(), loc_q=normal(4, 1), scale_q=positive(3)),
    ),
}


@pytest.mark.parametrize("case", KL_CASES)
def test_kl_vjp_matches_finite_differences(case):
    wrap, args = KL_CASES[case]

    def pair(loc_p, scale_p, loc_q, scale_q):
        return wrap(dist.Normal(loc_p, scale_p), dist.Normal(loc_q, scale_q))

    def fn(**args):
        return dist.kl_divergence(*pair(**args))

    def vjp(g, **args):
        grads_p, grads_q = dist.kl_divergence_vjp(*pair(**args), g, ["loc", "scale"], ["loc", "scale"])
        return {**{k + "_p": v for k, v in grads_p.items()}, **{k + "_q": v for k, v in grads_q.items()}}

    check_vjp(fn, args, vjp)


def test_kl_vjp_computes_only_what_is_asked_and_keeps_float32():
    p = dist.Normal(np.zeros(3, np.float32), np.ones(3, np.float32))
    q = dist.Normal(0.0, 2.0)
    assert dist.kl_divergence(p, q).dtype == np.float32
    grads_p, grads_q = dist.kl_divergence_vjp(p, q, np.ones(3, np.float32), ["scale"], [])
    assert set(grads_p) == {"scale"} and grads_q == {}
    assert grads_p["scale"].dtype == np.float32 and grads_p["scale"].shape == (3,)


def test_kl_of_a_distribution_with_itself_is_zero():
    p = dist.Normal(normal(3), positive(3))
    np.testing.assert_allclose(dist.kl_divergence(p, p), 0.0, atol=1e-15)


def test_unsupported_pairs_raise_not_implemented():
    normal_ = dist.Normal(np.zeros(3), 1.0)
    for p, q in [
        (dist.Bernoulli(0.5), dist.Bernoulli(0.3)),
        (normal_, dist.Uniform(0.0, 1.0)),
        (normal_.to_event(1), normal_),
        (dist.Normal(np.zeros((2, 3)), 1.0).to_event(2), dist.Normal(np.zeros((2, 3)), 1.0).to_event(1)),
    ]:
        with pytest.raises(NotImplementedError, match="Normal/Normal"):
            dist.kl_divergence(p, q)
        with pytest.raises(NotImplementedError, match="Normal/Normal"):
            dist.kl_divergence_vjp(p, q, 1.0, ["loc"], [])


def contract_case_for(cls):
    """The name of a tests/test_contracts.py case whose distribution is a ``cls`` (None if there is none)."""
    from test_contracts import CASES, case_named

    return next((name for name in CASES if type(case_named(name).make(**case_named(name).args)) is cls), None)


@pytest.mark.parametrize("pair", list(_CLOSED_FORMS), ids=[f"{p.__name__}/{q.__name__}" for p, q in _CLOSED_FORMS])
def test_every_closed_form_kl_has_its_vjp_checked_by_finite_differences(pair):
    # p and q: the contract's case for the family at two points, q's arguments scaled by 1.3 (a case may fix
    # some: p = q would put the check at KL's minimum, where its gradient in p is 0)
    from test_contracts import CASES

    name = contract_case_for(pair[0])
    assert pair[0] is pair[1] and name is not None, f"add a case to tests/test_contracts.py's CASES for {pair}"
    case = CASES[name](np.random.default_rng(1))
    names = tuple(case.make(**case.args).arg_names)
    q_args = {n: 1.3 * a for n, a in CASES[name](np.random.default_rng(2)).args.items()}

    def pair_at(**args):
        return tuple(case.make(**{n: args[side + n] for n in names}) for side in ("p ", "q "))

    def vjp(g, **args):
        grads_p, grads_q = dist.kl_divergence_vjp(*pair_at(**args), g, names, names)
        return {**{"p " + n: v for n, v in grads_p.items()}, **{"q " + n: v for n, v in grads_q.items()}}

    point = {**{"p " + n: case.args[n] for n in names}, **{"q " + n: q_args[n] for n in names}}
    check_vjp(lambda **args: dist.kl_divergence(*pair_at(**args)), point, vjp)
