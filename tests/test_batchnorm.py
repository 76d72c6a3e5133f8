"""Batch norm against the reference, torch, finite differences; determinism; bad input."""

import subprocess
import sys

import numpy as np
import pytest

import fastopt
from fastopt import reference

from conftest import thread_env, torch_or_skip

LAYOUTS = [((64, 16), 1), ((66, 16), 1), ((8, 3, 20, 20), 1), ((4, 7, 9), 1),
           ((4, 5, 6, 8), -1), ((2, 3, 70), 1)]  # (66, 16): rows past the 4-row passes


def problem(rng, shape, axis, dtype):
    x = (rng.standard_normal(shape) * 3 + 5).astype(dtype)
    channels = shape[axis]
    gamma = rng.standard_normal(channels).astype(dtype)
    beta = rng.standard_normal(channels).astype(dtype)
    return x, gamma, beta


def tol(dtype):
    return dict(rtol=1e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("shape,axis", LAYOUTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("training", [True, False])
def test_matches_reference(shape, axis, dtype, training, rng, cpu_backend):
    x, gamma, beta = problem(rng, shape, axis, dtype)
    channels = shape[axis]
    rm = rng.standard_normal(channels).astype(dtype)
    rv = rng.uniform(0.5, 2, channels).astype(dtype)
    rm2, rv2 = rm.copy(), rv.copy()
    for _ in range(3):
        y, cache = fastopt.batchnorm_forward(x, gamma, beta, rm, rv, training=training,
                                             momentum=0.2, axis=axis)
        yr, cr = reference.batchnorm_forward(x, gamma, beta, rm2, rv2, training=training,
                                             momentum=0.2, axis=axis)
        np.testing.assert_allclose(y, yr, **tol(dtype))
        np.testing.assert_allclose(rm, rm2, **tol(dtype))
        np.testing.assert_allclose(rv, rv2, **tol(dtype))
        dy = rng.standard_normal(shape).astype(dtype)
        for got, want in zip(fastopt.batchnorm_backward(dy, cache),
                             reference.batchnorm_backward(dy, cr)):
            assert got.dtype == dtype
            np.testing.assert_allclose(got, want, **tol(dtype))
    assert y.dtype == dtype and y.shape == x.shape


@pytest.mark.parametrize("shape,axis", LAYOUTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_torch(shape, axis, dtype, rng, cpu_backend):
    torch = torch_or_skip()
    x, gamma, beta = problem(rng, shape, axis, dtype)
    channels = shape[axis]
    rm, rv = np.zeros(channels, dtype), np.ones(channels, dtype)
    trm, trv = torch.zeros(channels, dtype=torch.from_numpy(x).dtype), \
        torch.ones(channels, dtype=torch.from_numpy(x).dtype)

    def to_torch_layout(a):  # torch wants channels at axis 1
        return torch.from_numpy(np.ascontiguousarray(np.moveaxis(a, axis, 1)))

    for _ in range(3):  # running statistics over several calls
        tx = to_torch_layout(x).requires_grad_(True)
        tg = torch.tensor(gamma, requires_grad=True)
        tb = torch.tensor(beta, requires_grad=True)
        ty = torch.nn.functional.batch_norm(tx, trm, trv, tg, tb, training=True,
                                            momentum=0.1, eps=1e-5)
        y, cache = fastopt.batchnorm_forward(x, gamma, beta, rm, rv, axis=axis)
        np.testing.assert_allclose(np.moveaxis(y, axis, 1), ty.detach().numpy(), **tol(dtype))
        dy = rng.standard_normal(shape).astype(dtype)
        ty.backward(to_torch_layout(dy))
        dx, dgamma, dbeta = fastopt.batchnorm_backward(dy, cache)
        np.testing.assert_allclose(np.moveaxis(dx, axis, 1), tx.grad.numpy(), **tol(dtype))
        np.testing.assert_allclose(dgamma, tg.grad.numpy(), **tol(dtype))
        np.testing.assert_allclose(dbeta, tb.grad.numpy(), **tol(dtype))
    np.testing.assert_allclose(rm, trm.numpy(), **tol(dtype))
    np.testing.assert_allclose(rv, trv.numpy(), **tol(dtype))
    y, _ = fastopt.batchnorm_forward(x, gamma, beta, rm, rv, training=False, axis=axis)
    ty = torch.nn.functional.batch_norm(to_torch_layout(x), trm, trv, torch.tensor(gamma),
                                        torch.tensor(beta), training=False)
    np.testing.assert_allclose(np.moveaxis(y, axis, 1), ty.numpy(), **tol(dtype))


def test_backward_finite_differences(rng, cpu_backend):
    x, gamma, beta = problem(rng, (5, 3, 4), 1, np.float64)
    weights = rng.standard_normal(x.shape)

    def loss(x_, gamma_, beta_):
        y, _ = fastopt.batchnorm_forward(x_, gamma_, beta_)
        return float(np.sum(weights * y))

    _, cache = fastopt.batchnorm_forward(x, gamma, beta)
    dx, dgamma, dbeta = fastopt.batchnorm_backward(weights, cache)
    h = 1e-6
    for array, grad in ((x, dx), (gamma, dgamma), (beta, dbeta)):
        numeric = np.zeros_like(array)
        for idx in np.ndindex(array.shape):
            old = array[idx]
            array[idx] = old + h
            up = loss(x, gamma, beta)
            array[idx] = old - h
            down = loss(x, gamma, beta)
            array[idx] = old
            numeric[idx] = (up - down) / (2 * h)
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-7)


def test_layer_equals_functions(rng, cpu_backend):
    x, _, _ = problem(rng, (6, 4, 5, 5), 1, np.float32)
    layer = fastopt.BatchNorm(4, momentum=0.3)
    rm, rv = np.zeros(4, np.float32), np.ones(4, np.float32)
    y = layer.forward(x)
    y2, cache = fastopt.batchnorm_forward(x, np.ones(4, np.float32), np.zeros(4, np.float32),
                                          rm, rv, momentum=0.3)
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(layer.running_var, rv)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    dx = layer.backward(dy)
    dx2, dg2, db2 = fastopt.batchnorm_backward(dy, cache)
    np.testing.assert_array_equal(dx, dx2)
    np.testing.assert_array_equal(layer.dgamma, dg2)
    np.testing.assert_array_equal(layer.grads["beta"], db2)
    yi = layer.forward(x, training=False)
    np.testing.assert_allclose(yi, (x - rm[None, :, None, None]) / np.sqrt(
        rv[None, :, None, None] + 1e-5), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(16, 3, 64, 64), (1030, 300)])  # NCHW; (N, C) rows
def test_identical_bits_for_one_and_two_threads(shape, cpu_compiled_backend):
    code = (
        "import numpy as np, fastopt, hashlib\n"
        "rng = np.random.default_rng(3)\n"
        f"x = rng.standard_normal({shape}).astype(np.float32)\n"
        f"g, b = np.ones({shape[1]}, np.float32), np.zeros({shape[1]}, np.float32)\n"
        "y, c = fastopt.batchnorm_forward(x, g, b)\n"
        "dx, dg, db = fastopt.batchnorm_backward(x[::-1].copy(), c)\n"
        "print(hashlib.sha256(b''.join(a.tobytes() for a in (y, dx, dg, db))).hexdigest())\n")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, env=thread_env(n, cpu_compiled_backend.name)
                           ).stdout
            for n in (1, 2)}
    assert len(outs) == 1


def _bad_cases():
    f32 = np.float32
    x = np.ones((4, 3), f32)
    ones, zeros = np.ones(3, f32), np.zeros(3, f32)
    return [
        (dict(x=np.ones(5, f32)), ValueError, "2 dimensions"),
        (dict(x=np.ones((4, 3), np.int32)), TypeError, "float32"),
        (dict(gamma=np.ones(4, f32)), ValueError, "gamma"),
        (dict(beta=np.ones(3)), TypeError, "beta"),
        (dict(running_mean=np.zeros(2, f32)), ValueError, "running_mean"),
        (dict(running_var=None), ValueError, "both"),
        (dict(x=np.ones((1, 3), f32)), ValueError, "more than 1 value"),
        (dict(training=False, running_mean=None, running_var=None), ValueError, "running"),
        (dict(axis=3), ValueError, "axis"),
        (dict(momentum=1.5), ValueError, "momentum"),
        (dict(eps=0.0), ValueError, "eps"),
    ], x, ones, zeros


@pytest.mark.parametrize("index", range(11))
def test_bad_forward_input_mutates_nothing(index, cpu_backend):
    cases, x, ones, zeros = _bad_cases()
    change, error, match = cases[index]
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    args = dict(x=x, gamma=ones, beta=zeros, running_mean=rm, running_var=rv)
    args.update(change)
    kwargs = {k: args.pop(k) for k in list(args) if k in ("training", "axis", "momentum", "eps")}
    with pytest.raises(error, match=match):
        fastopt.batchnorm_forward(args["x"], args["gamma"], args["beta"],
                                  args["running_mean"], args["running_var"], **kwargs)
    np.testing.assert_array_equal(rm, np.zeros(3))
    np.testing.assert_array_equal(rv, np.ones(3))


def test_bad_backward_input(cpu_backend):
    x = np.ones((4, 3), np.float32)
    _, cache = fastopt.batchnorm_forward(x + np.arange(4, dtype=np.float32)[:, None],
                                         np.ones(3, np.float32),
                                         np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="shape"):
        fastopt.batchnorm_backward(np.ones((3, 4), np.float32), cache)
    with pytest.raises(TypeError, match="dtype"):
        fastopt.batchnorm_backward(np.ones((4, 3)), cache)
    with pytest.raises(TypeError, match="cache"):
        fastopt.batchnorm_backward(np.ones((4, 3), np.float32), {"x": x})
    with pytest.raises(RuntimeError, match="before forward"):
        fastopt.BatchNorm(3).backward(x)


@pytest.mark.parametrize("shape, axis", [((8, 5, 9, 7), 1), ((4, 3, 100, 100), 1),
                                         ((6, 4, 5, 3), -1), ((33, 7), 1)])
def test_compiled_backends_agree(shape, axis):
    # Two independent implementations (Numba, C) with the same blocking; each may
    # vectorise its float64 sums differently, so the statistics agree to rounding.
    compiled = [b for b in ("numba", "c") if b in fastopt.available_backends()]
    if len(compiled) < 2:
        pytest.skip("needs both the numba and the c backend")
    rng = np.random.default_rng(5)
    x = (rng.standard_normal(shape) * 3 + 2).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    channels = shape[axis]
    gamma = rng.standard_normal(channels).astype(np.float32)
    beta = rng.standard_normal(channels).astype(np.float32)
    results, caches = [], []
    for name in compiled:
        y, cache = fastopt.batchnorm_forward(x, gamma, beta, axis=axis, backend=name)
        results.append((y, *fastopt.batchnorm_backward(dy, cache)))
        caches.append(cache)
    np.testing.assert_allclose(caches[0].mean, caches[1].mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(caches[0].var, caches[1].var, rtol=1e-12)
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_per_channel_maths_gives_the_numpy_bits(dtype):
    # fastopt/_bn_math.py is one source: plain NumPy for the c/numpy/cuda backends,
    # compiled by Numba for the numba backend. Both must produce the same bits.
    if "numba" not in fastopt.available_backends():
        pytest.skip("needs numba")
    from fastopt import _bn_math
    from fastopt.backends.numba_cpu import BN_MATH

    rng = np.random.default_rng(11)
    c, n = 37, 123
    s1, s2 = rng.standard_normal(c) * 5, np.abs(rng.standard_normal(c)) * 50
    s2[0] = 0.0  # a constant channel: var clamps at 0
    shift, mean = rng.standard_normal(c), rng.standard_normal(c)
    gamma, beta = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)
    invstd, dbeta, sxc = np.abs(rng.standard_normal(c)) + 0.1, *rng.standard_normal((2, c))
    cases = [("forward_statistics", (s1, s2, shift, n)),
             ("forward_coefficients", (mean, np.abs(s2) / n, gamma, beta, 1e-5)),
             ("backward_coefficients", (dbeta, sxc, gamma, mean, invstd, n))]
    for name, args in cases:
        for got, want in zip(getattr(BN_MATH, name)(*args), getattr(_bn_math, name)(*args)):
            np.testing.assert_array_equal(got, want, err_msg=name)
    running = [(rng.standard_normal(c).astype(dtype), np.abs(rng.standard_normal(c)).astype(dtype))
               for _ in range(2)]
    running[1] = tuple(a.copy() for a in running[0])
    BN_MATH.running_update(*running[0], mean, invstd, 0.1, n)
    _bn_math.running_update(*running[1], mean, invstd, 0.1, n)
    for got, want in zip(*running):
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, want)
    if "c" in fastopt.available_backends():  # the C backend's running update, in C
        from fastopt import backends

        running[0] = tuple(a.copy() for a in running[1])
        backends.get_backend("c").bn_math.running_update(*running[0], mean, invstd, 0.1, n)
        _bn_math.running_update(*running[1], mean, invstd, 0.1, n)
        for got, want in zip(*running):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("shape, window", [((6, 5, 70), (1, 4)), ((33, 7, 1), (0, 7)),
                                           ((9, 3, 1), (0, 3))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("name", ["numba", "c"])
def test_compiled_window_passes_give_the_python_bits(shape, window, dtype, training, name):
    # fastopt/_bn_passes.py is one source too: the numba backend compiles it around its
    # kernels, the C backend has it (and the per-channel maths) in C, the others run it
    # as Python around their bn_sums and bn_affine with the plain NumPy per-channel
    # maths. Run that way around the backend's own kernels, it must give the bits of
    # the backend's passes.
    if name not in fastopt.available_backends():
        pytest.skip(f"needs {name}")
    from types import SimpleNamespace

    from fastopt import backends, batchnorm

    runner = backends.get_backend(name)
    interpreted = batchnorm._window_passes.__wrapped__(SimpleNamespace(
        bn_sums=runner.bn_sums, bn_affine=runner.bn_affine))
    rng = np.random.default_rng(13)
    x3 = (rng.standard_normal(shape) * 3 + 2).astype(dtype)
    dy3 = rng.standard_normal(shape).astype(dtype)
    w = slice(*window)
    width = window[1] - window[0]
    gamma, beta = rng.standard_normal((2, width)).astype(dtype)
    shift = x3[0, w, 0].astype(np.float64)
    running = rng.standard_normal(width), np.abs(rng.standard_normal(width)) + 0.5
    n = shape[0] * shape[2]
    results = []
    for forward, backward in (runner.bn_passes, interpreted):
        y3, dx3 = np.zeros_like(x3), np.zeros_like(x3)  # channels outside the window stay 0
        mean, var, invstd = forward(x3, shift, *running, gamma, beta, 1e-5, n, training, y3,
                                    *window)
        dgamma, dbeta = backward(dy3, x3, mean, invstd, gamma, n, training, dx3, *window)
        results.append((y3, dx3, mean, var, invstd, dgamma, dbeta))
    for got, want in zip(*results):
        np.testing.assert_array_equal(got, want)
    assert not results[0][0][:, :window[0]].any()


@pytest.mark.parametrize("shape", [(6, 5, 70), (33, 7, 1), (64, 100, 1), (3, 4, 64)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("training", [True, False])
def test_numba_serial_passes_give_the_parallel_bits(shape, dtype, training):
    # Small work runs copies of the numba passes compiled without `parallel`; the
    # same loops in order must give the parallel passes' bits.
    if "numba" not in fastopt.available_backends():
        pytest.skip("needs numba")
    from fastopt.backends import numba_cpu

    rng = np.random.default_rng(5)
    x3 = (rng.standard_normal(shape) * 2 + 1).astype(dtype)
    dy3 = rng.standard_normal(shape).astype(dtype)
    gamma, beta = rng.standard_normal((2, shape[1])).astype(dtype)
    shift = x3[0, :, 0].astype(np.float64)
    running = rng.standard_normal(shape[1]), np.abs(rng.standard_normal(shape[1])) + 0.5
    n = shape[0] * shape[2]
    results = []
    for forward, backward in ((numba_cpu._BN_FORWARD, numba_cpu._BN_BACKWARD),
                              (numba_cpu._BN_FORWARD_SERIAL, numba_cpu._BN_BACKWARD_SERIAL)):
        y3, dx3 = np.empty_like(x3), np.empty_like(x3)
        mean, var, invstd = forward(x3, shift, *running, gamma, beta, 1e-5, n, training, y3,
                                    0, shape[1])
        dgamma, dbeta = backward(dy3, x3, mean, invstd, gamma, n, training, dx3, 0, shape[1])
        results.append((y3, dx3, mean, var, invstd, dgamma, dbeta))
    for got, want in zip(*results):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("shape, axis, windowed", [
    ((6, 5, 9, 80), 1, True), ((3, 7, 130), 1, True),  # long rows: a window per channel
    ((512, 2, 32, 32), 1, True),  # 16 row blocks, whose totals NumPy's sum would
    # add pairwise for a one-channel window
    ((40, 6), 1, False), ((4, 5, 6, 8), -1, False)])  # short rows: never cut
@pytest.mark.parametrize("training", [True, False])
def test_channel_windows_give_the_same_bits(shape, axis, windowed, training, monkeypatch,
                                            cpu_backend):
    # Writing into out= arrays, the CPU backends cut NCHW passes into cache-sized
    # channel windows. A channel's sums use the same blocking in any window, so the
    # bits must be those of one window, and of new outputs.
    from fastopt.backends import _tables

    rng = np.random.default_rng(8)
    x, gamma, beta = problem(rng, shape, axis, np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    channels = shape[axis]
    results = []
    for budget, out in ((1 << 30, None), (1 << 30, True), (1, True)):
        monkeypatch.setattr(_tables, "WINDOW_BYTES", budget)
        stats = np.zeros(channels, np.float32), np.ones(channels, np.float32)
        y_out, dx_out = (np.full(shape, np.nan, np.float32) for _ in range(2)) if out \
            else (None, None)
        y, cache = fastopt.batchnorm_forward(x, gamma, beta, *stats, training=training,
                                             axis=axis, out=y_out)
        dx, dgamma, dbeta = fastopt.batchnorm_backward(dy, cache, out=dx_out)
        if out:
            assert y is y_out and dx is dx_out
        results.append((y, *stats, dx, dgamma, dbeta, cache.mean, cache.var))  # float64 too
    view = (shape[0], channels, int(np.prod(shape[2:]))) if axis == 1 else \
        (int(np.prod(shape[:-1])), channels, 1)
    assert len(_tables.bn_windows(view, 4, 1)) == (channels if windowed else 1)
    for new, one_window, windows in zip(*results):
        np.testing.assert_array_equal(one_window, new)
        np.testing.assert_array_equal(windows, new)
    ref_y = reference.batchnorm_forward(x, gamma, beta, training=training, axis=axis,
                                        running_mean=np.zeros(channels, np.float32),
                                        running_var=np.ones(channels, np.float32))[0]
    np.testing.assert_allclose(results[2][0], ref_y, **tol(np.float32))


@pytest.mark.parametrize("which", ["forward", "backward"])
@pytest.mark.parametrize("bad, error, match", [
    (np.zeros((8, 3, 5), np.float64), ValueError, "dtype"),
    (np.zeros((8, 3, 6), np.float32), ValueError, "shape"),
    (np.zeros((8, 5, 3), np.float32).transpose(0, 2, 1), ValueError, "C-contiguous"),
    ("x", ValueError, "overlaps"),
    ([0.0], TypeError, "NumPy array")])
def test_bad_out_is_refused_before_anything_changes(which, bad, error, match, cpu_backend):
    rng = np.random.default_rng(2)
    x, gamma, beta = problem(rng, (8, 3, 5), 1, np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    stats = np.zeros(3, np.float32), np.ones(3, np.float32)
    _, cache = fastopt.batchnorm_forward(x, gamma, beta)
    bad = x if isinstance(bad, str) else bad
    before = [a.copy() for a in (x, dy, *stats)]
    with pytest.raises(error, match=match):
        if which == "forward":
            fastopt.batchnorm_forward(x, gamma, beta, *stats, out=bad)
        else:
            fastopt.batchnorm_backward(dy, cache, out=bad)
    for a, b in zip((x, dy, *stats), before):
        np.testing.assert_array_equal(a, b)
    read_only = np.zeros_like(x)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        fastopt.batchnorm_forward(x, gamma, beta, out=read_only)


def test_layer_reuses_only_outputs_nobody_holds(cpu_backend):
    rng = np.random.default_rng(6)
    x, _, _ = problem(rng, (8, 4, 70), 1, np.float32)
    layer = fastopt.BatchNorm(4)
    y1 = layer.forward(x)
    kept = y1.copy()
    y2 = layer.forward(x * 2)  # y1 is held: a new array
    assert not np.shares_memory(y1, y2)
    np.testing.assert_array_equal(y1, kept)
    first, second = y1.ctypes.data, y2.ctypes.data
    view = y1[:1]
    del y1, y2
    y3 = layer.forward(x)  # a view still holds y1's array; y2's is free
    assert y3.ctypes.data == second
    np.testing.assert_array_equal(view, kept[:1])
    del view
    y4 = layer.forward(x)  # y3 is held; nobody holds y1's array now
    assert y4.ctypes.data == first
    np.testing.assert_array_equal(y4, kept)
    dx1 = layer.backward(x)
    dx2 = layer.backward(x)
    assert not np.shares_memory(dx1, dx2)
    np.testing.assert_array_equal(dx1, dx2)
    fresh = fastopt.BatchNorm(4, reuse_outputs=False)
    np.testing.assert_array_equal(fresh.forward(x), kept)
