"""Where a small batch norm's time goes: (256, 1024) float32 forward+backward into
reused outputs, then its four backend kernel calls alone (the two sums and the two
affine passes, back to back, each called from Python), then the Python around the
window passes alone (the passes replaced by no-ops). Run it as is, then with ``GOMP_SPINCOUNT=2000`` in the environment: OpenMP's
pool threads then spin for a while after each kernel instead of sleeping at once
(fastopt sets ``OMP_WAIT_POLICY=PASSIVE``), and the difference is what waking them
costs.

A measurement behind bench/RESULTS.md, not part of fastopt. Run from the repository:

    python bench/experiments/thread_wakeups.py numba 3000
    GOMP_SPINCOUNT=2000 python bench/experiments/thread_wakeups.py numba 3000
"""

import sys
import time

import numpy as np

import fastopt
from fastopt import backends, batchnorm

backend = sys.argv[1] if len(sys.argv) > 1 else "numba"
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
rng = np.random.default_rng(0)
x = rng.standard_normal((256, 1024), dtype=np.float32)
dy = rng.standard_normal((256, 1024), dtype=np.float32)
gamma, beta = np.ones(1024, np.float32), np.zeros(1024, np.float32)
running_mean, running_var = np.zeros(1024, np.float32), np.ones(1024, np.float32)
y, dx = np.empty_like(x), np.empty_like(x)


def timed(call):
    """(min, median) microseconds of ``rounds`` calls after 100 warm-up calls."""
    for _ in range(100):
        call()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    times.sort()
    return f"min {times[0] * 1e6:6.1f} us, median {times[rounds // 2] * 1e6:6.1f} us"


def forward_backward():
    _, cache = fastopt.batchnorm_forward(x, gamma, beta, running_mean, running_var,
                                         backend=backend, out=y)
    return fastopt.batchnorm_backward(dy, cache, out=dx)


runner = backends.get_backend(backend)
x3, dy3, y3, dx3 = (a.reshape(256, 1024, 1) for a in (x, dy, y, dx))
shift, zeros, ones = x[0].astype(np.float64), np.zeros(1024), np.ones(1024, np.float32)
window = (0, 1024)


def kernels():
    runner.bn_sums(x3, x3, shift, shift, window)
    runner.bn_affine(x3, None, ones, None, ones, y3, window)
    runner.bn_sums(dy3, x3, zeros, shift, window)
    runner.bn_affine(dy3, x3, ones, ones, ones, dx3, window)


print(f"{backend}, (256, 1024) float32, {rounds} calls each")
print("forward+backward     ", timed(forward_backward))
print("its 4 kernel calls   ", timed(kernels))
# The Python around them: every window pass (compiled or not) replaced by a no-op
statistics = (np.zeros(1024), np.ones(1024), np.ones(1024))
runner.bn_passes = (lambda *args: statistics), (lambda *args: statistics[:2])
batchnorm._window_passes.cache_clear()
print("its Python, no kernel", timed(forward_backward))
