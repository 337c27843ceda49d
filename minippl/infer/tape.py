"""The trace is the tape: backpropagation by reading traces backwards.

Teaches: how minippl differentiates without an autograd library. ``trace``
recorded every effectful operation in the order it ran; each record knows its
inputs (the very values an earlier record produced) and its output. Reading
the records in reverse, each one turns the gradient of its output into
gradients of its inputs with a hand-written VJP:

    record        forward                          backward
    param         x = transform(u)                 grad_u += transform.vjp(u, x, grad_x)
    sample        z = loc + scale * noise          grad_loc, grad_scale += dist.rsample_vjp(noise, grad_z)
                  (plus the site's own log-prob term, supplied by the ELBO)
    call          y = layer.forward(x)             grad_x, grad_W = layer.backward(cache, grad_y)
                  y = np.exp(x), a + b * x, w[k]   (the same contract: ops_elementwise.py, ops_arrays.py)

The last row is traced values (traced.py), the array-level version of these
records: during a gradient run, what a record produces reaches the model as a
traced value, and NumPy arithmetic on it becomes a "call" record too. So
``Normal(a + b * x, sigma)`` is four records (two param or sample records, a
multiply, an add) and the tape reads them back like any others: micrograd's
idea, with the trace as the graph.

Records link by identity: ``grads[id(value)]`` holds the gradient of the value
an earlier record produced. A value no record produced (data, a constant) is a
leaf and collects nothing. A module's layers compute with the param store's
plain arrays, so a param read also answers for its plain array.

Nothing dangles silently: :func:`check_nothing_dangles` runs before every
backward pass and raises where a param or latent's value reached no record
(converted with ``float()``, ``np.asarray``, ``.item()``...): a few counters
read, no finite differences. Builds on handlers.py and traced.py.
"""
import warnings

from .. import backend
from ..traced import Traced, unwrap


def _outputs(value):
    return value if isinstance(value, tuple) else (value,)


def _get_attribute(obj, dotted_path):
    for part in dotted_path.split("."):
        obj = getattr(obj, part)
    return obj


def produced_values(msg):
    """What a record produced that gradients can flow back through (empty if nothing)."""
    if msg["type"] == "param" and not msg.get("substituted"):
        return (msg["value"], unwrap(msg["value"]))  # the traced read, and the array layers use
    if msg["type"] == "sample" and msg.get("drawn"):
        return (msg["value"],)
    if msg["type"] == "call":
        return _outputs(msg["value"])
    return ()


class GradientTape:
    """Accumulates ``d loss / d value`` while the records are read in reverse."""

    def __init__(self, *traces):
        self.produced = {}  # id -> the value: keeps ids unique while the tape lives
        for tr in traces:
            for msg in tr.records:
                for value in produced_values(msg):
                    if hasattr(value, "shape"):
                        self.produced[id(value)] = value
        self.grads = {}
        self.param_grads = {}  # param name -> d loss / d unconstrained value
        self._warned_layers = set()

    # ------------------------------------------------------------ bookkeeping
    def is_traced(self, x):
        if id(x) in self.produced:
            return True
        if type(x) is Traced:
            raise RuntimeError(
                "a traced value from an earlier run (an earlier step, or an earlier call of the model) "
                "was used again, so its gradient has no record to flow to. Do not keep values of one "
                "step for the next: read the param or sample the site again in each run.")
        return False

    def accumulate(self, x, grad):
        if grad is None or not self.is_traced(x):
            return
        key = id(x)
        previous = self.grads.get(key)
        self.grads[key] = grad if previous is None else previous + grad

    def pop(self, x):
        return self.grads.pop(id(x), None)

    def differentiable_args(self, fn):
        """{name: traced value} for the distribution arguments gradients can flow to."""
        return {name: a for name, a in fn.traced_args().items() if self.is_traced(a)}

    # ------------------------------------------------------------ records
    def backward(self, msg, site_grads=None):
        """Read one record backwards. ``site_grads``: the ELBO's own terms for a sample site."""
        kind = msg["type"]
        if kind == "call":
            self._backward_call(msg)
        elif kind == "param":
            self._backward_param(msg)
        elif kind == "sample":
            self._backward_sample(msg, dict(site_grads or {}))

    def _backward_call(self, msg):
        layer, inputs = msg["fn"], msg["args"]
        outputs = _outputs(msg["value"])
        grad_outputs = [self.pop(y) for y in outputs]
        if all(g is None for g in grad_outputs):
            return
        needs_input_grad = tuple(self.is_traced(x) for x in inputs)
        grad_out = tuple(grad_outputs) if isinstance(msg["value"], tuple) else grad_outputs[0]
        grad_inputs, grad_params = layer.backward(msg["cache"], grad_out, needs_input_grad)
        for x, g in zip(inputs, grad_inputs):
            self.accumulate(x, g)
        for path, g in grad_params.items():
            weight = msg["param_arrays"][path] if path in msg["param_arrays"] else _get_attribute(layer, path)
            if not self.is_traced(weight):
                self._warn_unregistered(layer)
            self.accumulate(weight, g)

    def _warn_unregistered(self, layer):
        if id(layer) not in self._warned_layers:
            self._warned_layers.add(id(layer))
            warnings.warn(
                f"the parameters of a {type(layer).__name__} layer receive gradients but are not in the "
                f"param store, so they will not be trained: register the network with "
                f"minippl.module('name', net) in the model or guide that uses it.",
                stacklevel=4,
            )

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
        name = msg["name"]
        previous = self.param_grads.get(name)
        self.param_grads[name] = grad_u if previous is None else previous + grad_u

    def _backward_sample(self, msg, site_grads):
        fn, value = msg["fn"], msg["value"]
        args = self.differentiable_args(fn)
        own_value_grad = site_grads.pop("value", None)
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
        for arg_name, g in site_grads.items():
            self.accumulate(args[arg_name], g)

    def finish(self):
        """Check that every gradient reached its producer; return the param gradients."""
        leftover = [self.produced[k] for k in self.grads]
        if leftover:
            shapes = ", ".join(str(backend.shape_of(a)) for a in leftover[:3])
            raise RuntimeError(
                f"gradients for {len(leftover)} traced array(s) of shape {shapes} never reached the record "
                f"that produced them: an array made in the model was used in the guide (or a record ran "
                f"out of order). Pass values between model and guide only through sample sites."
            )
        return self.param_grads


# ---------------------------------------------------------------- the structural check
class LostGradientError(RuntimeError):
    """A param or latent site's value reached no record, so its gradient would be lost."""


_FIX = ("Fix: compute with the value itself (NumPy arithmetic on it is recorded), and convert only "
        "for printing or plotting.")


def check_nothing_dangles(model_trace, guide_trace, uses_before_model):
    """Raise :class:`LostGradientError` where a gradient would silently stop.

    Three rules, read off the ``uses`` counters of traced values (traced.py):

    1. a param whose every read reached no record (for a module's array: no layer used it);
    2. a latent site, drawn by the guide with a pathwise gradient, whose value reached no
       record of the model after the site itself;
    3. a value derived from a param or a latent that was converted to a plain array, or stored
       by a distribution that no sample site used, and reached no record.
    """
    producers, layer_arrays, consumed, used_params, read_params = {}, set(), [], set(), {}
    for tr in (guide_trace, model_trace):
        for msg in tr.records:
            kind = msg["type"]
            if kind == "call":
                consumed.append(msg)
                layer_arrays.update(id(a) for a in msg["param_arrays"].values())
            elif kind == "sample":
                consumed.append(msg)
            elif kind == "param" and not msg.get("substituted") and type(msg["value"]) is Traced:
                read_params.setdefault(msg["name"], msg)
                if msg["value"].uses:
                    used_params.add(msg["name"])
            for value in produced_values(msg):
                producers[id(value)] = msg
    for msg in consumed:
        for value in _inputs(msg):
            if type(value) is Traced and id(value) not in producers:
                raise LostGradientError(
                    f"{_describe(msg)} uses a traced value from an earlier run (an earlier step, or an earlier "
                    f"call of the model), so its gradient has no record to flow to. Do not keep values of one "
                    f"step for the next: read the param or sample the site again in each run.")
    used_params.update(name for name, msg in read_params.items() if id(msg["value"].data) in layer_arrays)
    for name, msg in read_params.items():
        if name in used_params:
            continue
        if msg.get("module_param"):
            raise LostGradientError(
                f"param '{name}' is an array of a registered module, but no layer call and no recorded "
                f"operation used it, so it would never be trained. A module computes with its arrays "
                f"through layers (a minippl.nn class with backward); NumPy arithmetic on self.<array> in "
                f"a forward without backward is not recorded unless the module is a PyroModule. If that "
                f"part of the network is not used here, register only the part that is.")
        raise LostGradientError(
            f"param '{name}' was read, but its value reached no record, so it gets no gradient and "
            f"would never be trained. {_cause(msg['value'])} {_FIX} If the param is not needed, do not read it.")
    guide_sites = guide_trace.nodes
    for name, site in model_trace.sample_sites().items():
        drawn = guide_sites.get(name)
        if site["is_observed"] or drawn is None or "noise" not in drawn or site["value"] is not drawn["value"]:
            continue
        value = site["value"]
        if type(value) is Traced and value.uses - uses_before_model.get(name, 0) <= 1:  # 1: the site's own
            raise LostGradientError(
                f"sample site '{name}': its value reached no record of the model after the site, so the "
                f"model does not depend on it and its gradient is lost. {_cause(value)} {_FIX} If the "
                f"model really does not use '{name}', remove the site.")
    for msg in consumed:  # the values records produced: outputs of calls, draws of sample sites
        for value in produced_values(msg):
            if type(value) is Traced and value.uses == 0 and (value.escaped or value.held_by):
                roots = _roots(value, producers)
                if roots:
                    raise LostGradientError(
                        f"a value computed from {', '.join(roots)} reached no record, so its gradient "
                        f"is lost. {_cause(value)} {_FIX}")


def _inputs(msg):
    """The values a record consumed."""
    if msg["type"] == "call":
        return (*msg["args"], *msg["param_arrays"].values())
    if msg["type"] == "sample":
        inputs = tuple(msg["fn"].traced_args().values())
        return inputs if msg.get("drawn") else inputs + (msg["value"],)
    return ()


def _describe(msg):
    if msg["type"] == "call":
        return f"a recorded {msg['fn']!r}" if not hasattr(msg["fn"], "named_parameters") \
            else f"a call of layer {type(msg['fn']).__name__}"
    return f"sample site '{msg['name']}'"


def _cause(value):
    if value.escaped:
        return f"It was converted to a plain value with {value.escaped}, which the tape cannot follow."
    if value.held_by:
        return (f"It was passed to {value.held_by}, which no sample site used (its rsample() and log_prob() "
                f"do not record), or which stores it under a name that is not one of its arguments.")
    return ("Likely cause: it was converted to a plain array (np.asarray, float(), .item(), .astype(int)), "
            "passed to code that copies it, or not used at all.")


def _roots(value, producers):
    """The params and reparameterised sites a traced value was computed from (for messages)."""
    roots, stack, seen = [], [value], set()
    while stack:
        v = stack.pop()
        msg = producers.get(id(v))
        if msg is None or id(v) in seen:
            continue
        seen.add(id(v))
        if msg["type"] == "param":
            roots.append(f"param '{msg['name']}'")
        elif msg["type"] == "sample" and "noise" in msg:
            roots.append(f"sample site '{msg['name']}'")
        elif msg["type"] == "call":
            stack.extend(a for a in msg["args"] if type(a) is Traced)
            stack.extend(a for a in msg["param_arrays"].values() if type(a) is Traced)
    return sorted(set(roots))
