"""KL divergence in closed form, and its derivative.

Teaches: where KL(p || q) has a formula, an ELBO can use it instead of the Monte
Carlo estimate log p(z) - log q(z) (TraceMeanField_ELBO does), trading noise for
exactness. Closed forms here: Normal/Normal, LogNormal/LogNormal (the Normal's: KL is
unchanged by the bijection exp, applied to both), Exponential/Exponential and
Laplace/Laplace, each with its gradients. Builds on normal.py, lognormal.py,
exponential.py and on Independent from distribution.py.
"""
from .. import backend
from ..backend import array_module, broadcast_shapes, unsum_last
from .distribution import Independent, grad_like, promote
from .exponential import Exponential, Laplace
from .lognormal import LogNormal
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


# (type of p, type of q) -> (kl, its vjp); torch calls this table register_kl.
# LogNormal/LogNormal is Normal/Normal on (loc, scale): KL is invariant under z -> exp(z).
_CLOSED_FORMS = {
    (Normal, Normal): (_kl_normal_normal, _kl_normal_normal_vjp),
    (LogNormal, LogNormal): (_kl_normal_normal, _kl_normal_normal_vjp),
    (Exponential, Exponential): (_kl_exponential_exponential, _kl_exponential_exponential_vjp),
    (Laplace, Laplace): (_kl_laplace_laplace, _kl_laplace_laplace_vjp),
}
