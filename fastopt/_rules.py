"""The four update rules, described once for every backend.

A rule ties together the name of its per-element function in
:func:`fastopt._math.element_functions`, how its
per-step scalars are packed, which structural flags select a compiled variant, and
which named state array sits in each of the kernel's three state slots.
Backends receive a rule's name and its named hyperparameters (the keyword arguments
of the matching function in :mod:`fastopt.reference`), and nothing else.
"""

from collections.abc import Callable
from dataclasses import dataclass

from . import _math


@dataclass(frozen=True)
class Rule:
    """One optimizer update rule (see :mod:`fastopt._math` for the calling convention)."""

    name: str
    pack: Callable  # (dtype, hyper kwargs) -> hyper vector in dtype
    flags: Callable  # hyper kwargs -> tuple of _math.FLAGS_LEN structural booleans
    slots: Callable  # flags -> three state names (None where the slot is unused)


def _sgd_pack(dtype, kw):
    return _math.sgd_hyper(
        dtype, lr=kw["lr"], momentum=kw["momentum"], dampening=kw["dampening"],
        first=kw["first"], weight_decay=kw["weight_decay"], l1=kw["l1"],
        maximize=kw["maximize"], grad_scale=kw["grad_scale"])


def _rmsprop_pack(dtype, kw):
    return _math.rmsprop_hyper(
        dtype, lr=kw["lr"], alpha=kw["alpha"], eps=kw["eps"], momentum=kw["momentum"],
        weight_decay=kw["weight_decay"], l1=kw["l1"], maximize=kw["maximize"],
        grad_scale=kw["grad_scale"])


def _adam_pack(dtype, kw):
    return _math.adam_hyper(
        dtype, step=kw["step"], lr=kw["lr"], beta1=kw["beta1"], beta2=kw["beta2"],
        eps=kw["eps"], weight_decay=kw["weight_decay"], decoupled=kw["decoupled"],
        l1=kw["l1"], maximize=kw["maximize"], grad_scale=kw["grad_scale"])


def _adagrad_pack(dtype, kw):
    return _math.adagrad_hyper(
        dtype, step=kw["step"], lr=kw["lr"], lr_decay=kw["lr_decay"], eps=kw["eps"],
        weight_decay=kw["weight_decay"], l1=kw["l1"], maximize=kw["maximize"],
        grad_scale=kw["grad_scale"])


def _scaled(kw):
    return kw["grad_scale"] is not None


def _decayed(kw):
    return kw["weight_decay"] != 0 or kw["l1"] != 0


RULES = {
    "sgd": Rule(
        "sgd", _sgd_pack,
        flags=lambda kw: (kw["momentum"] != 0, bool(kw["nesterov"]), _scaled(kw),
                          _decayed(kw)),
        slots=lambda f: ("momentum_buffer" if f[0] else None, None, None)),
    "rmsprop": Rule(
        "rmsprop", _rmsprop_pack,
        flags=lambda kw: (bool(kw["centered"]), kw["momentum"] > 0, _scaled(kw),
                          _decayed(kw)),
        slots=lambda f: ("square_avg", "grad_avg" if f[0] else None,
                         "momentum_buffer" if f[1] else None)),
    "adam": Rule(
        "adam", _adam_pack,
        flags=lambda kw: (bool(kw["amsgrad"]), False, _scaled(kw), _decayed(kw)),
        slots=lambda f: ("exp_avg", "exp_avg_sq", "max_exp_avg_sq" if f[0] else None)),
    "adagrad": Rule(
        "adagrad", _adagrad_pack,
        flags=lambda kw: (False, False, _scaled(kw), _decayed(kw)),
        slots=lambda f: ("sum", None, None)),
}


# The rules of fastopt.compat's adapters (other libraries' maths and rounding).
# Their hyper kwargs: velocity (lr, momentum, nesterov, grad_scale), rmsprop_sq (lr,
# alpha, eps, grad_scale), adam_sq (step, lr, beta1, beta2, eps, corrected, grad_scale).
RULES.update({
    "velocity": Rule(
        "velocity",
        lambda dtype, kw: _math.velocity_hyper(dtype, lr=kw["lr"], momentum=kw["momentum"],
                                               grad_scale=kw["grad_scale"]),
        flags=lambda kw: (bool(kw["nesterov"]), False, _scaled(kw), False),
        slots=lambda f: ("velocity", None, None)),
    "rmsprop_sq": Rule(
        "rmsprop_sq",
        lambda dtype, kw: _math.rmsprop_sq_hyper(dtype, lr=kw["lr"], alpha=kw["alpha"],
                                                 eps=kw["eps"], grad_scale=kw["grad_scale"]),
        flags=lambda kw: (False, False, _scaled(kw), False),
        slots=lambda f: ("cache", None, None)),
    "adam_sq": Rule(
        "adam_sq",
        lambda dtype, kw: _math.adam_sq_hyper(
            dtype, step=kw["step"], lr=kw["lr"], beta1=kw["beta1"], beta2=kw["beta2"],
            eps=kw["eps"], corrected=kw["corrected"], grad_scale=kw["grad_scale"]),
        flags=lambda kw: (bool(kw["corrected"]), False, _scaled(kw), False),
        slots=lambda f: ("m", "v", None)),
})
