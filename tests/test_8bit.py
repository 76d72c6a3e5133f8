"""8-bit optimizer state (``state_bits=8``, the ``NAME8bit`` classes): the compiled
kernels give the NumPy reference's bits (decode, the float32 step, code again, block
by block), the state takes the memory it should, training stays close to float32,
and the state_dict holds the codes and their absmax."""

import numpy as np
import pytest

import fastopt
from fastopt import quant

from conftest import tolerance

CASES = [
    ("Adam8bit", dict(lr=1e-2, weight_decay=0.01)),
    ("AdamW8bit", dict(lr=1e-2, amsgrad=True)),
    ("SGD8bit", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("RMSprop8bit", dict(lr=1e-3, centered=True, momentum=0.5)),
    ("Adagrad8bit", dict(lr=0.05, initial_accumulator_value=0.1)),
    ("Lion8bit", dict(lr=1e-3, weight_decay=0.1)),
    ("Adadelta8bit", dict(lr=0.5)),
    ("Adamax8bit", dict(lr=1e-2, maximize=True)),
    ("NAdam8bit", dict(lr=1e-2)),
    ("RAdam8bit", dict(lr=1e-2, l1=1e-4)),
]


def model(rng):
    # with min_8bit_size=1024: one tensor under it (float32 state), ragged last blocks,
    # a float64 tensor (its own state dtype)
    return [rng.standard_normal((40, 33)).astype(np.float32),
            rng.standard_normal(1100).astype(np.float32),
            rng.standard_normal(300).astype(np.float32),
            rng.standard_normal(1200)]


@pytest.mark.parametrize("name, kw", CASES, ids=[c[0] for c in CASES])
def test_compiled_kernels_match_the_reference(name, kw, compiled_backend, rng):
    """The CPU kernels give the reference's bits. On CUDA, as in tests/test_cuda.py, the
    float32 maths may round differently (the simulator computes some of it in double,
    a GPU may fuse a multiply-add): params and absmax agree to float32 rounding, and a
    code may then fall on the other side of a midpoint, to the next code."""
    cls = getattr(fastopt, name)
    host = model(rng)
    ref = [p.copy() for p in host]
    ours = compiled_backend.put(host)
    opt = cls(ours, min_8bit_size=1024, **kw)
    reference = cls(ref, min_8bit_size=1024, backend="numpy", **kw)
    assert opt.backend == compiled_backend.name
    for step in range(4 if compiled_backend.on_device else 12):
        grads = [rng.standard_normal(p.shape).astype(p.dtype) for p in host]
        grads[1][:512] = 0  # whole blocks of zero gradient
        scale = 4.0 if step == 2 else None
        opt.step(compiled_backend.put(grads), grad_scale=scale)
        reference.step(grads, grad_scale=scale)
    mine, theirs = opt.state_dict(), reference.state_dict()
    assert list(mine) == list(theirs)
    if not compiled_backend.on_device:
        for a, b in zip(ours, ref):
            np.testing.assert_array_equal(a, b)
        for key, value in theirs.items():
            np.testing.assert_array_equal(mine[key], value, err_msg=key)
    else:
        for a, b in zip(compiled_backend.get(ours), ref):
            np.testing.assert_allclose(a, b, **tolerance(b.dtype))
        for key, value in theirs.items():
            if key.startswith("state.") and value.dtype == np.uint8:
                step = np.abs(mine[key].astype(int) - value)
                assert step.max() <= 1 and step.mean() < 0.01, key
            elif key.startswith("state."):
                np.testing.assert_allclose(mine[key], value, **tolerance(value.dtype),
                                           err_msg=key)
            else:
                assert mine[key] == value, key
    # 8-bit where it should be: float32 tensors of min_8bit_size elements or more
    assert mine["state.0." + next(iter(opt.state(0)))].dtype == np.uint8
    assert mine["state.1." + next(iter(opt.state(1)))].dtype == np.uint8
    assert mine["state.2." + next(iter(opt.state(2)))].dtype == np.float32  # 300 < 4096
    assert mine["state.3." + next(iter(opt.state(3)))].dtype == np.float64


def test_a_step_is_the_float32_step_on_the_decoded_state(cpu_backend, rng):
    """From a given 8-bit state, one step equals the float32 optimizer started from the
    decoded state, and the new codes are the rule's codes of the float32 result."""
    p = rng.standard_normal(3000).astype(np.float32)
    opt = fastopt.Adam8bit([p], lr=1e-2, min_8bit_size=0)
    for _ in range(5):
        opt.step([rng.standard_normal(3000).astype(np.float32)])
    q = p.copy()
    plain = fastopt.Adam([q], lr=1e-2)
    state = opt.state(0)  # decoded
    plain.load_state_dict({**plain.state_dict(), "steps": opt.steps,
                           **{f"state.0.{k}": v for k, v in state.items()}})
    g = rng.standard_normal(3000).astype(np.float32)
    opt.step([g])
    plain.step([g])
    np.testing.assert_array_equal(p, q)
    sd = opt.state_dict()
    for name, value in plain.state(0).items():
        codes, absmax = quant.quantize_blockwise(value, signed=name == "exp_avg")
        np.testing.assert_array_equal(sd[f"state.0.{name}"], codes)
        np.testing.assert_array_equal(sd[f"state.0.{name}.absmax"], absmax)


def test_training_stays_close_to_float32():
    rng = np.random.default_rng(3)
    start = rng.standard_normal(20000).astype(np.float32)
    target = rng.standard_normal(20000).astype(np.float32)
    p8, p32 = start.copy(), start.copy()
    o8 = fastopt.Adam8bit([p8], lr=1e-3)
    o32 = fastopt.Adam([p32], lr=1e-3)
    for _ in range(300):
        noise = 0.1 * rng.standard_normal(20000).astype(np.float32)
        o8.step([(p8 - target) + noise])
        o32.step([(p32 - target) + noise])
    drift = np.abs(p8 - p32).mean() / np.abs(p32 - start).mean()
    assert drift < 0.05, drift


@pytest.mark.parametrize("name, per_param", [("Adam8bit", 2.04), ("SGD8bit", 1.02),
                                             ("Adagrad8bit", 1.02)])
def test_state_memory_per_parameter(name, per_param):
    n = 1 << 16
    kw = dict(momentum=0.9) if name == "SGD8bit" else {}
    opt = getattr(fastopt, name)([np.zeros(n, np.float32)], **kw)
    sd = opt.state_dict()
    state_bytes = sum(v.nbytes for k, v in sd.items() if k.startswith("state."))
    assert state_bytes / n <= per_param
    assert sum(1 for k in sd if k.endswith(".absmax")) == int(round(per_param))


def test_a_coordinate_whose_gradient_is_zero_never_moves(cpu_backend, rng):
    p = rng.standard_normal(8192).astype(np.float32)
    start = p.copy()
    opt = fastopt.Adam8bit([p], lr=1e-2)
    for _ in range(20):
        g = rng.standard_normal(8192).astype(np.float32)
        g[::7] = 0
        opt.step([g])
    np.testing.assert_array_equal(p[::7], start[::7])
    assert (opt.state(0)["exp_avg"][::7] == 0).all()


def test_state_dict_round_trip_and_refusals(cpu_backend, rng):
    p = rng.standard_normal(6000).astype(np.float32)
    opt = fastopt.AdamW8bit([p], lr=1e-2)
    for _ in range(3):
        opt.step([rng.standard_normal(6000).astype(np.float32)])
    saved, saved_p = opt.state_dict(), p.copy()
    assert saved["state.0.exp_avg"].shape == (6000,)
    assert saved["state.0.exp_avg.absmax"].shape == (24,)  # ceil(6000 / 256)
    g = rng.standard_normal(6000).astype(np.float32)
    opt.step([g])
    after = p.copy()
    # resume from the saved state: the same step, bit for bit
    q = saved_p.copy()
    again = fastopt.AdamW(  # the plain class with state_bits=8 loads an AdamW8bit state
        [q], lr=1e-2, state_bits=8)
    again.load_state_dict(saved)
    again.step([g])
    np.testing.assert_array_equal(q, after)
    before = again.state_dict()
    wrong = [
        {**saved, "state.0.exp_avg": saved["state.0.exp_avg"].astype(np.float32)},
        {**saved, "state.0.exp_avg.absmax": saved["state.0.exp_avg.absmax"][:23]},
        {**saved, "state.0.exp_avg": saved["state.0.exp_avg"][:5000]},
        {k: v for k, v in saved.items() if not k.endswith(".absmax")},
    ]
    for sd in wrong:
        with pytest.raises(ValueError):
            again.load_state_dict(sd)
    for key, value in again.state_dict().items():
        np.testing.assert_array_equal(value, before[key])
    plain = fastopt.AdamW([saved_p.copy()], lr=1e-2)  # 32-bit state: refuses 8-bit codes
    with pytest.raises(ValueError, match="state_bits=32"):
        plain.load_state_dict(saved)


def test_8bit_options_are_checked():
    with pytest.raises(ValueError, match="state_bits must be 32 or 8"):
        fastopt.Adam([np.zeros(3, np.float32)], state_bits=16)
    with pytest.raises(ValueError, match="min_8bit_size"):
        fastopt.Adam([np.zeros(3, np.float32)], state_bits=8, min_8bit_size=-1)
