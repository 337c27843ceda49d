"""OneHotCategorical: a Categorical whose values are one-hot vectors, an event of size K.

Teaches: a distribution built on another (every number is the Categorical's: the one-hot
value is turned into its class index, and the log-prob and its VJP are delegated), a
non-empty ``event_shape`` for a discrete variable, and a support that is a property of a
whole event (one 1, the rest 0). Builds on categorical.py.
"""
from .. import backend, validation
from ..backend import shape_of
from . import constraints
from .categorical import Categorical, check_class_param, class_param
from .distribution import Distribution


class _OneHot(constraints.Constraint):
    """Vectors along the last dim with one entry 1 and the others 0 (torch's ``one_hot``).

    ``check`` answers for each entry whether its whole vector is one-hot (broadcast back to
    the value's shape), so error messages can point at an entry like every other check.
    """

    spec = "one_hot"
    is_discrete = True
    event_dim = 1

    def check(self, value):
        xp = backend.array_module(value)
        x = xp.asarray(value)
        ok = ((x == 0) | (x == 1)).all(axis=-1, keepdims=True) & (x.sum(axis=-1, keepdims=True) == 1)
        return xp.broadcast_to(ok, x.shape)


one_hot = _OneHot()


class OneHotCategorical(Distribution):
    """OneHotCategorical(probs=None, logits=None): ``onehot(c)`` for c ~ Categorical(probs, logits).

    Same arguments as Categorical (the last dim indexes the K classes); the event shape is
    ``(K,)``. ``sample`` returns float one-hot vectors (dtype of the argument); ``log_prob``
    takes vectors of length K along the last dim (anything else raises), reads the class as the
    position of the 1, and is -inf at a vector that is not one-hot (with validation, an error).

    >>> import numpy as np
    >>> d = OneHotCategorical(probs=np.array([0.2, 0.3, 0.5]))
    >>> float(np.exp(d.log_prob(np.array([0.0, 0.0, 1.0]))))  # doctest: +ELLIPSIS
    0.5...
    >>> d.enumerate_support()
    array([[1., 0., 0.],
           [0., 1., 0.],
           [0., 0., 1.]])
    """

    has_rsample = False
    has_enumerate_support = True  # enumerate_support() below
    arg_constraints = Categorical.arg_constraints
    support = one_hot

    def __init__(self, probs=None, logits=None, validate_args=None):
        name, param = class_param("OneHotCategorical", probs, logits)
        self._param = param  # stored as passed: the ELBO finds gradients by id()
        self.arg_names = (name,)
        # the Categorical that does the work, on the stored (plain) array; checked below, under our name
        self._categorical = Categorical(**{name: self._param}, validate_args=False)
        super().__init__(shape_of(param)[:-1], shape_of(param)[-1:], validate_args=validate_args)

    def _check_args(self):
        check_class_param(self, self._categorical)

    def _validate_sample(self, value, what="value", masked=False):
        k = self.num_categories
        validation.check_support(self, value, one_hot, what, masked, hint=(
            f" Fix: a value is a one-hot vector of length K = {k} (one 1, the rest 0); for class indices c, "
            f"use Categorical, or np.eye({k})[c]."))

    def arg_arrays(self):
        return {self.arg_names[0]: self._param}

    @property
    def num_categories(self):
        return self._categorical.num_categories

    @property
    def probs(self):
        return self._categorical.probs

    @property
    def logits(self):
        return self._categorical.logits

    @property
    def mean(self):
        return backend.array_module(self._param).broadcast_to(self.probs, self.shape())

    @property
    def variance(self):
        p = self.probs
        return backend.array_module(self._param).broadcast_to(p * (1 - p), self.shape())

    def _categorical_here(self):
        """The Categorical with this distribution's (possibly expanded) batch shape."""
        c = self._categorical
        return c if c.batch_shape == self.batch_shape else c.expand(self.batch_shape)

    def sample(self, sample_shape=(), rng=None):
        xp = backend.array_module(self._param)
        index = self._categorical_here().sample(sample_shape, rng)
        return (index[..., None] == xp.arange(self.num_categories)).astype(self._param.dtype)

    def _index(self, value):
        """(xp, the class of each vector (the position of its largest entry), whether it is one-hot); a value
        that is no vector of length K (a class index, say) raises, as one not one-hot does when validating."""
        self._check_event_shape(value)
        if self._validate_args:
            self._validate_sample(value)
        xp = backend.array_module(value)
        x = xp.asarray(value)
        return xp, xp.argmax(x, axis=-1), one_hot.check(x)[..., 0]

    def log_prob(self, value):
        # log p(onehot(c)) = log p(c): the Categorical's log-prob at the class index; -inf off the support
        xp, index, is_one_hot = self._index(value)
        return self._batch_result(xp.where(is_one_hot, self._categorical_here().log_prob(index), -xp.inf), value)

    def log_prob_vjp(self, value, grad_log_prob, wrt):
        wrt = self._check_wrt(wrt)
        xp, index, is_one_hot = self._index(value)
        g = xp.where(is_one_hot, grad_log_prob, 0)  # no gradient where log p = -inf (the contract)
        grads = self._categorical_here().log_prob_vjp(index, g, [n for n in wrt if n != "value"])
        if "value" in wrt:  # a pmf is piecewise constant in the value: d/dx = 0
            grads["value"] = backend.array_module(self._param).zeros(shape_of(value), self._param.dtype)
        return grads

    def enumerate_support(self, expand=True):
        """The K one-hot vectors along a new leftmost dim: shape ``(K,) + batch_shape + (K,)`` if
        ``expand``, else ``(K,) + (1,) * len(batch_shape) + (K,)``."""
        xp, k = backend.array_module(self._param), self.num_categories
        values = xp.eye(k, dtype=self._param.dtype).reshape((k,) + (1,) * len(self.batch_shape) + (k,))
        return xp.broadcast_to(values, (k,) + self.batch_shape + (k,)) if expand else values

    def __repr__(self):
        name = self.arg_names[0]
        return f"OneHotCategorical({name}={shape_of(self._param)}, batch_shape={self.batch_shape})"
