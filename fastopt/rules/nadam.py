"""NAdam, Adam with Nesterov momentum (Dozat 2016; torch.optim.NAdam)."""

import math

import numpy as np

from . import _spec
from ._spec import ZERO, Front, Option, Rule, State, lerp_element, slots
from .adam import BETAS, DECOUPLED

DOC = """NAdam (Dozat), Adam with Nesterov momentum and momentum decay::

    t = t + 1 ;  mu_t = beta1 * (1 - 0.5 * 0.96**(t * momentum_decay))
    mu_product = mu_product * mu_t            (carried from step to step)
    decoupled_weight_decay: p = p * (1 - lr * weight_decay)   (and no coupled L2)
    m = lerp(m, g, 1 - beta1) ;  v = beta2 * v + (1 - beta2) * g * g
    denom = sqrt(v / (1 - beta2**t)) + eps
    p = p - lr * (1 - mu_t) / (1 - mu_product) * g / denom
    p = p - lr * mu_{t+1} / (1 - mu_product * mu_{t+1}) * m / denom
"""

SCALARS = ("lerp_weight", "lerp_complement", "lerp_small", "beta2", "one_minus_beta2",
           "bc2", "eps", "grad_coef", "avg_coef")
(LERP_WEIGHT, LERP_COMPLEMENT, LERP_SMALL, BETA2, ONE_MINUS_BETA2, BC2, EPS, GRAD_COEF,
 AVG_COEF) = slots(SCALARS)


def update(p, g, exp_avg, exp_avg_sq, s2, h, f):
    exp_avg = lerp_element(exp_avg, g, h[LERP_WEIGHT], h[LERP_COMPLEMENT],
                           h[LERP_SMALL] != h[ZERO])
    exp_avg_sq = h[BETA2] * exp_avg_sq + h[ONE_MINUS_BETA2] * g * g
    denom = math.sqrt(exp_avg_sq / h[BC2]) + h[EPS]
    p = p + h[GRAD_COEF] * g / denom
    p = p + h[AVG_COEF] * exp_avg / denom
    return p, exp_avg, exp_avg_sq, s2


def reference(p, g, exp_avg, exp_avg_sq, s2, k, f):
    exp_avg[...] = _spec.lerp(exp_avg, g, k)
    exp_avg_sq[...] = k.beta2 * exp_avg_sq + k.one_minus_beta2 * g * g
    denom = np.sqrt(exp_avg_sq / k.bc2) + k.eps
    p = p + k.grad_coef * g / denom
    return p + k.avg_coef * exp_avg / denom


def _mu(hp, step):
    return hp["beta1"] * (1.0 - 0.5 * 0.96 ** (step * hp["momentum_decay"]))


def _advance(hp):
    return {"mu_product": hp["mu_product"] * _mu(hp, hp["step"])}


def host(hp):
    step, lr = hp["step"], hp["lr"]
    mu, mu_next = _mu(hp, step), _mu(hp, step + 1)
    mu_product = hp["mu_product"] * mu
    return {**_spec.lerp_scalars(1.0 - hp["beta1"]), "beta2": hp["beta2"],
            "one_minus_beta2": 1.0 - hp["beta2"], "bc2": 1.0 - hp["beta2"] ** step,
            "eps": hp["eps"], "grad_coef": -lr * (1.0 - mu) / (1.0 - mu_product),
            "avg_coef": (-lr * mu_next) / (1.0 - mu_product * mu_next)}


RULE = Rule(
    "nadam", id=9,
    options=(Option("lr", 2e-3, _spec.LEARNING_RATE), BETAS,
             Option("eps", 1e-8, _spec.nonnegative("eps")),
             Option("weight_decay", 0.0, _spec.nonnegative("weight_decay")),
             Option("momentum_decay", 4e-3, _spec.nonnegative("momentum_decay")), DECOUPLED),
    context=("step",),
    states=(State("exp_avg"), State("exp_avg_sq", signed=False)),
    carried={"mu_product": 1.0}, advance=_advance,
    scalars=SCALARS, host=host,
    decoupled=lambda hp: hp["decoupled_weight_decay"],
    update=update, reference=reference,
    blame={"grad_coef": "lr", "avg_coef": "lr"},
    optimizers=(Front("NAdam", DOC),),
    functionals=(Front("nadam_", "NAdam, in place, for step ``step`` >= 1. ``mu_product`` "
                                 "is the product of the mu of the steps before (1 at the "
                                 "first); returns ``{'mu_product': ...}`` for the next "
                                 "step::\n" + DOC.split("::", 1)[1]),),
    bench={"nadam": ("NAdam", dict(lr=2e-3), dict(foreach=True))},
)
