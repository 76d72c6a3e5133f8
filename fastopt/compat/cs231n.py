"""The cs231n assignments' update rules and batch-norm layers on fused kernels.

A drop-in for ``cs231n/optim.py`` and the batch-norm functions of ``cs231n/layers.py``:
the same names, signatures, config keys and defaults, and their maths::

    sgd:           w -= learning_rate * dw
    sgd_momentum:  v = momentum * v - learning_rate * dw ;  w += v
    rmsprop:       cache = decay_rate * cache + (1 - decay_rate) * dw**2
                   w -= learning_rate * dw / (sqrt(cache) + epsilon)
    adam:          t += 1 ;  m = beta1 * m + (1 - beta1) * dw
                   v = beta2 * v + (1 - beta2) * dw**2
                   w -= learning_rate * (m / (1 - beta1**t)) / (sqrt(v / (1 - beta2**t)) + epsilon)

One-line change: ``Solver(model, data, update_rule=fastopt.compat.cs231n.adam, ...)``
(or ``from fastopt.compat.cs231n import adam``). ``w`` is updated in place and
returned (the Solver stores what is returned, as with the NumPy rules); the state
arrays (``velocity``, ``cache``, ``m``, ``v``) live in ``config`` as in the assignment,
and ``config["learning_rate"]`` is read on every call, so the Solver's per-epoch decay
applies.

Batch norm follows the assignment, not torch: ``bn_param["mode"]`` is ``"train"`` or
``"test"``, ``momentum`` (0.9) weights the *old* running value, the running variance is
the biased one, and running statistics start at zeros and are written back into
``bn_param``. Statistics are accumulated in float64 (the assignment's NumPy code sums
in the array's dtype), so float32 results agree to rounding.
"""

import operator
from types import MappingProxyType

import numpy as np

from .. import _validate
from .. import batchnorm as _bn
from ..functional import run_at
from ..rules import RULES


def _config(config, defaults):
    config = {} if config is None else config
    if not config.keys() >= defaults.keys():
        for key, value in defaults.items():
            config.setdefault(key, value)
    for key in defaults:
        if key != "t":
            _validate.real(config[key], key)
    return config


# id(config) -> (a rule's defaults, the config's values of their keys, the hyper dict
# made from them). The values are held, so no other object can take their ids; the
# defaults tell the rules apart when one config serves two of them.
_HYPERS = {}
_HYPERS_MAX = 256


def _settings(config, defaults, hyper_of):
    """``(config, hyper)``: the config (a new dict for None) with ``defaults`` filled
    in and checked, and ``hyper_of(config)``. While a config holds the very same float
    objects as at its last call (a training loop's config between learning-rate
    decays), the checks are not made again and the last call's hyperparameters are
    given back, the very read-only view, whose packed scalars :func:`run_at` then
    reuses."""
    if config is None:
        config = _config(None, defaults)
        return config, hyper_of(config)
    kept = _HYPERS.get(id(config))
    if kept is not None and kept[0] is defaults \
            and all(map(operator.is_, map(config.get, defaults), kept[1])):
        return config, kept[2]
    config = _config(config, defaults)
    values = tuple(map(config.get, defaults))
    hyper = MappingProxyType(hyper_of(config))  # read-only: run_at may keep its scalars
    if all(type(value) is float for value in values):
        if len(_HYPERS) >= _HYPERS_MAX:
            _HYPERS.clear()
        _HYPERS[id(config)] = defaults, values, hyper
    return config, hyper


def _state(config, key, w):
    state = config.get(key)
    if state is None:
        state = config[key] = np.zeros_like(w)
    return state


def _variant(rule, **hyper):
    """The kernel variant of ``rule`` with these options and no grad_scale (the
    adapters' options are fixed, so it is found once: :func:`run_at`)."""
    return RULES[rule].kernel_variant(dict(hyper, grad_scale=None))


_SGD = {"learning_rate": 1e-2}
_SGD_HYPER = dict(momentum=0.0, dampening=0.0, nesterov=False, first=False,
                  weight_decay=0.0, l1=0.0, maximize=False, grad_scale=None)
_SGD_VARIANT = _variant("sgd", **_SGD_HYPER)


def _sgd_hyper(config):
    return dict(_SGD_HYPER, lr=config["learning_rate"])


def sgd(w, dw, config=None):
    """Vanilla SGD, in place: ``w -= learning_rate * dw``. config: learning_rate (1e-2)."""
    config, hyper = _settings(config, _SGD, _sgd_hyper)
    run_at(id(config), "sgd", (), (w,), (dw,), hyper, _SGD_VARIANT)
    return w, config


_MOMENTUM = {"learning_rate": 1e-2, "momentum": 0.9}
_MOMENTUM_VARIANT = _variant("velocity", nesterov=False)
_VELOCITY = ("velocity",)


def _momentum_hyper(config):
    return {"lr": config["learning_rate"], "momentum": config["momentum"],
            "nesterov": False, "grad_scale": None}


def sgd_momentum(w, dw, config=None):
    """SGD with velocity-form momentum, in place: ``v = momentum*v - learning_rate*dw ;
    w += v``. config: learning_rate (1e-2), momentum (0.9), velocity (zeros)."""
    config, hyper = _settings(config, _MOMENTUM, _momentum_hyper)
    velocity = _state(config, "velocity", w)
    run_at(id(config), "velocity", _VELOCITY, (w, velocity), (dw,), hyper,
           _MOMENTUM_VARIANT)
    return w, config


_RMSPROP = {"learning_rate": 1e-2, "decay_rate": 0.99, "epsilon": 1e-8}
_RMSPROP_VARIANT = _variant("rmsprop_sq")
_CACHE = ("cache",)


def _rmsprop_hyper(config):
    return {"lr": config["learning_rate"], "alpha": config["decay_rate"],
            "eps": config["epsilon"], "grad_scale": None}


def rmsprop(w, dw, config=None):
    """RMSProp, in place: ``cache = decay_rate*cache + (1-decay_rate)*dw**2 ;
    w -= learning_rate*dw / (sqrt(cache) + epsilon)``. config: learning_rate (1e-2),
    decay_rate (0.99), epsilon (1e-8), cache (zeros)."""
    config, hyper = _settings(config, _RMSPROP, _rmsprop_hyper)
    cache = _state(config, "cache", w)
    run_at(id(config), "rmsprop_sq", _CACHE, (w, cache), (dw,), hyper, _RMSPROP_VARIANT)
    return w, config


_ADAM = {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "t": 0}
_ADAM_VARIANT = _variant("adam_sq", corrected=True)
_MOMENTS = ("m", "v")


def adam(w, dw, config=None):
    """Adam with bias-corrected moments, in place (see the module docstring).
    config: learning_rate (1e-3), beta1 (0.9), beta2 (0.999), epsilon (1e-8),
    m and v (zeros), t (0, incremented before the update)."""
    config = _config(config, _ADAM)
    m, v = _state(config, "m", w), _state(config, "v", w)
    t = int(config["t"]) + 1
    run_at(id(config), "adam_sq", _MOMENTS, (w, m, v), (dw,), {
        "step": t, "lr": config["learning_rate"], "beta1": config["beta1"],
        "beta2": config["beta2"], "eps": config["epsilon"], "corrected": True,
        "grad_scale": None}, _ADAM_VARIANT)
    config["t"] = t
    return w, config


def _forward(x, gamma, beta, bn_param, ndim):
    if not isinstance(bn_param, dict):
        raise TypeError("bn_param must be a dict")
    if getattr(x, "ndim", None) != ndim:
        raise ValueError(f"x must have {ndim} dimensions, got shape {getattr(x, 'shape', None)}")
    mode = bn_param.get("mode")
    eps = _validate.real(bn_param.get("eps", 1e-5), "eps")
    momentum = _validate.real(bn_param.get("momentum", 0.9), "momentum")
    channels = x.shape[1]
    running_mean = bn_param.get("running_mean", np.zeros(channels, dtype=x.dtype))
    running_var = bn_param.get("running_var", np.zeros(channels, dtype=x.dtype))
    if mode == "train":
        out, cache = _bn.batchnorm_forward(x, gamma, beta, training=True, eps=eps)
        running_mean = (momentum * running_mean + (1 - momentum) * cache.mean).astype(x.dtype)
        running_var = (momentum * running_var + (1 - momentum) * cache.var).astype(x.dtype)
    elif mode == "test":
        out, cache = _bn.batchnorm_forward(x, gamma, beta, running_mean, running_var,
                                           training=False, eps=eps)
    else:
        raise ValueError(f'Invalid forward batchnorm mode "{mode}"')
    bn_param["running_mean"] = running_mean
    bn_param["running_var"] = running_var
    return out, cache


def batchnorm_forward(x, gamma, beta, bn_param):
    """Batch norm of (N, D) data: ``out = (x - mean)/sqrt(var + eps)*gamma + beta``;
    in "train" mode ``running = momentum*running + (1 - momentum)*batch`` (biased var).
    Returns ``(out, cache)``."""
    return _forward(x, gamma, beta, bn_param, 2)


def batchnorm_backward(dout, cache):
    """``(dx, dgamma, dbeta)`` of :func:`batchnorm_forward` (one fused reduction pass
    and one dx pass)."""
    return _bn.batchnorm_backward(dout, cache)


def batchnorm_backward_alt(dout, cache):
    """The assignment's simplified backward; the fused kernel already computes
    ``dx = gamma*invstd/N * (N*dout - dbeta - xhat*dgamma)``, so it is the same call."""
    return _bn.batchnorm_backward(dout, cache)


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    """Batch norm of (N, C, H, W) data per channel C (no transposes needed)."""
    return _forward(x, gamma, beta, bn_param, 4)


def spatial_batchnorm_backward(dout, cache):
    """``(dx, dgamma, dbeta)`` of :func:`spatial_batchnorm_forward`."""
    return _bn.batchnorm_backward(dout, cache)
