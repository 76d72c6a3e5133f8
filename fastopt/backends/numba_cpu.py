"""The ``"numba"`` backend: fused, parallel CPU kernels compiled from fastopt._math.

One driver serves every rule: it walks a chunk table in parallel (``prange``) and, in
each chunk, applies the rule's per-element function to the param, grad and used state
slots, reaching each tensor through its address. The rule's structural flags, the
used slots and the dtype are closure constants, so each compiled variant has no
branches on them, and LLVM vectorises the element loop. Compiled code is cached on
disk (``cache=True``) so that a new process does not recompile.

Work below ``_tables.PARALLEL_MIN_ELEMENTS`` runs on one thread (the same compiled
kernel, launched with ``numba.set_num_threads(1)``): waking the pool costs more than
it saves there, and next to NumPy's BLAS threads, which spin after each matmul, a
two-thread launch on a small array can cost milliseconds. (A kernel compiled without
``parallel=True`` is no substitute: it loses the no-alias facts that let LLVM
vectorise the element loop, and runs 3-10x slower.)
"""

from types import SimpleNamespace

import numba
import numpy as np
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .. import _bn_math, _math
from .._rules import RULES
from . import _dispatch, _tables


@intrinsic
def _pointer(typingctx, address):
    """Reinterpret an int64 address as a ``void*`` (for ``numba.carray``)."""

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return types.voidptr(types.int64), codegen


@numba.njit(inline="always")
def _hyper_tuple(a):
    # HYPER_LEN scalars as an SSA tuple: no reloads from memory inside the loop.
    return (a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11])


assert _math.HYPER_LEN == 12

_update_element = _dispatch.rule_dispatcher(
    _math.element_functions(numba.njit(inline="always")), numba.extending.overload)


def _launch(kernel, n_elements, *args):
    """Run ``kernel(*args)`` on the thread pool, or on one thread for small work."""
    if _tables.parallel(n_elements):
        kernel(*args)
        return
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        kernel(*args)
    finally:
        numba.set_num_threads(threads)


def _make_optim_kernel(rule_id, flags, used, dtype):
    itemsize = np.dtype(dtype).itemsize
    G, S0, S1, S2 = _tables.GRAD, _tables.SLOT0, _tables.SLOT0 + 1, _tables.SLOT0 + 2

    @numba.njit(parallel=True, cache=True, nogil=True)
    def optim_kernel(addresses, chunks, hyper):
        h = _hyper_tuple(hyper)
        for c in numba.prange(chunks.shape[0]):
            t = chunks[c, 0]
            n = chunks[c, 2] - chunks[c, 1]
            offset = chunks[c, 1] * itemsize
            p = numba.carray(_pointer(addresses[t, 0] + offset), n, dtype)
            g = numba.carray(_pointer(addresses[t, G] + offset), n, dtype)
            s0 = numba.carray(_pointer(addresses[t, S0] + offset), n, dtype)
            s1 = numba.carray(_pointer(addresses[t, S1] + offset), n, dtype)
            s2 = numba.carray(_pointer(addresses[t, S2] + offset), n, dtype)
            for i in range(n):
                _update_element(rule_id, flags, used, p, g, s0, s1, s2, i, h)

    return optim_kernel


def _make_reduction_kernels(dtype):
    itemsize = np.dtype(dtype).itemsize

    @numba.njit(parallel=True, cache=True, nogil=True)
    def chunk_sums_of_squares(addresses, chunks, out):
        for c in numba.prange(chunks.shape[0]):
            n = chunks[c, 2] - chunks[c, 1]
            x = numba.carray(_pointer(addresses[chunks[c, 0], 0] + chunks[c, 1] * itemsize),
                             n, dtype)
            acc = 0.0
            for i in range(n):
                v = np.float64(x[i])
                acc += v * v
            out[c] = acc

    @numba.njit(parallel=True, cache=True, nogil=True)
    def chunk_finite(addresses, chunks, out):
        for c in numba.prange(chunks.shape[0]):
            n = chunks[c, 2] - chunks[c, 1]
            x = numba.carray(_pointer(addresses[chunks[c, 0], 0] + chunks[c, 1] * itemsize),
                             n, dtype)
            acc = dtype(0)
            for i in range(n):
                acc += x[i] - x[i]  # stays 0 for finite values, becomes NaN otherwise
            out[c] = acc == 0

    return chunk_sums_of_squares, chunk_finite


@numba.njit(fastmath=False, cache=True)
def _shifted(value, shift):
    """``float64(value) - shift``, compiled without fast-math flags: the callers may
    reorder their accumulations, but the shift is kept apart from them (a reassociated
    ``sum += x - k`` could become ``sum - k + x``, losing what the shift is for)."""
    return np.float64(value) - shift


# fastmath={"reassoc"} lets LLVM vectorise the float64 accumulation (several partial
# sums per row, combined in an order fixed by the compiled code): 2.5x faster than a
# scalar chain. It assumes nothing about NaN or Inf, the blocking depends on the shape
# only, so results do not depend on the thread count.
@numba.njit(parallel=True, cache=True, nogil=True, fastmath={"reassoc"})
def _bn_partial_sums(a, b, ka, kb, rows, cols, s1, s2):
    """Float64 partial sums per (row block, channel); each item has its own slot."""
    outer, channels, inner = a.shape
    n_col_blocks = (channels + cols - 1) // cols
    n_items = s1.shape[0] * n_col_blocks
    for item in numba.prange(n_items):
        rb = item // n_col_blocks
        c0 = (item % n_col_blocks) * cols
        c1 = min(c0 + cols, channels)
        for o in range(rb * rows, min(rb * rows + rows, outer)):
            for c in range(c0, c1):
                x = a[o, c]
                y = b[o, c]
                kac = ka[c]
                kbc = kb[c]
                sum1 = 0.0
                sum2 = 0.0
                for i in range(inner):
                    u = _shifted(x[i], kac)
                    sum1 += u
                    sum2 += u * _shifted(y[i], kbc)
                s1[rb, c] += sum1
                s2[rb, c] += sum2


@numba.njit(parallel=True, cache=True, nogil=True, fastmath={"reassoc"})
def _bn_partial_sums_rows(a, b, ka, kb, rows, s1, s2, same):
    """The (outer, C) case of :func:`_bn_partial_sums` (channels-last, or (N, C)): each
    row block adds its rows into its own row of partial sums, vectorised over C, four
    rows per pass (the sums are loaded and stored once per four rows). ``same``: ``b``
    is ``a`` and ``kb`` is ``ka`` (the forward pass), so ``b - kb`` is not recomputed."""
    outer, channels = a.shape
    for rb in numba.prange(s1.shape[0]):
        sum1 = s1[rb]
        sum2 = s2[rb]
        o = rb * rows
        o1 = min(o + rows, outer)
        while o + 4 <= o1:
            x0, x1, x2, x3 = a[o], a[o + 1], a[o + 2], a[o + 3]
            y0, y1, y2, y3 = b[o], b[o + 1], b[o + 2], b[o + 3]
            for c in range(channels):
                k = ka[c]
                u0, u1 = _shifted(x0[c], k), _shifted(x1[c], k)
                u2, u3 = _shifted(x2[c], k), _shifted(x3[c], k)
                v0, v1, v2, v3 = u0, u1, u2, u3
                if not same:
                    j = kb[c]
                    v0, v1 = _shifted(y0[c], j), _shifted(y1[c], j)
                    v2, v3 = _shifted(y2[c], j), _shifted(y3[c], j)
                sum1[c] += (u0 + u1) + (u2 + u3)
                sum2[c] += (u0 * v0 + u1 * v1) + (u2 * v2 + u3 * v3)
            o += 4
        for o in range(o, o1):
            x = a[o]
            y = b[o]
            for c in range(channels):
                u = _shifted(x[c], ka[c])
                sum1[c] += u
                sum2[c] += u * _shifted(y[c], kb[c])


@numba.njit(parallel=True, cache=True, nogil=True)
def _bn_scale_shift(a, p, r, out):
    """``out = a*p + r`` per channel of (outer, C, inner) arrays, in their dtype."""
    outer, channels, inner = a.shape
    if inner == 1:
        for o in numba.prange(outer):
            for c in range(channels):
                out[o, c, 0] = a[o, c, 0] * p[c] + r[c]
    else:
        for oc in numba.prange(outer * channels):
            o = oc // channels
            c = oc % channels
            x = a[o, c]
            y = out[o, c]
            pc, rc = p[c], r[c]
            for i in range(inner):
                y[i] = x[i] * pc + rc


@numba.njit(parallel=True, cache=True, nogil=True)
def _bn_affine(a, b, p, q, r, out):
    """``out = a*p + b*q + r`` per channel of (outer, C, inner) arrays, in their dtype."""
    outer, channels, inner = a.shape
    if inner == 1:
        for o in numba.prange(outer):
            for c in range(channels):
                out[o, c, 0] = (a[o, c, 0] * p[c] + b[o, c, 0] * q[c]) + r[c]
    else:
        for oc in numba.prange(outer * channels):
            o = oc // channels
            c = oc % channels
            x = a[o, c]
            z = b[o, c]
            y = out[o, c]
            pc, qc, rc = p[c], q[c], r[c]
            for i in range(inner):
                y[i] = (x[i] * pc + z[i] * qc) + rc


# Batch norm's per-channel maths compiled from the one NumPy source (one call per
# forward or backward instead of about a dozen small NumPy calls).
BN_MATH = SimpleNamespace(**{f.__name__: numba.njit(cache=True)(f)
                                   for f in _bn_math.FUNCTIONS})


class NumbaBackend:
    """Fused Numba CPU kernels; see the module docstring."""

    name = "numba"
    bn_math = BN_MATH

    def __init__(self):
        self._kernels = {}

    def _kernel(self, rule, flags, used, dtype):
        key = (rule.name, flags, used, np.dtype(dtype))
        kernel = self._kernels.get(key)
        if kernel is None:
            kernel = self._kernels[key] = _make_optim_kernel(
                _math.RULE_IDS[rule.name], flags, used, np.dtype(dtype).type)
        return kernel

    def optim_step(self, rule_name, tensors, grads, hyper):
        """Apply one step of rule ``rule_name`` to every tensor of ``tensors``."""
        parts = numba.get_num_threads() if _tables.parallel(tensors.total) else 1
        flags, addresses, chunks, packed = _tables.optim_launch(rule_name, tensors, grads,
                                                                hyper, parts)
        rule = RULES[rule_name]
        used = tuple(name is not None for name in rule.slots(flags))
        _launch(self._kernel(rule, flags, used, tensors.dtype), tensors.total,
                addresses, chunks, packed)

    def _reductions(self, dtype):
        key = ("reductions", np.dtype(dtype))
        kernels = self._kernels.get(key)
        if kernels is None:
            kernels = self._kernels[key] = _make_reduction_kernels(np.dtype(dtype).type)
        return kernels

    def _per_chunk(self, which, arrays, dtype):
        """One value per fixed chunk of same-dtype 1-D contiguous arrays, from
        reduction kernel ``which`` (0: sums of squares, 1: finiteness)."""
        addresses, chunks = _tables.read_tables(arrays)
        out = np.zeros(len(chunks), dtype=dtype)
        _launch(self._reductions(arrays[0].dtype)[which], sum(a.size for a in arrays),
                addresses, chunks, out)
        return out

    def chunk_sums_of_squares(self, arrays):
        """Float64 sums of squares of fixed chunks of same-dtype 1-D contiguous arrays."""
        return self._per_chunk(0, arrays, np.float64)

    def all_finite(self, arrays):
        """Whether every element of the same-dtype 1-D contiguous arrays is finite."""
        return bool(self._per_chunk(1, arrays, np.bool_).all())

    def bn_sums(self, a, b, ka, kb):
        """Per channel of (outer, C, inner) views: sum(a-ka), sum((a-ka)*(b-kb)) in
        float64, from partial sums over a fixed blocking added in block order."""
        rows, cols, s1, s2 = _tables.bn_partials(a.shape)
        if a.shape[2] == 1:
            outer, channels = a.shape[:2]
            same = a is b and ka is kb
            _launch(_bn_partial_sums_rows, a.size, a.reshape(outer, channels),
                    b.reshape(outer, channels), ka, kb, rows, s1, s2, same)
        else:
            _launch(_bn_partial_sums, a.size, a, b, ka, kb, rows, cols, s1, s2)
        return s1.sum(axis=0), s2.sum(axis=0)

    def bn_affine(self, a, b, p, q, r, out):
        """``out = a*P + b*Q + R`` per channel, in the dtype (``a*P + R`` when b is None)."""
        if b is None:
            _launch(_bn_scale_shift, a.size, a, p, r, out)
        else:
            _launch(_bn_affine, a.size, a, b, p, q, r, out)


BACKEND = NumbaBackend()
