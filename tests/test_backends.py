"""The backend registry."""

import subprocess
import sys

import numpy as np
import pytest

import fastopt
from fastopt import backends


def test_available_backends_lists_the_reference():
    names = fastopt.available_backends()
    assert "numpy" in names
    assert set(names) <= set(backends.NAMES)


def test_argument_beats_environment(monkeypatch):
    monkeypatch.setenv("FASTOPT_BACKEND", "numpy")
    assert backends.resolve_name(None) == "numpy"
    assert fastopt.SGD([np.ones(2)]).backend == "numpy"
    available = [n for n in fastopt.available_backends() if n != "numpy"]
    if available:
        assert fastopt.SGD([np.ones(2)], backend=available[0]).backend == available[0]


def test_bad_environment_value_is_named(monkeypatch):
    monkeypatch.setenv("FASTOPT_BACKEND", "fortran")
    with pytest.raises(ValueError, match="FASTOPT_BACKEND"):
        fastopt.SGD([np.ones(2)])


def test_import_is_light():
    # import fastopt must not import numba (it is loaded on first use).
    code = "import sys, fastopt; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={"PATH": "", "FASTOPT_BACKEND": ""})
    assert out.stdout.strip() == "False"


def test_without_numba_the_default_falls_back():
    # Simulate a machine where numba cannot be imported.
    code = (
        "import sys\n"
        "sys.modules['numba'] = None\n"
        "import importlib.util\n"
        "real = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda n, *a: None if n == 'numba' else real(n, *a)\n"
        "import numpy as np, fastopt\n"
        "from fastopt import backends\n"
        "p = [np.ones(3)]\n"
        "opt = fastopt.Adam(p)\n"
        "opt.step([np.ones(3)])\n"
        "print(backends.default_backend(), opt.backend, 'numba' in fastopt.available_backends())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={"PATH": ""})
    default, used, numba_listed = out.stdout.split()
    assert default in ("c", "numpy") and used == default and numba_listed == "False"
