"""Address and chunk tables: how a compiled kernel reaches many tensors in one call.

A kernel gets an ``(n_tensors, 5)`` int64 table of data addresses (param, grad and
three state slots, 0 where a slot is unused) and an ``(n_chunks, 3)`` int64 table of
``(tensor, start, stop)`` element ranges; a chunk's elements are contiguous in memory.

Reductions walk a :func:`chunk_table`: fixed-size chunks, so that per-chunk partial
results do not depend on the thread count. Element-wise updates walk a
:func:`balanced_chunk_table`: the kernels split their rows statically (thread k runs
the k-th run of rows), so its rows come in one run per thread, each run covering an
equal share of the elements. A plain table of a 784-256-256-10 MLP would give one
thread 200,704 elements and the other 68,618.
"""

import glob

import numpy as np

from ..quant import BLOCK_SIZE

CHUNK = 1 << 15  # elements per chunk: 128 KiB of float32, a comfortable L2 slice
PARALLEL_MIN_ELEMENTS = 4 * CHUNK  # below this, kernels run on the calling thread


def parallel(n_elements):
    """Whether work on ``n_elements`` elements is worth the thread pool (see
    PARALLEL_MIN_ELEMENTS; the numba and c backends share this rule)."""
    return n_elements >= PARALLEL_MIN_ELEMENTS


PARAM, GRAD = 0, 1  # address-table columns; the state slots follow
SLOT0 = 2


try:  # cffi (a dependency) reads a buffer's address in ~0.9 us; ndarray.ctypes, ~2 us
    import _cffi_backend

    _ffi = _cffi_backend.FFI()
    _cast, _from_buffer = _ffi.cast, _ffi.from_buffer
except ImportError:  # pragma: no cover - cffi is a dependency
    _cast = None


def address(array):
    """The data address of a contiguous array (0 for an empty one)."""
    if not array.size:
        return 0
    if _cast is not None and array.flags.c_contiguous:
        return int(_cast("intptr_t", _from_buffer(array)))
    return array.ctypes.data


def chunk_table(sizes, chunk=CHUNK):
    """``(tensor, start, stop)`` rows covering every element of every tensor once."""
    rows = []
    for t, size in enumerate(sizes):
        for start in range(0, int(size), chunk):
            rows.append((t, start, min(start + chunk, int(size))))
    return np.array(rows, dtype=np.int64).reshape(-1, 3)


def balanced_chunk_table(sizes, parts, chunk=CHUNK, align=16):
    """Rows ``(tensor, start, stop)`` covering every element once, in ``parts`` runs of
    equal row count: run k covers the elements from about ``k*total/parts`` to
    ``(k+1)*total/parts`` of all tensors laid end to end. Rows hold at most ``chunk``
    elements; runs are padded with empty rows ``(0, 0, 0)``. Where a run ends inside a
    tensor, the cut is moved back to a multiple of ``align`` elements from the
    tensor's start (when there is one in that row), so that threads share no cache
    line; a run is then short by less than ``align`` elements."""
    sizes = [int(s) for s in sizes]
    total = sum(sizes)
    ends = [(k + 1) * total // parts for k in range(parts)]  # global end of each run
    runs = [[] for _ in range(parts)]
    part, offset = 0, 0
    for t, size in enumerate(sizes):
        start = 0
        while start < size:
            while part < parts - 1 and offset + start >= ends[part]:
                part += 1
            stop = min(size, start + chunk)
            end = ends[part] - offset  # where the current run ends, in this tensor
            cut = part < parts - 1 and end < stop
            if cut:
                aligned = end - end % align
                stop = aligned if aligned > start else end
            runs[part].append((t, start, stop))
            part += cut
            start = stop
        offset += size
    width = max(len(run) for run in runs)
    rows = [row for run in runs for row in run + [(0, 0, 0)] * (width - len(run))]
    return np.array(rows, dtype=np.int64).reshape(-1, 3)


ABSMAX0 = SLOT0 + 3  # 8-bit sets: the state slots hold codes; their absmax follow


def address_table(tensors, slots, address_of=address):
    """``(n_tensors, 5)`` int64 addresses: param, grad (0, filled per step) and the
    three state slots (0 where unused); for 8-bit state (``tensors.bits == 8``) three
    more columns from :data:`ABSMAX0`, the slots' absmax arrays. ``address_of`` reads
    one array's address (host arrays by default; the CUDA backend passes its device
    reader)."""
    eight_bit = tensors.bits == 8
    addresses = np.zeros((len(tensors.params), (ABSMAX0 if eight_bit else SLOT0) + 3),
                         dtype=np.int64)
    addresses[:, PARAM] = [address_of(p) for p in tensors.params]
    for column, name in enumerate(slots):
        if name is not None:
            addresses[:, SLOT0 + column] = [address_of(s) for s in tensors.states[name]]
            if eight_bit:
                addresses[:, ABSMAX0 + column] = [address_of(a)
                                                  for a in tensors.absmax[name]]
    return addresses


def block_chunk_table(sizes, parts, block):
    """:func:`balanced_chunk_table` whose rows start and end on multiples of ``block``
    elements from their tensor's start (or at its end): threads of an 8-bit kernel
    each own whole blocks, absmax and codes."""
    sizes = [int(s) for s in sizes]
    rows = balanced_chunk_table([-(-s // block) for s in sizes], parts,
                                chunk=max(1, CHUNK // block), align=1)
    if len(rows):
        ends = np.array(sizes, dtype=np.int64)[rows[:, 0]]
        empty = rows[:, 1] == rows[:, 2]
        rows[:, 1:] = np.minimum(rows[:, 1:] * block, ends[:, None])
        rows[empty] = 0
    return rows


def optim_tables(tensors, slots, parts):
    """The (cached) address table of a TensorSet for the given state slots, and its
    chunk table balanced over ``parts`` threads (for 8-bit state, of whole blocks)."""
    key = ("tables", slots, parts)
    tables = tensors.cache.get(key)
    if tables is None:
        chunks = block_chunk_table(tensors.sizes, parts, BLOCK_SIZE) if tensors.bits == 8 \
            else balanced_chunk_table(tensors.sizes, parts)
        tables = tensors.cache[key] = (address_table(tensors, slots), chunks)
    return tables


def with_grads(addresses, grads):
    """A copy of the cached table with this step's gradient addresses in it. (A copy:
    two calls on the same arrays from two threads must not see each other's grads.)"""
    addresses = addresses.copy()
    addresses[:, GRAD] = [address(g) for g in grads]
    return addresses


def read_tables(arrays):
    """Address and chunk tables for a list of contiguous 1-D arrays (reductions)."""
    addresses = np.array([address(a) for a in arrays], dtype=np.int64).reshape(-1, 1)
    sizes = np.array([a.size for a in arrays], dtype=np.int64)
    return addresses, chunk_table(sizes)


def bn_blocks(outer, channels, inner, chunk=CHUNK):
    """Work items of a per-channel reduction over an (outer, C, inner) view, as
    (rows per block, channels per block): about ``chunk`` elements per item. Long
    rows (large inner) give one channel per item; short rows give all channels, so
    that channels-last data are read contiguously. Depends on the shape only."""
    if inner >= 64:
        return max(1, chunk // inner), 1
    return max(1, chunk // max(1, channels * inner)), channels


def _last_level_cache_bytes(default=8 << 20):
    """The largest CPU cache's size as Linux reports it (``default`` elsewhere)."""
    best = 0
    for size in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*/size"):
        try:
            with open(size) as f:
                text = f.read().strip().upper()
            best = max(best, int(text.rstrip("KMG")) << {"K": 10, "M": 20, "G": 30}.get(
                text[-1:], 0))
        except (OSError, ValueError):
            continue
    return best or default


# Input bytes of one batch-norm window: its statistics pass leaves them in the last-level
# cache for its affine pass. A quarter of the cache leaves room for the output and for
# whatever else runs; measured on a 32 MiB L3, windows of 4-16 MiB all did well.
WINDOW_BYTES = min(max(_last_level_cache_bytes() // 4, 1 << 20), 16 << 20)


def one_window(shape, itemsize=None, streams=None):
    """Every channel of an (outer, C, inner) view in one window."""
    return ((0, shape[1]),)


def bn_windows(shape, itemsize, streams, budget=None):
    """Channel windows ``(c0, c1)`` for batch norm over an (outer, C, inner) view whose
    passes read ``streams`` arrays: each window's statistics and affine passes run
    back to back, so the second reads the window from cache, not from memory. Only long
    rows (one channel per work item, see :func:`bn_blocks`) are windowed; a view whose
    inputs fit in ``budget`` bytes (default :data:`WINDOW_BYTES`) is one window."""
    outer, channels, inner = shape
    budget = WINDOW_BYTES if budget is None else budget
    channel_bytes = outer * inner * itemsize * streams
    if bn_blocks(outer, channels, inner)[1] != 1 or channel_bytes * channels <= budget:
        return one_window(shape)
    count = -(-channels // max(1, budget // channel_bytes))  # windows, of equal widths
    cuts = [k * channels // count for k in range(count + 1)]
    return tuple(zip(cuts[:-1], cuts[1:]))


def bn_partials(shape, width=None):
    """For a per-channel reduction over an (outer, C, inner) view: the blocking
    ``(rows, cols)`` of :func:`bn_blocks` and two zeroed float64 arrays of partial
    sums, one row per row block and one column per channel of a window ``width``
    channels wide (all of them by default). The blocking depends on the shape only, so
    a channel's sums do not depend on the window it is summed in."""
    outer, channels, inner = shape
    rows, cols = bn_blocks(outer, channels, inner)
    n_row_blocks = (outer + rows - 1) // rows
    width = channels if width is None else width
    s1, s2 = np.zeros((2, n_row_blocks, width))  # one allocation for both
    return rows, cols, s1, s2


def bn_totals(s1, s2):
    """Per-channel totals of partial sums (one row per row block), adding the blocks
    in block order into row 0, which is returned. (NumPy's ``sum(axis=0)`` switches to
    pairwise summation for a one-channel window and would round it differently from a
    wider one.) Written for Numba, which compiles it for both of its backends; the C
    kernel does the same in C."""
    for r in range(1, s1.shape[0]):
        for c in range(s1.shape[1]):
            s1[0, c] += s1[r, c]
            s2[0, c] += s2[r, c]
    return s1[0], s2[0]
