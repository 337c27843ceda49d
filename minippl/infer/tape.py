"""The trace is the tape: backpropagation by reading traces backwards.

Teaches: how minippl differentiates without an autograd library. ``trace``
recorded every effectful operation in the order it ran; each record knows its
inputs (the very arrays an earlier record produced) and its output. Reading
the records in reverse, each one turns the gradient of its output into
gradients of its inputs with a hand-written VJP:

    record        forward                          backward
    param         x = transform(u)                 grad_u += transform.vjp(u, x, grad_x)
    sample        z = loc + scale * noise          grad_loc, grad_scale += dist.rsample_vjp(noise, grad_z)
                  (plus the site's own log-prob term, supplied by the ELBO)
    call          y = layer.forward(x)             grad_x, grad_W = layer.backward(cache, grad_y)

Records link by array identity: ``grads[id(array)]`` holds the gradient of the
array an earlier record produced. An array that no record produced (data, a
constant) is a leaf and collects nothing. Builds on handlers.py (Trace).
"""
import warnings

from .. import backend


def _outputs(value):
    return value if isinstance(value, tuple) else (value,)


def _get_attribute(obj, dotted_path):
    for part in dotted_path.split("."):
        obj = getattr(obj, part)
    return obj


def produced_value(msg):
    """The value a record produced, if gradients can flow back through it; else None."""
    if msg["type"] == "param" and not msg.get("substituted"):
        return msg["value"]
    if msg["type"] == "sample" and "noise" in msg:  # drawn here by rsample (not replayed/observed)
        return msg["value"]
    if msg["type"] == "call":
        return msg["value"]
    return None


class GradientTape:
    """Accumulates ``d loss / d array`` while the records are read in reverse."""

    def __init__(self, *traces):
        self.produced = {}  # id -> the array: keeps ids unique while the tape lives
        for tr in traces:
            for msg in tr.records:
                for array in _outputs(produced_value(msg)):
                    if hasattr(array, "shape"):
                        self.produced[id(array)] = array
        self.grads = {}
        self.param_grads = {}  # param name -> d loss / d unconstrained value
        self._warned_layers = set()

    # ------------------------------------------------------------ bookkeeping
    def is_traced(self, x):
        return id(x) in self.produced

    def accumulate(self, x, grad):
        if grad is None or not self.is_traced(x):
            return
        key = id(x)
        previous = self.grads.get(key)
        self.grads[key] = grad if previous is None else previous + grad

    def pop(self, x):
        return self.grads.pop(id(x), None)

    def traced_args(self, site_name, args):
        """Names of the distribution arguments that carry gradients (checks for broken views)."""
        for arg_name, array in args.items():
            self.check_not_a_view(array, f"the {arg_name} of sample site '{site_name}'")
        return [n for n, a in args.items() if self.is_traced(a)]

    def check_not_a_view(self, array, what):
        # A reshape or slice of a traced array is a new array object that no record
        # produced, so its gradient would silently stop here: refuse it.
        base = getattr(array, "base", None)
        if base is not None and not self.is_traced(array) and self.is_traced(base):
            raise ValueError(
                f"{what} is a view (a reshape, slice or transpose) of an array that minippl traced, "
                f"so its gradient cannot flow back. Do that step inside a layer (minippl.nn), "
                f"or give the network separate output heads instead of slicing one output."
            )

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
        for i, x in enumerate(inputs):
            self.check_not_a_view(x, f"input {i} of layer {type(layer).__name__}")
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
        grad_value = self.pop(msg["value"])
        if grad_value is None:
            return
        (unconstrained,) = msg["args"]
        # grad_u = J_transform(u)^T grad_x  (the identity for unconstrained params)
        grad_u = msg["transform"].vjp(unconstrained, msg["value"], grad_value)
        name = msg["name"]
        previous = self.param_grads.get(name)
        self.param_grads[name] = grad_u if previous is None else previous + grad_u

    def _backward_sample(self, msg, site_grads):
        fn, value = msg["fn"], msg["value"]
        args = fn.arg_arrays()
        own_value_grad = site_grads.pop("value", None)
        if "noise" in msg:
            # this record drew the value: z = g(params, noise), so pass d loss/dz to the params
            total = self.pop(value)
            if own_value_grad is not None:
                total = own_value_grad if total is None else total + own_value_grad
            wrt = self.traced_args(msg["name"], args)
            if total is not None and wrt:
                for arg_name, g in fn.rsample_vjp(msg["noise"], total, wrt).items():
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
