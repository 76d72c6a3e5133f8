"""Lion, evolved sign momentum (Chen et al. 2023, "Symbolic Discovery of Optimization
Algorithms"); torch.optim has no Lion."""

import numpy as np

from . import _spec
from ._spec import ZERO, Front, Option, Rule, State, slots

DOC = """Lion (Chen et al.), the sign of an interpolated momentum::

    p = p * (1 - lr * weight_decay)
    p = p - lr * sign(beta1 * m + (1 - beta1) * g)       (sign(0) = 0)
    m = beta2 * m + (1 - beta2) * g
"""

SCALARS = ("lr", "beta1", "one_minus_beta1", "beta2", "one_minus_beta2")
LR, BETA1, ONE_MINUS_BETA1, BETA2, ONE_MINUS_BETA2 = slots(SCALARS)


def update(p, g, exp_avg, s1, s2, h, f):
    zero = h[ZERO]
    c = h[BETA1] * exp_avg + h[ONE_MINUS_BETA1] * g
    if c > zero:
        p = p - h[LR]
    elif c < zero:
        p = p + h[LR]
    elif c != c:
        p = p + c  # NaN
    exp_avg = h[BETA2] * exp_avg + h[ONE_MINUS_BETA2] * g
    return p, exp_avg, s1, s2


def reference(p, g, exp_avg, s1, s2, k, f):
    p = p - k.lr * np.sign(k.beta1 * exp_avg + k.one_minus_beta1 * g)
    exp_avg[...] = k.beta2 * exp_avg + k.one_minus_beta2 * g
    return p


RULE = Rule(
    "lion", id=13,
    options=(Option("lr", 1e-4, _spec.LEARNING_RATE), Option("betas", (0.9, 0.99), split=(
        ("beta1", _spec.unit_interval("beta parameter at index 0 (beta1)")),
        ("beta2", _spec.unit_interval("beta parameter at index 1 (beta2)")))),
             Option("weight_decay", 0.0, _spec.nonnegative("weight_decay"))),
    states=(State("exp_avg"),),
    scalars=SCALARS,
    host=lambda hp: {"lr": hp["lr"], "beta1": hp["beta1"],
                     "one_minus_beta1": 1.0 - hp["beta1"], "beta2": hp["beta2"],
                     "one_minus_beta2": 1.0 - hp["beta2"]},
    decoupled=lambda hp: True,
    update=update, reference=reference,
    optimizers=(Front("Lion", DOC),),
    functionals=(Front("lion_", "Lion, in place::\n" + DOC.split("::", 1)[1]),),
    bench={"lion": ("Lion", dict(lr=1e-4), {})},
)
