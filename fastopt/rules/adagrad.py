"""Adagrad with learning-rate decay (torch.optim.Adagrad)."""

import math

import numpy as np

from . import _spec
from ._spec import Front, Option, Rule, State, slots

DOC = """Adagrad with learning-rate decay::

    t = t + 1 ;  clr = lr / (1 + (t - 1) * lr_decay)
    sum = sum + g * g        (sum starts at initial_accumulator_value)
    p = p - clr * g / (sqrt(sum) + eps)
"""

SCALARS = ("clr", "eps")
CLR, EPS = slots(SCALARS)


def update(p, g, state_sum, s1, s2, h, f):
    state_sum = state_sum + g * g
    p = p - h[CLR] * g / (math.sqrt(state_sum) + h[EPS])
    return p, state_sum, s1, s2


def reference(p, g, state_sum, s1, s2, k, f):
    state_sum += g * g
    return p - k.clr * g / (np.sqrt(state_sum) + k.eps)


RULE = Rule(
    "adagrad", id=3,
    options=(Option("lr", 1e-2, _spec.LEARNING_RATE),
             Option("lr_decay", 0.0, _spec.nonnegative("lr_decay")),
             Option("weight_decay", 0.0, _spec.nonnegative("weight_decay")),
             Option("initial_accumulator_value", 0.0,
                    _spec.nonnegative("initial_accumulator_value"), kernel=False),
             Option("eps", 1e-10, _spec.nonnegative("eps"))),
    context=("step",),
    states=(State("sum", signed=False, fill="initial_accumulator_value"),),
    scalars=SCALARS,
    host=lambda hp: {"clr": hp["lr"] / (1.0 + (hp["step"] - 1) * hp["lr_decay"]),
                     "eps": hp["eps"]},
    update=update, reference=reference, blame={"clr": "lr"},
    optimizers=(Front("Adagrad", DOC),),
    functionals=(Front("adagrad_", "Adagrad, in place, for step ``step`` >= 1::\n"
                       + DOC.split("::", 1)[1].replace("t - 1", "step - 1")
                       .replace("    t = t + 1 ;  ", "    ")),),
    bench={"adagrad": ("Adagrad", dict(lr=1e-3), dict(fused=True))},
)
