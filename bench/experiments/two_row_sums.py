"""The long-row (NCHW) batch-norm statistics kernel, one row at a time (as it was
until the fifth session, copied here) against two rows at a time (the numba backend's
`_bn_partial_sums` now), next to a null kernel reading the same arrays, and the C
backend's `bn_sums` as built (two rows at a time since the fifth session; to time the
one-row C kernel, check out cc828be, reinstall and run this again). Forward: sums of x;
backward: sums of dy and dy*x. Rounds rotate the order.

A measurement behind bench/RESULTS.md, not part of fastopt. Run from the repository:

    python bench/experiments/two_row_sums.py 64,64,3136 21
"""

import sys
import time

import numba
import numpy as np

import fastopt
from fastopt import backends
from fastopt.backends import _tables, numba_cpu

shape = tuple(int(s) for s in (sys.argv[1] if len(sys.argv) > 1 else "64,64,3136").split(","))
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 21
_shifted = numba_cpu._shifted


@numba.njit(parallel=True, cache=True, nogil=True, fastmath={"reassoc"})
def one_row_sums(a, b, ka, kb, rows, cols, c0, s1, s2, same):
    outer, channels, inner = a.shape
    width = s1.shape[1]
    n_col_blocks = (width + cols - 1) // cols
    for item in numba.prange(s1.shape[0] * n_col_blocks):
        rb = item // n_col_blocks
        w0 = (item % n_col_blocks) * cols
        w1 = min(w0 + cols, width)
        for o in range(rb * rows, min(rb * rows + rows, outer)):
            for w in range(w0, w1):
                x = a[o, c0 + w]
                y = b[o, c0 + w]
                sum1 = 0.0
                sum2 = 0.0
                for i in range(inner):
                    u = _shifted(x[i], ka[w])
                    sum1 += u
                    sum2 += u * (u if same else _shifted(y[i], kb[w]))
                s1[rb, w] += sum1
                s2[rb, w] += sum2


@numba.njit(parallel=True, cache=True, fastmath={"reassoc"})
def null_read(a, b):
    total = 0.0
    for i in numba.prange(a.size):
        total += a[i] * b[i]
    return total


rng = np.random.default_rng(0)
x = rng.standard_normal(shape, dtype=np.float32)
dy = rng.standard_normal(shape, dtype=np.float32)
rows, cols, s1, s2 = _tables.bn_partials(shape)
shift = np.zeros(shape[1])


def sums(kernel, b):
    def run():
        s1[:] = 0
        s2[:] = 0
        kernel(x, b, shift, shift, rows, cols, 0, s1, s2, b is x)
    return run


def c_sums(b):
    if "c" not in fastopt_backends:
        return None
    c = backends.get_backend("c")
    return lambda: c.bn_sums(x, b, shift, shift, (0, shape[1]))


fastopt_backends = fastopt.available_backends()
runs = {"forward, one row": sums(one_row_sums, x),
        "forward, two rows": sums(numba_cpu._bn_partial_sums, x),
        "forward, null (read x)": lambda: null_read(x.ravel(), x.ravel()),
        "backward, one row": sums(one_row_sums, dy),
        "backward, two rows": sums(numba_cpu._bn_partial_sums, dy),
        "backward, null (read dy, x)": lambda: null_read(dy.ravel(), x.ravel()),
        "forward, C backend": c_sums(x),
        "backward, C backend": c_sums(dy)}
runs = {k: run for k, run in runs.items() if run is not None}
for run in runs.values():
    run()
times = {k: [] for k in runs}
keys = list(runs)
for r in range(rounds):
    for k in keys[r % len(keys):] + keys[:r % len(keys)]:
        start = time.perf_counter()
        runs[k]()
        times[k].append(time.perf_counter() - start)
print(f"{shape}, {rounds} rounds")
for k in keys:
    print(f"{k:28s} min {min(times[k]) * 1e3:7.3f} ms  median {np.median(times[k]) * 1e3:7.3f} ms")
