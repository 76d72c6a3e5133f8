"""Optimizer behaviour on every backend: state_dict, schedules, skip_nonfinite, grad_scale,
functional."""

import numpy as np
import pytest

import fastopt
from fastopt import functional

ALL = [
    (fastopt.SGD, dict(lr=0.1, momentum=0.9)),
    (fastopt.RMSprop, dict(centered=True, momentum=0.3)),
    (fastopt.Adam, dict(amsgrad=True)),
    (fastopt.AdamW, dict()),
    (fastopt.Adagrad, dict(lr_decay=0.1)),
    (fastopt.Adadelta, dict(weight_decay=0.01)),
    (fastopt.Adamax, dict(lr=0.01)),
    (fastopt.NAdam, dict(lr=0.01)),
    (fastopt.RAdam, dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
    (fastopt.ASGD, dict(lr=0.05, t0=3)),
    (fastopt.Rprop, dict(lr=0.01)),
    (fastopt.Lion, dict(lr=0.01, weight_decay=0.1)),
]


def params_and_grads(rng, n_steps):
    params = {"w": rng.standard_normal((8, 5)).astype(np.float32),
              "b": rng.standard_normal(5).astype(np.float32)}
    grads = [{k: rng.standard_normal(v.shape).astype(np.float32) for k, v in params.items()}
             for _ in range(n_steps)]
    return params, grads


@pytest.mark.parametrize("cls,kw", ALL, ids=[c.__name__ for c, _ in ALL])
def test_save_load_continue_is_bit_identical(cls, kw, backend, rng, tmp_path):
    params, grads = params_and_grads(rng, 10)
    grads = [backend.put(g) for g in grads]
    straight = backend.put({k: v.copy() for k, v in params.items()})
    opt = cls(straight, **kw)
    assert opt.backend == backend.name
    for g in grads:
        opt.step(g)

    first = backend.put({k: v.copy() for k, v in params.items()})
    opt1 = cls(first, **kw)
    for g in grads[:4]:
        opt1.step(g)
    np.savez(tmp_path / "opt.npz", **opt1.state_dict())
    np.savez(tmp_path / "params.npz", **backend.get(first))

    resumed = backend.put(dict(np.load(tmp_path / "params.npz")))
    opt2 = cls(resumed, **kw)
    opt2.load_state_dict(np.load(tmp_path / "opt.npz"))
    assert opt2.steps == 4
    for g in grads[4:]:
        opt2.step(g)
    for k in params:
        np.testing.assert_array_equal(backend.get(resumed[k]), backend.get(straight[k]))


def test_load_state_dict_refuses_misfit_and_changes_nothing(backend, rng):
    params, grads = params_and_grads(rng, 3)
    opt = fastopt.Adam(backend.put(params), lr=0.01)
    for g in grads:
        opt.step(backend.put(g))
    good = opt.state_dict()
    before = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in good.items()}

    def assert_unchanged():
        now = opt.state_dict()
        assert now.keys() == before.keys()
        for k, v in before.items():
            if isinstance(v, np.ndarray):
                np.testing.assert_array_equal(now[k], v)
            else:
                assert now[k] == v

    bad_shape = {**good, "state.0.exp_avg": np.zeros((3, 3), np.float32),
                 "state.1.exp_avg": np.ones(5, np.float32)}
    with pytest.raises(ValueError, match="state.0.exp_avg"):
        opt.load_state_dict(bad_shape)
    bad_dtype = {**good, "state.1.exp_avg_sq": np.zeros(5, np.float64)}
    with pytest.raises(ValueError, match="dtype"):
        opt.load_state_dict(bad_dtype)
    missing = {k: v for k, v in good.items() if k != "state.1.exp_avg"}
    with pytest.raises(ValueError, match="lacks"):
        opt.load_state_dict(missing)
    with pytest.raises(ValueError, match="SGD"):
        opt.load_state_dict({**good, "optimizer": "SGD"})
    with pytest.raises(ValueError, match="amsgrad"):
        opt.load_state_dict({**good, "group.0.amsgrad": True})
    with pytest.raises(ValueError, match="beta"):
        opt.load_state_dict({**good, "group.0.betas": (1.5, 0.9), "steps": 99})
    with pytest.raises(ValueError, match="entries"):
        opt.load_state_dict({**good, "state.7.exp_avg": np.zeros(1, np.float32)})
    assert_unchanged()


def test_lr_schedule_is_evaluated_with_steps_taken(backend, rng):
    seen = []

    def schedule(step):
        seen.append(step)
        return 0.1 / (1 + step)

    p = backend.put(np.ones(4))
    ref = np.ones(4)
    opt = fastopt.SGD([p], lr=schedule)
    seen.clear()
    for step in range(4):
        g = rng.standard_normal(4)
        opt.step([backend.put(g)])
        ref -= (0.1 / (1 + step)) * g
    assert seen == [0, 1, 2, 3]
    np.testing.assert_allclose(backend.get(p), ref, rtol=1e-15)


def test_param_group_lr_can_be_set_between_steps(backend):
    p = backend.put(np.ones(3))
    opt = fastopt.SGD([p], lr=0.1)
    opt.step([backend.put(np.ones(3))])
    opt.param_groups[0]["lr"] = 0.5
    opt.step([backend.put(np.ones(3))])
    np.testing.assert_allclose(backend.get(p), 1 - 0.1 - 0.5)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("cls,kw", ALL, ids=[c.__name__ for c, _ in ALL])
def test_skip_nonfinite_changes_nothing(cls, kw, bad, backend, rng):
    params, grads = params_and_grads(rng, 2)
    params = backend.put(params)
    opt = cls(params, skip_nonfinite=True, **kw)
    assert opt.step(backend.put(grads[0])) is True
    snapshot = {k: v.copy() for k, v in backend.get(params).items()}
    state = opt.state_dict()
    poisoned = {k: v.copy() for k, v in grads[1].items()}
    poisoned["w"][3, 2] = bad
    assert opt.step(backend.put(poisoned)) is False
    for k in params:
        np.testing.assert_array_equal(backend.get(params[k]), snapshot[k])
    after = opt.state_dict()
    for k, v in state.items():
        if isinstance(v, np.ndarray):
            np.testing.assert_array_equal(after[k], v)
    assert opt.steps == 1


def test_nan_gradient_propagates_without_skip(backend):
    p = backend.put(np.ones(4, np.float32))
    opt = fastopt.Adam([p])
    g = np.ones(4, np.float32)
    g[1] = np.nan
    assert opt.step([backend.put(g)]) is True
    p = backend.get(p)
    assert np.isnan(p[1]) and np.isfinite(p[[0, 2, 3]]).all()


@pytest.mark.parametrize("cls,kw", ALL, ids=[c.__name__ for c, _ in ALL])
def test_grad_scale_equals_dividing_the_grads(cls, kw, backend, rng):
    a = rng.standard_normal(64)
    a, b = backend.put(a), backend.put(a.copy())
    opt_a, opt_b = cls([a], **kw), cls([b], **kw)
    for _ in range(5):
        g = rng.standard_normal(64) * 128.0
        opt_a.step([backend.put(g)], grad_scale=128.0)
        opt_b.step([backend.put(g / 128.0)])
    np.testing.assert_array_equal(backend.get(a), backend.get(b))


def test_maximize_is_descent_on_the_negated_gradient(backend, rng):
    a = rng.standard_normal(32)
    a, b = backend.put(a), backend.put(a.copy())
    opt_a, opt_b = fastopt.Adam([a], maximize=True, l1=0.1), fastopt.Adam([b], l1=0.1)
    for _ in range(5):
        g = rng.standard_normal(32)
        opt_a.step([backend.put(g)])
        opt_b.step([backend.put(-g)])
    np.testing.assert_array_equal(backend.get(a), backend.get(b))


def test_functional_matches_class(backend, rng):
    p = rng.standard_normal((6, 7)).astype(np.float32)
    p, q = backend.put(p), backend.put(p.copy())
    m, v, vmax = (backend.put(np.zeros((6, 7), np.float32)) for _ in range(3))
    opt = fastopt.AdamW([q], lr=0.01, weight_decay=0.1, amsgrad=True)
    for t in range(1, 6):
        g = backend.put(rng.standard_normal((6, 7)).astype(np.float32))
        functional.adamw_(p, g, m, v, vmax, step=t, lr=0.01, weight_decay=0.1, amsgrad=True)
        opt.step([g])
    np.testing.assert_array_equal(backend.get(p), backend.get(q))
    np.testing.assert_array_equal(backend.get(m), backend.get(opt.state(0)["exp_avg"]))


@pytest.mark.parametrize("cls, kernel, states, kw", [
    (fastopt.NAdam, "nadam_", ["exp_avg", "exp_avg_sq"], dict(lr=0.01, weight_decay=0.1)),
    (fastopt.ASGD, "asgd_", ["ax"], dict(lr=0.05, t0=2, lambd=0.1)),
    (fastopt.Rprop, "rprop_", ["prev", "step_size"], dict(lr=0.01)),
    (fastopt.RAdam, "radam_", ["exp_avg", "exp_avg_sq"], dict(lr=0.01)),
])
def test_functional_carries_what_the_class_carries(cls, kernel, states, kw, backend, rng):
    # NAdam's mu_product and ASGD's eta and mu come back from each call for the next
    # one; Rprop's first step sets the step sizes. Function and class give the same bits.
    start = rng.standard_normal(40)
    p, q = backend.put(start.copy()), backend.put(start.copy())
    arrays = [backend.put(np.zeros(40)) for _ in states]
    opt = cls([q], **kw)
    function = getattr(functional, kernel)
    carried = {}
    for t in range(1, 12):
        g = backend.put(rng.standard_normal(40))
        context = {"step": t} if "step" in opt._rule.context else {"first": t == 1}
        carried = function(p, g, *arrays, **context, **kw, **carried) or {}
        opt.step([g])
    assert set(carried) == set(opt._rule.carried)
    np.testing.assert_array_equal(backend.get(p), backend.get(q))
    for name, array in zip(states, arrays):
        np.testing.assert_array_equal(backend.get(array), backend.get(opt.state(0)[name]))


def test_functional_sgd_and_adagrad_and_rmsprop_closed_form(backend):
    put, get = backend.put, backend.get
    start = np.array([1.0, -2.0, 0.0])
    g = np.array([0.5, 0.5, -1.0])
    p, buf = put(start.copy()), put(np.zeros(3))
    functional.sgd_(p, put(g), buf, lr=0.1, momentum=0.9, first=True)
    np.testing.assert_allclose(get(p), [0.95, -2.05, 0.1])
    np.testing.assert_allclose(get(buf), g)
    p, s = put(start.copy()), put(np.full(3, 1.0))
    functional.adagrad_(p, put(g), s, step=1, lr=0.1, eps=0.0)
    np.testing.assert_allclose(get(s), 1.0 + g * g)
    np.testing.assert_allclose(get(p), start - 0.1 * g / np.sqrt(1.0 + g * g))
    p, sq = put(start.copy()), put(np.zeros(3))
    functional.rmsprop_(p, put(g), sq, lr=0.01, alpha=0.0, eps=0.0)
    np.testing.assert_allclose(get(p), start - 0.01 * np.sign(g))


def test_adam_first_step_closed_form(backend):
    # At t=1 the bias-corrected update is lr * g / (|g| + eps'), i.e. about lr * sign(g).
    p = backend.put(np.zeros(3))
    opt = fastopt.Adam([p], lr=0.1, eps=0.0)
    opt.step([backend.put(np.array([2.0, -3.0, 0.5]))])
    np.testing.assert_allclose(backend.get(p), [-0.1, 0.1, -0.1], rtol=1e-12)


def test_l1_pulls_towards_zero_and_leaves_zero_alone(backend):
    p = backend.put(np.array([1.0, -1.0, 0.0]))
    fastopt.SGD([p], lr=0.1, l1=0.5).step([backend.put(np.zeros(3))])
    np.testing.assert_allclose(backend.get(p), [0.95, -0.95, 0.0])
