"""Rprop, resilient backpropagation (Riedmiller & Braun 1993; torch.optim.Rprop)."""

import numpy as np

from . import _spec
from ._spec import ONE, ZERO, Front, Option, Rule, State, slots

DOC = """Rprop (Riedmiller & Braun): a step size per element, grown while the gradient
keeps its sign and shrunk when it flips::

    step = lr                         (first step)
    factor = etaplus   where g * prev > 0
             etaminus  where g * prev < 0   (and there g = 0)
             1         where g * prev == 0
    step = clamp(step * factor, step_size_min, step_size_max)
    p = p - sign(g) * step ;  prev = g
"""

SCALARS = ("lr", "etaminus", "etaplus", "step_size_min", "step_size_max", "first")
LR, ETAMINUS, ETAPLUS, STEP_MIN, STEP_MAX, FIRST = slots(SCALARS)


def update(p, g, prev, step, s2, h, f):
    zero = h[ZERO]
    if h[FIRST] != zero:
        step = h[LR]
    product = g * prev
    if product > zero:
        factor = h[ETAPLUS]
    elif product < zero:
        factor = h[ETAMINUS]
        g = zero
    elif product == zero:
        factor = h[ONE]
    else:
        factor = product  # NaN
    step = step * factor
    if step < h[STEP_MIN]:
        step = h[STEP_MIN]
    elif step > h[STEP_MAX]:
        step = h[STEP_MAX]
    if g > zero:
        p = p - step
    elif g < zero:
        p = p + step
    elif g != g:
        p = p - g * step  # NaN
    return p, g, step, s2


def reference(p, g, prev, step, s2, k, f):
    if k.first != 0:
        step[...] = k.lr
    product = g * prev
    factor = np.where(product > 0, k.etaplus, np.where(product < 0, k.etaminus,
                                                       np.where(product == 0, k.one, product)))
    np.clip(step * factor, k.step_size_min, k.step_size_max, out=step)
    g = np.where(product < 0, k.zero, g)
    prev[...] = g
    return p - np.sign(g) * step


def _validate(hp):
    if not 0.0 < hp["etaminus"] < 1.0 < hp["etaplus"]:
        raise ValueError(f"Invalid eta values: {hp['etaminus']}, {hp['etaplus']} "
                         "(need 0 < etaminus < 1 < etaplus)")
    if hp["step_size_min"] > hp["step_size_max"]:
        raise ValueError(f"Invalid step_sizes: min {hp['step_size_min']} > max "
                         f"{hp['step_size_max']}")


RULE = Rule(
    "rprop", id=12,
    options=(Option("lr", 1e-2, _spec.LEARNING_RATE),
             Option("etas", (0.5, 1.2), split=(("etaminus", _spec.nonnegative("etaminus")),
                                               ("etaplus", _spec.nonnegative("etaplus")))),
             Option("step_sizes", (1e-6, 50.0), split=(
                 ("step_size_min", _spec.nonnegative("step_size_min")),
                 ("step_size_max", _spec.nonnegative("step_size_max"))))),
    context=("first",),
    states=(State("prev"), State("step_size", signed=False)),
    scalars=SCALARS,
    host=lambda hp: {"lr": hp["lr"], "etaminus": hp["etaminus"], "etaplus": hp["etaplus"],
                     "step_size_min": hp["step_size_min"],
                     "step_size_max": hp["step_size_max"],
                     "first": 1.0 if hp["first"] else 0.0},
    update=update, reference=reference, validate=_validate,
    optimizers=(Front("Rprop", DOC),),
    functionals=(Front("rprop_", "Rprop, in place (``first``: the first step, which sets "
                                 "every step size to lr)::\n" + DOC.split("::", 1)[1]),),
    bench={"rprop": ("Rprop", dict(lr=1e-2), dict(foreach=True))},
)
