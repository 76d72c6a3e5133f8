"""Adadelta (Zeiler 2012; torch.optim.Adadelta)."""

import math

import numpy as np

from . import _spec
from ._spec import Front, Option, Rule, State, slots

DOC = """Adadelta (Zeiler)::

    sq = rho * sq + (1 - rho) * g * g
    delta = sqrt(acc + eps) / sqrt(sq + eps) * g
    acc = rho * acc + (1 - rho) * delta * delta
    p = p - lr * delta
"""

SCALARS = ("lr", "rho", "one_minus_rho", "eps")
LR, RHO, ONE_MINUS_RHO, EPS = slots(SCALARS)


def update(p, g, square_avg, acc_delta, s2, h, f):
    square_avg = h[RHO] * square_avg + h[ONE_MINUS_RHO] * g * g
    std = math.sqrt(square_avg + h[EPS])
    delta = math.sqrt(acc_delta + h[EPS]) / std * g
    acc_delta = h[RHO] * acc_delta + h[ONE_MINUS_RHO] * delta * delta
    p = p - h[LR] * delta
    return p, square_avg, acc_delta, s2


def reference(p, g, square_avg, acc_delta, s2, k, f):
    square_avg[...] = k.rho * square_avg + k.one_minus_rho * g * g
    delta = np.sqrt(acc_delta + k.eps) / np.sqrt(square_avg + k.eps) * g
    acc_delta[...] = k.rho * acc_delta + k.one_minus_rho * delta * delta
    return p - k.lr * delta


def _rho(value):
    value = _spec.nonnegative("rho")(value)
    if value > 1.0:
        raise ValueError(f"Invalid rho: {value} (must be in [0, 1])")
    return value


RULE = Rule(
    "adadelta", id=7,
    options=(Option("lr", 1.0, _spec.LEARNING_RATE), Option("rho", 0.9, _rho),
             Option("eps", 1e-6, _spec.nonnegative("eps")),
             Option("weight_decay", 0.0, _spec.nonnegative("weight_decay"))),
    states=(State("square_avg", signed=False), State("acc_delta", signed=False)),
    scalars=SCALARS,
    host=lambda hp: {"lr": hp["lr"], "rho": hp["rho"], "one_minus_rho": 1.0 - hp["rho"],
                     "eps": hp["eps"]},
    update=update, reference=reference,
    optimizers=(Front("Adadelta", DOC),),
    functionals=(Front("adadelta_", "Adadelta, in place::\n" + DOC.split("::", 1)[1]),),
    bench={"adadelta": ("Adadelta", dict(lr=1.0), dict(foreach=True))},
)
