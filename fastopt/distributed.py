"""Data-parallel training over MPI: gradient averaging, and ZeRO-1 (sharded optimizer
state) around any fastopt optimizer.

Run one process per rank (``mpiexec -n R python train.py``); each rank computes the
gradients of its own mini-batches, then either

* ``allreduce_gradients_(grads)`` replaces them by their mean over the ranks, and
  every rank steps its own full optimizer, or
* ``ZeroRedundancyOptimizer(params, fastopt.Adam, lr=...)`` takes the local grads:
  each rank keeps the optimizer state of 1/R of the elements only (ZeRO stage 1,
  Rajbhandari et al. 2020) and updates that slice, and the params are all-gathered,
  so every rank ends each step with the same params. Per step and rank this moves
  what one allreduce moves (a reduce-scatter plus an allgather: about 2 (R-1)/R
  times the params' bytes), and the optimizer state and its update work are 1/R.

The mean is the sum over the ranks divided by R. By default MPI sums (its algorithm
decides the order, so the bits may differ from a sum in rank order). With
``deterministic=True`` each rank receives every rank's copy of its slice (Alltoall)
and adds them in ascending rank order in the gradients' dtype, ``((g0 + g1) + g2) /
R``: R ranks then give the bits of one process stepping the plain optimizer on that
mean.

``comm`` is an mpi4py communicator; by default ``MPI.COMM_WORLD`` when mpi4py is
installed, else a single process (R = 1, no MPI imported), where everything is the
plain optimizer. Everything is checked on every rank before the first collective,
and an error on any rank is raised on all of them, so no rank is left waiting.
Install with ``pip install 'fastopt[mpi]'`` (mpi4py and MPICH's wheels, which bring
``mpiexec``).
"""

from collections.abc import Mapping

import numpy as np

from . import _validate
from ._tensorset import flat_view, memory_order
from .grads import all_finite


class SingleProcess:
    """A communicator of one rank, used when no ``comm`` is given and mpi4py is not
    installed: the collectives of :mod:`fastopt.distributed` are copies."""

    def Get_rank(self):  # noqa: N802 - mpi4py's names
        return 0

    def Get_size(self):  # noqa: N802
        return 1

    def allgather(self, value):
        return [value]

    def gather(self, value, root=0):
        return [value]

    def Allreduce(self, send, recv, op=None):  # noqa: N802
        np.copyto(recv, send)

    def Reduce_scatter_block(self, send, recv, op=None):  # noqa: N802
        np.copyto(recv, send)

    def Alltoall(self, send, recv):  # noqa: N802
        np.copyto(recv, send)

    def Allgather(self, send, recv):  # noqa: N802
        np.copyto(recv, send)


def default_comm(comm=None):
    """``comm``, or ``MPI.COMM_WORLD`` when mpi4py is installed, or :class:`SingleProcess`."""
    if comm is not None:
        return comm
    try:
        from mpi4py import MPI
    except ImportError:
        return SingleProcess()
    return MPI.COMM_WORLD


def _sum_op(comm):
    if isinstance(comm, SingleProcess):
        return None
    from mpi4py import MPI
    return MPI.SUM


def _agree(comm, error):
    """Raise on every rank when any rank has an ``error`` (an exception or None): the
    rank's own error where it has one, else a ValueError naming the rank that did."""
    reports = comm.allgather(None if error is None else f"{type(error).__name__}: {error}")
    if error is not None:
        raise error
    for rank, report in enumerate(reports):
        if report is not None:
            raise ValueError(f"rank {rank} refused the call ({report}); every rank stops")


def _column_ranges(per_rank, size, itemsize, bucket_bytes):
    """``[start, stop)`` ranges of a rank's slice (``per_rank`` elements) such that one
    collective over that range of every rank's slice moves at most ``bucket_bytes``."""
    width = max(1, bucket_bytes // max(1, size * itemsize))
    return [(a, min(a + width, per_rank)) for a in range(0, per_rank, width)] or [(0, 0)]


def _mean_slices(comm, send, recv, deterministic, bucket_bytes):
    """``recv`` (S elements) = this rank's slice of the mean over the ranks of ``send``
    (R*S elements, rank r's slice at r*S), in the dtype; one collective per bucket."""
    size = comm.Get_size()
    rows = send.reshape(size, recv.size)
    for a, b in _column_ranges(recv.size, size, send.itemsize, bucket_bytes):
        part = np.ascontiguousarray(rows[:, a:b])  # every rank's slice, columns a:b
        mine = recv[a:b]
        if deterministic:
            received = np.empty_like(part)
            comm.Alltoall(part, received)  # row k: rank k's copy of this rank's columns
            np.copyto(mine, received[0])
            for k in range(1, size):
                mine += received[k]  # ascending rank order: ((g0 + g1) + g2) ...
        else:
            comm.Reduce_scatter_block(part, mine, op=_sum_op(comm))
    recv /= recv.dtype.type(size)


def _gather_slices(comm, mine, full, bucket_bytes):
    """``full`` (R*S elements) = every rank's ``mine`` (S elements) in rank order."""
    size = comm.Get_size()
    rows = full.reshape(size, mine.size)
    for a, b in _column_ranges(mine.size, size, mine.itemsize, bucket_bytes):
        if b - a == mine.size:
            comm.Allgather(mine, full)
            return
        part = np.empty((size, b - a), dtype=mine.dtype)
        comm.Allgather(np.ascontiguousarray(mine[a:b]), part)
        rows[:, a:b] = part


def _check_host_arrays(arrays, what):
    for i, a in enumerate(arrays):
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{what} {i} must be a NumPy array, got {type(a).__name__}")
        _validate.param(a, f"{what} {i}")


def _signature(arrays):
    return [(a.dtype.str, a.shape, memory_order(a)) for a in arrays]


def _same_everywhere(comm, signature, what):
    """Refuse, on every rank, arrays whose dtypes, shapes or count differ across ranks."""
    signatures = comm.allgather(signature)
    for rank, other in enumerate(signatures):
        if other != signatures[0]:
            if len(other) != len(signatures[0]):
                detail = f"{len(signatures[0])} on rank 0, {len(other)} on rank {rank}"
            else:
                i = next(i for i, (a, b) in enumerate(zip(signatures[0], other)) if a != b)
                detail = (f"{what} {i} is {signatures[0][i][:2]} on rank 0 and "
                          f"{other[i][:2]} on rank {rank}")
            raise ValueError(f"the {what}s differ across ranks: {detail}")


def _bucket_bytes(bucket_mb):
    mb = _validate.real(bucket_mb, "bucket_mb")
    if mb <= 0:
        raise ValueError(f"bucket_mb must be > 0, got {bucket_mb}")
    return int(mb * (1 << 20))


def allreduce_gradients_(grads, *, comm=None, average=True, bucket_mb=25,
                         deterministic=False):
    """Replace each gradient by its sum (``average``: its mean, the sum divided by R)
    over the ranks, in place. ``grads``: a list or dict of NumPy arrays, the same
    dtypes and shapes on every rank (checked; a mismatch raises on every rank).

    Same-dtype grads travel in buckets of at most ``bucket_mb`` MiB, one flat buffer
    each (as torch DDP and Horovod fuse tensors). ``deterministic``: the sum in
    ascending rank order (see the module docstring). Returns ``grads``.
    """
    comm = default_comm(comm)
    arrays = list(grads.values()) if isinstance(grads, Mapping) else list(grads)
    error = None
    try:
        _check_host_arrays(arrays, "grad")
        limit = _bucket_bytes(bucket_mb)
        _validate.boolean(average, "average")
        _validate.boolean(deterministic, "deterministic")
    except (TypeError, ValueError) as e:
        error = e
    _agree(comm, error)
    _same_everywhere(comm, _signature(arrays), "grad")
    size = comm.Get_size()
    if size == 1 and average:
        return grads  # the mean of one rank: the grads, exactly
    for bucket in _buckets(arrays, limit):
        flats = [flat_view(a) for a in bucket]
        n = sum(f.size for f in flats)
        per_rank = -(-n // size)
        send = np.zeros(per_rank * size, dtype=bucket[0].dtype)
        np.concatenate(flats, out=send[:n])
        total = np.empty_like(send)
        if deterministic or average:
            mine = np.empty(per_rank, dtype=send.dtype)
            _mean_slices(comm, send, mine, deterministic, send.nbytes)
            if not average:
                mine *= mine.dtype.type(size)  # exact: the division by R undone
            _gather_slices(comm, mine, total, send.nbytes)
        else:
            comm.Allreduce(send, total, op=_sum_op(comm))
        offset = 0
        for f in flats:
            f[...] = total[offset:offset + f.size]
            offset += f.size
    return grads


def _buckets(arrays, limit_bytes):
    """Consecutive same-dtype runs of ``arrays``, each at most ``limit_bytes`` (an
    array larger than that is a bucket of its own)."""
    bucket, used = [], 0
    for a in arrays:
        if bucket and (a.dtype != bucket[0].dtype or used + a.nbytes > limit_bytes):
            yield bucket
            bucket, used = [], 0
        bucket.append(a)
        used += a.nbytes
    if bucket:
        yield bucket


class _Shard:
    """The params of one group and dtype laid end to end (``n`` elements), cut into R
    slices of ``per_rank`` elements (the last ones padded), and this rank's pieces:
    ``(param index, start, stop)`` in the param's flat memory order."""

    def __init__(self, indices, flats, rank, size):
        self.indices, self.flats = indices, flats
        self.n = sum(f.size for f in flats)
        self.per_rank = -(-self.n // size)
        self.dtype = flats[0].dtype
        lo, hi = rank * self.per_rank, min((rank + 1) * self.per_rank, self.n)
        self.offsets, self.pieces, offset = [], [], 0
        for i, f in zip(indices, flats):
            self.offsets.append(offset)
            start, stop = max(lo - offset, 0), min(hi - offset, f.size)
            if start < stop:
                self.pieces.append((i, start, stop, offset + start - lo))
            offset += f.size
        self.send = np.zeros(self.per_rank * size, dtype=self.dtype)
        self.mean = np.zeros(self.per_rank, dtype=self.dtype)  # this rank's slice


class ZeroRedundancyOptimizer:
    """``optimizer_class`` (any fastopt optimizer; Adam by default) over params held
    by every rank, with its state sharded over the ranks (ZeRO stage 1).

    The flattened params of each param group and dtype are cut into R contiguous
    slices; rank r keeps the state of slice r in an ordinary fastopt optimizer over
    views of it (:attr:`local_optimizer`). :meth:`step` takes this rank's local grads
    (the structure of params): it reduce-scatters their mean, steps the slice, and
    all-gathers the params in place. ``**defaults`` are the optimizer's options (lr,
    betas, ..., backend, skip_nonfinite); param groups, schedules and ``grad_scale``
    work as in the plain optimizer, and ``skip_nonfinite`` is decided from all ranks'
    grads (the same answer on every rank).
    """

    def __init__(self, params, optimizer_class=None, *, comm=None, deterministic=False,
                 bucket_mb=25, **defaults):
        from . import optim

        self.comm = default_comm(comm)
        self.deterministic = _validate.boolean(deterministic, "deterministic")
        self._bucket_bytes = _bucket_bytes(bucket_mb)
        self.optimizer_class = optimizer_class or optim.CLASSES["Adam"]
        self.skip_nonfinite = _validate.boolean(defaults.pop("skip_nonfinite", False),
                                                "skip_nonfinite")
        class_bits = (self.optimizer_class.__init__.__kwdefaults__ or {}).get("state_bits")
        if defaults.get("state_bits", class_bits) == 8:
            raise ValueError("ZeroRedundancyOptimizer shards float32 state; 8-bit state "
                             "(whole 256-element blocks per rank) is not sharded yet")
        rank, size = self.comm.Get_rank(), self.comm.Get_size()
        error = None
        try:
            groups = optim._param_groups(params)
            # A stateless SGD over the same structure: the params' checks, and the
            # matching and checks of each step's grads, exactly as a plain optimizer's.
            self._matcher = optim.CLASSES["SGD"](
                [{"params": g["params"]} for g in groups], lr=0.0, backend="numpy")
            flat = self._matcher._flat
            if any(not isinstance(p, np.ndarray) for p in flat):
                raise TypeError("ZeroRedundancyOptimizer takes NumPy arrays (host memory)")
        except (TypeError, ValueError) as e:
            error = e
        _agree(self.comm, error)
        _same_everywhere(self.comm, [len(g["params"]) for g in groups] + _signature(flat),
                         "param")
        self._flat_views = [flat_view(p) for p in flat]
        self._shards, local_groups, start = [], [], 0
        for group in groups:
            indices = list(range(start, start + len(group["params"])))
            start += len(indices)
            by_dtype = {}
            for i in indices:
                by_dtype.setdefault(flat[i].dtype, []).append(i)
            members = []
            for same in by_dtype.values():
                shard = _Shard(same, [self._flat_views[i] for i in same], rank, size)
                self._shards.append(shard)
                members += [self._flat_views[i][lo:hi] for i, lo, hi, _ in shard.pieces]
            local_groups.append({**{k: v for k, v in group.items() if k != "params"},
                                 "params": members})
        error = None
        try:
            if not any(g["params"] for g in local_groups):
                raise ValueError(f"with {size} ranks, rank {rank} would hold no elements "
                                 f"of these params ({sum(s.n for s in self._shards)} in "
                                 "all); use fewer ranks or the plain optimizer")
            self.local_optimizer = self.optimizer_class(local_groups, **defaults)
        except (TypeError, ValueError) as e:  # bad options: the same on every rank
            error = e
        _agree(self.comm, error)
        self._consolidated = None

    # -- what a plain optimizer has -------------------------------------------------

    @property
    def param_groups(self):
        """The local optimizer's param groups: set options (``lr``, ...) here; their
        ``params`` are this rank's slice views."""
        return self.local_optimizer.param_groups

    @property
    def steps(self):
        """The number of steps taken (skipped steps do not count)."""
        return self.local_optimizer.steps

    # -- the step ---------------------------------------------------------------------

    def step(self, grads, *, grad_scale=None):
        """One data-parallel step from this rank's local ``grads`` (the structure of
        params); returns True, or False when ``skip_nonfinite`` skips it everywhere."""
        error = None
        try:
            flat = self._matcher._match_grads(grads)
            _validate.grad_scale(grad_scale)
        except (TypeError, ValueError) as e:
            error = e
        _agree(self.comm, error)
        self._consolidated = None
        if self.comm.Get_size() == 1:  # one rank: the mean is the grads, its slice all
            if self.skip_nonfinite and not all_finite(flat):
                return False
            return self.local_optimizer.step([flat[i] for i, _, _ in self._local_pieces()],
                                             grad_scale=grad_scale)
        local_grads = []
        for shard in self._shards:
            offset = 0
            for i in shard.indices:
                g = flat[i]
                shard.send[offset:offset + g.size] = g
                offset += g.size
            _mean_slices(self.comm, shard.send, shard.mean, self.deterministic,
                         self._bucket_bytes)
            local_grads += [shard.mean[at:at + hi - lo] for _, lo, hi, at in shard.pieces]
        if self.skip_nonfinite:
            finite = all(all_finite([s.mean]) for s in self._shards if s.pieces)
            if not all(self.comm.allgather(bool(finite))):
                return False
        self.local_optimizer.step(local_grads, grad_scale=grad_scale)
        self._gather_params()
        return True

    def _gather_params(self):
        """Every rank's slices of the params, written into every rank's params."""
        for shard in self._shards:
            mine = np.zeros(shard.per_rank, dtype=shard.dtype)
            for i, lo, hi, at in shard.pieces:
                mine[at:at + hi - lo] = self._flat_views[i][lo:hi]
            full = np.empty(shard.per_rank * self.comm.Get_size(), dtype=shard.dtype)
            _gather_slices(self.comm, mine, full, self._bucket_bytes)
            for f, offset in zip(shard.flats, shard.offsets):
                f[...] = full[offset:offset + f.size]

    # -- state ------------------------------------------------------------------------

    def _local_pieces(self):
        """``(param index, start, stop)`` of each local optimizer param, in its order."""
        return [(i, lo, hi) for shard in self._shards for i, lo, hi, _ in shard.pieces]

    def consolidate_state_dict(self, to=0):
        """Gather the full state on rank ``to`` (call it on every rank); there,
        :meth:`state_dict` then gives the plain optimizer's state_dict for these
        params."""
        local = self.local_optimizer.state_dict()
        pieces = [(i, lo, hi, {name.split(".", 2)[2]: value for name, value in local.items()
                               if name.startswith(f"state.{j}.")})
                  for j, (i, lo, hi) in enumerate(self._local_pieces())]
        everything = self.comm.gather(pieces, root=to)
        if self.comm.Get_rank() != to:
            self._consolidated = None
            return
        sd = {k: v for k, v in local.items() if not k.startswith("state.")}
        flat = self._matcher._flat
        full = {}
        for rank_pieces in everything:
            for i, lo, hi, states in rank_pieces:
                for name, value in states.items():
                    target = full.setdefault((i, name), np.empty(flat[i].size, flat[i].dtype))
                    target[lo:hi] = value
        for (i, name) in sorted(full, key=lambda key: key[0]):
            p = flat[i]
            sd[f"state.{i}.{name}"] = full[(i, name)].reshape(p.shape, order=memory_order(p))
        self._consolidated = sd

    def state_dict(self):
        """The consolidated state_dict (see :meth:`consolidate_state_dict`); RuntimeError
        on a rank that did not receive it, or when a step has been taken since."""
        if self._consolidated is None:
            raise RuntimeError("call consolidate_state_dict(to=r) on every rank first; "
                               "state_dict() then works on rank r, until the next step")
        return self._consolidated

    def load_state_dict(self, state_dict):
        """Load a plain optimizer's state_dict (or a consolidated one, from any number
        of ranks): this rank keeps its slice. Checked on every rank; a state that does
        not fit raises ValueError on every rank and changes nothing anywhere."""
        sd = dict(state_dict)
        flat = self._matcher._flat
        local, error = {}, None
        try:
            for key, value in sd.items():
                if not key.startswith("state."):
                    local[key] = value
                    continue
                _, index, name = key.split(".", 2)
                i = int(index) if index.isdigit() else -1
                if not 0 <= i < len(flat):
                    raise ValueError(f"state_dict has entries these params do not: [{key!r}]")
                source = np.asarray(value)
                if source.shape != flat[i].shape or source.dtype != flat[i].dtype:
                    raise ValueError(f"state_dict {key!r} has shape {source.shape} and dtype "
                                     f"{source.dtype}; param {i} has {flat[i].shape} and "
                                     f"{flat[i].dtype}")
            names = {key.split(".", 2)[2] for key in sd if key.startswith("state.")}
            for j, (i, lo, hi) in enumerate(self._local_pieces()):
                for name in names:
                    key = f"state.{i}.{name}"
                    if key in sd:
                        order = memory_order(flat[i])
                        local[f"state.{j}.{name}"] = np.asarray(sd[key]).ravel(order=order)[lo:hi]
            backup = self.local_optimizer.state_dict()
            self.local_optimizer.load_state_dict(local)
        except (TypeError, ValueError) as e:
            error = e
        try:
            _agree(self.comm, error)
        except ValueError:
            if error is None:  # this rank loaded, another did not: back to where it was
                self.local_optimizer.load_state_dict(backup)
            raise
        self._consolidated = None

    def __repr__(self):
        return (f"ZeroRedundancyOptimizer({self.local_optimizer!r}, rank "
                f"{self.comm.Get_rank()} of {self.comm.Get_size()}, "
                f"deterministic={self.deterministic})")


__all__ = ["allreduce_gradients_", "ZeroRedundancyOptimizer", "SingleProcess",
           "default_comm"]
