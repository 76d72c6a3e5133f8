"""Shared fixtures: the backends under test, named in every test id.

One pytest process tests every backend that loads here. A test that depends on the
backend asks for one of the fixtures below and is collected once per backend, with the
name in its id (``test_x[numba-...]``); a test that does not depend on it asks for none
and runs once. The fixtures select the backend the way a user would: through
``FASTOPT_BACKEND`` for host arrays, and for ``"cuda"`` by handing device arrays
(``target.put``), which select it by themselves.

* ``backend``: every backend, the NumPy reference included.
* ``compiled_backend``: every backend but the reference (those compared with it).
* ``cpu_backend`` / ``cpu_compiled_backend``: the same, on the host only (features or
  sizes the CUDA simulator does not serve).

``"cuda"`` is there when a GPU is, or under Numba's CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``); its tests carry the ``cuda`` marker, so
``NUMBA_ENABLE_CUDASIM=1 pytest -m cuda`` runs exactly those.
"""

import numpy as np
import pytest

import fastopt

AVAILABLE = fastopt.available_backends()
CPU_BACKENDS = [name for name in ("numba", "c", "numpy") if name in AVAILABLE]
CPU_COMPILED = [name for name in CPU_BACKENDS if name != "numpy"]
DEVICE_BACKENDS = ["cuda"] if "cuda" in AVAILABLE else []


class Target:
    """A backend under test, and how arrays get to and from where it computes."""

    def __init__(self, name):
        self.name = name
        self.on_device = name == "cuda"

    def put(self, arrays):
        """``arrays`` (an array, or a list or dict of them) where this backend computes:
        copied to the device for ``"cuda"``, the same objects otherwise."""
        if isinstance(arrays, dict):
            return {k: self.put(v) for k, v in arrays.items()}
        if isinstance(arrays, (list, tuple)):
            return [self.put(a) for a in arrays]
        if not self.on_device:
            return arrays
        from numba import cuda

        return cuda.to_device(arrays)

    def get(self, arrays):
        """NumPy copies of arrays made by :meth:`put` (the same objects on the host)."""
        if isinstance(arrays, dict):
            return {k: self.get(v) for k, v in arrays.items()}
        if isinstance(arrays, (list, tuple)):
            return [self.get(a) for a in arrays]
        return arrays.copy_to_host() if self.on_device else arrays

    def __repr__(self):
        return f"Target({self.name!r})"


def _target(request, monkeypatch):
    name = request.param
    if name == "cuda":
        monkeypatch.delenv("FASTOPT_BACKEND", raising=False)
    else:
        monkeypatch.setenv("FASTOPT_BACKEND", name)
    return Target(name)


@pytest.fixture(params=CPU_BACKENDS + DEVICE_BACKENDS)
def backend(request, monkeypatch):
    return _target(request, monkeypatch)


@pytest.fixture(params=CPU_COMPILED + DEVICE_BACKENDS)
def compiled_backend(request, monkeypatch):
    return _target(request, monkeypatch)


@pytest.fixture(params=CPU_BACKENDS)
def cpu_backend(request, monkeypatch):
    return _target(request, monkeypatch)


@pytest.fixture(params=CPU_COMPILED)
def cpu_compiled_backend(request, monkeypatch):
    return _target(request, monkeypatch)


_FIXTURES = ("backend", "compiled_backend", "cpu_backend", "cpu_compiled_backend")


def pytest_collection_modifyitems(config, items):
    """Mark every test that runs on the CUDA backend with ``cuda``."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and any(callspec.params.get(f) == "cuda" for f in _FIXTURES):
            item.add_marker(pytest.mark.cuda)


def pytest_report_header(config):
    return f"fastopt backends under test: {', '.join(CPU_BACKENDS + DEVICE_BACKENDS)}"


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def tolerance(dtype):
    """Tolerances for a compiled backend against the reference (same operation order)."""
    return dict(rtol=2e-6, atol=1e-7) if np.dtype(dtype) == np.float32 else \
        dict(rtol=1e-13, atol=1e-15)


def thread_env(threads, backend):
    """Environment for a subprocess running ``backend`` on ``threads`` threads."""
    return {"NUMBA_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
            "FASTOPT_BACKEND": backend, "PATH": ""}


def torch_or_skip():
    return pytest.importorskip("torch")
