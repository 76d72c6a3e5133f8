"""ReduceLROnPlateau against torch's, step for step; EarlyStopping against Keras' rule
(written out below), and its restore of the best params, bit for bit."""

import math
import tracemalloc

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import fastopt
from fastopt._params import flat_params
from fastopt.schedules import ReduceLROnPlateau

from conftest import torch_or_skip

NAN = float("nan")
SEQUENCES = {
    "random": list(np.random.default_rng(0).standard_normal(60)),
    "plateau": [1.0] * 40,
    "slow": [1.0 - 1e-5 * i for i in range(40)],  # improves, but by less than threshold
    "ties-then-drop": [3.0, 2.0, 2.0, 2.0, 2.0, 1.0, 1.0, 1.0, 0.5] * 5,
    "nan": [1.0, NAN, 0.9, NAN, NAN, NAN, 0.8, NAN, NAN, NAN, NAN, NAN] * 3,
    "rising": [float(i) for i in range(40)],
    "negative": [-1.0 - 0.01 * (i % 7) for i in range(40)],
    "zigzag": [1.0, 0.5, 1.0, 0.5, 0.49, 0.6, 0.7, 0.2, 0.3] * 4,
}
SETTINGS = [
    dict(),
    dict(mode="max", factor=0.5, patience=2),
    dict(patience=0, cooldown=2, factor=0.3),
    dict(patience=3, threshold=0.05, threshold_mode="abs", cooldown=1),
    dict(mode="max", threshold_mode="abs", threshold=0.1, patience=1, min_lr=[0.01, 0.004]),
    dict(patience=1, factor=0.5, min_lr=0.02, eps=1e-3),
    dict(patience=2, factor=0.9, min_lr=[0.0, 0.05], eps=0.0),
]


def _pair(torch, lrs, kw):
    """A torch scheduler and ours over optimizers with groups at ``lrs``."""
    tparams = [torch.zeros(1, requires_grad=True) for _ in lrs]
    topt = torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(tparams, lrs)])
    ours = fastopt.SGD([{"params": [np.zeros(1)], "lr": lr} for lr in lrs])
    return (torch.optim.lr_scheduler.ReduceLROnPlateau(topt, **kw), topt,
            ReduceLROnPlateau(ours, **kw), ours)


def _settings_id(kw):
    return ",".join(f"{k}={v}" for k, v in kw.items()) or "defaults"


@pytest.mark.parametrize("kw", SETTINGS, ids=_settings_id)
@pytest.mark.parametrize("name", SEQUENCES)
def test_matches_torch_step_for_step(name, kw):
    torch = torch_or_skip()
    tsched, topt, sched, opt = _pair(torch, [0.1, 0.04], kw)
    for metric in SEQUENCES[name]:
        tsched.step(metric)
        sched.step(metric)
        assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in topt.param_groups]
        assert sched.num_bad_epochs == tsched.num_bad_epochs
        assert sched.cooldown_counter == tsched.cooldown_counter
        assert sched.best == tsched.best or (math.isinf(sched.best) and sched.best == tsched.best)
    assert sched.get_last_lr() == tsched.get_last_lr()


@settings(max_examples=150, deadline=None)
@given(metrics=st.lists(st.sampled_from([0.0, 1.0, 1.0001, 2.0, -1.0, NAN, 1e-9]) |
                        st.floats(-10, 10), max_size=50),
       mode=st.sampled_from(["min", "max"]), threshold_mode=st.sampled_from(["rel", "abs"]),
       patience=st.integers(0, 4), cooldown=st.integers(0, 3),
       factor=st.sampled_from([0.1, 0.5, 0.99]), threshold=st.sampled_from([0.0, 1e-4, 0.1]))
def test_random_sequences_match_torch(metrics, mode, threshold_mode, patience, cooldown,
                                      factor, threshold):
    torch = torch_or_skip()
    kw = dict(mode=mode, threshold_mode=threshold_mode, patience=patience, cooldown=cooldown,
              factor=factor, threshold=threshold, min_lr=[1e-3, 0.0])
    tsched, topt, sched, opt = _pair(torch, [0.1, 1.0], kw)
    for metric in metrics:
        tsched.step(metric)
        sched.step(metric)
        assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in topt.param_groups]


def _expected_lrs(metrics, lr, factor, patience):
    """torch's rule for the defaults' shape (mode min, rel threshold 0, no cooldown)."""
    best, bad, lrs = math.inf, 0, []
    for m in metrics:
        if m < best:
            best, bad = m, 0
        else:
            bad += 1
        if bad > patience:
            lr, bad = lr * factor, 0
        lrs.append(lr)
    return lrs


def test_reduces_after_patience_bad_steps_without_torch():
    metrics = [5.0, 4.0, 4.0, 4.0, 4.5, 3.0, 3.0, 3.0, 3.0]
    opt = fastopt.Adam([np.zeros(2)], lr=0.1)
    sched = ReduceLROnPlateau(opt, factor=0.5, patience=2, threshold=0.0)
    seen = []
    for m in metrics:
        sched.step(m)
        seen.append(opt.param_groups[0]["lr"])
    assert seen == _expected_lrs(metrics, 0.1, 0.5, 2)
    assert seen == [0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05, 0.025]


OPTIMIZERS = [(fastopt.SGD, dict(momentum=0.9)), (fastopt.RMSprop, {}), (fastopt.Adam, {}),
              (fastopt.AdamW, {}), (fastopt.Adagrad, {})]


@pytest.mark.parametrize("cls,kw", OPTIMIZERS, ids=[c.__name__ for c, _ in OPTIMIZERS])
def test_every_optimizer_steps_with_the_reduced_lr(cls, kw, cpu_backend):
    # The same optimizer at the reduced lr from the start takes the same second step.
    g = np.linspace(-1, 1, 8)
    a, b = np.ones(8), np.ones(8)
    opt_a, opt_b = cls([a], lr=0.2, **kw), cls([b], lr=0.2, **kw)
    sched = ReduceLROnPlateau(opt_a, factor=0.25, patience=0)
    opt_a.step([g])
    opt_b.step([g])
    sched.step(1.0)
    sched.step(1.0)  # no improvement: lr 0.2 -> 0.05
    assert opt_a.param_groups[0]["lr"] == 0.05
    opt_b.param_groups[0]["lr"] = 0.05
    opt_a.step([g])
    opt_b.step([g])
    np.testing.assert_array_equal(a, b)


def test_state_dict_round_trip_continues_identically(tmp_path):
    metrics = list(np.random.default_rng(3).standard_normal(30))
    kw = dict(patience=1, cooldown=1, factor=0.5, min_lr=[0.0, 0.01])

    def make():
        opt = fastopt.SGD([{"params": [np.zeros(1)], "lr": 0.1},
                           {"params": [np.zeros(1)], "lr": 0.2}])
        return opt, ReduceLROnPlateau(opt, **kw)

    opt, sched = make()
    straight = []
    for m in metrics:
        sched.step(m)
        straight.append(sched.get_last_lr())
    opt1, sched1 = make()
    for m in metrics[:12]:
        sched1.step(m)
    np.savez(tmp_path / "s.npz", **sched1.state_dict())
    np.savez(tmp_path / "o.npz", **opt1.state_dict())
    opt2, sched2 = make()
    opt2.load_state_dict(np.load(tmp_path / "o.npz"))
    sched2.load_state_dict(np.load(tmp_path / "s.npz"))
    resumed = straight[:12]
    for m in metrics[12:]:
        sched2.step(m)
        resumed.append(sched2.get_last_lr())
    assert resumed == straight


def test_bad_arguments_and_state():
    opt = fastopt.SGD([{"params": [np.zeros(1)]}, {"params": [np.zeros(1)]}], lr=0.1)
    for kw, match in [(dict(factor=1.0), "factor"), (dict(factor=-0.1), "factor"),
                      (dict(mode="low"), "mode"), (dict(threshold_mode="pct"), "threshold_mode"),
                      (dict(patience=-1), "patience"), (dict(patience=1.5), "patience"),
                      (dict(cooldown=-2), "cooldown"), (dict(min_lr=[0.1]), "min_lrs"),
                      (dict(min_lr=-1.0), "min_lr"), (dict(eps=float("nan")), "eps")]:
        with pytest.raises(ValueError, match=match):
            ReduceLROnPlateau(opt, **kw)
    with pytest.raises(TypeError, match="schedule"):
        ReduceLROnPlateau(fastopt.SGD([np.zeros(1)], lr=fastopt.schedules.constant(0.1)))
    with pytest.raises(TypeError, match="optimizer"):
        ReduceLROnPlateau([np.zeros(1)])
    sched = ReduceLROnPlateau(opt, patience=0)
    with pytest.raises(TypeError, match="metric"):
        sched.step("1.0")
    sched.step(1.0)
    before = sched.state_dict()
    with pytest.raises(ValueError, match="missing"):
        sched.load_state_dict({k: v for k, v in before.items() if k != "best"})
    with pytest.raises(ValueError, match="min_lrs"):
        sched.load_state_dict({**before, "min_lrs": (0.0,)})
    with pytest.raises(ValueError, match="num_bad_epochs"):
        sched.load_state_dict({**before, "num_bad_epochs": -1})
    assert sched.state_dict() == before


# -- EarlyStopping ----------------------------------------------------------------------


def keras_rule(metrics, mode, patience, min_delta):
    """Keras' EarlyStopping.on_epoch_end, written out: (stopped at, best, best epoch)."""
    monitor_op = np.less if mode == "min" else np.greater
    delta = -min_delta if mode == "min" else min_delta
    best, best_epoch, wait = (np.inf if mode == "min" else -np.inf), 0, 0
    for epoch, current in enumerate(metrics):
        wait += 1
        if monitor_op(current - delta, best):
            best, best_epoch, wait = current, epoch, 0
            continue
        if wait >= patience and epoch > 0:
            return epoch, best, best_epoch
    return None, best, best_epoch


@settings(max_examples=200, deadline=None)
@example(metrics=[-0.5, 2.702024332982374e-31], mode="max", patience=0, min_delta=0.5)
@given(metrics=st.lists(st.sampled_from([0.0, 1.0, 1.05, 2.0, NAN]) | st.floats(-5, 5),
                        min_size=1, max_size=40),
       mode=st.sampled_from(["min", "max"]), patience=st.integers(0, 5),
       min_delta=st.sampled_from([0.0, 0.01, 0.5]))
def test_early_stopping_follows_keras(metrics, mode, patience, min_delta):
    stop_at, best, best_epoch = keras_rule(metrics, mode, patience, min_delta)
    es = fastopt.EarlyStopping([np.zeros(3)], mode=mode, patience=patience,
                               min_delta=min_delta, restore_best=False)
    stopped = None
    for epoch, m in enumerate(metrics):
        if es.update(m):
            stopped = epoch
            break
    assert stopped == stop_at
    assert es.best == best or (math.isinf(best) and es.best == best)
    if es.best_step is not None:
        assert es.best_step == best_epoch


def _layouts(rng):
    w, b, v = (rng.standard_normal(s).astype(d) for s, d in
               (((4, 3), np.float32), ((3,), np.float32), ((5, 2), np.float64)))
    v = np.asfortranarray(v)
    return {"list": [w, b, v], "dict": {"w": w, "b": b, "v": v},
            "groups": [{"params": [w, b], "lr": 0.1}, {"params": [v]}]}


@pytest.mark.parametrize("layout", ["list", "dict", "groups"])
def test_restores_the_best_params_bit_for_bit(layout, backend, rng):
    params = _layouts(rng)[layout]
    arrays = flat_params(params)
    device = backend.put(arrays)
    if layout == "dict":
        params = dict(zip(params, device))
    elif layout == "groups":
        params = [{"params": device[:2], "lr": 0.1}, {"params": [device[2]]}]
    else:
        params = device
    opt = fastopt.SGD(params, lr=0.1, momentum=0.9)
    es = fastopt.EarlyStopping(params, patience=2)
    best = None
    for epoch, loss in enumerate([3.0, 2.0, 1.0, 1.5, 1.2, 1.1]):
        grads = [np.empty_like(a) for a in arrays]  # in each param's memory order
        for g in grads:
            g[...] = rng.standard_normal(g.shape)
        grads = backend.put(grads)
        opt.step(_like(params, grads))
        if es.update(loss):
            assert epoch == 4 and es.stopped
            break
        if loss == 1.0:
            best = [np.copy(a) for a in backend.get(device)]
    assert es.best == 1.0 and es.best_step == 2
    for got, want in zip(backend.get(device), best):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    assert backend.get(device)[2].flags.f_contiguous or backend.on_device


def _like(params, grads):
    if isinstance(params, dict):
        return dict(zip(params, grads))
    if isinstance(params[0], dict):
        return [grads[:2], [grads[2]]]
    return grads


def test_improvements_reuse_one_buffer():
    p = [np.zeros(1 << 20, np.float32), np.zeros(7)]
    es = fastopt.EarlyStopping(p, patience=3)
    buffer, address = es._buffer, es._buffer.ctypes.data
    tracemalloc.start()
    try:
        for loss in (5.0, 4.0, 3.0, 2.0, 1.0):
            p[0] += 1.0
            es.update(loss)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert es._buffer is buffer and es._buffer.ctypes.data == address
    assert peak < 1 << 20  # a copy per improvement would allocate 4 MB each
    es.restore()
    assert (p[0] == 5.0).all()


def test_restore_at_the_end_and_bad_arguments():
    p = np.zeros(3)
    es = fastopt.EarlyStopping([p], mode="max", patience=5)
    with pytest.raises(RuntimeError, match="nothing to restore"):
        es.restore()
    for acc in (0.5, 0.7, 0.6):
        p += 1.0
        assert es.update(acc) is False
    es.restore()  # the epochs ran out before patience did
    np.testing.assert_array_equal(p, 2.0)
    with pytest.raises(RuntimeError, match="no copy"):
        fastopt.EarlyStopping([p], restore_best=False).restore()
    for kw, error, match in [(dict(mode="lowest"), ValueError, "mode"),
                             (dict(patience=-1), ValueError, "patience"),
                             (dict(min_delta=-0.1), ValueError, "min_delta"),
                             (dict(restore_best="yes"), TypeError, "restore_best")]:
        with pytest.raises(error, match=match):
            fastopt.EarlyStopping([p], **kw)
    with pytest.raises(TypeError, match="array"):
        fastopt.EarlyStopping([[1.0, 2.0]])
    with pytest.raises(TypeError, match="metric"):
        fastopt.EarlyStopping([p]).update(None)
