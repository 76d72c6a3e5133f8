"""The backend registry: which implementation runs a kernel.

Precedence: the ``backend=`` argument, then the ``FASTOPT_BACKEND`` environment
variable, then the default (``"numba"`` when Numba is installed, else ``"c"`` when the
compiled extension is present, else ``"numpy"``). CUDA device arrays select ``"cuda"``
by themselves (:func:`resolve_for`); it is never the default for host arrays.
Backends are imported on first use, so ``import fastopt`` stays fast and works
without Numba.
"""

import importlib
import importlib.util
import os
import warnings

from numpy import ndarray as _ndarray

_MODULES = {
    "numba": "fastopt.backends.numba_cpu",
    "cuda": "fastopt.backends.numba_cuda",
    "c": "fastopt.backends.c_ffi",
    "numpy": "fastopt.backends.numpy_ref",
}
NAMES = tuple(_MODULES)
_loaded = {}
_failures = {}

# True in a process forked after a threaded backend loaded. Neither Numba's threading
# layer nor GNU OpenMP's pool survives fork(): in the child, a Numba parallel kernel
# aborts the process and an OpenMP parallel region waits forever for threads that
# were not copied. There fastopt runs serially: "numba" resolves to "c" (the same
# updates, bit for bit) with OpenMP held to one thread, or to "numpy" without the C
# build. Optimizers built before the fork rebind at their next step.
FORKED = False
_FORK_WARNED = False


def _after_fork_in_child():
    global FORKED
    if FORKED or "numba" in _loaded or "c" in _loaded:
        FORKED = True
        if "c" in _loaded:
            _loaded["c"].run_serially()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _serial_in_child(name):
    """The backend that stands in for ``name`` in a forked child (see FORKED)."""
    global _FORK_WARNED
    if name != "numba":
        return name
    replacement = "c" if _installed("c") and "c" not in _failures else "numpy"
    if replacement == "c":
        try:
            _load("c")
        except RuntimeError:
            replacement = "numpy"
    if not _FORK_WARNED:
        _FORK_WARNED = True
        warnings.warn("fastopt: this process was forked after fastopt's thread pools "
                      f"started, which do not survive fork(); backend 'numba' runs as "
                      f"{replacement!r} on one thread here (the same results). Use the "
                      "'spawn' or 'forkserver' start method to keep threads in workers",
                      RuntimeWarning, stacklevel=3)
    return replacement


def _passive_openmp_threads():
    """Ask OpenMP (the numba and c backends' thread pools) to sleep between kernels
    rather than spin, unless the user chose otherwise. A NumPy trainer alternates our
    kernels with BLAS calls; spinning pool threads on either side starve the other's
    threads (measured: a 64-2048-10 MLP epoch 5x slower on 2 cores). OpenMP reads this
    when it loads, so it must be set before the first OpenMP backend is imported. A
    process has one OpenMP runtime (libgomp.so.1: torch's copy, loaded first, serves
    fastopt too, and the other way round), so the policy of whichever loads first
    holds for both; the numpy backend, which runs no OpenMP, leaves it alone."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _load(name):
    backend = _loaded.get(name)
    if backend is None:
        if name != "numpy":
            _passive_openmp_threads()
        if name in _failures:
            raise RuntimeError(f"backend {name!r} is not available here: {_failures[name]}")
        try:
            backend = _loaded[name] = importlib.import_module(_MODULES[name]).BACKEND
            if FORKED and name == "c":
                backend.run_serially()
        except Exception as error:  # not installed (ImportError), or cannot start here
            _failures[name] = error
            raise RuntimeError(f"backend {name!r} is not available here: {error}") from error
    return backend


def _installed(name):
    if name in ("numba", "cuda"):
        return importlib.util.find_spec("numba") is not None
    if name == "c":
        return importlib.util.find_spec("fastopt._fastopt_c") is not None
    return True


def default_backend():
    """The backend used when neither the argument nor FASTOPT_BACKEND names one: the
    first of numba, c and numpy that loads. One that is installed but fails to load
    (say, Numba on a machine where it cannot compile) is passed over with a warning."""
    if "numba" in _loaded:  # the first choice, already loaded: the answer (0.05 us, not 0.3)
        return "numba"
    for name in ("numba", "c"):
        if not _installed(name) or name in _failures:
            continue
        try:
            _load(name)
        except RuntimeError as error:
            if not isinstance(_failures.get(name), ImportError):
                warnings.warn(f"fastopt: {error}; using the next backend", RuntimeWarning,
                              stacklevel=2)
            continue
        return name
    return "numpy"


def _environment_reader(name):
    """A function giving environment variable ``name``'s value (None when unset), which
    the call path reads on every call. ``os.environ.get`` takes about 1 us (it encodes
    the key and raises KeyError inside when the variable is unset); the mapping behind
    it, which ``os.environ[...] = ...`` and ``del`` keep up to date, answers in 0.1 us
    (where it is there, as on every CPython)."""
    data = getattr(os.environ, "_data", None)
    try:
        key, decode = os.environ.encodekey(name), os.environ.decodevalue
    except (AttributeError, TypeError):
        data = None
    if not isinstance(data, dict):
        return lambda: os.environ.get(name)

    def read():
        value = data.get(key)
        return None if value is None else decode(value)
    return read


environment_choice = _environment_reader("FASTOPT_BACKEND")


def resolve_name(backend=None):
    """The backend name that applies: argument, then FASTOPT_BACKEND, then default."""
    name = backend if backend is not None else environment_choice() or None
    if name is None:
        name = default_backend()
    elif not isinstance(name, str) or name not in NAMES:
        source = "backend" if backend is not None else "FASTOPT_BACKEND"
        raise ValueError(f"{source} must be one of {', '.join(map(repr, NAMES))}; "
                         f"got {name!r}")
    return _serial_in_child(name) if FORKED else name


def resolve_for(on_device, backend=None):
    """The backend name for arrays on the host (``on_device`` False) or on a CUDA
    device: device arrays select ``"cuda"`` (FASTOPT_BACKEND does not apply to them),
    and host arrays are refused by ``"cuda"`` rather than copied every step."""
    if on_device:
        if backend is not None and backend != "cuda":
            resolve_name(backend)  # a bad name gets its own message
            raise TypeError(f"backend {backend!r} runs on the CPU but the arrays are CUDA "
                            "device arrays; use backend='cuda' (or leave it out)")
        return "cuda"
    name = resolve_name(backend)
    if name == "cuda":
        raise TypeError("backend 'cuda' needs CUDA device arrays (Numba device arrays, or "
                        "arrays with __cuda_array_interface__ such as CuPy's) but got NumPy "
                        "arrays; fastopt does not copy host arrays to the device each step. "
                        "Move them once with numba.cuda.to_device, or use a CPU backend")
    return name


def placement(arrays, where="arrays"):
    """True when every array is a CUDA device array, False when none is; mixed host
    and device arrays, or device arrays on different devices, are refused."""
    if all(type(a) is _ndarray for a in arrays):  # host arrays: the common case
        return False
    from .. import _device

    flags = [_device.is_device_array(a) for a in arrays]
    if any(flags) and not all(flags):
        raise TypeError(f"{where} mix NumPy (host) arrays and CUDA device arrays; "
                        "give all of them on one side")
    if flags and flags[0]:
        _device.check_same_device(arrays, where)
        return True
    return False


def get_backend(backend=None):
    """The backend object for a name (or for the default, see :func:`resolve_name`)."""
    return _load(resolve_name(backend))


def available_backends():
    """The names of the backends that load on this machine, in order of preference."""
    names = []
    for name in NAMES:
        if not _installed(name):
            continue
        try:
            _load(name)
        except RuntimeError:
            continue
        names.append(name)
    return names
