"""Gradient utilities: global norm, norm clipping, finiteness.

Norms are sums of squares accumulated in float64 over a fixed chunking of the data
and combined in chunk order, so the result is bit-identical whatever the number of
threads. Clipping inside the optimizer step, with no second pass over the gradients::

    norm = global_norm(grads)
    opt.step(grads, grad_scale=max(1.0, norm / max_norm))

gives the same update as ``clip_grad_norm_(grads, max_norm)`` then ``opt.step(grads)``
(up to torch's ``1e-6`` guard in the clipping coefficient).
"""

import math
from collections.abc import Mapping

import numpy as np

from . import _device, _validate, backends
from ._tensorset import flat_view


def _arrays(grads):
    """The arrays of a gradient structure (an array, a list/tuple, or a dict)."""
    if isinstance(grads, np.ndarray):
        items = [grads]
    elif isinstance(grads, Mapping):
        items = list(grads.values())
    elif isinstance(grads, (list, tuple)):
        items = list(grads)
    else:
        raise TypeError(f"grads must be an array, a list or a dict of arrays; "
                        f"got {type(grads).__name__}")
    for i, g in enumerate(items):
        if not isinstance(g, np.ndarray) and not _device.is_device_array(g):
            raise TypeError(f"grad {i} must be a NumPy or CUDA array, got "
                            f"{type(g).__name__}")
        if g.dtype not in _validate.FLOAT_DTYPES:
            raise TypeError(f"grad {i} must be float32 or float64, got {g.dtype}")
    return items


def _flats_and_backend(items, backend):
    """The arrays as 1-D contiguous views, and the backend that runs on them."""
    on_device = backends.placement(items, "grads")
    runner = backends.get_backend(backends.resolve_for(on_device, backend))
    if on_device:
        return [_flat(_validate.param(g, f"grad {i}", device=True))
                for i, g in enumerate(items)], runner
    return [_flat(g) for g in items], runner


def _flat(array):
    """A 1-D view in memory order (a contiguous copy of a strided host array)."""
    if not isinstance(array, np.ndarray) or array.flags.c_contiguous \
            or array.flags.f_contiguous:
        return flat_view(array)  # device arrays were checked contiguous
    return np.ascontiguousarray(array).ravel()


def _by_dtype(flats):
    groups = {}
    for a in flats:
        groups.setdefault(a.dtype, []).append(a)
    return list(groups.values())


def _all_finite_flat(flats, backend):
    return all(backend.all_finite(group) for group in _by_dtype(flats))


def all_finite(grads, *, backend=None):
    """True when no gradient holds NaN or Inf (one compiled pass per dtype)."""
    flats, runner = _flats_and_backend(_arrays(grads), backend)
    return _all_finite_flat(flats, runner)


def global_norm(grads, *, backend=None):
    """The L2 norm of all gradients together, as a Python float (float64 accumulation)."""
    flats, runner = _flats_and_backend(_arrays(grads), backend)
    partials = [runner.chunk_sums_of_squares(group) for group in _by_dtype(flats)]
    return math.sqrt(math.fsum(float(x) for part in partials for x in part))


def clip_grad_norm_(grads, max_norm, *, error_if_nonfinite=False, backend=None):
    """Scale the gradients in place so that their global L2 norm is at most ``max_norm``.

    torch semantics: ``coef = min(1, max_norm / (total_norm + 1e-6))``, every gradient is
    multiplied by ``coef`` (cast to its dtype), and the norm before clipping is returned.
    """
    max_norm = _validate.real(max_norm, "max_norm")
    items = _arrays(grads)
    for i, g in enumerate(items):
        if _device.is_device_array(g):
            raise TypeError("clip_grad_norm_ scales NumPy arrays; on CUDA arrays clip "
                            "inside the step instead: opt.step(grads, grad_scale="
                            "max(1.0, global_norm(grads) / max_norm))")
        if not g.flags.writeable:
            raise ValueError(f"grad {i} is read-only; clipping scales it in place")
    total = global_norm(items, backend=backend)
    if not math.isfinite(total):
        if error_if_nonfinite:
            raise RuntimeError(f"the total norm of the gradients is {total}; "
                               "pass error_if_nonfinite=False to clip anyway")
    coef = min(1.0, max_norm / (total + 1e-6))
    for g in items:
        g *= g.dtype.type(coef)
    return total
