"""Plates: conditional independence, broadcasting and subsampling.

Teaches: ``with plate("data", N):`` says the sites inside are independent along one batch dimension. The plate
(1) allocates that dimension (the rightmost free one, counting from -1, unless ``dim`` is given), (2) expands
each distribution's batch shape to ``size`` along it, (3) when it subsamples ``m`` of ``N`` items, scales their
log-probabilities by ``N / m`` so the ELBO estimate stays unbiased for the full data, and (4) reads a param
declared with ``event_dim`` at the subsampled items only. Builds on runtime.py (a plate is a Messenger).
"""
import contextlib
from collections import namedtuple

import numpy as np

from . import backend
from .runtime import Messenger, apply_stack, new_message, stack_is_empty

# What a site keeps of each plate around it: size is the (sub)sample size along dim, full_size the data's.
CondIndepStackFrame = namedtuple("CondIndepStackFrame", ["name", "dim", "size", "full_size"])

_USED_DIMS = {}  # dim -> name of the active plate that holds it


def _allocate_dim(name, dim):
    if name in _USED_DIMS.values():
        held = next(d for d, n in _USED_DIMS.items() if n == name)
        raise ValueError(f"plate '{name}' is entered inside itself (it already holds dim {held}): nested "
                         f"plates index different things, so give the inner one another name.")
    if dim is None:
        dim = -1
        while dim in _USED_DIMS:
            dim -= 1
    elif dim >= 0:
        raise ValueError(f"plate '{name}': dim must be negative (counted from the right), got {dim}")
    elif dim in _USED_DIMS:
        raise ValueError(f"plate '{name}' asks for dim {dim}, which the enclosing plate '{_USED_DIMS[dim]}' "
                         f"already uses: pass another dim, or dim=None to let minippl choose a free one.")
    _USED_DIMS[dim] = name
    return dim


class plate(Messenger):
    """A vectorised (or, iterated, a sequential) independence context. ``with plate("data", 100,
    subsample_size=10) as idx:`` gives the indices of the subsample (``np.arange(size)`` without one).

    >>> import minippl, numpy as np, minippl.distributions as dist
    >>> from minippl.handlers import trace
    >>> with trace() as tr, plate("data", 3):
    ...     x = minippl.sample("x", dist.Normal(0., 1.))
    >>> x.shape, tr.trace.nodes["x"]["cond_indep_stack"][0].dim
    ((3,), -1)
    """

    def __init__(self, name, size=None, subsample_size=None, dim=None, subsample=None):
        super().__init__()
        if subsample is not None:
            subsample = np.asarray(subsample)
            subsample_size = len(subsample)
            size = subsample_size if size is None else size
        if size is None:
            raise ValueError(f"plate '{name}' needs a size: plate('{name}', size)")
        if subsample_size is not None and not 0 < subsample_size <= size:
            raise ValueError(f"plate '{name}': subsample_size {subsample_size} must be in 1..{size}")
        self.name, self.size, self._fixed_subsample = name, int(size), subsample
        self.subsample_size = self.size if subsample_size is None else int(subsample_size)
        self.requested_dim, self.dim = dim, None  # self.dim: the dim it holds while active

    # ------------------------------------------------------------ subsample
    def _draw_indices(self):
        """The subsample, as a "plate" message so trace records it and replay reuses it."""
        if self._fixed_subsample is not None:
            draw = lambda rng: self._fixed_subsample  # noqa: E731
        elif self.subsample_size == self.size:
            draw = lambda rng: np.arange(self.size)  # noqa: E731
        else:
            draw = lambda rng: rng.permutation(self.size)[: self.subsample_size]  # noqa: E731
        if stack_is_empty():
            return draw(backend.global_rng())
        msg = new_message("plate", self.name, draw, args=(self.size, self.subsample_size), dim=self.dim)
        return apply_stack(msg)["value"]

    @property
    def scale(self):
        return self.size / self.subsample_size  # true division: 10 of 25 items stand for 2.5 items each

    # ------------------------------------------------------------ vectorised
    def __enter__(self):
        self.dim = _allocate_dim(self.name, self.requested_dim)
        try:
            self.indices = self._draw_indices()  # recorded with its dim: trace checks reuse
        except BaseException:
            del _USED_DIMS[self.dim]
            self.dim = None
            raise
        self.frame = CondIndepStackFrame(self.name, self.dim, self.subsample_size, self.size)
        super().__enter__()
        return self.indices

    def __exit__(self, *exc):
        del _USED_DIMS[self.dim]
        self.dim = None
        return super().__exit__(*exc)

    def process_message(self, msg):
        if msg["type"] == "sample":
            msg["cond_indep_stack"] = (self.frame,) + msg["cond_indep_stack"]
            msg["scale"] = self.scale * msg["scale"]
            msg["fn"] = _broadcast_to_plate(msg, self.frame)

    def postprocess_message(self, msg):
        # Pyro's rule for param(..., event_dim=k): the dims left of the last k line up with the plates, so a
        # subsampling plate reads a full-size param at the drawn items only (a recorded np.take: its backward
        # scatter-adds into the full param)
        if msg["type"] != "param" or msg.get("event_dim") is None:
            return
        dim, shape = self.dim - msg["event_dim"], backend.shape_of(msg["value"])
        if len(shape) < -dim or shape[dim] == 1:
            return
        if shape[dim] != self.size:
            raise ValueError(
                f"param '{msg['name']}' (event_dim={msg['event_dim']}) has shape {shape}: inside plate "
                f"'{self.name}' of size {self.size} at dim {self.dim}, its dim {dim} must have the plate's "
                f"full size {self.size} (or 1). Fix the param's initial shape, or its event_dim.")
        if self.subsample_size < self.size:
            msg["value"] = np.take(msg["value"], self.indices, axis=dim)

    # ------------------------------------------------------------ sequential
    def __iter__(self):
        """``for i in plate("data", N):`` runs the body once per index (no broadcasting)."""
        for i in self._draw_indices():
            with _sequential_plate(CondIndepStackFrame(self.name, None, 1, self.size), self.scale):
                yield int(i)


@contextlib.contextmanager
def plate_stack(prefix, sizes, rightmost_dim=-1):
    """Enter one plate per size (Pyro's ``pyro.plate_stack``), for a batch of shape ``sizes``. The plates are
    named from the right: ``{prefix}_0`` holds ``rightmost_dim`` with size ``sizes[-1]``, ``{prefix}_1`` the
    dim left of it, and so on.

    >>> import minippl, minippl.distributions as dist
    >>> with plate_stack("batch", (2, 3)):
    ...     minippl.sample("x", dist.Normal(0., 1.)).shape
    (2, 3)
    """
    sizes = tuple(sizes)
    if not (isinstance(rightmost_dim, int) and rightmost_dim < 0):
        raise ValueError(f"plate_stack '{prefix}': rightmost_dim must be a negative int, got {rightmost_dim!r}")
    with contextlib.ExitStack() as stack:
        for i, size in enumerate(reversed(sizes)):
            stack.enter_context(plate(f"{prefix}_{i}", size, dim=rightmost_dim - i))
        yield


class _sequential_plate(Messenger):
    def __init__(self, frame, scale):
        super().__init__()
        self.frame, self.scale = frame, scale

    def process_message(self, msg):
        if msg["type"] == "sample":
            msg["cond_indep_stack"] = (self.frame,) + msg["cond_indep_stack"]
            msg["scale"] = self.scale * msg["scale"]


def _broadcast_to_plate(msg, frame):
    """Expand the site's distribution so that its batch dim ``frame.dim`` has the plate's size."""
    fn = msg["fn"]
    batch_shape = list(fn.batch_shape)
    padded = len(batch_shape) < -frame.dim
    if padded:  # the plate's dim is left of the batch dims: it is added (even for a plate of size 1)
        batch_shape = [1] * (-frame.dim - len(batch_shape)) + batch_shape
    have = batch_shape[frame.dim]
    if have == frame.size and not padded:
        return fn
    if have != 1:
        raise ValueError(
            f"sample site '{msg['name']}': its distribution has batch shape {tuple(fn.batch_shape)}, "
            f"with size {have} at dim {frame.dim}, where plate '{frame.name}' of size {frame.size} sits. "
            f"If that dim belongs to one event (e.g. an image's pixels), declare it with .to_event(1); "
            f"if it indexes data, give the plate that size or move the plate to another dim.")
    batch_shape[frame.dim] = frame.size
    return fn.expand(tuple(batch_shape))
