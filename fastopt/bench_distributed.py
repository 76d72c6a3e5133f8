"""The distributed benchmark behind ``fastopt bench --distributed``: a data-parallel
Adam step over MPI at R = 1, 2, ... ranks, ZeRO-1 against allreduce-then-step, with
the optimizer state each rank holds and the bandwidth of the collectives they use.

``fastopt bench --distributed`` launches ``mpiexec -n R python -m
fastopt.bench_distributed`` once per R (each rank with ``cpus // R`` threads, so the
ranks share the machine rather than oversubscribe it) and reports the JSON that rank
0 writes. Per case (a parameter list, float32) and R:

* ``zero step``: ``ZeroRedundancyOptimizer.step`` (reduce-scatter of the mean
  gradient, Adam on this rank's slice, allgather of the params);
* ``allreduce + step``: ``allreduce_gradients_`` then a full Adam step on every rank
  (plain data parallelism, every rank holding all the state);
* the bytes of Adam state on each rank under each;
* ``allreduce``, ``reduce-scatter`` and ``allgather`` of the whole gradient buffer,
  as algorithm bandwidth (buffer bytes over time).

Times are the minimum and median over rounds, each round timed on rank 0 between
barriers.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

CASES = {"mlp": None, "16M": [(1 << 24,)]}  # None: benchmark.mlp_shapes()


def _shapes(name):
    from .benchmark import mlp_shapes

    return mlp_shapes() if CASES[name] is None else CASES[name]


def _timed(comm, run, rounds):
    times = []
    run()  # warm-up: compiles, allocates
    for _ in range(rounds):
        comm.Barrier()
        start = time.perf_counter()
        run()
        comm.Barrier()
        times.append(time.perf_counter() - start)
    return min(times), float(np.median(times))


def _state_bytes(opt):
    return sum(a.nbytes for j in range(len(opt._flat)) for a in opt.state(j).values())


def measure(comm, names, rounds):
    """Rows of results for each case, measured on ``comm`` (rank 0's view)."""
    return [_measure_case(comm, name, rounds) for name in names]


def _measure_case(comm, name, rounds):
    import fastopt
    from fastopt.distributed import ZeroRedundancyOptimizer, allreduce_gradients_

    size = comm.Get_size()
    shapes = _shapes(name)
    rng = np.random.default_rng(comm.Get_rank())
    grads = [rng.standard_normal(s, dtype=np.float32) for s in shapes]
    params = [np.random.default_rng(0).standard_normal(s, dtype=np.float32) for s in shapes]
    zero = ZeroRedundancyOptimizer([p.copy() for p in params], fastopt.Adam, comm=comm,
                                   lr=1e-3)
    plain = fastopt.Adam([p.copy() for p in params], lr=1e-3)
    work = [g.copy() for g in grads]

    def ddp_step():
        # averaged in place, over and over: after the first call every rank holds the
        # same values, which averaging keeps (no copy of fresh grads is timed)
        allreduce_gradients_(work, comm=comm)
        plain.step(work)

    n = sum(g.size for g in grads)
    per_rank = -(-n // size)
    padded = np.zeros(per_rank * size, np.float32)
    padded[:n] = np.concatenate([g.ravel() for g in grads])
    out, piece = np.empty_like(padded), np.empty(per_rank, np.float32)
    row = {"case": name, "elements": n, "tensors": len(shapes), "ranks": size}
    for label, run in (
            ("zero step", lambda: zero.step(grads)),
            ("allreduce + step", ddp_step),
            ("allreduce", lambda: comm.Allreduce(padded, out)),
            ("reduce-scatter", lambda: comm.Reduce_scatter_block(padded, piece)),
            ("allgather", lambda: comm.Allgather(piece, out))):
        low, median = _timed(comm, run, rounds)
        row[label] = {"min_ms": low * 1e3, "median_ms": median * 1e3}
        if label in ("allreduce", "reduce-scatter", "allgather"):
            row[label]["GB/s"] = padded.nbytes / low / 1e9
    row["zero state bytes per rank"] = max(comm.allgather(_state_bytes(zero.local_optimizer)))
    row["full state bytes per rank"] = _state_bytes(plain)
    return row


def _worker(argv):
    """The ``mpiexec`` side: measure, and write rank 0's rows as JSON."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", default="mlp,16M")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", required=True)
    args = parser.parse_args(argv)
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rows = measure(comm, args.cases.split(","), args.rounds)
    if comm.Get_rank() == 0:
        with open(args.json, "w") as f:
            json.dump(rows, f)


def mpiexec():
    """The ``mpiexec`` next to this Python (MPICH's wheel installs it there), or on PATH."""
    return shutil.which("mpiexec", path=os.pathsep.join(
        [os.path.dirname(sys.executable), os.environ.get("PATH", "")]))


def run(ranks=(1, 2), cases=("mlp", "16M"), rounds=7, progress=None):
    """Launch the worker at each number of ranks; the rows of every run."""
    launcher = mpiexec()
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        launcher = None
    if launcher is None:
        raise SystemExit("fastopt bench --distributed needs mpi4py and mpiexec: "
                         "pip install 'fastopt[mpi]'")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in ranks:
            if progress:
                progress(f"{r} rank(s): {', '.join(cases)}")
            threads = str(max(1, (os.cpu_count() or 1) // r))
            env = dict(os.environ, NUMBA_NUM_THREADS=threads, OMP_NUM_THREADS=threads)
            path = os.path.join(tmp, f"r{r}.json")
            subprocess.run([launcher, "-n", str(r), sys.executable, "-m",
                            "fastopt.bench_distributed", "--cases", ",".join(cases),
                            "--rounds", str(rounds), "--json", path],
                           check=True, env=env, timeout=3600)
            with open(path) as f:
                rows += json.load(f)
    return rows


COLUMNS = ["case", "ranks", "zero step ms", "allreduce + step ms", "zero state/rank",
           "full state/rank", "allreduce GB/s", "reduce-scatter GB/s", "allgather GB/s"]


def table_rows(rows):
    """Formatted cells, one row per case and number of ranks."""
    def mb(n):
        return f"{n / (1 << 20):.2f} MiB"

    return [[r["case"], str(r["ranks"]), f"{r['zero step']['min_ms']:.3f}",
             f"{r['allreduce + step']['min_ms']:.3f}", mb(r["zero state bytes per rank"]),
             mb(r["full state bytes per rank"]), f"{r['allreduce']['GB/s']:.2f}",
             f"{r['reduce-scatter']['GB/s']:.2f}", f"{r['allgather']['GB/s']:.2f}"]
            for r in rows]


if __name__ == "__main__":
    _worker(sys.argv[1:])
