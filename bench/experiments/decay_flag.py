"""The DECAYED compile-time flag, side by side: the same optimizer step compiled with
the decay code (as every step was before the flag) and without it (weight decay and L1
are 0), next to the null kernel of the same access pattern. Rounds rotate the order,
so that no variant always runs on a cache the others warmed.

A measurement behind bench/RESULTS.md, not part of fastopt. Run from the repository:

    python bench/experiments/decay_flag.py 67108864 15
"""

import sys
import time

import numpy as np

import fastopt
import fastopt._rules as rules
from fastopt import benchmark

n = int(sys.argv[1]) if len(sys.argv) > 1 else 1 << 26
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 15
rng = np.random.default_rng(0)
decayed = rules._decayed
for name, cls, kwargs, n_state in (("sgd_momentum", fastopt.SGD, dict(momentum=0.9), 1),
                                   ("adam", fastopt.Adam, {}, 2),
                                   ("adagrad", fastopt.Adagrad, {}, 1)):
    p = rng.random(n, dtype=np.float32)
    g = rng.random(n, dtype=np.float32)
    opt = cls([p], lr=1e-3, backend="numba", **kwargs)

    def with_decay_code(opt=opt, g=g):
        rules._decayed = lambda kw: True  # compile and run the variant with decay code
        try:
            opt.step([g])
        finally:
            rules._decayed = decayed

    null = benchmark._null_kernels()[n_state]
    states = [np.zeros(n, np.float32) for _ in range(n_state)]
    runs = {"without": lambda opt=opt, g=g: opt.step([g]), "with": with_decay_code,
            "null": lambda null=null, p=p, g=g, s=states: null(p, g, *s)}
    for run in runs.values():
        run()
    times = {k: [] for k in runs}
    keys = list(runs)
    for r in range(rounds):
        for k in keys[r % 3:] + keys[:r % 3]:
            start = time.perf_counter()
            runs[k]()
            times[k].append(time.perf_counter() - start)
    best = {k: min(t) for k, t in times.items()}
    print(f"{name} {n}: " + "  ".join(
        f"{k} decay code {best[k] * 1e3:.3f} ms (median {np.median(times[k]) * 1e3:.3f}, "
        f"roofline {best['null'] / best[k]:.2f})" for k in ("without", "with")))
