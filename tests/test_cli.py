"""The fastopt command: a tiny bench run checks the table and the JSON schema."""

import json
import subprocess
import sys

import pytest

from fastopt import benchmark, cli


def test_bench_tiny_run_table_and_json(tmp_path, capsys):
    path = tmp_path / "out.json"
    cli.main(["bench", "--sizes", "4K", "--kernels", "adam,sgd_momentum", "--lists", "mlp",
              "--methods", "roofline,numba,numpy", "--rounds", "2", "--json", str(path)])
    out = capsys.readouterr()
    header = [line for line in out.out.splitlines() if line.startswith("kernel")][0]
    assert header.split() == ["kernel", "size", "method", "min", "ms", "median", "ms",
                              "GB/s", "roofline", "vs", "numpy", "vs", "torch"]
    assert "[1/4] adam 4K" in out.err  # progress
    doc = json.loads(path.read_text())
    assert doc["schema"] == "fastopt-bench/1"
    assert {"python", "numpy", "cpus", "processor"} <= set(doc["machine"])
    rows = doc["results"]
    assert {(r["kernel"], r["size"], r["method"]) for r in rows} == {
        (k, s, m) for k in ("adam", "sgd_momentum") for s in ("4K", "mlp")
        for m in ("roofline", "numba", "numpy")}
    for r in rows:
        assert r["min_ms"] > 0 and r["median_ms"] >= r["min_ms"]
        assert r["roofline_fraction"] > 0 and r["speedup_vs_numpy"] > 0
        assert r["elements"] == (4096 if r["size"] == "4K" else 269322)
        assert r["tensors"] == (1 if r["size"] == "4K" else 6)
    roof = [r for r in rows if r["method"] == "roofline"]
    assert all(r["roofline_fraction"] == 1.0 for r in roof)


def test_bench_plot(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "chart.png"
    cli.main(["bench", "--sizes", "1K", "--kernels", "adagrad", "--lists", "",
              "--methods", "roofline,numba", "--rounds", "1", "--plot", str(path)])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_empty_sizes_runs_the_parameter_lists_only(capsys):
    cli.main(["bench", "--sizes", "", "--kernels", "sgd_momentum", "--lists", "mlp",
              "--methods", "numpy", "--rounds", "1"])
    rows = [line.split() for line in capsys.readouterr().out.splitlines()
            if line.startswith("sgd_momentum")]
    assert [row[1] for row in rows] == ["mlp"]


@pytest.mark.parametrize("argv,message", [
    (["bench", "--kernels", "lion"], "unknown: lion"),
    (["bench", "--sizes", "big"], "not a size"),
    (["bench", "--sizes", "-5"], "positive"),
    (["bench", "--methods", "jax"], "unknown: jax"),
    (["bench", "--quick", "--full"], "not allowed with"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_options_give_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_info_runs_as_module():
    out = subprocess.run([sys.executable, "-m", "fastopt", "info"], capture_output=True,
                         text=True, check=True).stdout
    assert "backends available:" in out and "numpy" in out


def test_resnet50_parameter_list_is_the_real_one():
    shapes = benchmark.resnet50_shapes()
    assert len(shapes) == 161
    assert sum(int(__import__("numpy").prod(s)) for s in shapes) == 25_557_032
