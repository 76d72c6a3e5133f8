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
    shapes = [(20, 30), (7,), (3, 4, 5)]
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    tparams = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    topt = getattr(torch.optim, name)(tparams, **kw, **{impl: True})
    opt = getattr(fastopt, name)(params, **kw)
    for _ in range(30):
        grads = [rng.standard_normal(s).astype(dtype) for s in shapes]
        for tp, g in zip(tparams, grads):
            tp.grad = torch.tensor(g)
        topt.step()
        opt.step(grads)
    tol = dict(rtol=2e-5, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-13)
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p, tp.detach().numpy(), **tol)


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
