"""RAdam, Adam with a rectified adaptive learning rate (Liu et al. 2019;
torch.optim.RAdam)."""

import math

import numpy as np

from . import _spec
from ._spec import ZERO, Front, Option, Rule, State, lerp_element, slots
from .adam import BETAS, DECOUPLED

DOC = """RAdam (Liu et al.), Adam whose adaptive term is switched on, and rectified, once
its variance is tractable::

    t = t + 1
    decoupled_weight_decay: p = p * (1 - lr * weight_decay)   (and no coupled L2)
    m = lerp(m, g, 1 - beta1) ;  v = beta2 * v + (1 - beta2) * g * g
    rho_inf = 2 / (1 - beta2) - 1 ;  rho_t = rho_inf - 2 t beta2**t / (1 - beta2**t)
    rho_t > 5:  r = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
                p = p - m / (1 - beta1**t) * lr * (sqrt(1 - beta2**t) / (sqrt(v) + eps)) * r
    otherwise:  p = p - m / (1 - beta1**t) * lr
"""

SCALARS = ("lerp_weight", "lerp_complement", "lerp_small", "beta2", "one_minus_beta2",
           "bc1", "lr", "bc2_sqrt", "eps", "rect", "adaptive")
(LERP_WEIGHT, LERP_COMPLEMENT, LERP_SMALL, BETA2, ONE_MINUS_BETA2, BC1, LR, BC2_SQRT, EPS,
 RECT, ADAPTIVE) = slots(SCALARS)


def update(p, g, exp_avg, exp_avg_sq, s2, h, f):
    exp_avg = lerp_element(exp_avg, g, h[LERP_WEIGHT], h[LERP_COMPLEMENT],
                           h[LERP_SMALL] != h[ZERO])
    exp_avg_sq = h[BETA2] * exp_avg_sq + h[ONE_MINUS_BETA2] * g * g
    step = exp_avg / h[BC1] * h[LR]
    if h[ADAPTIVE] != h[ZERO]:
        step = step * (h[BC2_SQRT] / (math.sqrt(exp_avg_sq) + h[EPS])) * h[RECT]
    p = p - step
    return p, exp_avg, exp_avg_sq, s2


def reference(p, g, exp_avg, exp_avg_sq, s2, k, f):
    exp_avg[...] = _spec.lerp(exp_avg, g, k)
    exp_avg_sq[...] = k.beta2 * exp_avg_sq + k.one_minus_beta2 * g * g
    step = exp_avg / k.bc1 * k.lr
    if k.adaptive != 0:
        step = step * (k.bc2_sqrt / (np.sqrt(exp_avg_sq) + k.eps)) * k.rect
    return p - step


def host(hp):
    step, beta2 = hp["step"], hp["beta2"]
    bc2 = 1.0 - beta2 ** step
    rho_inf = 2.0 / (1.0 - beta2) - 1.0
    rho_t = rho_inf - 2.0 * step * (beta2 ** step) / bc2
    adaptive = rho_t > 5.0
    rect = (((rho_t - 4.0) * (rho_t - 2.0) * rho_inf
             / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t)) ** 0.5) if adaptive else 1.0
    return {**_spec.lerp_scalars(1.0 - hp["beta1"]), "beta2": beta2, "one_minus_beta2": 1.0 - beta2,
            "bc1": 1.0 - hp["beta1"] ** step, "lr": hp["lr"], "bc2_sqrt": bc2 ** 0.5,
            "eps": hp["eps"], "rect": rect, "adaptive": 1.0 if adaptive else 0.0}


RULE = Rule(
    "radam", id=10,
    options=(Option("lr", 1e-3, _spec.LEARNING_RATE), BETAS,
             Option("eps", 1e-8, _spec.nonnegative("eps")),
             Option("weight_decay", 0.0, _spec.nonnegative("weight_decay")), DECOUPLED),
    context=("step",),
    states=(State("exp_avg"), State("exp_avg_sq", signed=False)),
    scalars=SCALARS, host=host,
    decoupled=lambda hp: hp["decoupled_weight_decay"],
    update=update, reference=reference,
    optimizers=(Front("RAdam", DOC),),
    functionals=(Front("radam_", "RAdam, in place, for step ``step`` = t >= 1::\n"
                       + DOC.split("::", 1)[1].replace("    t = t + 1\n", "")),),
    bench={"radam": ("RAdam", dict(lr=1e-3), dict(foreach=True))},
)
