"""Shared fixtures. The suite runs on the backend that FASTOPT_BACKEND selects (the
default otherwise) and compares it with the NumPy reference backend."""

import os

import numpy as np
import pytest

import fastopt.backends

BACKEND = fastopt.backends.resolve_name(None)


def pytest_report_header(config):
    return f"fastopt backend under test: {BACKEND} (FASTOPT_BACKEND={os.environ.get('FASTOPT_BACKEND')!r})"


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def tolerance(dtype):
    """Tolerances for a compiled backend against the reference (same operation order)."""
    return dict(rtol=2e-6, atol=1e-7) if np.dtype(dtype) == np.float32 else \
        dict(rtol=1e-13, atol=1e-15)


def thread_env(threads):
    """Environment for a subprocess running the backend under test on ``threads`` threads."""
    return {"NUMBA_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
            "FASTOPT_BACKEND": BACKEND, "PATH": ""}


def torch_or_skip():
    return pytest.importorskip("torch")
