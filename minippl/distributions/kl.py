"""KL divergence in closed form, and its derivative.

Teaches: where KL(p || q) has a formula, an ELBO can use it instead of the Monte
Carlo estimate log p(z) - log q(z) (TraceMeanField_ELBO does), trading noise for
exactness. Closed forms here: Normal/Normal, LogNormal/LogNormal (the Normal's: KL is
unchanged by the bijection exp, applied to both), Exponential/Exponential and
Laplace/Laplace, Gamma/Gamma, Beta/Beta and Dirichlet/Dirichlet (digamma and trigamma), and
MultivariateNormal/MultivariateNormal (triangular solves), each with its gradients. Builds on
the distributions it pairs, on counts.py (SciPy's special functions) and on Independent from
distribution.py.
"""
from .. import backend
from ..backend import array_module, broadcast_shapes, unsum_last
from .beta import Beta
from .counts import lgamma, special_function
from .dirichlet import Dirichlet
from .distribution import Independent, grad_like, promote
from .exponential import Exponential, Laplace
from .gamma import Gamma, digamma
from .lognormal import LogNormal
from .multivariate_normal import MultivariateNormal, solve_tril
from .normal import Normal


def _strip_independent(d):
    """(base distribution, total number of reinterpreted batch dims)."""
    n = 0
    while isinstance(d, Independent):
        n += d.reinterpreted_batch_ndims
        d = d.base_dist
    return d, n


def _closed_form(p, q):
    """The KL functions for the pair, the unwrapped bases, and the event dims to sum."""
    base_p, n_p = _strip_independent(p)
    base_q, n_q = _strip_independent(q)
    forms = _CLOSED_FORMS.get((type(base_p), type(base_q)))
    if forms is None or n_p != n_q:
        raise NotImplementedError(
            f"kl_divergence({p!r}, {q!r}) is not implemented: minippl has it for "
            f"{', '.join(f'{a.__name__}/{b.__name__}' for a, b in _CLOSED_FORMS)}, "
            f"optionally both wrapped by to_event(n) with the same n. "
            f"Use Trace_ELBO (the Monte Carlo estimate) for other pairs"
        )
    return forms, base_p, base_q, n_p


def kl_divergence(p, q):
    """KL(p || q), one number per batch element of broadcast(p.batch_shape, q.batch_shape)."""
    (kl_fn, _), base_p, base_q, n = _closed_form(p, q)
    kl = kl_fn(base_p, base_q)
    # expanded distributions broadcast lazily: bring the KL up to the full batch shape
    xp = array_module(kl)
    kl = xp.broadcast_to(kl, broadcast_shapes(base_p.batch_shape, base_q.batch_shape))
    # KL of independent coordinates is the sum of their KLs
    return kl.sum(axis=tuple(range(-n, 0))) if n else xp.array(kl)


def kl_divergence_vjp(p, q, grad_kl, wrt_p, wrt_q):
    """``(grads_p, grads_q)``: d <grad_kl, KL(p || q)> / d arg for each name in wrt_p, wrt_q.

    Keys are argument names (``p.arg_names``); each gradient is shaped like its argument.
    """
    (_, vjp_fn), base_p, base_q, n = _closed_form(p, q)
    wrt_p = base_p._check_wrt(wrt_p, with_value=False)
    wrt_q = base_q._check_wrt(wrt_q, with_value=False)
    # d/dkl_i sum_i kl_i = 1: the cotangent goes back unchanged to every summed dim
    # (broadcast in full: an expanded argument gets one copy per element it stands for)
    grad = unsum_last(grad_kl, n, base_p.batch_shape, base_q.batch_shape)
    return vjp_fn(base_p, base_q, grad, wrt_p, wrt_q)


def _kl_normal_normal(p, q):
    return kl_normal_normal(p.loc, p.scale, q.loc, q.scale)


def _kl_normal_normal_vjp(p, q, grad, wrt_p, wrt_q):
    return kl_normal_normal_grads(p.loc, p.scale, q.loc, q.scale, grad, wrt_p, wrt_q)


# ---------------------------------------------------------------- the reference math
# Each may be replaced by a fused kernel (minippl/kernels/registry.py); the tests compare them.
@backend.fusable("kl_normal_normal")
def kl_normal_normal(loc_p, scale_p, loc_q, scale_q):
    xp, _, (loc_p, scale_p, loc_q, scale_q) = promote(loc_p, scale_p, loc_q, scale_q)
    var_ratio = (scale_p / scale_q) ** 2
    t = ((loc_p - loc_q) / scale_q) ** 2
    # KL = log(sq / sp) + (sp^2 + (mp - mq)^2) / (2 sq^2) - 1/2
    return 0.5 * (var_ratio + t - 1 - xp.log(var_ratio))


@backend.fusable("kl_normal_normal_grads")
def kl_normal_normal_grads(loc_p_arg, scale_p_arg, loc_q_arg, scale_q_arg, grad, wrt_p, wrt_q):
    """({name: grad} for p, {name: grad} for q): d <g, KL(p || q)> / d loc and scale of each."""
    _, _, (loc_p, scale_p, loc_q, scale_q, g) = promote(loc_p_arg, scale_p_arg, loc_q_arg, scale_q_arg, grad)
    diff_over_var_q = (loc_p - loc_q) / scale_q**2
    grads_p, grads_q = {}, {}
    if "loc" in wrt_p:
        # d/dmp KL = (mp - mq) / sq^2
        grads_p["loc"] = grad_like(g * diff_over_var_q, loc_p_arg)
    if "loc" in wrt_q:
        # d/dmq KL = -(mp - mq) / sq^2
        grads_q["loc"] = grad_like(-g * diff_over_var_q, loc_q_arg)
    if "scale" in wrt_p:
        # d/dsp KL = sp / sq^2 - 1 / sp
        grads_p["scale"] = grad_like(g * (scale_p / scale_q**2 - 1 / scale_p), scale_p_arg)
    if "scale" in wrt_q:
        # d/dsq KL = 1 / sq - (sp^2 + (mp - mq)^2) / sq^3
        grads_q["scale"] = grad_like(g * (1 - (scale_p**2 + (loc_p - loc_q) ** 2) / scale_q**2) / scale_q,
                                     scale_q_arg)
    return grads_p, grads_q


# ---------------------------------------------------------------- Exponential, Laplace
def _kl_exponential_exponential(p, q):
    xp, _, (rate_p, rate_q) = promote(p.rate, q.rate)
    ratio = rate_q / rate_p
    # KL = E_p[log rp - rp z - log rq + rq z] = log(rp / rq) + rq / rp - 1
    return ratio - 1 - xp.log(ratio)


def _kl_exponential_exponential_vjp(p, q, grad, wrt_p, wrt_q):
    _, _, (rate_p, rate_q, g) = promote(p.rate, q.rate, grad)
    grads_p, grads_q = {}, {}
    if "rate" in wrt_p:  # d/drp KL = 1 / rp - rq / rp^2
        grads_p["rate"] = grad_like(g * (rate_p - rate_q) / (rate_p * rate_p), p.rate)
    if "rate" in wrt_q:  # d/drq KL = 1 / rp - 1 / rq
        grads_q["rate"] = grad_like(g * (1 / rate_p - 1 / rate_q), q.rate)
    return grads_p, grads_q


def _laplace_parts(p, q, *more):
    xp, _, (loc_p, scale_p, loc_q, scale_q, *more) = promote(p.loc, p.scale, q.loc, q.scale, *more)
    diff = loc_p - loc_q
    d = xp.abs(diff)
    return xp, diff, d, scale_p, scale_q, xp.exp(-d / scale_p), more


def _kl_laplace_laplace(p, q):
    # with d = |mp - mq|: E_p|z - mq| = d + bp exp(-d / bp), so
    # KL = log(bq / bp) + d / bq + (bp / bq) exp(-d / bp) - 1
    xp, _, d, bp, bq, e, _ = _laplace_parts(p, q)
    return xp.log(bq / bp) + (d + bp * e) / bq - 1


def _kl_laplace_laplace_vjp(p, q, grad, wrt_p, wrt_q):
    xp, diff, d, bp, bq, e, (g,) = _laplace_parts(p, q, grad)
    grads_p, grads_q = {}, {}
    if "loc" in wrt_p or "loc" in wrt_q:
        g_loc = g * xp.sign(diff) * (1 - e) / bq  # d/dmp KL = sign(mp - mq) (1 - exp(-d / bp)) / bq
        if "loc" in wrt_p:
            grads_p["loc"] = grad_like(g_loc, p.loc)
        if "loc" in wrt_q:  # d/dmq KL = -d/dmp KL
            grads_q["loc"] = grad_like(-g_loc, q.loc)
    if "scale" in wrt_p:  # d/dbp KL = -1 / bp + exp(-d / bp) (1 + d / bp) / bq
        grads_p["scale"] = grad_like(g * (e * (1 + d / bp) / bq - 1 / bp), p.scale)
    if "scale" in wrt_q:  # d/dbq KL = (1 - (d + bp exp(-d / bp)) / bq) / bq
        grads_q["scale"] = grad_like(g * (1 - (d + bp * e) / bq) / bq, q.scale)
    return grads_p, grads_q


# ---------------------------------------------------------------- MultivariateNormal
def _mvn_parts(p, q, *more):
    """With Lp, Lq the Cholesky factors: M = Lq^{-1} Lp and z = Lq^{-1} (mp - mq), two triangular solves."""
    xp, _, (mp, Lp, mq, Lq, *more) = promote(p.loc, p.scale_tril, q.loc, q.scale_tril, *more)
    Lp, Lq = xp.tril(Lp), xp.tril(Lq)
    M = solve_tril(Lq, Lp)
    z = solve_tril(Lq, (mp - mq)[..., None])[..., 0]
    return xp, Lp, Lq, M, z, more


def _kl_mvn_mvn(p, q):
    # KL = (tr(Sq^{-1} Sp) + (mq - mp)^T Sq^{-1} (mq - mp) - d + log det Sq - log det Sp) / 2
    #    = |M|_F^2 / 2 + |z|^2 / 2 - d / 2 + sum_i log Lq_ii - sum_i log Lp_ii
    xp, Lp, Lq, M, z, _ = _mvn_parts(p, q)
    log_diag = lambda L: xp.log(xp.diagonal(L, axis1=-2, axis2=-1)).sum(-1)  # noqa: E731
    return 0.5 * ((M * M).sum((-2, -1)) + (z * z).sum(-1) - Lp.shape[-1]) + log_diag(Lq) - log_diag(Lp)


def _kl_mvn_mvn_vjp(p, q, grad, wrt_p, wrt_q):
    xp, Lp, Lq, M, z, (g,) = _mvn_parts(p, q, grad)

    def inv_diag(L):  # diag(1 / L_ii): row i of the identity over L_ii
        return xp.eye(L.shape[-1], dtype=L.dtype) / xp.diagonal(L, axis1=-2, axis2=-1)[..., None]

    grads_p, grads_q = {}, {}
    if "loc" in wrt_p or "loc" in wrt_q:
        a = g[..., None] * solve_tril(Lq, z[..., None], transpose=True)[..., 0]  # d/dmp KL = Lq^{-T} z
        if "loc" in wrt_p:
            grads_p["loc"] = grad_like(a, p.loc)
        if "loc" in wrt_q:  # d/dmq KL = -Lq^{-T} z
            grads_q["loc"] = grad_like(-a, q.loc)
    g = g[..., None, None]
    if p.arg_names[1] in wrt_p:  # d/dLp KL = tril(Lq^{-T} M) - diag(1 / Lp_ii)
        grads_p.update(p.matrix_vjp(g * (solve_tril(Lq, M, transpose=True) - inv_diag(Lp))))
    if q.arg_names[1] in wrt_q:
        # dM = -Lq^{-1} dLq M and dz = -Lq^{-1} dLq z, so
        # d/dLq KL = tril(-Lq^{-T} (M M^T + z z^T)) + diag(1 / Lq_ii)
        outer = M @ xp.swapaxes(M, -1, -2) + z[..., :, None] * z[..., None, :]
        grads_q.update(q.matrix_vjp(g * (inv_diag(Lq) - solve_tril(Lq, outer, transpose=True))))
    return grads_p, grads_q


# ---------------------------------------------------------------- Gamma, Beta
def _trigamma(x):
    return special_function("polygamma", 1, x)  # psi'(x) = d/dx digamma(x)


def _kl_gamma_gamma(p, q):
    xp, _, (ap, rp, aq, rq) = promote(p.concentration, p.rate, q.concentration, q.rate)
    # KL = (ap - aq) psi(ap) - lgamma(ap) + lgamma(aq) + aq log(rp / rq) + ap (rq - rp) / rp
    return ((ap - aq) * digamma(ap) - lgamma(ap) + lgamma(aq)
            + aq * xp.log(rp / rq) + ap * (rq - rp) / rp)


def _kl_gamma_gamma_vjp(p, q, grad, wrt_p, wrt_q):
    xp, _, (ap, rp, aq, rq, g) = promote(p.concentration, p.rate, q.concentration, q.rate, grad)
    grads_p, grads_q = {}, {}
    if "concentration" in wrt_p:  # d/dap KL = (ap - aq) psi'(ap) + rq / rp - 1
        grads_p["concentration"] = grad_like(g * ((ap - aq) * _trigamma(ap) + rq / rp - 1), p.concentration)
    if "rate" in wrt_p:  # d/drp KL = aq / rp - ap rq / rp^2
        grads_p["rate"] = grad_like(g * (aq - ap * rq / rp) / rp, p.rate)
    if "concentration" in wrt_q:  # d/daq KL = psi(aq) - psi(ap) + log(rp / rq)
        grads_q["concentration"] = grad_like(g * (digamma(aq) - digamma(ap) + xp.log(rp / rq)), q.concentration)
    if "rate" in wrt_q:  # d/drq KL = ap / rp - aq / rq
        grads_q["rate"] = grad_like(g * (ap / rp - aq / rq), q.rate)
    return grads_p, grads_q


def _beta_args(p, q, *more):
    return promote(p.concentration1, p.concentration0, q.concentration1, q.concentration0, *more)[2]


def _kl_beta_beta(p, q):
    a1, b1, a2, b2 = _beta_args(p, q)
    # KL = log B(a2, b2) - log B(a1, b1) + (a1 - a2) psi(a1) + (b1 - b2) psi(b1) + (a2 - a1 + b2 - b1) psi(a1 + b1)
    return (special_function("betaln", a2, b2) - special_function("betaln", a1, b1) + (a1 - a2) * digamma(a1)
            + (b1 - b2) * digamma(b1) + (a2 - a1 + b2 - b1) * digamma(a1 + b1))


def _kl_beta_beta_vjp(p, q, grad, wrt_p, wrt_q):
    a1, b1, a2, b2, g = _beta_args(p, q, grad)
    grads_p, grads_q = {}, {}
    rest = (a2 - a1 + b2 - b1) * _trigamma(a1 + b1)
    if "concentration1" in wrt_p:  # d/da1 KL = (a1 - a2) psi'(a1) + (a2 - a1 + b2 - b1) psi'(a1 + b1)
        grads_p["concentration1"] = grad_like(g * ((a1 - a2) * _trigamma(a1) + rest), p.concentration1)
    if "concentration0" in wrt_p:  # d/db1 KL = (b1 - b2) psi'(b1) + (a2 - a1 + b2 - b1) psi'(a1 + b1)
        grads_p["concentration0"] = grad_like(g * ((b1 - b2) * _trigamma(b1) + rest), p.concentration0)
    if wrt_q:
        shift = digamma(a1 + b1) - digamma(a2 + b2)  # d/da2 log B(a2, b2) = psi(a2) - psi(a2 + b2)
    if "concentration1" in wrt_q:  # d/da2 KL = psi(a2) - psi(a2 + b2) - psi(a1) + psi(a1 + b1)
        grads_q["concentration1"] = grad_like(g * (digamma(a2) - digamma(a1) + shift), q.concentration1)
    if "concentration0" in wrt_q:  # d/db2 KL = psi(b2) - psi(a2 + b2) - psi(b1) + psi(a1 + b1)
        grads_q["concentration0"] = grad_like(g * (digamma(b2) - digamma(b1) + shift), q.concentration0)
    return grads_p, grads_q


# ---------------------------------------------------------------- Dirichlet
def _kl_dirichlet_dirichlet(p, q):
    _, _, (a, b) = promote(p.concentration, q.concentration)
    a0, b0 = a.sum(-1), b.sum(-1)
    # KL = lgamma(a0) - sum lgamma(a_i) - lgamma(b0) + sum lgamma(b_i) + sum (a_i - b_i) (psi(a_i) - psi(a0))
    return (lgamma(a0) - lgamma(a).sum(-1) - lgamma(b0) + lgamma(b).sum(-1)
            + ((a - b) * (digamma(a) - digamma(a0)[..., None])).sum(-1))


def _kl_dirichlet_dirichlet_vjp(p, q, grad, wrt_p, wrt_q):
    _, _, (a, b, g) = promote(p.concentration, q.concentration, grad)
    a0, b0 = a.sum(-1, keepdims=True), b.sum(-1, keepdims=True)
    g = g[..., None]  # one cotangent per Dirichlet, shared by its K entries
    grads_p, grads_q = {}, {}
    if "concentration" in wrt_p:  # d/da_j KL = (a_j - b_j) psi'(a_j) - (a0 - b0) psi'(a0)
        grads_p["concentration"] = grad_like(g * ((a - b) * _trigamma(a) - (a0 - b0) * _trigamma(a0)),
                                             p.concentration)
    if "concentration" in wrt_q:  # d/db_j KL = psi(b_j) - psi(b0) - psi(a_j) + psi(a0)
        grads_q["concentration"] = grad_like(g * (digamma(b) - digamma(b0) - digamma(a) + digamma(a0)),
                                             q.concentration)
    return grads_p, grads_q


# (type of p, type of q) -> (kl, its vjp); torch calls this table register_kl.
# LogNormal/LogNormal is Normal/Normal on (loc, scale): KL is invariant under z -> exp(z).
_CLOSED_FORMS = {
    (Normal, Normal): (_kl_normal_normal, _kl_normal_normal_vjp),
    (LogNormal, LogNormal): (_kl_normal_normal, _kl_normal_normal_vjp),
    (Exponential, Exponential): (_kl_exponential_exponential, _kl_exponential_exponential_vjp),
    (Laplace, Laplace): (_kl_laplace_laplace, _kl_laplace_laplace_vjp),
    (Gamma, Gamma): (_kl_gamma_gamma, _kl_gamma_gamma_vjp),
    (Beta, Beta): (_kl_beta_beta, _kl_beta_beta_vjp),
    (MultivariateNormal, MultivariateNormal): (_kl_mvn_mvn, _kl_mvn_mvn_vjp),
    (Dirichlet, Dirichlet): (_kl_dirichlet_dirichlet, _kl_dirichlet_dirichlet_vjp),
}
