"""The optimizers of "Deep Learning from Scratch" (O'Reilly Japan; ``common/optimizer.py``)
on fused kernels.

Same class names, constructors, attributes and ``update(params, grads)`` as the book:
``params`` and ``grads`` are dicts with the same keys (book 1) or lists in the same
order (book 2), updated in place; the state (``v``, ``h``, ``m``, and Adam's ``iter``)
is created at the first update, like ``params``. Every array of a call is updated in
one fused multi-tensor kernel, with the book's maths and operation order, so float64
results are bit-identical to its code::

    SGD:       p -= lr * g
    Momentum:  v = momentum * v - lr * g ;  p += v
    Nesterov:  v *= momentum ;  v -= lr * g ;  p += momentum * momentum * v
               p -= (1 + momentum) * lr * g
    AdaGrad:   h += g * g ;  p -= lr * g / (sqrt(h) + 1e-7)
    RMSprop:   h *= decay_rate ;  h += (1 - decay_rate) * g * g
               p -= lr * g / (sqrt(h) + 1e-7)
    Adam:      iter += 1 ;  lr_t = lr * sqrt(1 - beta2**iter) / (1 - beta1**iter)
               m += (1 - beta1) * (g - m) ;  v += (1 - beta2) * (g**2 - v)
               p -= lr_t * m / (sqrt(v) + 1e-7)

One-line change: ``from fastopt.compat.dlfs import Adam`` in place of
``from common.optimizer import Adam``.
"""

from collections.abc import Mapping

import numpy as np

from .. import _validate
from ..functional import run_rule


def _arrays(params, grads):
    """``params`` and ``grads`` as two aligned lists (dicts by key, lists by order)."""
    if isinstance(params, Mapping):
        if not isinstance(grads, Mapping):
            raise TypeError("params is a dict, so grads must be a dict with its keys")
        missing = [k for k in params if k not in grads]
        if missing:
            raise ValueError(f"grads lacks {missing}")
        return list(params.values()), [grads[k] for k in params]
    if not isinstance(params, (list, tuple)) or not isinstance(grads, (list, tuple)):
        raise TypeError("params and grads must be two dicts or two lists")
    if len(params) != len(grads):
        raise ValueError(f"got {len(grads)} grads for {len(params)} params")
    return list(params), list(grads)


def _zeros_like(params):
    if isinstance(params, Mapping):
        return {key: np.zeros_like(value) for key, value in params.items()}
    return [np.zeros_like(value) for value in params]


def _values(state, params):
    return [state[k] for k in params] if isinstance(params, Mapping) else list(state)


class SGD:
    """Stochastic gradient descent: ``p -= lr * g``."""

    def __init__(self, lr=0.01):
        self.lr = lr

    def update(self, params, grads):
        """One step over every param, in place."""
        ps, gs = _arrays(params, grads)
        run_rule("sgd", ps, gs, {}, dict(
            lr=_validate.real(self.lr, "lr"), momentum=0.0, dampening=0.0, nesterov=False,
            first=False, weight_decay=0.0, l1=0.0, maximize=False, grad_scale=None))


class Momentum:
    """Momentum SGD: ``v = momentum*v - lr*g ; p += v``."""

    _rule, _slot, _extra = "velocity", "velocity", {"nesterov": False}

    def __init__(self, lr=0.01, momentum=0.9):
        self.lr = lr
        self.momentum = momentum
        self.v = None

    def update(self, params, grads):
        """One step over every param, in place (``v`` created at the first)."""
        ps, gs = _arrays(params, grads)
        if self.v is None:
            self.v = _zeros_like(params)
        run_rule(self._rule, ps, gs, {self._slot: _values(self.v, params)}, dict(
            self._extra, lr=_validate.real(self.lr, "lr"),
            momentum=_validate.real(self.momentum, "momentum"), grad_scale=None))


class Nesterov(Momentum):
    """Nesterov's accelerated gradient in the book's form (see the module docstring)."""

    _rule, _slot, _extra = "nesterov_dlfs", "v", {}


class AdaGrad:
    """AdaGrad: ``h += g*g ; p -= lr*g / (sqrt(h) + 1e-7)``."""

    def __init__(self, lr=0.01):
        self.lr = lr
        self.h = None

    def update(self, params, grads):
        """One step over every param, in place (``h`` created at the first)."""
        ps, gs = _arrays(params, grads)
        if self.h is None:
            self.h = _zeros_like(params)
        # torch's Adagrad at step 1 with no lr decay is the book's: clr = lr exactly.
        run_rule("adagrad", ps, gs, {"sum": _values(self.h, params)}, dict(
            step=1, lr=_validate.real(self.lr, "lr"), lr_decay=0.0, eps=1e-7,
            weight_decay=0.0, l1=0.0, maximize=False, grad_scale=None))


class RMSprop:
    """RMSprop: ``h = decay_rate*h + (1 - decay_rate)*g*g ; p -= lr*g / (sqrt(h) + 1e-7)``."""

    def __init__(self, lr=0.01, decay_rate=0.99):
        self.lr = lr
        self.decay_rate = decay_rate
        self.h = None

    def update(self, params, grads):
        """One step over every param, in place (``h`` created at the first)."""
        ps, gs = _arrays(params, grads)
        if self.h is None:
            self.h = _zeros_like(params)
        run_rule("rmsprop_sq", ps, gs, {"cache": _values(self.h, params)}, dict(
            lr=_validate.real(self.lr, "lr"), alpha=_validate.real(self.decay_rate, "decay_rate"),
            eps=1e-7, unbracketed=True, grad_scale=None))


class Adam:
    """Adam in the book's ``lr_t`` form (see the module docstring)."""

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999):
        self.lr = lr
        self.beta1 = beta1
        self.beta2 = beta2
        self.iter = 0
        self.m = None
        self.v = None

    def update(self, params, grads):
        """One step over every param, in place (``m`` and ``v`` created at the first)."""
        ps, gs = _arrays(params, grads)
        hyper = dict(lr=_validate.real(self.lr, "lr"),
                     beta1=_validate.real(self.beta1, "beta1"),
                     beta2=_validate.real(self.beta2, "beta2"), eps=1e-7, corrected=False,
                     incremental=True, grad_scale=None)
        if self.m is None:
            self.m, self.v = _zeros_like(params), _zeros_like(params)
        run_rule("adam_sq", ps, gs, {"m": _values(self.m, params), "v": _values(self.v, params)},
                 dict(hyper, step=self.iter + 1))
        self.iter += 1
