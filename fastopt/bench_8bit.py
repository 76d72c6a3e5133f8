"""The 8-bit state benchmark behind ``fastopt bench --8bit``: an Adam step with
blockwise 8-bit state (``fastopt.Adam8bit``) against fastopt's float32 Adam, its own
memory roofline and bitsandbytes' CPU ``Adam8bit``, side by side in one process.

Per size (one float32 tensor) the methods are timed as ``fastopt bench`` times its
cases (one warm-up call each, then interleaved rounds; minimum and median). The
methods: ``roofline``, a null kernel with the 8-bit step's access pattern (read p, g,
both states' codes and absmax; write p, the codes and the absmax: 16 bytes an element,
against 28 for float32 Adam); ``numba`` and ``c``, fastopt's Adam8bit on each
backend; ``numba fp32``, fastopt's float32 Adam on numba; ``torch fp32``, torch's
fused float32 Adam; and ``bitsandbytes``, ``bitsandbytes.optim.Adam8bit`` where it
is installed. ``vs fp32`` is the float32 Adam's time over the method's, ``vs bnb``
bitsandbytes' time over it, ``roofline`` the null kernel's time over it (8-bit
methods), and ``state B/param`` the bytes of optimizer state per parameter.
"""

import functools

import numpy as np

import fastopt

from . import benchmark

SIZES = {"16M": 1 << 24, "64M": 1 << 26}
METHODS = ("roofline", "numba", "c", "numba fp32", "torch fp32", "bitsandbytes")
EIGHT_BIT = ("roofline", "numba", "c", "bitsandbytes")  # methods with 8-bit traffic
BYTES_8BIT, BYTES_FP32 = 16, 28  # bytes moved per element by a step
COLUMNS = ["size", "method", "min ms", "median ms", "GB/s", "roofline", "vs fp32",
           "vs bnb", "state B/param"]
LR = 1e-3


@functools.cache
def _null_kernel():
    """The 8-bit step's memory traffic with trivial arithmetic."""
    import numba

    from .backends._numba_cache import disk_cache

    @numba.njit(parallel=True, cache=disk_cache())
    def null8(p, g, q0, q1, m0, m1):
        for i in numba.prange(p.size):
            p[i] += g[i]
            q0[i] += np.uint8(1)
            q1[i] += np.uint8(1)
        for b in numba.prange(m0.size):
            m0[b] += np.float32(1)
            m1[b] += np.float32(1)

    return null8


def _state_bytes(opt):
    return sum(v.nbytes for k, v in opt.state_dict().items() if k.startswith("state."))


def runners(n, methods):
    """``{method: (one step, bytes of optimizer state)}`` for an ``n``-element tensor,
    for the methods available here."""
    rng = np.random.default_rng(0)

    def arrays():
        return (rng.standard_normal(n, dtype=np.float32) * np.float32(1e-3),
                rng.standard_normal(n, dtype=np.float32) * np.float32(1e-3))

    found = {}
    for method in methods:
        if method == "roofline":
            p, g = arrays()
            blocks = fastopt.quant.blocks(n)
            data = (p, g, np.zeros(n, np.uint8), np.zeros(n, np.uint8),
                    np.ones(blocks, np.float32), np.ones(blocks, np.float32))
            kernel = _null_kernel()
            found[method] = (lambda k=kernel, d=data: k(*d)), None
        elif method in ("numba", "c", "numba fp32"):
            backend = method.split()[0]
            if backend not in fastopt.available_backends():
                continue
            p, g = arrays()
            cls = fastopt.Adam if method.endswith("fp32") else fastopt.Adam8bit
            opt = cls([p], lr=LR, backend=backend)
            found[method] = (lambda o=opt, g=g: o.step([g])), opt
        elif method in ("torch fp32", "bitsandbytes"):
            torch = benchmark._torch()
            if torch is None:
                continue
            if method == "bitsandbytes":
                try:
                    import bitsandbytes
                except ImportError:
                    continue
            p, g = (torch.from_numpy(a) for a in arrays())
            p.grad = g
            opt = torch.optim.Adam([p], lr=LR, fused=True) if method == "torch fp32" else \
                bitsandbytes.optim.Adam8bit([p], lr=LR)

            def torch_step(opt=opt, torch=torch):
                with torch.no_grad():
                    opt.step()

            found[method] = torch_step, opt
    return found


def _torch_state_bytes(opt):
    # per-param state tensors; bitsandbytes' "qmap" entries are the shared codebooks
    return sum(v.nbytes for state in opt.state.values() for k, v in state.items()
               if hasattr(v, "nbytes") and v.dim() > 0 and not k.startswith("qmap"))


def measure(sizes, methods, rounds, progress=None):
    """One row per (size, method) measured: times, bandwidth and the ratios."""
    benchmark.load_openmp_first(any(m in ("torch fp32", "bitsandbytes") for m in methods))
    rows = []
    for i, (label, n) in enumerate(sizes.items()):
        if progress:
            progress(f"[{i + 1}/{len(sizes)}] Adam8bit {label} ({n:,} elements)")
        found = runners(n, methods)
        times = benchmark.time_interleaved({m: run for m, (run, _) in found.items()}, rounds)
        best = {m: min(t) for m, t in times.items()}
        for method, t in times.items():
            opt = found[method][1]
            state = None if opt is None else (
                _state_bytes(opt) if isinstance(opt, fastopt.Optimizer)
                else _torch_state_bytes(opt))
            moved = BYTES_8BIT if method in EIGHT_BIT else BYTES_FP32
            rows.append(dict(
                size=label, elements=n, method=method, min_ms=best[method] * 1e3,
                median_ms=float(np.median(t)) * 1e3, gbps=moved * n / best[method] / 1e9,
                roofline=best["roofline"] / best[method]
                if "roofline" in best and method in EIGHT_BIT else None,
                vs_fp32=best["numba fp32"] / best[method] if "numba fp32" in best else None,
                vs_bnb=best["bitsandbytes"] / best[method] if "bitsandbytes" in best else None,
                state_bytes_per_param=None if state is None else state / n))
        del found
    return rows


def table_rows(rows):
    """The rows as text cells, in :data:`COLUMNS` order."""
    from .bench_report import _fmt as fmt

    return [[r["size"], r["method"], fmt(r["min_ms"], ".2f"), fmt(r["median_ms"], ".2f"),
             fmt(r["gbps"], ".1f"), fmt(r["roofline"], ".2f"), fmt(r["vs_fp32"], ".2f", "x"),
             fmt(r["vs_bnb"], ".1f", "x"), fmt(r["state_bytes_per_param"], ".2f")]
            for r in rows]
