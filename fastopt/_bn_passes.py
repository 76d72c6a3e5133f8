"""Batch norm's passes over one window of channels, written once for every backend.

A window's forward pass takes the per-channel sums of x (in training), turns them into
statistics and coefficients (:mod:`fastopt._bn_math`), then writes ``y = x*alpha +
offset``; its backward pass takes the sums of dy and dy*(x - mean), the coefficients,
then writes dx. :func:`window_passes` builds both around a backend's kernels: the
NumPy, C and CUDA backends run them as Python between their kernel calls, and the
Numba backend compiles them around its compiled kernels, so that a window costs one
call from Python instead of about ten.
"""

import types

import numpy as np


def _unbound(*args):
    raise RuntimeError("use the passes that window_passes returns, bound to a backend")


# What the passes call; window_passes binds them to a backend's kernels and maths.
sums = scale_shift = affine = _unbound
forward_statistics = forward_coefficients = backward_coefficients = _unbound


def forward(x3, shift, mean, var, gamma, beta, eps, n, training, y3, c0, c1):
    """y for channels ``c0 <= c < c1`` of (outer, C, inner) views; returns ``(mean,
    var, invstd)`` (float64, the window's channels). In training the statistics come
    from the sums of ``x - shift`` (one sample per channel keeps them accurate) and the
    given ``mean`` and ``var`` are ignored; otherwise they are used as they are."""
    if training:
        s1, s2 = sums(x3, x3, shift, shift, c0, c1)
        mean, var = forward_statistics(s1, s2, shift, n)
    invstd, alpha, offset = forward_coefficients(mean, var, gamma, beta, eps)
    scale_shift(x3, alpha.astype(y3.dtype), offset.astype(y3.dtype), y3, c0)
    return mean, var, invstd


def backward(dy3, x3, mean, invstd, gamma, n, training, dx3, c0, c1):
    """dx for channels ``c0 <= c < c1``; returns ``(dgamma, dbeta)`` (float64). In
    inference the statistics were constants, so ``dx = dy*gamma*invstd``."""
    dbeta, sum_dy_xc = sums(dy3, x3, np.zeros(c1 - c0), mean, c0, c1)
    dgamma, scale, slope, shift = backward_coefficients(
        dbeta, sum_dy_xc, gamma, mean, invstd, n)
    if training:
        affine(dy3, x3, scale.astype(dx3.dtype), slope.astype(dx3.dtype),
               shift.astype(dx3.dtype), dx3, c0)
    else:
        scale_shift(dy3, scale.astype(dx3.dtype), np.zeros(c1 - c0, dx3.dtype), dx3,
                    c0)
    return dgamma, dbeta


def window_passes(maths, sums, scale_shift, affine, jit=None, suffix=""):
    """``(forward, backward)`` above, bound to a backend's kernels:

    * ``sums(a, b, ka, kb, c0, c1) -> (s1, s2)``: float64 ``sum(a - ka)`` and
      ``sum((a - ka)*(b - kb))`` per channel of the window (the forward passes x and
      its shift twice, which a kernel may notice to skip the second product);
    * ``scale_shift(a, p, r, out, c0)``: ``out = a*p + r`` per channel, in the arrays'
      dtype, for the ``len(p)`` channels from ``c0``;
    * ``affine(a, b, p, q, r, out, c0)``: ``out = a*p + b*q + r`` likewise;
    * ``maths``: :mod:`fastopt._bn_math`'s functions, or their compiled versions.

    ``jit``, when given, compiles the two (Numba's ``njit``). The kernels are bound as
    the functions' globals, not as closure variables: Numba's disk cache keys a closure
    on its variables' pickles, and a compiled function pickles differently in each
    process, which would recompile the passes in every new process. Nor does the cache
    key on globals, so only one backend may compile these two with Numba's disk cache
    (the numba backend does; the others run them as Python), under each name: a
    ``suffix`` names a second pair (``forward_serial``), whose cache entries are then
    its own."""
    bound = dict(globals(), sums=sums, scale_shift=scale_shift, affine=affine,
                 forward_statistics=maths.forward_statistics,
                 forward_coefficients=maths.forward_coefficients,
                 backward_coefficients=maths.backward_coefficients)
    passes = []
    for function in (forward, backward):
        copy = types.FunctionType(function.__code__, bound, function.__name__ + suffix)
        copy.__qualname__ = copy.__name__
        copy.__doc__ = function.__doc__
        passes.append(jit(copy) if jit else copy)
    return tuple(passes)
