"""Adamax, Adam with the infinity norm (Kingma & Ba, section 7; torch.optim.Adamax)."""

import numpy as np

from . import _spec
from ._spec import ZERO, Front, Option, Rule, State, lerp_element, slots
from .adam import BETAS

DOC = """Adamax (Kingma & Ba), Adam with the infinity norm::

    t = t + 1
    m = lerp(m, g, 1 - beta1)             (torch's lerp: m + (1 - beta1) * (g - m))
    u = max(beta2 * u, |g| + eps)
    p = p - (lr / (1 - beta1**t)) * m / u
"""

SCALARS = ("lerp_weight", "lerp_complement", "lerp_small", "beta2", "eps", "clr")
LERP_WEIGHT, LERP_COMPLEMENT, LERP_SMALL, BETA2, EPS, CLR = slots(SCALARS)


def update(p, g, exp_avg, exp_inf, s2, h, f):
    exp_avg = lerp_element(exp_avg, g, h[LERP_WEIGHT], h[LERP_COMPLEMENT],
                           h[LERP_SMALL] != h[ZERO])
    a = h[BETA2] * exp_inf
    b = abs(g) + h[EPS]
    exp_inf = a if (a >= b or a != a) else b  # torch.maximum: NaN wins
    p = p - h[CLR] * exp_avg / exp_inf
    return p, exp_avg, exp_inf, s2


def reference(p, g, exp_avg, exp_inf, s2, k, f):
    exp_avg[...] = _spec.lerp(exp_avg, g, k)
    np.maximum(k.beta2 * exp_inf, np.abs(g) + k.eps, out=exp_inf)
    return p - k.clr * exp_avg / exp_inf


RULE = Rule(
    "adamax", id=8,
    options=(Option("lr", 2e-3, _spec.LEARNING_RATE), BETAS,
             Option("eps", 1e-8, _spec.nonnegative("eps")),
             Option("weight_decay", 0.0, _spec.nonnegative("weight_decay"))),
    context=("step",),
    states=(State("exp_avg"), State("exp_inf", signed=False)),
    scalars=SCALARS,
    host=lambda hp: {**_spec.lerp_scalars(1.0 - hp["beta1"]), "beta2": hp["beta2"],
                     "eps": hp["eps"], "clr": hp["lr"] / (1.0 - hp["beta1"] ** hp["step"])},
    update=update, reference=reference, blame={"clr": "lr (as lr / (1 - beta1**step))"},
    optimizers=(Front("Adamax", DOC),),
    functionals=(Front("adamax_", "Adamax, in place, for step ``step`` >= 1::\n"
                       + DOC.split("::", 1)[1].replace("t = t + 1\n    ", "")
                       .replace("beta1**t", "beta1**step")),),
    bench={"adamax": ("Adamax", dict(lr=2e-3), dict(foreach=True))},
)
