"""The update functions of the Deep Learning Specialization (deeplearning.ai, Course 2,
"Optimization methods") on fused kernels.

Same names, signatures, defaults, dictionaries and maths as the notebook; each call
updates every layer in one fused multi-tensor kernel, in place, and returns what the
notebook returns. ``parameters`` holds ``W1, b1, ..., WL, bL``; ``grads`` holds
``dW1, db1, ...``; the moment dictionaries ``v`` and ``s`` are keyed like ``grads``.
``t`` (Adam's step, from 1) is the caller's, as in the notebook::

    gd:        W = W - learning_rate * dW
    momentum:  v = beta * v + (1 - beta) * dW ;  W = W - learning_rate * v
    adam:      v = beta1 * v + (1 - beta1) * dW ;  v_corrected = v / (1 - beta1**t)
               s = beta2 * s + (1 - beta2) * dW**2 ;  s_corrected = s / (1 - beta2**t)
               W = W - learning_rate * v_corrected / (sqrt(s_corrected) + epsilon)

Float64 results are bit-identical to the notebook's code (same operations, same
order). One-line change: ``from fastopt.compat.deeplearning_ai import
update_parameters_with_adam`` (and the others) in place of the notebook's definitions.
"""

from collections.abc import Mapping

import numpy as np

from .. import _validate
from ..functional import run_rule


def _layers(parameters):
    """The number of layers L of ``parameters`` (W1, b1, ..., WL, bL)."""
    if not isinstance(parameters, Mapping):
        raise TypeError(f"parameters must be a dict of W1, b1, ...; got "
                        f"{type(parameters).__name__}")
    count = len(parameters) // 2
    missing = [k for layer in range(1, count + 1) for k in (f"W{layer}", f"b{layer}")
               if k not in parameters]
    if missing or len(parameters) != 2 * count:
        raise ValueError(f"parameters must hold W1, b1, ..., WL, bL; missing {missing}")
    return count


def _keys(count):
    return [k for layer in range(1, count + 1) for k in (f"W{layer}", f"b{layer}")]


def _pick(mapping, keys, what):
    missing = [k for k in keys if k not in mapping]
    if missing:
        raise ValueError(f"{what} lacks {missing}")
    return [mapping[k] for k in keys]


def update_parameters_with_gd(parameters, grads, learning_rate):
    """One step of gradient descent, in place: ``W = W - learning_rate * dW`` for every
    layer. Returns ``parameters``."""
    keys = _keys(_layers(parameters))
    learning_rate = _validate.real(learning_rate, "learning_rate")
    run_rule("sgd", _pick(parameters, keys, "parameters"),
             _pick(grads, ["d" + k for k in keys], "grads"), {}, dict(
                 lr=learning_rate, momentum=0.0, dampening=0.0, nesterov=False,
                 first=False, weight_decay=0.0, l1=0.0, maximize=False, grad_scale=None))
    return parameters


def initialize_velocity(parameters):
    """``v``: zeros like each ``dW``/``db``, keyed ``dW1, db1, ...``."""
    return {"d" + k: np.zeros(parameters[k].shape) for k in _keys(_layers(parameters))}


def update_parameters_with_momentum(parameters, grads, v, beta, learning_rate):
    """One step of momentum, in place: ``v = beta*v + (1 - beta)*dW ; W = W -
    learning_rate*v``. Returns ``(parameters, v)``."""
    keys = _keys(_layers(parameters))
    grad_keys = ["d" + k for k in keys]
    params, grad_list = _pick(parameters, keys, "parameters"), _pick(grads, grad_keys, "grads")
    velocities = _pick(v, grad_keys, "v")
    beta = _validate.real(beta, "beta")
    learning_rate = _validate.real(learning_rate, "learning_rate")
    if beta == 0:  # SGD's momentum buffer exists only with a momentum: v is just dW
        update_parameters_with_gd(parameters, grads, learning_rate)
        for velocity, grad in zip(velocities, grad_list):
            np.copyto(velocity, grad)
        return parameters, v
    # torch's dampened momentum is the notebook's: buf = beta*buf + (1 - beta)*g.
    run_rule("sgd", params, grad_list, {"momentum_buffer": velocities}, dict(
        lr=learning_rate, momentum=beta, dampening=beta, nesterov=False, first=False,
        weight_decay=0.0, l1=0.0, maximize=False, grad_scale=None))
    return parameters, v


def initialize_adam(parameters):
    """``(v, s)``: zeros like each ``dW``/``db``, keyed ``dW1, db1, ...``."""
    return initialize_velocity(parameters), initialize_velocity(parameters)


class _Corrected(Mapping):
    """The bias-corrected moments ``moments[k] / (1 - beta**t)``, computed when read
    (the update itself never materialises them)."""

    def __init__(self, moments, correction):
        self._moments, self._correction = moments, correction

    def __getitem__(self, key):
        return self._moments[key] / self._correction

    def __iter__(self):
        return iter(self._moments)

    def __len__(self):
        return len(self._moments)


def update_parameters_with_adam(parameters, grads, v, s, t, learning_rate=0.01, beta1=0.9,
                                beta2=0.999, epsilon=1e-8):
    """One Adam step number ``t`` (>= 1), in place (see the module docstring). Returns
    ``(parameters, v, s, v_corrected, s_corrected)``; the corrected moments are
    computed when read."""
    keys = _keys(_layers(parameters))
    grad_keys = ["d" + k for k in keys]
    if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 1:
        raise ValueError(f"t must be an integer >= 1 (the step being taken), got {t!r}")
    learning_rate, beta1, beta2, epsilon = (
        _validate.real(value, name) for value, name in ((learning_rate, "learning_rate"),
                                                        (beta1, "beta1"), (beta2, "beta2"),
                                                        (epsilon, "epsilon")))
    run_rule("adam_sq", _pick(parameters, keys, "parameters"),
             _pick(grads, grad_keys, "grads"),
             {"m": _pick(v, grad_keys, "v"), "v": _pick(s, grad_keys, "s")}, dict(
                 step=int(t), lr=learning_rate, beta1=beta1, beta2=beta2, eps=epsilon,
                 corrected=True, numpy_power=True, grad_scale=None))
    return (parameters, v, s, _Corrected(v, 1 - np.power(beta1, t)),
            _Corrected(s, 1 - np.power(beta2, t)))


def update_lr(learning_rate0, epoch_num, decay_rate):
    """Learning-rate decay: ``learning_rate0 / (1 + decay_rate * epoch_num)``, as the
    notebook computes it."""
    return 1 / (1 + decay_rate * epoch_num) * learning_rate0


def schedule_lr_decay(learning_rate0, epoch_num, decay_rate, time_interval=1000):
    """Decay every ``time_interval`` epochs: ``learning_rate0 / (1 + decay_rate *
    floor(epoch_num / time_interval))``."""
    return 1 / (1 + decay_rate * np.floor(epoch_num / time_interval)) * learning_rate0
