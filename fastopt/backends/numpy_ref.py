"""The ``"numpy"`` backend: each rule's NumPy reference (:mod:`fastopt.rules`) and
:mod:`fastopt.reference`'s batch norm, one tensor at a time."""

import numpy as np

from .. import quant
from . import _tables
from ._base import Backend


class NumpyBackend(Backend):
    """The plain NumPy reference behind the backend interface (slow, exact)."""

    name = "numpy"

    def _launcher(self, rule, tensors, flags, slots):
        """One tensor at a time through the rule's NumPy reference; 8-bit state is
        decoded to float32 for the step and coded again after it, block by block
        (:mod:`fastopt.quant`): the definition the compiled 8-bit kernels follow."""
        if tensors.bits == 8:
            def run(grads, hyper, values):
                packed = np.array(values, dtype=tensors.dtype)
                for i, (p, g) in enumerate(zip(tensors.params, grads)):
                    states = [None if name is None else quant.dequantize_blockwise(
                        tensors.states[name][i], tensors.absmax[name][i],
                        tensors.signed[name]) for name in slots]
                    rule.reference_step(p, g, states, hyper, packed)
                    for name, state in zip(slots, states):
                        if name is not None:
                            codes, absmax = quant.quantize_blockwise(state,
                                                                     tensors.signed[name])
                            tensors.states[name][i][...] = codes
                            tensors.absmax[name][i][...] = absmax
            return run

        def run(grads, hyper, values):
            packed = np.array(values, dtype=tensors.dtype)
            for i, (p, g) in enumerate(zip(tensors.params, grads)):
                states = [tensors.states[name][i] if name else None for name in slots]
                rule.reference_step(p, g, states, hyper, packed)
        return run

    def chunk_sums_of_squares(self, arrays):
        """Float64 sums of squares, one per array (the reference needs no chunking)."""
        return np.array([np.sum(np.square(a, dtype=np.float64)) for a in arrays])

    def all_finite(self, arrays):
        """Whether every element of every array is finite."""
        return all(bool(np.isfinite(a).all()) for a in arrays)

    bn_windows = staticmethod(_tables.one_window)  # NumPy makes its own passes anyway

    def bn_sums(self, a, b, ka, kb, window):
        """Per channel c0 <= c < c1 (``window``) of (outer, C, inner) views: sum(a-ka),
        sum((a-ka)*(b-kb)); ``ka``, ``kb`` and the results hold the window's channels."""
        channels = slice(*window)
        u = a[:, channels].astype(np.float64) - ka[None, :, None]
        v = b[:, channels].astype(np.float64) - kb[None, :, None]
        return u.sum(axis=(0, 2)), (u * v).sum(axis=(0, 2))

    def bn_affine(self, a, b, p, q, r, out, window):
        """``out = a*P + b*Q + R`` per channel of ``window`` (``(c0, c1)``; P, Q and R
        hold its channels), ``a*P + R`` when b is None."""
        channels = slice(*window)
        a = a[:, channels]
        result = a * p[None, :, None] + r[None, :, None] if b is None else \
            a * p[None, :, None] + b[:, channels] * q[None, :, None] + r[None, :, None]
        out[:, channels] = result


BACKEND = NumpyBackend()
