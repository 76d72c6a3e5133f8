"""Batch norm's per-channel maths, written once for NumPy and for Numba.

These functions take and return float64 per-channel vectors (the per-channel sums
come from a backend's ``bn_sums``) and use only NumPy array expressions that Numba
also compiles, in the same order and in float64 throughout, so the Numba-compiled
versions (:data:`fastopt.backends.numba_cpu.BN_MATH`) give the same bits as these
plain ones. Compiled, a forward's or a backward's per-channel maths is one call
instead of about a dozen NumPy calls (~1 us each on 1024 channels).

The maths (torch's batch norm)::

    mean = sum(x)/n, var = sum((x - mean)^2)/n (biased), invstd = 1/sqrt(var + eps)
    y  = x*alpha + offset,           alpha = gamma*invstd, offset = beta - mean*alpha
    dx = dy*scale + x*slope + shift, scale = gamma*invstd (training adds slope/shift)
"""

import numpy as np


def forward_statistics(s1, s2, shift, n):
    """``(mean, var)`` from the sums of ``x - shift`` and of its square over ``n``
    values per channel (the shift, one sample per channel, keeps them accurate)."""
    centred = s1 / n
    mean = shift + centred
    var = np.maximum(s2 / n - centred * centred, 0.0)
    return mean, var


def forward_coefficients(mean, var, gamma, beta, eps):
    """``(invstd, alpha, offset)`` for ``y = x*alpha + offset``."""
    invstd = 1.0 / np.sqrt(var + eps)
    alpha = gamma.astype(np.float64) * invstd
    offset = beta.astype(np.float64) - mean * alpha
    return invstd, alpha, offset


def running_update(running_mean, running_var, mean, var, momentum, n):
    """torch's running statistics, in place: ``r = (1-momentum)*r + momentum*stat``
    with the unbiased variance ``var*n/(n-1)``; float64 arithmetic, stored in the
    arrays' dtype."""
    keep = 1.0 - momentum
    running_mean[:] = keep * running_mean.astype(np.float64) + momentum * mean
    running_var[:] = keep * running_var.astype(np.float64) + momentum * var * n / (n - 1)


def backward_coefficients(dbeta, sum_dy_xc, gamma, mean, invstd, n):
    """``(dgamma, scale, slope, shift)`` for ``dx = dy*scale + x*slope + shift`` in
    training, from ``dbeta = sum(dy)`` and ``sum_dy_xc = sum(dy*(x - mean))``."""
    dgamma = invstd * sum_dy_xc
    scale = gamma.astype(np.float64) * invstd
    slope = -scale * invstd * invstd * sum_dy_xc / n
    shift = -scale * dbeta / n - slope * mean
    return dgamma, scale, slope, shift


FUNCTIONS = (forward_statistics, forward_coefficients, running_update,
             backward_coefficients)
