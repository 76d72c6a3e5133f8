"""The element driver: one rule's whole per-element step, for a compiled target.

:func:`element_functions` compiles, for a target, every rule's ``update`` (the one
source in its rule module, with the kernel helpers it calls compiled for the same
target) inside the steps every rule shares: load the used state
slots, apply decoupled weight decay, prepare the gradient, update, store. Plain Python
with no NumPy calls, so that Numba compiles the very same text for the CPU
(``numba.njit``) and for CUDA (``cuda.jit(device=True)``).
"""

import types

from . import RULES
from ._spec import DECAY, DECAYED, KERNEL_HELPERS, L1, SCALE, SCALED, WD, ZERO


def element_functions(jit):
    """Per rule, indexed by rule id, ``(update_element, step_element)``, each decorated
    with ``jit`` (``numba.njit(inline="always")`` for the CPU,
    ``numba.cuda.jit(device=True)`` for CUDA, ``lambda f: f`` for plain Python).
    ``update_element(f, used, p, g, s0, s1, s2, i, h)`` updates element ``i`` of the
    indexable ``p`` and of the state slots flagged in ``used`` (three booleans) from
    ``g[i]``; ``step_element(f, p, g, a0, a1, a2, h) -> (p, a0, a1, a2)`` is the same
    step on scalars (the 8-bit kernels keep the states decoded in between). A driver
    indexes the tuple, a module global, with a constant rule id, so only that rule is
    compiled into it."""

    @jit
    def prepare_grad(p, g, h, f):
        """``g/scale (+ wd*p) (+ l1*sign(p))``: the gradient every rule sees."""
        zero = h[ZERO]
        # Without a grad_scale, SCALE is +-1 and a multiply is exact and much cheaper
        # than a vector division (which would make Adam compute-bound on AVX2).
        g = g / h[SCALE] if f[SCALED] else g * h[SCALE]
        if f[DECAYED]:
            wd = h[WD]
            if wd != zero:
                g = g + wd * p
            l1 = h[L1]
            if l1 != zero:
                # l1 * np.sign(p): 0 at +-0, NaN at NaN.
                g = g + (l1 if p > zero else (-l1 if p < zero else zero * p))
        return g

    helpers = {name: jit(helper) for name, helper in KERNEL_HELPERS.items()}

    def element_function(update):
        # The update, its kernel helpers (torch's lerp, ...) bound to their compiled
        # form for this target: Numba resolves a function's globals when it compiles.
        update = jit(types.FunctionType(update.__code__, {**update.__globals__, **helpers},
                                        update.__name__, update.__defaults__,
                                        update.__closure__))

        @jit
        def step_element(f, p, g, a0, a1, a2, h):
            """One element's step on scalars: ``(p, a0, a1, a2)`` after it."""
            if f[DECAYED]:
                p = p * h[DECAY]  # decoupled weight decay (exactly 1 otherwise)
            return update(p, prepare_grad(p, g, h, f), a0, a1, a2, h, f)

        @jit
        def update_element(f, used, p, g, s0, s1, s2, i, h):
            zero = h[ZERO]
            a0 = s0[i] if used[0] else zero
            a1 = s1[i] if used[1] else zero
            a2 = s2[i] if used[2] else zero
            p[i], a0, a1, a2 = step_element(f, p[i], g[i], a0, a1, a2, h)
            if used[0]:
                s0[i] = a0
            if used[1]:
                s1[i] = a1
            if used[2]:
                s2[i] = a2

        return update_element, step_element

    return tuple(element_function(rule.update) for rule in RULES.values())
