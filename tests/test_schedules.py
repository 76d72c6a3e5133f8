"""Schedules against torch.optim.lr_scheduler and closed forms; lr_find; clipping."""

import math

import numpy as np
import pytest

import fastopt
from fastopt import schedules

from conftest import torch_or_skip

N = 60


def torch_lrs(make_scheduler, base_lr=0.1, n=N, momentum=0.0):
    torch = torch_or_skip()
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=base_lr, momentum=momentum)
    sched = make_scheduler(torch.optim.lr_scheduler, opt)
    lrs = []
    for _ in range(n):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


TORCH_CASES = [
    ("step", schedules.step_decay(0.1, 7, gamma=0.5), lambda s, o: s.StepLR(o, 7, gamma=0.5)),
    ("multistep", schedules.multistep(0.1, [5, 20, 40], gamma=0.3),
     lambda s, o: s.MultiStepLR(o, [5, 20, 40], gamma=0.3)),
    ("exponential", schedules.exponential(0.1, 0.95), lambda s, o: s.ExponentialLR(o, 0.95)),
    ("cosine", schedules.cosine(0.1, N, min_lr=0.001),
     lambda s, o: s.CosineAnnealingLR(o, N, eta_min=0.001)),
    ("warmup", schedules.warmup(0.1, 10, start_factor=0.25),
     lambda s, o: s.LinearLR(o, start_factor=0.25, total_iters=10)),
    ("cyclic-triangular", schedules.cyclic(0.01, 0.1, 5, 8),
     lambda s, o: s.CyclicLR(o, 0.01, 0.1, 5, 8, cycle_momentum=False)),
    ("cyclic-triangular2", schedules.cyclic(0.01, 0.1, 4, mode="triangular2"),
     lambda s, o: s.CyclicLR(o, 0.01, 0.1, 4, mode="triangular2", cycle_momentum=False)),
    ("cyclic-exp_range", schedules.cyclic(0.01, 0.1, 6, mode="exp_range", gamma=0.97),
     lambda s, o: s.CyclicLR(o, 0.01, 0.1, 6, mode="exp_range", gamma=0.97,
                             cycle_momentum=False)),
    ("one_cycle", schedules.one_cycle(0.1, N),
     lambda s, o: s.OneCycleLR(o, 0.1, total_steps=N, cycle_momentum=False)),
    ("one_cycle-linear-3", schedules.one_cycle(0.1, N, pct_start=0.25, anneal="linear",
                                               three_phase=True),
     lambda s, o: s.OneCycleLR(o, 0.1, total_steps=N, pct_start=0.25,
                               anneal_strategy="linear", three_phase=True,
                               cycle_momentum=False)),
]


@pytest.mark.parametrize("name,ours,theirs", TORCH_CASES, ids=[c[0] for c in TORCH_CASES])
def test_schedule_matches_torch_step_for_step(name, ours, theirs):
    expected = torch_lrs(theirs)
    got = [ours(t) for t in range(N)]
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-15)


def test_closed_forms():
    assert schedules.constant(0.3)(1000) == 0.3
    assert schedules.step_decay(1.0, 10)(25) == pytest.approx(0.01)
    assert schedules.inverse_time(1.0, 0.5)(4) == pytest.approx(1 / 3)
    c = schedules.cosine(1.0, 10, min_lr=0.1)
    assert c(0) == 1.0 and c(5) == pytest.approx(0.55) and c(10) == 0.1 and c(99) == 0.1
    w = schedules.warmup(schedules.exponential(1.0, 0.5), 4, start_factor=0.5)
    assert [w(t) for t in range(5)] == pytest.approx([0.5, 0.5 * 0.625, 0.25 * 0.75,
                                                      0.125 * 0.875, 0.0625])
    cyc = schedules.cyclic(0.0 + 1e-9, 1.0, 2)
    assert [round(cyc(t), 6) for t in range(5)] == [0.0, 0.5, 1.0, 0.5, 0.0]


def test_optimizer_uses_schedule():
    p = np.zeros(1)
    opt = fastopt.SGD([p], lr=schedules.multistep(1.0, [2], gamma=0.1))
    for _ in range(4):
        opt.step([np.ones(1)])
    np.testing.assert_allclose(p, [-(1 + 1 + 0.1 + 0.1)])


@pytest.mark.parametrize("make,match", [
    (lambda: schedules.step_decay(0.1, 0), "step_size"),
    (lambda: schedules.step_decay(-0.1, 3), "lr"),
    (lambda: schedules.constant(0.0), "lr"),
    (lambda: schedules.multistep(0.1, [5, 3]), "increasing"),
    (lambda: schedules.cosine(0.1, -1), "total_steps"),
    (lambda: schedules.cyclic(0.01, 0.1, 0), "step_size_up"),
    (lambda: schedules.cyclic(0.01, 0.1, 4, mode="sine"), "mode"),
    (lambda: schedules.one_cycle(0.1, 100, pct_start=1.0), "pct_start"),
    (lambda: schedules.one_cycle(0.1, 100, pct_start=0.0), "pct_start"),
    (lambda: schedules.one_cycle(0.1, 100, anneal="exp"), "anneal"),
    (lambda: schedules.warmup(0.1, 5, start_factor=2.0), "start_factor"),
    (lambda: schedules.exponential(0.1, 0.9)(-1), "step"),
    (lambda: schedules.one_cycle(0.1, 10)(10), "past its end"),
])
def test_invalid_schedule_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# -- lr_find on a real small problem -------------------------------------------------


def digits_problem():
    datasets = pytest.importorskip("sklearn.datasets")
    x, y = datasets.load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float64)
    onehot = np.eye(10)[y]
    rng = np.random.default_rng(0)
    params = {"W": rng.standard_normal((64, 10)) * 0.01, "b": np.zeros(10)}
    batches = iter(range(10**9))

    def loss_and_grads(p, batch_size=128):
        i = next(batches) * batch_size % (len(x) - batch_size)
        xb, yb = x[i:i + batch_size], onehot[i:i + batch_size]
        logits = xb @ p["W"] + p["b"]
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        loss = -np.mean(np.sum(yb * np.log(probs + 1e-12), axis=1))
        d = (probs - yb) / batch_size
        return loss, {"W": xb.T @ d, "b": d.sum(axis=0)}

    def full_loss(p):
        logits = x @ p["W"] + p["b"]
        logits -= logits.max(axis=1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        return -np.mean(logp[np.arange(len(y)), y])

    return params, loss_and_grads, full_loss


def test_lr_find_restores_params_and_suggests_a_working_lr(tmp_path):
    params, loss_and_grads, full_loss = digits_problem()
    before = {k: v.copy() for k, v in params.items()}
    result = fastopt.lr_find(params, loss_and_grads, optimizer=fastopt.SGD,
                             start_lr=1e-5, end_lr=1e4, num_it=150, momentum=0.9)
    for k in params:
        np.testing.assert_array_equal(params[k], before[k])
    assert len(result.lrs) == len(result.losses) >= 3
    assert np.all(np.diff(result.lrs) > 0)
    assert len(result.lrs) < 150  # the sweep diverged and stopped before end_lr
    assert 1e-3 <= result.suggestion <= 10.0

    initial = full_loss(params)
    opt = fastopt.SGD(params, lr=result.suggestion, momentum=0.9)
    for _ in range(100):
        opt.step(loss_and_grads(params)[1])
    assert full_loss(params) < 0.5 * initial

    pytest.importorskip("matplotlib")
    result.plot(tmp_path / "lr.png")
    assert (tmp_path / "lr.png").read_bytes()[:4] == b"\x89PNG"


def test_lr_find_restores_params_on_error_and_checks_arguments():
    params = [np.ones(3)]
    calls = []

    def bad(p):
        calls.append(1)
        if len(calls) == 3:
            return 1.0, [np.ones(4)]  # wrong structure mid-sweep
        p[0][:] = 99.0  # even a callback that writes is undone
        return 1.0, [np.ones(3)]

    with pytest.raises(ValueError, match="shape"):
        fastopt.lr_find(params, bad)
    np.testing.assert_array_equal(params[0], np.ones(3))
    with pytest.raises(ValueError, match="non-finite"):
        fastopt.lr_find(params, lambda p: (float("nan"), [np.ones(3)]))
    with pytest.raises(ValueError, match="start_lr"):
        fastopt.lr_find(params, bad, start_lr=1.0, end_lr=0.1)
    np.testing.assert_array_equal(params[0], np.ones(3))


def test_lr_find_over_param_groups_sweeps_every_group_and_restores(rng):
    a, b = rng.standard_normal((4, 3)), rng.standard_normal(5)
    groups = [{"params": [a], "lr": 5.0, "weight_decay": 0.01}, {"params": [b]}]
    before = [a.copy(), b.copy()]
    seen = []

    def loss_and_grads(params):
        x, y = params[0]["params"][0], params[1]["params"][0]
        seen.append((x.copy(), y.copy()))
        return float((x * x).sum() + (y * y).sum()), [2 * x, 2 * y]

    result = fastopt.lr_find(groups, loss_and_grads, optimizer=fastopt.SGD, start_lr=1e-3,
                             end_lr=10.0, num_it=20)
    np.testing.assert_array_equal(a, before[0])
    np.testing.assert_array_equal(b, before[1])
    assert groups[0]["lr"] == 5.0  # the caller's groups are left as they were
    assert result.lrs[0] == 1e-3 and len(result.lrs) >= 3
    # Both groups moved at the swept lr (group 0's 5.0 would have diverged at once),
    # group 0 with its own weight decay: x1 = x0 - lr*(2*x0 + 0.01*x0).
    (x0, y0), (x1, y1) = seen[0], seen[1]
    np.testing.assert_allclose(x1, x0 - 1e-3 * (2 * x0 + 0.01 * x0), rtol=1e-12)
    np.testing.assert_allclose(y1, y0 - 1e-3 * 2 * y0, rtol=1e-12)


# -- clipping -------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_clip_grad_norm_matches_torch(dtype, max_norm, rng, cpu_backend):
    torch = torch_or_skip()
    grads = [rng.standard_normal(s).astype(dtype) for s in [(30, 20), (7,), (100000,)]]
    tensors = [torch.zeros(g.shape, dtype=torch.from_numpy(g).dtype, requires_grad=True)
               for g in grads]
    for t, g in zip(tensors, grads):
        t.grad = torch.tensor(g.copy())
    expected = float(torch.nn.utils.clip_grad_norm_(tensors, max_norm))
    total = fastopt.clip_grad_norm_(grads, max_norm)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    assert total == pytest.approx(expected, rel=rtol)
    for t, g in zip(tensors, grads):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=rtol, atol=1e-7)


def test_global_norm_and_all_finite(rng, cpu_backend):
    grads = {"a": rng.standard_normal((50, 40)).astype(np.float32),
             "b": rng.standard_normal(1000)}
    expected = math.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2))
                             for g in grads.values()))
    assert fastopt.global_norm(grads) == pytest.approx(expected, rel=1e-13)
    assert fastopt.all_finite(grads)
    grads["b"][17] = np.inf
    assert not fastopt.all_finite(grads)
    strided = np.ones((10, 10))[:, ::2]
    assert fastopt.global_norm([strided]) == pytest.approx(math.sqrt(50))


def test_fused_clipping_equals_clip_then_step(rng, cpu_backend):
    max_norm = 1.0
    p1 = rng.standard_normal(500)
    p2 = p1.copy()
    a, b = fastopt.SGD([p1], lr=0.1, momentum=0.9), fastopt.SGD([p2], lr=0.1, momentum=0.9)
    for _ in range(5):
        g = rng.standard_normal(500) * 3.0
        norm = fastopt.global_norm([g])
        a.step([g], grad_scale=max(1.0, norm / max_norm))
        clipped = g.copy()
        fastopt.clip_grad_norm_([clipped], max_norm)
        b.step([clipped])
    # clip_grad_norm_ divides by (norm + 1e-6); the fused form by norm exactly.
    np.testing.assert_allclose(p1, p2, rtol=1e-5)


def test_global_norm_is_identical_across_thread_counts(cpu_compiled_backend):
    import subprocess
    import sys

    from conftest import thread_env
    code = ("import numpy as np, fastopt; rng = np.random.default_rng(1); "
            "g = [rng.standard_normal(3_000_001).astype(np.float32), rng.standard_normal(77)]; "
            "print(repr(fastopt.global_norm(g)))")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, env=thread_env(n, cpu_compiled_backend.name)
                           ).stdout for n in (1, 2)}
    assert len(outs) == 1
