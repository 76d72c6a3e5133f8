"""What keeps a step whole: no overlapping arrays, no interrupt half way.

* Overlaps. A fused kernel reads and writes each element of each array once, in
  parallel; two arrays that share memory (two params that are views of one buffer, a
  grad that is its param shifted by one element, one array passed as two moments)
  would make the result depend on the order the threads run in. Such arrays are
  refused before anything is written. A grad that *is* its param (the same memory,
  element for element) is fine: each element is read before it is written.
* Ctrl-C. A step over several param groups or dtypes is several kernel calls; a
  KeyboardInterrupt between two of them would leave some groups stepped and others
  not. :func:`deferred_interrupt` holds SIGINT back while the calls run and raises
  KeyboardInterrupt right after them, so a step is applied whole or not at all.
"""

import bisect
import signal
import threading

import numpy as np

from . import _device
from .backends import _tables


def span(array):
    """``(start, stop)`` byte addresses of a contiguous array's data (host or device)."""
    if isinstance(array, np.ndarray):
        start = _tables.address(array)
    else:
        start = _device.address(array)
    return start, start + array.size * array.dtype.itemsize


def _root(array):
    """The object at the end of an array's chain of ``.base``: the owner of its memory."""
    while isinstance(array, np.ndarray) and array.base is not None:
        array = array.base
    return array


class Spans:
    """The memory of a set of arrays that must not overlap one another, sorted, so
    that a grad can be checked against all of them in O(log n).

    Most grads are new arrays that own their memory; such a grad can only overlap these
    arrays if it is the owner of one of them, which a set of ids tells in a fraction of
    a microsecond. (Only when every array here lives in memory NumPy allocated: memory
    that a foreign buffer exposes could be exposed by another object too.)"""

    def __init__(self, arrays, names):
        roots = [_root(a) for a in arrays]
        self._roots = {id(r) for r in roots}  # alive while the arrays are
        self._fast = all(type(r) is np.ndarray for r in roots)
        # For a caller's quick test: an array that owns its memory (no base) and is
        # none of these owners cannot overlap these arrays.
        self.owners = self._roots if self._fast else None
        self._spans = [span(a) for a in arrays]  # in the order given
        items = sorted((s + (name,) for s, a, name in zip(self._spans, arrays, names)
                        if a.size), key=lambda item: item[0])
        for (_, e0, n0), (s1, _, n1) in zip(items, items[1:]):
            if s1 < e0:
                a, b = sorted((n0, n1))
                raise ValueError(f"{a} and {b} share memory; fastopt updates each array "
                                 "in place in parallel, so they must not overlap")
        self._starts = [s for s, _, _ in items]
        self._items = items

    def check_grads(self, grads, where):
        """Refuse any of ``grads`` (contiguous, 1-D; grad i is param i's) that overlaps
        an array here, unless it is exactly the memory of its own param. ``where(i)``
        names grad i in the error."""
        roots = self._roots if self._fast else None
        for i, grad in enumerate(grads):
            if roots is not None and isinstance(grad, np.ndarray):
                root = grad
                while root.base is not None:
                    root = root.base
                    if not isinstance(root, np.ndarray):
                        break
                else:
                    if id(root) not in roots:
                        continue  # memory of its own, apart from all of these arrays
            if grad.size:
                self._check(grad, i, where)

    def _check(self, grad, index, where):
        start, stop = span(grad)
        i = bisect.bisect_right(self._starts, start) - 1
        for s, e, name in self._items[max(i, 0):i + 2]:
            if s < stop and start < e:
                if (s, e) == (start, stop) == self._spans[index]:
                    continue  # the grad is its param: allowed
                raise ValueError(f"{where(index)} overlaps the memory of {name}; pass a "
                                 "separate array (only a grad that is its own param may "
                                 "share memory with it)")
            if s >= stop:
                break


try:  # the C module behind `signal`: the same calls without its enum wrapping (~20x faster)
    import _signal as _sig
except ImportError:  # pragma: no cover - other Pythons
    _sig = signal

_SIGINT = int(signal.SIGINT)


class _DeferredInterrupt:
    """See :func:`deferred_interrupt`. A class rather than a generator: entering and
    leaving it costs well under a microsecond."""

    __slots__ = ("_previous", "_received")

    def __enter__(self):
        self._previous = None
        if _sig.getsignal(_SIGINT) is _sig.default_int_handler \
                and threading.get_ident() == _MAIN:
            self._received = False
            self._previous = _sig.signal(_SIGINT, self._record)
        return self

    def _record(self, signum, frame):
        self._received = True

    def __exit__(self, *exc):
        if self._previous is not None:
            _sig.signal(_SIGINT, self._previous)
            if self._received:  # a Ctrl-C outranks an error the block raised
                raise KeyboardInterrupt
        return False


_MAIN = threading.main_thread().ident


def deferred_interrupt():
    """A context that holds SIGINT back while its block runs, then raises
    KeyboardInterrupt if one came.

    Only in the main thread and only while Python's own handler is installed: a
    program with its own SIGINT handler keeps it, and other threads never see signals.
    """
    return _DeferredInterrupt()
