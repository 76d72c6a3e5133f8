"""fastopt.distributed: in this process (one rank, no MPI needed), and over 2 and 3
ranks launched with the ``mpiexec`` that ``pip install 'fastopt[mpi]'`` brings
(tests/mpi_zero.py holds those checks; skipped when mpi4py is not installed)."""

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastopt
from fastopt.distributed import SingleProcess, ZeroRedundancyOptimizer, allreduce_gradients_

HERE = Path(__file__).resolve().parent


def model(rng):
    return [{"params": [rng.standard_normal((9, 4)).astype(np.float32),
                        rng.standard_normal(4).astype(np.float64)]},
            {"params": [rng.standard_normal(6).astype(np.float32)], "lr": 0.02}]


def copy_groups(groups):
    return [{**g, "params": [p.copy() for p in g["params"]]} for g in groups]


def arrays(groups):
    return [p for g in groups for p in g["params"]]


@pytest.mark.parametrize("cls, kw", [(fastopt.Adam, dict(lr=0.01, amsgrad=True)),
                                     (fastopt.SGD, dict(lr=0.1, momentum=0.9)),
                                     (fastopt.NAdam, dict(lr=0.01))])
def test_one_rank_is_the_plain_optimizer(cls, kw, cpu_backend, rng):
    ours = model(rng)
    ref = copy_groups(ours)
    zero = ZeroRedundancyOptimizer(ours, cls, comm=SingleProcess(), deterministic=True, **kw)
    plain = cls(ref, **kw)
    for step in range(5):
        grads = [rng.standard_normal(p.shape).astype(p.dtype) for p in arrays(ours)]
        zero.step(grads, grad_scale=2.0 if step == 2 else None)
        plain.step(grads, grad_scale=2.0 if step == 2 else None)
    for a, b in zip(arrays(ours), arrays(ref)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(RuntimeError, match="consolidate_state_dict"):
        zero.state_dict()
    zero.consolidate_state_dict()
    state = zero.state_dict()
    expected = plain.state_dict()
    assert list(state) == list(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(state[key], value)
    # the consolidated state loads into the plain optimizer and back
    again = cls(copy_groups(ours), **kw)
    again.load_state_dict(state)
    zero.load_state_dict(expected)
    assert zero.steps == plain.steps == 5


def test_no_comm_and_no_mpi4py_is_one_rank(monkeypatch, rng):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # as if not installed
    from fastopt import distributed

    assert isinstance(distributed.default_comm(), SingleProcess)
    grads = [rng.standard_normal(5), rng.standard_normal((2, 3)).astype(np.float32)]
    before = [g.copy() for g in grads]
    assert allreduce_gradients_(grads) is grads
    for a, b in zip(grads, before):
        np.testing.assert_array_equal(a, b)
    zero = ZeroRedundancyOptimizer([rng.standard_normal(4)], lr=0.1)
    assert zero.step([np.ones(4)]) and zero.steps == 1


def test_bad_input_is_refused_with_nothing_changed(cpu_backend, rng):
    groups = model(rng)
    before = [p.copy() for p in arrays(groups)]
    zero = ZeroRedundancyOptimizer(groups, fastopt.Adam, comm=SingleProcess(), lr=0.01)
    with pytest.raises(ValueError, match="shape"):
        zero.step([np.ones((9, 4), np.float32), np.ones(5), np.ones(6, np.float32)])
    with pytest.raises(ValueError, match="expected 3 grads"):
        zero.step([np.ones((9, 4), np.float32)])
    with pytest.raises(ValueError, match="grad_scale"):
        zero.step([np.ones(p.shape, p.dtype) for p in arrays(groups)], grad_scale=-1.0)
    bad = {"optimizer": "Adam", "steps": 1, "state.0.exp_avg": np.zeros((2, 2), np.float32)}
    with pytest.raises(ValueError, match="shape"):
        zero.load_state_dict(bad)
    for a, b in zip(arrays(groups), before):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="Invalid beta"):
        ZeroRedundancyOptimizer(model(rng), fastopt.Adam, comm=SingleProcess(), betas=(2, 0))
    with pytest.raises(ValueError, match="8-bit state"):
        ZeroRedundancyOptimizer(model(rng), fastopt.Adam8bit, comm=SingleProcess())
    with pytest.raises(TypeError, match="NumPy array"):
        allreduce_gradients_(["not an array"], comm=SingleProcess())
    with pytest.raises(ValueError, match="bucket_mb"):
        allreduce_gradients_([np.ones(3)], comm=SingleProcess(), bucket_mb=0)


def _mpiexec():
    """The mpiexec next to this Python (pip's mpich wheel puts it there), or on PATH."""
    if importlib.util.find_spec("mpi4py") is None:
        return None
    return shutil.which("mpiexec", path=os.pathsep.join(
        [os.path.dirname(sys.executable), os.environ.get("PATH", "")]))


MPIEXEC = _mpiexec()
needs_mpi = pytest.mark.skipif(MPIEXEC is None, reason="mpi4py and mpiexec are not installed "
                               "(pip install 'fastopt[mpi]')")


def run_ranks(n, *args):
    result = subprocess.run([MPIEXEC, "-n", str(n), sys.executable, str(HERE / "mpi_zero.py"),
                             *args], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.count(": ok") == n, result.stdout
    return result


@needs_mpi
@pytest.mark.parametrize("ranks", [2, 3])
def test_zero_over_ranks_matches_one_process(ranks):
    run_ranks(ranks)


@needs_mpi
def test_state_saved_at_two_ranks_loads_at_three_and_at_one(tmp_path, rng):
    path = tmp_path / "zero.npz"
    run_ranks(2, "save", str(path))
    run_ranks(3, "load", str(path))
    # One rank: ZeRO and the plain optimizer resume from it and step alike.
    saved = dict(np.load(path))
    state = {k: v for k, v in saved.items() if not k.startswith("param.")}
    sizes = (3, 2)  # tests/mpi_zero.py's two param groups

    def resumed():
        flat = [saved[f"param.{i}"].copy() for i in range(sum(sizes))]
        return [{"params": flat[:sizes[0]]}, {"params": flat[sizes[0]:], "lr": 0.02}]

    ours, ref = resumed(), resumed()
    zero = ZeroRedundancyOptimizer(ours, fastopt.Adam, comm=SingleProcess(), lr=0.01)
    plain = fastopt.Adam(ref, lr=0.01)
    zero.load_state_dict(state)
    plain.load_state_dict(state)
    assert zero.steps == plain.steps == 3
    grads = [rng.standard_normal(p.shape).astype(p.dtype) for p in arrays(ours)]
    zero.step(grads)
    plain.step(grads)
    for a, b in zip(arrays(ours), arrays(ref)):
        np.testing.assert_array_equal(a, b)


@needs_mpi
def test_distributed_benchmark_runs_at_one_and_two_ranks():
    from fastopt import bench_distributed, bench_report

    rows = bench_distributed.run(ranks=(1, 2), cases=("mlp",), rounds=1)
    assert [(r["case"], r["ranks"]) for r in rows] == [("mlp", 1), ("mlp", 2)]
    one, two = rows
    assert one["elements"] == two["elements"] == 269322
    assert one["zero state bytes per rank"] == one["full state bytes per rank"] == 8 * 269322
    assert two["zero state bytes per rank"] == 8 * -(-269322 // 2)  # half, rounded up
    for r in rows:
        for key in ("zero step", "allreduce + step", "allgather"):
            assert r[key]["median_ms"] >= r[key]["min_ms"] > 0
    text = bench_report.distributed_markdown(rows, {"fastopt": "x", "processor": "cpu",
                                                    "cpus": 2, "platform": "p"}, "cmd")
    assert "| mlp | 2 |" in text and "Made by `cmd`" in text
