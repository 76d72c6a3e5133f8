"""Params as users give them (a list, a dict, or param groups) seen as a flat list of
arrays, and copies of them that keep every bit (host or device)."""

from collections.abc import Mapping

import numpy as np

from . import _device
from ._tensorset import memory_order


def is_array(x):
    """Whether ``x`` is a NumPy array or a CUDA device array."""
    return isinstance(x, np.ndarray) or _device.is_device_array(x)


def flat_params(params):
    """The arrays of ``params`` (a list, a dict, or a list of param-group dicts whose
    "params" is an array, a list or a dict), in order."""
    if isinstance(params, Mapping):
        return list(params.values())
    if not isinstance(params, (list, tuple)) or not params:
        raise TypeError("params must be a non-empty list, dict or list of param groups "
                        f"of arrays, got {type(params).__name__}")
    arrays = []
    for item in params:
        if isinstance(item, Mapping) and "params" in item:
            members = item["params"]
            arrays.extend(members.values() if isinstance(members, Mapping) else
                          [members] if is_array(members) else members)
        else:
            arrays.append(item)
    for i, a in enumerate(arrays):
        if not is_array(a):
            raise TypeError(f"param {i} must be an array, got {type(a).__name__}")
    return arrays


def plain(value):
    """A state_dict value as a plain Python scalar or tuple (np.load gives arrays)."""
    if isinstance(value, np.ndarray):
        return value.item() if value.ndim == 0 else tuple(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list):
        return tuple(value)
    return value


def copy_into(targets, sources):
    """``target[...] = source`` for each pair, bit for bit (device to device on a GPU)."""
    for target, source in zip(targets, sources):
        if target.size == 0:
            continue
        if isinstance(target, np.ndarray):
            np.copyto(target, source)
        else:
            target.copy_to_device(source)


def copy_buffer(arrays):
    """One byte buffer holding a copy of every (contiguous) array, and a view per array
    in its dtype, shape and memory order (8-byte aligned; on the device for device arrays). Fill or
    read it with :func:`copy_into`."""
    offsets, total = [], 0
    for a in arrays:
        offsets.append(total)
        total += -(-a.size * a.dtype.itemsize // 8) * 8
    if any(_device.is_device_array(a) for a in arrays):
        from numba import cuda

        buffer = cuda.device_array(max(total, 8), dtype=np.uint8)
    else:
        buffer = np.empty(max(total, 8), dtype=np.uint8)
    views = []
    for a, start in zip(arrays, offsets):
        flat = buffer[start:start + a.size * a.dtype.itemsize].view(a.dtype)
        views.append(flat.reshape(a.shape, order=memory_order(a)))
    return buffer, views
