"""8-bit optimizer state (``state_bits=8``, the ``NAME8bit`` classes): the compiled
kernels give the NumPy reference's bits (decode, the float32 step, code again, block
by block), the state takes the memory it should, training stays close to float32,
and the state_dict holds the codes and their absmax."""

import numpy as np
import pytest

import fastopt
from fastopt import quant

# Where a test does not ask for a backend: one that runs 8-bit state (FASTOPT_BACKEND
# may name one that does not, and that is refused, as test_8bit_options_... checks).
EIGHT_BIT = "numba" if "numba" in fastopt.available_backends() else "numpy"

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
    # one tensor under min_8bit_size (float32 state), ragged blocks, a float64 tensor
    return [rng.standard_normal((70, 93)).astype(np.float32),
            rng.standard_normal(5000).astype(np.float32),
            rng.standard_normal(300).astype(np.float32),
            rng.standard_normal(4200)]


@pytest.mark.parametrize("name, kw", CASES, ids=[c[0] for c in CASES])
def test_numba_matches_the_reference_bit_for_bit(name, kw, rng):
    if "numba" not in fastopt.available_backends():
        pytest.skip("numba is not installed")
    cls = getattr(fastopt, name)
    ours, ref = model(rng), None
    ref = [p.copy() for p in ours]
    opt = cls(ours, backend="numba", **kw)
    reference = cls(ref, backend="numpy", **kw)
    for step in range(12):
        grads = [rng.standard_normal(p.shape).astype(p.dtype) for p in ours]
        grads[1][:300] = 0  # whole blocks of zero gradient
        scale = 4.0 if step == 5 else None
        opt.step(grads, grad_scale=scale)
        reference.step(grads, grad_scale=scale)
    for a, b in zip(ours, ref):
        np.testing.assert_array_equal(a, b)
    mine, theirs = opt.state_dict(), reference.state_dict()
    assert list(mine) == list(theirs)
    for key, value in theirs.items():
        np.testing.assert_array_equal(mine[key], value, err_msg=key)
    # 8-bit where it should be: float32 tensors of min_8bit_size elements or more
    assert mine["state.0." + next(iter(opt.state(0)))].dtype == np.uint8
    assert mine["state.1." + next(iter(opt.state(1)))].dtype == np.uint8
    assert mine["state.2." + next(iter(opt.state(2)))].dtype == np.float32  # 300 < 4096
    assert mine["state.3." + next(iter(opt.state(3)))].dtype == np.float64


def test_a_step_is_the_float32_step_on_the_decoded_state(cpu_backend, rng):
    """From a given 8-bit state, one step equals the float32 optimizer started from the
    decoded state, and the new codes are the rule's codes of the float32 result."""
    if cpu_backend.name == "c":
        pytest.skip("8-bit state runs on numba and numpy")
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
    o8 = fastopt.Adam8bit([p8], lr=1e-3, backend=EIGHT_BIT)
    o32 = fastopt.Adam([p32], lr=1e-3, backend=EIGHT_BIT)
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
    opt = getattr(fastopt, name)([np.zeros(n, np.float32)], backend=EIGHT_BIT, **kw)
    sd = opt.state_dict()
    state_bytes = sum(v.nbytes for k, v in sd.items() if k.startswith("state."))
    assert state_bytes / n <= per_param
    assert sum(1 for k in sd if k.endswith(".absmax")) == int(round(per_param))


def test_a_coordinate_whose_gradient_is_zero_never_moves(cpu_backend, rng):
    if cpu_backend.name == "c":
        pytest.skip("8-bit state runs on numba and numpy")
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
    if cpu_backend.name == "c":
        pytest.skip("8-bit state runs on numba and numpy")
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


def test_8bit_options_and_backends_are_checked():
    with pytest.raises(ValueError, match="state_bits must be 32 or 8"):
        fastopt.Adam([np.zeros(3, np.float32)], state_bits=16)
    with pytest.raises(ValueError, match="min_8bit_size"):
        fastopt.Adam([np.zeros(3, np.float32)], state_bits=8, min_8bit_size=-1)
    if "c" in fastopt.available_backends():
        with pytest.raises(ValueError, match="numba and numpy backends"):
            fastopt.Adam8bit([np.zeros(5000, np.float32)], backend="c")
        fastopt.Adam8bit([np.zeros(100, np.float32)], backend="c")  # all float32 state
