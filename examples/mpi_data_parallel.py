"""A NumPy MLP on scikit-learn's digits, trained data-parallel over MPI with the Adam
state sharded across the ranks (fastopt.distributed.ZeroRedundancyOptimizer).

    mpiexec -n 2 python examples/mpi_data_parallel.py            # 2 ranks, 20 epochs
    python examples/mpi_data_parallel.py                         # 1 process
    mpiexec -n 2 python examples/mpi_data_parallel.py --quick    # 3 epochs (CI)

Every step, each rank takes its own share of the same global batch of 64 samples and
computes the mean gradient over its share; the optimizer averages the ranks' gradients
(the global batch's mean gradient), updates the slice of the params whose Adam state
this rank keeps, and all-gathers the params. Rank 0 also trains one process on the
whole global batch with the plain optimizer and prints both loss curves side by side:
they agree to rounding. (Needs ``pip install 'fastopt[mpi]'``; without mpi4py it runs
as one process.)
"""

import argparse
import time

import numpy as np
from sklearn.datasets import load_digits

import fastopt
from fastopt.distributed import ZeroRedundancyOptimizer, default_comm

GLOBAL_BATCH = 64


def init(rng, sizes=(64, 128, 10)):
    params = {}
    for n, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]), 1):
        params[f"W{n}"] = (rng.standard_normal((fan_in, fan_out)) *
                           np.sqrt(2.0 / fan_in)).astype(np.float32)
        params[f"b{n}"] = np.zeros(fan_out, np.float32)
    return params


def loss_and_grads(params, x, y):
    """Softmax cross-entropy of a ReLU MLP, mean over the samples, and its gradients."""
    h = np.maximum(x @ params["W1"] + params["b1"], 0)
    logits = h @ params["W2"] + params["b2"]
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    loss = -np.log(p[np.arange(len(y)), y]).mean()
    d = p
    d[np.arange(len(y)), y] -= 1
    d /= len(y)
    dh = (d @ params["W2"].T) * (h > 0)
    return float(loss), {"W1": x.T @ dh, "b1": dh.sum(0), "W2": h.T @ d, "b2": d.sum(0)}


def main(argv=None, comm=None):
    """Train; returns rank 0's per-epoch losses of both runs (None on other ranks)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 epochs")
    args = parser.parse_args(argv)
    comm = default_comm(comm)
    rank, size = comm.Get_rank(), comm.Get_size()
    if GLOBAL_BATCH % size:
        raise SystemExit(f"{size} ranks do not divide the global batch of {GLOBAL_BATCH}")
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target
    params = init(np.random.default_rng(0))  # the same on every rank
    zero = ZeroRedundancyOptimizer(params, fastopt.Adam, lr=3e-3, deterministic=True)
    reference = {k: v.copy() for k, v in params.items()}
    one = fastopt.Adam(reference, lr=3e-3) if rank == 0 else None
    share = GLOBAL_BATCH // size
    epochs = 3 if args.quick else 20
    local = zero.local_optimizer
    state_bytes = sum(a.nbytes for j in range(len(local.param_groups[0]["params"]))
                      for a in local.state(j).values())
    if rank == 0:
        print(f"{size} rank(s), global batch {GLOBAL_BATCH} ({share} per rank), Adam state "
              f"on rank 0: {state_bytes:,} bytes")
        print("epoch   loss (ranks)   loss (one process)   epoch s")
    order_rng = np.random.default_rng(1)  # the same batches on every rank
    curves = {"ranks": [], "one process": []}
    for epoch in range(1, epochs + 1):
        start, losses, reference_losses = time.perf_counter(), [], []
        order = order_rng.permutation(len(x))
        for b in range(0, len(x) - GLOBAL_BATCH + 1, GLOBAL_BATCH):
            batch = order[b:b + GLOBAL_BATCH]
            mine = batch[rank * share:(rank + 1) * share]
            loss, grads = loss_and_grads(params, x[mine], y[mine])
            zero.step(grads)
            losses.append(sum(comm.allgather(loss)) / size)  # the global batch's loss
            if one is not None:
                ref_loss, ref_grads = loss_and_grads(reference, x[batch], y[batch])
                one.step(ref_grads)
                reference_losses.append(ref_loss)
        if rank == 0:
            curves["ranks"].append(float(np.mean(losses)))
            curves["one process"].append(float(np.mean(reference_losses)))
            print(f"{epoch:5d}   {curves['ranks'][-1]:12.6f}   "
                  f"{curves['one process'][-1]:18.6f}   {time.perf_counter() - start:7.2f}")
    return curves if rank == 0 else None


if __name__ == "__main__":
    main()
