"""Effect handlers: one small class per effect.

Teaches: each handler is a :class:`~minippl.runtime.Messenger` that changes or records the
messages of the sites run inside it. Every handler works three ways, as in Pyro and NumPyro::

    trace(model).get_trace(x)            # wrapper
    with seed(rng_seed=0): model(x)       # context manager
    @condition(data={"z": 0.}) def m()... # decorator

Builds on runtime.py. ``plate`` is in plate.py; the primitives that send messages, in primitives.py.
"""
import numbers
import warnings

import numpy as np

from .runtime import _STACK, Messenger, apply_stack
from .traced import unwrap

SITE_TYPES = ("sample", "param", "plate")  # named sites; "call" records are the tape


class Trace:
    """What ``trace`` recorded: ``nodes`` maps a site name to its message (Pyro's ``trace.nodes``);
    ``records`` lists every message in run order, with the anonymous "call" records of layers and
    traced arithmetic: this list is the ELBO's tape."""

    def __init__(self):
        self.nodes = {}
        self.records = []

    def add(self, msg):
        name = msg["name"]
        if msg["type"] in SITE_TYPES:
            old = self.nodes.get(name)
            if old is not None and old["type"] == msg["type"] == "plate" and old["args"] != msg["args"]:
                raise ValueError(
                    f"plate '{name}' is used with (size, subsample_size) {msg['args']} after {old['args']} "
                    f"in the same run: one name means one plate; rename one of them."
                )
            if old is not None and msg["type"] == "plate" and None not in (old.get("dim"), msg.get("dim")) \
                    and old["dim"] != msg["dim"]:
                raise ValueError(
                    f"plate '{name}' is used at dim {old['dim']} and then at dim {msg['dim']} in the same run "
                    f"(its sites would not line up): pass the same dim=... each time, or rename one of them."
                )
            # a param may be read many times, a plate entered many times; a random choice happens once
            if old is not None and not (old["type"] == msg["type"] and msg["type"] in ("param", "plate")):
                raise ValueError(
                    f"site name '{name}' is used twice in one run (as a {old['type']} site and as a "
                    f"{msg['type']} site). Give each random choice its own name, "
                    f"e.g. f'{name}_{{i}}' inside a loop."
                )
            self.nodes[name] = msg
        self.records.append(msg)

    def sample_sites(self):
        return {name: m for name, m in self.nodes.items() if m["type"] == "sample"}

    def log_prob_sum(self):
        """Sum of every sample site's scaled, masked log-probability."""
        total = 0.0
        for site in self.sample_sites().values():
            lp = site["fn"].log_prob(unwrap(site["value"]))
            if site["mask"] is not None:
                lp = np.where(site["mask"], lp, 0.0)
            total += site["scale"] * float(lp.sum())
        return total


class trace(Messenger):
    """Record every site (and layer call) run inside it.

    >>> import minippl, minippl.distributions as dist
    >>> def model():
    ...     return minippl.sample("z", dist.Normal(0., 1.))
    >>> tr = trace(model).get_trace()
    >>> list(tr.nodes)
    ['z']
    """

    def __enter__(self):
        self.trace = Trace()
        return super().__enter__()

    def postprocess_message(self, msg):
        # a shallow copy: handlers that run later must not edit the record
        self.trace.add(dict(msg))

    def get_trace(self, *args, **kwargs):
        self(*args, **kwargs)
        return self.trace


class replay(Messenger):
    """Reuse the values of a recorded trace (the guide's) at sites of the same name.

    >>> import minippl, minippl.distributions as dist
    >>> guide_tr = trace(lambda: minippl.sample("z", dist.Normal(5., 1.))).get_trace()
    >>> replay(lambda: minippl.sample("z", dist.Normal(0., 1.)), trace=guide_tr)() is guide_tr.nodes["z"]["value"]
    True
    """

    def __init__(self, fn=None, trace=None):
        if trace is None:
            raise ValueError("replay needs the trace to replay: replay(fn, trace=guide_trace)")
        super().__init__(fn)
        self.trace = trace

    def process_message(self, msg):
        if msg["type"] not in ("sample", "plate") or msg["is_observed"]:
            return
        recorded = self.trace.nodes.get(msg["name"])
        if recorded is not None and recorded["type"] == msg["type"]:
            msg.update(value=recorded["value"], done=True)


class block(Messenger):
    """Hide sites from the handlers outside (below) this one.

    ``hide_fn(msg) -> bool`` decides; else ``hide`` lists names to hide, or ``expose`` the only names
    to show; with none of them every site is hidden. "call" records carry gradients, not choices, so
    they are kept, unless ``hide_calls=True``: a run that must leave no record outside (an autoguide's
    look at the model, Predictive's probe of its shapes).

    >>> import minippl, minippl.distributions as dist
    >>> def model():
    ...     minippl.sample("a", dist.Normal(0., 1.))
    ...     minippl.sample("b", dist.Normal(0., 1.))
    >>> list(trace(block(model, hide=["a"])).get_trace().nodes)
    ['b']
    """

    def __init__(self, fn=None, hide_fn=None, hide=None, expose=None, hide_calls=False):
        super().__init__(fn)
        self.hide_calls = hide_calls
        if hide_fn is not None:
            self.hide_fn = hide_fn
        elif hide is not None:
            hidden = set(hide)
            self.hide_fn = lambda msg: msg["name"] in hidden
        elif expose is not None:
            shown = set(expose)
            self.hide_fn = lambda msg: msg["name"] not in shown
        else:
            self.hide_fn = lambda msg: True

    def process_message(self, msg):
        if (msg["type"] != "call" or self.hide_calls) and self.hide_fn(msg):
            if msg["type"] in ("sample", "plate") and msg["rng"] is None:
                # hidden, but still drawn from the seed handler outside, so seed(block(model))
                # repeats exactly (in Pyro a hidden site also consumes the seeded stream)
                outside = reversed(_STACK[:_STACK.index(self)])
                msg["rng"] = next((h.rng for h in outside if isinstance(h, seed)), None)
            msg["stop"] = True


class seed(Messenger):
    """Draw every random choice inside from a generator seeded with ``rng_seed``, started afresh on
    each entry: a seeded function repeats its draws exactly, whatever the global generator did before.

    >>> import minippl, minippl.distributions as dist
    >>> draw = seed(lambda: minippl.sample("z", dist.Normal(0., 1.)), rng_seed=0)
    >>> bool(draw() == draw())
    True
    """

    def __init__(self, fn=None, rng_seed=None):
        super().__init__(fn)
        self.rng_seed = rng_seed

    def __enter__(self):
        self.rng = np.random.default_rng(self.rng_seed)
        return super().__enter__()

    def process_message(self, msg):
        # the innermost seed (the first handler to see the message) wins
        if msg["type"] in ("sample", "plate") and msg["rng"] is None:
            msg["rng"] = self.rng


class condition(Messenger):
    """Observe sample sites: ``condition(model, data={"z": value})``. A conditioned site keeps its
    log-probability in the ELBO, but the guide no longer samples it.

    >>> import minippl, minippl.distributions as dist
    >>> condition(lambda: minippl.sample("z", dist.Normal(0., 1.)), data={"z": 2.})()
    2.0
    """

    def __init__(self, fn=None, data=None):
        if data is None:
            raise ValueError("condition needs data: condition(fn, data={'site': value})")
        super().__init__(fn)
        self.data = data

    def process_message(self, msg):
        if msg["type"] == "sample" and msg["name"] in self.data:
            msg.update(value=self.data[msg["name"]], is_observed=True, done=True)


class do(Messenger):
    """Intervene on sample sites: ``do(model, data={"z": value})``, Pearl's do-operator, as in Pyro.

    The model gets ``value`` at ``z`` as if it were hard-coded, so everything downstream follows the
    intervention. ``z``'s own draw still happens, as a fresh site ``z`` whose value does not
    propagate: the log joint keeps its term, and composed with ``condition`` (on ``z`` and its
    consequences) this gives Pyro's counterfactuals. The intervened value is a site ``"z__CF"``,
    observed and hidden from the handlers outside ``do`` (those inside it see it).

    >>> import minippl, minippl.distributions as dist
    >>> def model():
    ...     z = minippl.sample("z", dist.Normal(0., 1.))
    ...     return minippl.sample("x", dist.Normal(z, 1e-3))
    >>> tr = trace(seed(do(model, data={"z": 5.}), rng_seed=0)).get_trace()
    >>> list(tr.nodes), round(float(tr.nodes["x"]["value"])), bool(tr.nodes["z"]["value"] == 5.)
    (['z', 'x'], 5, False)
    """

    def __init__(self, fn=None, data=None):
        if data is None:
            raise ValueError("do needs data: do(fn, data={'site': value})")
        super().__init__(fn)
        self.data = data

    def process_message(self, msg):
        name = msg["name"]
        if msg["type"] != "sample" or msg.get("_intervened_by") is self or self.data.get(name) is None:
            return
        value = self.data[name]
        if not isinstance(value, numbers.Number) and not hasattr(value, "shape"):
            raise TypeError(f"do: the intervention at site '{name}' must be a number or an array, "
                            f"got {type(value).__name__}")
        if msg.get("_intervened_by") is not None:
            warnings.warn(f"do: site '{name}' is intervened on twice (nested do handlers); "
                          f"this is almost certainly not what you meant", RuntimeWarning)
        # the fresh site: the same message sent through the whole stack again, with what the handlers
        # above this one added undone (they add it again); marked so that this handler skips it
        fresh = dict(msg, cond_indep_stack=(), scale=1.0, mask=None, infer=dict(msg["infer"]),
                     _intervened_by=self)
        apply_stack(fresh)
        # the intervened site: renamed, observed, and stopped here (the handlers outside never see it)
        msg.update(name=name + "__CF", value=value, is_observed=True, done=True, stop=True, _intervened_by=self)


class substitute(Messenger):
    """Replace the values of param (and unobserved sample) sites: ``data`` maps names to values, or
    ``substitute_fn(msg)`` computes one (None leaves the site alone). A substituted value is a
    constant: no gradient flows to the param store through it.

    >>> import minippl, numpy as np
    >>> minippl.clear_param_store()
    >>> substitute(lambda: minippl.param("w", np.zeros(2)), data={"w": np.ones(2)})()
    array([1., 1.])
    """

    def __init__(self, fn=None, data=None, substitute_fn=None):
        if (data is None) == (substitute_fn is None):
            raise ValueError("substitute needs exactly one of data= or substitute_fn=")
        super().__init__(fn)
        self.data = data
        self.substitute_fn = substitute_fn

    def process_message(self, msg):
        if msg["type"] not in ("param", "sample") or msg["is_observed"]:
            return
        value = self.data.get(msg["name"]) if self.data is not None else self.substitute_fn(msg)
        if value is not None:
            msg.update(value=value, done=True, substituted=True)


class scale(Messenger):
    """Multiply the log-probability of every sample site inside by ``scale``.

    >>> import minippl, minippl.distributions as dist
    >>> tr = trace(scale(lambda: minippl.sample("z", dist.Normal(0., 1.)), scale=10.)).get_trace()
    >>> tr.nodes["z"]["scale"]
    10.0
    """

    def __init__(self, fn=None, scale=1.0):
        if np.any(np.asarray(scale) <= 0):
            raise ValueError(f"scale must be positive, got {scale}")
        super().__init__(fn)
        self.scale = scale

    def process_message(self, msg):
        if msg["type"] == "sample":
            msg["scale"] = self.scale * msg["scale"]


class mask(Messenger):
    """Drop the log-probability terms where ``mask`` is False.

    >>> import minippl, numpy as np, minippl.distributions as dist
    >>> with trace() as tr, mask(mask=np.array([True, False])):
    ...     _ = minippl.sample("x", dist.Normal(np.zeros(2), 1.), obs=np.zeros(2))
    >>> tr.trace.nodes["x"]["mask"]
    array([ True, False])
    """

    def __init__(self, fn=None, mask=None):
        if mask is None:
            raise ValueError("mask needs a boolean array or bool: mask(fn, mask=...)")
        super().__init__(fn)
        self.mask = mask

    def process_message(self, msg):
        if msg["type"] == "sample":
            msg["mask"] = self.mask if msg["mask"] is None else np.logical_and(msg["mask"], self.mask)
