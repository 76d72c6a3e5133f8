"""Adam as cs231n, nnfs and scikit-learn write it, ``(1 - beta2) * (g * g)`` (for
:mod:`fastopt.compat`): bias-corrected moments, ``p -= lr*(m/bc1) / (sqrt(v/bc2) + eps)``
(``corrected``: cs231n, nnfs), or scikit-learn's ``p -= lr_t*m / (sqrt(v) + eps)`` with
``lr_t = lr * sqrt(1 - beta2**t) / (1 - beta1**t)``. ``numpy_power``: the powers
``beta**t`` as ``np.power`` computes them (deeplearning.ai's notebook). ``incremental``:
Deep Learning from Scratch's ``m += (1 - beta1)*(g - m)``, ``v += (1 - beta2)*(g*g - v)``."""

import math

import numpy as np

from ._spec import Option, Rule, State, slots

SCALARS = ("beta1", "one_minus_beta1", "beta2", "one_minus_beta2", "lr", "bc1", "eps", "bc2")
BETA1, ONE_MINUS_BETA1, BETA2, ONE_MINUS_BETA2, LR, BC1, EPS, BC2 = slots(SCALARS)
CORRECTED, INCREMENTAL = 0, 1  # flags


def update(p, g, m, v, s2, h, f):
    if f[INCREMENTAL]:
        m = m + h[ONE_MINUS_BETA1] * (g - m)
        v = v + h[ONE_MINUS_BETA2] * (g * g - v)
    else:
        m = h[BETA1] * m + h[ONE_MINUS_BETA1] * g
        v = h[BETA2] * v + h[ONE_MINUS_BETA2] * (g * g)
    if f[CORRECTED]:
        p = p - h[LR] * (m / h[BC1]) / (math.sqrt(v / h[BC2]) + h[EPS])
    else:
        p = p - h[LR] * m / (math.sqrt(v) + h[EPS])
    return p, m, v, s2


def reference(p, g, m, v, s2, k, f):
    if f[INCREMENTAL]:
        m += k.one_minus_beta1 * (g - m)
        v += k.one_minus_beta2 * (g * g - v)
    else:
        m[...] = k.beta1 * m + k.one_minus_beta1 * g
        v[...] = k.beta2 * v + k.one_minus_beta2 * (g * g)
    if f[CORRECTED]:
        return p - k.lr * (m / k.bc1) / (np.sqrt(v / k.bc2) + k.eps)
    return p - k.lr * m / (np.sqrt(v) + k.eps)


def host(hp):
    # deeplearning.ai's notebook corrects with np.power, which is not always Python's **
    # (NumPy's own pow rounds differently for some steps).
    power = np.power if hp.get("numpy_power") else pow
    bc1, bc2 = 1.0 - power(hp["beta1"], hp["step"]), 1.0 - power(hp["beta2"], hp["step"])
    return {"beta1": hp["beta1"], "one_minus_beta1": 1.0 - hp["beta1"],
            "beta2": hp["beta2"], "one_minus_beta2": 1.0 - hp["beta2"],
            "lr": hp["lr"] if hp["corrected"] else hp["lr"] * math.sqrt(bc2) / bc1,
            "bc1": float(bc1), "eps": hp["eps"], "bc2": float(bc2)}


RULE = Rule(
    "adam_sq", id=6,
    options=(Option("lr"), Option("beta1"), Option("beta2"), Option("eps"),
             Option("corrected"), Option("numpy_power", False), Option("incremental", False)),
    context=("step",),
    states=(State("m"), State("v", signed=False)),
    scalars=SCALARS, host=host,
    flag_names=("corrected", "incremental"),
    flags=lambda hp: (hp["corrected"], hp.get("incremental", False)),
    penalties=False, update=update, reference=reference,
)
