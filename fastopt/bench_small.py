"""Small work, the benchmark behind ``fastopt bench --small``: what one call costs when
the arrays are as small as most NumPy trainers' are, against the NumPy code it replaces.

At these sizes the time of a call is mostly its fixed cost (argument checks, dispatch,
the kernel launch), not memory. Each entry point is timed against the code a user
would otherwise run: the library's own update (:mod:`fastopt.originals`) for an
adapter, a NumPy loop over the tensors for an optimizer step, cs231n's batch norm for
batch norm, and torch.optim where torch has the same call.

Method. Every method gets its own arrays and one warm-up call. A *sample* is the mean
over ``number`` back-to-back calls (``number`` chosen per method so that a sample
lasts about a millisecond), after one untimed call: the first call after the other
methods ran can cost much more than the next (torch's OpenMP threads have gone to
sleep by then, and waking them took 0.5-1 ms a call on the 2-core VM, 10-20x torch's
back-to-back time for a (64, 100) batch norm), and a training loop calls back to
back. Methods are sampled in interleaved rounds, and we report the minimum and
median sample in microseconds per call. ``vs numpy`` and ``vs torch`` are the
baseline's minimum over fastopt's. State evolves across calls as in training (same
gradients every call).
"""

import contextlib
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

import fastopt
from fastopt.originals import autograd as book_autograd
from fastopt.originals import cs231n as book_cs231n
from fastopt.originals import deeplearning_ai as book_dlai
from fastopt.originals import dlfs as book_dlfs
from fastopt.originals import nnfs as book_nnfs

METHODS = ("numpy", "numba", "c", "torch")
FASTOPT = ("numba", "c")
ELEMENT_SIZES = (10, 100, 1000, 10_000)
SAMPLE_SECONDS = 1e-3


@dataclass
class SmallCase:
    """One entry point on one problem. ``build(method)`` returns a zero-argument
    callable making one call, or None where the method has no such call."""

    entry: str
    size: str
    elements: int
    tensors: int
    build: Callable


@dataclass
class SmallResult:
    """Per-call times of one method on one case, in microseconds."""

    entry: str
    size: str
    elements: int
    tensors: int
    method: str
    number: int
    min_us: float
    median_us: float
    speedup_vs_numpy: float = None
    speedup_vs_torch: float = None


# ---------------------------------------------------------------------------
# The hand-written NumPy step the optimizer entry points replace: torch.optim's Adam
# over a list of tensors, in place, as a NumPy trainer writes it.

def numpy_adam_loop(params, grads, ms, vs, step, lr=1e-3, beta1=0.9, beta2=0.999,
                    eps=1e-8):
    """One Adam step over lists of arrays with NumPy's in-place operators."""
    bias1, bias2 = 1 - beta1 ** step, 1 - beta2 ** step
    for p, g, m, v in zip(params, grads, ms, vs):
        m *= beta1
        m += (1 - beta1) * g
        v *= beta2
        v += (1 - beta2) * g * g
        p -= (lr / bias1) * m / (np.sqrt(v) / np.sqrt(bias2) + eps)


def _torch():
    from .benchmark import _torch
    return _torch()


@contextlib.contextmanager
def _backend(method):
    """FASTOPT_BACKEND set to ``method`` (the adapters' way of choosing a backend)."""
    saved = os.environ.get("FASTOPT_BACKEND")
    os.environ["FASTOPT_BACKEND"] = method
    try:
        yield
    finally:
        if saved is None:
            del os.environ["FASTOPT_BACKEND"]
        else:
            os.environ["FASTOPT_BACKEND"] = saved


def _available(method):
    return method in FASTOPT and method in fastopt.available_backends()


# ---------------------------------------------------------------------------
# The cases. Each builder makes fresh arrays for the method it is asked for.

def _cs231n_case(rule, n):
    def build(method):
        rng = np.random.default_rng(0)
        w, dw = rng.standard_normal(n), rng.standard_normal(n)
        config = {"learning_rate": 1e-3}
        if method == "numpy":
            code = getattr(book_cs231n, rule)
            config.update({"sgd_momentum": {"momentum": 0.9},
                           "rmsprop": {"decay_rate": 0.99, "epsilon": 1e-8,
                                       "cache": np.zeros(n)},
                           "adam": {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8,
                                    "m": np.zeros(n), "v": np.zeros(n), "t": 0}}[rule])
            box = [w]

            def call():
                box[0], _ = code(box[0], dw, config)
            return call
        if _available(method):
            from .compat import cs231n
            code = getattr(cs231n, rule)
            return lambda: code(w, dw, config)
        return None
    return SmallCase(f"compat.cs231n.{rule}", str(n), n, 1, build)


def _nnfs_case(n_in, n_out):
    def build(method):
        np.random.seed(0)
        layer = book_nnfs.Layer_Dense(n_in, n_out)
        layer.dweights = np.random.randn(n_in, n_out)
        layer.dbiases = np.random.randn(1, n_out)
        if method == "numpy":
            opt = book_nnfs.Optimizer_Adam()
        elif _available(method):
            from .compat import nnfs
            opt = nnfs.Optimizer_Adam()
        else:
            return None
        return lambda: opt.update_params(layer)
    return SmallCase("compat.nnfs.Optimizer_Adam.update_params", f"Dense({n_in}, {n_out})",
                     n_in * n_out + n_out, 2, build)


def _shapes_of(sizes):
    shapes = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        shapes += [(fan_in, fan_out), (fan_out,)]
    return shapes


def _adam_case(entry, shapes, label):
    """``Adam.step`` over ``shapes`` (float32), or ``functional.adam_`` on one array."""
    def build(method):
        rng = np.random.default_rng(0)
        params = [rng.standard_normal(s, dtype=np.float32) for s in shapes]
        grads = [rng.standard_normal(s, dtype=np.float32) for s in shapes]
        if method == "numpy":
            ms, vs = [np.zeros_like(p) for p in params], [np.zeros_like(p) for p in params]
            step = [0]

            def call():
                step[0] += 1
                numpy_adam_loop(params, grads, ms, vs, step[0])
            return call
        if method == "torch":
            torch = _torch()
            if torch is None:
                return None
            tensors = [torch.from_numpy(p) for p in params]
            for t, g in zip(tensors, grads):
                t.grad = torch.from_numpy(g)
            opt = torch.optim.Adam(tensors, lr=1e-3, fused=True)

            def torch_step():
                with torch.no_grad():
                    opt.step()
            return torch_step
        if not _available(method):
            return None
        if entry == "Adam.step":
            named = {f"p{i}": p for i, p in enumerate(params)}
            named_grads = {f"p{i}": g for i, g in enumerate(grads)}
            opt = fastopt.Adam(named, lr=1e-3, backend=method)
            return lambda: opt.step(named_grads)
        (p,), (g,) = params, grads
        m, v = np.zeros_like(p), np.zeros_like(p)
        step = [0]

        def functional_call():
            step[0] += 1
            fastopt.functional.adam_(p, g, m, v, step=step[0], lr=1e-3, backend=method)
        return functional_call
    return SmallCase(entry, label, int(sum(np.prod(s) for s in shapes)), len(shapes), build)


def _batchnorm_case(shape):
    def build(method):
        rng = np.random.default_rng(0)
        x = rng.standard_normal(shape, dtype=np.float32)
        dy = rng.standard_normal(shape, dtype=np.float32)
        gamma = np.ones(shape[1], np.float32)
        beta = np.zeros(shape[1], np.float32)
        if method == "numpy":
            bn_param = {"mode": "train"}

            def call():
                _, cache = book_cs231n.batchnorm_forward(x, gamma, beta, bn_param)
                return book_cs231n.batchnorm_backward(dy, cache)
            return call
        if method == "torch":
            torch = _torch()
            if torch is None:
                return None
            aten = torch.ops.aten
            tx, tdy, w, b = (torch.from_numpy(a) for a in (x, dy, gamma, beta))
            rm, rv = torch.zeros(shape[1]), torch.ones(shape[1])

            def torch_call():
                _, mean, invstd = aten.native_batch_norm(tx, w, b, rm, rv, True, 0.1, 1e-5)
                return aten.native_batch_norm_backward(tdy, tx, w, rm, rv, mean, invstd,
                                                       True, 1e-5, [True, True, True])
            return torch_call
        if not _available(method):
            return None
        rm, rv = np.zeros(shape[1], np.float32), np.ones(shape[1], np.float32)

        def fastopt_call():
            _, cache = fastopt.batchnorm_forward(x, gamma, beta, rm, rv, backend=method)
            return fastopt.batchnorm_backward(dy, cache)
        return fastopt_call
    return SmallCase("batchnorm_forward + batchnorm_backward", "x".join(map(str, shape)),
                     int(np.prod(shape)), 1, build)


def _dlai_net(sizes):
    """The course's layout: W{l} of shape (n_l, n_{l-1}), b{l} of shape (n_l, 1)."""
    rng = np.random.default_rng(0)
    params, grads = {}, {}
    for n in range(1, len(sizes)):
        for key, shape in (("W", (sizes[n], sizes[n - 1])), ("b", (sizes[n], 1))):
            params[f"{key}{n}"] = rng.standard_normal(shape) * 0.01
            grads[f"d{key}{n}"] = rng.standard_normal(shape)
    return params, grads


def _dlai_case(sizes=(12288, 20, 7, 5, 1)):
    def build(method):
        params, grads = _dlai_net(sizes)
        if method == "numpy":
            code = book_dlai
        elif _available(method):
            from .compat import deeplearning_ai as code
        else:
            return None
        v = {"d" + k: np.zeros_like(a) for k, a in params.items()}
        s = {"d" + k: np.zeros_like(a) for k, a in params.items()}
        t = [0]

        def call():
            t[0] += 1
            code.update_parameters_with_adam(params, grads, v, s, t[0])
        return call
    params, _ = _dlai_net(sizes)
    return SmallCase("compat.deeplearning_ai.update_parameters_with_adam",
                     "-".join(map(str, sizes)), sum(a.size for a in params.values()),
                     len(params), build)


def _dlfs_case(sizes=(784, 50, 10)):
    shapes = {}
    for n, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]), 1):
        shapes[f"W{n}"], shapes[f"b{n}"] = (fan_in, fan_out), (fan_out,)

    def build(method):
        rng = np.random.default_rng(0)
        params = {k: rng.standard_normal(s) * 0.01 for k, s in shapes.items()}
        grads = {k: rng.standard_normal(s) for k, s in shapes.items()}
        if method == "numpy":
            opt = book_dlfs.Adam()
        elif _available(method):
            from .compat import dlfs
            opt = dlfs.Adam()
        else:
            return None
        return lambda: opt.update(params, grads)
    return SmallCase("compat.dlfs.Adam.update", "-".join(map(str, sizes)),
                     int(sum(np.prod(s) for s in shapes.values())), len(shapes), build)


def _autograd_case(sizes=(784, 200, 100, 10), num_iters=10):
    n = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))

    def build(method):
        rng = np.random.default_rng(0)
        x0, g = rng.standard_normal(n) * 0.01, rng.standard_normal(n)
        if method == "numpy":
            code = book_autograd.adam
        elif _available(method):
            from .compat import autograd
            code = autograd.adam
        else:
            return None
        return lambda: code(lambda x, i: g, x0, num_iters=num_iters)
    return SmallCase(f"compat.autograd.adam (num_iters={num_iters})",
                     "-".join(map(str, sizes)), n, 1, build)


def _sklearn_case(n_samples=2000, n_features=20, max_iter=20):
    try:
        from sklearn.datasets import make_classification
        from sklearn.neural_network import MLPClassifier
    except ImportError:
        return None

    def build(method):
        X, y = make_classification(n_samples=n_samples, n_features=n_features,
                                   random_state=0)

        def fit():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # ConvergenceWarning: max_iter is small
                MLPClassifier(max_iter=max_iter, tol=0.0, random_state=0).fit(X, y)

        if method == "numpy":
            return fit
        if not _available(method):
            return None
        from .compat import sklearn

        def accelerated_fit():
            with sklearn.accelerate():
                fit()
        return accelerated_fit
    hidden = 100  # MLPClassifier's default hidden_layer_sizes=(100,); one output unit
    return SmallCase("compat.sklearn.accelerate: MLPClassifier().fit",
                     f"{n_samples}x{n_features}, {max_iter} epochs",
                     n_features * hidden + hidden + hidden + 1, 4, build)


def cases():
    """Every small-work case: each entry point at the sizes its users have."""
    found = [_cs231n_case(rule, n) for rule in ("adam", "rmsprop", "sgd_momentum")
             for n in ELEMENT_SIZES]
    found += [_nnfs_case(*shape) for shape in ((2, 64), (64, 3), (64, 64))]
    found += [_adam_case("functional.adam_", [(n,)], str(n)) for n in ELEMENT_SIZES]
    found += [_adam_case("Adam.step", _shapes_of((2, 64, 3)), "2-64-3"),
              _adam_case("Adam.step", _shapes_of((784, 256, 256, 10)), "784-256-256-10")]
    found += [_batchnorm_case((64, 100)), _batchnorm_case((256, 1024))]
    found += [_dlai_case(), _dlfs_case(), _autograd_case()]
    sklearn_case = _sklearn_case()
    return found + ([sklearn_case] if sklearn_case else [])


# ---------------------------------------------------------------------------
# Timing.

def _number(call, seconds=SAMPLE_SECONDS):
    """Calls per sample so that a sample lasts about ``seconds``, from the time of a
    call made right after another (see the module docstring)."""
    call()
    start = time.perf_counter()
    call()
    once = time.perf_counter() - start
    return max(1, min(10_000, int(seconds / max(once, 1e-7))))


def time_case(case, methods, rounds):
    """``{method: (number, [seconds per call, one per round])}`` for one case."""
    calls = {}
    for method in methods:
        with _backend(method) if method in FASTOPT else contextlib.nullcontext():
            call = case.build(method)
            if call is not None:
                call()  # warm-up: compiles, allocates state
                calls[method] = (call, _number(call))
    samples = {m: [] for m in calls}
    for _ in range(rounds):
        for method, (call, number) in calls.items():
            with _backend(method) if method in FASTOPT else contextlib.nullcontext():
                call()  # untimed: the sample times calls made back to back
                start = time.perf_counter()
                for _ in range(number):
                    call()
                samples[method].append((time.perf_counter() - start) / number)
    return {m: (calls[m][1], samples[m]) for m in calls}


def summarise(case, timed):
    """Results of one case with the ratios against NumPy and torch filled in."""
    minima = {m: min(s) for m, (_, s) in timed.items()}
    results = []
    for method, (number, samples) in timed.items():
        result = SmallResult(case.entry, case.size, case.elements, case.tensors, method,
                             number, minima[method] * 1e6, float(np.median(samples)) * 1e6)
        if method in FASTOPT:
            if "numpy" in minima:
                result.speedup_vs_numpy = minima["numpy"] / minima[method]
            if "torch" in minima:
                result.speedup_vs_torch = minima["torch"] / minima[method]
        results.append(result)
    return results


def run(methods=METHODS, rounds=15, progress=None, selected=None):
    """Time every case (or those whose entry contains one of ``selected``)."""
    from .benchmark import load_openmp_first
    load_openmp_first("torch" in methods)
    chosen = [c for c in cases() if not selected or any(s in c.entry for s in selected)]
    results = []
    for i, case in enumerate(chosen):
        if progress:
            progress(i, len(chosen), case)
        results.extend(summarise(case, time_case(case, methods, rounds)))
    return results


def progress_printer(stream=None):
    """A progress callback printing ``[i/n] entry size`` lines (to stderr by default)."""
    import sys
    stream = stream or sys.stderr
    start = time.perf_counter()

    def report(i, n, case):
        print(f"[{i + 1}/{n}] {case.entry} {case.size}  t={time.perf_counter() - start:.0f}s",
              file=stream, flush=True)
    return report
