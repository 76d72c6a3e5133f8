"""Same-dtype parameters of one group, with their optimizer state, as flat views.

Every parameter is seen as a 1-D view in its memory order (C or Fortran), so that a
kernel can walk it with a single pointer; gradients are aligned to that order by
:func:`fastopt._validate.flat_grad`. State arrays live in one arena per state name,
so a whole group's state is a few large allocations rather than one per tensor.
"""

import numpy as np

from . import _device


def memory_order(array):
    """'C' or 'F': the order in which a contiguous array's elements lie in memory."""
    if not isinstance(array, np.ndarray):
        return _device.memory_order(array)
    return "C" if array.flags.c_contiguous else "F"


def flat_view(array):
    """A 1-D view of a contiguous (host or device) array in memory order (never a copy:
    ravel in an array's own memory order only views it; tests/test_backends.py checks)."""
    return array.ravel(order=memory_order(array))


class TensorSet:
    """The params of one group that share a dtype, and their state arenas.

    ``params`` holds 1-D memory-order views; ``states[name]`` a list of 1-D views into
    one arena per name, aligned with ``params``. ``cache`` is free for backends to keep
    per-set tables (addresses, chunk lists) in.
    """

    def __init__(self, params, indices, states):
        self.dtype = params[0].dtype
        self.shapes = [p.shape for p in params]
        self.orders = [memory_order(p) for p in params]
        self.indices = list(indices)  # positions in the owner's flat param list
        self.params = [flat_view(p) for p in params]
        sizes = [p.size for p in self.params]
        self.sizes = np.array(sizes, dtype=np.int64)
        self.total = sum(sizes)
        self.states = {name: [flat_view(s) for s in arrays] for name, arrays in states.items()}
        self.cache = {}

    @classmethod
    def with_arenas(cls, params, indices, state_names, fill=None):
        """A set whose state arrays are new views into one zeroed arena per name
        (or filled with ``fill[name]``)."""
        sizes = [p.size for p in params]
        offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
        states = {}
        for name in state_names:
            value = 0.0 if fill is None else fill.get(name, 0.0)
            full = np.full if isinstance(params[0], np.ndarray) else _device.full
            arena = full(int(offsets[-1]), value, dtype=params[0].dtype)
            states[name] = [arena[offsets[i]:offsets[i + 1]] for i in range(len(params))]
        return cls(params, indices, states)

    def shaped(self, flat, i):
        """State ``flat`` of tensor ``i`` seen with its param's shape and order."""
        return flat.reshape(self.shapes[i], order=self.orders[i])
