"""Batch norm in plain NumPy: the test oracle, and the ``"numpy"`` backend's.

Written for reading, not for speed, with torch's semantics: statistics in float64,
outputs in x's dtype. (Each optimizer rule's NumPy reference is in its own module
of :mod:`fastopt.rules`.)
"""

import numpy as np


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
