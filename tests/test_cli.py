"""The fastopt command: tiny bench runs check the table, the summary, the JSON schema and the
records; the reports are checked on results made up for the purpose."""

import json
import subprocess
import sys

import numpy as np
import pytest

import fastopt
from fastopt import bench_report, benchmark, cli
from fastopt.benchmark import Result


def test_bench_tiny_run_table_and_json(tmp_path, capsys):
    path = tmp_path / "out.json"
    cli.main(["bench", "--sizes", "4K", "--kernels", "adam,sgd_momentum", "--lists", "mlp",
              "--methods", "roofline,numba,numpy", "--rounds", "2", "--table",
              "--json", str(path)])
    out = capsys.readouterr()
    summary = out.out[out.out.index("summary:"):].splitlines()
    assert [line.split()[:3] for line in summary[3:]] == [
        ["sgd_momentum", "numba", "2"], ["adam", "numba", "2"]]  # the summary ends the run
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
              "--methods", "numpy", "--rounds", "1", "--table"])
    rows = [line.split() for line in capsys.readouterr().out.splitlines()
            if line.startswith("sgd_momentum")]
    assert [row[1] for row in rows] == ["mlp"]


@pytest.mark.parametrize("argv,message", [
    (["bench", "--kernels", "shampoo"], "unknown: shampoo"),
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


def _result(kernel, size, method, roofline, numpy, torch):
    return Result(kernel=kernel, size=size, elements=1, tensors=1, method=method, min_ms=1.0,
                  median_ms=1.0, gbps=1.0, roofline_fraction=roofline,
                  speedup_vs_numpy=numpy, speedup_vs_torch=torch)


MADE_UP = [
    _result("adam", "1M", "numba", 0.5, 4.0, 1.0),
    _result("adam", "64M", "numba", 0.8, 16.0, 4.0),
    _result("adam", "1M", "numpy", 0.1, 1.0, 0.25),
    _result("batchnorm", "256x1024", "c", 0.9, 10.0, None),
    _result("adam", "1M", "c", 0.6, 5.0, 1.2),
]


def test_summary_gives_geometric_means_and_ranges_per_family_and_backend():
    rows = bench_report.summary_rows(MADE_UP)
    assert rows == [
        ["adam", "numba", "2", "2.00x (1.00-4.00)", "8.0x (4.0-16.0)", "0.63 (0.50-0.80)"],
        ["adam", "c", "1", "1.20x", "5.0x", "0.60"],
        ["batchnorm", "c", "1", "-", "10.0x", "0.90"],
    ]


def test_markdown_record_and_readme_block(tmp_path):
    info = {"fastopt": "9.9", "commit": "abc1234", "processor": "Some CPU", "cpus": 3,
            "platform": "Linux-x", "python": "3.11.7", "numpy": "2.4.6", "numba_threads": 3}
    record = bench_report.markdown(MADE_UP, info, "fastopt bench --full", chart="chart.png")
    assert "Made by `fastopt bench --full`" in record and "commit abc1234" in record
    assert "Some CPU, 3 logical CPUs" in record and "Numba 3" in record
    assert "| adam | numba | 2 | 2.00x (1.00-4.00) |" in record
    assert "![fraction of the memory roofline](chart.png)" in record
    assert record.count("| adam | 1M |") == 3  # every case, every method
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{bench_report.README_BEGIN}\nold\n{bench_report.README_END}\n"
                      "rest\n")
    bench_report.update_readme(readme, bench_report.readme_block(
        MADE_UP, info, "fastopt bench --full", record="docs/benchmarks.md"))
    text = readme.read_text()
    assert text.startswith("intro\n" + bench_report.README_BEGIN) and text.endswith("rest\n")
    assert "old" not in text and "[docs/benchmarks.md](docs/benchmarks.md)" in text
    with pytest.raises(ValueError, match="block"):
        bench_report.update_readme(_plain(tmp_path), "x")


def _plain(tmp_path):
    path = tmp_path / "plain.md"
    path.write_text("no markers here\n")
    return path


def test_bench_writes_its_records(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(f"{bench_report.README_BEGIN}\n{bench_report.README_END}\n")
    cli.main(["bench", "--sizes", "2K", "--kernels", "adagrad", "--lists", "",
              "--methods", "roofline,numba,numpy", "--rounds", "1",
              "--markdown", str(tmp_path / "docs" / "bench.md"), "--readme", str(readme)])
    record = (tmp_path / "docs" / "bench.md").read_text()
    assert "Made by `fastopt bench --sizes 2K" in record and "| adagrad | 2K | numba |" in record
    assert "| adagrad | numba | 1 |" in readme.read_text()
    assert "[docs/bench.md](docs/bench.md)" in readme.read_text()


def test_bench_refuses_a_readme_without_the_block_before_running(tmp_path, capsys):
    with pytest.raises(SystemExit, match="block"):
        cli.main(["bench", "--sizes", "2K", "--kernels", "adagrad", "--readme",
                  str(_plain(tmp_path))])
    assert "[1/" not in capsys.readouterr().err  # nothing was timed


# -- fastopt bench --small -------------------------------------------------------------


def test_bench_small_run_json_markdown_and_readme(tmp_path, capsys):

    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{bench_report.SMALL_README_BEGIN}\nold\n"
                      f"{bench_report.SMALL_README_END}\nrest\n")
    path, record = tmp_path / "small.json", tmp_path / "small.md"
    cli.main(["bench", "--small", "--entries", "cs231n.adam,Adam.step", "--rounds", "2",
              "--methods", "numba,c", "--table", "--json", str(path),
              "--markdown", str(record), "--readme", str(readme)])
    out = capsys.readouterr()
    assert "[1/6] compat.cs231n.adam 10" in out.err
    doc = json.loads(path.read_text())
    assert doc["schema"] == "fastopt-bench-small/1"
    rows = doc["results"]
    backends = [m for m in ("numba", "c") if m in fastopt.available_backends()]
    assert {(r["entry"], r["size"], r["method"]) for r in rows} == {
        (e, s, m) for e, sizes in (("compat.cs231n.adam", ("10", "100", "1000", "10000")),
                                   ("Adam.step", ("2-64-3", "784-256-256-10")))
        for s in sizes for m in ["numpy"] + backends}
    by_case = {}
    for r in rows:
        by_case.setdefault((r["entry"], r["size"]), {})[r["method"]] = r
    for case in by_case.values():
        for method in backends:
            r = case[method]
            assert r["median_us"] >= r["min_us"] > 0 and r["number"] >= 1
            assert r["speedup_vs_numpy"] == pytest.approx(case["numpy"]["min_us"] / r["min_us"])
    assert by_case[("Adam.step", "2-64-3")]["numpy"]["tensors"] == 4
    assert by_case[("Adam.step", "784-256-256-10")]["numpy"]["elements"] == 269322
    text = record.read_text()
    assert "# fastopt benchmark record: small work" in text and "compat.cs231n.adam" in text
    block = readme.read_text()
    assert block.startswith("intro\n") and block.endswith("rest\n") and "old" not in block
    assert "| compat.cs231n.adam | 10 |" in block


def test_bench_small_fixed_cost_is_the_time_at_the_fewest_elements():
    from fastopt.bench_small import SmallResult

    def result(entry, elements, method, us):
        return SmallResult(entry, str(elements), elements, 1, method, 10, us, us)

    results = [result("f", 10, "numba", 5.0), result("f", 100, "numba", 5.5),
               result("f", 1000, "numba", 10.0), result("f", 10, "numpy", 8.0),
               result("f", 1000, "numpy", 30.0),
               result("g", 4, "numba", 1.0), result("g", 8, "numba", 2.0)]  # two sizes only
    (row,) = bench_report.small_fixed_cost_rows(results)
    assert row[:2] == ["f", "10-1000"]
    cells = dict(zip(bench_report.SMALL_FIXED_HEADER[2:], row[2:]))
    assert cells["numba fixed us"] == "5.0" and cells["numba ns/element"] == "5.05"
    assert cells["numpy fixed us"] == "8.0" and cells["numpy ns/element"] == "22.22"
    assert cells["c fixed us"] == "-" and cells["torch ns/element"] == "-"
    assert "fixed cost" in bench_report.small_summary(results)


def test_bench_small_refuses_the_roofline_options(capsys):
    with pytest.raises(SystemExit, match="--small takes"):
        cli.main(["bench", "--small", "--kernels", "adam"])


def test_bench_small_baselines_do_what_fastopt_does(rng):
    """The hand-written NumPy Adam loop is torch.optim's Adam (fastopt's reference), and
    every case builds a NumPy call and a fastopt one that run."""
    from fastopt import bench_small

    shapes = [(5, 3), (3,)]
    params = [rng.standard_normal(s) for s in shapes]
    ours = [p.copy() for p in params]
    opt = fastopt.Adam(ours, lr=1e-2, backend="numpy")
    ms, vs = [np.zeros(s) for s in shapes], [np.zeros(s) for s in shapes]
    for step in range(1, 8):
        grads = [rng.standard_normal(s) for s in shapes]
        bench_small.numpy_adam_loop(params, grads, ms, vs, step, lr=1e-2)
        opt.step(grads)
    for p, q in zip(params, ours):
        np.testing.assert_allclose(p, q, rtol=1e-13, atol=1e-15)
    entries = set()
    for case in bench_small.cases():
        entries.add(case.entry)
        if "sklearn" in case.entry or case.elements > 200_000:
            continue  # seconds per call
        compiled = [m for m in bench_small.FASTOPT if m in fastopt.available_backends()]
        for method in ["numpy"] + compiled[:1]:
            call = case.build(method)
            assert call is not None, (case.entry, method)
            call()
    assert {"compat.cs231n.rmsprop", "compat.nnfs.Optimizer_Adam.update_params",
            "compat.deeplearning_ai.update_parameters_with_adam", "compat.dlfs.Adam.update",
            "functional.adam_", "batchnorm_forward + batchnorm_backward"} <= entries


# -- fastopt bench --8bit --------------------------------------------------------------


def test_bench_8bit_run_json_and_markdown(tmp_path, capsys):
    path, record = tmp_path / "8bit.json", tmp_path / "8bit.md"
    cli.main(["bench", "--8bit", "--sizes", "64K", "--rounds", "2", "--json", str(path),
              "--markdown", str(record)])
    out = capsys.readouterr()
    assert "[1/1] Adam8bit 64K (65,536 elements)" in out.err
    doc = json.loads(path.read_text())
    assert doc["schema"] == "fastopt-bench-8bit/1"
    rows = {r["method"]: r for r in doc["results"]}
    expected = {"roofline", "numba fp32"} | {m for m in ("numba", "c")
                                            if m in fastopt.available_backends()}
    assert expected <= set(rows)
    for method in expected - {"roofline"}:
        r = rows[method]
        assert r["median_ms"] >= r["min_ms"] > 0 and r["elements"] == 65536
        assert r["vs_fp32"] == pytest.approx(rows["numba fp32"]["min_ms"] / r["min_ms"])
    for method in expected & {"numba", "c"}:
        # codes and absmax of two states: 2 + 2 * 4 / 256 bytes a parameter
        assert rows[method]["state_bytes_per_param"] == pytest.approx(2 + 8 / 256)
        assert rows[method]["roofline"] == pytest.approx(
            rows["roofline"]["min_ms"] / rows[method]["min_ms"])
        assert rows[method]["gbps"] == pytest.approx(16 * 65536 / rows[method]["min_ms"] / 1e6)
    assert rows["numba fp32"]["state_bytes_per_param"] == 8
    assert rows["numba fp32"]["roofline"] is None
    assert "# fastopt benchmark record: Adam with 8-bit state" in record.read_text()
    assert "| 64K | numba |" in record.read_text()


def test_bench_8bit_refuses_other_scopes_options():
    with pytest.raises(SystemExit, match="--8bit takes"):
        cli.main(["bench", "--8bit", "--kernels", "adam"])
