"""Learning-rate schedules: callables ``step -> lr`` (step counts from 0).

Pass one as an optimizer's ``lr``; the optimizer calls it with the number of steps
already taken. Each gives the values of its torch.optim.lr_scheduler counterpart
step for step (the lr in force for the optimizer step ``step``, i.e. after ``step``
calls to ``scheduler.step()``):

=====================  ==========================================================
``constant``           lr
``step_decay``         StepLR: ``lr * gamma ** (t // step_size)``
``multistep``          MultiStepLR: ``lr * gamma ** (number of milestones <= t)``
``exponential``        ExponentialLR: ``lr * gamma ** t``
``inverse_time``       ``lr / (1 + decay_rate * t)`` (no torch counterpart)
``cosine``             CosineAnnealingLR: ``min + (lr - min)(1 + cos(pi t / T)) / 2``
                       for ``t <= T``; ``min_lr`` after (torch's recursion rises again)
``warmup``             LinearLR-style ramp: ``schedule(t) * factor(t)``, with factor
                       going linearly from ``start_factor`` to 1 over warmup_steps
``cyclic``             CyclicLR (triangular, triangular2, exp_range)
``one_cycle``          OneCycleLR (cos or linear anneal, two or three phases)
=====================  ==========================================================

:class:`ReduceLROnPlateau` is closed-loop instead: it watches a metric and lowers the
optimizer's group lrs itself (see :mod:`fastopt.plateau`).
"""

import bisect
import math
import numbers

from .plateau import ReduceLROnPlateau  # noqa: F401 - a public name of this module


def _step(step):
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
        raise ValueError(f"a schedule takes a step count >= 0, got {step!r}")
    return int(step)


def _positive(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _nonnegative(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{name} must be an integer > 0, got {value!r}")
    return int(value)


class Schedule:
    """Base class: a callable ``step -> lr`` with a readable repr."""

    def __call__(self, step):
        return self.lr_at(_step(step))

    def lr_at(self, step):  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def __repr__(self):
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


class constant(Schedule):
    """``lr`` at every step."""

    def __init__(self, lr):
        self.lr = _positive(lr, "lr")

    def lr_at(self, step):
        return self.lr


class step_decay(Schedule):
    """StepLR: ``lr * gamma ** (step // step_size)``."""

    def __init__(self, lr, step_size, gamma=0.1):
        self.lr = _positive(lr, "lr")
        self.step_size = _positive_int(step_size, "step_size")
        self.gamma = _positive(gamma, "gamma")

    def lr_at(self, step):
        return self.lr * self.gamma ** (step // self.step_size)


class multistep(Schedule):
    """MultiStepLR: ``lr * gamma ** (number of milestones <= step)``."""

    def __init__(self, lr, milestones, gamma=0.1):
        self.lr = _positive(lr, "lr")
        milestones = [_positive_int(m, "milestone") for m in milestones]
        if milestones != sorted(milestones):
            raise ValueError(f"milestones must be increasing, got {milestones}")
        self.milestones = milestones
        self.gamma = _positive(gamma, "gamma")

    def lr_at(self, step):
        return self.lr * self.gamma ** bisect.bisect_right(self.milestones, step)


class exponential(Schedule):
    """ExponentialLR: ``lr * gamma ** step``."""

    def __init__(self, lr, gamma):
        self.lr = _positive(lr, "lr")
        self.gamma = _positive(gamma, "gamma")

    def lr_at(self, step):
        return self.lr * self.gamma ** step


class inverse_time(Schedule):
    """Inverse-time decay: ``lr / (1 + decay_rate * step)``."""

    def __init__(self, lr, decay_rate):
        self.lr = _positive(lr, "lr")
        self.decay_rate = _nonnegative(decay_rate, "decay_rate")

    def lr_at(self, step):
        return self.lr / (1.0 + self.decay_rate * step)


class cosine(Schedule):
    """CosineAnnealingLR: ``min_lr + (lr - min_lr) * (1 + cos(pi * step / total_steps)) / 2``,
    then ``min_lr`` once ``step >= total_steps``."""

    def __init__(self, lr, total_steps, min_lr=0.0):
        self.lr = _positive(lr, "lr")
        self.total_steps = _positive_int(total_steps, "total_steps")
        self.min_lr = _nonnegative(min_lr, "min_lr")

    def lr_at(self, step):
        if step >= self.total_steps:
            return self.min_lr
        return self.min_lr + (self.lr - self.min_lr) * (
            1.0 + math.cos(math.pi * step / self.total_steps)) / 2.0


class warmup(Schedule):
    """Linear warm-up in front of another schedule (torch's LinearLR factor)::

        factor = start_factor + (1 - start_factor) * min(step, warmup_steps) / warmup_steps
        lr = schedule(step) * factor
    """

    def __init__(self, schedule, warmup_steps, start_factor=1.0 / 3):
        if not callable(schedule):
            schedule = constant(schedule)
        self.schedule = schedule
        self.warmup_steps = _positive_int(warmup_steps, "warmup_steps")
        start_factor = _positive(start_factor, "start_factor")
        if start_factor > 1.0:
            raise ValueError(f"start_factor must be in (0, 1], got {start_factor}")
        self.start_factor = start_factor

    def lr_at(self, step):
        done = min(step, self.warmup_steps) / self.warmup_steps
        factor = self.start_factor + (1.0 - self.start_factor) * done
        return self.schedule(step) * factor


class cyclic(Schedule):
    """CyclicLR: a triangle between ``base_lr`` and ``max_lr`` (Smith, 2017).

    ``mode``: ``"triangular"`` (constant height), ``"triangular2"`` (height halves
    each cycle), ``"exp_range"`` (height times ``gamma ** step``).
    """

    MODES = ("triangular", "triangular2", "exp_range")

    def __init__(self, base_lr, max_lr, step_size_up=2000, step_size_down=None,
                 mode="triangular", gamma=1.0):
        self.base_lr = _positive(base_lr, "base_lr")
        self.max_lr = _positive(max_lr, "max_lr")
        self.step_size_up = _positive_int(step_size_up, "step_size_up")
        self.step_size_down = self.step_size_up if step_size_down is None else \
            _positive_int(step_size_down, "step_size_down")
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}, got {mode!r}")
        self.mode = mode
        self.gamma = _positive(gamma, "gamma")

    def lr_at(self, step):
        total = float(self.step_size_up + self.step_size_down)
        ratio = self.step_size_up / total
        cycle = math.floor(1 + step / total)
        x = 1.0 + step / total - cycle
        scale = x / ratio if x <= ratio else (x - 1) / (ratio - 1)
        height = (self.max_lr - self.base_lr) * scale
        if self.mode == "triangular":
            return self.base_lr + height
        if self.mode == "triangular2":
            return self.base_lr + height * (1 / (2.0 ** (cycle - 1)))
        return self.base_lr + height * self.gamma ** step


class one_cycle(Schedule):
    """OneCycleLR: warm up from ``max_lr/div_factor`` to ``max_lr`` over ``pct_start``
    of the steps, then anneal to ``max_lr/div_factor/final_div_factor`` (three_phase:
    back down to the initial lr first, then to the minimum)."""

    def __init__(self, max_lr, total_steps, pct_start=0.3, div_factor=25.0,
                 final_div_factor=1e4, anneal="cos", three_phase=False):
        self.max_lr = _positive(max_lr, "max_lr")
        self.total_steps = _positive_int(total_steps, "total_steps")
        if isinstance(pct_start, bool) or not isinstance(pct_start, numbers.Real) \
                or not 0.0 < pct_start < 1.0:
            raise ValueError(f"pct_start must be in (0, 1), got {pct_start!r}")
        self.pct_start = float(pct_start)
        self.div_factor = _positive(div_factor, "div_factor")
        self.final_div_factor = _positive(final_div_factor, "final_div_factor")
        if anneal not in ("cos", "linear"):
            raise ValueError(f"anneal must be 'cos' or 'linear', got {anneal!r}")
        self.anneal = anneal
        self.three_phase = bool(three_phase)

    def _phases(self):
        initial = self.max_lr / self.div_factor
        minimum = initial / self.final_div_factor
        up_end = self.pct_start * self.total_steps - 1
        if self.three_phase:
            return [(up_end, initial, self.max_lr),
                    (2 * self.pct_start * self.total_steps - 2, self.max_lr, initial),
                    (self.total_steps - 1, initial, minimum)]
        return [(up_end, initial, self.max_lr), (self.total_steps - 1, self.max_lr, minimum)]

    def lr_at(self, step):
        if step >= self.total_steps:
            raise ValueError(f"one_cycle was built for {self.total_steps} steps; "
                             f"step {step} is past its end")
        start_step = 0.0
        phases = self._phases()
        for i, (end_step, start, end) in enumerate(phases):
            if step <= end_step or i == len(phases) - 1:
                pct = (step - start_step) / (end_step - start_step)
                if self.anneal == "cos":
                    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
                return (end - start) * pct + start
            start_step = end_step
        raise AssertionError("unreachable")
