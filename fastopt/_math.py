"""Per-element optimizer maths: the one source that every compiled target uses.

Each ``*_update`` function (built by :func:`element_functions` for a target) maps
one element (param, grad, up to three state values) to its new values. They are plain
Python with no NumPy calls, so that Numba compiles the very same text for the CPU
(``numba.njit``) and for CUDA (``cuda.jit(device=True)``). The NumPy reference in
:mod:`fastopt.reference` is written independently and serves as the oracle for them.

Calling convention, shared by all the rules::

    update(p, g, s0, s1, s2, h, f) -> (p, s0, s1, s2)

* ``h`` is a tuple of ``HYPER_LEN`` scalars *in the array's dtype*, laid out as the
  index constants below say, and packed on the host by the ``*_hyper`` functions
  (step-dependent scalars are computed there once per step in float64, then cast).
  Every constant an update needs (even zero) comes from ``h``, so that no Python
  float turns a float32 loop into a float64 loop.
* ``f`` is a tuple of ``FLAGS_LEN`` booleans, the structural flags (which state arrays
  exist, whether a grad_scale divides, whether any decay or L1 term applies).
  The drivers pass them as compile-time constants, so their branches vanish.
* ``maximize`` and ``grad_scale`` are folded into one signed scalar ``h[SCALE]``:
  with a grad_scale it divides (``g / -s == -(g / s)`` exactly); without one it is
  +-1 and multiplies (exact, and cheaper than a vector division).
"""

import math

import numpy as np

HYPER_LEN = 12

# Gradient preparation, common to every rule.
SCALE = 0  # signed divisor: grad_scale (or 1), negated for maximize
WD = 1  # coupled L2 weight decay (0 for AdamW, whose decay is decoupled)
L1 = 2  # L1 penalty: g += l1 * sign(p)
ZERO = 3  # the constant 0 in the array's dtype

# SGD
SGD_LR, SGD_MOMENTUM, SGD_DAMPENED, SGD_FIRST = 4, 5, 6, 7
SGD_HAS_MOMENTUM, SGD_NESTEROV = 0, 1

# RMSprop
RMS_LR, RMS_ALPHA, RMS_ONE_MINUS_ALPHA, RMS_EPS, RMS_MOMENTUM = 4, 5, 6, 7, 8
RMS_CENTERED, RMS_HAS_MOMENTUM = 0, 1

# Adam / AdamW
ADAM_BETA1, ADAM_ONE_MINUS_BETA1, ADAM_BETA2, ADAM_ONE_MINUS_BETA2 = 4, 5, 6, 7
ADAM_STEP_SIZE, ADAM_BC2_SQRT, ADAM_EPS, ADAM_DECAY = 8, 9, 10, 11
ADAM_AMSGRAD = 0

# Adagrad
ADAGRAD_CLR, ADAGRAD_EPS = 4, 5

# Rules that fastopt.compat's adapters need: other libraries' maths, rounded as they
# round it, kept apart from the torch rules above.
# Velocity-form momentum (cs231n, scikit-learn, nnfs).
VEL_LR, VEL_MOMENTUM = 4, 5
VEL_NESTEROV = 0
# RMSprop with (1 - alpha) * (g * g) (cs231n, nnfs); the RMS_* indices.
# Adam with (1 - beta2) * (g * g); ADAM_BETA1..ADAM_ONE_MINUS_BETA2 as above.
ADAM_SQ_LR, ADAM_SQ_BC1, ADAM_SQ_EPS, ADAM_SQ_BC2 = 8, 9, 10, 11
ADAM_SQ_CORRECTED = 0  # corrected moments (cs231n, nnfs), else scikit-learn's lr_t form

# Rule ids for the dispatching ``update``; every rule's flag tuple has FLAGS_LEN entries.
RULE_IDS = {"sgd": 0, "rmsprop": 1, "adam": 2, "adagrad": 3,
            "velocity": 4, "rmsprop_sq": 5, "adam_sq": 6}
FLAGS_LEN = 4
SCALED = 2  # flag common to all rules: a grad_scale was given (else SCALE is +-1)
# Flag common to all rules: coupled weight decay, L1 or AdamW's decoupled decay is in
# effect (else WD and L1 are 0 and ADAM_DECAY is 1, and their code is compiled out:
# Adam's step 5-6% faster at 64M elements; docs/design.md).
DECAYED = 3


def element_functions(jit):
    """The four update functions (and their helper), each decorated with ``jit``.

    ``jit`` is the target's decorator: ``numba.njit(inline="always")`` for the CPU,
    ``numba.cuda.jit(device=True)`` for CUDA, or ``lambda f: f`` for plain Python.
    Defining them here, rather than at module level, makes the helper calls below
    resolve to the helper compiled for the same target.
    Returns a tuple, indexed by ``RULE_IDS``, of ``update_element(f, used, p, g, s0,
    s1, s2, i, h)`` functions: each updates element ``i`` of the indexable ``p`` and of
    the state slots flagged in ``used`` (three booleans) from ``g[i]`` by its rule.
    Every driver (CPU chunk loop, CUDA thread loop) calls these and nothing else. A
    driver indexes the tuple, a module global, with a constant rule id, so only that
    rule is compiled into it; it closes over the id, an int, rather than over a
    compiled function, because Numba's disk cache keys a closure by its pickled cells
    and a pickled dispatcher differs from process to process.
    """

    @jit
    def prepare_grad(p, g, h, f):
        """Return the gradient the rule sees: ``g/scale (+ wd*p) (+ l1*sign(p))``."""
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

    @jit
    def sgd_update(p, g, buf, s1, s2, h, f):
        """SGD with optional (Nesterov) momentum and dampening; ``buf`` is the momentum."""
        g = prepare_grad(p, g, h, f)
        if f[SGD_HAS_MOMENTUM]:
            momentum = h[SGD_MOMENTUM]
            if h[SGD_FIRST] != h[ZERO]:
                buf = g
            else:
                buf = momentum * buf + h[SGD_DAMPENED] * g
            if f[SGD_NESTEROV]:
                g = g + momentum * buf
            else:
                g = buf
        p = p - h[SGD_LR] * g
        return p, buf, s1, s2

    @jit
    def rmsprop_update(p, g, square_avg, grad_avg, buf, h, f):
        """RMSprop, optionally centered (``grad_avg``) and with momentum (``buf``)."""
        g = prepare_grad(p, g, h, f)
        alpha = h[RMS_ALPHA]
        one_minus_alpha = h[RMS_ONE_MINUS_ALPHA]
        square_avg = alpha * square_avg + one_minus_alpha * g * g
        if f[RMS_CENTERED]:
            grad_avg = alpha * grad_avg + one_minus_alpha * g
            avg = math.sqrt(square_avg - grad_avg * grad_avg) + h[RMS_EPS]
        else:
            avg = math.sqrt(square_avg) + h[RMS_EPS]
        if f[RMS_HAS_MOMENTUM]:
            buf = h[RMS_MOMENTUM] * buf + g / avg
            p = p - h[RMS_LR] * buf
        else:
            p = p - h[RMS_LR] * g / avg
        return p, square_avg, grad_avg, buf

    @jit
    def adam_update(p, g, exp_avg, exp_avg_sq, max_exp_avg_sq, h, f):
        """Adam/AdamW; ``h[ADAM_DECAY]`` is AdamW's ``1 - lr*wd`` (exactly 1 for Adam)."""
        if f[DECAYED]:
            p = p * h[ADAM_DECAY]
        g = prepare_grad(p, g, h, f)
        exp_avg = h[ADAM_BETA1] * exp_avg + h[ADAM_ONE_MINUS_BETA1] * g
        exp_avg_sq = h[ADAM_BETA2] * exp_avg_sq + h[ADAM_ONE_MINUS_BETA2] * g * g
        second = exp_avg_sq
        if f[ADAM_AMSGRAD]:
            # torch.maximum: NaN wins (a NaN in exp_avg_sq reaches the max here).
            if not (max_exp_avg_sq >= exp_avg_sq):
                max_exp_avg_sq = exp_avg_sq
            second = max_exp_avg_sq
        denom = math.sqrt(second) / h[ADAM_BC2_SQRT] + h[ADAM_EPS]
        p = p - h[ADAM_STEP_SIZE] * exp_avg / denom
        return p, exp_avg, exp_avg_sq, max_exp_avg_sq

    @jit
    def adagrad_update(p, g, state_sum, s1, s2, h, f):
        """Adagrad with the decayed learning rate ``clr`` computed on the host."""
        g = prepare_grad(p, g, h, f)
        state_sum = state_sum + g * g
        std = math.sqrt(state_sum) + h[ADAGRAD_EPS]
        p = p - h[ADAGRAD_CLR] * g / std
        return p, state_sum, s1, s2

    @jit
    def velocity_update(p, g, velocity, s1, s2, h, f):
        """``v = mu*v - lr*g ; p += v`` (Nesterov, scikit-learn's: ``p += mu*v - lr*g``
        with the new v)."""
        g = prepare_grad(p, g, h, f)
        momentum = h[VEL_MOMENTUM]
        lr = h[VEL_LR]
        velocity = momentum * velocity - lr * g
        if f[VEL_NESTEROV]:
            p = p + (momentum * velocity - lr * g)
        else:
            p = p + velocity
        return p, velocity, s1, s2

    @jit
    def rmsprop_sq_update(p, g, cache, s1, s2, h, f):
        """``cache = a*cache + (1-a)*(g*g) ; p -= lr*g / (sqrt(cache) + eps)``."""
        g = prepare_grad(p, g, h, f)
        cache = h[RMS_ALPHA] * cache + h[RMS_ONE_MINUS_ALPHA] * (g * g)
        p = p - h[RMS_LR] * g / (math.sqrt(cache) + h[RMS_EPS])
        return p, cache, s1, s2

    @jit
    def adam_sq_update(p, g, m, v, s2, h, f):
        """Adam as cs231n and nnfs write it, ``p -= lr*(m/bc1) / (sqrt(v/bc2) + eps)``,
        or as scikit-learn does, ``p -= lr_t*m / (sqrt(v) + eps)``."""
        g = prepare_grad(p, g, h, f)
        m = h[ADAM_BETA1] * m + h[ADAM_ONE_MINUS_BETA1] * g
        v = h[ADAM_BETA2] * v + h[ADAM_ONE_MINUS_BETA2] * (g * g)
        if f[ADAM_SQ_CORRECTED]:
            p = p - h[ADAM_SQ_LR] * (m / h[ADAM_SQ_BC1]) / (
                math.sqrt(v / h[ADAM_SQ_BC2]) + h[ADAM_SQ_EPS])
        else:
            p = p - h[ADAM_SQ_LR] * m / (math.sqrt(v) + h[ADAM_SQ_EPS])
        return p, m, v, s2

    def element_function(update):
        @jit
        def update_element(f, used, p, g, s0, s1, s2, i, h):
            zero = h[ZERO]
            a0 = s0[i] if used[0] else zero
            a1 = s1[i] if used[1] else zero
            a2 = s2[i] if used[2] else zero
            p[i], a0, a1, a2 = update(p[i], g[i], a0, a1, a2, h, f)
            if used[0]:
                s0[i] = a0
            if used[1]:
                s1[i] = a1
            if used[2]:
                s2[i] = a2

        return update_element

    rules = (sgd_update, rmsprop_update, adam_update, adagrad_update, velocity_update,
             rmsprop_sq_update, adam_sq_update)
    assert len(rules) == len(RULE_IDS)
    return tuple(element_function(update) for update in rules)


# ---------------------------------------------------------------------------
# Host side: per-step scalars, computed in float64 and cast once to the dtype.


_GRAD_PREP_NAMES = {SCALE: "grad_scale", WD: "weight_decay", L1: "l1"}


def _pack(dtype, values, names):
    """The scalars in ``dtype``; ``names`` says which hyperparameter each index comes
    from, for the error when one does not fit the dtype: a value that overflows it (as
    ``lr=1e39`` overflows float32) or a grad_scale that rounds to 0 would write inf or
    NaN into every element, so it is refused before anything is written."""
    # Python floats are float64, so np.array(..., dtype) rounds each value once.
    h = [0.0] * HYPER_LEN
    for index, value in values.items():
        h[index] = value
    rounds_to_inf, rounds_to_zero = _ROUNDING[dtype]
    if not max(map(abs, h)) < rounds_to_inf or abs(h[SCALE]) <= rounds_to_zero:
        for index, value in values.items():
            if not abs(value) < rounds_to_inf or (index == SCALE
                                                  and abs(value) <= rounds_to_zero):
                name = {**_GRAD_PREP_NAMES, **names}.get(index, "a hyperparameter")
                became = "0" if abs(value) < 1 else "inf"
                raise ValueError(f"{name} does not fit the params' dtype "
                                 f"{np.dtype(dtype)}: {value!r} becomes {became} there")
    return np.array(h, dtype=dtype)


# Per dtype, the magnitudes from which a float64 rounds to inf (the midpoint between
# the largest finite value and the next power of two) and at or below which it
# rounds to 0 (half the smallest subnormal). Keyed by dtype and by scalar type.
_ROUNDING = {}
for _type, _inf, _zero in ((np.float32, 2.0 ** 128 - 2.0 ** 103, 2.0 ** -150),
                           (np.float64, float("inf"), 0.0)):
    _ROUNDING[_type] = _ROUNDING[np.dtype(_type)] = (_inf, _zero)


def _grad_prep(grad_scale, maximize, weight_decay, l1):
    scale = 1.0 if grad_scale is None else float(grad_scale)
    return {SCALE: -scale if maximize else scale, WD: weight_decay, L1: l1, ZERO: 0.0}


def sgd_hyper(dtype, *, lr, momentum, dampening, first, weight_decay, l1, maximize, grad_scale):
    """Scalars for :func:`sgd_update`; ``first`` marks the step that seeds the momentum."""
    values = _grad_prep(grad_scale, maximize, weight_decay, l1)
    values.update({SGD_LR: lr, SGD_MOMENTUM: momentum, SGD_DAMPENED: 1.0 - dampening,
                   SGD_FIRST: 1.0 if first else 0.0})
    return _pack(dtype, values, {SGD_LR: "lr", SGD_MOMENTUM: "momentum",
                                 SGD_DAMPENED: "dampening"})


_RMS_NAMES = {RMS_LR: "lr", RMS_EPS: "eps", RMS_MOMENTUM: "momentum"}


def rmsprop_hyper(dtype, *, lr, alpha, eps, momentum, weight_decay, l1, maximize, grad_scale):
    """Scalars for :func:`rmsprop_update`."""
    values = _grad_prep(grad_scale, maximize, weight_decay, l1)
    values.update({RMS_LR: lr, RMS_ALPHA: alpha, RMS_ONE_MINUS_ALPHA: 1.0 - alpha,
                   RMS_EPS: eps, RMS_MOMENTUM: momentum})
    return _pack(dtype, values, _RMS_NAMES)


def adam_hyper(dtype, *, step, lr, beta1, beta2, eps, weight_decay, decoupled, l1, maximize,
               grad_scale):
    """Scalars for :func:`adam_update` at step ``step`` (1-based, already incremented)."""
    bias_correction1 = 1.0 - beta1 ** step
    bias_correction2 = 1.0 - beta2 ** step
    values = _grad_prep(grad_scale, maximize, 0.0 if decoupled else weight_decay, l1)
    values.update({
        ADAM_BETA1: beta1, ADAM_ONE_MINUS_BETA1: 1.0 - beta1,
        ADAM_BETA2: beta2, ADAM_ONE_MINUS_BETA2: 1.0 - beta2,
        ADAM_STEP_SIZE: lr / bias_correction1,
        ADAM_BC2_SQRT: math.sqrt(bias_correction2),
        ADAM_EPS: eps,
        ADAM_DECAY: 1.0 - lr * weight_decay if decoupled else 1.0,
    })
    return _pack(dtype, values, {ADAM_STEP_SIZE: "lr (as lr / (1 - beta1**step))",
                                 ADAM_EPS: "eps", ADAM_DECAY: "lr * weight_decay (AdamW)"})


def adagrad_hyper(dtype, *, step, lr, lr_decay, eps, weight_decay, l1, maximize, grad_scale):
    """Scalars for :func:`adagrad_update` at step ``step`` (1-based, already incremented)."""
    values = _grad_prep(grad_scale, maximize, weight_decay, l1)
    values.update({ADAGRAD_CLR: lr / (1.0 + (step - 1) * lr_decay), ADAGRAD_EPS: eps})
    return _pack(dtype, values, {ADAGRAD_CLR: "lr", ADAGRAD_EPS: "eps"})


def velocity_hyper(dtype, *, lr, momentum, grad_scale=None):
    """Scalars for :func:`velocity_update`."""
    values = _grad_prep(grad_scale, False, 0.0, 0.0)
    values.update({VEL_LR: lr, VEL_MOMENTUM: momentum})
    return _pack(dtype, values, {VEL_LR: "lr", VEL_MOMENTUM: "momentum"})


def rmsprop_sq_hyper(dtype, *, lr, alpha, eps, grad_scale=None):
    """Scalars for :func:`rmsprop_sq_update`."""
    values = _grad_prep(grad_scale, False, 0.0, 0.0)
    values.update({RMS_LR: lr, RMS_ALPHA: alpha, RMS_ONE_MINUS_ALPHA: 1.0 - alpha,
                   RMS_EPS: eps})
    return _pack(dtype, values, _RMS_NAMES)


def adam_sq_hyper(dtype, *, step, lr, beta1, beta2, eps, corrected, grad_scale=None):
    """Scalars for :func:`adam_sq_update` at step ``step`` (1-based). Not corrected:
    scikit-learn's ``lr_t = lr * sqrt(1 - beta2**t) / (1 - beta1**t)`` goes in LR."""
    bias_correction1 = 1.0 - beta1 ** step
    bias_correction2 = 1.0 - beta2 ** step
    values = _grad_prep(grad_scale, False, 0.0, 0.0)
    values.update({
        ADAM_BETA1: beta1, ADAM_ONE_MINUS_BETA1: 1.0 - beta1,
        ADAM_BETA2: beta2, ADAM_ONE_MINUS_BETA2: 1.0 - beta2,
        ADAM_SQ_LR: lr if corrected else lr * math.sqrt(bias_correction2) / bias_correction1,
        ADAM_SQ_BC1: bias_correction1, ADAM_SQ_BC2: bias_correction2, ADAM_SQ_EPS: eps,
    })
    return _pack(dtype, values, {ADAM_SQ_LR: "lr", ADAM_SQ_EPS: "eps"})
