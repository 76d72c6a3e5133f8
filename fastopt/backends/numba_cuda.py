"""The ``"cuda"`` backend: numba-cuda kernels compiled from fastopt.rules.

Params, grads and state stay on the device. One optimizer step is one kernel launch
per group and dtype, in the spirit of multi_tensor_apply: one thread block per entry
of a chunk table ``(tensor, start, stop)`` (64-bit offsets), and each block reaches
its tensor through an address table. Param and state addresses do not change, so
their table is copied to the device once; the grad addresses and the per-step
scalars, which do, travel as kernel arguments (tuples, copied at launch), so a step
has no host-to-device copy and no synchronisation.

Reductions (finiteness, sums of squares, batch-norm statistics) write one float64
partial per block, reduced inside the block by a fixed tree, and the host adds the
partials in block order: the results do not depend on the launch configuration.

Under Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) the same kernel source
runs as Python, with small chunks; there device memory is host memory, and
``_element_pointer`` views it through ctypes instead of the CUDA intrinsic.
"""

import functools

import numba
import numpy as np
from numba import config, cuda

from .. import _device, quant
from ..rules import RULES
from ..rules._elements import element_functions
from ..rules._spec import ZERO
from . import _bitcast, _dispatch, _tables
from ._base import Backend
from ._numba_cache import disk_cache
from ._tables import one_window  # CudaBackend has a method named _tables

SIMULATED = bool(config.ENABLE_CUDASIM)
if not cuda.is_available():
    raise ImportError("no CUDA device (and NUMBA_ENABLE_CUDASIM is not set)")

CHUNK = 256 if SIMULATED else 1 << 14  # elements per thread block
THREADS = 32 if SIMULATED else 256  # threads per block (a power of two)
MAX_TENSORS_PER_LAUNCH = 256  # grad addresses ride in the kernel's parameter space
_P, _S0 = _tables.PARAM, _tables.SLOT0  # columns of the address table (grads: a tuple)

if SIMULATED:
    def _element_pointer(address, like):
        """Elements of ``like``'s type at ``address`` (simulator: host memory)."""
        if address == 0:
            return np.empty(0, dtype=type(like))
        ctype = np.ctypeslib.as_ctypes_type(np.dtype(type(like)))
        return np.ctypeslib.as_array((ctype * (1 << 30)).from_address(int(address)))

    _float_bits = quant.float_bits

    def _bits_float(bits):
        """The float32 whose bits are the low 32 of ``bits``."""
        return np.array(bits & 0xFFFFFFFF, dtype=np.uint32).view(np.float32)[()]
else:
    from numba import types
    from numba.cuda.extending import intrinsic

    @intrinsic
    def _element_pointer(typingctx, address, like):
        """A typed pointer (``like``'s type) to the device address ``address``."""
        pointer = types.CPointer(like)

        def codegen(context, builder, signature, args):
            return builder.inttoptr(args[0], context.get_value_type(pointer))

        return pointer(types.int64, like), codegen

    _float_bits, _bits_float = _bitcast.bit_casts(intrinsic)

if SIMULATED:
    _cuda_overload = None
else:
    from numba.cuda.extending import overload as _cuda_overload
_ELEMENTS = element_functions(cuda.jit(device=True))
_update_element = _dispatch.rule_dispatcher(tuple(update for update, _ in _ELEMENTS), 9,
                                            _cuda_overload)
_step_element = _dispatch.rule_dispatcher(tuple(step for _, step in _ELEMENTS), 7,
                                          _cuda_overload)
_encode = quant.encoder(cuda.jit(device=True), _float_bits).encode_value


def _make_optim_kernel(rule_id, flags, used):
    @cuda.jit
    def optim_kernel(addresses, grads, chunks, h):
        zero = h[ZERO]
        for c in range(cuda.blockIdx.x, chunks.shape[0], cuda.gridDim.x):
            t = chunks[c, 0]
            p = _element_pointer(addresses[t, _P], zero)
            g = _element_pointer(grads[t], zero)
            s0 = _element_pointer(addresses[t, _S0], zero)
            s1 = _element_pointer(addresses[t, _S0 + 1], zero)
            s2 = _element_pointer(addresses[t, _S0 + 2], zero)
            for i in range(chunks[c, 1] + cuda.threadIdx.x, chunks[c, 2], cuda.blockDim.x):
                _update_element(rule_id, flags, used, p, g, s0, s1, s2, i, h)

    return optim_kernel


def _make_optim8_kernel(rule_id, flags, used, signed):
    """The kernel of one rule variant over float32 params with 8-bit state
    (:mod:`fastopt.quant`): a thread block takes a chunk's quantization blocks one
    after the other; its threads decode their elements' states with the block's old
    absmax, step them as the float32 kernel does, keep the new states in shared
    memory and their largest magnitude by a block reduction, then code them with that
    new absmax. ``signed``: per slot, whether it uses the signed codebook."""
    block = quant.BLOCK_SIZE
    assert CHUNK % block == 0  # chunks start on block boundaries
    rows = tuple(0 if s else 1 for s in signed)  # rows of the maps and buckets arrays
    A = _tables.ABSMAX0

    @cuda.jit
    def optim8_kernel(addresses, grads, chunks, h, maps, buckets):
        zero = h[ZERO]
        values = cuda.shared.array((3, block), np.float32)
        shared = cuda.shared.array(THREADS, np.int64)
        tid = cuda.threadIdx.x
        for c in range(cuda.blockIdx.x, chunks.shape[0], cuda.gridDim.x):
            t = chunks[c, 0]
            p = _element_pointer(addresses[t, _P], zero)
            g = _element_pointer(grads[t], zero)
            q0 = _element_pointer(addresses[t, _S0], np.uint8(0))
            q1 = _element_pointer(addresses[t, _S0 + 1], np.uint8(0))
            q2 = _element_pointer(addresses[t, _S0 + 2], np.uint8(0))
            m0 = _element_pointer(addresses[t, A], zero)
            m1 = _element_pointer(addresses[t, A + 1], zero)
            m2 = _element_pointer(addresses[t, A + 2], zero)
            for lo in range(chunks[c, 1], chunks[c, 2], block):
                hi = min(lo + block, chunks[c, 2])
                b = lo // block
                old0 = m0[b] if used[0] else zero
                old1 = m1[b] if used[1] else zero
                old2 = m2[b] if used[2] else zero
                top0 = 0
                top1 = 0
                top2 = 0
                for i in range(lo + tid, hi, cuda.blockDim.x):
                    a0 = maps[rows[0], q0[i]] * old0 if used[0] else zero
                    a1 = maps[rows[1], q1[i]] * old1 if used[1] else zero
                    a2 = maps[rows[2], q2[i]] * old2 if used[2] else zero
                    p[i], a0, a1, a2 = _step_element(rule_id, flags, p[i], g[i], a0, a1, a2, h)
                    values[0, i - lo] = a0
                    values[1, i - lo] = a1
                    values[2, i - lo] = a2
                    # the new absmax: the largest magnitude's bits (a NaN's exceed Inf's)
                    top0 = max(top0, np.int64(_float_bits(a0)) & 0x7FFFFFFF)
                    top1 = max(top1, np.int64(_float_bits(a1)) & 0x7FFFFFFF)
                    top2 = max(top2, np.int64(_float_bits(a2)) & 0x7FFFFFFF)
                if used[0]:
                    top0 = _block_max(shared, top0)
                if used[1]:
                    top1 = _block_max(shared, top1)
                if used[2]:
                    top2 = _block_max(shared, top2)
                absmax0 = _bits_float(top0)
                absmax1 = _bits_float(top1)
                absmax2 = _bits_float(top2)
                for i in range(lo + tid, hi, cuda.blockDim.x):
                    if used[0]:
                        q0[i] = _encode(values[0, i - lo], absmax0, buckets[rows[0]], signed[0])
                    if used[1]:
                        q1[i] = _encode(values[1, i - lo], absmax1, buckets[rows[1]], signed[1])
                    if used[2]:
                        q2[i] = _encode(values[2, i - lo], absmax2, buckets[rows[2]], signed[2])
                if tid == 0:
                    if used[0]:
                        m0[b] = absmax0
                    if used[1]:
                        m1[b] = absmax1
                    if used[2]:
                        m2[b] = absmax2
                cuda.syncthreads()  # before the next block's values overwrite these

    return optim8_kernel


def _block_reduction(combine):
    """A device function ``reduce(shared, value)``: ``value`` combined over the thread
    block by ``combine`` in a fixed tree in ``shared`` (one slot per thread)."""

    @cuda.jit(device=True)
    def reduce(shared, value):
        tid = cuda.threadIdx.x
        shared[tid] = value
        cuda.syncthreads()
        stride = cuda.blockDim.x // 2
        while stride > 0:
            if tid < stride:
                shared[tid] = combine(shared[tid], shared[tid + stride])
            cuda.syncthreads()
            stride //= 2
        total = shared[0]
        cuda.syncthreads()
        return total

    return reduce


@cuda.jit(device=True)
def _add(a, b):
    return a + b


@cuda.jit(device=True)
def _larger(a, b):
    return max(a, b)


_block_sum = _block_reduction(_add)  # float64 partial sums
_block_max = _block_reduction(_larger)  # int64 bit patterns of magnitudes


@cuda.jit
def _chunk_reduction(x, chunks, out, probe_finite):
    """Per chunk, the float64 sum of ``x*x``, or with ``probe_finite`` of ``x - x``
    (0 while every element is finite, NaN otherwise)."""
    shared = cuda.shared.array(THREADS, np.float64)
    for c in range(cuda.blockIdx.x, chunks.shape[0], cuda.gridDim.x):
        acc = 0.0
        for i in range(chunks[c, 1] + cuda.threadIdx.x, chunks[c, 2], cuda.blockDim.x):
            v = np.float64(x[i])
            acc += v - v if probe_finite else v * v
        total = _block_sum(shared, acc)
        if cuda.threadIdx.x == 0:
            out[c] = total


@cuda.jit
def _bn_partial_sums(a, b, ka, kb, rows, c0, s1, s2):
    """Float64 partial sums per (row block, channel) of the channels ``c0 <= c <
    c0 + s1.shape[1]``: one thread block per item."""
    shared = cuda.shared.array(THREADS, np.float64)
    outer, channels, inner = a.shape
    width = s1.shape[1]
    n_items = s1.shape[0] * width
    for item in range(cuda.blockIdx.x, n_items, cuda.gridDim.x):
        rb = item // width
        w = item % width
        c = c0 + w
        o0 = rb * rows
        count = (min(o0 + rows, outer) - o0) * inner
        kac = ka[w]
        kbc = kb[w]
        x1 = 0.0
        x2 = 0.0
        for k in range(cuda.threadIdx.x, count, cuda.blockDim.x):
            o = o0 + k // inner
            i = k % inner
            u = np.float64(a[o, c, i]) - kac
            x1 += u
            x2 += u * (np.float64(b[o, c, i]) - kbc)
        total1 = _block_sum(shared, x1)
        total2 = _block_sum(shared, x2)
        if cuda.threadIdx.x == 0:
            s1[rb, w] = total1
            s2[rb, w] = total2


@cuda.jit
def _bn_affine(a, b, p, q, r, out, use_b, c0):
    """``out = a*p + b*q + r`` (``a*p + r`` unless ``use_b``) per channel ``c0 <= c <
    c0 + len(p)``."""
    outer, channels, inner = a.shape
    width = p.shape[0]
    n = outer * width * inner
    start = cuda.grid(1)
    for k in range(start, n, cuda.gridsize(1)):
        i = k % inner
        w = (k // inner) % width
        o = k // (inner * width)
        v = a[o, c0 + w, i] * p[w]
        if use_b:
            v = v + b[o, c0 + w, i] * q[w]
        out[o, c0 + w, i] = v + r[w]


_bn_totals = numba.njit(cache=disk_cache())(_tables.bn_totals)  # on the host copies


@functools.cache
def _device_codecs():
    """The codebooks and their encoder tables on the device (signed rows first)."""
    return tuple(cuda.to_device(table) for table in quant.codec_tables())


def _blocks(n):
    return max(1, min(int(n), 65535 if SIMULATED else 1 << 20))


class CudaBackend(Backend):
    """numba-cuda kernels; see the module docstring."""

    name = "cuda"

    def __init__(self):
        self._kernels = {}
        self._chunk_tables = {}

    def _kernel(self, rule_name, flags, used, signed=None):
        """The kernel of a rule variant; ``signed`` (per slot, the codebook) for 8-bit
        state."""
        key = (rule_name, flags, used, signed)
        kernel = self._kernels.get(key)
        if kernel is None:
            rule_id = RULES[rule_name].id
            kernel = self._kernels[key] = _make_optim_kernel(rule_id, flags, used) \
                if signed is None else _make_optim8_kernel(rule_id, flags, used, signed)
        return kernel

    def _chunks(self, sizes):
        key = tuple(int(s) for s in sizes)
        table = self._chunk_tables.get(key)
        if table is None:
            table = self._chunk_tables[key] = cuda.to_device(
                _tables.chunk_table(key, chunk=CHUNK))
        return table

    def _tables(self, tensors, slots, part):
        """Device address table (param, 0, slots) and chunk table of one launch."""
        key = ("cuda tables", slots, part)
        tables = tensors.cache.get(key)
        if tables is None:
            lo, hi = part
            addresses = _tables.address_table(tensors, slots, _device.address)[lo:hi]
            tables = tensors.cache[key] = (cuda.to_device(np.ascontiguousarray(addresses)),
                                           self._chunks(tensors.sizes[lo:hi]))
        return tables

    def _launcher(self, rule, tensors, flags, slots):
        used = tuple(name is not None for name in slots)
        if tensors.bits == 8:
            kernel = self._kernel(rule.name, flags, used, tensors.signs(slots))
            codecs = _device_codecs()
        else:
            kernel, codecs = self._kernel(rule.name, flags, used), ()
        parts = [(lo, min(lo + MAX_TENSORS_PER_LAUNCH, len(tensors.params)))
                 for lo in range(0, len(tensors.params), MAX_TENSORS_PER_LAUNCH)]

        def run(grads, hyper, values):
            h = tuple(np.array(values, dtype=tensors.dtype))  # scalars of the dtype
            for lo, hi in parts:
                addresses, chunks = self._tables(tensors, slots, (lo, hi))
                grad_addresses = tuple(_device.address(g) for g in grads[lo:hi])
                kernel[_blocks(chunks.shape[0]), THREADS](addresses, grad_addresses, chunks, h,
                                                          *codecs)
        return run

    def _chunk_reduction(self, arrays, probe_finite):
        partials = []
        for x in arrays:
            chunks = self._chunks([x.size])
            out = cuda.device_array(chunks.shape[0], dtype=np.float64)
            _chunk_reduction[_blocks(chunks.shape[0]), THREADS](x, chunks, out, probe_finite)
            partials.append(out.copy_to_host())
        return np.concatenate(partials) if partials else np.zeros(0)

    def chunk_sums_of_squares(self, arrays):
        """Float64 sums of squares per fixed chunk of 1-D device arrays (on the host)."""
        return self._chunk_reduction(arrays, False)

    def all_finite(self, arrays):
        """Whether every element of the 1-D device arrays is finite."""
        return not np.isnan(self._chunk_reduction(arrays, True)).any()

    bn_windows = staticmethod(one_window)  # no cache to keep a window in

    def bn_sums(self, a, b, ka, kb, window):
        """Per channel c0 <= c < c1 (``window``) of (outer, C, inner) device views:
        sum(a-ka), sum((a-ka)*(b-kb)) in float64 (``ka``, ``kb`` and the results hold the
        window's channels), from per-block partials added in block order on the host."""
        (c0, c1), (outer, _, inner) = window, a.shape
        rows = max(1, CHUNK // max(1, inner))
        n_row_blocks = (outer + rows - 1) // rows
        s1 = cuda.device_array((n_row_blocks, c1 - c0), dtype=np.float64)
        s2 = cuda.device_array((n_row_blocks, c1 - c0), dtype=np.float64)
        _bn_partial_sums[_blocks(n_row_blocks * (c1 - c0)), THREADS](
            a, b, cuda.to_device(np.ascontiguousarray(ka, dtype=np.float64)),
            cuda.to_device(np.ascontiguousarray(kb, dtype=np.float64)), rows, c0, s1, s2)
        return _bn_totals(s1.copy_to_host(), s2.copy_to_host())

    def bn_affine(self, a, b, p, q, r, out, window):
        """``out = a*P + b*Q + R`` per channel of ``window`` (``(c0, c1)``; P, Q and R
        hold its channels), in the dtype (``a*P + R`` when b is None)."""
        dtype = out.dtype
        p, r = (cuda.to_device(np.ascontiguousarray(v, dtype=dtype)) for v in (p, r))
        q = p if q is None else cuda.to_device(np.ascontiguousarray(q, dtype=dtype))
        n = a.shape[0] * (window[1] - window[0]) * a.shape[2]
        _bn_affine[_blocks((n + THREADS - 1) // THREADS), THREADS](
            a, a if b is None else b, p, q, r, out, b is not None, window[0])


BACKEND = CudaBackend()
