"""What OpenMP's wait policy costs a mid-size step: one float32 Adam step on one param
of N elements, numba and c, under fastopt's default (``OMP_WAIT_POLICY=PASSIVE``),
under ``OMP_WAIT_POLICY=ACTIVE`` (pool threads spin between kernels) and on one thread.
Each configuration runs in a fresh process (OpenMP reads the policy once, when it
loads); a time is the best of nine means of 200 back-to-back steps, in microseconds.

A measurement behind docs/design.md, not part of fastopt:

    python bench/experiments/wait_policy.py [N ...]     # default 131072 300000 1000000
"""

import os
import subprocess
import sys

STEP = """
import sys, time
import numpy as np
import fastopt
n, backend = int(sys.argv[1]), sys.argv[2]
rng = np.random.default_rng(0)
p = rng.standard_normal(n).astype(np.float32)
g = rng.standard_normal(n).astype(np.float32)
opt = fastopt.Adam([p], lr=1e-3, backend=backend)
opt.step([g])
best = float("inf")
for _ in range(9):
    start = time.perf_counter()
    for _ in range(200):
        opt.step([g])
    best = min(best, (time.perf_counter() - start) / 200)
print(best * 1e6)
"""

CONFIGS = {"PASSIVE (default)": {},
           "ACTIVE": {"OMP_WAIT_POLICY": "ACTIVE"},
           "one thread": {"OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}}


def step_time(n, backend, extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "NUMBA_NUM_THREADS")}
    env.update(extra)
    out = subprocess.run([sys.executable, "-c", STEP, str(n), backend], env=env,
                         check=True, capture_output=True, text=True).stdout
    return float(out.split()[-1])


def main(sizes):
    print(f"{'elements':>9}  {'backend':7}  " + "  ".join(f"{c:>17}" for c in CONFIGS))
    for n in sizes:
        for backend in ("numba", "c"):
            times = [step_time(n, backend, extra) for extra in CONFIGS.values()]
            print(f"{n:>9}  {backend:7}  " + "  ".join(f"{t:>14.1f} us" for t in times))


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [131072, 300000, 1000000])
