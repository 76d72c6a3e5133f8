"""The short route of a repeated call (kept checked options, kept kernel launchers, the
plain-grads check) against the full checks: a change between calls is noticed and
gives the numbers of a fresh computation, and bad grads are still refused, with nothing
written, after many good calls on the same arrays."""

import numpy as np
import pytest

import fastopt
from fastopt import functional


def model(rng, dtype=np.float32):
    return {"w": rng.standard_normal((6, 4)).astype(dtype),
            "b": rng.standard_normal(4).astype(dtype)}


def grads_of(rng, params):
    return {k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in params.items()}


def twins(rng, cls=fastopt.Adam, **kw):
    """The optimizer under test (FASTOPT_BACKEND) and the NumPy reference, on copies."""
    params = model(rng)
    ref_params = {k: v.copy() for k, v in params.items()}
    return params, cls(params, **kw), ref_params, cls(ref_params, backend="numpy", **kw)


def assert_same(params, ref_params):
    for k in params:
        np.testing.assert_allclose(params[k], ref_params[k], rtol=2e-6, atol=1e-7)


def test_a_changed_group_option_is_used_at_the_next_step(cpu_compiled_backend, rng):
    params, opt, ref_params, ref = twins(rng, betas=[0.9, 0.999], weight_decay=0.0)
    for step in range(12):
        if step == 3:  # a new learning rate
            for o in (opt, ref):
                o.param_groups[0]["lr"] = 0.05
        if step == 5:  # a list option changed in place (the reference gets a new list)
            opt.param_groups[0]["betas"][0] = 0.5
            ref.param_groups[0]["betas"] = [0.5, 0.999]
        if step == 7:  # weight decay switched on: another compiled variant
            for o in (opt, ref):
                o.param_groups[0]["weight_decay"] = 0.1
        scale = 4.0 if step >= 9 else None  # a grad_scale: another variant again
        g = grads_of(rng, params)
        opt.step(g, grad_scale=scale)
        ref.step(g, grad_scale=scale)
    assert_same(params, ref_params)
    before = {k: v.copy() for k, v in params.items()}
    opt.param_groups[0]["betas"][1] = 1.5  # in place again, now invalid
    with pytest.raises(ValueError, match="beta2"):
        opt.step(grads_of(rng, params))
    opt.param_groups[0]["betas"][1] = 0.999
    opt.param_groups[0]["lr"] = True  # equal to 1, but not a number
    with pytest.raises(TypeError, match="learning rate"):
        opt.step(grads_of(rng, params))
    opt.param_groups[0]["lr"] = 0.01
    opt.param_groups[0]["amsgrad"] = True  # would need another state array
    with pytest.raises(ValueError, match="cannot change"):
        opt.step(grads_of(rng, params))
    for k in params:
        np.testing.assert_array_equal(params[k], before[k])


def test_a_schedule_is_evaluated_at_every_step(cpu_compiled_backend, rng):
    # The reference sets each step's lr by hand; the schedule must give the same steps.
    params, opt, ref_params, ref = twins(rng, cls=fastopt.SGD, lr=lambda t: 0.1 / (1 + t),
                                         momentum=0.9)
    ref.param_groups[0]["lr"] = 0.1
    for step in range(6):
        ref.param_groups[0]["lr"] = 0.1 / (1 + step)
        g = grads_of(rng, params)
        opt.step(g)
        ref.step(g)
    assert_same(params, ref_params)


def test_bad_grads_are_refused_after_many_good_steps(cpu_compiled_backend, rng):
    params, opt, _, _ = twins(rng)
    for _ in range(5):
        opt.step(grads_of(rng, params))
    before = {k: v.copy() for k, v in params.items()}
    good = grads_of(rng, params)
    bad = [
        ({"w": good["w"]}, ValueError, "missing"),
        ({**good, "extra": good["b"]}, ValueError, "unexpected"),
        ([good["w"]], ValueError, "expected 2 grads"),
        ({**good, "b": np.ones(5, np.float32)}, ValueError, "shape"),
        ({**good, "b": good["b"].astype(np.float64)}, TypeError, "dtype"),
        ({**good, "b": params["w"][0]}, ValueError, "overlaps"),
        ({**good, "w": "grads"}, TypeError, "NumPy array"),
    ]
    for grads, error, match in bad:
        with pytest.raises(error, match=match):
            opt.step(grads)
    for k in params:
        np.testing.assert_array_equal(params[k], before[k])
    assert opt.steps == 5


def test_grads_in_other_layouts_take_the_checked_route(cpu_compiled_backend, rng):
    # A Fortran-ordered or strided grad is not plain, and must give the same step.
    params, opt, ref_params, ref = twins(rng)
    for layout in ("C", "F", "strided", "C"):
        g = grads_of(rng, params)
        ref.step(g)
        if layout == "F":
            g = {**g, "w": np.asfortranarray(g["w"])}
        elif layout == "strided":
            wide = np.zeros((6, 8), np.float32)
            wide[:, ::2] = g["w"]
            g = {**g, "w": wide[:, ::2]}
        opt.step(g)
    assert_same(params, ref_params)


def test_functional_repeated_calls_notice_changes_and_refuse_bad_input(
        cpu_compiled_backend, rng):
    p = rng.standard_normal(50).astype(np.float32)
    q = p.copy()
    m, v, m_ref, v_ref = (np.zeros(50, np.float32) for _ in range(4))
    for step in range(1, 9):
        g = rng.standard_normal(50).astype(np.float32)
        kw = dict(step=step, lr=0.01 if step < 4 else 0.02,
                  weight_decay=0.0 if step < 6 else 0.1)
        functional.adam_(p, g, m, v, **kw)
        functional.adam_(q, g, m_ref, v_ref, backend="numpy", **kw)
    np.testing.assert_allclose(p, q, rtol=2e-6, atol=1e-7)
    before = p.copy()
    g = rng.standard_normal(50).astype(np.float32)
    with pytest.raises(ValueError, match="step must be >= 1"):
        functional.adam_(p, g, m, v, step=0, lr=0.01)
    with pytest.raises(TypeError, match="step must be an integer"):
        functional.adam_(p, g, m, v, step=None, lr=0.01)
    functional.adam_(p, g, m, v, step=9, lr=1)  # an int lr is a number...
    before = p.copy()
    with pytest.raises(TypeError, match="learning rate"):  # ...True, equal to it, is not
        functional.adam_(p, g, m, v, step=10, lr=True)
    with pytest.raises(ValueError, match="shape"):
        functional.adam_(p, g[:10], m, v, step=10, lr=0.01)
    with pytest.raises(ValueError, match="overlaps"):
        functional.adam_(p, m, m, v, step=10, lr=0.01)
    p.flags.writeable = False  # cleared after the arrays were cached
    with pytest.raises(ValueError, match="read-only"):
        functional.adam_(p, g, m, v, step=10, lr=0.01)
    np.testing.assert_array_equal(p, before)


def test_one_array_route_notices_new_arrays_and_refuses_bad_grads(cpu_compiled_backend, rng):
    """A param given as an array (the adapters' and the functional kernels' common call)
    takes :meth:`functional._Plan.run_one`; what it cannot vouch for goes to the full
    checks, with their errors and nothing written."""
    p = rng.standard_normal((5, 8))
    q = p.copy()
    m, v, m_ref, v_ref = (np.zeros_like(p) for _ in range(4))

    def both(g, step, **kw):
        functional.adam_(p, g, m, v, step=step, lr=0.01, **kw)
        functional.adam_(q, g, m_ref, v_ref, step=step, lr=0.01, backend="numpy")

    for step in range(1, 5):
        both(rng.standard_normal(p.shape), step)
    both(p.copy(), 5)  # a grad equal to its param, in memory of its own
    m = m.copy()  # a new state array, the same values: a new plan
    both(rng.standard_normal(p.shape), 6)
    g = rng.standard_normal(p.shape)
    functional.adam_([p], [g], [m], [v], step=7, lr=0.01)  # lists: the plan of the arrays
    functional.adam_([q], [g], [m_ref], [v_ref], step=7, lr=0.01, backend="numpy")
    np.testing.assert_allclose(p, q, rtol=1e-12, atol=0)
    before = [a.copy() for a in (p, m, v)]
    g = rng.standard_normal(p.shape)
    for bad, error, match in [
            (g.astype(np.float32), TypeError, "dtype float32 but its param has float64"),
            (g.T, ValueError, "shape"),
            (m.reshape(p.shape), ValueError, "overlaps the memory of exp_avg 0"),
            (list(g), ValueError, "got 5 grads for 1 params"),
            (0.5, TypeError, "must be a NumPy array")]:
        with pytest.raises(error, match=match):
            functional.adam_(p, bad, m, v, step=8, lr=0.01)
    with pytest.raises(ValueError, match="exp_avg 0 must have shape"):
        functional.adam_(p, g, m[:2], v, step=8, lr=0.01)
    for a, b in zip((p, m, v), before):
        np.testing.assert_array_equal(a, b)
    f = np.asfortranarray(p)  # an F-ordered param: its grads are reordered, on the full route
    mf, vf = np.zeros_like(f), np.zeros_like(f)
    for step in range(1, 4):
        functional.adam_(f, g, mf, vf, step=step, lr=0.01)
    fr, mr, vr = np.asfortranarray(before[0]), np.zeros_like(f), np.zeros_like(f)
    for step in range(1, 4):
        functional.adam_(fr, g, mr, vr, step=step, lr=0.01, backend="numpy")
    np.testing.assert_allclose(f, fr, rtol=1e-12, atol=0)


def test_grads_in_another_structure_give_the_same_steps(cpu_compiled_backend, rng):
    # Two param groups: grads as a flat dict, then per group, then a dict again; the
    # plain route and the checked one must take the same steps.
    params = model(rng)
    ref_params = {k: v.copy() for k, v in params.items()}

    def groups(p):
        return [{"params": {"w": p["w"]}, "lr": 0.01}, {"params": {"b": p["b"]}, "lr": 0.02}]

    opt, ref = fastopt.Adam(groups(params)), fastopt.Adam(groups(ref_params), backend="numpy")
    for structure in ("dict", "per group", "dict", "per group list"):
        g = grads_of(rng, params)
        ref.step(g)
        if structure == "per group":
            g = [{"w": g["w"]}, {"b": g["b"]}]
        elif structure == "per group list":
            g = [[g["w"]], [g["b"]]]
        opt.step(g)
    assert_same(params, ref_params)
    g = grads_of(rng, params)
    with pytest.raises(ValueError, match="match"):
        opt.step([[g["w"]], []])
    assert opt.steps == 4


@pytest.mark.parametrize("tensors", [1, 4, 6, 9])
def test_small_work_runs_the_same_steps_as_the_parallel_kernels(
        cpu_compiled_backend, rng, monkeypatch, tensors):
    # Small sets run a serial kernel (numba: grads passed as a tuple, four per call or
    # one for a single tensor; c: one thread); with the parallel threshold at 0 the same
    # step takes the parallel kernels. Both must give the same bits, read-only grads included.
    from fastopt.backends import _tables

    shapes = [(3, 5), (7,), (1,), (11, 2), (0,), (4,), (2, 2), (9,), (5,)][:tensors]
    start = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(3)]
    for g in grads[2]:
        g.flags.writeable = False
    results = []
    for threshold in (_tables.PARALLEL_MIN_ELEMENTS, 0):
        monkeypatch.setattr(_tables, "PARALLEL_MIN_ELEMENTS", threshold)
        params = [p.copy() for p in start]
        opt = fastopt.Adam(params, lr=0.01, weight_decay=0.1)
        for g in grads:
            opt.step(g)
        results.append(params)
    for serial, parallel in zip(*results):
        np.testing.assert_array_equal(serial, parallel)
    assert any(not np.array_equal(p, q) for p, q in zip(results[0], start) if p.size)


def test_kept_scalars_follow_the_values_exactly(rng):
    # A rule without a step counter keeps its packed scalars for the last hyperparameter
    # objects seen; equal values that are other objects are packed again, so that
    # -0.0 and 0.0 (equal, but not the same number) each get their own bits.
    from fastopt.rules import RULES

    rule = RULES["rmsprop_sq"]
    dtype = np.dtype(np.float64)
    hyper = {"lr": 0.0, "alpha": 0.99, "eps": 1e-8, "grad_scale": None}
    first = rule.pack_values(dtype, hyper)
    assert rule.pack_values(dtype, dict(hyper)) is first  # the same objects: kept
    negative = rule.pack_values(dtype, dict(hyper, lr=-0.0))
    assert negative is not first and negative == first  # equal values, packed again
    assert [np.copysign(1.0, a) for a in negative] != [np.copysign(1.0, a) for a in first]
    other = rule.pack_values(dtype, dict(hyper, alpha=0.5))
    assert other != first
    assert rule.pack_values(np.dtype(np.float32), hyper) is not first  # another dtype


def test_the_functional_route_follows_options_states_and_the_backend_choice(
        cpu_compiled_backend, rng, monkeypatch):
    """A repeated functional call on one array takes :class:`functional._Route`: it must
    give the reference's numbers when option values are new objects, when the options
    change (and with them the states used, including a state after an unused one), and
    refuse what the checked route refuses, with nothing written."""
    p = rng.standard_normal(40)
    q = p.copy()
    sq, buf, sq_ref, buf_ref = (np.zeros_like(p) for _ in range(4))
    for i in range(12):
        g = rng.standard_normal(p.shape)
        # an lr made anew each call (equal, another object), then another value
        kw = dict(lr=float(str(0.01 if i < 6 else 0.03)), momentum=0.9 if i >= 3 else 0.0)
        # square_avg and momentum_buffer, not grad_avg: the states in slots 0 and 2
        functional.rmsprop_(p, g, sq, None, buf, **kw)
        functional.rmsprop_(q, g, sq_ref, None, buf_ref, backend="numpy", **kw)
    np.testing.assert_allclose(p, q, rtol=1e-12, atol=0)
    np.testing.assert_allclose(buf, buf_ref, rtol=1e-12, atol=0)

    w = rng.standard_normal(30)
    w_ref = w.copy()
    mom, mom_ref = np.zeros_like(w), np.zeros_like(w)
    for i in range(6):
        g = rng.standard_normal(w.shape)
        for a, b, backend in ((w, mom, None), (w_ref, mom_ref, "numpy")):
            functional.sgd_(a, g, b, lr=0.1, momentum=0.9, dampening=0.5, first=i == 0,
                            backend=backend)
    np.testing.assert_allclose(w, w_ref, rtol=1e-12, atol=0)

    m, v = np.zeros_like(p), np.zeros_like(p)
    for step in range(1, 6):
        functional.adam_(p, rng.standard_normal(p.shape), m, v, step=step, lr=0.01)
    before = [a.copy() for a in (p, m, v)]
    g = rng.standard_normal(p.shape)
    with pytest.raises(ValueError, match="step must be >= 1"):
        functional.adam_(p, g, m, v, step=0, lr=0.01)
    with pytest.raises(ValueError, match="overlaps"):
        functional.adam_(p, v, m, v, step=6, lr=0.01)
    with pytest.raises(ValueError, match="max_exp_avg_sq is required"):
        functional.adam_(p, g, m, v, step=6, lr=0.01, amsgrad=True)
    monkeypatch.setenv("FASTOPT_BACKEND", "none of them")  # read at every call
    with pytest.raises(ValueError, match="FASTOPT_BACKEND must be one of"):
        functional.adam_(p, g, m, v, step=6, lr=0.01)
    for a, b in zip((p, m, v), before):
        np.testing.assert_array_equal(a, b)


def test_a_call_site_follows_its_arrays_rule_and_backend_and_refuses_bad_grads(
        cpu_compiled_backend, rng, monkeypatch):
    """:func:`functional.run_at` (the nnfs and scikit-learn adapters' call): a site's kept
    plan serves only the very arrays, rule and backend choice it was made for; a new
    array, another rule on the same arrays, or a new FASTOPT_BACKEND is noticed, and bad
    grads and a read-only param are refused with the checked route's errors, with
    nothing written."""
    site, other_site = object(), object()

    def adam_hyper(step):
        return dict(step=step, lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, corrected=True,
                    grad_scale=None)

    ours = [rng.standard_normal((3, 5)), rng.standard_normal(5)]
    ours += [np.zeros_like(a) for a in ours * 2]  # params, then m and v of each
    ref = [a.copy() for a in ours]

    def both(rule, names, arrays, ref_arrays, grads, hyper, at=site):
        functional.run_at(at, rule, names, arrays, grads, hyper)
        n = len(grads)
        functional.run_rule(
            rule, ref_arrays[:n], list(grads),
            {name: ref_arrays[n * (i + 1):n * (i + 2)] for i, name in enumerate(names)},
            hyper, backend="numpy")

    def grads():
        return [rng.standard_normal(a.shape) for a in ours[:2]]

    for step in range(1, 5):
        both("adam_sq", ("m", "v"), ours, ref, grads(), adam_hyper(step))
    ours[0] = ours[0].copy()  # a new param array, the same values
    for step in range(5, 7):
        both("adam_sq", ("m", "v"), ours, ref, grads(), adam_hyper(step))
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=0)

    # two one-state rules taking turns on the same site and arrays
    w = [rng.standard_normal(7), np.zeros(7)]
    w_ref = [a.copy() for a in w]
    for i in range(6):
        rule, name = ("velocity", "velocity") if i % 2 else ("nesterov_dlfs", "v")
        g = [rng.standard_normal(7)]
        both(rule, (name,), w, w_ref, g,
             dict(lr=0.1, momentum=0.9, nesterov=False, grad_scale=None), at=other_site)
    for a, b in zip(w, w_ref):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=0)

    before = [a.copy() for a in ours]
    g = grads()
    for bad, error, match in [
            ([g[0], g[1][:3]], ValueError, "shape"),
            ([g[0], ours[3]], ValueError, "overlaps the memory of m 1"),
            ([g[0]], ValueError, "got 1 grads for 2 params"),
            ([g[0], g[1].astype(np.float32)], TypeError, "dtype float32")]:
        with pytest.raises(error, match=match):
            functional.run_at(site, "adam_sq", ("m", "v"), ours, bad, adam_hyper(7))
    ours[1].flags.writeable = False  # after many calls on the same arrays
    with pytest.raises(ValueError, match="param 1 is read-only"):
        functional.run_at(site, "adam_sq", ("m", "v"), ours, g, adam_hyper(7))
    ours[1].flags.writeable = True
    # a site of one param (cs231n's: the shortest route), with a state array swapped
    one, one_site = [rng.standard_normal((4, 3)), np.zeros((4, 3)), np.zeros((4, 3))], object()
    one_ref = [a.copy() for a in one]
    for step in range(1, 7):
        if step == 4:
            one[1] = one[1].copy()  # a new m array, the same values
        both("adam_sq", ("m", "v"), one, one_ref, [rng.standard_normal((4, 3))],
             adam_hyper(step), at=one_site)
    for a, b in zip(one, one_ref):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=0)
    one_before = [a.copy() for a in one]
    g1 = rng.standard_normal((4, 3))
    for bad, error, match in [
            ([g1[:3]], ValueError, "shape"),
            ([one[2]], ValueError, "overlaps the memory of v 0"),
            ([g1, g1], ValueError, "got 2 grads for 1 params"),
            ([g1.astype(np.float32)], TypeError, "dtype float32")]:
        with pytest.raises(error, match=match):
            functional.run_at(one_site, "adam_sq", ("m", "v"), one, bad, adam_hyper(7))
    one[2].flags.writeable = False
    with pytest.raises(ValueError, match="v 0 is read-only"):
        functional.run_at(one_site, "adam_sq", ("m", "v"), one, [g1], adam_hyper(7))
    one[2].flags.writeable = True
    for a, b in zip(one, one_before):
        np.testing.assert_array_equal(a, b)

    monkeypatch.setenv("FASTOPT_BACKEND", "none of them")  # read at every call
    with pytest.raises(ValueError, match="FASTOPT_BACKEND must be one of"):
        functional.run_at(site, "adam_sq", ("m", "v"), ours, g, adam_hyper(7))
    for a, b in zip(ours, before):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["sgd_momentum", "rmsprop", "adam"])
def test_an_adapter_notices_every_change_of_its_config_between_calls(
        name, cpu_compiled_backend, rng):
    """cs231n's rules keep a config's checked values and packed scalars while the config
    holds the very same float objects: a new value (a decayed lr, a number of another
    type, an equal number that is another object) is used at the next call, and a bad
    one is refused with nothing written, after many calls that reused what was kept."""
    from fastopt.compat import cs231n
    from fastopt.originals import cs231n as book

    ours, code = getattr(cs231n, name), getattr(book, name)
    w = rng.standard_normal((5, 3))
    w_ref = w.copy()
    config = {"learning_rate": 0.05}
    ref_config, key = {
        "sgd_momentum": ({"learning_rate": 0.05, "momentum": 0.9}, "momentum"),
        "rmsprop": ({"learning_rate": 0.05, "decay_rate": 0.99, "epsilon": 1e-8,
                     "cache": np.zeros_like(w)}, "decay_rate"),
        "adam": ({"learning_rate": 0.05, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8,
                  "m": np.zeros_like(w), "v": np.zeros_like(w), "t": 0}, "beta1")}[name]

    def steps(count):
        nonlocal w_ref, ref_config
        for _ in range(count):
            dw = rng.standard_normal(w.shape)
            ours(w, dw, config)
            w_ref, ref_config = code(w_ref, dw, ref_config)
        np.testing.assert_allclose(w, w_ref, rtol=1e-12, atol=1e-15)

    steps(5)
    for change in ({key: 0.5}, {"learning_rate": 0.02}, {key: np.float64(0.7)},
                   {key: 0.7}, {"learning_rate": float("0.02")}):
        config.update(change)
        ref_config.update(change)
        steps(3)
    before = w.copy()
    for bad, error in ((True, TypeError), (float("nan"), ValueError)):
        config["learning_rate"] = bad
        with pytest.raises(error, match="learning_rate"):
            ours(w, rng.standard_normal(w.shape), config)
        np.testing.assert_array_equal(w, before)
    config["learning_rate"] = ref_config["learning_rate"] = 0.01
    steps(3)


def test_one_config_serving_two_rules_gives_each_its_own_hyperparameters(
        cpu_compiled_backend, rng):
    # cs231n keeps a config's hyperparameters per config; a config passed to two rules
    # in turn (with a value shared between their keys) must not hand one rule's
    # hyperparameters to the other.
    from fastopt.compat import cs231n
    from fastopt.originals import cs231n as book

    shared = 0.9
    config = {"learning_rate": 0.01, "momentum": shared, "decay_rate": shared,
              "epsilon": 1e-8}
    w = rng.standard_normal(8)
    ref_config = dict(config, cache=np.zeros(8))
    w_ref = w.copy()
    for i in range(6):
        name = "sgd_momentum" if i % 2 else "rmsprop"
        dw = rng.standard_normal(8)
        getattr(cs231n, name)(w, dw, config)
        w_ref, ref_config = getattr(book, name)(w_ref, dw, ref_config)
    np.testing.assert_allclose(w, w_ref, rtol=1e-12, atol=1e-15)


def test_a_hyper_dict_changed_in_place_between_calls_is_packed_again(
        cpu_compiled_backend, rng):
    # run_at reuses packed scalars only for the very read-only view it was given last;
    # a caller's plain dict, changed in place between calls, gets its new values used.
    site = object()
    w = rng.standard_normal(6)
    w_ref = w.copy()
    hyper = dict(lr=0.1, momentum=0.0, dampening=0.0, nesterov=False, first=False,
                 weight_decay=0.0, l1=0.0, maximize=False, grad_scale=None)
    variant = fastopt.rules.RULES["sgd"].kernel_variant(hyper)
    for lr in (0.1, 0.1, 0.5, 0.5, 0.25):
        hyper["lr"] = lr
        g = rng.standard_normal(6)
        functional.run_at(site, "sgd", (), (w,), (g,), hyper, variant)
        functional.run_rule("sgd", [w_ref], [g], {}, dict(hyper), backend="numpy")
        np.testing.assert_array_equal(w, w_ref)
