"""Why the optimizer roofline's arrays hold random numbers: the SGD-momentum null kernel
(read p, g, buf; write p, buf) with g made three ways. An ``np.zeros`` array that is
never written is backed by the OS's shared zero page, so reading it costs no memory
traffic and the "roofline" comes out 20-30% too fast. Rounds rotate the order.

A measurement behind bench/RESULTS.md, not part of fastopt. Run from the repository:

    python bench/experiments/roofline_zero_page.py 67108864 15
"""

import sys
import time

import numpy as np

from fastopt import benchmark

n = int(sys.argv[1]) if len(sys.argv) > 1 else 1 << 26
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 15
null = benchmark._null_kernels()[1]
rng = np.random.default_rng(0)
p, buf = benchmark._random_arrays([(n,), (n,)], rng)
g_never_written = np.zeros(n, np.float32)  # the zero page until something writes it
g_written_zeros = np.zeros(n, np.float32)
g_written_zeros[:] = 0  # private pages that hold zeros
g_random = benchmark._random_arrays([(n,)], rng)[0]
runs = {"g = np.zeros, never written": g_never_written,
        "g = np.zeros, then written": g_written_zeros,
        "g random": g_random}
for g in runs.values():
    null(p, g, buf)
times = {k: [] for k in runs}
keys = list(runs)
for r in range(rounds):
    for k in keys[r % len(keys):] + keys[:r % len(keys)]:
        start = time.perf_counter()
        null(p, runs[k], buf)
        times[k].append(time.perf_counter() - start)
for k in keys:
    print(f"{k:28s} min {min(times[k]) * 1e3:7.2f} ms  median {np.median(times[k]) * 1e3:7.2f} ms")
