"""The optimizers of "Neural Networks from Scratch" (nnfs) on fused kernels.

Same class names, constructors, attributes and protocol as the book::

    optimizer.pre_update_params()
    optimizer.update_params(dense1)      # reads weights/biases/dweights/dbiases
    optimizer.update_params(dense2)
    optimizer.post_update_params()

and the book's maths (``current_learning_rate = learning_rate * (1 / (1 + decay *
iterations))``; eps 1e-7)::

    SGD:      update = momentum * momentums - lr * dweights ; momentums = update ;
              weights += update                       (no momentum: weights += -lr * dw)
    Adagrad:  cache += dw**2 ;  weights += -lr * dw / (sqrt(cache) + eps)
    RMSprop:  cache = rho * cache + (1 - rho) * dw**2 ;  weights += -lr * dw / (sqrt(cache) + eps)
    Adam:     m = beta_1 * m + (1 - beta_1) * dw ;  cache = beta_2 * cache + (1 - beta_2) * dw**2
              weights += -lr * (m / (1 - beta_1**(iterations+1)))
                         / (sqrt(cache / (1 - beta_2**(iterations+1))) + eps)

State lives on the layer under the book's names (``weight_momentums``,
``weight_cache``, ``bias_momentums``, ``bias_cache``), created at the first update.
Weights and biases of a layer are updated in one fused call.
One-line change: ``from fastopt.compat.nnfs import Optimizer_Adam``.
"""

import numpy as np

from ..functional import run_at
from ..rules import RULES


class _Optimizer:
    _state = ()  # (weight attribute, bias attribute) pairs, in kernel slot order

    def __init__(self, learning_rate, decay):
        self.learning_rate = learning_rate
        self.current_learning_rate = learning_rate
        self.decay = decay
        self.iterations = 0

    def pre_update_params(self):
        """Apply the learning-rate decay (call once before the layer updates)."""
        if self.decay:
            self.current_learning_rate = self.learning_rate * \
                (1. / (1. + self.decay * self.iterations))

    def post_update_params(self):
        """Count the step (call once after the layer updates)."""
        self.iterations += 1

    def _layer_arrays(self, layer):
        """The layer's weights and biases, then each state's pair (made, as zeros, at
        the first update), in kernel slot order."""
        arrays = [layer.weights, layer.biases]
        for weight_name, bias_name in self._state:
            if not hasattr(layer, weight_name):
                setattr(layer, weight_name, np.zeros_like(layer.weights))
                setattr(layer, bias_name, np.zeros_like(layer.biases))
            arrays += getattr(layer, weight_name), getattr(layer, bias_name)
        return arrays

    def _run(self, rule, layer, state_names, hyper):
        # one call site per layer: the next update of the same layer finds its plan
        run_at(id(layer), rule, state_names, self._layer_arrays(layer),
               (layer.dweights, layer.dbiases), hyper, variant=_variant(rule, hyper))


_VARIANTS = {}


def _variant(rule, hyper):
    """The kernel variant of ``rule`` with the options these classes pass (fixed per
    rule but for SGD's momentum, which picks another rule): found once."""
    variant = _VARIANTS.get(rule)
    if variant is None:
        variant = _VARIANTS[rule] = RULES[rule].kernel_variant(hyper)
    return variant


class Optimizer_SGD(_Optimizer):
    """SGD with optional velocity-form momentum and learning-rate decay."""

    def __init__(self, learning_rate=1., decay=0., momentum=0.):
        super().__init__(learning_rate, decay)
        self.momentum = momentum

    @property
    def _state(self):
        return (("weight_momentums", "bias_momentums"),) if self.momentum else ()

    def update_params(self, layer):
        """Update ``layer.weights`` and ``layer.biases`` in place."""
        if self.momentum:
            self._run("velocity", layer, ("velocity",), dict(
                lr=self.current_learning_rate, momentum=self.momentum, nesterov=False,
                grad_scale=None))
        else:
            self._run("sgd", layer, (), dict(
                lr=self.current_learning_rate, momentum=0.0, dampening=0.0, nesterov=False,
                first=False, weight_decay=0.0, l1=0.0, maximize=False, grad_scale=None))


class Optimizer_Adagrad(_Optimizer):
    """Adagrad (``cache += dw**2``) with learning-rate decay."""

    _state = (("weight_cache", "bias_cache"),)

    def __init__(self, learning_rate=1., decay=0., epsilon=1e-7):
        super().__init__(learning_rate, decay)
        self.epsilon = epsilon

    def update_params(self, layer):
        """Update ``layer.weights`` and ``layer.biases`` in place."""
        self._run("adagrad", layer, ("sum",), dict(
            step=1, lr=self.current_learning_rate, lr_decay=0.0, eps=self.epsilon,
            weight_decay=0.0, l1=0.0, maximize=False, grad_scale=None))


class Optimizer_RMSprop(_Optimizer):
    """RMSprop (``cache = rho*cache + (1-rho)*dw**2``) with learning-rate decay."""

    _state = (("weight_cache", "bias_cache"),)

    def __init__(self, learning_rate=0.001, decay=0., epsilon=1e-7, rho=0.9):
        super().__init__(learning_rate, decay)
        self.epsilon = epsilon
        self.rho = rho

    def update_params(self, layer):
        """Update ``layer.weights`` and ``layer.biases`` in place."""
        self._run("rmsprop_sq", layer, ("cache",), dict(
            lr=self.current_learning_rate, alpha=self.rho, eps=self.epsilon, grad_scale=None))


class Optimizer_Adam(_Optimizer):
    """Adam with moments bias-corrected by ``iterations + 1``, and learning-rate decay."""

    _state = (("weight_momentums", "bias_momentums"), ("weight_cache", "bias_cache"))

    def __init__(self, learning_rate=0.001, decay=0., epsilon=1e-7, beta_1=0.9,
                 beta_2=0.999):
        super().__init__(learning_rate, decay)
        self.epsilon = epsilon
        self.beta_1 = beta_1
        self.beta_2 = beta_2

    def update_params(self, layer):
        """Update ``layer.weights`` and ``layer.biases`` in place."""
        self._run("adam_sq", layer, ("m", "v"), dict(
            step=self.iterations + 1, lr=self.current_learning_rate, beta1=self.beta_1,
            beta2=self.beta_2, eps=self.epsilon, corrected=True, grad_scale=None))
