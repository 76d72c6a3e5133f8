"""Batch norm forward+backward into new outputs, into reused outputs (`out=`, one window
or cache-sized channel windows) and through the BatchNorm layer (which reuses outputs
nobody holds), next to torch's native kernels with new outputs and with `.out`.
The runners are `fastopt bench`'s own, plus the one-window and layer variants; rounds
are interleaved in one process.

A measurement behind bench/RESULTS.md, not part of fastopt. Run from the repository:

    python bench/experiments/batchnorm_outputs.py 64,64,56,56 11
"""

import sys

import numpy as np

import fastopt
from fastopt import benchmark

benchmark._torch()  # as `fastopt bench` does: torch's OpenMP loads before fastopt's
from fastopt.backends import _tables  # noqa: E402

shape = tuple(int(s) for s in (sys.argv[1] if len(sys.argv) > 1 else "64,64,56,56").split(","))
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 11
default_window = _tables.WINDOW_BYTES


def bench_runners(reuse_outputs):
    case = benchmark.Case("batchnorm", "", [shape], 32, 1, reuse_outputs)
    return benchmark.batchnorm_runners(case, ["torch", "numba", "c"])


def with_window(run, window_bytes):
    def windowed():
        _tables.WINDOW_BYTES = window_bytes
        run()

    return windowed


def layer_runner(backend):
    rng = np.random.default_rng(0)  # the bench's data
    x = rng.standard_normal(shape, dtype=np.float32)
    dy = rng.standard_normal(shape, dtype=np.float32)
    layer = fastopt.BatchNorm(shape[1], backend=backend)

    def run():
        _tables.WINDOW_BYTES = default_window
        layer.forward(x)
        layer.backward(dy)

    return run


new, reused = bench_runners(False), bench_runners(True)
runs = {"torch new": new["torch"], "torch .out": reused["torch"]}
for backend in ("numba", "c"):
    runs[f"{backend} new"] = with_window(new[backend], default_window)
    runs[f"{backend} out= one window"] = with_window(reused[backend], 1 << 40)
    runs[f"{backend} out= windows"] = with_window(reused[backend], default_window)
    runs[f"{backend} layer"] = layer_runner(backend)
times = benchmark.time_interleaved(runs, rounds)
torch_best = min(times["torch new"])
print(f"{shape}, windows of {default_window >> 20} MiB, {rounds} rounds")
for name, t in times.items():
    print(f"{name:22s} median {np.median(t) * 1e3:8.2f} ms  min {min(t) * 1e3:8.2f} ms  "
          f"torch new / min {torch_best / min(t):.2f}x")
