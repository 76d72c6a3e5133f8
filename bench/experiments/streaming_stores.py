"""Batch norm's affine pass over 51 MB (64x64x56x56 float32): plain stores against
streaming (non-temporal) stores, into a reused output and into a fresh one.

A measurement behind bench/RESULTS.md, not part of fastopt. Run from this folder:

    gcc -O3 -fopenmp -shared -fPIC -ffp-contract=off streaming_stores.c -o libstreaming.so
    OMP_WAIT_POLICY=PASSIVE python streaming_stores.py
"""

import ctypes
import pathlib
import time

import numpy as np

lib = ctypes.CDLL(str(pathlib.Path(__file__).with_name("libstreaming.so")))
for f in (lib.affine_plain, lib.affine_nt):
    f.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_float, ctypes.c_float,
                  ctypes.c_int64]

n = 64 * 64 * 56 * 56
x = np.random.default_rng(0).standard_normal(n, dtype=np.float32)
reused = {"plain": np.zeros_like(x), "nt": np.zeros_like(x)}
kernels = {"plain": lib.affine_plain, "nt": lib.affine_nt}
times = {f"{k}-{o}": [] for o in ("reused", "fresh") for k in kernels}
for _ in range(15):
    for name, kernel in kernels.items():
        for output in ("reused", "fresh"):
            y = reused[name] if output == "reused" else np.empty_like(x)
            t0 = time.perf_counter()
            kernel(x.ctypes.data, y.ctypes.data, 2.0, 1.0, n)
            times[f"{name}-{output}"].append(time.perf_counter() - t0)
            del y
assert np.array_equal(reused["plain"], reused["nt"])
for key, t in times.items():
    print(f"{key:14s} min {min(t) * 1e3:6.2f} ms  median {np.median(t) * 1e3:6.2f} ms")
