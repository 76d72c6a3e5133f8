"""RMSprop, optionally centered and with momentum (torch.optim.RMSprop)."""

import math

import numpy as np

from . import _spec
from ._spec import Front, Option, Rule, State, slots

DOC = """RMSprop (optionally centered, with momentum)::

    sq = alpha * sq + (1 - alpha) * g * g
    avg = sqrt(sq - ga * ga) + eps  (centered, ga = alpha * ga + (1 - alpha) * g)
          sqrt(sq) + eps            (otherwise)
    buf = momentum * buf + g / avg ; p = p - lr * buf   (momentum > 0)
    p = p - lr * g / avg                                (otherwise)
"""

SCALARS = ("lr", "alpha", "one_minus_alpha", "eps", "momentum")
LR, ALPHA, ONE_MINUS_ALPHA, EPS, MOMENTUM = slots(SCALARS)
CENTERED, HAS_MOMENTUM = 0, 1  # flags


def update(p, g, square_avg, grad_avg, buf, h, f):
    alpha = h[ALPHA]
    one_minus_alpha = h[ONE_MINUS_ALPHA]
    square_avg = alpha * square_avg + one_minus_alpha * g * g
    if f[CENTERED]:
        grad_avg = alpha * grad_avg + one_minus_alpha * g
        avg = math.sqrt(square_avg - grad_avg * grad_avg) + h[EPS]
    else:
        avg = math.sqrt(square_avg) + h[EPS]
    if f[HAS_MOMENTUM]:
        buf = h[MOMENTUM] * buf + g / avg
        p = p - h[LR] * buf
    else:
        p = p - h[LR] * g / avg
    return p, square_avg, grad_avg, buf


def reference(p, g, square_avg, grad_avg, buf, k, f):
    square_avg[...] = k.alpha * square_avg + k.one_minus_alpha * g * g
    if f[CENTERED]:
        grad_avg[...] = k.alpha * grad_avg + k.one_minus_alpha * g
        avg = np.sqrt(square_avg - grad_avg * grad_avg) + k.eps
    else:
        avg = np.sqrt(square_avg) + k.eps
    if f[HAS_MOMENTUM]:
        buf[...] = k.momentum * buf + g / avg
        return p - k.lr * buf
    return p - k.lr * g / avg


RULE = Rule(
    "rmsprop", id=1,
    options=(Option("lr", 1e-2, _spec.LEARNING_RATE),
             Option("alpha", 0.99, _spec.nonnegative("alpha")),
             Option("eps", 1e-8, _spec.nonnegative("eps")),
             Option("weight_decay", 0.0, _spec.nonnegative("weight_decay")),
             Option("momentum", 0.0, _spec.nonnegative("momentum")),
             Option("centered", False, _spec.boolean("centered"))),
    states=(State("square_avg", signed=False),
            State("grad_avg", when=lambda hp: hp["centered"]),
            State("momentum_buffer", when=lambda hp: hp["momentum"] > 0)),
    scalars=SCALARS,
    host=lambda hp: {"lr": hp["lr"], "alpha": hp["alpha"],
                     "one_minus_alpha": 1.0 - hp["alpha"], "eps": hp["eps"],
                     "momentum": hp["momentum"]},
    flag_names=("centered", "has_momentum"),
    flags=lambda hp: (hp["centered"], hp["momentum"] > 0),
    update=update, reference=reference,
    optimizers=(Front("RMSprop", DOC),),
    functionals=(Front("rmsprop_", "RMSprop, in place (``grad_avg`` when centered, "
                                   "``momentum_buffer`` with momentum)::\n"
                       + DOC.split("::", 1)[1]),),
    bench={"rmsprop": ("RMSprop", dict(lr=1e-3), dict(foreach=True))},
)
