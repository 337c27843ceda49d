"""Optimisers with Pyro's interface: ``Adam({"lr": 1e-3})``, ``SGD``, ``ClippedAdam``.

Teaches: the update rules of torch.optim.SGD, torch.optim.Adam and Pyro's ClippedAdam, written
as plain in-place NumPy so every parameter array keeps its identity (modules and the param store
share it). As in Pyro's PyroOptim, each param name gets its own state (step count, moments) the
first time it is seen. Builds on backend.py and saving.py; it updates the arrays params.py stores.
"""
import math

import numpy as np

from . import saving
from . import backend
from .backend import array_module


class PyroOptim:
    """Base class: hyperparameters from a dict (or a callable name -> dict), per-name state.

    ``step(params, grads)``: ``params`` maps names to unconstrained arrays, updated IN PLACE; ``grads``
    to gradients of the loss to minimise (a name without one is left alone, as torch skips a
    ``.grad`` of None). ``only_if``, a 0-d boolean on the params' device, makes the update
    conditional on it without reading it (SVI's sync window, sync_window.py).
    """

    defaults = {}  # hyperparameter -> default value; None means required

    def __init__(self, optim_args, clip_args=None):
        if clip_args is not None:
            raise NotImplementedError("clip_args is not supported; use ClippedAdam (clip_norm) instead")
        if not (isinstance(optim_args, dict) or callable(optim_args)):
            raise TypeError(f"{type(self).__name__} takes a dict of hyperparameters, e.g. "
                            f"{type(self).__name__}({{'lr': 1e-3}}), or a callable param_name -> dict; "
                            f"got {type(optim_args).__name__}")
        self.optim_args = optim_args
        if isinstance(optim_args, dict):
            self._resolve(optim_args)  # report a bad hyperparameter now, not at the first step
        self.state = {}  # name -> {"step": int, arrays named by state_arrays, ...}
        self._hyperparameters = {}  # name -> resolved hyperparameters (fixed at first sight, as Pyro)

    # ---------------------------------------------------------- the subclass's part
    def state_arrays(self, hyper):
        """Names of the per-parameter arrays this rule keeps (each shaped like the param)."""
        return ()

    def initial_scalars(self, hyper):
        """Per-parameter numbers kept besides the step count (ClippedAdam's decayed lr)."""
        return {}

    def validate(self, hyper):
        pass

    def update(self, param, grad, state, hyper):
        raise NotImplementedError

    # ---------------------------------------------------------- the shared part
    def hyperparameters(self, name):
        if name not in self._hyperparameters:
            # Pyro hands the callable the name as nn.Module would spell it: "encoder.fc1.weight"
            # for the module param stored as "encoder$$$fc1.weight"
            args = self.optim_args(name.replace("$$$", ".")) if callable(self.optim_args) else self.optim_args
            self._hyperparameters[name] = self._resolve(args, name)
        return self._hyperparameters[name]

    def _resolve(self, args, name=None):
        where = f"{type(self).__name__}" + (f" (param {name!r})" if name is not None else "")
        if not isinstance(args, dict):
            raise TypeError(f"{where}: the per-param callable must return a dict, got {type(args).__name__}")
        unknown = sorted(set(args) - set(self.defaults))
        if unknown:
            raise ValueError(f"{where}: unknown hyperparameter(s) {unknown}; known: {sorted(self.defaults)}")
        hyper = {**self.defaults, **args}
        missing = sorted(k for k, v in hyper.items() if v is None)
        if missing:
            raise ValueError(f"{where}: missing required hyperparameter(s) {missing}")
        try:
            self.validate(hyper)
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None
        return hyper

    def step(self, params, grads, only_if=None):
        work = []  # (param, grad, state, hyper) for each name with a gradient
        for name, grad in grads.items():
            if grad is None:
                continue
            if name not in params:
                raise KeyError(f"{type(self).__name__}.step: gradient for {name!r} but no param of that name")
            param = params[name]
            if getattr(grad, "shape", ()) != param.shape:
                raise ValueError(f"{type(self).__name__}.step: gradient of {name!r} has shape "
                                 f"{getattr(grad, 'shape', ())}, the param has shape {param.shape}")
            hyper = self.hyperparameters(name)
            state = self.state.get(name)
            if state is None:
                state = self.state[name] = self._initial_state(param, hyper)
            else:
                self._match_param(name, state, param, hyper)
            xp = array_module(param)
            work.append((param, xp.asarray(grad, dtype=param.dtype), state, hyper))
        if only_if is None:
            self.update_all(work)
        else:
            self.update_all_if(work, only_if)

    def update_all(self, work):  # Adam fuses them all into one kernel call
        for param, grad, state, hyper in work:
            self.update(param, grad, state, hyper)

    def update_all_if(self, work, only_if):  # update_all, kept only if only_if (a device flag) holds
        arrays = [a for param, _, state, hyper in work for a in (param, *(state[k] for k in self.state_arrays(hyper)))]
        kept_only_if(only_if, arrays, lambda: self.update_all(work))

    def _initial_state(self, param, hyper):
        xp = array_module(param)
        state = {"step": 0, **self.initial_scalars(hyper)}
        for key in self.state_arrays(hyper):
            state[key] = xp.zeros_like(param)  # moments in the param's dtype
        return state

    def _match_param(self, name, state, param, hyper):
        """A loaded state must fit the param: same shape; dtype and device made to match."""
        xp = array_module(param)
        for key in self.state_arrays(hyper):
            array = state[key]
            if array.shape != param.shape:
                raise ValueError(f"{type(self).__name__}: state {key!r} of {name!r} has shape {array.shape}, "
                                 f"the param has {param.shape}; was the param re-created? drop its state "
                                 f"with `del optim.state[{name!r}]`")
            if array.dtype != param.dtype or array_module(array) is not xp:
                state[key] = xp.asarray(array, dtype=param.dtype)

    # ---------------------------------------------------------- state and files
    def get_state(self):  # {name: {"step": int, <moment>: a copy, ...}} for every param seen
        return {name: {k: (v.copy() if hasattr(v, "copy") else v) for k, v in s.items()}
                for name, s in self.state.items()}

    def set_state(self, state):  # copies; the names not in state are kept, as in Pyro
        self.state.update(self._checked_state(state))

    def _checked_state(self, state):
        """A copy of ``state``, every entry checked first, so a bad one changes nothing."""
        return {name: self._checked_entry(name, entry) for name, entry in state.items()}

    def _checked_entry(self, name, entry):
        hyper = self.hyperparameters(name)
        expected = {"step", *self.initial_scalars(hyper), *self.state_arrays(hyper)}
        if not isinstance(entry, dict) or set(entry) != expected:
            got = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
            raise ValueError(f"{type(self).__name__}: state of {name!r} must have keys "
                             f"{sorted(expected)}, got {got}")
        for key in ("step", *self.initial_scalars(hyper)):
            if np.ndim(entry[key]) != 0 or np.asarray(entry[key]).dtype.kind not in "iuf":
                raise ValueError(f"{type(self).__name__}: state {key!r} of {name!r} must be one number, "
                                 f"got {entry[key]!r}")
        checked = {"step": int(entry["step"])}
        checked.update({k: float(entry[k]) for k in self.initial_scalars(hyper)})
        for key in self.state_arrays(hyper):
            if getattr(entry[key], "dtype", None) is None or entry[key].dtype.kind != "f":
                raise ValueError(f"{type(self).__name__}: state {key!r} of {name!r} is not a floating array")
            checked[key] = entry[key].copy()
        return checked

    def save(self, path):  # "state/<name>/<field>" entries, atomically, to path (".npz" appended if missing)
        return saving.write_npz(path, saving.optim_format(self), saving.optim_entries(self))

    def load(self, path):
        """Read a file written by ``save``; a corrupt or mismatched one raises ValueError naming it and
        changes nothing. The moments stay NumPy arrays until the next step moves them to the param's
        device and dtype (``_match_param``)."""
        path, state = saving.read_optim_state(path, self)
        try:
            self.set_state(state)
        except ValueError as error:
            raise ValueError(f"{path!r}: {error}") from None


def kept_only_if(only_if, arrays, update):
    """Run ``update()``, which changes ``arrays`` in place, then put their old values back unless
    ``only_if`` holds: x = where(only_if, x_updated, x_old), decided on the device, nothing read."""
    if array_module(only_if) is np:  # a host flag costs nothing to read: no copies to put back
        if bool(only_if):
            update()
        return
    saved = [(array, array.copy()) for array in arrays]
    update()
    for array, old in saved:
        xp = array_module(array)
        xp.copyto(array, old, where=xp.logical_not(only_if))  # not ~: ~True is -2, a true value


def _check_betas(hyper):
    beta1, beta2 = hyper["betas"]
    if not (0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0):
        raise ValueError(f"betas must lie in [0, 1), got {hyper['betas']}")
    if hyper["lr"] < 0 or hyper["eps"] < 0 or hyper["weight_decay"] < 0:
        raise ValueError("lr, eps and weight_decay must be >= 0")


class SGD(PyroOptim):
    """torch.optim.SGD: optional L2 weight decay, momentum with dampening, Nesterov.

    One step on (theta - 3)^2 / 2, whose gradient is theta - 3:

    >>> import numpy as np
    >>> theta = np.array([0.0])
    >>> SGD({"lr": 0.1}).step({"theta": theta}, {"theta": theta - 3.0})
    >>> theta  # 0 - 0.1 * (0 - 3), updated in place
    array([0.3])
    """

    defaults = {"lr": 1e-3, "momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False}

    def validate(self, hyper):
        if hyper["lr"] < 0 or hyper["momentum"] < 0 or hyper["weight_decay"] < 0:
            raise ValueError("lr, momentum and weight_decay must be >= 0")
        if hyper["nesterov"] and (hyper["momentum"] <= 0 or hyper["dampening"] != 0):
            raise ValueError("nesterov needs momentum > 0 and dampening = 0 (as in torch)")

    def state_arrays(self, hyper):
        return ("momentum_buffer",) if hyper["momentum"] != 0 else ()

    def update(self, param, grad, state, hyper):
        if hyper["weight_decay"] != 0:
            grad = grad + hyper["weight_decay"] * param  # g += wd * theta  (gradient of wd/2 |theta|^2)
        momentum = hyper["momentum"]
        if momentum != 0:
            buffer = state["momentum_buffer"]
            if state["step"] == 0:
                buffer[...] = grad  # b_1 = g_1 (torch starts the buffer at the first gradient)
            else:
                buffer *= momentum  # b_t = mu b_{t-1} + (1 - dampening) g_t
                buffer += (1.0 - hyper["dampening"]) * grad
            grad = grad + momentum * buffer if hyper["nesterov"] else buffer  # Nesterov: g + mu b_t
        state["step"] += 1
        param -= hyper["lr"] * grad  # theta_t = theta_{t-1} - lr * g


class Adam(PyroOptim):
    """torch.optim.Adam (L2 weight decay added to the gradient; amsgrad not supported).

    The first step on (theta - 3)^2 / 2 has m_hat = g and v_hat = g^2, so it moves
    theta by lr g / (|g| + eps): lr against the sign of g, whatever the gradient's size:

    >>> import numpy as np
    >>> theta = np.array([0.0])
    >>> adam = Adam({"lr": 0.1})
    >>> adam.step({"theta": theta}, {"theta": theta - 3.0})
    >>> theta, adam.state["theta"]["step"]
    (array([0.1]), 1)
    """

    defaults = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "amsgrad": False}

    def validate(self, hyper):
        if hyper["amsgrad"]:
            raise NotImplementedError("Adam(amsgrad=True) is not supported by minippl")
        _check_betas(hyper)

    def state_arrays(self, hyper):
        return ("exp_avg", "exp_avg_sq")

    clipped = False  # ClippedAdam's variant of the update below

    def update_all(self, work):
        adam_update_all(work, self.clipped)  # every param in one fused pass where a kernel takes them

    def update_all_if(self, work, only_if):
        adam_update_all(work, self.clipped, only_if)  # the GPU kernel reads the flag itself

    def update(self, param, grad, state, hyper):
        adam_update(param, grad, state, hyper, self.clipped)


@backend.fusable("adam_update_all")
def adam_update_all(work, clipped, only_if=None):
    """One Adam (or ClippedAdam) step of every (param, grad, state, hyper) in ``work``, in place;
    with ``only_if`` (a device flag), kept only if it holds (``PyroOptim.update_all_if``)."""
    def update():
        for param, grad, state, hyper in work:
            adam_update(param, grad, state, hyper, clipped)

    if only_if is None:
        update()
    else:
        kept_only_if(only_if, [a for p, _, s, _ in work for a in (p, s["exp_avg"], s["exp_avg_sq"])], update)


def advance_counters(state, hyper, clipped):
    """Count one more step and, for ClippedAdam, decay its lr (lr_t = lr lrd^t); return (step, lr) of this
    update. The fused Adam (kernels/registry.py) keeps its counters with this too."""
    state["step"] += 1
    if clipped:
        state["lr"] *= hyper["lrd"]
        return state["step"], state["lr"]
    return state["step"], hyper["lr"]


def adam_update(param, grad, state, hyper, clipped=False):
    """One step of torch's Adam, or of Pyro's ClippedAdam (``clipped``), on one param, in place."""
    xp = array_module(param)
    step, lr = advance_counters(state, hyper, clipped)
    beta1, beta2 = hyper["betas"]
    if clipped:
        grad = xp.clip(grad, -hyper["clip_norm"], hyper["clip_norm"])  # each element into [-clip, clip]
    if hyper["weight_decay"] != 0:
        grad = grad + hyper["weight_decay"] * param  # g += wd * theta (after clipping, as Pyro)
    exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
    # m_t = beta1 m_{t-1} + (1 - beta1) g ;  v_t = beta2 v_{t-1} + (1 - beta2) d^2, with d = g, or
    # d = g - m_t for ClippedAdam(centered_variance=True)
    exp_avg *= beta1
    exp_avg += grad * (1.0 - beta1)
    deviation = grad - exp_avg if clipped and hyper["centered_variance"] else grad
    exp_avg_sq *= beta2
    exp_avg_sq += deviation * deviation * (1.0 - beta2)
    bias_correction1, bias_correction2 = 1.0 - beta1**step, 1.0 - beta2**step
    if clipped:
        # ClippedAdam: theta -= lr_t sqrt(bc2) / bc1 * m / (sqrt(v) + eps)
        param -= exp_avg / (xp.sqrt(exp_avg_sq) + hyper["eps"]) * (lr * math.sqrt(bias_correction2) / bias_correction1)
    else:
        # Adam: theta -= lr m_hat / (sqrt(v_hat) + eps), m_hat = m / bc1, v_hat = v / bc2, in torch's
        # order: denom = sqrt(v) / sqrt(bc2) + eps; step = lr / bc1
        param -= exp_avg / (xp.sqrt(exp_avg_sq) / math.sqrt(bias_correction2) + hyper["eps"]) * (lr / bias_correction1)


class ClippedAdam(Adam):
    """Pyro's ClippedAdam: each gradient element clamped to [-clip_norm, clip_norm], then
    Adam with eps added to sqrt(v) before the bias correction is folded into the step size,
    and the learning rate multiplied by ``lrd`` at the start of every step (lr_t = lr lrd^t).
    ``centered_variance=True`` tracks the variance of g around m_t instead of g^2."""

    defaults = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0,
                "clip_norm": 10.0, "lrd": 1.0, "centered_variance": False}

    def validate(self, hyper):
        _check_betas(hyper)
        if hyper["clip_norm"] <= 0 or hyper["lrd"] <= 0:
            raise ValueError("clip_norm and lrd must be > 0")

    clipped = True

    def initial_scalars(self, hyper):
        return {"lr": float(hyper["lr"])}  # decays per param, so it is state (Pyro: group['lr'])

