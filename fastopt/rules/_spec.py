"""How an update rule is declared, and everything derived from a declaration.

A rule module (``fastopt/rules/adam.py`` and its siblings) builds one :class:`Rule`:

* ``options``: its named hyperparameters, in constructor order, each with a default and
  a check. An option given as a pair (``betas``) names its two kernel hyperparameters
  (``beta1``, ``beta2``), which the functional kernels take one by one.
* ``states``: the state arrays, in kernel slot order (at most three), each with its
  initial value, whether it can be negative, and when it exists.
* ``scalars`` and ``host``: the per-step scalars the kernel reads, computed once per
  step in float64 from the hyperparameters and cast once to the arrays' dtype.
* ``update``: the per-element function, plain Python on scalars, which Numba compiles
  for the CPU and for CUDA (:mod:`fastopt.rules._elements` wraps it).
* ``reference``: the same step in NumPy, for the ``"numpy"`` backend and the tests.

The kernel calling convention. ``update(p, g, s0, s1, s2, h, f) -> (p, s0, s1, s2)``
gets ``g`` already prepared (``g/grad_scale``, negated for maximize, ``+ wd*p``,
``+ l1*sign(p)``) and ``p`` already decayed (``p*(1 - lr*wd)`` where the decay is
decoupled). ``h`` holds :data:`HYPER_LEN` scalars in the arrays' dtype: the common ones
at the indices below, then the rule's ``scalars`` in order (:func:`slots` numbers them).
Every constant an update needs comes from ``h``, so no Python float turns a float32
loop into a float64 one. ``f`` holds the rule's two structural flags, then
:data:`SCALED` and :data:`DECAYED`; the drivers pass them as compile-time constants,
so their branches vanish.
"""

import inspect
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np

from .. import _validate

HYPER_LEN = 20  # scalars per kernel call: the common ones, then the rule's own

# The common scalars, read by the gradient preparation of every rule.
SCALE = 0  # signed divisor: grad_scale (or 1), negated for maximize
WD = 1  # coupled L2 weight decay (0 where the decay is decoupled)
L1 = 2  # L1 penalty: g += l1 * sign(p)
ZERO = 3  # 0 in the arrays' dtype
ONE = 4  # 1 in the arrays' dtype
DECAY = 5  # decoupled weight decay's factor 1 - lr * wd (exactly 1 otherwise)
COMMON = ("scale", "weight_decay", "l1", "zero", "one", "decay")
_COMMON_BLAME = {"scale": "grad_scale", "weight_decay": "weight_decay", "l1": "l1",
                 "decay": "lr * weight_decay"}

FLAGS_LEN = 4  # the rule's two flags, then these two
SCALED = 2  # a grad_scale divides (else SCALE is +-1 and multiplies: exact, and cheaper)
# Weight decay (coupled or decoupled) or L1 is in effect; else their code is compiled
# out (Adam's step 5-6% faster at 64M elements; docs/design.md).
DECAYED = 3

REQUIRED = inspect.Parameter.empty  # an option without a default


def tuple_getter(names):
    """``values -> tuple(values[name] for name in names)``, in one C call where there
    are two or more names (``operator.itemgetter`` gives a bare value for one)."""
    if len(names) >= 2:
        return operator.itemgetter(*names)
    return lambda values: tuple(values[name] for name in names)


def slots(names):
    """The indices into ``h`` of a rule's scalars ``names`` (after the common ones)."""
    if len(COMMON) + len(names) > HYPER_LEN:
        raise ValueError(f"{len(names)} scalars do not fit HYPER_LEN={HYPER_LEN}")
    return range(len(COMMON), len(COMMON) + len(names))


# ---------------------------------------------------------------------------
# Checks, as torch.optim makes them: each returns the checked value or raises an error
# that names the argument.


def nonnegative(label):
    """A check: a finite real >= 0, as a float."""
    return lambda value: _validate.nonnegative(value, label)


def real(label):
    """A check: a finite real, as a float."""
    return lambda value: _validate.real(value, label)


def unit_interval(label):
    """A check: a real in [0, 1), as a float."""
    return lambda value: _validate.unit_interval(value, label)


def boolean(label):
    """A check: a Python or NumPy bool, as a bool."""
    return lambda value: _validate.boolean(value, label)


LEARNING_RATE = nonnegative("learning rate (lr)")


def _step(step):
    if type(step) is int and step >= 1:  # the common case, without ABCs
        return step
    if isinstance(step, bool) or not isinstance(step, int) and not hasattr(step, "__index__"):
        raise TypeError(f"step must be an integer, got {step!r}")
    if int(step) < 1:
        raise ValueError(f"step must be >= 1 (the step being taken), got {step}")
    return int(step)


# What the caller supplies at each step (the optimizer classes count the steps).
CONTEXT_CHECKS = {"step": _step, "first": boolean("first")}
CONTEXT_DEFAULTS = {"step": REQUIRED, "first": False}


@dataclass(frozen=True)
class Option:
    """A named hyperparameter. ``split``: for an option given as a pair, the names and
    checks of its two parts, ``((name, check), (name, check))``. ``kernel=False``: an
    option of the optimizer class only (such as a state's initial value)."""

    name: str
    default: object = REQUIRED
    check: Callable = None
    split: tuple = ()
    kernel: bool = True

    def parts(self, value):
        """The pair ``value`` as ``{part name: value}`` (unchecked)."""
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            raise ValueError(f"{self.name} must be a pair ({self.split[0][0]}, "
                             f"{self.split[1][0]}), got {value!r}")
        return {name: part for (name, _), part in zip(self.split, value)}


@dataclass(frozen=True)
class State:
    """A state array: its name, whether it can be negative (8-bit state keeps
    non-negative states on an unsigned codebook), when it exists (a function of the
    hyperparameters; always by default) and its initial value (a number, or the name
    of the class option that holds it)."""

    name: str
    signed: bool = True
    when: Callable = None
    fill: object = 0.0


@dataclass(frozen=True)
class Front:
    """A public face of a rule: an optimizer class or a functional kernel. ``fixed``
    hyperparameters are not arguments (AdamW's ``decoupled_weight_decay=True``);
    ``defaults`` overrides the rule's. ``doc`` is the update as maths."""

    name: str
    doc: str
    defaults: dict = field(default_factory=dict)
    fixed: dict = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Rule:
    """One update rule; see the module docstring."""

    name: str
    id: int  # 0, 1, 2, ...: the order of the registry and of the C variant table
    options: tuple
    states: tuple
    scalars: tuple
    host: Callable  # checked hyperparameters -> {scalar name: float}
    update: Callable
    reference: Callable
    flag_names: tuple = ()  # the rule's structural flags (at most two)
    flags: Callable = None  # checked hyperparameters -> their values
    context: tuple = ()  # per-step arguments: "step" (1-based), "first"
    penalties: bool = True  # takes l1 and maximize (the torch.optim rules do)
    decoupled: Callable = None  # hyperparameters -> whether weight_decay is decoupled
    carried: dict = field(default_factory=dict)  # per-step scalars carried over, initial
    advance: Callable = None  # checked hyperparameters -> carried values for next step
    validate: Callable = None  # checks across options, on the checked hyperparameters
    blame: dict = field(default_factory=dict)  # scalar -> what to name if it overflows
    optimizers: tuple = ()  # Fronts: optimizer classes
    functionals: tuple = ()  # Fronts: functional kernels
    bench: dict = field(default_factory=dict)  # kernel name -> (Front name, kwargs, torch kwargs)

    # -- names ------------------------------------------------------------------

    @property
    def hyper_names(self):
        """The kernel hyperparameters: the functional kernels' keywords."""
        names = list(self.context)
        for option in self.options:
            if option.kernel:
                names += [n for n, _ in option.split] if option.split else [option.name]
        if self.penalties:
            names += ["l1", "maximize"]
        return names + list(self.carried) + ["grad_scale"]

    def class_options(self, front):
        """``[(name, default)]`` of an optimizer class's options, in constructor order."""
        options = [(o.name, front.defaults.get(o.name, o.default)) for o in self.options
                   if o.name not in front.fixed]
        if self.penalties:
            options += [("l1", 0.0), ("maximize", False)]
        return options

    def state_names(self, hyper):
        """The names of the states that exist with these hyperparameters."""
        return [s.name for s in self.states if s.when is None or s.when(hyper)]

    def slots(self, hyper):
        """The state name in each of the kernel's three slots (None where unused)."""
        if self._slots is not None:  # every state always exists
            return self._slots
        names = [s.name if s.when is None or s.when(hyper) else None for s in self.states]
        return tuple(names + [None] * (3 - len(names)))

    @property
    def can_decay(self):
        """Whether weight decay or L1 can apply (else DECAYED is always False)."""
        return self.penalties or any(o.name == "weight_decay" for o in self.options)

    def variants(self):
        """Every structural flag tuple this rule can be called with."""
        n = len(self.flag_names)
        return [(f0, f1, scaled, decayed)
                for f0 in (False, True) for f1 in (False, True)
                for scaled in (False, True) for decayed in (False, True)
                if (n > 0 or not f0) and (n > 1 or not f1) and (self.can_decay or not decayed)]

    def variant(self, flags):
        """The index of a compiled variant in the C backend's table."""
        f0, f1, scaled, decayed = flags
        return self.id * 16 + f0 * 8 + f1 * 4 + scaled * 2 + decayed

    # -- checks -------------------------------------------------------------------

    def __post_init__(self):
        # The (name, check) pair of every kernel hyperparameter, flattened once.
        checks = [(name, CONTEXT_CHECKS[name]) for name in self.context]
        for option in self.options:
            if option.kernel:
                checks += option.split or ((option.name, option.check),)
        if self.penalties:
            checks += [("l1", nonnegative("l1")), ("maximize", boolean("maximize"))]
        checks += [(name, real(name)) for name in self.carried]
        object.__setattr__(self, "checks", tuple(checks))
        object.__setattr__(self, "_order", tuple(COMMON) + tuple(self.scalars))
        object.__setattr__(self, "_padding", (0.0,) * (HYPER_LEN - len(self._order)))
        object.__setattr__(self, "_own", tuple_getter(self.scalars))
        # A rule without a step counter is called with the same hyperparameter objects
        # step after step (a trainer's config, an optimizer's checked options): its
        # scalars are kept for the last values seen, compared by identity (exact: the
        # values are immutable), which costs a fifth of packing them again.
        object.__setattr__(self, "_remember", "step" not in self.context)
        object.__setattr__(self, "_last_packed", None)
        always = all(s.when is None for s in self.states)
        object.__setattr__(self, "_slots", tuple(
            [s.name for s in self.states] + [None] * (3 - len(self.states))) if always else None)
        slots(self.scalars)  # they fit HYPER_LEN

    def check(self, hyper):
        """The kernel hyperparameters checked (a new dict), or ValueError/TypeError
        naming the one that is wrong."""
        checked = dict(hyper)
        for name, check in self.checks:
            checked[name] = check(hyper[name])
        checked["grad_scale"] = _validate.grad_scale(hyper["grad_scale"])
        if self.validate is not None:
            self.validate(checked)
        return checked

    # -- what the kernels get -------------------------------------------------------

    def kernel_variant(self, hyper):
        """``(kernel_flags, slots)``: what picks the compiled kernel. It depends on the
        options and on whether a grad_scale is given, not on the step, so a caller
        that checked the options once can keep it."""
        return self.kernel_flags(hyper), self.slots(hyper)

    def kernel_flags(self, hyper):
        """The structural flags: the rule's two, then SCALED and DECAYED."""
        own = tuple(self.flags(hyper)) + (False, False) if self.flags else (False, False)
        decayed = hyper.get("weight_decay", 0.0) != 0 or hyper.get("l1", 0.0) != 0
        return (bool(own[0]), bool(own[1]), hyper["grad_scale"] is not None, decayed)

    def common_values(self, hyper):
        """The common scalars (:data:`COMMON`, in order) in float64. They follow from
        the options and grad_scale alone, not from the step."""
        scale = 1.0 if hyper["grad_scale"] is None else hyper["grad_scale"]
        wd = hyper.get("weight_decay", 0.0)
        decoupled = self.decoupled is not None and self.decoupled(hyper)
        return (-scale if hyper.get("maximize") else scale, 0.0 if decoupled else wd,
                hyper.get("l1", 0.0), 0.0, 1.0, 1.0 - hyper["lr"] * wd if decoupled else 1.0)

    def scalar_values(self, hyper):
        """Every kernel scalar by name, in float64: the common ones, then the rule's."""
        values = dict(zip(COMMON, self.common_values(hyper)))
        values.update(self.host(hyper))  # tests/test_rules.py: it gives exactly `scalars`
        return values

    def pack(self, dtype, hyper):
        """The kernel's scalars in ``dtype``, in order, as an array (see
        :meth:`pack_values`)."""
        return np.array(self.pack_values(dtype, hyper), dtype=dtype)  # each rounds once

    def pack_values(self, dtype, hyper):
        """The kernel's :data:`HYPER_LEN` scalars, in order, as a tuple of float64 values
        that each fit ``dtype``: the launchers cast them to it (each rounds once). A
        value that overflows the dtype (as ``lr=1e39`` overflows float32) or a
        grad_scale that rounds to 0 would write inf or NaN into every element, so it is
        refused, naming its hyperparameter."""
        last = self._last_packed
        if last is not None and last[0] is dtype and len(last[1]) == len(hyper) \
                and all(map(operator.is_, hyper, last[1])) \
                and all(map(operator.is_, hyper.values(), last[2])):
            return last[3]  # the very same values as the last call's: the same scalars
        vector = self.pack_values_after(self.common_values(hyper), dtype, hyper)
        if self._remember:
            object.__setattr__(self, "_last_packed",
                               (dtype, tuple(hyper), tuple(hyper.values()), vector))
        return vector

    def pack_values_after(self, common, dtype, hyper):
        """:meth:`pack_values` for a caller that keeps the :meth:`common_values` of
        unchanged options and grad_scale (``common``): only the rule's own scalars are
        computed, with the same checks (and nothing is remembered)."""
        vector = (*common, *self._own(self.host(hyper)), *self._padding)
        rounds_to_inf, rounds_to_zero = _ROUNDING[dtype]
        # The norm is NaN or inf when a value is, and at least the largest magnitude (a
        # norm past the limit from values that each fit only sends the check to look).
        if not math.hypot(*vector) < rounds_to_inf or abs(vector[SCALE]) <= rounds_to_zero:
            values, order = self.scalar_values(hyper), self._order
            for name in order:
                value = values[name]
                if not abs(value) < rounds_to_inf or (name == "scale"
                                                      and abs(value) <= rounds_to_zero):
                    blame = {**_COMMON_BLAME, **self.blame}.get(name, name)
                    became = "0" if abs(value) < 1 else "inf"
                    raise ValueError(f"{blame} does not fit the params' dtype "
                                     f"{np.dtype(dtype)}: {value!r} becomes {became} there")
        return vector

    def carried_in(self, hyper):
        """``hyper`` with each carried value filled in where it is None (its initial
        value: a number, or a function of the hyperparameters)."""
        for name, initial in self.carried.items():
            if hyper.get(name) is None:
                hyper[name] = initial(hyper) if callable(initial) else initial
        return hyper

    # -- the NumPy reference ------------------------------------------------------------

    def reference_step(self, p, g, states, hyper, packed=None):
        """One step on one tensor in NumPy: the same preparation as the kernels, then
        the rule's ``reference``. ``states`` holds the three slots (None where unused)."""
        packed = self.pack(p.dtype, hyper) if packed is None else packed
        k = SimpleNamespace(**dict(zip(list(COMMON) + list(self.scalars), packed)))
        f = self.kernel_flags(hyper)
        if f[DECAYED]:
            p *= k.decay
        prepared = g / k.scale if f[SCALED] else g * k.scale
        if f[DECAYED]:
            if k.weight_decay != 0:
                prepared = prepared + k.weight_decay * p
            if k.l1 != 0:
                prepared = prepared + k.l1 * np.sign(p)
        p[...] = self.reference(p, prepared, *states, k, f)


# Per dtype, the magnitudes from which a float64 rounds to inf (the midpoint between the
# largest finite value and the next power of two) and at or below which it rounds to 0
# (half the smallest subnormal). Keyed by dtype and by scalar type.
_ROUNDING = {}
for _type, _inf, _zero in ((np.float32, 2.0 ** 128 - 2.0 ** 103, 2.0 ** -150),
                           (np.float64, float("inf"), 0.0)):
    _ROUNDING[_type] = _ROUNDING[np.dtype(_type)] = (_inf, _zero)


def lerp_scalars(weight):
    """torch's ``lerp(a, b, weight)`` as three scalars: ``a + w*(b - a)`` for
    ``|w| < 0.5``, else ``b - (b - a)*(1 - w)`` (``small`` is 1.0 or 0.0)."""
    return {"lerp_weight": weight, "lerp_complement": 1.0 - weight,
            "lerp_small": 1.0 if abs(weight) < 0.5 else 0.0}



def lerp_element(a, b, weight, complement, small):
    """torch's ``lerp(a, b, weight)`` on scalars, in a kernel: ``a + weight*(b - a)``
    when ``small`` (``|weight| < 0.5``), else ``b - (b - a)*complement``. A kernel
    helper (see :data:`KERNEL_HELPERS`)."""
    d = b - a
    if small:
        return a + weight * d
    return b - d * complement


# Plain functions that rule updates may call: each target compiles them as it compiles
# the updates, and binds them into each update's globals (fastopt.rules._elements).
KERNEL_HELPERS = {"lerp_element": lerp_element}


def lerp(a, b, k):
    """torch's ``a.lerp(b, weight)`` in NumPy, the weight's scalars (from
    :func:`lerp_scalars`, in the dtype) in ``k``."""
    d = b - a
    return a + k.lerp_weight * d if k.lerp_small != 0 else b - d * k.lerp_complement
