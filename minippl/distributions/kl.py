"""KL divergence in closed form, and its derivative.

Teaches: where KL(p || q) has a formula, an ELBO can use it instead of the Monte
Carlo estimate log p(z) - log q(z) (TraceMeanField_ELBO does), trading noise for
exactness. Builds on normal.py and on Independent from distribution.py.
"""
from .. import backend
from ..backend import array_module, broadcast_shapes, unsum_last
from .distribution import Independent, grad_like, promote
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
            f"kl_divergence({p!r}, {q!r}) is not implemented: minippl has it for Normal/Normal, "
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


# (type of p, type of q) -> (kl, its vjp); torch calls this table register_kl
_CLOSED_FORMS = {(Normal, Normal): (_kl_normal_normal, _kl_normal_normal_vjp)}
