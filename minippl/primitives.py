"""The primitives a model is written with: ``sample``, ``param``, ``module``, ``deterministic``, ``factor``.

Teaches: a primitive only describes a site and sends it through the handler stack (runtime.py); what happens
to it (recorded, replayed, conditioned, seeded...) is decided by the handlers around it. With no handler
active, ``sample`` simply draws, exactly as in Pyro. Builds on runtime.py, params.py and the distributions.
"""
import numbers

from . import backend, traced, validation
from .distributions import constraints
from .distributions.constraint_registry import biject_to
from .distributions.distribution import Distribution
from .distributions.delta import Delta
from .params import get_param_store
from .runtime import apply_stack, new_message, stack_is_empty


def sample(name, fn, obs=None, infer=None, sample_shape=()):
    """Draw the random choice ``name`` from the distribution ``fn``, or observe ``obs``."""
    if not isinstance(fn, Distribution):
        raise TypeError(f"sample site '{name}': expected a distribution such as dist.Normal(loc, scale), "
                        f"got {type(fn).__name__}.")
    validation.raise_deferred(fn, name, traced.unwrap(obs))  # an argument error met while the model ran
    if stack_is_empty() and obs is None:
        return fn.sample(sample_shape)
    msg = new_message("sample", name, fn, value=obs, is_observed=obs is not None, done=obs is not None,
                      infer=dict(infer or {}), kwargs={"sample_shape": sample_shape})
    if not stack_is_empty():
        apply_stack(msg)
    # the value is final only now (a handler may have observed, replayed or substituted it)
    if validation.is_validation_enabled() and getattr(msg["fn"], "_validate_args", True) \
            and not msg["infer"].get("_deterministic"):
        validation.check_sample_site(msg, traced.unwrap(msg["value"]))
    if traced.is_recording():
        # the site consumes its distribution's traced arguments, and a value it did not draw
        traced.mark_used(msg["fn"].traced_args().values())
        if not msg.get("drawn"):
            traced.mark_used((msg["value"],))
    return msg["value"]


def param(name, init=None, constraint=constraints.real, event_dim=None, *, init_tensor=None):
    """A learnable value, stored unconstrained in the param store; returns it constrained. ``init`` (Pyro's
    ``init_tensor``; both are accepted) is used only the first time ``name`` is seen and may be a callable
    returning the value. The store keeps ``u = biject_to(constraint).inverse(init)``; every read returns
    ``biject_to(constraint).forward(u)``, whose gradient the ELBO's backward pass maps back to ``u``.

    ``event_dim`` (Pyro's meaning): the value's rightmost ``event_dim`` dims are one event, and the dims left
    of them are batch dims that line up with the plates. A subsampling plate reads such a param (of the
    plate's full size along its dim) at the subsampled items only, so per-datum parameters follow the data.

    >>> import numpy as np, minippl
    >>> minippl.clear_param_store()
    >>> with minippl.plate("data", 5, subsample=np.array([4, 0])):
    ...     minippl.param("local", np.arange(5.0), event_dim=0)
    array([4., 0.])
    >>> minippl.clear_param_store()
    """
    init = init_tensor if init is None else init
    store = get_param_store()
    if name not in store:
        if init is None:
            raise KeyError(f"param '{name}' is not in the param store and has no initial value: "
                           f"pass one, e.g. minippl.param('{name}', np.zeros(3)).")
        store.setdefault(name, init() if callable(init) else init, constraint)
    unconstrained = store.get_unconstrained(name)
    transform = biject_to(store.get_constraint(name))
    if event_dim is not None and not (isinstance(event_dim, int) and event_dim >= 0):
        raise ValueError(f"param '{name}': event_dim must be a non-negative int or None, got {event_dim!r}")
    if stack_is_empty():
        return transform.forward(unconstrained)
    msg = new_message("param", name, transform.forward, args=(unconstrained,), transform=transform,
                      event_dim=event_dim)
    return apply_stack(msg)["value"]  # a subsampling plate may have picked its items (plate.py)


def module(name, nn_module, update_module_params=False):
    """Register the arrays of ``nn_module`` in the param store as ``name$$$path``. Nothing is copied: the store
    holds the module's very arrays (or, if it already has values for these names, e.g. after ``load``, the
    module is rebound to the store's); each is then read with ``param``, so traces see it and its gradient
    reaches the store."""
    if update_module_params:
        raise NotImplementedError("module(update_module_params=True): load the param store before training instead")
    store = get_param_store()
    for path, array in list(nn_module.named_parameters()):
        full_name = f"{name}$$${path}"
        # unwrap: called inside a composite's forward, the module's arrays may be shown traced (nn/module.py)
        store.register_module_array(full_name, traced.unwrap(array), owner=nn_module, path=path)
        param(full_name)
    return nn_module


def deterministic(name, value, event_dim=None):
    """Record a computed value in the trace (it adds nothing to the ELBO)."""
    event_dim = getattr(value, "ndim", 0) if event_dim is None else event_dim
    fn = Delta(value, event_dim=event_dim).mask(False)
    return sample(name, fn, obs=value, infer={"_deterministic": True})


def factor(name, log_factor):
    """Add ``log_factor`` to the model's log joint (Pyro's ``pyro.factor``): a soft constraint, a likelihood
    written by hand, a penalty. As in Pyro, it is an observed sample site whose value is empty (shape
    ``(..., 0)``) and whose log-prob is ``log_factor``: here ``Delta(empty, log_density=log_factor, event_dim=1)``,
    so the ELBO differentiates it with Delta's ``log_prob_vjp`` (d log_prob / d log_density = 1) and a traced
    ``log_factor`` (computed from params or guide draws) passes its gradient on. Inside a plate, ``log_factor``
    has one entry per item (or broadcasts to one); the plate's subsampling scale applies as for any site.

    >>> import numpy as np, minippl
    >>> from minippl.handlers import trace
    >>> tr = trace(lambda: factor("penalty", np.array([-1.0, -2.0]))).get_trace()
    >>> tr.log_prob_sum(), tr.nodes["penalty"]["value"].shape
    (-3.0, (2, 0))
    """
    plain = traced.unwrap(log_factor)
    kind = getattr(getattr(plain, "dtype", None), "kind", None)  # an array's: float, int or unsigned is fine
    if not (isinstance(plain, numbers.Real) or kind in ("f", "i", "u")):
        raise TypeError(f"factor '{name}': log_factor must be a real number or array (a log-density), "
                        f"got {type(plain).__name__} {getattr(plain, 'dtype', '')}".rstrip())
    xp, dtype = backend.array_module(plain), backend.float_dtype(plain)
    shape = backend.shape_of(plain) + (0,)  # one empty event per factor
    unit = Delta(xp.zeros(shape, dtype), log_density=log_factor, event_dim=1)
    return sample(name, unit, obs=xp.zeros(shape, dtype), infer={"is_auxiliary": True})
