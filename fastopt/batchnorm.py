"""Batch norm forward and backward, and the BatchNorm layer (torch semantics).

Any layout is seen as a C-contiguous ``(outer, C, inner)`` view around the channel
axis: (N, C) -> (N, C, 1), (N, C, H, W) -> (N, C, H*W), channels-last (N, H, W, C)
-> (N*H*W, C, 1). A backend supplies three primitives over such views, each on a
window ``(c0, c1)`` of channels (per-channel vectors hold the window's channels):

* ``bn_windows(shape, itemsize, streams)``: the windows a pass reading ``streams``
  arrays is cut into;
* ``bn_sums(a, b, ka, kb, window) -> (s1, s2)``: per channel, in float64 over a fixed
  chunking (so identical bits for any thread count and any windows), ``s1 = sum(a -
  ka)`` and ``s2 = sum((a - ka) * (b - kb))``;
* ``bn_affine(a, b, P, Q, R, out, window)``: ``out = a*P + b*Q + R`` per channel, in
  the dtype (``b`` may be None: ``out = a*P + R``).

A window's forward and backward are :mod:`fastopt._bn_passes`, run as Python around
those primitives, or compiled around its kernels by a backend that supplies them as
``bn_passes`` (Numba does: one call per window).

Forward (training) is one statistics pass (sums shifted by one sample per channel,
for accuracy) plus one normalise pass ``y = x*alpha + beta'``; backward is one
reduction pass (``sum dy``, ``sum dy*(x - mean)``) plus one pass
``dx = dy*A + x*B + C``. Writing into a caller's ``out`` array (the BatchNorm layer
does, reusing its outputs), both passes run window by window: the CPU backends size a
window to a quarter of the last-level cache, so that the second pass reads it from
cache rather than from memory (NCHW data, where a channel is long rows; other layouts
and the GPU use one window). The per-channel coefficients are computed on the host in
float64 by :mod:`fastopt._bn_math` (compiled by Numba for the
numba backend, plain NumPy otherwise; for CUDA arrays: from the device's per-block
partial sums, then the coefficients go back to the device for the second pass)::

    y  = (x - mean) * invstd * gamma + beta
    dx = gamma * invstd / n * (n*dy - dbeta - xhat*dgamma)
"""

import functools
import math

import numpy as np

from . import _bn_math, _bn_passes, _device, _outputs, _safety, _validate, backends


class BatchNormCache:
    """What backward needs: a reference to ``x`` (not a copy), the per-channel float64
    ``mean``, biased ``var`` and ``invstd`` used, a reference to ``gamma``, the channel
    ``axis``, the mode, and the backend name. Per-channel data only: O(C) memory
    beyond x."""

    __slots__ = ("x", "mean", "var", "invstd", "gamma", "axis", "training", "backend")

    def __init__(self, x, mean, var, invstd, gamma, axis, training, backend):
        self.x, self.mean, self.var, self.invstd, self.gamma = x, mean, var, invstd, gamma
        self.axis, self.training, self.backend = axis, training, backend


def _view3(x, axis):
    shape = x.shape
    if axis == 1 and len(shape) == 2 and type(x) is np.ndarray and x.flags.c_contiguous:
        return x.reshape(shape[0], shape[1], 1)  # (N, C): the common case, without products
    outer = math.prod(x.shape[:axis])  # math.prod: ~0.1 us; np.prod takes ~5 us
    inner = math.prod(x.shape[axis + 1:])
    if not isinstance(x, np.ndarray):  # device arrays are checked C-contiguous
        return x.reshape(outer, x.shape[axis], inner)
    return np.ascontiguousarray(x).reshape(outer, x.shape[axis], inner)


def _host(v):
    """A per-channel vector as a NumPy array (copied from the device if needed)."""
    return v if isinstance(v, np.ndarray) else _device.to_host(v)


def _output(out, x, x3, name, inputs):
    """The (outer, C, inner) array a pass writes: a view of the caller's ``out`` (checked
    against ``x`` and refused where it may overlap ``inputs``), or a new one."""
    if out is None:
        if isinstance(x3, np.ndarray):
            return np.empty_like(x3)
        from numba import cuda

        return cuda.device_array(x3.shape, dtype=x3.dtype)
    if isinstance(x3, np.ndarray):
        if not isinstance(out, np.ndarray):
            raise TypeError(f"{name} must be a NumPy array like x, got {type(out).__name__}")
        if not out.flags.writeable:
            raise ValueError(f"{name} is read-only")
        if not out.flags.c_contiguous:
            raise ValueError(f"{name} must be C-contiguous")
        if any(np.may_share_memory(out, a) for a in inputs):
            raise ValueError(f"{name} overlaps an input; pass a separate array")
    else:
        if not _device.is_device_array(out):
            raise TypeError(f"{name} must be a CUDA array like x, got {type(out).__name__}")
        out = _device.as_device_array(out)
        if not out.is_c_contiguous():
            raise ValueError(f"{name} must be C-contiguous")
        if any(_device.address(out) == _device.address(a) for a in inputs):
            raise ValueError(f"{name} is an input; pass a separate array")
    if out.shape != x.shape or out.dtype != x.dtype:
        raise ValueError(f"{name} must have shape {x.shape} and dtype {x.dtype} (like x), "
                         f"got {out.shape} and {out.dtype}")
    return out.reshape(x3.shape)


def _on_side_of(x, v):
    """Host ``v`` as a NumPy array, or copied to the device when ``x`` is a device array."""
    if isinstance(x, np.ndarray):
        return v
    from numba import cuda

    return cuda.to_device(np.ascontiguousarray(v))


def _windows(runner, x3, streams, out):
    """The channel windows of a pass over ``x3`` reading ``streams`` arrays. A new
    output is written in one window: its pages are faulted in (zeroed) on first write,
    which the first of several windows would do for the whole array, so that the later
    windows read the zeroed pages back from memory, undoing what windows save."""
    if out is None:
        return ((0, x3.shape[1]),)
    return runner.bn_windows(x3.shape, x3.dtype.itemsize, streams)


def _per_channel_maths(runner):
    """The backend's compiled :mod:`fastopt._bn_math` (same source, same bits), or
    the plain NumPy one."""
    return getattr(runner, "bn_math", _bn_math)


@functools.cache
def _window_passes(runner):
    """``(forward, backward)`` of :mod:`fastopt._bn_passes` for a backend: its own
    compiled ones, or the Python ones around its ``bn_sums`` and ``bn_affine``."""
    compiled = getattr(runner, "bn_passes", None)
    if compiled is not None:
        return compiled

    def sums(a, b, ka, kb, c0, c1):
        return runner.bn_sums(a, b, ka, kb, (c0, c1))

    def scale_shift(a, p, r, out, c0):
        runner.bn_affine(a, None, p, None, r, out, (c0, c0 + len(p)))

    def affine(a, b, p, q, r, out, c0):
        runner.bn_affine(a, b, p, q, r, out, (c0, c0 + len(p)))

    return _bn_passes.window_passes(_per_channel_maths(runner), sums, scale_shift, affine)


def _share_memory(a, b):
    """Whether two channel vectors' data overlap (both on the host or both on a device)."""
    if type(a) is type(b) is np.ndarray and a is not b and a.base is None and b.base is None:
        return False  # two arrays that each own their memory
    if isinstance(a, np.ndarray) != isinstance(b, np.ndarray):
        return False
    if isinstance(a, np.ndarray):
        return np.may_share_memory(a, b)
    (a0, a1), (b0, b1) = _safety.span(a), _safety.span(b)
    return bool(a.size and b.size) and a0 < b1 and b0 < a1


def _channel_vector(v, name, channels, dtype, writable=False):
    if type(v) is np.ndarray and v.shape == (channels,) and v.dtype == dtype \
            and (not writable or v.flags.writeable):
        return v  # the common case, in a few operations
    if _device.is_device_array(v):
        v = _device.as_device_array(v)
    elif not isinstance(v, np.ndarray):
        raise TypeError(f"{name} must be a NumPy or CUDA array, got {type(v).__name__}")
    if v.shape != (channels,):
        raise ValueError(f"{name} must have shape ({channels},) (one value per channel), "
                         f"got {v.shape}")
    if v.dtype != dtype:
        raise TypeError(f"{name} has dtype {v.dtype}; x has {dtype}")
    if writable and isinstance(v, np.ndarray) and not v.flags.writeable:
        raise ValueError(f"{name} is read-only; running statistics are updated in place")
    return v


def _check_x(x, axis):
    if type(x) is np.ndarray and x.dtype in _validate.FLOAT_DTYPES and x.ndim >= 2 \
            and type(axis) is int and -x.ndim <= axis < x.ndim:
        return x, axis % x.ndim  # the common case, in a few operations
    if _device.is_device_array(x):
        x = _device.as_device_array(x)
        if not x.is_c_contiguous():
            raise ValueError("a CUDA x must be C-contiguous")
    elif not isinstance(x, np.ndarray):
        raise TypeError(f"x must be a NumPy or CUDA array, got {type(x).__name__}")
    if x.dtype not in _validate.FLOAT_DTYPES:
        raise TypeError(f"x must be float32 or float64, got {x.dtype}")
    if x.ndim < 2:
        raise ValueError(f"x must have at least 2 dimensions (N, C, ...), got shape {x.shape}")
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) \
            or not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis {axis!r} is out of range for x with {x.ndim} dimensions")
    return x, int(axis) % x.ndim


def batchnorm_forward(x, gamma, beta, running_mean=None, running_var=None, *,
                      training=True, momentum=0.1, eps=1e-5, axis=1, backend=None, out=None):
    """Normalise ``x`` per channel (channel axis ``axis``); returns ``(y, cache)``.

    Training: ``mean``/``var`` (biased) over all other axes, ``invstd =
    1/sqrt(var + eps)``, ``y = (x - mean)*invstd*gamma + beta``; running statistics,
    when given, are updated in place: ``running_mean = (1-momentum)*running_mean +
    momentum*mean``, ``running_var = (1-momentum)*running_var + momentum*var*n/(n-1)``.
    Inference (``training=False``): the running statistics replace the batch ones.
    ``out``: a C-contiguous array of x's shape and dtype to write y into (returned as
    y); a new array otherwise. Reusing one saves the page faults of fresh memory.
    """
    x, axis = _check_x(x, axis)
    channels = x.shape[axis]
    n = x.size // channels if channels else 0
    gamma = _channel_vector(gamma, "gamma", channels, x.dtype)
    beta = _channel_vector(beta, "beta", channels, x.dtype)
    training = _validate.boolean(training, "training")
    momentum = _validate.real(momentum, "momentum")
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    eps = _validate.real(eps, "eps")
    if eps <= 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    if (running_mean is None) != (running_var is None):
        raise ValueError("give both running_mean and running_var, or neither")
    if running_mean is not None:
        checked = []
        for name, v in (("running_mean", running_mean), ("running_var", running_var)):
            if not (isinstance(v, np.ndarray) or _device.is_device_array(v)) \
                    or v.dtype not in _validate.FLOAT_DTYPES:
                raise TypeError(f"{name} must be a float32 or float64 array")
            checked.append(_channel_vector(v, name, channels, v.dtype, writable=True))
        running_mean, running_var = checked
        if _share_memory(running_mean, running_var):
            raise ValueError("running_mean and running_var share memory; both are updated "
                             "in place, so pass two separate arrays")
    if training and n <= 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got input "
                         f"of shape {x.shape}")
    if not training and running_mean is None:
        raise ValueError("inference (training=False) needs running_mean and running_var")
    arrays = (x, gamma, beta) if running_mean is None else \
        (x, gamma, beta, running_mean, running_var)
    name = backends.resolve_for(backends.placement(arrays, "x and the per-channel arrays"),
                                backend)
    runner = backends.get_backend(name)

    bn = _per_channel_maths(runner)
    forward_pass = _window_passes(runner)[0]
    x3 = _view3(x, axis)
    y3 = _output(out, x, x3, "out", (x,))
    gamma_h, beta_h = _host(gamma), _host(beta)
    if training:
        # one sample per channel: the shift of the sums (see fastopt._bn_passes)
        shift = (x3[0, :, 0] if isinstance(x3, np.ndarray) else _host(x3[0])[:, 0]
                 ).astype(np.float64)
        mean = var = shift  # the pass computes them (the arguments are ignored)
        windows = _windows(runner, x3, 1, out)
    else:
        mean = _host(running_mean).astype(np.float64)
        var = _host(running_var).astype(np.float64)
        shift, windows = mean, ((0, channels),)  # no shift needed
    if len(windows) == 1:
        mean, var, invstd = forward_pass(x3, shift, mean, var, gamma_h, beta_h, eps, n,
                                         training, y3, 0, channels)
    else:
        mean, var, invstd = (np.empty(channels) for _ in range(3))
        for window in windows:
            w = slice(*window)
            mean[w], var[w], invstd[w] = forward_pass(x3, shift[w], mean[w], var[w],
                                                      gamma_h[w], beta_h[w], eps, n,
                                                      training, y3, *window)
    if training and running_mean is not None:
        if isinstance(running_mean, np.ndarray):
            bn.running_update(running_mean, running_var, mean, var, momentum, n)
        else:  # device arrays: update host copies, then write them back
            host = _host(running_mean).copy(), _host(running_var).copy()
            bn.running_update(*host, mean, var, momentum, n)
            _device.write(running_mean, host[0])
            _device.write(running_var, host[1])
    cache = BatchNormCache(x, mean, var, invstd, gamma, axis, training, name)
    return (y3.reshape(x.shape) if out is None else out), cache


def batchnorm_backward(dy, cache, *, out=None):
    """Gradients ``(dx, dgamma, dbeta)`` of the forward pass that made ``cache``.

    ``dbeta = sum(dy)``, ``dgamma = sum(dy*xhat)``; training:
    ``dx = gamma*invstd/n * (n*dy - dbeta - xhat*dgamma)``; inference:
    ``dx = gamma*invstd*dy`` (the running statistics are constants). ``out``: an
    array to write dx into, as in :func:`batchnorm_forward` (not overlapping dy or x).
    """
    if not isinstance(cache, BatchNormCache):
        raise TypeError("cache must be the second value returned by batchnorm_forward")
    x = cache.x
    if type(dy) is not np.ndarray or type(x) is not np.ndarray or dy.dtype != x.dtype \
            or dy.shape != x.shape:
        _validate.flat_grad(dy, x, "dy")  # the full check, and its error
    if not isinstance(x, np.ndarray):
        dy = _device.as_device_array(dy)
    runner = backends.get_backend(cache.backend)
    channels = x.shape[cache.axis]
    n = x.size // channels
    x3, dy3 = _view3(x, cache.axis), _view3(dy, cache.axis)
    dx3 = _output(out, x, x3, "out", (x, dy))
    backward_pass, gamma = _window_passes(runner)[1], _host(cache.gamma)
    windows = _windows(runner, x3, 2, out)
    if len(windows) == 1:
        dgamma, dbeta = backward_pass(dy3, x3, cache.mean, cache.invstd, gamma, n,
                                      cache.training, dx3, 0, channels)
    else:
        dgamma, dbeta = np.empty(channels), np.empty(channels)
        for window in windows:
            w = slice(*window)
            dgamma[w], dbeta[w] = backward_pass(dy3, x3, cache.mean[w], cache.invstd[w],
                                                gamma[w], n, cache.training, dx3, *window)
    dx = dx3.reshape(x.shape) if out is None else out
    return dx, _on_side_of(x, dgamma.astype(x.dtype)), _on_side_of(x, dbeta.astype(x.dtype))


class BatchNorm:
    """A batch-norm layer: ``forward(x, training=True) -> y``, ``backward(dy) -> dx``.

    Holds ``gamma`` (ones), ``beta`` (zeros), ``running_mean`` (zeros) and
    ``running_var`` (ones), each of shape (num_features,); ``backward`` sets
    ``dgamma`` and ``dbeta``. ``params`` and ``grads`` are dicts for an optimizer.

    ``reuse_outputs`` (NumPy arrays): y and dx go into arrays this layer returned
    before that nothing else refers to any more (see :mod:`fastopt._outputs`), which
    saves fresh memory's page faults; the layer keeps up to two spare arrays of each.
    An output you still hold is never written.
    """

    def __init__(self, num_features, *, axis=1, momentum=0.1, eps=1e-5, dtype=np.float32,
                 backend=None, reuse_outputs=True):
        if isinstance(num_features, bool) or not isinstance(num_features, (int, np.integer)) \
                or num_features <= 0:
            raise ValueError(f"num_features must be a positive integer, got {num_features!r}")
        dtype = np.dtype(dtype)
        if dtype not in _validate.FLOAT_DTYPES:
            raise TypeError(f"dtype must be float32 or float64, got {dtype}")
        self.axis, self.momentum, self.eps, self.backend = axis, momentum, eps, backend
        self.gamma = np.ones(num_features, dtype)
        self.beta = np.zeros(num_features, dtype)
        self.running_mean = np.zeros(num_features, dtype)
        self.running_var = np.ones(num_features, dtype)
        self.dgamma = np.zeros(num_features, dtype)
        self.dbeta = np.zeros(num_features, dtype)
        self._cache = None
        self.reuse_outputs = _validate.boolean(reuse_outputs, "reuse_outputs")
        self._outputs = _outputs.OutputRing(), _outputs.OutputRing()  # y, dx

    def _out(self, which, x):
        """An array for output ``which`` (0: y, 1: dx) of ``x``'s shape, or None (new)."""
        if not self.reuse_outputs or not isinstance(x, np.ndarray) \
                or x.dtype not in _validate.FLOAT_DTYPES:
            return None
        return self._outputs[which].take(x.shape, x.dtype)

    @property
    def params(self):
        """``{"gamma": ..., "beta": ...}``, the trainable arrays."""
        return {"gamma": self.gamma, "beta": self.beta}

    @property
    def grads(self):
        """``{"gamma": dgamma, "beta": dbeta}`` from the last backward."""
        return {"gamma": self.dgamma, "beta": self.dbeta}

    def forward(self, x, training=True):
        """Normalise x; in training, update the running statistics in place."""
        y, self._cache = batchnorm_forward(
            x, self.gamma, self.beta, self.running_mean, self.running_var,
            training=training, momentum=self.momentum, eps=self.eps, axis=self.axis,
            backend=self.backend, out=self._out(0, x))
        return y

    def backward(self, dy):
        """Gradient w.r.t. the last forward's input; sets ``dgamma`` and ``dbeta``."""
        if self._cache is None:
            raise RuntimeError("backward called before forward")
        dx, dgamma, dbeta = batchnorm_backward(dy, self._cache,
                                               out=self._out(1, self._cache.x))
        self.dgamma[...] = dgamma
        self.dbeta[...] = dbeta
        return dx
