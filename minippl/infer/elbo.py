"""The ELBO and its gradient: trace the guide, replay the model, read both backwards.

Teaches: one particle of Pyro's ``Trace_ELBO``. We minimise the loss

    L = -ELBO = sum_guide scale * log q(z)  -  sum_model scale * log p(x, z)

with z drawn from the guide. Each sample site adds its own term; its gradients w.r.t. the site's value and
distribution arguments come from the hand-written ``log_prob_vjp``, and the tape (tape.py) carries them on through
layers, samplers and param transforms. A guide site that cannot be reparameterised (e.g. a Bernoulli) gets the
score-function term instead, ``stop_grad(log_r) * grad log q(z)``, where ``log_r = log p - log q`` summed down to
the site's plates, exactly as Pyro does. ``log_r`` is built from the scaled log-probs, so the score function is
not scaled again: for a subsample of m of N items, each item's term is weighted N/m once. The guide and the model
run with traced values on (traced.py), so NumPy arithmetic between sites is on the tape. Builds on tape.py,
guards.py, handlers.py and plate.py.
"""
import numpy as np

from .. import backend, traced
from ..handlers import replay, trace
from ..validation import ValidationError, errors_say
from .guards import check_log_prob_shape, check_model_guide_match
from .tape import backpropagate, check_nothing_dangles


def get_traces(model, guide, args, kwargs, record=False):
    """Run the guide, then the model with the guide's choices replayed into it. ``record=True`` (a run whose
    gradient is wanted): values are traced, and tape.py's structural check runs on the two traces."""
    with traced.recording(record):
        with errors_say(side="guide"):
            guide_trace = trace(guide).get_trace(*args, **kwargs)
        with errors_say(side="model"):
            model_trace = trace(replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
    check_model_guide_match(model_trace, guide_trace)
    if record:
        check_nothing_dangles(model_trace, guide_trace)
    return model_trace, guide_trace


def site_weight(site):
    """d(site's term)/d(log_prob): scale * mask, broadcastable to the log-prob."""
    if site["mask"] is None:
        return site["scale"]
    mask = site["mask"]
    return site["scale"] * backend.array_module(mask).asarray(mask, dtype=bool)


def cotangent(weight, like):
    """``weight`` broadcast to the shape of the array ``like``, in its dtype.

    A Python float or a float64 weight would make the cotangent float64, and with it every VJP and layer backward
    after it: a float32 model would silently run its whole backward pass in float64. A number is filled in on the
    device (a kernel argument), not copied there, as one element that a read-only view broadcasts: nothing
    of the site's size is allocated.
    """
    xp = backend.array_module(like)
    if isinstance(weight, (int, float)):
        weight = xp.full((), weight, dtype=like.dtype)
    return xp.broadcast_to(xp.asarray(weight, dtype=like.dtype), like.shape)


def as_loss(total):
    """The loss as Pyro returns it, a float; on a GPU, a 0-d device array, so that nothing waits
    for the GPU: ``float()`` reads it (SVI(sync_every=k) does that only at its sync points)."""
    return float(total) if backend.array_module(total) is np else total


def is_reparameterized(site):
    return site["fn"].has_rsample and "noise" in site


class Trace_ELBO:
    """Pyro's Trace_ELBO: Monte Carlo ELBO, pathwise and score-function gradients.

    ``loss`` and ``loss_and_grads`` return the negative ELBO (Pyro's sign), averaged over ``num_particles``
    independent draws. A guide with a point estimate ``z = loc`` (log q = 0) makes the loss
    ``-log N(loc | 0, 1) - log N(x | loc, 1)``, whose gradient is ``2 loc - x``:

    >>> import numpy as np
    >>> import minippl
    >>> import minippl.distributions as dist
    >>> def model(x):
    ...     z = minippl.sample("z", dist.Normal(0.0, 1.0))
    ...     minippl.sample("x", dist.Normal(z, 1.0), obs=x)
    >>> def guide(x):
    ...     minippl.sample("z", dist.Delta(minippl.param("loc", np.array(0.5))))
    >>> minippl.clear_param_store()
    >>> loss, grads, _ = Trace_ELBO().loss_and_grads(model, guide, np.array(2.0))
    >>> round(loss, 6)  # (0.5^2 + 1.5^2) / 2 + log(2 pi)
    3.087877
    >>> float(grads["loc"])  # 2 * 0.5 - 2
    -1.0
    >>> minippl.clear_param_store()
    """

    def __init__(self, num_particles=1, max_plate_nesting=float("inf"), vectorize_particles=False):
        # max_plate_nesting is accepted for Pyro's signature: particles run one after another here, so no plate
        # dims need reserving and the bound is not used
        if vectorize_particles:
            raise NotImplementedError("vectorize_particles=True: particles run one after another here")
        if num_particles < 1:
            raise ValueError(f"num_particles must be at least 1, got {num_particles}")
        self.num_particles = int(num_particles)

    # ------------------------------------------------------------ public API
    def loss(self, model, guide, *args, **kwargs):
        """The negative ELBO estimate; computes no gradient and changes nothing."""
        total = 0.0
        for _ in range(self.num_particles):
            model_trace, guide_trace = get_traces(model, guide, args, kwargs)
            total += self._particle(model_trace, guide_trace, want_grads=False).loss
        return as_loss(total / self.num_particles)

    def loss_and_grads(self, model, guide, *args, **kwargs):
        """The negative ELBO estimate and its gradient w.r.t. every unconstrained param, ``(loss, grads, sites)``:
        ``grads`` maps param names to arrays, ``sites`` the last particle's per-site log-prob sums (for errors)."""
        total, grads = 0.0, {}
        for _ in range(self.num_particles):
            model_trace, guide_trace = get_traces(model, guide, args, kwargs, record=True)
            particle = self._particle(model_trace, guide_trace, want_grads=True)
            total += particle.loss
            for name, g in particle.grads.items():
                grads[name] = g if name not in grads else grads[name] + g
        if self.num_particles > 1:
            grads = {name: g / self.num_particles for name, g in grads.items()}
        return as_loss(total / self.num_particles), grads, particle.site_log_probs

    # ------------------------------------------------------------ one particle
    def _particle(self, model_trace, guide_trace, want_grads):
        particle = _Particle()
        log_probs = {}  # (side, name) -> scaled, masked log-prob array
        for side, tr in (("model", model_trace), ("guide", guide_trace)):
            for name, site in tr.sample_sites().items():
                lp = self._site_log_prob(side, site, model_trace, guide_trace)
                if lp is None:
                    continue
                site["log_prob"] = log_probs[side, name] = lp
                lp_sum = backend.array_module(lp).sum(lp, dtype=np.float64)  # on the device; read only if needed
                particle.site_log_probs[f"{side} site '{name}'"] = lp_sum
                particle.loss = particle.loss - lp_sum if side == "model" else particle.loss + lp_sum
        particle.loss += self._analytic_terms(model_trace, guide_trace, particle)
        if want_grads:
            if any(not is_reparameterized(s) for s in guide_trace.sample_sites().values()):
                particle.log_r = compute_log_r(model_trace, guide_trace, log_probs)
            particle.grads = self._backward(model_trace, guide_trace, particle.log_r)
        return particle

    def _site_log_prob(self, side, site, model_trace, guide_trace):
        """The site's scale * mask * log_prob array (None: the term is handled analytically)."""
        try:
            lp = site["fn"].log_prob(traced.unwrap(site["value"]))
        except (ValueError, TypeError) as error:  # e.g. NumPy's broadcasting error: say where
            if isinstance(error, ValidationError):
                raise
            fn = site["fn"]
            raise ValidationError(
                f"log_prob failed ({type(error).__name__}: {error}); value shape {np.shape(site['value'])}, "
                f"{type(fn).__name__} batch_shape {fn.batch_shape}, event_shape {fn.event_shape}. Fix: make "
                f"the value's shape end with the event shape and broadcast with the batch shape.",
                site=site["name"], side=side) from error
        check_log_prob_shape(site, lp)
        site["unscaled_log_prob"] = lp
        if site["mask"] is not None:
            lp = np.where(site["mask"], lp, 0.0)
        return site["scale"] * lp

    def _analytic_terms(self, model_trace, guide_trace, particle):
        return 0.0  # TraceMeanField_ELBO adds its KL terms here

    def _site_grads(self, side, site, tape, log_r):
        """The site's own term for the tape: (d term / d value or None, {argument: d term / d argument})."""
        fn, value = site["fn"], site["value"]
        wrt = list(tape.differentiable_args(fn))
        if side == "guide" and not is_reparameterized(site):
            # score function: d/dtheta of -stop(log_r) * log q(z; theta), z held fixed; log_r is
            # already scaled and masked, so the unscaled log q takes it as is (Pyro's convention)
            grad_log_prob = cotangent(-log_r[site["name"]], site["unscaled_log_prob"])
            return None, (fn.log_prob_vjp(traced.unwrap(value), grad_log_prob, wrt) if wrt else {})
        weight = site_weight(site)
        grad_log_prob = -weight if side == "model" else weight  # L contains -scale log p and +scale log q
        if tape.is_traced(value):
            wrt = ["value"] + wrt
        if not wrt:
            return None, {}
        grads = fn.log_prob_vjp(traced.unwrap(value), cotangent(grad_log_prob, site["log_prob"]), wrt)
        return grads.pop("value", None), grads

    def _backward(self, model_trace, guide_trace, log_r):
        def site_gradients(side, msg, tape):
            return None if msg["infer"].get("_deterministic") else self._site_grads(side, msg, tape, log_r)
        return backpropagate(model_trace, guide_trace, site_gradients)


class _Particle:
    def __init__(self):
        self.loss = 0.0
        self.grads = {}
        self.site_log_probs = {}
        self.log_r = None


def compute_log_r(model_trace, guide_trace, log_probs):
    """For each non-reparameterised guide site, log p - log q summed down to its plates.

    Each term keeps the plate dims it shares with the site (so an item's score only sees that item's terms, Pyro's
    plate-wise Rao-Blackwellisation) and is summed over every other dim.
    """
    terms = []  # (plate frames, array)
    for name, site in model_trace.sample_sites().items():
        if ("model", name) not in log_probs:
            continue
        term = log_probs["model", name]
        if ("guide", name) in log_probs:
            term = term - log_probs["guide", name]
        frames = {f for f in site["cond_indep_stack"] if f.dim is not None}
        terms.append((frames, term))
    log_r = {}
    for name, site in guide_trace.sample_sites().items():
        if is_reparameterized(site):
            continue
        keep = {f for f in site["cond_indep_stack"] if f.dim is not None}
        total = 0.0
        for frames, term in terms:
            for frame in frames - keep:
                if term.ndim >= -frame.dim and term.shape[frame.dim] != 1:
                    term = term.sum(axis=frame.dim, keepdims=True)
            kept_dims = {f.dim for f in frames & keep}
            drop = tuple(d for d in range(-term.ndim, 0) if d not in kept_dims and term.shape[d] != 1)
            if drop:  # dims that no shared plate explains (outside all plates) are summed too
                term = term.sum(axis=drop, keepdims=True)
            while term.ndim and term.shape[0] == 1:  # a summed-out outer plate leaves a 1: drop it,
                term = term.reshape(term.shape[1:])  # so a global site's log_r is a scalar
            total = total + term
        log_r[name] = total
    return log_r
