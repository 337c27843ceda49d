"""TraceMeanField_ELBO: the analytic KL where it exists, Monte Carlo elsewhere.

Teaches: for a latent site whose guide q and prior p are both Normal, the
Monte Carlo pair ``log p(z) - log q(z)`` has a closed-form expectation,
``-KL(q || p)``. Using it removes that noise from the gradient. The KL's own
gradients w.r.t. the arguments of q and p are hand-written (distributions/kl.py);
the value z still carries the gradient of everything downstream of it.
Builds on elbo.py and guards.py.
"""
from .. import backend

from ..distributions.kl import kl_divergence, kl_divergence_vjp
from .elbo import Trace_ELBO, cotangent, site_weight
from .guards import check_log_prob_shape


class TraceMeanField_ELBO(Trace_ELBO):
    """Pyro's TraceMeanField_ELBO (assumes the guide is mean field w.r.t. the model)."""

    def _site_log_prob(self, side, site, model_trace, guide_trace):
        if side == "model" and not site["is_observed"]:
            guide_site = guide_trace.nodes[site["name"]]
            try:
                kl = kl_divergence(guide_site["fn"], site["fn"])
            except NotImplementedError:
                return super()._site_log_prob(side, site, model_trace, guide_trace)
            check_log_prob_shape(site, kl)
            site["kl"] = guide_site["kl"] = site_weight(site) * kl
            site["kl_pair"] = guide_site["kl_pair"] = (guide_site, site)
            return None
        if side == "guide" and "kl" in site:
            return None
        return super()._site_log_prob(side, site, model_trace, guide_trace)

    def _analytic_terms(self, model_trace, guide_trace, particle):
        total = 0.0
        for name, site in model_trace.sample_sites().items():
            if "kl" in site:
                kl_sum = backend.array_module(site["kl"]).sum(site["kl"], dtype="float64")  # stays on the device
                particle.site_log_probs[f"KL at site '{name}'"] = kl_sum
                total += kl_sum  # L contains + scale * KL(q || p)
        return total

    def _site_grads(self, side, site, tape, log_r):
        if "kl_pair" not in site:
            return super()._site_grads(side, site, tape, log_r)
        guide_site, model_site = site["kl_pair"]
        q, p = guide_site["fn"], model_site["fn"]
        # only this side's arguments: the other side gets its share when the tape reaches it
        wrt_q = list(tape.differentiable_args(q)) if side == "guide" else []
        wrt_p = list(tape.differentiable_args(p)) if side == "model" else []
        if not (wrt_q or wrt_p):
            return None, {}
        grad_kl = cotangent(site_weight(model_site), site["kl"])
        grads_q, grads_p = kl_divergence_vjp(q, p, grad_kl, wrt_q, wrt_p)
        return None, (grads_q if side == "guide" else grads_p)  # the KL has no value: z is not in it
