"""The benchmark behind ``fastopt bench``: every kernel against the memory roofline,
the NumPy reference and torch, side by side in one process.

Method. For each case (kernel x size) every method gets its own arrays and one
warm-up call; then the methods are timed in interleaved rounds (round r times method
A, B, C, ... once each), so that drifts of a shared machine touch them all alike.
We report the minimum and the median over rounds. The roofline of a case is a
*null kernel* with the same access pattern (for Adam: read p, g, m, v and write
p, m, v with trivial arithmetic) timed in the same rounds; a kernel's fraction of the
roofline is ``null time / kernel time`` (both minima).
"""

import functools
import os
import platform
import sys
import time
from dataclasses import dataclass

import numpy as np

import fastopt
from fastopt.rules import RULES


def _optimizer_kernels():
    """kernel name -> (class name in fastopt and torch.optim, kwargs, torch-only kwargs
    (the fastest implementation torch has for it), number of state arrays), from the
    rules' ``bench`` declarations."""
    kernels = {}
    for rule in RULES.values():
        for kernel, (cls_name, kwargs, torch_kwargs) in rule.bench.items():
            probe = getattr(fastopt, cls_name)([np.zeros(1, np.float32)], backend="numpy",
                                               **kwargs)
            kernels[kernel] = (cls_name, kwargs, torch_kwargs, len(probe.state(0)))
    return kernels


OPTIMIZERS = _optimizer_kernels()

QUICK_SIZES = {"1M": 1 << 20, "16M": 1 << 24}
FULL_SIZES = {"1M": 1 << 20, "64M": 1 << 26}


def resnet50_shapes():
    """The 161 parameter shapes of torchvision's ResNet-50 (25,557,032 parameters)."""
    shapes = [(64, 3, 7, 7), (64,), (64,)]
    in_ch = 64
    for width, blocks in zip((64, 128, 256, 512), (3, 4, 6, 3)):
        for b in range(blocks):
            shapes += [(width, in_ch, 1, 1), (width,), (width,),
                       (width, width, 3, 3), (width,), (width,),
                       (4 * width, width, 1, 1), (4 * width,), (4 * width,)]
            if b == 0:
                shapes += [(4 * width, in_ch, 1, 1), (4 * width,), (4 * width,)]
            in_ch = 4 * width
    return shapes + [(1000, 2048), (1000,)]


def mlp_shapes(sizes=(784, 256, 256, 10)):
    """Weights and biases of a fully connected network (784-256-256-10 by default)."""
    shapes = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        shapes += [(fan_in, fan_out), (fan_out,)]
    return shapes


PARAM_LISTS = {"resnet50": resnet50_shapes, "mlp": mlp_shapes}


@dataclass
class Case:
    """One kernel on one problem: a list of float32 tensor shapes."""

    kernel: str
    label: str
    shapes: list
    bytes_per_element: int
    axis: int = 1  # batch norm: the channel axis
    reuse_outputs: bool = False  # batch norm: write into the same y and dx every call

    @property
    def elements(self):
        return int(sum(np.prod(s, dtype=np.int64) for s in self.shapes))


@dataclass
class Result:
    """Timings of one method on one case; ratios are filled in against the others."""

    kernel: str
    size: str
    elements: int
    tensors: int
    method: str
    min_ms: float
    median_ms: float
    gbps: float
    roofline_fraction: float = None
    speedup_vs_numpy: float = None
    speedup_vs_torch: float = None


# ---------------------------------------------------------------------------
# Null kernels: the memory roofline of each access pattern.

@functools.cache
def _null_kernels():
    """Parallel kernels reading p, g and 1-3 state arrays and writing p and the state
    arrays, with one add each: the same bytes as an optimizer step, no maths.
    Returns {number of state arrays: kernel}."""
    import numba

    from .backends._numba_cache import disk_cache

    @numba.njit(parallel=True, cache=disk_cache())
    def null1(p, g, a):
        for i in numba.prange(p.size):
            gi = g[i]
            p[i] += gi
            a[i] += gi

    @numba.njit(parallel=True, cache=disk_cache())
    def null2(p, g, a, b):
        for i in numba.prange(p.size):
            gi = g[i]
            p[i] += gi
            a[i] += gi
            b[i] += gi

    @numba.njit(parallel=True, cache=disk_cache())
    def null3(p, g, a, b, c):
        for i in numba.prange(p.size):
            gi = g[i]
            p[i] += gi
            a[i] += gi
            b[i] += gi
            c[i] += gi

    return {1: null1, 2: null2, 3: null3}


def _random_arrays(shapes, rng):
    """Small random float32 arrays (finite optimizer states over many steps)."""
    return [rng.standard_normal(s, dtype=np.float32) * np.float32(1e-3) for s in shapes]


def optimizer_runners(case, methods):
    """``{method: zero-argument callable doing one step}`` for the methods available."""
    cls_name, kwargs, torch_kwargs, n_state = OPTIMIZERS[case.kernel]
    rng = np.random.default_rng(0)
    runners = {}
    for method in methods:
        if method == "roofline":
            # Random data, as the optimizers get: the null kernel never writes g, and
            # an np.zeros g would be read from the OS's shared zero page, a stream that
            # costs no memory traffic (it made this roofline 20-30% too fast).
            shapes = [(case.elements,)] * (2 + n_state)
            arrays = _random_arrays(shapes, np.random.default_rng(1))
            kernel = _null_kernels()[n_state]
            runners[method] = lambda k=kernel, a=arrays: k(*a)
        elif method == "torch":
            torch = _torch()
            if torch is None or not hasattr(torch.optim, cls_name):
                continue
            params = [torch.from_numpy(a) for a in _random_arrays(case.shapes, rng)]
            for p, g in zip(params, _random_arrays(case.shapes, rng)):
                p.grad = torch.from_numpy(g)
            opt = getattr(torch.optim, cls_name)(params, **kwargs, **torch_kwargs)

            def torch_step(opt=opt, torch=torch):
                with torch.no_grad():
                    opt.step()

            runners[method] = torch_step
        elif method == "cuda":
            cuda = _cuda()
            if cuda is None:
                continue
            params = [cuda.to_device(a) for a in _random_arrays(case.shapes, rng)]
            grads = [cuda.to_device(a) for a in _random_arrays(case.shapes, rng)]
            opt = getattr(fastopt, cls_name)(params, **kwargs)

            def cuda_step(opt=opt, grads=grads, cuda=cuda):
                opt.step(grads)
                cuda.synchronize()

            runners[method] = cuda_step
        elif method == "torch-cuda":
            torch = _torch_cuda()
            if torch is None or not hasattr(torch.optim, cls_name):
                continue
            params = [torch.from_numpy(a).cuda() for a in _random_arrays(case.shapes, rng)]
            for p, g in zip(params, _random_arrays(case.shapes, rng)):
                p.grad = torch.from_numpy(g).cuda()
            opt = getattr(torch.optim, cls_name)(params, **kwargs, **torch_kwargs)

            def torch_cuda_step(opt=opt, torch=torch):
                with torch.no_grad():
                    opt.step()
                torch.cuda.synchronize()

            runners[method] = torch_cuda_step
        else:
            if method not in CPU_BACKENDS or method not in fastopt.available_backends():
                continue
            params = _random_arrays(case.shapes, rng)
            grads = _random_arrays(case.shapes, rng)
            opt = getattr(fastopt, cls_name)(params, backend=method, **kwargs)
            runners[method] = lambda opt=opt, grads=grads: opt.step(grads)
    return runners


# Methods that run on a CUDA device, and the CPU-side method each is compared with:
# "cuda-copy" (a device-to-device copy moving the case's bytes) plays "roofline", and
# "torch-cuda" plays "torch", for the GPU methods.
GPU_METHODS = ("cuda-copy", "cuda", "torch-cuda")
CPU_BACKENDS = ("numba", "c", "numpy")
CPU_METHODS = ("roofline",) + CPU_BACKENDS + ("torch",)  # the default set
_GPU_BASELINE = {"roofline": "cuda-copy", "torch": "torch-cuda", "numpy": "numpy"}


def _cuda():
    """numba.cuda when a device (or the simulator) is there, else None."""
    try:
        from numba import cuda
    except ImportError:
        return None
    return cuda if cuda.is_available() else None


def _torch_cuda():
    torch = _torch()
    return torch if torch is not None and torch.cuda.is_available() else None


def _device_copy(case):
    """A device-to-device copy that reads and writes the case's bytes in total."""
    cuda = _cuda()
    if cuda is None:
        return None
    n = max(1, case.bytes_per_element * case.elements // 8)  # float32: read n, write n
    src = cuda.to_device(np.zeros(n, np.float32))
    dst = cuda.device_array(n, np.float32)

    def copy(src=src, dst=dst, cuda=cuda):
        dst.copy_to_device(src)
        cuda.synchronize()

    return copy


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


# ---------------------------------------------------------------------------
# Timing and reporting.


def time_interleaved(runners, rounds):
    """``{method: [seconds per round]}``, each method warmed up once, rounds interleaved."""
    for run in runners.values():
        run()
    times = {m: [] for m in runners}
    for _ in range(rounds):
        for method, run in runners.items():
            start = time.perf_counter()
            run()
            times[method].append(time.perf_counter() - start)
    return times


def summarise(case, times):
    """Results for one case, with roofline fraction and speed-ups filled in."""
    minima = {m: min(t) for m, t in times.items()}
    results = []
    for method, t in times.items():
        best = minima[method]
        result = Result(
            kernel=case.kernel, size=case.label, elements=case.elements,
            tensors=len(case.shapes), method=method, min_ms=best * 1e3,
            median_ms=float(np.median(t)) * 1e3,
            gbps=case.bytes_per_element * case.elements / best / 1e9)
        base = (lambda m: _GPU_BASELINE[m]) if method in GPU_METHODS else (lambda m: m)
        if base("roofline") in minima:
            result.roofline_fraction = minima[base("roofline")] / best
        if base("numpy") in minima:
            result.speedup_vs_numpy = minima[base("numpy")] / best
        if base("torch") in minima:
            result.speedup_vs_torch = minima[base("torch")] / best
        results.append(result)
    return results


# Batch norm forward+backward, float32: (label, shape, channel axis). Each shape runs
# twice: with new outputs every call (as torch's functions and fastopt's allocate them)
# and, labelled "/out", writing into the same y and dx every call (fastopt's out= and
# torch's .out overloads; the BatchNorm layer reuses its outputs like this), which
# spares the page faults of fresh memory.
BATCHNORM_QUICK = [("64x64x56x56", (64, 64, 56, 56), 1), ("256x1024", (256, 1024), 1)]
BATCHNORM_FULL = BATCHNORM_QUICK + [("64x56x56x64-NHWC", (64, 56, 56, 64), -1),
                                    ("8x3x224x224", (8, 3, 224, 224), 1)]
KERNELS = {**OPTIMIZERS, "batchnorm": None}


def cases(sizes, param_lists=(), kernels=None, batchnorm_shapes=BATCHNORM_QUICK):
    """All cases for the chosen kernels (default: all)."""
    kernels = kernels or list(KERNELS)
    found = optimizer_cases(sizes, param_lists, [k for k in kernels if k in OPTIMIZERS])
    if "batchnorm" in kernels:
        # forward reads x twice and writes y (12 B); backward reads dy, x twice, writes dx (20 B)
        found += [Case("batchnorm", label + ("/out" if reuse else ""), [shape], 32, axis,
                       reuse)
                  for label, shape, axis in batchnorm_shapes for reuse in (False, True)]
    return found


@functools.cache
def _null_batchnorm():
    """Forward+backward memory traffic of batch norm with trivial arithmetic: four
    passes, 32 bytes per element. Parfor fusion is off (it would merge the passes
    into one and understate the traffic 2.4x, as measured), and the sums may be
    reordered so that they vectorise (a scalar add chain is not memory-bound)."""
    import numba

    from .backends._numba_cache import disk_cache

    @numba.njit(parallel={"fusion": False}, fastmath={"reassoc"}, cache=disk_cache())
    def null_bn(x, dy, y, dx):
        n = x.size
        s = 0.0
        for i in numba.prange(n):  # statistics pass: read x
            s += x[i]
        for i in numba.prange(n):  # normalise: read x, write y
            y[i] = x[i] + 1
        t = 0.0
        for i in numba.prange(n):  # reduction pass: read dy, x
            t += dy[i] * x[i]
        for i in numba.prange(n):  # dx pass: read dy, x, write dx
            dx[i] = dy[i] + x[i]
        return s + t

    return null_bn


def batchnorm_runners(case, methods):
    """``{method: callable doing forward + backward}`` for a batch-norm case."""
    shape, axis = case.shapes[0], case.axis
    channels = shape[axis]
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape, dtype=np.float32)
    dy = rng.standard_normal(shape, dtype=np.float32)
    gamma, beta = np.ones(channels, np.float32), np.zeros(channels, np.float32)
    reuse = case.reuse_outputs
    runners = {}
    for method in methods:
        if method == "roofline":  # always into the same outputs: memory traffic only
            flat = [np.ascontiguousarray(a).ravel() for a in (x, dy)]
            out = [np.empty_like(flat[0]), np.empty_like(flat[0])]
            kernel = _null_batchnorm()
            runners[method] = lambda k=kernel, f=flat, o=out: k(f[0], f[1], o[0], o[1])
        elif method == "torch":
            torch = _torch()
            if torch is None:
                continue
            tx, tdy = torch.from_numpy(x), torch.from_numpy(dy)
            if axis != 1:  # channels-last memory, NCHW logical order
                tx, tdy = tx.movedim(axis, 1), tdy.movedim(axis, 1)
            w, b = torch.from_numpy(gamma), torch.from_numpy(beta)
            rm, rv = torch.zeros(channels), torch.ones(channels)
            aten = torch.ops.aten

            def torch_fwd_bwd(tx=tx, tdy=tdy, w=w, b=b, rm=rm, rv=rv, aten=aten):
                y, mean, invstd = aten.native_batch_norm(tx, w, b, rm, rv, True, 0.1, 1e-5)
                return aten.native_batch_norm_backward(tdy, tx, w, rm, rv, mean, invstd, True,
                                                       1e-5, [True, True, True])

            runners[method] = torch_fwd_bwd
            if reuse:  # torch's .out overloads, into the same outputs every call
                outs = [torch.empty_like(tx), torch.empty(channels), torch.empty(channels)]
                grads = [torch.empty_like(tx), torch.empty(channels), torch.empty(channels)]

                def torch_fwd_bwd_out(tx=tx, tdy=tdy, w=w, b=b, rm=rm, rv=rv, aten=aten,
                                      o=outs, g=grads):
                    aten.native_batch_norm.out(tx, w, b, rm, rv, True, 0.1, 1e-5, out=o[0],
                                               save_mean=o[1], save_invstd=o[2])
                    return aten.native_batch_norm_backward.out(
                        tdy, tx, w, rm, rv, o[1], o[2], True, 1e-5, [True, True, True],
                        out0=g[0], out1=g[1], out2=g[2])

                runners[method] = torch_fwd_bwd_out
        elif method == "cuda":
            cuda = _cuda()
            if cuda is None:
                continue
            d = [cuda.to_device(a) for a in (x, dy, gamma, beta, np.zeros(channels, np.float32),
                                             np.ones(channels, np.float32))]
            out = [cuda.device_array_like(x), cuda.device_array_like(x)] if reuse else \
                [None, None]

            def cuda_fwd_bwd(d=d, cuda=cuda, out=out):
                _, cache = fastopt.batchnorm_forward(d[0], d[2], d[3], d[4], d[5], axis=axis,
                                                     out=out[0])
                fastopt.batchnorm_backward(d[1], cache, out=out[1])
                cuda.synchronize()

            runners[method] = cuda_fwd_bwd
        elif method == "torch-cuda":
            torch = _torch_cuda()
            if torch is None:
                continue
            tx = torch.from_numpy(x).cuda().requires_grad_()
            tdy = torch.from_numpy(dy).cuda()
            if axis != 1:
                tx = torch.from_numpy(x).cuda().movedim(axis, 1).detach().requires_grad_()
                tdy = tdy.movedim(axis, 1)
            w = torch.ones(channels, device="cuda", requires_grad=True)
            b = torch.zeros(channels, device="cuda", requires_grad=True)
            rm, rv = torch.zeros(channels, device="cuda"), torch.ones(channels, device="cuda")

            # (torch's caching allocator reuses device memory whether or not we do)
            def torch_cuda_fwd_bwd(tx=tx, tdy=tdy, w=w, b=b, rm=rm, rv=rv, torch=torch):
                y = torch.nn.functional.batch_norm(tx, rm, rv, w, b, training=True)
                torch.autograd.grad(y, (tx, w, b), tdy)  # cuDNN where torch picks it
                torch.cuda.synchronize()

            runners[method] = torch_cuda_fwd_bwd
        elif method in CPU_BACKENDS and method in fastopt.available_backends():
            rm, rv = np.zeros(channels, np.float32), np.ones(channels, np.float32)
            out = [np.empty_like(x), np.empty_like(x)] if reuse else [None, None]

            def fwd_bwd(method=method, rm=rm, rv=rv, out=out):
                _, cache = fastopt.batchnorm_forward(x, gamma, beta, rm, rv, axis=axis,
                                                     backend=method, out=out[0])
                return fastopt.batchnorm_backward(dy, cache, out=out[1])

            runners[method] = fwd_bwd
    return runners


def runners_for(case, methods):
    """The runners of any case (optimizer or batch norm), in the order of ``methods``."""
    build = batchnorm_runners if case.kernel == "batchnorm" else optimizer_runners
    runners = build(case, [m for m in methods if m != "cuda-copy"])
    if "cuda-copy" in methods:  # the GPU roofline: the same for every kind of case
        copy = _device_copy(case)
        if copy is not None:
            runners["cuda-copy"] = copy
    return {m: runners[m] for m in methods if m in runners}


def optimizer_cases(sizes, param_lists=(), kernels=None):
    """Cases for each optimizer kernel over flat sizes and named parameter lists."""
    cases = []
    for kernel in OPTIMIZERS if kernels is None else kernels:
        n_state = OPTIMIZERS[kernel][3]
        bytes_per_element = 4 * (3 + 2 * n_state)
        for label, n in sizes.items():
            cases.append(Case(kernel, label, [(n,)], bytes_per_element))
        for name in param_lists:
            cases.append(Case(kernel, name, PARAM_LISTS[name](), bytes_per_element))
    return cases


# The OpenMP wait policy the run's one OpenMP runtime started with (see
# load_openmp_first); machine_info reports it.
_OPENMP_POLICY = {}


def load_openmp_first(with_torch):
    """Start the process's OpenMP runtime before anything is timed, and note its wait
    policy. A process has one (libgomp.so.1): torch's copy, when torch loads first,
    serves fastopt's backends too, and fastopt's serves torch the other way round;
    it reads OMP_WAIT_POLICY once, when it loads. With torch among the methods, torch
    loads first, so that it runs with its own default (threads spin a while between
    parallel regions, then sleep), and so does fastopt in that run; without torch,
    fastopt's own default (PASSIVE, see fastopt.backends) holds. On the 2-core VM,
    torch's (64, 100) batch norm took 55 us a call with its default and about 290 us
    under PASSIVE, which a sleeping thread's wake-up dominates."""
    if _OPENMP_POLICY:
        return
    user = os.environ.get("OMP_WAIT_POLICY")
    if with_torch and _torch() is not None:
        _OPENMP_POLICY["policy"] = user or "OpenMP's default (torch loaded first)"
    else:
        _OPENMP_POLICY["policy"] = user or "PASSIVE (fastopt's default)"


def run(cases, methods, rounds, progress=None, runner_factory=None):
    """Time every case; ``progress(i, n, case)`` is called before each one."""
    factory = runner_factory or runners_for
    load_openmp_first(any(m.startswith("torch") for m in methods))
    results = []
    for i, case in enumerate(cases):
        if progress:
            progress(i, len(cases), case)
        runners = factory(case, methods)
        results.extend(summarise(case, time_interleaved(runners, rounds)))
        del runners  # free this case's arrays before the next case allocates its own
    return results


def machine_info(gpu=False):
    """What the numbers were measured on (with ``gpu``, the CUDA device's name too)."""
    from .bench_report import git_commit

    info = {"python": platform.python_version(), "numpy": np.__version__,
            "fastopt": fastopt.__version__, "commit": git_commit(),
            "platform": platform.platform(), "cpus": os.cpu_count(),
            "processor": cpu_model()}
    try:
        import numba
        info["numba"] = numba.__version__
        info["numba_threads"] = numba.config.NUMBA_NUM_THREADS
    except ImportError:
        pass
    try:
        from ._fastopt_c import lib
        info["c_threads"] = lib.fo_max_threads()
    except ImportError:
        pass
    if gpu:
        cuda = _cuda()
        if cuda is not None:
            name = getattr(cuda.get_current_device(), "name", "Numba's CUDA simulator")
            info["gpu"] = name.decode() if isinstance(name, bytes) else str(name)
    torch = _torch()
    if torch is not None:
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    if _OPENMP_POLICY:
        info["omp_wait_policy"] = _OPENMP_POLICY["policy"]
    return info


def cpu_model():
    """The CPU's model name."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def progress_printer(stream=None):
    """A progress callback printing ``[i/n] kernel size`` lines (to stderr by default)."""
    stream = stream or sys.stderr
    start = time.perf_counter()

    def report(i, n, case):
        print(f"[{i + 1}/{n}] {case.kernel} {case.label} ({case.elements:,} elements, "
              f"{len(case.shapes)} tensors)  t={time.perf_counter() - start:.0f}s",
              file=stream, flush=True)

    return report
