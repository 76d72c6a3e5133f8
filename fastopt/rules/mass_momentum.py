"""Momentum as HIPS autograd's ``sgd`` writes it (``autograd.misc.optimizers``), for
:mod:`fastopt.compat.autograd`: ``v = mass*v - (1 - mass)*g ; x = x + step_size*v``."""

from ._spec import Option, Rule, State, slots

SCALARS = ("mass", "one_minus_mass", "step_size")
MASS, ONE_MINUS_MASS, STEP_SIZE = slots(SCALARS)


def update(p, g, velocity, s1, s2, h, f):
    velocity = h[MASS] * velocity - h[ONE_MINUS_MASS] * g
    p = p + h[STEP_SIZE] * velocity
    return p, velocity, s1, s2


def reference(p, g, velocity, s1, s2, k, f):
    velocity[...] = k.mass * velocity - k.one_minus_mass * g
    return p + k.step_size * velocity


RULE = Rule(
    "mass_momentum", id=15,
    options=(Option("lr"), Option("mass")),
    states=(State("velocity"),),
    scalars=SCALARS,
    host=lambda hp: {"mass": hp["mass"], "one_minus_mass": 1.0 - hp["mass"],
                     "step_size": hp["lr"]},
    penalties=False, update=update, reference=reference,
)
