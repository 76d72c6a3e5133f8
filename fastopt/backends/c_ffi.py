"""The ``"c"`` backend: the C99 kernels in ``csrc/``, compiled at install through cffi.

It serves where Numba cannot (a Python release that Numba does not support yet, a
machine where JIT compilation is not wanted) and, each rule's body being written
again in C (``csrc/rules/NAME.h``), keeps the Numba kernels honest: both run the same
test suite against the same reference. It uses the same address and chunk tables as the Numba
backend and the same batch-norm blocking; the optimizer updates give the same bits,
the vectorised float64 reductions agree to rounding.
Threads come from OpenMP (``OMP_NUM_THREADS``); cffi releases the GIL during calls.
"""

import functools
from types import SimpleNamespace

import numpy as np

from .. import _bn_math, quant
from .._fastopt_c import ffi, lib
from . import _tables
from ._base import Backend

_TYPES = {np.dtype(np.float32): ("float[]", "f32"), np.dtype(np.float64): ("double[]", "f64")}


def _ptr(ctype, array):
    """A C array (``ctype`` like "float[]") over a contiguous NumPy array's data,
    passed to C as a pointer; None stays NULL. ``from_buffer`` takes ~0.5 us where
    ``ffi.cast(ctype, array.ctypes.data)`` takes ~3 us."""
    return ffi.NULL if array is None else ffi.from_buffer(ctype, array)


_from_buffer = ffi.from_buffer  # a buffer's data as a char[] (a pointer to C)


def _contiguous(*arrays):
    for array in arrays:
        if array is not None and not array.flags.c_contiguous:
            raise ValueError("the C backend's batch-norm kernels take C-contiguous arrays")


def _float64(v):
    """A per-channel vector as contiguous float64 (as it is when a pass made it)."""
    if type(v) is np.ndarray and v.dtype == np.float64 and v.flags.c_contiguous:
        return v
    return np.ascontiguousarray(v, dtype=np.float64)


def _contiguous_vector(v):
    """A 1-D vector, copied only when strided."""
    return v if v.flags.c_contiguous else np.ascontiguousarray(v)


class _Scalars:
    """A launcher's step scalars for C. cffi converts a tuple of 20 floats into a C
    array on every call (0.3 us of a 1.5 us one-thread step); a tuple seen in two calls
    in a row (:meth:`fastopt.rules.Rule.pack_values` gives back the very tuple while
    the hyperparameters stay the same objects) is converted once and its C array kept.
    Tuples that change every step (Adam's bias corrections) are passed as they are.
    ``seen``: the last tuple; ``kept``: a tuple and its C array, replaced whole, so that
    a thread never pairs one call's tuple with another's array."""

    __slots__ = ("ctype", "seen", "kept")

    def __init__(self, ctype):
        self.ctype = ctype  # the kernel's: "float[]" or "double[]"
        self.seen, self.kept = None, (None, None)

    def of(self, values):
        """``values`` as the kernel's ``hyper`` argument."""
        kept = self.kept
        if kept[0] is values:
            return kept[1]
        if self.seen is not values:
            self.seen = values
            return values
        array = ffi.new(self.ctype, values)  # each value rounds once, as in a call
        self.kept = values, array
        return array


_bn_blocks = functools.lru_cache(maxsize=64)(_tables.bn_blocks)  # by shape


# The codebooks and their encoder tables, signed then unsigned, for the 8-bit kernel.
_MAPS, _BUCKETS = (table.reshape(-1) for table in quant.codec_tables())


def _bn_math_with(running_update):
    """:mod:`fastopt._bn_math`'s functions, ``running_update`` replaced."""
    functions = {f.__name__: f for f in _bn_math.FUNCTIONS}
    return SimpleNamespace(**dict(functions, running_update=running_update))


class CBackend(Backend):
    """The cffi-compiled C kernels; see the module docstring."""

    name = "c"
    single_call = True

    def __init__(self):
        self._optim = {"f32": lib.fo_optim_f32, "f64": lib.fo_optim_f64}
        self._has_variant = {"f32": lib.fo_has_variant_f32, "f64": lib.fo_has_variant_f64}
        self._sumsq = {"f32": lib.fo_sumsq_f32, "f64": lib.fo_sumsq_f64}
        self._finite = {"f32": lib.fo_finite_f32, "f64": lib.fo_finite_f64}
        self._bn_sums = {"f32": lib.fo_bn_sums_f32, "f64": lib.fo_bn_sums_f64}
        self._bn_affine = {"f32": lib.fo_bn_affine_f32, "f64": lib.fo_bn_affine_f64}
        self._bn_forward_kernels = {"f32": lib.fo_bn_forward_f32, "f64": lib.fo_bn_forward_f64}
        self._bn_backward_kernels = {"f32": lib.fo_bn_backward_f32,
                                     "f64": lib.fo_bn_backward_f64}
        self._bn_running = {"f32": lib.fo_bn_running_update_f32,
                            "f64": lib.fo_bn_running_update_f64}
        # fastopt._bn_math, with the running statistics' update in C
        self.bn_math = _bn_math_with(self._running_update)

    @staticmethod
    def threads():
        """The number of OpenMP threads a kernel runs on (1 for a serial build)."""
        return lib.fo_max_threads()

    @staticmethod
    def run_serially():
        """Hold every kernel to one thread (in a forked child, where OpenMP's pool was
        not copied and a parallel region would wait for it forever)."""
        lib.fo_set_max_threads(1)

    def _launcher(self, rule, tensors, flags, slots):
        ctype, tag = _TYPES[tensors.dtype]
        optim, variant = self._optim[tag], rule.variant(flags)
        if not self._has_variant[tag](variant):  # unreachable through the public API
            raise RuntimeError(f"the C backend has no kernel variant {variant}")
        parallel = _tables.parallel(tensors.total)
        codecs = ()
        if tensors.bits == 8:  # float32 params; the codebooks ride along
            optim = lib.fo_optim8_f32
            signed = np.array(tensors.signs(slots), np.uint8)
            codecs = (_ptr("unsigned char[]", signed), _ptr("float[]", _MAPS),
                      _ptr("int32_t[]", _BUCKETS))

        def c_tables(parts):  # the address and chunk tables for `parts` threads, for C
            addresses, chunks = _tables.optim_tables(tensors, slots, parts)
            return _ptr("int64_t[]", addresses), _ptr("int64_t[]", chunks), len(chunks)

        scalars = _Scalars(ctype)
        if not parallel:  # one thread: the tables are made once, and a call is one C call
            addresses, chunks, n_chunks = c_tables(1)

            def run_serial(grads, hyper, values):
                pointers = [_from_buffer(grads[0])] if len(grads) == 1 else \
                    list(map(_from_buffer, grads))
                optim(variant, addresses, pointers, chunks, n_chunks, scalars.of(values), 1,
                      *codecs)
            return run_serial
        tables = {}  # thread count -> the tables' C pointers (the tables stay cached)

        def run(grads, hyper, values):
            parts = self.threads()  # OMP_NUM_THREADS may change
            kept = tables.get(parts)
            if kept is None:
                kept = tables[parts] = c_tables(parts)
            addresses, chunks, n_chunks = kept
            optim(variant, addresses, [_from_buffer(g) for g in grads], chunks, n_chunks,
                  scalars.of(values), parts, *codecs)
        return run

    def _per_chunk(self, kernels, arrays, dtype, ctype):
        """One value per fixed chunk of same-dtype 1-D contiguous arrays."""
        addresses, chunks = _tables.read_tables(arrays)
        out = np.zeros(len(chunks), dtype=dtype)
        kernels[_TYPES[arrays[0].dtype][1]](_ptr("int64_t[]", addresses),
                                           _ptr("int64_t[]", chunks), len(chunks),
                                           _ptr(ctype, out))
        return out

    def chunk_sums_of_squares(self, arrays):
        """Float64 sums of squares of fixed chunks of same-dtype 1-D contiguous arrays."""
        return self._per_chunk(self._sumsq, arrays, np.float64, "double[]")

    def all_finite(self, arrays):
        """Whether every element of the same-dtype 1-D contiguous arrays is finite."""
        return bool(self._per_chunk(self._finite, arrays, np.uint8, "unsigned char[]").all())

    bn_windows = staticmethod(_tables.bn_windows)  # cache-sized channel windows

    @property
    def bn_passes(self):
        """A window's forward and backward pass as one C call each (the per-channel
        maths in C too), as :mod:`fastopt.batchnorm` calls them."""
        return self._bn_forward, self._bn_backward

    # The passes below are called by fastopt.batchnorm only, with C-contiguous (outer, C,
    # inner) views (its _view3 and _output make them so) and per-channel vectors of the
    # window's channels: float64 ``shift``/``mean``/``var``/``invstd`` and 1-D gamma and
    # beta in x's dtype. A pass costs one C call; its Python side is kept to a few
    # conversions (each ffi.from_buffer is ~0.2 us, a small fraction of a small pass).

    def _bn_forward(self, x3, shift, mean, var, gamma, beta, eps, n, training, y3, c0, c1):
        (outer, channels, inner), width = x3.shape, c1 - c0
        rows, cols = _bn_blocks(outer, channels, inner)
        ctype, tag = _TYPES[x3.dtype]
        stats = np.empty((3, width))  # mean, var, invstd: one array, one pointer
        p_stats = _from_buffer("double[]", stats)
        if training:  # mean and var come from the sums of x - shift
            p_shift = _from_buffer("double[]", _float64(shift))
        else:  # the running statistics, copied: the kernel writes its own mean and var
            stats[0], stats[1] = mean, var
            p_shift = p_stats
        offset = c0 * inner  # the window's first channel
        status = self._bn_forward_kernels[tag](
            _from_buffer(ctype, x3) + offset, p_shift, p_stats, p_stats + width,
            p_stats + 2 * width, _from_buffer(ctype, _contiguous_vector(gamma)),
            _from_buffer(ctype, _contiguous_vector(beta)), eps, n, training,
            _from_buffer(ctype, y3) + offset, outer, width, channels, inner, rows, cols)
        if status != 0:
            raise MemoryError("batch norm: no memory for the per-channel sums")
        return stats[0], stats[1], stats[2]

    def _bn_backward(self, dy3, x3, mean, invstd, gamma, n, training, dx3, c0, c1):
        (outer, channels, inner), width = x3.shape, c1 - c0
        rows, cols = _bn_blocks(outer, channels, inner)
        ctype, tag = _TYPES[x3.dtype]
        sums = np.empty((2, width))  # dgamma, dbeta
        p_sums = _from_buffer("double[]", sums)
        offset = c0 * inner
        status = self._bn_backward_kernels[tag](
            _from_buffer(ctype, dy3) + offset, _from_buffer(ctype, x3) + offset,
            _from_buffer("double[]", _float64(mean)), _from_buffer("double[]", _float64(invstd)),
            _from_buffer(ctype, _contiguous_vector(gamma)), n, training,
            _from_buffer(ctype, dx3) + offset, p_sums, p_sums + width,
            outer, width, channels, inner, rows, cols)
        if status != 0:
            raise MemoryError("batch norm: no memory for the per-channel sums")
        return sums[0], sums[1]

    def _running_update(self, running_mean, running_var, mean, var, momentum, n):
        """:func:`fastopt._bn_math.running_update` in C (the same float64 arithmetic),
        for two contiguous running arrays of one dtype; NumPy's otherwise."""
        dtype = running_mean.dtype
        if running_var.dtype != dtype or not (running_mean.flags.c_contiguous
                                              and running_var.flags.c_contiguous):
            _bn_math.running_update(running_mean, running_var, mean, var, momentum, n)
            return
        ctype, tag = _TYPES[dtype]
        self._bn_running[tag](_from_buffer(ctype, running_mean), _from_buffer(ctype, running_var),
                              _from_buffer("double[]", _float64(mean)),
                              _from_buffer("double[]", _float64(var)),
                              momentum, n, len(running_mean))

    def bn_sums(self, a, b, ka, kb, window):
        """Per channel c0 <= c < c1 (``window``) of (outer, C, inner) views: sum(a-ka),
        sum((a-ka)*(b-kb)) in float64 (``ka``, ``kb`` and the results hold the window's
        channels), from partial sums over a fixed blocking added in block order."""
        _contiguous(a, b)
        (c0, c1), (outer, channels, inner) = window, a.shape
        ka = _float64(ka)
        kb = ka if kb is ka else _float64(kb)
        rows, cols, s1, s2 = _tables.bn_partials(a.shape, c1 - c0)
        ctype, tag = _TYPES[a.dtype]
        pa = _ptr(ctype, a) + c0 * inner  # the window's first channel
        pb = pa if b is a else _ptr(ctype, b) + c0 * inner
        pka = _ptr("double[]", ka)
        self._bn_sums[tag](pa, pb, pka, pka if kb is ka else _ptr("double[]", kb), outer,
                           c1 - c0, channels, inner, rows, cols, _ptr("double[]", s1),
                           _ptr("double[]", s2))
        return s1[0], s2[0]  # the kernel adds the blocks into row 0, as bn_totals does

    def bn_affine(self, a, b, p, q, r, out, window):
        """``out = a*P + b*Q + R`` per channel of ``window`` (``(c0, c1)``; P, Q and R
        hold its channels), in the dtype (``a*P + R`` when b is None)."""
        _contiguous(a, b, out)
        (c0, c1), (outer, channels, inner) = window, a.shape
        ctype, tag = _TYPES[a.dtype]
        p, q, r = (None if v is None else np.ascontiguousarray(v, dtype=a.dtype)
                   for v in (p, q, r))
        pb = ffi.NULL if b is None else _ptr(ctype, b) + c0 * inner
        self._bn_affine[tag](_ptr(ctype, a) + c0 * inner, pb, _ptr(ctype, p), _ptr(ctype, q),
                             _ptr(ctype, r), _ptr(ctype, out) + c0 * inner, outer, c1 - c0,
                             channels, inner)


BACKEND = CBackend()
