"""The ``"numba"`` backend: fused, parallel CPU kernels compiled from fastopt.rules.

One driver serves every rule: it walks a chunk table in parallel (``prange``) and, in
each chunk, applies the rule's per-element function to the param, grad and used state
slots, reaching each tensor through its address. The rule's structural flags, the
used slots and the dtype are closure constants, so each compiled variant has no
branches on them, and LLVM vectorises the element loop. Compiled code is cached on
disk (``cache=CACHE``) so that a new process does not recompile.

Work below ``_tables.PARALLEL_MIN_ELEMENTS`` runs on one thread: waking the pool
costs more than it saves there, and next to NumPy's BLAS threads, which spin after
each matmul, a two-thread launch on a small array can cost milliseconds. Optimizer
steps and batch-norm passes run serial copies of their kernels there (the same
loops, compiled without ``parallel``, the same bits), which skip even the entry of a
one-thread parallel region; the other kernels run on the pool held to one thread. The
optimizer kernels take the thread count as an argument and set it inside: from
Python, the ``set_num_threads`` pair around a call costs 3-4 us more (measured on
a 200-element kernel: 5.0 us a call against 1.3 us), the whole cost of a small step.
(A serial kernel must be compiled with ``error_model="numpy"`` to vectorise: with
Python's error model each float division checks for a zero divisor and the loop gets
an early exit.)
"""

import contextlib
import threading
from types import FunctionType, SimpleNamespace

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .. import _bn_math, _bn_passes, quant
from ..rules import source_stamp
from ..rules._elements import element_functions
from ..rules._spec import HYPER_LEN
from . import _bitcast, _dispatch, _tables
from ._base import Backend
from ._numba_cache import disk_cache

# Start Numba's threading layer before anything is compiled or loaded. Its start
# registers the symbols that parallel kernels link against; a function loaded from the
# disk cache that calls a parallel kernel (the batch-norm passes below do) does not
# start it, and without those symbols loading one can crash the process (numba issues
# #4807 and #8578; docs/design.md).
numba.get_num_threads()

# Numba's workqueue threading layer (its fallback where neither TBB nor OpenMP loads,
# or chosen with NUMBA_THREADING_LAYER) aborts the process when two threads launch
# parallel kernels at once; there, fastopt's launches take turns.
_LAUNCH_LOCK = threading.Lock() if numba.threading_layer() == "workqueue" \
    else contextlib.nullcontext()
CACHE = disk_cache()  # cache=True, unless no place to cache is writable


@intrinsic
def _pointer(typingctx, address):
    """Reinterpret an int64 address as a ``void*`` (for ``numba.carray``)."""

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return types.voidptr(types.int64), codegen


# The calling thread's share of Numba's pool, read and set inside a kernel. These call
# the threading layer's own ``get_num_threads``/``set_num_threads`` by symbol, as
# Numba's parallel loops do: ``numba.set_num_threads`` compiled into a kernel would
# reach them through a ctypes pointer, which keeps the kernel out of the disk cache.
@intrinsic
def _thread_count(typingctx):
    def codegen(context, builder, signature, args):
        # Declared as Numba's parallel loops declare it (same module, same type); the C
        # function returns an int, so only its low 32 bits are kept.
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(cgutils.intp_t, []), "get_num_threads")
        return builder.sext(builder.trunc(builder.call(fn, []), ir.IntType(32)),
                            cgutils.intp_t)

    return types.intp(), codegen


@intrinsic
def _set_thread_count(typingctx, count):
    def codegen(context, builder, signature, args):
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [ir.IntType(32)]),
            "set_num_threads")
        builder.call(fn, [builder.trunc(args[0], ir.IntType(32))])
        return context.get_dummy_value()

    return types.void(types.intp), codegen


@numba.njit(inline="always")
def _hyper_of(a, dtype):
    # HYPER_LEN scalars (an array of the kernel's dtype, or a tuple of float64) in the
    # kernel's dtype as an SSA tuple: no reloads from memory inside the loop, and each
    # float64 rounds once, as NumPy's cast does (the dtype's own values stay as they are).
    return (dtype(a[0]), dtype(a[1]), dtype(a[2]), dtype(a[3]), dtype(a[4]), dtype(a[5]),
            dtype(a[6]), dtype(a[7]), dtype(a[8]), dtype(a[9]), dtype(a[10]), dtype(a[11]),
            dtype(a[12]), dtype(a[13]), dtype(a[14]), dtype(a[15]), dtype(a[16]),
            dtype(a[17]), dtype(a[18]), dtype(a[19]))


assert HYPER_LEN == 20

_ELEMENTS = element_functions(numba.njit(inline="always"))
_update_element = _dispatch.rule_dispatcher(tuple(update for update, _ in _ELEMENTS), 9,
                                            numba.extending.overload)
_step_element = _dispatch.rule_dispatcher(tuple(step for _, step in _ELEMENTS), 7,
                                          numba.extending.overload)


@numba.njit(inline="always")
def _take_threads(count):
    """Give the calling thread ``count`` of the pool's threads (0: leave it as it is);
    returns what it had, for ``_set_thread_count`` to restore."""
    outer = _thread_count()
    if count > 0:
        _set_thread_count(count)
    return outer


@numba.njit(cache=CACHE, nogil=True)
def _swap_thread_count(count):
    """:func:`_take_threads` as one compiled call from Python (``numba.set_num_threads``
    and ``get_num_threads`` from Python cost about 1 us each, with their checks)."""
    return _take_threads(count)


def _launch(kernel, n_elements, *args):
    """``kernel(*args)`` on the thread pool, or on one thread for small work (the
    kernels other than the optimizer's, which set their thread count themselves)."""
    with _LAUNCH_LOCK:
        if _tables.parallel(n_elements):
            return kernel(*args)
        outer = _swap_thread_count(1)
        try:
            return kernel(*args)
        finally:
            _swap_thread_count(outer)


def _make_optim_kernel(rule_id, flags, used, dtype, stamp):
    """The kernel of one rule variant. ``stamp`` (:func:`fastopt.rules.source_stamp`)
    is closed over so that the disk cache's key changes with the rule's source."""
    itemsize = np.dtype(dtype).itemsize
    G, S0, S1, S2 = _tables.GRAD, _tables.SLOT0, _tables.SLOT0 + 1, _tables.SLOT0 + 2

    @numba.njit(parallel=True, cache=CACHE, nogil=True)
    def optim_kernel(addresses, chunks, hyper, threads):
        """One step over the chunk table, on ``threads`` threads (0: as many as the
        calling thread has)."""
        if stamp < 0:  # never: the stamp only keys the cache
            return
        outer = _take_threads(threads)
        h = _hyper_of(hyper, dtype)
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
        _set_thread_count(outer)

    return optim_kernel


# Tensors per call of a serial kernel: its grads come as a tuple of this many arrays
# (Numba unboxes one in about 0.1 us, where reading an address in Python takes 0.5 us),
# padded with empty ones. A fixed length keeps one compiled kernel per variant; a set of
# one tensor (a functional or adapter call on one array) has a kernel of its own that
# takes a 1-tuple, which saves unboxing the three empty grads (0.18 us of a 6 us call).
SERIAL_GRADS = 4


def _make_serial_kernel(rule_id, flags, used, dtype, stamp, arity=SERIAL_GRADS):
    """The kernel of one rule variant for small work (below
    ``_tables.PARALLEL_MIN_ELEMENTS``), on the calling thread, without the thread
    pool's launch (about 1 us of a 10-element step): row ``t`` of ``addresses`` holds
    tensor ``t``'s param and state addresses, and ``grads[t]`` (``arity`` of them) its
    gradient, whose size is the tensor's (an empty grad: no tensor); ``values`` are the
    step's scalars as a tuple of float64 (Numba unboxes it in half the time NumPy makes
    an array).
    Compiled with ``error_model="numpy"``, as the parallel loop's body is: with
    Python's error model every division checks for zero and raises, and the loop does
    not vectorise (2x slower at 1000 elements)."""
    nb_dtype = numba.from_dtype(np.dtype(dtype))
    signature = types.void(types.Array(types.int64, 2, "C"),
                           types.UniTuple(types.Array(nb_dtype, 1, "C"), arity),
                           types.UniTuple(types.float64, HYPER_LEN))
    S0, S1, S2 = _tables.SLOT0, _tables.SLOT0 + 1, _tables.SLOT0 + 2

    @numba.njit(signature, cache=CACHE, nogil=True, error_model="numpy")
    def serial_kernel(addresses, grads, values):
        if stamp < 0:  # never: the stamp only keys the cache
            return
        h = _hyper_of(values, dtype)
        for t in range(arity):
            g = grads[t]
            n = g.size
            p = numba.carray(_pointer(addresses[t, 0]), n, dtype)
            s0 = numba.carray(_pointer(addresses[t, S0]), n, dtype)
            s1 = numba.carray(_pointer(addresses[t, S1]), n, dtype)
            s2 = numba.carray(_pointer(addresses[t, S2]), n, dtype)
            for i in range(n):
                _update_element(rule_id, flags, used, p, g, s0, s1, s2, i, h)

    return serial_kernel


_float_bits, _bits_float = _bitcast.bit_casts(intrinsic)
_encoder = quant.encoder(numba.njit(inline="always"), _float_bits)
_bucket_index, _code_from_entry = _encoder.bucket_index, _encoder.code_from_entry


@numba.njit(inline="always")
def _absmax(values, n):
    """max |values[:n]| (float32), NaN if one is NaN: the largest of the magnitudes'
    bits, an integer maximum that vectorises (a NaN's bits exceed Inf's; int32, as in
    the encoder, for 32-bit lanes)."""
    top = np.int32(0)
    for j in range(n):
        top = max(top, np.int32(_float_bits(values[j]) & 0x7FFFFFFF))
    return _bits_float(top)


# The codebooks and encoder tables, as module constants: Numba freezes them into the
# kernels, where, unlike arrays passed in, they cannot alias the arrays written, so
# that the loops that read them vectorise (with gathers).
_SIGNED_MAP, _UNSIGNED_MAP = quant.SIGNED_MAP, quant.UNSIGNED_MAP
_SIGNED_BUCKETS, _UNSIGNED_BUCKETS = quant.encoder_tables(True), quant.encoder_tables(False)


@numba.njit(inline="always")
def _dequantize(codes, signed, absmax, buffer, out, n):
    """``out[:n]``: the values of ``codes[:n]`` in a block of ``absmax``."""
    # The gathers' indices come from a local copy: read through a pointer made from an
    # address, they keep LLVM from vectorising the loop.
    buffer[:n] = codes[:n]
    table = _SIGNED_MAP if signed else _UNSIGNED_MAP
    for j in range(n):
        out[j] = table[buffer[j]] * absmax


@numba.njit(inline="always")
def _requantize(values, n, codes, signed, buffer, quotients, entries):
    """Code ``values[:n]`` into ``codes`` with their new absmax, which it returns
    (``buffer``, ``quotients`` and ``entries``: scratch of n uint8, float32, int32).

    :func:`fastopt.quant.encode_value` in three loops: the table reads, in a loop of
    their own, leave the two others free of gathers, so that those vectorise on every
    CPU (LLVM writes a loop with a gather as scalar code where gathers are slow, as on
    AMD Zen 3, where the one loop made coding and the absmax of two states
    5.5 ns an element against these loops' 3.1)."""
    top = _absmax(values, n)
    buckets = _SIGNED_BUCKETS if signed else _UNSIGNED_BUCKETS
    for j in range(n):
        a = abs(values[j]) / top
        quotients[j] = a
        entries[j] = _bucket_index(a, buckets.shape[0])
    for j in range(n):
        entries[j] = buckets[entries[j]]
    for j in range(n):
        buffer[j] = _code_from_entry(values[j], top, quotients[j], entries[j], signed)
    codes[:n] = buffer[:n]
    return top


def _make_optim8_kernel(rule_id, flags, used, signed, stamp):
    """The kernel of one rule variant over float32 params with 8-bit state
    (:mod:`fastopt.quant`), one block of 256 elements at a time: each used state slot
    is decoded with the block's old absmax into a float32 buffer, the float32 kernel's
    element step runs on the buffers (the param update sees the new, unquantized
    state), and the buffers are coded again with the block's new absmax. Each of these
    loops vectorises. Chunks are whole blocks, so each block belongs to one thread.
    ``signed``: per slot, whether its state uses the signed codebook (a compile-time
    constant)."""
    G, S, A, block = _tables.GRAD, _tables.SLOT0, _tables.ABSMAX0, quant.BLOCK_SIZE

    @numba.njit(inline="always")  # into the parallel loop, whose no-alias facts it needs
    def chunk_step(addresses, t, start, n, h):
        blocks = (n + block - 1) // block
        p = numba.carray(_pointer(addresses[t, 0] + start * 4), n, np.float32)
        g = numba.carray(_pointer(addresses[t, G] + start * 4), n, np.float32)
        q0 = numba.carray(_pointer(addresses[t, S] + start), n, np.uint8)
        q1 = numba.carray(_pointer(addresses[t, S + 1] + start), n, np.uint8)
        q2 = numba.carray(_pointer(addresses[t, S + 2] + start), n, np.uint8)
        first_block = start // block * 4
        m0 = numba.carray(_pointer(addresses[t, A] + first_block), blocks, np.float32)
        m1 = numba.carray(_pointer(addresses[t, A + 1] + first_block), blocks, np.float32)
        m2 = numba.carray(_pointer(addresses[t, A + 2] + first_block), blocks, np.float32)
        d0 = np.empty(block, np.float32)  # the block's decoded states
        d1 = np.empty(block, np.float32)
        d2 = np.empty(block, np.float32)
        buffer = np.empty(block, np.uint8)  # codes, and the encoder's scratch
        quotients = np.empty(block, np.float32)
        entries = np.empty(block, np.int32)
        for b in range(blocks):
            lo = b * block
            m = min(block, n - lo)
            if used[0]:
                _dequantize(q0[lo:], signed[0], m0[b], buffer, d0, m)
            if used[1]:
                _dequantize(q1[lo:], signed[1], m1[b], buffer, d1, m)
            if used[2]:
                _dequantize(q2[lo:], signed[2], m2[b], buffer, d2, m)
            pb = p[lo:]
            gb = g[lo:]
            for j in range(m):
                _update_element(rule_id, flags, used, pb, gb, d0, d1, d2, j, h)
            if used[0]:
                m0[b] = _requantize(d0, m, q0[lo:], signed[0], buffer, quotients,
                                     entries)
            if used[1]:
                m1[b] = _requantize(d1, m, q1[lo:], signed[1], buffer, quotients,
                                     entries)
            if used[2]:
                m2[b] = _requantize(d2, m, q2[lo:], signed[2], buffer, quotients,
                                     entries)

    @numba.njit(parallel=True, cache=CACHE, nogil=True)
    def optim8_kernel(addresses, chunks, hyper, threads):
        if stamp < 0:  # never: the stamp only keys the cache
            return
        outer = _take_threads(threads)
        h = _hyper_of(hyper, np.float32)
        for c in numba.prange(chunks.shape[0]):
            chunk_step(addresses, chunks[c, 0], chunks[c, 1], chunks[c, 2] - chunks[c, 1], h)
        _set_thread_count(outer)

    return optim8_kernel


def _make_reduction_kernels(dtype):
    itemsize = np.dtype(dtype).itemsize

    @numba.njit(parallel=True, cache=CACHE, nogil=True)
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

    @numba.njit(parallel=True, cache=CACHE, nogil=True)
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


_bn_totals = numba.njit(cache=CACHE, nogil=True)(_tables.bn_totals)


@numba.njit(fastmath=False, cache=CACHE)
def _shifted(value, shift):
    """``float64(value) - shift``, compiled without fast-math flags: the callers may
    reorder their accumulations, but the shift is kept apart from them (a reassociated
    ``sum += x - k`` could become ``sum - k + x``, losing what the shift is for)."""
    return np.float64(value) - shift


# fastmath={"reassoc"} lets LLVM vectorise the float64 accumulation (several partial
# sums per row, combined in an order fixed by the compiled code): 2.5x faster than a
# scalar chain. It assumes nothing about NaN or Inf, the blocking depends on the shape
# only, so results do not depend on the thread count.
@numba.njit(parallel=True, cache=CACHE, nogil=True, fastmath={"reassoc"})
def _bn_partial_sums(a, b, ka, kb, rows, cols, c0, s1, s2, same):
    """Float64 partial sums per (row block, channel) of the channels ``c0 <= c <
    c0 + s1.shape[1]``; each item has its own slot, to which its rows add in order.
    ``same``: ``b`` is ``a`` and ``kb`` is ``ka`` (the forward pass), so ``b - kb`` is
    not recomputed. Rows go two at a time, each with its own sums: two memory streams
    and twice the independent adds make the forward pass 20-25% faster."""
    outer, channels, inner = a.shape
    width = s1.shape[1]
    n_col_blocks = (width + cols - 1) // cols
    n_items = s1.shape[0] * n_col_blocks
    for item in numba.prange(n_items):
        rb = item // n_col_blocks
        w0 = (item % n_col_blocks) * cols
        w1 = min(w0 + cols, width)
        o = rb * rows
        o1 = min(o + rows, outer)
        while o + 2 <= o1:
            for w in range(w0, w1):
                x0, x1 = a[o, c0 + w], a[o + 1, c0 + w]
                y0, y1 = b[o, c0 + w], b[o + 1, c0 + w]
                kac = ka[w]
                kbc = kb[w]
                first1 = 0.0
                first2 = 0.0
                second1 = 0.0
                second2 = 0.0
                for i in range(inner):
                    u = _shifted(x0[i], kac)
                    v = _shifted(x1[i], kac)
                    first1 += u
                    first2 += u * (u if same else _shifted(y0[i], kbc))
                    second1 += v
                    second2 += v * (v if same else _shifted(y1[i], kbc))
                s1[rb, w] += first1
                s2[rb, w] += first2
                s1[rb, w] += second1
                s2[rb, w] += second2
            o += 2
        for row in range(o, o1):  # an odd last row
            for w in range(w0, w1):
                x = a[row, c0 + w]
                y = b[row, c0 + w]
                kac = ka[w]
                kbc = kb[w]
                sum1 = 0.0
                sum2 = 0.0
                for i in range(inner):
                    u = _shifted(x[i], kac)
                    sum1 += u
                    sum2 += u * (u if same else _shifted(y[i], kbc))
                s1[rb, w] += sum1
                s2[rb, w] += sum2


@numba.njit(parallel=True, cache=CACHE, nogil=True, fastmath={"reassoc"})
def _bn_partial_sums_rows(a, b, ka, kb, rows, c0, s1, s2, same):
    """The (outer, C) case of :func:`_bn_partial_sums` (channels-last, or (N, C)): each
    row block adds its rows into its own row of partial sums, vectorised over C, four
    rows per pass (the sums are loaded and stored once per four rows)."""
    outer = a.shape[0]
    width = s1.shape[1]
    for rb in numba.prange(s1.shape[0]):
        sum1 = s1[rb]
        sum2 = s2[rb]
        o = rb * rows
        o1 = min(o + rows, outer)
        while o + 4 <= o1:
            x0, x1 = a[o, c0:c0 + width], a[o + 1, c0:c0 + width]
            x2, x3 = a[o + 2, c0:c0 + width], a[o + 3, c0:c0 + width]
            y0, y1 = b[o, c0:c0 + width], b[o + 1, c0:c0 + width]
            y2, y3 = b[o + 2, c0:c0 + width], b[o + 3, c0:c0 + width]
            for c in range(width):
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
        for row in range(o, o1):  # the last rows, fewer than four
            x = a[row, c0:c0 + width]
            y = b[row, c0:c0 + width]
            for c in range(width):
                u = _shifted(x[c], ka[c])
                sum1[c] += u
                sum2[c] += u * _shifted(y[c], kb[c])


_bn_blocks = numba.njit(cache=CACHE)(_tables.bn_blocks)


@numba.njit(cache=CACHE, nogil=True)
def _bn_window_sums(a, b, ka, kb, c0, c1):
    """The per-channel totals ``(s1, s2)`` of the window ``c0 <= c < c1``: partial sums
    over :func:`fastopt.backends._tables.bn_blocks`' blocking, added in block order.
    Compiled, so that a call pays one dispatch rather than three (the partials'
    allocation, the parallel kernel, the totals). ``b`` and ``kb`` being ``a`` and
    ``ka`` (the forward pass) is read from their addresses: a ``same`` argument would
    be a compile-time constant in the compiled passes, and Numba would compile every
    kernel below twice, once for each value."""
    same = a.ctypes.data == b.ctypes.data and ka.ctypes.data == kb.ctypes.data
    outer, channels, inner = a.shape
    rows, cols = _bn_blocks(outer, channels, inner)
    partials = np.zeros((2, (outer + rows - 1) // rows, c1 - c0))
    s1, s2 = partials[0], partials[1]
    if inner == 1:
        _bn_partial_sums_rows(a.reshape(outer, channels), b.reshape(outer, channels), ka,
                              kb, rows, c0, s1, s2, same)
    else:
        _bn_partial_sums(a, b, ka, kb, rows, cols, c0, s1, s2, same)
    return _bn_totals(s1, s2)


@numba.njit(parallel=True, cache=CACHE, nogil=True)
def _bn_scale_shift(a, p, r, out, c0):
    """``out = a*p + r`` per channel ``c0 <= c < c0 + len(p)`` of (outer, C, inner)
    arrays, in their dtype."""
    outer, channels, inner = a.shape
    width = p.shape[0]
    if inner == 1:
        a2, out2 = a.reshape(outer, channels), out.reshape(outer, channels)
        for o in numba.prange(outer):
            x = a2[o, c0:c0 + width]  # contiguous rows: LLVM vectorises over c
            y = out2[o, c0:c0 + width]
            for c in range(width):
                y[c] = x[c] * p[c] + r[c]
    else:
        for ow in numba.prange(outer * width):
            o = ow // width
            w = ow % width
            x = a[o, c0 + w]
            y = out[o, c0 + w]
            pw, rw = p[w], r[w]
            for i in range(inner):
                y[i] = x[i] * pw + rw


@numba.njit(parallel=True, cache=CACHE, nogil=True)
def _bn_affine(a, b, p, q, r, out, c0):
    """``out = a*p + b*q + r`` per channel ``c0 <= c < c0 + len(p)`` of (outer, C,
    inner) arrays, in their dtype."""
    outer, channels, inner = a.shape
    width = p.shape[0]
    if inner == 1:
        a2, b2 = a.reshape(outer, channels), b.reshape(outer, channels)
        out2 = out.reshape(outer, channels)
        for o in numba.prange(outer):
            x, z, y = a2[o, c0:c0 + width], b2[o, c0:c0 + width], out2[o, c0:c0 + width]
            for c in range(width):
                y[c] = (x[c] * p[c] + z[c] * q[c]) + r[c]
    else:
        for ow in numba.prange(outer * width):
            o = ow // width
            w = ow % width
            x = a[o, c0 + w]
            z = b[o, c0 + w]
            y = out[o, c0 + w]
            pw, qw, rw = p[w], q[w], r[w]
            for i in range(inner):
                y[i] = (x[i] * pw + z[i] * qw) + rw


def _serial_copy(kernel, namespace):
    """``kernel`` (a batch-norm kernel above) compiled again without ``parallel``: its
    ``prange`` loops run in order on the calling thread, each item into its own slot
    as before, so it gives the same bits. Entering a parallel region costs about 1 us
    even on one thread, twice per pass, a quarter of a small pass's time. It calls the
    kernels of ``namespace`` (the other serial copies), and has a name of its own,
    which keeps its own disk-cache entry: Numba's cache keys a function by its
    qualified name and line, not by its options or globals."""
    py = kernel.py_func
    copy = FunctionType(py.__code__, namespace, py.__name__ + "_serial")
    copy.__qualname__ = copy.__name__
    copy.__doc__ = py.__doc__
    return numba.njit(cache=CACHE, nogil=True,
                      fastmath=kernel.targetoptions.get("fastmath", False))(copy)


_SERIAL_BN = dict(globals())  # the serial copies' globals: these, and the serial kernels
for _name in ("_bn_partial_sums", "_bn_partial_sums_rows", "_bn_window_sums",
              "_bn_scale_shift", "_bn_affine"):
    _SERIAL_BN[_name] = _serial_copy(globals()[_name], _SERIAL_BN)
del _name


# Batch norm's per-channel maths compiled from the one NumPy source (one call per
# forward or backward instead of about a dozen small NumPy calls).
BN_MATH = SimpleNamespace(**{f.__name__: numba.njit(cache=CACHE)(f)
                                   for f in _bn_math.FUNCTIONS})

# A window's forward and backward passes (fastopt._bn_passes) compiled around the
# kernels above, and around their serial copies for small work: one call per window.
_BN_FORWARD, _BN_BACKWARD = _bn_passes.window_passes(
    BN_MATH, _bn_window_sums, _bn_scale_shift, _bn_affine, numba.njit(cache=CACHE, nogil=True))
_BN_FORWARD_SERIAL, _BN_BACKWARD_SERIAL = _bn_passes.window_passes(
    BN_MATH, _SERIAL_BN["_bn_window_sums"], _SERIAL_BN["_bn_scale_shift"],
    _SERIAL_BN["_bn_affine"], numba.njit(cache=CACHE, nogil=True), suffix="_serial")


def _window_pass(compiled, serial):
    """``compiled(a, ..., c0, c1)`` on the thread pool, or ``serial`` (the same pass,
    the same bits) on the calling thread for small work, sized by its window."""

    def run(a, *args):
        n = a.shape[0] * a.shape[2] * (args[-1] - args[-2])
        if _tables.parallel(n):
            return _launch(compiled, n, a, *args)
        return serial(a, *args)

    return run


class NumbaBackend(Backend):
    """Fused Numba CPU kernels; see the module docstring."""

    name = "numba"
    single_call = True
    bn_math = BN_MATH
    bn_passes = (_window_pass(_BN_FORWARD, _BN_FORWARD_SERIAL),
                 _window_pass(_BN_BACKWARD, _BN_BACKWARD_SERIAL))

    def __init__(self):
        self._kernels = {}

    def _kernel(self, rule, flags, used, dtype, signed=None, serial=0):
        """The compiled kernel of a rule variant; ``signed`` (per slot, the codebook)
        for 8-bit state, whose kernels take float32 params only; ``serial``: the arity
        of the small-work kernel (:func:`_make_serial_kernel`), 0 for the threaded one."""
        key = (rule.name, flags, used, np.dtype(dtype), signed, serial)
        kernel = self._kernels.get(key)
        if kernel is None:
            stamp = source_stamp(rule) if signed is None else source_stamp(rule, quant)
            if signed is not None:
                kernel = _make_optim8_kernel(rule.id, flags, used, signed, stamp)
            elif serial:
                kernel = _make_serial_kernel(rule.id, flags, used, np.dtype(dtype).type, stamp,
                                             serial)
            else:
                kernel = _make_optim_kernel(rule.id, flags, used, np.dtype(dtype).type, stamp)
            self._kernels[key] = kernel
        return kernel

    def _launcher(self, rule, tensors, flags, slots):
        used = tuple(name is not None for name in slots)
        signed = tensors.signs(slots) if tensors.bits == 8 else None
        dtype = tensors.dtype
        kernel = self._kernel(rule, flags, used, dtype, signed)
        if _tables.parallel(tensors.total):
            def run(grads, hyper, values):
                # chunks balanced over the threads the calling thread has now
                addresses, chunks = _tables.optim_tables(tensors, slots,
                                                         numba.get_num_threads())
                with _LAUNCH_LOCK:
                    kernel(_tables.with_grads(addresses, grads), chunks,
                           np.array(values, dtype=dtype), 0)
            return run
        addresses, chunks = _tables.optim_tables(tensors, slots, 1)

        def on_one_thread(grads, hyper, values):
            with _LAUNCH_LOCK:
                kernel(_tables.with_grads(addresses, grads), chunks,
                       np.array(values, dtype=dtype), 1)

        if signed is not None:
            return on_one_thread
        arity = 1 if len(addresses) == 1 else SERIAL_GRADS
        serial = self._kernel(rule, flags, used, dtype, serial=arity)
        return self._serial_launcher(serial, arity, addresses, dtype, on_one_thread)

    @staticmethod
    def _serial_launcher(kernel, arity, addresses, dtype, fallback):
        """A launcher running ``kernel`` (:func:`_make_serial_kernel` of ``arity``) on
        groups of ``arity`` rows of ``addresses``. What its signature does not take (a
        read-only grad, a subclass, a scalar that is not a float) goes to ``fallback``,
        the same step through the address table: every group's arguments are known to
        fit before the first runs."""
        k, n = arity, len(addresses)
        tables = []
        for start in range(0, n, k):
            table = np.zeros((k, addresses.shape[1]), dtype=np.int64)
            rows = addresses[start:start + k]
            table[:len(rows)] = rows
            tables.append(table)
        padding = (np.empty(0, dtype),) * (-n % k)

        if n <= k:
            table = tables[0]

            def run(grads, hyper, values):
                try:  # the kernel's signature refuses a grad before it starts
                    kernel(table, (*grads, *padding), values)
                except TypeError:
                    fallback(grads, hyper, values)
            return run

        def run_groups(grads, hyper, values):
            # Only the grads differ between groups: a later group's could be refused
            # after the first ran, so they are looked at first; values the signature
            # refuses, the first call refuses before anything runs.
            if not all(type(g) is np.ndarray and g.flags.writeable for g in grads):
                fallback(grads, hyper, values)
                return
            grads = (*grads, *padding)
            try:
                kernel(tables[0], grads[:k], values)
            except TypeError:
                fallback(grads[:n], hyper, values)
                return
            for i in range(1, len(tables)):
                kernel(tables[i], grads[i * k:(i + 1) * k], values)
        return run_groups

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

    bn_windows = staticmethod(_tables.bn_windows)  # cache-sized channel windows

    def bn_sums(self, a, b, ka, kb, window):
        """Per channel c0 <= c < c1 (``window``) of (outer, C, inner) views: sum(a-ka),
        sum((a-ka)*(b-kb)) in float64 (``ka``, ``kb`` and the results hold the window's
        channels), from partial sums over a fixed blocking added in block order."""
        (c0, c1), (outer, _, inner) = window, a.shape
        return _launch(_bn_window_sums, outer * inner * (c1 - c0), a, b, ka, kb, c0, c1)

    def bn_affine(self, a, b, p, q, r, out, window):
        """``out = a*P + b*Q + R`` per channel of ``window`` (``(c0, c1)``; P, Q and R
        hold its channels), in the dtype (``a*P + R`` when b is None)."""
        n = a.shape[0] * a.shape[2] * (window[1] - window[0])
        if b is None:
            _launch(_bn_scale_shift, n, a, p, r, out, window[0])
        else:
            _launch(_bn_affine, n, a, b, p, q, r, out, window[0])


BACKEND = NumbaBackend()
