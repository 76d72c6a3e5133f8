"""Nesterov momentum as Deep Learning from Scratch writes it (``common/optimizer.py``),
for :mod:`fastopt.compat.dlfs`: its own operation order, not torch's."""

from ._spec import Option, Rule, State, slots

SCALARS = ("momentum", "lr", "momentum_squared", "grad_step")
MOMENTUM, LR, MOMENTUM_SQUARED, GRAD_STEP = slots(SCALARS)


def update(p, g, v, s1, s2, h, f):
    """``v *= mu ; v -= lr*g ; p += mu*mu*v ; p -= (1 + mu)*lr*g``."""
    v = v * h[MOMENTUM]
    v = v - h[LR] * g
    p = p + h[MOMENTUM_SQUARED] * v
    p = p - h[GRAD_STEP] * g
    return p, v, s1, s2


def reference(p, g, v, s1, s2, k, f):
    v *= k.momentum
    v -= k.lr * g
    return p + k.momentum_squared * v - k.grad_step * g


RULE = Rule(
    "nesterov_dlfs", id=14,
    options=(Option("lr"), Option("momentum")),
    states=(State("v"),),
    scalars=SCALARS,
    host=lambda hp: {"momentum": hp["momentum"], "lr": hp["lr"],
                     "momentum_squared": hp["momentum"] * hp["momentum"],
                     "grad_step": (1 + hp["momentum"]) * hp["lr"]},
    penalties=False, update=update, reference=reference,
)
