"""The trace is the tape: backpropagation by reading traces backwards.

Teaches: how minippl differentiates without an autograd library. ``trace`` recorded every effectful operation in
order; each record knows its inputs (the very values earlier records produced) and its output. The model ran last,
on the guide's choices, so reading the model's records, then the guide's, each in reverse, reads the whole
computation backwards. The whole algorithm is this driver (``backpropagate`` below)::

    tape = GradientTape(guide_trace, model_trace)
    for side, records in (("model", model_trace.records), ("guide", guide_trace.records)):
        for msg in reversed(records):
            tape.backward(msg, site_gradients(side, msg, tape))  # the ELBO's own term, sample sites
    return tape.finish()  # d loss / d each param, unconstrained

Each record turns its output's gradient into its inputs' gradients with a VJP written by hand beside its forward:

    record        forward                          backward
    param         x = transform(u)                 grad_u += transform.vjp(u, x, grad_x)
    sample        z = loc + scale * noise          grad_loc, grad_scale += dist.rsample_vjp(noise, grad_z)
                  (plus the site's own log-prob term, supplied by the ELBO)
    call          y = layer.forward(x)             grad_x, grad_W = layer.backward(cache, grad_y)
                  y = np.exp(x), a + b * x, w[k]   (the same contract: the ops of traced values)

The last row is traced values (traced.py): a record's output reaches the model traced, and NumPy arithmetic on it
is recorded as a "call" too, so ``Normal(a + b * x, sigma)`` is four records (two samples, a multiply, an add):
micrograd's idea at array size, the trace as the graph. Records link by identity: ``grads[id(value)]`` holds the
gradient of a record's output; a value no record produced (data, a constant) is a leaf and collects nothing.

How one encoder weight of the VAE (examples/vae_mnist.py) gets its gradient:

1. forward, in the guide: a param record reads ``encoder$$$fc21.weight``; a call record of ``fc21`` (a Dense layer)
   keeps that very array in its ``param_arrays`` and its input in the cache, and outputs ``z_loc``; the site
   "latent" draws z = z_loc + z_scale * eps and keeps eps. The model replays and decodes z; "obs" scores the image.
2. backward, model first: "obs" starts the gradient (the Bernoulli's ``log_prob_vjp`` w.r.t. its probs), the
   decoder's call records carry it back to z, and "latent" adds d log p(z)/dz.
3. then the guide: "latent" adds d log q(z)/dz and its ``rsample_vjp`` turns dL/dz into dL/dz_loc = dL/dz; fc21's
   record runs ``Dense.backward``: dL/dW = g^T x, keyed by the weight array; the param record pops it, maps it
   through its transform (the identity for a weight) and hands it to the param store's name. Three files hold
   the whole story: this one, nn/layers.py (Dense.backward) and elbo.py (the site terms).

Nothing dangles silently. What would lose a gradient raises where it happens (traced.py): converting a traced
value to a plain one, a layer's forward computing with one it was not given, a backward reading more than its
cache (each runs under traced.call_plain). :func:`check_nothing_dangles` runs before every backward pass for what
only the finished traces show; an error inside a backward names its record; and arrays that are not in the
param store, so would not be trained, get a warning (nn/module.py's). Builds on handlers.py (the traces),
traced.py and nn/module.py.
"""
from .. import backend
from ..nn.module import warn_unregistered
from ..traced import LostGradientError, Traced, call_plain, unwrap


def _outputs(value):
    return value if isinstance(value, tuple) else (value,)


def produced_values(msg):
    """What a record produced that gradients can flow back through (empty if nothing)."""
    if msg["type"] == "param" and not msg.get("substituted"):
        return (msg["value"], unwrap(msg["value"]))  # the traced read, and the array layers use
    if msg["type"] == "sample" and msg.get("drawn"):
        return (msg["value"],)
    if msg["type"] == "call":
        return _outputs(msg["value"])
    return ()


def produced_by(guide_trace, model_trace):
    """``{id: value}`` of every value the two traces' records produced (holding the values keeps those ids
    unique): what :func:`check_nothing_dangles` and the tape look values up in. One pass over the records."""
    produced = {}
    for tr in (guide_trace, model_trace):
        for msg in tr.records:
            for value in produced_values(msg):
                if hasattr(value, "shape"):
                    produced[id(value)] = value
    return produced


def from_an_earlier_run(value, used_by="a record"):
    """The error for a traced value that no record of this run produced: kept from an earlier step or call."""
    return LostGradientError(
        f"{used_by} uses a value computed from {value.root or 'a traced value'} in an earlier run (an earlier step, "
        f"or an earlier call of the model), so its gradient has no record to flow to. Do not keep values of one "
        f"step for the next: read the param or sample the site again in each run.")


def backpropagate(model_trace, guide_trace, site_gradients):
    """The driver: every record of the model, then of the guide, read in reverse.

    ``site_gradients(side, msg, tape)`` gives a sample site's own ELBO term as
    ``(d term / d value, {argument name: d term / d argument})`` (elbo.py), or None.
    Returns ``{param name: d loss / d unconstrained value}``. With only the model's prior
    term, -log N(z | 0, 1) = z^2 / 2 + c, whose d/dz is z, and z = loc + eps, d loss/d loc is z:

    >>> import numpy as np, minippl, minippl.distributions as dist
    >>> from minippl import handlers, traced
    >>> minippl.clear_param_store()
    >>> def guide():
    ...     minippl.sample("z", dist.Normal(minippl.param("loc", np.array(1.0)), 1.0))
    >>> def model():
    ...     minippl.sample("z", dist.Normal(0.0, 1.0))
    >>> with traced.recording():
    ...     guide_tr = handlers.trace(handlers.seed(guide, rng_seed=0)).get_trace()
    ...     model_tr = handlers.trace(handlers.replay(model, trace=guide_tr)).get_trace()
    >>> def prior_term(side, msg, tape):
    ...     return (msg["value"].data, {}) if side == "model" else None
    >>> z = guide_tr.nodes["z"]["value"].data
    >>> bool(np.isclose(backpropagate(model_tr, guide_tr, prior_term)["loc"], z))
    True
    >>> minippl.clear_param_store()
    """
    tape = GradientTape(produced_by(guide_trace, model_trace))
    for side, tr in (("model", model_trace), ("guide", guide_trace)):
        for msg in reversed(tr.records):
            tape.backward(msg, site_gradients(side, msg, tape) if msg["type"] == "sample" else None)
    return tape.finish()


class GradientTape:
    """Accumulates ``d loss / d value`` while the records are read in reverse; ``produced``: :func:`produced_by`."""

    def __init__(self, produced):
        self.produced = produced  # id -> the value: keeps ids unique while the tape lives
        self.grads = {}
        self.param_grads = {}  # param name -> d loss / d unconstrained value
        self._warned_layers = set()

    # ------------------------------------------------------------ bookkeeping
    def is_traced(self, x):
        if id(x) in self.produced:
            return True
        if type(x) is Traced:
            raise from_an_earlier_run(x)
        return False

    def accumulate(self, x, grad):
        if grad is None or not self.is_traced(x):
            return
        previous = self.grads.get(id(x))
        self.grads[id(x)] = grad if previous is None else previous + grad

    def pop(self, x):
        return self.grads.pop(id(x), None)

    def differentiable_args(self, fn):
        """{name: traced value} for the distribution arguments gradients can flow to."""
        return {name: a for name, a in fn.traced_args().items() if self.is_traced(a)}

    # ------------------------------------------------------------ records
    def backward(self, msg, site_terms=None):
        """Read one record backwards; ``site_terms``: a sample site's own term, as ``site_gradients`` returns."""
        kind = msg["type"]
        if kind == "call":
            self._backward_call(msg)
        elif kind == "param":
            self._backward_param(msg)
        elif kind == "sample":
            self._backward_sample(msg, *(site_terms or (None, {})))

    def _backward_call(self, msg):
        layer, inputs = msg["fn"], msg["args"]
        grad_outputs = [self.pop(y) for y in _outputs(msg["value"])]
        if all(g is None for g in grad_outputs):
            return
        needs_input_grad = tuple(self.is_traced(x) for x in inputs)
        grad_out = tuple(grad_outputs) if isinstance(msg["value"], tuple) else grad_outputs[0]
        try:
            grad_inputs, grad_params = call_plain(layer, "backward", msg["cache"], grad_out, needs_input_grad)
        except Exception as error:  # say which record failed: the traceback alone shows only the backward's line
            raise RuntimeError(f"the backward of a recorded {type(layer).__name__} raised {type(error).__name__}: "
                               f"{error}") from error
        for x, g in zip(inputs, grad_inputs):
            self.accumulate(x, g)
        used = msg["param_arrays"]  # the layer's current_parameters() at the call
        for path, g in grad_params.items():
            if path not in used:
                raise RuntimeError(
                    f"{type(layer).__name__}.backward returned a gradient for {path!r}, but the call "
                    f"recorded no array of that name (it used: {', '.join(map(repr, used)) or 'none'}). "
                    f"A layer's current_parameters() must return every array its backward returns a "
                    f"gradient for, under the same name (the layer contract in minippl/nn/module.py).")
            weight = used[path]
            if not self.is_traced(weight) and id(layer) not in self._warned_layers:
                self._warned_layers.add(id(layer))  # once per layer and step
                warn_unregistered(layer)
            self.accumulate(weight, g)

    def _backward_param(self, msg):
        traced_read, plain = msg["value"], unwrap(msg["value"])
        grads = [g for g in (self.pop(traced_read), self.pop(plain) if plain is not traced_read else None)
                 if g is not None]
        if not grads:
            return
        grad_value = grads[0] if len(grads) == 1 else grads[0] + grads[1]
        (unconstrained,) = msg["args"]
        # grad_u = J_transform(u)^T grad_x  (the identity for unconstrained params)
        grad_u = msg["transform"].vjp(unconstrained, plain, grad_value)
        previous = self.param_grads.get(msg["name"])
        self.param_grads[msg["name"]] = grad_u if previous is None else previous + grad_u

    def _backward_sample(self, msg, own_value_grad, own_arg_grads):
        fn, value = msg["fn"], msg["value"]
        args = self.differentiable_args(fn)
        if msg.get("drawn"):
            total = self.pop(value)
            if own_value_grad is not None:
                total = own_value_grad if total is None else total + own_value_grad
            # z = g(params, noise): pass d loss/dz on to the params. A draw with no noise (a discrete
            # choice) has no pathwise gradient; its score-function term (elbo.py) stands in for it.
            if "noise" in msg and total is not None and args:
                for arg_name, g in fn.rsample_vjp(msg["noise"], total, list(args)).items():
                    self.accumulate(args[arg_name], g)
        else:
            self.accumulate(value, own_value_grad)
        for arg_name, g in own_arg_grads.items():
            self.accumulate(args[arg_name], g)

    def finish(self):
        """Check that every gradient reached its producer; return the param gradients."""
        leftover = [self.produced[k] for k in self.grads]
        if leftover:
            shapes = ", ".join(str(backend.shape_of(a)) for a in leftover[:3])
            raise RuntimeError(
                f"gradients for {len(leftover)} traced array(s) of shape {shapes} never reached the record "
                f"that produced them: an array made in the model was used in the guide (or a record ran "
                f"out of order). Pass values between model and guide only through sample sites.")
        return self.param_grads


# ---------------------------------------------------------------- the structural check
def check_nothing_dangles(model_trace, guide_trace):
    """Raise :class:`LostGradientError` where a gradient would silently stop between records.

    A conversion to a plain value raised already (traced.py); the finished traces show the rest, read off counters
    and ids (no finite differences):

    1. a record used a traced value no record of this run produced (one kept from an earlier step): its gradient
       has nowhere to go;
    2. a value carrying a gradient was stored by a distribution no sample site used (its ``rsample()`` or
       ``log_prob()`` was called directly, and those do not record), and nothing else used it.
    """
    produced = produced_by(guide_trace, model_trace)
    for tr in (guide_trace, model_trace):
        for msg in tr.records:
            if msg["type"] in ("call", "sample"):
                for value in _inputs(msg):
                    if type(value) is Traced and id(value) not in produced:
                        raise from_an_earlier_run(value, _describe(msg))
    for value in produced.values():
        if type(value) is Traced and value.uses == 0 and value.held_by and value.root:
            raise LostGradientError(
                f"a value computed from {value.root} was passed to {value.held_by}, which no sample site used, and "
                f"reached no other record, so its gradient is lost: a distribution's rsample() and log_prob() "
                f"called directly do not record. Fix: draw it with minippl.sample('name', {value.held_by}(...)).")


def _inputs(msg):
    """The values a record consumed."""
    if msg["type"] == "call":
        return (*msg["args"], *msg["param_arrays"].values())
    inputs = tuple(msg["fn"].traced_args().values())
    return inputs if msg.get("drawn") else inputs + (msg["value"],)


def _describe(msg):
    if msg["type"] == "call":
        return f"a recorded {type(msg['fn']).__name__}"
    return f"sample site '{msg['name']}'"
