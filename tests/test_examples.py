"""The examples run (at a small size) and show what they claim: the same training
curves with fastopt swapped in."""

import importlib.util
import pathlib

import numpy as np
import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_numpy_mlp_with_batchnorm_trains_the_same(capsys):
    pytest.importorskip("sklearn")
    runs = _load("numpy_mlp_batchnorm").main(["--quick", "--hidden", "128"])
    numpy_run, fast_run = runs["numpy"], runs["fastopt"]
    assert len(numpy_run) == len(fast_run) == 3
    for a, b in zip(numpy_run, fast_run):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-9)
        assert b["val_acc"] == a["val_acc"]
    assert fast_run[-1]["val_acc"] > 0.9  # it learns digits
    assert "optimizer steps: numpy" in capsys.readouterr().out


def test_sklearn_mlp_under_accelerate_is_identical(capsys):
    pytest.importorskip("sklearn")
    result = _load("sklearn_mlp").main(["--quick", "--hidden", "64"])
    assert result["same"] is True
    assert len(result["fast"].loss_curve_) == 5
    assert np.all(np.diff(result["fast"].loss_curve_) < 0)  # the loss goes down
    out = capsys.readouterr().out
    assert "identical loss curves and weights: True" in out and "optimizer step:" in out


def test_digits_with_plateau_and_early_stopping(capsys):
    pytest.importorskip("sklearn")
    result = _load("digits_early_stopping").main(["--quick"])
    history = result["history"]
    assert result["stopped"] and len(history) < 40  # stopped before the epochs ran out
    lrs = [h["lr"] for h in history]
    assert lrs[0] == 3e-3 and min(lrs) < 3e-3 and lrs == sorted(lrs, reverse=True)
    best = min(h["val_loss"] for h in history)
    assert result["best"] == best == history[result["best_step"]]["val_loss"]
    assert result["restored_loss"] == best  # the best epoch's params, bit for bit
    assert history[-1]["val_loss"] != best
    assert "params restored" in capsys.readouterr().out


def test_dlfs_two_layer_net_trains_the_same(capsys):
    pytest.importorskip("sklearn")
    result = _load("dlfs_two_layer_net").main(["--quick"])
    assert result["same"] is True
    losses = result["losses"]
    assert len(losses) == 30 and np.mean(losses[-5:]) < np.mean(losses[:5])  # it learns
    assert "identical loss curves and weights: True" in capsys.readouterr().out


def test_mpi_data_parallel_gives_the_one_process_curve(capsys):
    pytest.importorskip("sklearn")
    from fastopt.distributed import SingleProcess

    curves = _load("mpi_data_parallel").main(["--quick"], comm=SingleProcess())
    assert len(curves["ranks"]) == 3 and curves["ranks"][-1] < curves["ranks"][0] / 2
    assert curves["ranks"] == pytest.approx(curves["one process"], rel=1e-6)
    assert "1 rank(s), global batch 64" in capsys.readouterr().out


def test_mpi_data_parallel_over_two_ranks():
    import subprocess
    import sys

    pytest.importorskip("sklearn")
    from test_distributed import MPIEXEC

    if MPIEXEC is None:
        pytest.skip("mpi4py and mpiexec are not installed (pip install 'fastopt[mpi]')")
    result = subprocess.run([MPIEXEC, "-n", "2", sys.executable,
                             str(EXAMPLES / "mpi_data_parallel.py"), "--quick"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line.split() for line in result.stdout.splitlines()
            if line.strip()[:1].isdigit() and "rank" not in line]
    assert len(rows) == 3 and "2 rank(s)" in result.stdout
    for _, ranks, one, _ in rows:  # the same curve as one process, to rounding
        assert float(ranks) == pytest.approx(float(one), rel=1e-5)


def test_digits_with_8bit_state_reaches_the_float32_loss(capsys):
    pytest.importorskip("sklearn")
    result = _load("digits_8bit").main(["--quick"])
    fp32, q8 = result["float32"], result["8-bit"]
    assert fp32["curve"][-1] < fp32["curve"][0] / 2  # it learns
    # the float32 run's final loss, within 2% (and no suspiciously far below it)
    assert 0.9 < result["loss_ratio"] < 1.02 and 0.9 < result["val_loss_ratio"] < 1.02
    assert q8["curve"] != fp32["curve"]  # the 8-bit state is in use
    assert result["state_ratio"] < 0.3 and q8["val_acc"] > 0.9
    assert "8-bit / float32: final training loss" in capsys.readouterr().out
