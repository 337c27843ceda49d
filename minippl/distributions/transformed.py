"""TransformedDistribution: any base distribution pushed through any chain of transforms.

Teaches: LogNormal (lognormal.py) written once for all transforms. A draw is
``y = t_K(... t_1(x_0))`` with ``x_0`` the base's draw; the density is the change of variables
``log p(y) = log p_base(x_0) - sum_k log |det dx_k/dx_(k-1)|``, ``x_(k-1) = t_k^-1(x_k)``. The
log-density's VJP runs backwards through the inverses (each transform's ``inverse_vjp``), the
sampler's through the forwards (``vjp``), each step adding the log-determinant's own VJP.

Arguments. The base distribution's arguments keep their names (``loc``, ``scale`` of a Normal
base); argument ``p`` of the ``i``-th transform (counting the parts of a ComposeTransform one by
one) is ``"transforms.<i>.<p>"``, e.g. ``"transforms.0.scale"``. All of them are in
``arg_names`` and ``arg_arrays()`` (the very objects given), so the tape differentiates an
``AffineTransform(mu, tau)`` whose mu and tau are sampled values, as Pyro's eight schools does.
Builds on distribution.py and transforms.py.
"""
import numpy as np

from .. import backend, traced
from .distribution import Distribution, Independent, grad_like
from .transforms import ComposeTransform, check_transform


def _flatten(transforms):
    """The transforms as one flat list (a ComposeTransform's parts one by one), each checked to be a Transform."""
    transforms = list(transforms) if isinstance(transforms, (list, tuple)) else [transforms]
    flat = []
    for t in transforms:
        check_transform(t, "TransformedDistribution")
        flat.extend(_flatten(t.parts) if isinstance(t, ComposeTransform) else [t])
    return flat


class TransformedDistribution(Distribution):
    """``TransformedDistribution(base_distribution, transforms)``: Pyro's, one transform or a list.

    >>> from minippl.distributions import Normal, transforms
    >>> d = TransformedDistribution(Normal(0.0, 1.0), transforms.AffineTransform(1.0, 2.0))
    >>> d.arg_names
    ('loc', 'scale', 'transforms.0.loc', 'transforms.0.scale')
    >>> bool(np.allclose(d.log_prob(np.array(3.0)), Normal(1.0, 2.0).log_prob(np.array(3.0))))
    True
    """

    def __init__(self, base_distribution, transforms, validate_args=None):
        base = base_distribution
        transforms = _flatten(transforms)
        if isinstance(base, TransformedDistribution):  # one level: argument names stay unique
            base, transforms = base.base_dist, base.transforms + transforms
        self._args = dict(base.arg_arrays())
        held = dict(base.traced_args())
        plain = []
        for i, t in enumerate(transforms):
            if t.param_names:
                values = {}
                for p in t.param_names:
                    value = getattr(t, p)
                    if type(value) is traced.Traced:  # stored as its array, kept for traced_args
                        value.held_by = type(self).__name__
                        held[f"transforms.{i}.{p}"] = value
                        value = value.data
                    values[p] = self._args[f"transforms.{i}.{p}"] = value
                t = t.with_params(**values)
            plain.append(t)
        self.transforms = plain
        self.arg_names = tuple(self._args)
        object.__setattr__(self, "_traced_args", held)
        object.__setattr__(self, "_traced", {id(v.data): v for v in held.values()})
        # shapes as torch: the base shape pushed forward, the base expanded to what comes back
        event_dim = max([base.event_dim] + [t.event_dim for t in plain])
        shape = base.batch_shape + base.event_shape
        for t in plain:
            shape = t.forward_shape(shape)
        base_shape = shape
        for t in reversed(plain):
            base_shape = t.inverse_shape(base_shape)
        base_batch = base_shape[: len(base_shape) - base.event_dim]
        if base_batch != base.batch_shape:
            base = base.expand(base_batch)
        if event_dim > base.event_dim:
            base = Independent(base, event_dim - base.event_dim)
        self.base_dist = base
        split = len(shape) - event_dim
        self.has_rsample = base.has_rsample
        self.arg_constraints = dict(base.arg_constraints)
        self.support = plain[-1].codomain if plain else base.support
        super().__init__(shape[:split], shape[split:], validate_args=validate_args)

    def arg_arrays(self):
        return dict(self._args)

    def traced_args(self):
        return self.__dict__["_traced_args"]

    def expand(self, batch_shape):
        new = super().expand(batch_shape)
        base_shape = tuple(batch_shape) + self.event_shape
        for t in reversed(self.transforms):
            base_shape = t.inverse_shape(base_shape)
        base_batch = base_shape[: len(base_shape) - self.base_dist.event_dim]
        object.__setattr__(new, "base_dist", self.base_dist.expand(base_batch))
        return new

    def _extra(self, t):
        return self.event_dim - t.event_dim  # dims of a transform's log-det summed into one event

    # ---------------------------------------------------------------- sampling
    def _push(self, x):
        values = [x]
        for t in self.transforms:
            values.append(t.forward(values[-1]))
        return values

    def sample(self, sample_shape=(), rng=None):
        return self._push(self.base_dist.sample(sample_shape, rng))[-1]

    def rsample_with_noise(self, sample_shape=(), rng=None):
        x, noise = self.base_dist.rsample_with_noise(sample_shape, rng)
        return self._push(x)[-1], (noise, x)  # the base's noise, and its draw to push again

    def rsample_vjp(self, noise, grad_value, wrt):
        wrt = self._check_wrt(wrt, with_value=False)
        base_noise, x = noise
        values, grads, g = self._push(x), {}, grad_value
        for i in reversed(range(len(self.transforms))):
            t, a, b = self.transforms[i], values[i], values[i + 1]
            if any(f"transforms.{i}." in name for name in wrt):
                for p, gp in t.params_vjp(a, b, g).items():
                    grads[f"transforms.{i}.{p}"] = gp
            g = t.vjp(a, b, g)  # the chain rule back to the base's draw
        base_wrt = [n for n in wrt if n in self.base_dist.arg_names]
        grads.update(self.base_dist.rsample_vjp(base_noise, g, base_wrt) if base_wrt else {})
        return {n: grads[n] for n in wrt}

    # ---------------------------------------------------------------- log-density
    def _pull(self, value):
        """[x_0, ..., x_K = value] and each transform's log-det summed over the event."""
        values = [value]
        for t in reversed(self.transforms):
            values.insert(0, t.inverse(values[0]))
        log_dets = []
        for t, a, b in zip(self.transforms, values, values[1:]):
            term = t.log_abs_det_jacobian(a, b)
            log_dets.append(term.sum(axis=tuple(range(-self._extra(t), 0))) if self._extra(t) else term)
        return values, log_dets

    def log_prob(self, value):
        values, log_dets = self._pull(value)
        log_prob = self.base_dist.log_prob(values[0])
        for term in log_dets:
            log_prob = log_prob - term  # log p(y) = log p_base(x_0) - sum_k log |det J_k|
        return self._batch_result(log_prob, value)

    def log_prob_vjp(self, value, grad_log_prob, wrt):
        wrt = self._check_wrt(wrt)
        values, _ = self._pull(value)
        g = backend.array_module(grad_log_prob).asarray(grad_log_prob)
        base_wrt = ["value"] + [n for n in wrt if n in self.base_dist.arg_names]
        base_shape = np.shape(self.base_dist.log_prob(values[0]))
        grads = self.base_dist.log_prob_vjp(values[0], backend.sum_to_shape(g, base_shape), base_wrt)
        c = grads.pop("value")  # d log p / d x_0, carried forward to the value
        for i, (t, a, b) in enumerate(zip(self.transforms, values, values[1:])):
            # -log|det J_i|(x_(i-1)): its cotangent -g, broadcast back over the summed event dims
            log_det_shape = np.shape(t.log_abs_det_jacobian(a, b))
            g_det = backend.unsum_last(-g, self._extra(t), log_det_shape)
            c = c + t.log_abs_det_jacobian_vjp(a, b, g_det)
            names = [n for n in wrt if n.startswith(f"transforms.{i}.")]
            if names:  # the argument moves x_(i-1) = t^-1(x_i) and the log-det directly
                by_inverse, by_det = t.inverse_params_vjp(a, b, c), t.log_abs_det_jacobian_params_vjp(a, b, g_det)
                for p in t.param_names:
                    grads[f"transforms.{i}.{p}"] = by_inverse[p] + by_det[p]
            c = t.inverse_vjp(a, b, c)  # on through x_(i-1) = t^-1(x_i)
        grads["value"] = grad_like(c, value, copy=True)
        return {n: grads[n] for n in wrt}

    def __repr__(self):
        return f"TransformedDistribution({self.base_dist!r}, {self.transforms!r})"
