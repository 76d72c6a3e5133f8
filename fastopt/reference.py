"""Plain NumPy implementations: the test oracle, and the ``"numpy"`` backend.

Written for reading, not for speed. Every function updates its arrays in place and
follows torch.optim's maths (plus L1; see README, "Maths"). Arithmetic runs in the
arrays' dtype; scalars that depend on the step are computed in float64 and cast once,
exactly as the compiled kernels do, so that the kernels can be compared to this
module with tight tolerances.
"""

import math

import numpy as np


def _prepared_grad(p, g, *, weight_decay, l1, maximize, grad_scale):
    """The gradient the update rule sees (a new array; ``g`` is not modified)."""
    cast = p.dtype.type
    if grad_scale is not None:
        g = g / cast(grad_scale)
    if maximize:
        g = -g
    if weight_decay != 0:
        g = g + cast(weight_decay) * p
    if l1 != 0:
        g = g + cast(l1) * np.sign(p)
    return g


def sgd(p, g, momentum_buffer, *, lr, momentum=0.0, dampening=0.0, nesterov=False,
        weight_decay=0.0, l1=0.0, maximize=False, first=False, grad_scale=None):
    """One SGD step; ``first`` seeds the momentum buffer with the gradient."""
    cast = p.dtype.type
    g = _prepared_grad(p, g, weight_decay=weight_decay, l1=l1, maximize=maximize,
                       grad_scale=grad_scale)
    if momentum != 0:
        if first:
            momentum_buffer[...] = g
        else:
            momentum_buffer[...] = (cast(momentum) * momentum_buffer
                                    + cast(1.0 - dampening) * g)
        if nesterov:
            g = g + cast(momentum) * momentum_buffer
        else:
            g = momentum_buffer
    p -= cast(lr) * g


def rmsprop(p, g, square_avg, grad_avg, momentum_buffer, *, lr, alpha=0.99, eps=1e-8,
            momentum=0.0, centered=False, weight_decay=0.0, l1=0.0, maximize=False,
            grad_scale=None):
    """One RMSprop step; ``grad_avg`` is used when centered, the buffer with momentum."""
    cast = p.dtype.type
    g = _prepared_grad(p, g, weight_decay=weight_decay, l1=l1, maximize=maximize,
                       grad_scale=grad_scale)
    square_avg[...] = cast(alpha) * square_avg + cast(1.0 - alpha) * g * g
    if centered:
        grad_avg[...] = cast(alpha) * grad_avg + cast(1.0 - alpha) * g
        avg = np.sqrt(square_avg - grad_avg * grad_avg) + cast(eps)
    else:
        avg = np.sqrt(square_avg) + cast(eps)
    if momentum > 0:
        momentum_buffer[...] = cast(momentum) * momentum_buffer + g / avg
        p -= cast(lr) * momentum_buffer
    else:
        p -= cast(lr) * g / avg


def adam(p, g, exp_avg, exp_avg_sq, max_exp_avg_sq, *, step, lr, beta1=0.9, beta2=0.999,
         eps=1e-8, weight_decay=0.0, decoupled=False, amsgrad=False, l1=0.0,
         maximize=False, grad_scale=None):
    """One Adam (``decoupled=False``) or AdamW (``decoupled=True``) step number ``step``."""
    cast = p.dtype.type
    if decoupled:
        p *= cast(1.0 - lr * weight_decay)
    g = _prepared_grad(p, g, weight_decay=0.0 if decoupled else weight_decay, l1=l1,
                       maximize=maximize, grad_scale=grad_scale)
    exp_avg[...] = cast(beta1) * exp_avg + cast(1.0 - beta1) * g
    exp_avg_sq[...] = cast(beta2) * exp_avg_sq + cast(1.0 - beta2) * g * g
    bias_correction1 = 1.0 - beta1 ** step
    bias_correction2 = 1.0 - beta2 ** step
    step_size = cast(lr / bias_correction1)
    second = exp_avg_sq
    if amsgrad:
        np.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
        second = max_exp_avg_sq
    denom = np.sqrt(second) / cast(math.sqrt(bias_correction2)) + cast(eps)
    p -= step_size * exp_avg / denom


def adagrad(p, g, state_sum, *, step, lr, lr_decay=0.0, eps=1e-10, weight_decay=0.0,
            l1=0.0, maximize=False, grad_scale=None):
    """One Adagrad step number ``step`` (the sum starts at initial_accumulator_value)."""
    cast = p.dtype.type
    g = _prepared_grad(p, g, weight_decay=weight_decay, l1=l1, maximize=maximize,
                       grad_scale=grad_scale)
    clr = lr / (1.0 + (step - 1) * lr_decay)
    state_sum += g * g
    p -= cast(clr) * g / (np.sqrt(state_sum) + cast(eps))


# ---------------------------------------------------------------------------
# Batch norm (torch semantics; statistics in float64, outputs in x's dtype).


# Other libraries' rules, for fastopt.compat (their rounding: (1 - beta) * (g * g)).


def velocity(p, g, velocity, *, lr, momentum, nesterov=False, grad_scale=None):
    """``v = momentum*v - lr*g ; p += v`` (nesterov: ``p += momentum*v - lr*g``)."""
    cast = p.dtype.type
    g = _prepared_grad(p, g, weight_decay=0.0, l1=0.0, maximize=False,
                       grad_scale=grad_scale)
    velocity[...] = cast(momentum) * velocity - cast(lr) * g
    p += cast(momentum) * velocity - cast(lr) * g if nesterov else velocity


def rmsprop_sq(p, g, cache, *, lr, alpha, eps, grad_scale=None):
    """``cache = alpha*cache + (1-alpha)*(g*g) ; p -= lr*g / (sqrt(cache) + eps)``."""
    cast = p.dtype.type
    g = _prepared_grad(p, g, weight_decay=0.0, l1=0.0, maximize=False,
                       grad_scale=grad_scale)
    cache[...] = cast(alpha) * cache + cast(1.0 - alpha) * (g * g)
    p -= cast(lr) * g / (np.sqrt(cache) + cast(eps))


def adam_sq(p, g, m, v, *, step, lr, beta1, beta2, eps, corrected, grad_scale=None):
    """Adam with bias-corrected moments (``corrected``, cs231n/nnfs) or scikit-learn's
    ``lr_t = lr*sqrt(1-beta2**t)/(1-beta1**t)`` with eps outside the correction."""
    cast = p.dtype.type
    g = _prepared_grad(p, g, weight_decay=0.0, l1=0.0, maximize=False,
                       grad_scale=grad_scale)
    m[...] = cast(beta1) * m + cast(1.0 - beta1) * g
    v[...] = cast(beta2) * v + cast(1.0 - beta2) * (g * g)
    bc1, bc2 = 1.0 - beta1 ** step, 1.0 - beta2 ** step
    if corrected:
        p -= cast(lr) * (m / cast(bc1)) / (np.sqrt(v / cast(bc2)) + cast(eps))
    else:
        p -= cast(lr * math.sqrt(bc2) / bc1) * m / (np.sqrt(v) + cast(eps))


def _channel_axes(x, axis):
    axis = axis % x.ndim
    return axis, tuple(a for a in range(x.ndim) if a != axis)


def _per_channel(v, x, axis):
    shape = [1] * x.ndim
    shape[axis] = -1
    return np.asarray(v).reshape(shape)


def batchnorm_forward(x, gamma, beta, running_mean=None, running_var=None, *,
                      training=True, momentum=0.1, eps=1e-5, axis=1):
    """Batch norm forward; returns ``(y, (x, mean, invstd, gamma, axis))``.

    Training: batch statistics (biased variance) normalise x, and the running
    statistics, when given, move towards them (unbiased variance), in place.
    Inference: the running statistics normalise x.
    """
    axis, axes = _channel_axes(x, axis)
    x64 = x.astype(np.float64)
    if training:
        n = x.size // x.shape[axis]
        mean = x64.mean(axis=axes)
        var = ((x64 - _per_channel(mean, x, axis)) ** 2).mean(axis=axes)
        if running_mean is not None:
            running_mean[...] = (1 - momentum) * running_mean + momentum * mean
            running_var[...] = (1 - momentum) * running_var + momentum * var * n / (n - 1)
    else:
        mean = running_mean.astype(np.float64)
        var = running_var.astype(np.float64)
    invstd = 1.0 / np.sqrt(var + eps)
    xhat = (x64 - _per_channel(mean, x, axis)) * _per_channel(invstd, x, axis)
    y = xhat * _per_channel(gamma.astype(np.float64), x, axis) + _per_channel(
        beta.astype(np.float64), x, axis)
    return y.astype(x.dtype), (x, mean, invstd, gamma, axis, training)


def batchnorm_backward(dy, cache):
    """Batch norm backward: ``(dx, dgamma, dbeta)`` for the cache of the forward."""
    x, mean, invstd, gamma, axis, training = cache
    _, axes = _channel_axes(x, axis)
    n = x.size // x.shape[axis]
    dy64 = dy.astype(np.float64)
    xhat = (x.astype(np.float64) - _per_channel(mean, x, axis)) * _per_channel(invstd, x, axis)
    dbeta = dy64.sum(axis=axes)
    dgamma = (dy64 * xhat).sum(axis=axes)
    scale = _per_channel(gamma.astype(np.float64) * invstd, x, axis)
    if training:
        dx = scale / n * (n * dy64 - _per_channel(dbeta, x, axis)
                          - xhat * _per_channel(dgamma, x, axis))
    else:
        dx = scale * dy64
    return dx.astype(x.dtype), dgamma.astype(x.dtype), dbeta.astype(x.dtype)
