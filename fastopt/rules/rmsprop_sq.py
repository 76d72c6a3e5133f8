"""RMSprop as cs231n and nnfs write it, ``(1 - alpha) * (g * g)``, or as Deep Learning
from Scratch does, ``(1 - alpha) * g * g`` (``unbracketed``), for :mod:`fastopt.compat`."""

import math

import numpy as np

from ._spec import Option, Rule, State, slots

SCALARS = ("lr", "alpha", "one_minus_alpha", "eps")
LR, ALPHA, ONE_MINUS_ALPHA, EPS = slots(SCALARS)
UNBRACKETED = 0  # flag


def update(p, g, cache, s1, s2, h, f):
    """``cache = a*cache + (1-a)*(g*g) ; p -= lr*g / (sqrt(cache) + eps)``."""
    if f[UNBRACKETED]:
        cache = h[ALPHA] * cache + h[ONE_MINUS_ALPHA] * g * g
    else:
        cache = h[ALPHA] * cache + h[ONE_MINUS_ALPHA] * (g * g)
    p = p - h[LR] * g / (math.sqrt(cache) + h[EPS])
    return p, cache, s1, s2


def reference(p, g, cache, s1, s2, k, f):
    if f[UNBRACKETED]:
        cache[...] = k.alpha * cache + k.one_minus_alpha * g * g
    else:
        cache[...] = k.alpha * cache + k.one_minus_alpha * (g * g)
    return p - k.lr * g / (np.sqrt(cache) + k.eps)


RULE = Rule(
    "rmsprop_sq", id=5,
    options=(Option("lr"), Option("alpha"), Option("eps"), Option("unbracketed", False)),
    flag_names=("unbracketed",), flags=lambda hp: (hp.get("unbracketed", False),),
    states=(State("cache", signed=False),),
    scalars=SCALARS,
    host=lambda hp: {"lr": hp["lr"], "alpha": hp["alpha"],
                     "one_minus_alpha": 1.0 - hp["alpha"], "eps": hp["eps"]},
    penalties=False, update=update, reference=reference,
)
