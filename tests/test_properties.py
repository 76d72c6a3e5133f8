"""Property tests: random shapes and hyperparameters against the reference."""

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
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape_list=st.lists(shapes, min_size=1, max_size=4), dtype=dtypes, opt=optimizers,
       seed=st.integers(0, 2**31 - 1), scale=st.sampled_from([None, 0.5, 8.0]))
def test_random_problems_match_reference(shape_list, dtype, opt, seed, scale):
    cls, kw = opt
    rng = np.random.default_rng(seed)
    params = [np.asarray(rng.standard_normal(s)).astype(dtype) for s in shape_list]
    expected = [p.copy() for p in params]
    fast, ref = cls(params, **kw), cls(expected, backend="numpy", **kw)
    for _ in range(4):
        grads = [np.asarray(rng.standard_normal(s)).astype(dtype) for s in shape_list]
        fast.step(grads, grad_scale=scale)
        ref.step(grads, grad_scale=scale)
    for got, want in zip(params, expected):
        np.testing.assert_allclose(got, want, **tolerance(dtype))
