"""The CUDA backend, on a GPU or under Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1).

The same cases as the CPU suite, at small sizes (the simulator runs every thread in
Python): every optimizer option x dtype against the NumPy reference over several
steps, batch norm for every layout, the gradient utilities, state_dict, and the
device-specific bad input (host arrays given to "cuda", mixed or multi-device arrays).
"""

import numpy as np
import pytest

import fastopt

from conftest import tolerance
from test_backends import check_batchnorm_window
from test_optim_reference import CASES, case_id

pytestmark = pytest.mark.cuda

if "cuda" not in fastopt.available_backends():
    pytest.skip("no CUDA device and NUMBA_ENABLE_CUDASIM is not set",
                allow_module_level=True)

from numba import cuda  # noqa: E402

from fastopt import _device  # noqa: E402
from fastopt.backends import numba_cuda  # noqa: E402

# More than one chunk per tensor, a Fortran-ordered matrix, a scalar and an empty one.
SHAPES = [(3 * numba_cuda.CHUNK + 5,), (17, 9), (0,), ()]


def _host_params(rng, dtype):
    arrays = [np.asarray(rng.standard_normal(s)).astype(dtype) for s in SHAPES]
    arrays[1] = np.asfortranarray(arrays[1])
    return arrays


def _to_device(arrays):
    return [cuda.to_device(a) for a in arrays]


def _grads(rng, arrays):
    """Random grads in each array's dtype and memory order."""
    grads = [np.empty_like(a) for a in arrays]
    for g in grads:
        g[...] = rng.standard_normal(g.shape)
    return grads


@pytest.mark.parametrize("case", CASES, ids=case_id)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_optimizers_match_reference(case, dtype, rng):
    cls, kw = case
    host = _host_params(rng, dtype)
    device = _to_device(host)
    opt = cls(device, **kw)
    ref = cls(host, backend="numpy", **kw)
    assert opt.backend == "cuda"
    for step in range(4):
        grads = _grads(rng, host)
        scale = 4.0 if step == 2 else None
        assert opt.step(_to_device(grads), grad_scale=scale) is True
        ref.step(grads, grad_scale=scale)
    for got, want in zip(device, host):
        np.testing.assert_allclose(got.copy_to_host(), want, **tolerance(dtype))
    for i in range(len(SHAPES)):
        for name, state in opt.state(i).items():
            np.testing.assert_allclose(state.copy_to_host(), ref.state(i)[name],
                                       **tolerance(dtype))


def test_groups_split_over_several_launches(monkeypatch, rng):
    monkeypatch.setattr(numba_cuda, "MAX_TENSORS_PER_LAUNCH", 2)
    host = [rng.standard_normal(n).astype(np.float32) for n in (5, 300, 7, 1, 40)]
    device = _to_device(host)
    opt, ref = fastopt.Adam(device, lr=0.1), fastopt.Adam(host, lr=0.1, backend="numpy")
    for _ in range(3):
        grads = _grads(rng, host)
        opt.step(_to_device(grads))
        ref.step(grads)
    for got, want in zip(device, host):
        np.testing.assert_allclose(got.copy_to_host(), want, **tolerance(np.float32))


def test_functional_on_device(rng):
    host = _host_params(rng, np.float32)[:2]
    m, v = [np.zeros_like(p) for p in host], [np.zeros_like(p) for p in host]
    device, dm, dv = _to_device(host), _to_device(m), _to_device(v)
    grads = _grads(rng, host)
    fastopt.functional.adam_(device, _to_device(grads), dm, dv, step=1, lr=0.1)
    fastopt.functional.adam_(host, grads, m, v, step=1, lr=0.1, backend="numpy")
    for got, want in zip(device + dm + dv, host + m + v):
        np.testing.assert_allclose(got.copy_to_host(), want, **tolerance(np.float32))


def test_state_dict_round_trip_continues_identically(rng):
    host = _host_params(rng, np.float64)
    a, b = _to_device(host), _to_device(host)
    opt_a = fastopt.RMSprop(a, lr=0.01, momentum=0.9, centered=True)
    grads = [_grads(rng, host) for _ in range(4)]
    for g in grads[:2]:
        opt_a.step(_to_device(g))
    saved = opt_a.state_dict()
    assert all(isinstance(v, np.ndarray) for k, v in saved.items() if k.startswith("state."))
    for p_b, p_a in zip(b, a):
        _device.write(p_b, p_a.copy_to_host())
    opt_b = fastopt.RMSprop(b, lr=0.01, momentum=0.9, centered=True)
    opt_b.load_state_dict(saved)
    for g in grads[2:]:
        opt_a.step(_to_device(g))
        opt_b.step(_to_device(g))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.copy_to_host(), y.copy_to_host())


def test_skip_nonfinite_changes_nothing(rng):
    host = _host_params(rng, np.float32)
    device = _to_device(host)
    opt = fastopt.Adam(device, lr=0.1, skip_nonfinite=True)
    grads = _grads(rng, host)
    grads[0][7] = np.nan
    assert opt.step(_to_device(grads)) is False
    assert opt.steps == 0
    for got, want in zip(device, host):
        np.testing.assert_array_equal(got.copy_to_host(), want)
    assert fastopt.all_finite(_to_device(grads)) is False
    grads[0][7] = 0.0
    assert fastopt.all_finite(_to_device(grads)) is True


def test_global_norm_matches_host(rng):
    grads = _grads(rng, _host_params(rng, np.float32))
    got = fastopt.global_norm(_to_device(grads))
    want = np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in grads))
    assert got == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("shape, axis", [((4, 3, 5, 6), 1), ((9, 4), 1), ((3, 4, 5, 2), -1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batchnorm_matches_reference(shape, axis, dtype, rng):
    x = (rng.standard_normal(shape) * 2 + 1).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    channels = shape[axis]
    gamma, beta = (rng.standard_normal(channels).astype(dtype) for _ in range(2))
    rm, rv = np.zeros(channels, dtype), np.ones(channels, dtype)
    d_rm, d_rv = cuda.to_device(rm), cuda.to_device(rv)
    y, c = fastopt.batchnorm_forward(x, gamma, beta, rm, rv, axis=axis, backend="numpy")
    dx, dg, db = fastopt.batchnorm_backward(dy, c)
    d_y, d_c = fastopt.batchnorm_forward(cuda.to_device(x), cuda.to_device(gamma),
                                         cuda.to_device(beta), d_rm, d_rv, axis=axis)
    outputs = (d_y, *fastopt.batchnorm_backward(cuda.to_device(dy), d_c))
    assert all(_device.is_device_array(o) for o in outputs)
    tol = tolerance(dtype) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-5)
    for got, want in zip(outputs + (d_rm, d_rv), (y, dx, dg, db, rm, rv)):
        np.testing.assert_allclose(got.copy_to_host(), want, **tol)
    # Inference uses the (device) running statistics.
    d_yi, _ = fastopt.batchnorm_forward(cuda.to_device(x), cuda.to_device(gamma),
                                        cuda.to_device(beta), d_rm, d_rv, axis=axis,
                                        training=False)
    yi, _ = fastopt.batchnorm_forward(x, gamma, beta, rm, rv, axis=axis, training=False,
                                      backend="numpy")
    np.testing.assert_allclose(d_yi.copy_to_host(), yi, **tol)


def test_batchnorm_writes_into_device_out_arrays(rng):
    x = rng.standard_normal((6, 3, 70)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    gamma, beta = np.ones(3, np.float32), np.zeros(3, np.float32)
    y, c = fastopt.batchnorm_forward(x, gamma, beta, backend="numpy")
    dx = fastopt.batchnorm_backward(dy, c)[0]
    d_x, d_out, d_dx = cuda.to_device(x), cuda.device_array_like(x), cuda.device_array_like(x)
    got_y, d_c = fastopt.batchnorm_forward(d_x, cuda.to_device(gamma), cuda.to_device(beta),
                                           out=d_out)
    got_dx = fastopt.batchnorm_backward(cuda.to_device(dy), d_c, out=d_dx)[0]
    assert got_y is d_out and got_dx is d_dx
    np.testing.assert_allclose(d_out.copy_to_host(), y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(d_dx.copy_to_host(), dx, rtol=1e-5, atol=1e-5)
    with pytest.raises(TypeError, match="CUDA array"):
        fastopt.batchnorm_forward(d_x, cuda.to_device(gamma), cuda.to_device(beta),
                                  out=np.empty_like(x))
    with pytest.raises(ValueError, match="input"):
        fastopt.batchnorm_forward(d_x, cuda.to_device(gamma), cuda.to_device(beta), out=d_x)


# -- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(5, 7, 90), (9, 11, 1)])
def test_batchnorm_primitives_honour_a_channel_window(shape):
    check_batchnorm_window(numba_cuda.BACKEND, shape, cuda.to_device,
                           lambda a: a.copy_to_host())


def test_host_arrays_are_refused_by_cuda():
    with pytest.raises(TypeError, match="needs CUDA device arrays"):
        fastopt.Adam([np.ones(3, np.float32)], backend="cuda")
    with pytest.raises(TypeError, match="needs CUDA device arrays"):
        fastopt.global_norm([np.ones(3)], backend="cuda")


def test_device_arrays_are_refused_by_cpu_backends():
    with pytest.raises(TypeError, match="runs on the CPU"):
        fastopt.SGD([cuda.to_device(np.ones(3))], backend="numba")


def test_mixed_host_and_device_arrays_are_refused():
    with pytest.raises(TypeError, match="mix NumPy"):
        fastopt.SGD([cuda.to_device(np.ones(3)), np.ones(3)])
    with pytest.raises(TypeError, match="mix NumPy"):
        fastopt.batchnorm_forward(cuda.to_device(np.ones((4, 2))), np.ones(2), np.zeros(2))


def test_host_grads_for_device_params_change_nothing(rng):
    host = _host_params(rng, np.float32)
    device = _to_device(host)
    opt = fastopt.Adam(device, lr=0.1)
    grads = _grads(rng, host)
    with pytest.raises(TypeError, match="CUDA device array"):
        opt.step(grads)
    bad = _to_device(grads)
    bad[1] = cuda.to_device(np.ones((9, 17), np.float32))
    with pytest.raises(ValueError, match="shape"):
        opt.step(bad)
    for got, want in zip(device, host):
        np.testing.assert_array_equal(got.copy_to_host(), want)
    assert opt.steps == 0


def test_arrays_on_different_devices_are_refused(monkeypatch):
    arrays = [cuda.to_device(np.ones(3)), cuda.to_device(np.ones(3))]
    ids = iter([0, 1])
    monkeypatch.setattr(_device, "device_id", lambda a: next(ids))
    with pytest.raises(ValueError, match="different CUDA devices"):
        fastopt.SGD(arrays, lr=0.1)


def test_clip_grad_norm_points_to_the_fused_form():
    with pytest.raises(TypeError, match="grad_scale"):
        fastopt.clip_grad_norm_([cuda.to_device(np.ones(3))], 1.0)


def test_benchmark_gpu_methods_run(rng):
    # The GPU benchmark path (on the simulator: tiny sizes, no timing claims).
    from fastopt import benchmark

    cases = benchmark.cases({"2K": 2048}, kernels=["adam", "batchnorm"],
                            batchnorm_shapes=[("4x3x8x8", (4, 3, 8, 8), 1)])
    results = benchmark.run(cases, ["cuda-copy", "cuda", "torch-cuda"], rounds=1)
    methods = {(r.kernel, r.method) for r in results}
    assert {("adam", "cuda"), ("adam", "cuda-copy"), ("batchnorm", "cuda")} <= methods
    cuda_adam = next(r for r in results if (r.kernel, r.method) == ("adam", "cuda"))
    assert cuda_adam.roofline_fraction is not None and cuda_adam.gbps > 0
