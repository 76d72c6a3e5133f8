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

    bits = 32  # 8: each state is uint8 codes with float32 absmax per block (with_codes)

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

    @classmethod
    def with_codes(cls, params, indices, states, fill=None):
        """A set with 8-bit state (:mod:`fastopt.quant`): for each ``(name, signed)`` of
        ``states``, one uint8 arena of codes (``states[name]``, views per tensor) and
        one float32 arena of absmax values, one per block of 256 elements of each
        tensor (``absmax[name]``). A state starts at ``fill[name]`` (0 by default):
        the code of 1.0 with absmax ``|fill|``, or the code of 0 with absmax 0."""
        from . import quant

        sizes = [p.size for p in params]
        offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
        block_offsets = np.concatenate([[0], np.cumsum([quant.blocks(n) for n in sizes],
                                                       dtype=np.int64)])
        codes, absmax, signs = {}, {}, {}
        full = np.full if isinstance(params[0], np.ndarray) else _device.full
        for name, signed in states:
            value = 0.0 if fill is None else float(fill.get(name, 0.0))
            if value < 0:
                raise ValueError(f"8-bit state {name!r} cannot start negative ({value})")
            code = quant.codebook(signed).size - 1 if value else quant.zero_code(signed)
            arena = full(int(offsets[-1]), code, dtype=np.uint8)
            scales = full(int(block_offsets[-1]), value, dtype=np.float32)
            codes[name] = [arena[offsets[i]:offsets[i + 1]] for i in range(len(params))]
            absmax[name] = [scales[block_offsets[i]:block_offsets[i + 1]]
                            for i in range(len(params))]
            signs[name] = signed
        tensors = cls(params, indices, codes)
        tensors.bits, tensors.absmax, tensors.signed = 8, absmax, signs
        return tensors

    def signs(self, slots):
        """Per state slot (``slots``: names, None where unused) of an 8-bit set,
        whether its codes use the signed codebook (True for an unused slot)."""
        return tuple(self.signed.get(name, True) for name in slots)

    def shaped(self, flat, i):
        """State ``flat`` of tensor ``i`` seen with its param's shape and order."""
        return flat.reshape(self.shapes[i], order=self.orders[i])
