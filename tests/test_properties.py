"""Property tests: random shapes and hyperparameters, on every compiled backend, against the
reference."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastopt

from conftest import tolerance

shapes = st.lists(st.integers(0, 40), min_size=0, max_size=3).map(tuple)
dtypes = st.sampled_from([np.float32, np.float64])
unit = st.floats(0.0, 0.999)
small = st.floats(0.0, 0.5)
lrs = st.floats(1e-5, 1.0)

optimizers = st.one_of(
    st.builds(lambda lr, m, d, wd, l1, mx: (fastopt.SGD, dict(
        lr=lr, momentum=m, dampening=d, weight_decay=wd, l1=l1, maximize=mx)),
        lrs, unit, small, small, small, st.booleans()),
    st.builds(lambda lr, a, c, m, wd: (fastopt.RMSprop, dict(
        lr=lr, alpha=a, centered=c, momentum=m, weight_decay=wd, eps=1e-3)),
        lrs, unit, st.booleans(), unit, small),
    st.builds(lambda lr, b1, b2, wd, ams, l1, cls: (cls, dict(
        lr=lr, betas=(b1, b2), weight_decay=wd, amsgrad=ams, l1=l1)),
        lrs, unit, unit, small, st.booleans(), small,
        st.sampled_from([fastopt.Adam, fastopt.AdamW])),
    st.builds(lambda lr, d, init, wd: (fastopt.Adagrad, dict(
        lr=lr, lr_decay=d, initial_accumulator_value=init, weight_decay=wd)),
        lrs, small, small, small),
    st.builds(lambda lr, rho, wd, mx: (fastopt.Adadelta, dict(
        lr=lr, rho=rho, weight_decay=wd, maximize=mx)), lrs, unit, small, st.booleans()),
    st.builds(lambda lr, b1, b2, wd, l1, cls: (cls, dict(
        lr=lr, betas=(b1, b2), weight_decay=wd, l1=l1)),
        lrs, unit, unit, small, small, st.sampled_from([fastopt.Adamax, fastopt.Lion])),
    st.builds(lambda lr, b1, b2, wd, dec, md, cls: (cls, dict(
        lr=lr, betas=(b1, b2), weight_decay=wd, decoupled_weight_decay=dec,
        **({"momentum_decay": md} if cls is fastopt.NAdam else {}))),
        lrs, unit, unit, small, st.booleans(), small,
        st.sampled_from([fastopt.NAdam, fastopt.RAdam])),
    st.builds(lambda lr, lambd, alpha, t0, wd: (fastopt.ASGD, dict(
        lr=lr, lambd=lambd, alpha=alpha, t0=t0, weight_decay=wd)),
        lrs, small, unit, st.integers(0, 3), small),
    st.builds(lambda lr, minus, plus, lo, mx: (fastopt.Rprop, dict(
        lr=lr, etas=(minus, plus), step_sizes=(lo, 1.0), maximize=mx)),
        lrs, st.floats(0.05, 0.95), st.floats(1.05, 3.0), st.floats(0.0, 1e-3),
        st.booleans()),
)


# The backend fixture only selects a backend, so hypothesis may share it between examples.
SHARED_FIXTURE = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
SIMULATED_SIDE = 12  # the CUDA simulator runs each element in Python: smaller arrays


@settings(max_examples=60, deadline=None, suppress_health_check=SHARED_FIXTURE)
@given(shape_list=st.lists(shapes, min_size=1, max_size=4), dtype=dtypes, opt=optimizers,
       seed=st.integers(0, 2**31 - 1), scale=st.sampled_from([None, 0.5, 8.0]))
def test_random_problems_match_reference(shape_list, dtype, opt, seed, scale,
                                         compiled_backend):
    cls, kw = opt
    if compiled_backend.on_device:
        shape_list = [tuple(min(d, SIMULATED_SIDE) for d in s) for s in shape_list]
    rng = np.random.default_rng(seed)
    expected = [np.asarray(rng.standard_normal(s)).astype(dtype) for s in shape_list]
    params = compiled_backend.put([p.copy() for p in expected])
    fast, ref = cls(params, **kw), cls(expected, backend="numpy", **kw)
    assert fast.backend == compiled_backend.name
    for _ in range(4):
        grads = [np.asarray(rng.standard_normal(s)).astype(dtype) for s in shape_list]
        fast.step(compiled_backend.put(grads), grad_scale=scale)
        ref.step(grads, grad_scale=scale)
    for got, want in zip(compiled_backend.get(params), expected):
        np.testing.assert_allclose(got, want, **tolerance(dtype))


@settings(max_examples=30, deadline=None, suppress_health_check=SHARED_FIXTURE)
@given(outer=st.integers(2, 9), channels=st.integers(1, 7),
       inner=st.sampled_from([1, 3, 64, 130]), budget=st.integers(1, 20000),
       training=st.booleans(), seed=st.integers(0, 2**16))
def test_batchnorm_channel_windows_never_change_bits(outer, channels, inner, budget, training,
                                                     seed, cpu_compiled_backend):
    # Any window size (down to a channel per window) gives the bits of new outputs.
    from fastopt.backends import _tables

    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((outer, channels, inner)) * 3 + 1).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    gamma, beta = rng.standard_normal((2, channels)).astype(np.float32)
    stats = [(np.zeros(channels, np.float32), np.ones(channels, np.float32)) for _ in range(2)]
    y, cache = fastopt.batchnorm_forward(x, gamma, beta, *stats[0], training=training)
    want = (y, *fastopt.batchnorm_backward(dy, cache))
    saved = _tables.WINDOW_BYTES
    _tables.WINDOW_BYTES = budget
    try:
        y_out, dx_out = np.empty_like(x), np.empty_like(x)
        y, cache = fastopt.batchnorm_forward(x, gamma, beta, *stats[1], training=training,
                                             out=y_out)
        got = (y, *fastopt.batchnorm_backward(dy, cache, out=dx_out))
    finally:
        _tables.WINDOW_BYTES = saved
    for a, b in zip(want + stats[0], got + stats[1]):
        np.testing.assert_array_equal(a, b)
