"""Velocity-form momentum, as cs231n, scikit-learn and nnfs write it (for
:mod:`fastopt.compat`; their rounding, not torch's)."""

from ._spec import Option, Rule, State, slots

SCALARS = ("lr", "momentum")
LR, MOMENTUM = slots(SCALARS)
NESTEROV = 0  # flag


def update(p, g, velocity, s1, s2, h, f):
    """``v = mu*v - lr*g ; p += v`` (Nesterov, scikit-learn's: ``p += mu*v - lr*g``
    with the new v)."""
    velocity = h[MOMENTUM] * velocity - h[LR] * g
    if f[NESTEROV]:
        p = p + (h[MOMENTUM] * velocity - h[LR] * g)
    else:
        p = p + velocity
    return p, velocity, s1, s2


def reference(p, g, velocity, s1, s2, k, f):
    velocity[...] = k.momentum * velocity - k.lr * g
    return p + (k.momentum * velocity - k.lr * g) if f[NESTEROV] else p + velocity


RULE = Rule(
    "velocity", id=4,
    options=(Option("lr"), Option("momentum"), Option("nesterov", False)),
    states=(State("velocity"),),
    scalars=SCALARS,
    host=lambda hp: {"lr": hp["lr"], "momentum": hp["momentum"]},
    flag_names=("nesterov",), flags=lambda hp: (hp["nesterov"],),
    penalties=False, update=update, reference=reference,
)
