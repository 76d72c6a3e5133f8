"""scikit-learn's MLP optimizers on fused kernels, and ``accelerate()``.

``SGDOptimizer`` and ``AdamOptimizer`` subclass scikit-learn's own classes (same
constructors, ``iteration_ends``, ``trigger_stopping``, attributes ``velocities``,
``ms``, ``vs``, ``t``, ``learning_rate``) and replace ``update_params`` with one fused
kernel call per dtype, with scikit-learn's maths::

    SGD:   v = momentum * v - learning_rate * g ;  p += v
           nesterov: p += momentum * v - learning_rate * g   (with the new v)
    Adam:  t += 1 ;  m = beta_1 * m + (1 - beta_1) * g ;  v = beta_2 * v + (1 - beta_2) * g**2
           learning_rate = learning_rate_init * sqrt(1 - beta_2**t) / (1 - beta_1**t)
           p -= learning_rate * m / (sqrt(v) + epsilon)        (eps outside the correction)

One-line change::

    with fastopt.compat.sklearn.accelerate():
        MLPClassifier(solver="adam").fit(X, y)

For float64 models (scikit-learn's default) the parameters are bit-identical to
scikit-learn's. For float32 models they agree to float32 rounding: scikit-learn's Adam
multiplies by a float64 NumPy scalar and so computes its last step in float64, while the
kernel stays in float32.
"""

import contextlib

import numpy as np
from sklearn.neural_network import _multilayer_perceptron as _mlp
from sklearn.neural_network import _stochastic_optimizers as _sk

from ..functional import run_at

_VELOCITY, _MOMENTS = ("velocity",), ("m", "v")  # the kernels' state names


class SGDOptimizer(_sk.SGDOptimizer):
    """scikit-learn's ``SGDOptimizer`` (velocity-form momentum, its Nesterov form, the
    constant/invscaling/adaptive schedules), updating ``params`` in one fused call."""

    def update_params(self, params, grads):
        """``params[i] += update`` with the velocities updated in place."""
        run_at(id(self), "velocity", _VELOCITY, [*params, *self.velocities], grads,
               dict(lr=float(self.learning_rate), momentum=float(self.momentum),
                    nesterov=bool(self.nesterov), grad_scale=None))


class AdamOptimizer(_sk.AdamOptimizer):
    """scikit-learn's ``AdamOptimizer`` (``lr_t`` form, eps outside the bias
    correction), updating ``params`` and the moments ``ms``/``vs`` in one fused call."""

    def update_params(self, params, grads):
        """One Adam step; sets ``t`` and ``learning_rate`` as scikit-learn does."""
        t = self.t + 1
        run_at(id(self), "adam_sq", _MOMENTS, [*params, *self.ms, *self.vs], grads,
               dict(step=t, lr=float(self.learning_rate_init), beta1=float(self.beta_1),
                    beta2=float(self.beta_2), eps=float(self.epsilon), corrected=False,
                    grad_scale=None))
        self.t = t
        self.learning_rate = (self.learning_rate_init * np.sqrt(1 - self.beta_2 ** t)
                              / (1 - self.beta_1 ** t))


@contextlib.contextmanager
def accelerate():
    """Within the block, ``MLPClassifier`` and ``MLPRegressor`` (solver "sgd" or
    "adam") train with :class:`SGDOptimizer` and :class:`AdamOptimizer`.

    It swaps the two names in ``sklearn.neural_network._multilayer_perceptron`` and
    restores them on exit, also when the block raises. A model fitted inside keeps its
    fused optimizer (for ``partial_fit`` or ``warm_start``); nothing else stays patched.
    The swap is process-wide while the block runs.
    """
    saved = _mlp.SGDOptimizer, _mlp.AdamOptimizer
    _mlp.SGDOptimizer, _mlp.AdamOptimizer = SGDOptimizer, AdamOptimizer
    try:
        yield
    finally:
        _mlp.SGDOptimizer, _mlp.AdamOptimizer = saved
