"""Adam and AdamW, optionally AMSGrad (torch.optim.Adam, torch.optim.AdamW)."""

import math

import numpy as np

from . import _spec
from ._spec import Front, Option, Rule, State, slots

DOC = """Adam (Kingma & Ba), optionally AMSGrad, with coupled L2 and L1::

    t = t + 1
    m = beta1 * m + (1 - beta1) * g ;  v = beta2 * v + (1 - beta2) * g * g
    vmax = max(vmax, v), used in place of v   (amsgrad)
    p = p - (lr / (1 - beta1**t)) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)
"""

DOC_W = """AdamW (Loshchilov & Hutter): Adam with decoupled weight decay::

    t = t + 1 ;  p = p * (1 - lr * weight_decay)
    then the Adam update, without coupled L2
"""

SCALARS = ("beta1", "one_minus_beta1", "beta2", "one_minus_beta2", "step_size",
           "bc2_sqrt", "eps")
BETA1, ONE_MINUS_BETA1, BETA2, ONE_MINUS_BETA2, STEP_SIZE, BC2_SQRT, EPS = slots(SCALARS)
AMSGRAD = 0  # flag


def update(p, g, exp_avg, exp_avg_sq, max_exp_avg_sq, h, f):
    exp_avg = h[BETA1] * exp_avg + h[ONE_MINUS_BETA1] * g
    exp_avg_sq = h[BETA2] * exp_avg_sq + h[ONE_MINUS_BETA2] * g * g
    second = exp_avg_sq
    if f[AMSGRAD]:
        # torch.maximum: NaN wins (a NaN in exp_avg_sq reaches the max here).
        if not (max_exp_avg_sq >= exp_avg_sq):
            max_exp_avg_sq = exp_avg_sq
        second = max_exp_avg_sq
    denom = math.sqrt(second) / h[BC2_SQRT] + h[EPS]
    p = p - h[STEP_SIZE] * exp_avg / denom
    return p, exp_avg, exp_avg_sq, max_exp_avg_sq


def reference(p, g, exp_avg, exp_avg_sq, max_exp_avg_sq, k, f):
    exp_avg[...] = k.beta1 * exp_avg + k.one_minus_beta1 * g
    exp_avg_sq[...] = k.beta2 * exp_avg_sq + k.one_minus_beta2 * g * g
    second = exp_avg_sq
    if f[AMSGRAD]:
        np.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
        second = max_exp_avg_sq
    return p - k.step_size * exp_avg / (np.sqrt(second) / k.bc2_sqrt + k.eps)


def host(hp):
    step = hp["step"]
    return {"beta1": hp["beta1"], "one_minus_beta1": 1.0 - hp["beta1"],
            "beta2": hp["beta2"], "one_minus_beta2": 1.0 - hp["beta2"],
            "step_size": hp["lr"] / (1.0 - hp["beta1"] ** step),
            "bc2_sqrt": math.sqrt(1.0 - hp["beta2"] ** step), "eps": hp["eps"]}


BETAS = Option("betas", (0.9, 0.999), split=(
    ("beta1", _spec.unit_interval("beta parameter at index 0 (beta1)")),
    ("beta2", _spec.unit_interval("beta parameter at index 1 (beta2)"))))
DECOUPLED = Option("decoupled_weight_decay", False, _spec.boolean("decoupled_weight_decay"))

RULE = Rule(
    "adam", id=2,
    options=(Option("lr", 1e-3, _spec.LEARNING_RATE), BETAS,
             Option("eps", 1e-8, _spec.nonnegative("eps")),
             Option("weight_decay", 0.0, _spec.nonnegative("weight_decay")),
             Option("amsgrad", False, _spec.boolean("amsgrad")), DECOUPLED),
    context=("step",),
    states=(State("exp_avg"), State("exp_avg_sq", signed=False),
            State("max_exp_avg_sq", signed=False, when=lambda hp: hp["amsgrad"])),
    scalars=SCALARS, host=host,
    flag_names=("amsgrad",), flags=lambda hp: (hp["amsgrad"],),
    decoupled=lambda hp: hp["decoupled_weight_decay"],
    update=update, reference=reference,
    blame={"step_size": "lr (as lr / (1 - beta1**step))"},
    optimizers=(Front("Adam", DOC, fixed=dict(decoupled_weight_decay=False)),
                Front("AdamW", DOC_W, defaults=dict(weight_decay=1e-2),
                      fixed=dict(decoupled_weight_decay=True))),
    functionals=(
        Front("adam_", "Adam (AdamW with ``decoupled_weight_decay``), in place, for step "
                       "``step`` >= 1::\n\n"
                       "    AdamW: p = p * (1 - lr * weight_decay)   (and no coupled L2)\n"
              + DOC.split("t = t + 1\n", 1)[1]),
        Front("adamw_", "AdamW, in place: :func:`adam_` with decoupled weight decay "
                        "``p = p * (1 - lr * weight_decay)`` applied before the moments.",
              defaults=dict(weight_decay=1e-2), fixed=dict(decoupled_weight_decay=True))),
    bench={"adam": ("Adam", dict(lr=1e-3), dict(fused=True)),
           "amsgrad": ("Adam", dict(lr=1e-3, amsgrad=True), dict(fused=True)),
           "adamw": ("AdamW", dict(lr=1e-3), dict(fused=True))},
)
