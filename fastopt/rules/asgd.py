"""Averaged SGD (Polyak & Juditsky 1992; torch.optim.ASGD)."""

from . import _spec
from ._spec import ONE, Front, Option, Rule, State, slots

DOC = """Averaged SGD (Polyak & Juditsky); ``ax`` is the running average of the params::

    t = t + 1
    p = p * (1 - lambd * eta) ;  p = p - eta * g
    ax = ax + (p - ax) * mu   (ax = p while mu is 1)
    then, for the next step:
    eta = lr / (1 + lambd * lr * t)**alpha ;  mu = 1 / max(1, t - t0)
    (eta starts at lr, mu at 1)
"""

SCALARS = ("eta", "shrink", "mu")
ETA, SHRINK, MU = slots(SCALARS)


def update(p, g, ax, s1, s2, h, f):
    p = p * h[SHRINK]
    p = p - h[ETA] * g
    if h[MU] != h[ONE]:
        ax = ax + (p - ax) * h[MU]
    else:
        ax = p
    return p, ax, s1, s2


def reference(p, g, ax, s1, s2, k, f):
    p = p * k.shrink - k.eta * g
    ax[...] = ax + (p - ax) * k.mu if k.mu != 1 else p
    return p


def _advance(hp):
    lr, step = hp["lr"], hp["step"]
    return {"eta": lr / ((1.0 + hp["lambd"] * lr * step) ** hp["alpha"]),
            "mu": 1.0 / max(1.0, step - hp["t0"])}


RULE = Rule(
    "asgd", id=11,
    options=(Option("lr", 1e-2, _spec.LEARNING_RATE),
             Option("lambd", 1e-4, _spec.nonnegative("lambd")),
             Option("alpha", 0.75, _spec.real("alpha")), Option("t0", 1e6, _spec.real("t0")),
             Option("weight_decay", 0.0, _spec.nonnegative("weight_decay"))),
    context=("step",),
    states=(State("ax"),),
    carried={"eta": lambda hp: hp["lr"], "mu": 1.0}, advance=_advance,
    scalars=SCALARS,
    host=lambda hp: {"eta": hp["eta"], "shrink": 1.0 - hp["lambd"] * hp["eta"],
                     "mu": hp["mu"]},
    update=update, reference=reference, blame={"shrink": "lambd * eta"},
    optimizers=(Front("ASGD", DOC),),
    functionals=(Front("asgd_", "Averaged SGD, in place, for step ``step`` >= 1, with this "
                                "step's ``eta`` (None: lr) and ``mu``; returns ``{'eta': "
                                "..., 'mu': ...}`` for the next step::\n"
                       + DOC.split("::", 1)[1]),),
    bench={"asgd": ("ASGD", dict(lr=1e-2), dict(foreach=True))},
)
