"""Batch norm forward+backward into new outputs, into reused outputs (`out=`, one window
or cache-sized channel windows) and through the BatchNorm layer (which reuses outputs
nobody holds), next to torch's native kernels with new outputs and with `.out`.
Interleaved rounds, one process.

A measurement behind bench/RESULTS.md, not part of fastopt. Run from the repository:

    python bench/experiments/batchnorm_outputs.py 64,64,56,56 11
"""

import sys
import time

import numpy as np
import torch  # before fastopt, so that torch's OpenMP keeps its default wait policy

import fastopt
from fastopt.backends import _tables

shape = tuple(int(s) for s in (sys.argv[1] if len(sys.argv) > 1 else "64,64,56,56").split(","))
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 11
channels = shape[1]
rng = np.random.default_rng(0)
x = rng.standard_normal(shape, dtype=np.float32)
dy = rng.standard_normal(shape, dtype=np.float32)
gamma, beta = np.ones(channels, np.float32), np.zeros(channels, np.float32)

aten = torch.ops.aten
tx, tdy, tw, tb = (torch.from_numpy(a) for a in (x, dy, gamma, beta))
trm, trv = torch.zeros(channels), torch.ones(channels)
ty, tmean, tinvstd = torch.empty_like(tx), torch.empty(channels), torch.empty(channels)
tdx, tdw, tdb = torch.empty_like(tx), torch.empty(channels), torch.empty(channels)


def torch_new():
    y, mean, invstd = aten.native_batch_norm(tx, tw, tb, trm, trv, True, 0.1, 1e-5)
    aten.native_batch_norm_backward(tdy, tx, tw, trm, trv, mean, invstd, True, 1e-5,
                                    [True, True, True])


def torch_out():
    aten.native_batch_norm.out(tx, tw, tb, trm, trv, True, 0.1, 1e-5, out=ty,
                               save_mean=tmean, save_invstd=tinvstd)
    aten.native_batch_norm_backward.out(tdy, tx, tw, trm, trv, tmean, tinvstd, True, 1e-5,
                                        [True, True, True], out0=tdx, out1=tdw, out2=tdb)


def fastopt_runner(backend, mode, window_bytes):
    outputs = [np.empty_like(x), np.empty_like(x)] if mode == "out" else [None, None]
    layer = fastopt.BatchNorm(channels, backend=backend)

    def run():
        _tables.WINDOW_BYTES = window_bytes
        if mode == "layer":
            layer.forward(x)
            layer.backward(dy)
            return
        _, cache = fastopt.batchnorm_forward(x, gamma, beta, backend=backend,
                                             out=outputs[0])
        fastopt.batchnorm_backward(dy, cache, out=outputs[1])

    return run


default_window = _tables.WINDOW_BYTES
runs = {"torch new": torch_new, "torch .out": torch_out}
for backend in ("numba", "c"):
    runs[f"{backend} new"] = fastopt_runner(backend, "new", default_window)
    runs[f"{backend} out= one window"] = fastopt_runner(backend, "out", 1 << 40)
    runs[f"{backend} out= windows"] = fastopt_runner(backend, "out", default_window)
    runs[f"{backend} layer"] = fastopt_runner(backend, "layer", default_window)
for run in runs.values():
    run()
times = {k: [] for k in runs}
for _ in range(rounds):
    for name, run in runs.items():
        start = time.perf_counter()
        run()
        times[name].append(time.perf_counter() - start)
torch_best = min(times["torch new"])
print(f"{shape}, windows of {default_window >> 20} MiB, {rounds} rounds")
for name, t in times.items():
    print(f"{name:22s} median {np.median(t) * 1e3:8.2f} ms  min {min(t) * 1e3:8.2f} ms  "
          f"torch new / min {torch_best / min(t):.2f}x")
