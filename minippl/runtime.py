"""The effect system: messages, the handler stack, and ``apply_stack``.

Teaches: how ``sample`` and ``param`` become *effects*. A primitive builds a message (a dict describing
the site) and hands it to the stack of active handlers; each handler may read or change it; then a
default action fills in the value. Every handler in handlers.py is a small subclass of :class:`Messenger`.
Builds on backend.py, traced.py (a record's output reaches the model as a traced value, and a "call"
record, a layer or NumPy arithmetic on a traced value, runs forward with traced.call_plain) and
validation.py (which it tells whether a model is running, so that an argument error waits for its
sample statement).

The stack, drawn once (a Python list; its END is the TOP)::

    with trace():             _STACK[0]   bottom: entered first, outermost
        with seed(rng_seed=0):  _STACK[1]
            with plate("N", 3): _STACK[2]   top: entered last, innermost
                sample("z", ...)

    process_message:     top -> bottom  (plate, then seed, then trace); a handler that sets
                         msg["stop"] = True hides the message from those below it (how block works)
    default action:      draw or look up the value, unless a handler already did
    postprocess_message: bottom -> top, over the handlers that processed the message (so trace, the
                         outermost, records the message as the default action left it; a handler above
                         it may still change the value returned, as a subsampling plate does for a param)

Two ways to write a handler, both dispatched by ``apply_stack``: minipyro's ``process_message`` /
``postprocess_message`` see every message; Pyro's ``_pyro_<type>`` / ``_pyro_post_<type>`` (``_pyro_sample``,
...) only those of their type ("sample", "param", "plate", "call"). A class with both runs, minipyro's outer:
``process_message``, ``_pyro_<type>``, the default action, ``_pyro_post_<type>``, ``postprocess_message``.
"""
from . import backend, traced, validation

_STACK = []


class Messenger:
    """Base class of every handler: a context manager, a decorator (``@h(...)``) and a wrapper (``h(fn)``)."""

    fn = None  # so a subclass whose __init__ skips super().__init__() (Pyro's tutorial) still works
    _pre_by_type = _post_by_type = {}  # the base class has no Pyro-style methods

    def __init__(self, fn=None):
        self.fn = fn

    def __init_subclass__(cls, **kwargs):
        # the Pyro-style methods, found once per class: {message type: method name}
        super().__init_subclass__(**kwargs)
        names = [n for n in dir(cls) if n.startswith("_pyro_")]
        cls._post_by_type = {n[len("_pyro_post_"):]: n for n in names if n.startswith("_pyro_post_")}
        cls._pre_by_type = {n[len("_pyro_"):]: n for n in names if not n.startswith("_pyro_post_")}

    def __enter__(self):
        _STACK.append(self)
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        assert _STACK and _STACK[-1] is self, "effect handlers exited out of order"
        _STACK.pop()  # handlers leave in the reverse order they entered

    def process_message(self, msg):
        pass

    def postprocess_message(self, msg):
        pass

    def __call__(self, *args, **kwargs):
        if self.fn is None:  # used as a decorator with arguments: @handler(...)
            (self.fn,) = args
            return self
        with self:
            return self.fn(*args, **kwargs)


def new_message(type, name, fn, args=(), kwargs=None, value=None, **extra):
    """A site's message: everything a handler may want to know or change."""
    return {
        "type": type,  # "sample", "param", "call" (a layer's or a traced NumPy op's call, on the tape) or "plate"
        "name": name, "fn": fn, "args": args, "kwargs": kwargs or {}, "value": value, "is_observed": False,
        "scale": 1.0,  # multiplies the site's log-prob (plate subsampling, scale handler)
        "mask": None,  # None or a bool array: which log-prob terms count
        "cond_indep_stack": (),  # the plates around the site, innermost first
        "rng": None,  # a seed handler puts its generator here
        "infer": {}, "stop": False, "done": False,  # done: True once a handler has supplied the value
        **extra,
    }


def apply_stack(msg):
    """Send ``msg`` through the handlers (top to bottom), act, then post-process."""
    visited = 0
    for handler in reversed(_STACK):
        visited += 1
        handler.process_message(msg)
        if msg["type"] in handler._pre_by_type:  # Pyro's _pyro_sample, _pyro_param, ...
            getattr(handler, handler._pre_by_type[msg["type"]])(msg)
        if msg["stop"]:
            break
    default_process_message(msg)
    for handler in _STACK[len(_STACK) - visited:]:
        if msg["type"] in handler._post_by_type:  # Pyro's _pyro_post_sample, ...
            getattr(handler, handler._post_by_type[msg["type"]])(msg)
        handler.postprocess_message(msg)
    return msg


def default_process_message(msg):
    """What a site does when no handler supplied its value."""
    if msg["done"]:
        return
    if msg["type"] == "sample":
        fn, rng = msg["fn"], msg["rng"] or backend.global_rng()
        sample_shape = msg["kwargs"].get("sample_shape", ())
        if fn.has_rsample:  # keep the noise: the ELBO's backward pass needs it for rsample_vjp
            value, msg["noise"] = fn.rsample_with_noise(sample_shape, rng=rng)
        else:
            value = fn.sample(sample_shape, rng=rng)
        # drawn here: this record produced it; a reparameterised draw carries its gradient on
        root = f"sample site '{msg['name']}'" if fn.has_rsample else None
        msg["value"], msg["drawn"] = traced.wrap(value, root), True
    elif msg["type"] == "plate":
        msg["value"] = msg["fn"](msg["rng"] or backend.global_rng())  # the subsample's indices: drawn, so seeded
    elif msg["type"] == "call":
        run_call(msg)  # forward on plain arrays, keeping what backward will need
    else:
        msg["value"] = traced.wrap_param_read(msg["fn"](*msg["args"], **msg["kwargs"]), msg["name"])
    msg["done"] = True


def run_call(msg):
    """The default action of a "call" record: forward on plain arrays (traced.call_plain), outputs traced. The
    record keeps the inputs as given (traced values link the tape by identity) and the arrays the layer computes
    with now (``param_arrays``: the tape sends each parameter's gradient to the very array forward used)."""
    fn, inputs = msg["fn"], msg["args"]
    msg["param_arrays"] = fn.current_parameters()
    result = traced.call_plain(fn, "forward", *[traced.unwrap(x) for x in inputs])
    if not (isinstance(result, tuple) and len(result) == 2):
        raise TypeError(f"{type(fn).__name__}.forward must return (outputs, cache) because the "
                        f"class defines backward; a module without backward may return outputs alone.")
    check_outputs(fn, result[0])
    traced.mark_used(inputs)
    traced.mark_used(msg["param_arrays"].values())
    root = _root_of(inputs) or _root_of(msg["param_arrays"].values())
    if root is None and msg["param_arrays"]:
        root = f"the parameters of a {type(fn).__name__} layer"
    msg["cache"], msg["value"] = result[1], traced.wrap(result[0], root)


def _root_of(values):
    """The first root among traced ``values`` (None if none carries a gradient)."""
    return next((v.root for v in values if type(v) is traced.Traced and v.root), None)


def check_outputs(fn, outputs):
    """A layer's outputs are an array or a tuple of arrays: the tape links each one, and would lose the gradient
    of anything else (a list, a Python number) without a word."""
    if not (hasattr(outputs, "shape") or type(outputs) is tuple and all(hasattr(y, "shape") for y in outputs)):
        raise TypeError(f"{type(fn).__name__}.forward returned a {type(outputs).__name__} as its outputs: return "
                        f"an array or a tuple of arrays (np.asarray(y), tuple(ys)), which the tape can follow; "
                        f"it would lose the gradient of anything else.")


def stack_is_empty():
    return not _STACK


def send_call(fn, inputs):
    """A layer's or a traced op's call as a "call" message through the stack; returns its output."""
    return apply_stack(new_message("call", None, fn, args=inputs))["value"]


traced.send_call = send_call  # how traced values (an earlier chapter) put their operations on the tape
validation.model_is_running = lambda: bool(_STACK)  # so argument errors wait for their sample statement
