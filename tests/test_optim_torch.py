"""Against torch.optim (skipped when torch is not installed)."""

import numpy as np
import pytest

import fastopt

from conftest import torch_or_skip

CASES = [
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, maximize=True)),
    ("RMSprop", dict(lr=0.01, centered=True, momentum=0.5, weight_decay=0.01)),
    ("RMSprop", dict(lr=0.01, alpha=0.9)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.01)),
    ("Adam", dict(lr=0.01, amsgrad=True, maximize=True)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1,
                     weight_decay=0.01)),
]
FUSED = {"SGD", "Adam", "AdamW", "Adagrad"}


@pytest.mark.parametrize("name,kw", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("impl", ["foreach", "fused"])
def test_matches_torch_optim(name, kw, dtype, impl, rng, cpu_backend):
    torch = torch_or_skip()
    if impl == "fused" and name not in FUSED:
        pytest.skip(f"torch has no fused {name}")
    params, tparams, _, _ = run_both(torch, name, kw, {impl: True}, dtype, rng, 30)
    tol = dict(rtol=2e-5, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-13)
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p, tp.detach().numpy(), **tol)


def run_both(torch, name, kw, torch_kw, dtype, rng, steps):
    """fastopt's and torch's optimizer ``name`` over the same params and grads; returns
    (params, torch params, fastopt optimizer, torch optimizer)."""
    shapes = [(20, 30), (7,), (3, 4, 5)]
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    tparams = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    topt = getattr(torch.optim, name)(tparams, **kw, **torch_kw)
    opt = getattr(fastopt, name)(params, **kw)
    for _ in range(steps):
        grads = [rng.standard_normal(s).astype(dtype) for s in shapes]
        for tp, g in zip(tparams, grads):
            tp.grad = torch.tensor(g)
        topt.step()
        opt.step(grads)
    return params, tparams, opt, topt


def _random_hyper(name, rng):
    """Hyperparameters drawn at random for the optimizers fastopt added to the first
    five (each option its own draw, within torch's valid ranges)."""
    betas = (float(rng.uniform(0.5, 0.95)), float(rng.uniform(0.9, 0.999)))
    wd = float(rng.choice([0.0, rng.uniform(1e-3, 0.1)]))
    maximize = bool(rng.integers(2))
    if name == "Adadelta":
        return dict(lr=float(rng.uniform(0.1, 1.0)), rho=float(rng.uniform(0.5, 0.99)),
                    eps=float(rng.uniform(1e-7, 1e-5)), weight_decay=wd, maximize=maximize)
    if name == "Adamax":
        return dict(lr=float(rng.uniform(1e-3, 1e-2)), betas=betas,
                    eps=float(rng.uniform(1e-9, 1e-7)), weight_decay=wd, maximize=maximize)
    if name in ("NAdam", "RAdam"):
        kw = dict(lr=float(rng.uniform(1e-3, 1e-2)), betas=betas,
                  eps=float(rng.uniform(1e-9, 1e-7)), weight_decay=wd,
                  decoupled_weight_decay=bool(rng.integers(2)), maximize=maximize)
        if name == "NAdam":
            kw["momentum_decay"] = float(rng.uniform(1e-3, 1e-2))
        return kw
    if name == "ASGD":
        return dict(lr=float(rng.uniform(1e-3, 5e-2)), lambd=float(rng.uniform(1e-5, 1e-2)),
                    alpha=float(rng.uniform(0.5, 1.0)), t0=float(rng.integers(0, 30)),
                    weight_decay=wd, maximize=maximize)
    assert name == "Rprop"
    lo = float(rng.uniform(1e-6, 1e-3))
    return dict(lr=float(rng.uniform(1e-3, 5e-2)),
                etas=(float(rng.uniform(0.2, 0.9)), float(rng.uniform(1.1, 1.8))),
                step_sizes=(lo, float(rng.uniform(0.01, 1.0))), maximize=maximize)


NEW = ["Adadelta", "Adamax", "NAdam", "RAdam", "ASGD", "Rprop"]


@pytest.mark.parametrize("name", NEW)
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("foreach", [False, True])
def test_new_optimizers_match_torch_with_random_hyperparameters(name, seed, dtype, foreach,
                                                               cpu_backend):
    # torch keeps NAdam's mu_product and ASGD's eta and mu in its default dtype; fastopt
    # computes every per-step scalar in float64, so float64 runs set torch's default to
    # float64 to compare like with like.
    torch = torch_or_skip()
    rng = np.random.default_rng([seed, NEW.index(name)])
    kw = _random_hyper(name, rng)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64 if dtype == np.float64 else torch.float32)
    try:
        params, tparams, opt, topt = run_both(torch, name, kw, dict(foreach=foreach), dtype,
                                              rng, 45)
    finally:
        torch.set_default_dtype(previous)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p, tp.detach().numpy(), **tol)
    for i, tp in enumerate(tparams):  # the state, by torch's names
        for key, value in topt.state[tp].items():
            if key in opt.state(i):
                np.testing.assert_allclose(opt.state(i)[key], value.numpy(), **tol)


def test_grad_scale_matches_torch_fused_adam(rng, cpu_backend):
    torch = torch_or_skip()
    p = rng.standard_normal(100)
    tp = torch.tensor(p.copy(), requires_grad=True)
    topt = torch.optim.Adam([tp], lr=0.01, fused=True)
    opt = fastopt.Adam([p], lr=0.01)
    for _ in range(10):
        g = rng.standard_normal(100) * 64.0
        # grad_scale divides inside the kernel; torch sees the divided gradient.
        tp.grad = torch.tensor(g / 64.0)
        topt.step()
        opt.step([g], grad_scale=64.0)
    np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-12)
