"""The checks of fastopt.distributed that need R > 1 ranks, run by tests/test_distributed.py
as ``mpiexec -n R python tests/mpi_zero.py [save PATH | load PATH]``.

Every rank knows every rank's gradients (they come from seeded generators), so each
rank computes the reference itself: the plain optimizer stepped on the mean gradient
``((g0 + g1) + g2) / R`` summed in rank order. Any failed check aborts every rank
with a non-zero exit status.
"""

import sys
import traceback

import numpy as np
from mpi4py import MPI

import fastopt
from fastopt.distributed import ZeroRedundancyOptimizer, allreduce_gradients_

COMM = MPI.COMM_WORLD
R, RANK = COMM.Get_size(), COMM.Get_rank()
SHAPES = [[((13, 7), np.float32), ((7,), np.float32), ((7, 3), np.float64)],
          [((3, 5), np.float32), ((5,), np.float64)]]
CASES = [
    (fastopt.Adam, dict(lr=0.01, weight_decay=0.01)),
    (fastopt.AdamW, dict(lr=0.01, amsgrad=True)),
    (fastopt.SGD, dict(lr=0.05, momentum=0.9, nesterov=True)),
    (fastopt.Adagrad, dict(lr=0.05, initial_accumulator_value=0.1)),
]


def params():
    rng = np.random.default_rng(1)
    return [[rng.standard_normal(s).astype(d) for s, d in group] for group in SHAPES]


def groups(arrays):
    return [{"params": arrays[0]}, {"params": arrays[1], "lr": 0.02}]


def grads_of(rank, step, scale=1.0):
    rng = np.random.default_rng(1000 * step + rank)
    return [(scale * rng.standard_normal(s)).astype(d) for group in SHAPES for s, d in group]


def mean_grads(step):
    per_rank = [grads_of(k, step) for k in range(R)]
    mean = [g.copy() for g in per_rank[0]]
    for k in range(1, R):
        for m, g in zip(mean, per_rank[k]):
            m += g
    for m in mean:
        m /= m.dtype.type(R)
    return mean


def flat(arrays):
    return [a for group in arrays for a in group]


def same_state(a, b):
    assert set(a) == set(b), sorted(set(a) ^ set(b))
    for key in a:
        if isinstance(a[key], np.ndarray):
            assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape, key
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        else:
            assert a[key] == b[key], (key, a[key], b[key])


def check_deterministic_matches_one_process():
    for cls, kw in CASES:
        ours, ref = params(), params()
        zero = ZeroRedundancyOptimizer(groups(ours), cls, deterministic=True, **kw)
        plain = cls(groups(ref), **kw)
        for step in range(1, 7):
            scale = 2.0 if step == 4 else None
            zero.step(grads_of(RANK, step), grad_scale=scale)
            plain.step(mean_grads(step), grad_scale=scale)
        for a, b in zip(flat(ours), flat(ref)):
            np.testing.assert_array_equal(a, b, err_msg=cls.__name__)
        zero.consolidate_state_dict(to=R - 1)
        if RANK == R - 1:
            same_state(zero.state_dict(), plain.state_dict())
        else:
            try:
                zero.state_dict()
            except RuntimeError:
                pass
            else:
                raise AssertionError("state_dict() on a rank that did not consolidate")
        # 1/R of the state per rank (up to the padding of the last slice)
        held = sum(a.nbytes for j in range(len(zero.local_optimizer._flat))
                   for a in zero.local_optimizer.state(j).values())
        total = sum(a.nbytes for j in range(len(plain._flat)) for a in plain.state(j).values())
        assert held <= total / R + 64, (held, total)


def check_default_mode_within_rounding():
    ours, ref = params(), params()
    zero = ZeroRedundancyOptimizer(groups(ours), fastopt.Adam, lr=0.01)
    plain = fastopt.Adam(groups(ref), lr=0.01)
    for step in range(1, 6):
        zero.step(grads_of(RANK, step))
        plain.step(mean_grads(step))
    for a, b in zip(flat(ours), flat(ref)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    other = [COMM.bcast(a if RANK == 0 else None, root=0) for a in flat(ours)]
    for a, b in zip(flat(ours), other):  # the same params on every rank, bit for bit
        np.testing.assert_array_equal(a, b)


def check_skip_nonfinite_is_decided_everywhere():
    ours = params()
    zero = ZeroRedundancyOptimizer(groups(ours), fastopt.Adam, lr=0.01, skip_nonfinite=True)
    assert zero.step(grads_of(RANK, 1))
    before = [a.copy() for a in flat(ours)]
    grads = grads_of(RANK, 2)
    if RANK == R - 1:
        grads[0][0, 0] = np.inf  # one element, on one rank
    assert zero.step(grads) is False
    assert zero.steps == 1
    for a, b in zip(flat(ours), before):
        np.testing.assert_array_equal(a, b)


def check_refusals_reach_every_rank():
    ours = params()
    zero = ZeroRedundancyOptimizer(groups(ours), fastopt.Adam, lr=0.01)
    before = [a.copy() for a in flat(ours)]
    grads = grads_of(RANK, 1)
    if RANK == 0:
        grads[1] = np.ones(8, np.float32)  # the wrong shape, on rank 0 only
    try:
        zero.step(grads)
    except ValueError as error:
        assert ("shape" in str(error)) if RANK == 0 else ("rank 0 refused" in str(error))
    else:
        raise AssertionError("bad grads on rank 0 were not refused on every rank")
    for a, b in zip(flat(ours), before):
        np.testing.assert_array_equal(a, b)
    mine = params()
    if RANK == R - 1:
        mine[0][1] = np.ones(8, np.float32)  # params that differ across ranks
    try:
        ZeroRedundancyOptimizer(groups(mine), fastopt.Adam)
    except ValueError as error:
        assert "differ across ranks" in str(error), error
    else:
        raise AssertionError("params that differ across ranks were not refused")


def check_allreduce_gradients():
    grads = grads_of(RANK, 3)
    allreduce_gradients_(grads, deterministic=True, bucket_mb=0.0005)  # several buckets
    for a, b in zip(grads, mean_grads(3)):
        np.testing.assert_array_equal(a, b)
    named = {f"g{i}": g for i, g in enumerate(grads_of(RANK, 4))}
    allreduce_gradients_(named)
    for a, b in zip(named.values(), mean_grads(4)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    sums = grads_of(RANK, 5)
    allreduce_gradients_(sums, average=False, deterministic=True)
    for a, b in zip(sums, mean_grads(5)):
        np.testing.assert_allclose(a, b * R, rtol=1e-6)


def save(path):
    """Train at this R and write the consolidated state and the params."""
    ours = params()
    zero = ZeroRedundancyOptimizer(groups(ours), fastopt.Adam, deterministic=True, lr=0.01)
    for step in range(1, 4):
        zero.step(grads_of(RANK, step))
    zero.consolidate_state_dict(to=0)
    if RANK == 0:
        np.savez(path, **zero.state_dict(),
                 **{f"param.{i}": a for i, a in enumerate(flat(ours))})


def load(path):
    """Resume at this R from a state saved at another R; continue as one process would
    on the mean of this R's grads."""
    saved = dict(np.load(path))
    ours, ref = params(), params()
    for a, b, i in zip(flat(ours), flat(ref), range(len(flat(ours)))):
        a[...] = saved[f"param.{i}"]
        b[...] = saved[f"param.{i}"]
    state = {k: v for k, v in saved.items() if not k.startswith("param.")}
    zero = ZeroRedundancyOptimizer(groups(ours), fastopt.Adam, deterministic=True, lr=0.01)
    zero.load_state_dict(state)
    plain = fastopt.Adam(groups(ref), lr=0.01)
    plain.load_state_dict(state)
    for step in range(4, 6):
        zero.step(grads_of(RANK, step))
        plain.step(mean_grads(step))
    for a, b in zip(flat(ours), flat(ref)):
        np.testing.assert_array_equal(a, b)
    bad = dict(state, **{"state.0.exp_avg": np.zeros((2, 2), np.float32)})
    try:
        zero.load_state_dict(bad)
    except ValueError:
        pass
    else:
        raise AssertionError("a state of the wrong shape was loaded")


def main(argv):
    if argv[:1] == ["save"]:
        save(argv[1])
    elif argv[:1] == ["load"]:
        load(argv[1])
    else:
        check_deterministic_matches_one_process()
        check_default_mode_within_rounding()
        check_skip_nonfinite_is_decided_everywhere()
        check_refusals_reach_every_rank()
        check_allreduce_gradients()
    print(f"rank {RANK} of {R}: ok", flush=True)


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except BaseException:  # noqa: BLE001 - any failure must stop every rank
        traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        COMM.Abort(1)
