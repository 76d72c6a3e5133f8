"""Argument checks shared by every backend, run before anything is written."""

import math
import numbers

import numpy as np

from . import _device
from ._tensorset import memory_order

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def param(array, where, device=False):
    """Refuse anything but a writable, contiguous float32/float64 ndarray (with
    ``device``: a contiguous float32/float64 CUDA array, returned as a Numba view)."""
    if device:
        return _device_array(array, where)
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{where} must be a NumPy array, got {type(array).__name__}")
    if array.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{where} must be float32 or float64, got {array.dtype}")
    if not array.flags.writeable:
        raise ValueError(f"{where} is read-only; fastopt updates arrays in place")
    if not (array.flags.c_contiguous or array.flags.f_contiguous):
        raise ValueError(f"{where} is not contiguous (a strided view); pass a contiguous "
                         "array, or copy it and write the result back yourself")
    return array


def _as_device(array, where):
    if not _device.is_device_array(array):
        raise TypeError(f"{where} must be a CUDA device array like the params, got "
                        f"{type(array).__name__}; mixed host and device arrays are refused")
    return _device.as_device_array(array)


def _device_array(array, where):
    array = _as_device(array, where)
    if array.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{where} must be float32 or float64, got {array.dtype}")
    if not _device.is_contiguous(array):
        raise ValueError(f"{where} is not contiguous (a strided view); pass a contiguous "
                         "array")
    return array


def flat_grad(grad, like, where):
    """``grad`` checked against its param ``like``, as 1-D in the param's memory order
    (a device param needs a device grad, already in that order: no hidden copy)."""
    on_device = not isinstance(like, np.ndarray)
    if on_device:
        grad = _as_device(grad, where)
    elif not isinstance(grad, np.ndarray):
        raise TypeError(f"{where} must be a NumPy array, got {type(grad).__name__}")
    if grad.dtype != like.dtype:
        raise TypeError(f"{where} has dtype {grad.dtype} but its param has {like.dtype}; "
                        "fastopt does not cast gradients")
    if grad.shape != like.shape:
        raise ValueError(f"{where} has shape {grad.shape} but its param has {like.shape}")
    if on_device and not _device.is_contiguous(grad):
        raise ValueError(f"{where} is not contiguous (a strided view); pass a contiguous "
                         "array")
    order = memory_order(like)
    if on_device and grad.size > 1 and grad.ndim > 1 and memory_order(grad) != order:
        raise ValueError(f"{where} is {memory_order(grad)}-ordered but its param is "
                         f"{order}-ordered; device grads are not reordered (that would "
                         "copy them every step)")
    return grad.ravel(order=order)


def plain_flat_grads(grads, dtypes, params, spans, where):
    """``grads`` as 1-D C-order arrays when each is a NumPy array of exactly its param's
    dtype (``dtypes[i]``: a C-contiguous param's, None for a param this does not take)
    and shape: the common case, told in a few operations. (``ravel`` views a
    C-contiguous grad and copies any other, as :func:`flat_grad` does.) None for
    anything else, which :func:`flat_grad` then takes, with its error. A grad that
    overlaps the params' or states' memory (``spans``, a :class:`fastopt._safety.Spans`)
    is refused here, ``where(i)`` naming it."""
    owners = spans.owners  # None where owning its memory does not tell
    apart = owners is not None
    flat = []
    for g, dtype, p in zip(grads, dtypes, params):
        if type(g) is not np.ndarray or g.dtype is not dtype or g.shape != p.shape:
            return None
        if apart and (g.base is not None or id(g) in owners):
            apart = False  # a view, or one of the arrays: see where its memory lies
        flat.append(g.ravel())
    if not apart:
        spans.check_grads(flat, where)
    return flat


def plain_dtypes(params):
    """For :func:`plain_flat_grads`: each param's dtype, or None where a grad always
    needs :func:`flat_grad` (a device param, or one not C-contiguous, whose grads are
    reordered)."""
    return [p.dtype if isinstance(p, np.ndarray) and p.flags.c_contiguous else None
            for p in params]


def state(array, like, where):
    """A caller-supplied state array: a param-like array of the param's shape and dtype."""
    array = param(array, where, device=not isinstance(like, np.ndarray))
    if array.shape != like.shape or array.dtype != like.dtype:
        raise ValueError(f"{where} must have shape {like.shape} and dtype {like.dtype}, "
                         f"got {array.shape} {array.dtype}")
    if memory_order(array) != memory_order(like) and array.ndim > 1 and array.size > 1:
        raise ValueError(f"{where} must have its param's memory order "
                         f"({memory_order(like)})")
    return array


def real(value, name):
    """A real, finite number as a Python float."""
    if type(value) is float and math.isfinite(value):  # the common case, without ABCs
        return value
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.floating,
                                                         np.integer)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def nonnegative(value, name):
    """A finite number >= 0."""
    value = real(value, name)
    if value < 0.0:
        raise ValueError(f"Invalid {name}: {value} (must be >= 0)")
    return value


def unit_interval(value, name):
    """A number in [0, 1)."""
    value = real(value, name)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"Invalid {name}: {value} (must be in [0, 1))")
    return value


def grad_scale(value):
    """``None``, or a finite positive divisor for every gradient."""
    if value is None:
        return None
    value = real(value, "grad_scale")
    if value <= 0.0:
        raise ValueError(f"grad_scale must be > 0, got {value}")
    return value


def boolean(value, name):
    """A Python or NumPy boolean."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return bool(value)
