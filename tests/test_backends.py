"""The backend registry."""

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

import fastopt
from fastopt import backends
from fastopt.rules import RULES


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


def test_only_openmp_backends_choose_the_openmp_wait_policy():
    # The process's one OpenMP runtime reads OMP_WAIT_POLICY when it loads, for every
    # library that shares it (torch too): the numpy backend, and the benchmark module,
    # which builds numpy-backend optimizers when imported, must leave it as it is, so
    # that `fastopt bench` can start torch's runtime with torch's own default.
    openmp = [n for n in ("numba", "c") if n in fastopt.available_backends()]
    if not openmp:
        pytest.skip("needs the numba or the c backend")
    code = ("import os, numpy as np, fastopt, fastopt.benchmark\n"
            "fastopt.Adam([np.ones(3)], backend='numpy').step([np.ones(3)])\n"
            "print(os.environ.get('OMP_WAIT_POLICY'))\n"
            f"fastopt.Adam([np.ones(3)], backend={openmp[0]!r}).step([np.ones(3)])\n"
            "print(os.environ.get('OMP_WAIT_POLICY'))\n")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=env).stdout.split()
    assert out == ["None", "PASSIVE"]


def _without(modules):
    """Python code that makes the given modules unimportable, as if not installed."""
    return (
        "import sys, importlib.util\n"
        f"hidden = {modules!r}\n"
        "for name in hidden: sys.modules[name] = None\n"
        "real = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda n, *a: None if n in hidden else real(n, *a)\n"
    )


_STEP_AND_REPORT = (
    "import numpy as np, fastopt\n"
    "from fastopt import backends\n"
    "p = [np.ones(3)]\n"
    "opt = fastopt.Adam(p)\n"
    "opt.step([np.ones(3)])\n"
    "print(backends.default_backend(), opt.backend, ','.join(fastopt.available_backends()))\n"
    "print(repr(p[0].tolist()))\n"
)


def _run_hidden(modules):
    out = subprocess.run([sys.executable, "-c", _without(modules) + _STEP_AND_REPORT],
                         capture_output=True, text=True, check=True, env={"PATH": ""})
    first, second = out.stdout.splitlines()
    default, used, available = first.split()
    return default, used, available.split(","), second


def _one_adam_step_on_numpy():
    p = [np.ones(3)]
    fastopt.Adam(p, backend="numpy").step([np.ones(3)])
    return repr(p[0].tolist())


C_BUILT = importlib.util.find_spec("fastopt._fastopt_c") is not None


def test_without_numba_the_default_is_c():
    default, used, available, params = _run_hidden(["numba"])
    expected = "c" if C_BUILT else "numpy"
    assert (default, used) == (expected, expected)
    assert "numba" not in available and available[-1] == "numpy"
    assert params == _one_adam_step_on_numpy()


def test_without_numba_or_c_the_default_is_numpy():
    default, used, available, params = _run_hidden(["numba", "fastopt._fastopt_c"])
    assert (default, used, available) == ("numpy", "numpy", ["numpy"])
    assert params == _one_adam_step_on_numpy()


def test_c_rule_headers_are_generated_from_the_rules():
    # csrc/fo_rules.h (scalar indices, rule ids, variant table) and fo_rule_bodies.h are
    # what fastopt.rules._c_header generates now: the C kernels read the rules' layout.
    from fastopt.rules import _c_header as c_header

    csrc = os.path.join(os.path.dirname(__file__), os.pardir, "csrc")
    for name, text in (("fo_rules.h", c_header.rules_header()),
                       ("fo_rule_bodies.h", c_header.bodies_header())):
        with open(os.path.join(csrc, name)) as f:
            assert f.read() == text, f"csrc/{name} is stale: run python -m fastopt.rules._c_header"
    for rule in RULES.values():
        assert os.path.exists(os.path.join(csrc, "rules", rule.name + ".h")), rule.name


@pytest.mark.skipif(not C_BUILT, reason="the C extension is not built")
def test_c_has_exactly_the_rules_variants():
    # Every flag combination a rule can be called with is compiled; every other index,
    # an unknown rule among them, is refused rather than run as some other rule.
    from fastopt import _fastopt_c

    valid = {rule.variant(flags) for rule in RULES.values() for flags in rule.variants()}
    assert len(valid) == sum(len(rule.variants()) for rule in RULES.values())
    for has_variant in (_fastopt_c.lib.fo_has_variant_f32, _fastopt_c.lib.fo_has_variant_f64):
        for index in range(-1, 16 * len(RULES) + 16):
            assert bool(has_variant(index)) == (index in valid), index


@pytest.mark.parametrize("parts", [1, 2, 3, 8])
@pytest.mark.parametrize("sizes", [[200704, 256, 65536, 256, 2560, 10],  # 784-256-256-10
                                   [5, 3], [1, 0, 7, 100003, 0], [0, 0]])
def test_balanced_chunk_table_gives_each_thread_an_equal_share(sizes, parts):
    # The kernels split rows statically: thread k runs the k-th of `parts` equal runs.
    from fastopt.backends._tables import CHUNK, balanced_chunk_table

    rows = balanced_chunk_table(sizes, parts)
    assert rows.shape[1] == 3 and len(rows) % parts == 0
    lengths = rows[:, 2] - rows[:, 1]
    assert (lengths >= 0).all() and lengths.max(initial=0) <= CHUNK
    covered = [np.zeros(n, int) for n in sizes]
    for t, start, stop in rows:
        covered[t][start:stop] += 1
    assert all((c == 1).all() for c in covered)  # every element exactly once
    shares = lengths.reshape(parts, -1).sum(axis=1) if len(rows) else np.zeros(parts)
    assert shares.sum() == sum(sizes)
    # Each run ends within 16 elements before its ideal end (cuts move back to a
    # multiple of 16 within the tensor), so each share is within 16 of the ideal.
    assert np.abs(shares - sum(sizes) / parts).max() < 16


def check_batchnorm_window(runner, shape, to_device=np.asarray, to_host=np.asarray):
    """bn_sums / bn_affine of ``runner`` on channels 2..4 only: the window's sums, and
    out written there and nowhere else; checked against plain NumPy."""
    rng = np.random.default_rng(4)
    a, b = (rng.standard_normal(shape).astype(np.float32) for _ in range(2))
    window, w = (2, 5), slice(2, 5)
    ka, kb = rng.standard_normal(3), rng.standard_normal(3)
    s1, s2 = runner.bn_sums(to_device(a), to_device(b), ka, kb, window)
    u = a[:, w].astype(np.float64) - ka[None, :, None]
    v = b[:, w].astype(np.float64) - kb[None, :, None]
    np.testing.assert_allclose(s1, u.sum(axis=(0, 2)), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(s2, (u * v).sum(axis=(0, 2)), rtol=1e-12, atol=1e-12)
    p, q, r = (rng.standard_normal(3).astype(np.float32) for _ in range(3))
    for second in (None, b):
        out = to_device(np.full(shape, 7.0, np.float32))
        runner.bn_affine(to_device(a), None if second is None else to_device(second), p,
                         None if second is None else q, r, out, window)
        out = to_host(out)
        want = a[:, w] * p[None, :, None] + r[None, :, None] if second is None else \
            (a[:, w] * p[None, :, None] + b[:, w] * q[None, :, None]) + r[None, :, None]
        np.testing.assert_allclose(out[:, w], want, rtol=1e-6, atol=1e-6)
        assert (out[:, :2] == 7).all() and (out[:, 5:] == 7).all()


@pytest.mark.parametrize("name", [b for b in fastopt.available_backends() if b != "cuda"])
@pytest.mark.parametrize("shape", [(5, 7, 90), (4, 6, 3), (9, 11, 1)])
def test_batchnorm_primitives_honour_a_channel_window(name, shape):
    check_batchnorm_window(backends.get_backend(name), shape)


@pytest.mark.parametrize("make", [lambda: np.ones((4, 5)),
                                  lambda: np.asfortranarray(np.ones((4, 5))),
                                  lambda: np.ones(7, np.float32), lambda: np.ones(()),
                                  lambda: np.ones((3, 0))])
def test_flat_view_never_copies(make):
    from fastopt._tensorset import flat_view

    array = make()
    view = flat_view(array)
    assert view.ndim == 1 and view.size == array.size
    assert view.base is not None or view is array
    if array.size:
        assert np.shares_memory(view, array)
        view[0] = 42.0
        assert 42.0 in array
