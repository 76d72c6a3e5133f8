"""Every optimizer x option x dtype x params layout, on each compiled CPU backend, against
the NumPy reference (the CUDA backend has its own, smaller cases in test_cuda.py)."""

import numpy as np
import pytest

import fastopt

from conftest import tolerance

CASES = [
    (fastopt.SGD, dict(lr=0.1)),
    (fastopt.SGD, dict(lr=0.1, momentum=0.9)),
    (fastopt.SGD, dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    (fastopt.SGD, dict(lr=0.05, momentum=0.8, nesterov=True, l1=0.01, maximize=True)),
    (fastopt.RMSprop, dict(lr=0.01)),
    (fastopt.RMSprop, dict(lr=0.01, centered=True, weight_decay=0.1)),
    (fastopt.RMSprop, dict(lr=0.01, momentum=0.9, l1=0.02)),
    (fastopt.RMSprop, dict(lr=0.01, alpha=0.9, centered=True, momentum=0.5, maximize=True)),
    (fastopt.Adam, dict(lr=0.01)),
    (fastopt.Adam, dict(lr=0.01, amsgrad=True, weight_decay=0.1)),
    (fastopt.Adam, dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, l1=0.01, maximize=True)),
    (fastopt.AdamW, dict(lr=0.01)),
    (fastopt.AdamW, dict(lr=0.01, weight_decay=0.1, amsgrad=True, l1=0.01)),
    (fastopt.Adagrad, dict(lr=0.1)),
    (fastopt.Adagrad, dict(lr=0.1, lr_decay=0.05, initial_accumulator_value=0.1,
                           weight_decay=0.01)),
    (fastopt.Adagrad, dict(lr=0.1, eps=1e-6, l1=0.01, maximize=True)),
    (fastopt.Adadelta, dict()),
    (fastopt.Adadelta, dict(lr=0.5, rho=0.8, weight_decay=0.01, l1=0.01, maximize=True)),
    (fastopt.Adamax, dict(lr=0.01)),
    (fastopt.Adamax, dict(lr=0.01, betas=(0.3, 0.9), weight_decay=0.01, l1=0.01)),
    (fastopt.NAdam, dict(lr=0.01)),
    (fastopt.NAdam, dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True, l1=0.01)),
    (fastopt.RAdam, dict(lr=0.01, maximize=True)),
    (fastopt.RAdam, dict(lr=0.01, betas=(0.6, 0.9), weight_decay=0.1)),
    (fastopt.ASGD, dict(lr=0.05, t0=5, lambd=0.01)),
    (fastopt.ASGD, dict(lr=0.05, weight_decay=0.01, l1=0.01, maximize=True)),
    (fastopt.Rprop, dict(lr=0.01)),
    (fastopt.Rprop, dict(lr=0.01, etas=(0.3, 1.5), step_sizes=(1e-3, 0.05), l1=0.01)),
    (fastopt.Lion, dict(lr=0.01)),
    (fastopt.Lion, dict(lr=0.01, betas=(0.8, 0.9), weight_decay=0.1, l1=0.01,
                        maximize=True)),
]
SHAPES = [(33, 17), (1000,), (0,), (2, 3, 4), ()]


def case_id(case):
    cls, kw = case
    return cls.__name__ + "-" + "-".join(f"{k}={v}" for k, v in kw.items())


def make_params(rng, dtype, layout):
    arrays = [np.asarray(rng.standard_normal(s)).astype(dtype) for s in SHAPES]
    if layout == "list":
        return arrays
    if layout == "dict":
        return {f"w{i}": a for i, a in enumerate(arrays)}
    return [{"params": arrays[:2], "lr": 0.02}, {"params": arrays[2:]}]


def copy_params(params):
    if isinstance(params, dict):
        return {k: v.copy() for k, v in params.items()}
    if isinstance(params[0], dict):
        return [{**g, "params": [a.copy() for a in g["params"]]} for g in params]
    return [a.copy() for a in params]


def arrays_of(params):
    if isinstance(params, dict):
        return list(params.values())
    if isinstance(params[0], dict):
        return [a for g in params for a in g["params"]]
    return list(params)


def grads_like(params, rng, scale=1.0):
    if isinstance(params, dict):
        return {k: np.asarray(scale * rng.standard_normal(v.shape)).astype(v.dtype)
                for k, v in params.items()}
    return [np.asarray(scale * rng.standard_normal(a.shape)).astype(a.dtype)
            for a in arrays_of(params)]


@pytest.mark.parametrize("case", CASES, ids=case_id)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["list", "dict", "groups"])
def test_many_steps_match_reference(case, dtype, layout, cpu_compiled_backend, rng):
    cls, kw = case
    params = make_params(rng, dtype, layout)
    expected = copy_params(params)
    opt = cls(params, **kw)
    ref = cls(expected, backend="numpy", **kw)
    assert opt.backend == cpu_compiled_backend.name
    for step in range(25):
        grads = grads_like(params, rng)
        scale = 4.0 if step % 5 == 3 else None
        assert opt.step(grads, grad_scale=scale) is True
        ref.step(grads, grad_scale=scale)
    for got, want in zip(arrays_of(params), arrays_of(expected)):
        np.testing.assert_allclose(got, want, **tolerance(dtype))
    for i in range(len(SHAPES)):
        for name, state in opt.state(i).items():
            np.testing.assert_allclose(state, ref.state(i)[name], **tolerance(dtype))
    assert opt.steps == 25


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fortran_ordered_param_is_updated_elementwise(dtype, cpu_backend, rng):
    base = rng.standard_normal((40, 30)).astype(dtype)
    p_f = np.asfortranarray(base)
    p_c = base.copy()
    opt_f = fastopt.Adam([p_f], lr=0.01)
    opt_c = fastopt.Adam([p_c], lr=0.01)
    for _ in range(5):
        g = rng.standard_normal(base.shape).astype(dtype)  # C-ordered grad
        opt_f.step([g])
        opt_c.step([g])
    assert p_f.flags.f_contiguous
    np.testing.assert_array_equal(p_f, p_c)


def test_mixed_dtypes_in_one_group(cpu_compiled_backend, rng):
    params = [rng.standard_normal(50).astype(np.float32), rng.standard_normal(60)]
    expected = [p.copy() for p in params]
    opt, ref = fastopt.Adam(params), fastopt.Adam(expected, backend="numpy")
    for _ in range(5):
        grads = [rng.standard_normal(p.shape).astype(p.dtype) for p in params]
        opt.step(grads)
        ref.step(grads)
    for got, want in zip(params, expected):
        np.testing.assert_allclose(got, want, **tolerance(got.dtype))


def test_empty_arrays_are_left_alone(cpu_backend):
    p = np.zeros((0, 3), np.float32)
    opt = fastopt.SGD([p], lr=0.1, momentum=0.9)
    assert opt.step([np.zeros((0, 3), np.float32)])
    assert p.shape == (0, 3)


def test_many_tensors_cross_chunk_boundaries(cpu_compiled_backend, rng):
    # Sizes around the chunk size, so chunks of one tensor and of many tensors mix.
    from fastopt.backends._tables import CHUNK
    sizes = [1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 7, 5]
    params = [rng.standard_normal(n).astype(np.float32) for n in sizes]
    expected = [p.copy() for p in params]
    opt, ref = fastopt.RMSprop(params, centered=True), fastopt.RMSprop(expected, centered=True,
                                                                       backend="numpy")
    for _ in range(3):
        grads = [rng.standard_normal(n).astype(np.float32) for n in sizes]
        opt.step(grads)
        ref.step(grads)
    for got, want in zip(params, expected):
        np.testing.assert_allclose(got, want, **tolerance(np.float32))


@pytest.mark.parametrize("case", CASES, ids=case_id)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_backends_give_the_reference_bits(case, dtype, cpu_compiled_backend):
    # Same operations in the same order and dtype, no contraction into FMAs: the
    # Numba and C kernels reproduce the NumPy reference exactly, not just closely.
    cls, kw = case
    start = [np.random.default_rng(0).standard_normal(s).astype(dtype)
             for s in ((1000,), (33, 17))]
    finals = {}
    for name in (cpu_compiled_backend.name, "numpy"):
        params = [p.copy() for p in start]
        opt = cls(params, backend=name, **kw)
        rng = np.random.default_rng(1)
        for step in range(10):
            grads = [rng.standard_normal(p.shape).astype(dtype) for p in params]
            opt.step(grads, grad_scale=4.0 if step == 3 else None)
        finals[name] = params
    for got, want in zip(finals[cpu_compiled_backend.name], finals["numpy"]):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", range(3))
def test_lion_matches_its_definition(dtype, seed, backend):
    # Lion is not in torch.optim: its definition (Chen et al. 2023, Algorithm 2),
    # written out here, is the reference.
    rng = np.random.default_rng(seed)
    lr, wd = float(rng.uniform(1e-4, 1e-2)), float(rng.choice([0.0, 0.1]))
    betas = (float(rng.uniform(0.8, 0.95)), float(rng.uniform(0.95, 0.999)))
    start = rng.standard_normal(300).astype(dtype)
    p = backend.put(start.copy())
    opt = fastopt.Lion([p], lr=lr, betas=betas, weight_decay=wd)
    want, m = start.copy(), np.zeros(300, dtype)
    b1, b2, c1, c2 = (dtype(x) for x in (betas[0], betas[1], 1 - betas[0], 1 - betas[1]))
    for _ in range(40):
        g = rng.standard_normal(300).astype(dtype)
        opt.step([backend.put(g)])
        update = np.sign(b1 * m + c1 * g)
        want = want * dtype(1 - lr * wd) - dtype(lr) * update
        m = b2 * m + c2 * g
    tol = dict(rtol=1e-6, atol=1e-7) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(backend.get(p), want, **tol)
    np.testing.assert_allclose(backend.get(opt.state(0)["exp_avg"]), m, **tol)
