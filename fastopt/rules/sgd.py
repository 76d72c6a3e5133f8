"""SGD with optional (Nesterov) momentum and dampening (torch.optim.SGD)."""

from . import _spec
from ._spec import ZERO, Front, Option, Rule, State, slots

DOC = """Stochastic gradient descent with optional momentum, dampening and Nesterov::

    g = g + weight_decay * p + l1 * sign(p)        (-g first when maximize)
    buf = g (first step) ;  buf = momentum * buf + (1 - dampening) * g
    g = g + momentum * buf  if nesterov else  buf   (with momentum)
    p = p - lr * g
"""

SCALARS = ("lr", "momentum", "dampened", "first")
LR, MOMENTUM, DAMPENED, FIRST = slots(SCALARS)
HAS_MOMENTUM, NESTEROV = 0, 1  # flags


def update(p, g, buf, s1, s2, h, f):
    if f[HAS_MOMENTUM]:
        momentum = h[MOMENTUM]
        if h[FIRST] != h[ZERO]:
            buf = g
        else:
            buf = momentum * buf + h[DAMPENED] * g
        if f[NESTEROV]:
            g = g + momentum * buf
        else:
            g = buf
    p = p - h[LR] * g
    return p, buf, s1, s2


def reference(p, g, buf, s1, s2, k, f):
    if f[HAS_MOMENTUM]:
        if k.first != 0:
            buf[...] = g
        else:
            buf[...] = k.momentum * buf + k.dampened * g
        g = g + k.momentum * buf if f[NESTEROV] else buf
    return p - k.lr * g


def _validate(hp):
    if hp["nesterov"] and (hp["momentum"] <= 0 or hp["dampening"] != 0):
        raise ValueError("nesterov momentum requires a momentum > 0 and zero dampening")


RULE = Rule(
    "sgd", id=0,
    options=(Option("lr", 1e-3, _spec.LEARNING_RATE),
             Option("momentum", 0.0, _spec.nonnegative("momentum")),
             Option("dampening", 0.0, _spec.real("dampening")),
             Option("nesterov", False, _spec.boolean("nesterov")),
             Option("weight_decay", 0.0, _spec.nonnegative("weight_decay"))),
    context=("first",),
    states=(State("momentum_buffer", when=lambda hp: hp["momentum"] != 0),),
    scalars=SCALARS,
    host=lambda hp: {"lr": hp["lr"], "momentum": hp["momentum"],
                     "dampened": 1.0 - hp["dampening"], "first": 1.0 if hp["first"] else 0.0},
    flag_names=("has_momentum", "nesterov"),
    flags=lambda hp: (hp["momentum"] != 0, hp["nesterov"]),
    update=update, reference=reference, validate=_validate,
    blame={"dampened": "dampening"},
    optimizers=(Front("SGD", DOC),),
    functionals=(Front("sgd_", "SGD, in place (``first``: the step that seeds the "
                               "momentum buffer)::\n" + DOC.split("::", 1)[1]),),
    bench={"sgd_momentum": ("SGD", dict(lr=1e-3, momentum=0.9), dict(fused=True))},
)
