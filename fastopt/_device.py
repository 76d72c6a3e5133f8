"""CUDA arrays on the host side: recognising them, viewing them, moving state.

fastopt accepts Numba device arrays and anything exposing
``__cuda_array_interface__`` (CuPy arrays, torch CUDA tensors), which it views as
Numba device arrays without copying. Under Numba's CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``) device arrays have no ``__cuda_array_interface__``;
``is_cuda_ndarray`` recognises them there and on a GPU. Nothing here imports
``numba.cuda`` unless a non-NumPy array comes by, so host-only use stays light.
"""

import numpy as np


def is_device_array(array):
    """Whether ``array`` lives on a CUDA device (never true for a NumPy array)."""
    if isinstance(array, np.ndarray) or array is None:
        return False
    if hasattr(array, "__cuda_array_interface__"):
        return True
    if type(array).__module__.startswith("numba"):
        from numba.cuda.cudadrv.devicearray import is_cuda_ndarray

        return is_cuda_ndarray(array)
    return False


def as_device_array(array):
    """A Numba device array viewing ``array`` (the same object if it is one)."""
    from numba.cuda.cudadrv.devicearray import is_cuda_ndarray

    if is_cuda_ndarray(array):
        return array
    from numba import cuda

    return cuda.as_cuda_array(array)


def device_id(array):
    """The ordinal of the device holding ``array`` (0 under the simulator)."""
    device = getattr(array, "device", None)  # CuPy: .device.id; torch: .device.index
    for name in ("id", "index"):
        if isinstance(getattr(device, name, None), int):
            return getattr(device, name)
    context = getattr(getattr(array, "gpu_data", None), "context", None)  # Numba
    return context.device.id if context is not None else 0


def memory_order(array):
    """'C' or 'F' for a contiguous device array."""
    return "C" if array.is_c_contiguous() else "F"


def is_contiguous(array):
    """Whether a device array is C- or F-contiguous."""
    return array.is_c_contiguous() or array.is_f_contiguous()


def address(array):
    """The device address of a device array's first element (0 when empty)."""
    if array.size == 0:
        return 0
    host = getattr(array, "_ary", None)  # the simulator keeps device data in host memory
    if host is not None:
        return host.ctypes.data
    return array.__cuda_array_interface__["data"][0]


def full(size, value, dtype):
    """A new 1-D device array of ``size`` elements set to ``value``."""
    from numba import cuda

    return cuda.to_device(np.full(size, value, dtype=dtype))


def to_host(array):
    """A NumPy copy of a device array (this synchronises with the device)."""
    return array.copy_to_host()


def write(target, source):
    """Copy host data ``source`` into the device array ``target`` (same shape)."""
    if target.size == 0:
        return
    order = memory_order(target)
    target.copy_to_device(np.asarray(source, dtype=target.dtype, order=order))


def check_same_device(arrays, where):
    """Refuse device arrays that do not all sit on one device."""
    ids = {device_id(a) for a in arrays}
    if len(ids) > 1:
        raise ValueError(f"{where} are on different CUDA devices {sorted(ids)}; "
                         "fastopt runs a step on one device")
