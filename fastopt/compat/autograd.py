"""HIPS autograd's optimizers (``autograd.misc.optimizers``) on one fused flat vector.

Same signatures and results as autograd's ``sgd``, ``rmsprop`` and ``adam``: ``grad(x,
i)`` returns the gradient at iteration ``i``, ``callback(x, i, g)`` is called before
each update, and ``x0`` may be any nesting of lists, tuples and dicts (keys sorted) of
arrays and scalars, flattened into one vector as autograd's ``flatten`` does. Each
iteration is one fused kernel call on that vector (autograd's code makes a new array
per operation), with autograd's operation order, so float64 results are
bit-identical::

    sgd:      v = mass * v - (1 - mass) * g ;  x = x + step_size * v
    rmsprop:  a = a * gamma + g**2 * (1 - gamma)   (a starts at ones)
              x = x - step_size * g / (sqrt(a) + eps)
    adam:     m = (1 - b1) * g + b1 * m ;  v = (1 - b2) * g**2 + b2 * v
              x = x - step_size * (m / (1 - b1**(i+1))) / (sqrt(v / (1 - b2**(i+1))) + eps)

When ``x0`` holds autograd boxes (the optimizer itself is being differentiated, as in
meta-optimization), the call is autograd's own code, which can be traced.
One-line change: ``from fastopt.compat.autograd import adam``.
"""

import importlib

import numpy as np

from .. import _validate
from ..functional import run_rule


def flatten(value):
    """``(flat, unflatten)``: ``value``'s leaves raveled into one 1-D float64 array, in
    autograd's order (lists and tuples in order, dicts by sorted key), and the inverse,
    which builds new arrays of the original structure and shapes."""
    leaves = []

    def walk(node):
        kind = type(node)
        if kind in (list, tuple):
            return kind, [walk(item) for item in node]
        if kind is dict:
            keys = sorted(node)
            return dict, (keys, [walk(node[k]) for k in keys])
        array = np.asarray(node)
        leaves.append(array.ravel())
        return None, array.shape

    layout = walk(value)
    # float64, as autograd's optimizers compute (their state vectors are float64).
    flat = np.concatenate(leaves).astype(np.float64) if leaves else np.zeros(0)

    def unflatten(vector):
        offset = 0

        def build(node):
            nonlocal offset
            kind, content = node
            if kind in (list, tuple):
                return kind(build(item) for item in content)
            if kind is dict:
                keys, items = content
                return {k: build(item) for k, item in zip(keys, items)}
            size = int(np.prod(content))
            part = np.array(vector[offset:offset + size]).reshape(content)
            offset += size
            return part

        return build(layout)

    return flat, unflatten


def _is_boxed(value):
    """Whether ``value`` holds an autograd box (autograd is tracing through it)."""
    try:
        from autograd.tracer import Box
    except ImportError:  # autograd is not installed: nothing can be boxed
        return False
    if isinstance(value, (list, tuple)):
        return any(_is_boxed(v) for v in value)
    if isinstance(value, dict):
        return any(_is_boxed(v) for v in value.values())
    return isinstance(value, Box)


def _run(name, grad, x0, callback, num_iters, rule, states, hyper_of):
    """The optimizer loop shared by the three: autograd's own ``name`` for boxed input,
    else ``num_iters`` fused steps of ``rule`` on the flat vector."""
    if _is_boxed(x0):
        own = getattr(importlib.import_module("autograd.misc.optimizers"), name)
        return own(grad, x0, callback, num_iters, *hyper_of(None, raw=True))
    x, unflatten = flatten(x0)
    x = np.array(x)  # our own vector, updated in place
    state = {key: np.full_like(x, fill) for key, fill in states.items()}
    for i in range(int(num_iters)):
        g = flatten(grad(unflatten(x), i))[0]
        if g.shape != x.shape:
            raise ValueError(f"grad returned {g.size} values for {x.size} parameters")
        if callback:
            callback(unflatten(x), i, unflatten(g))
        run_rule(rule, [x], [g], {key: [a] for key, a in state.items()}, hyper_of(i))
    return unflatten(x)


def sgd(grad, x0, callback=None, num_iters=200, step_size=0.1, mass=0.9):
    """Stochastic gradient descent with momentum (autograd's ``sgd``)."""
    step_size, mass = _validate.real(step_size, "step_size"), _validate.real(mass, "mass")

    def hyper(i, raw=False):
        return (step_size, mass) if raw else dict(lr=step_size, mass=mass, grad_scale=None)

    return _run("sgd", grad, x0, callback, num_iters, "mass_momentum", {"velocity": 0.0},
                hyper)


def rmsprop(grad, x0, callback=None, num_iters=100, step_size=0.1, gamma=0.9, eps=10**-8):
    """Root mean squared prop (autograd's ``rmsprop``; the average starts at ones)."""
    step_size, gamma, eps = (_validate.real(v, n) for v, n in
                             ((step_size, "step_size"), (gamma, "gamma"), (eps, "eps")))

    def hyper(i, raw=False):
        return (step_size, gamma, eps) if raw else dict(lr=step_size, alpha=gamma, eps=eps,
                                                        grad_scale=None)

    return _run("rmsprop", grad, x0, callback, num_iters, "rmsprop_sq", {"cache": 1.0}, hyper)


def adam(grad, x0, callback=None, num_iters=100, step_size=0.001, b1=0.9, b2=0.999,
         eps=10**-8):
    """Adam with bias-corrected moments (autograd's ``adam``)."""
    step_size, b1, b2, eps = (_validate.real(v, n) for v, n in
                              ((step_size, "step_size"), (b1, "b1"), (b2, "b2"), (eps, "eps")))

    def hyper(i, raw=False):
        if raw:
            return step_size, b1, b2, eps
        return dict(step=i + 1, lr=step_size, beta1=b1, beta2=b2, eps=eps, corrected=True,
                    grad_scale=None)

    return _run("adam", grad, x0, callback, num_iters, "adam_sq", {"m": 0.0, "v": 0.0}, hyper)
