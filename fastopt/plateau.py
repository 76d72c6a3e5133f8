"""Training by watching a metric: ReduceLROnPlateau and EarlyStopping.

Both are closed-loop: the trainer reports a metric after each epoch (usually the
validation loss) and they react. :class:`ReduceLROnPlateau` lowers every param group's
learning rate when the metric stops improving (torch.optim.lr_scheduler's rule, step
for step); :class:`EarlyStopping` says when to stop and keeps a copy of the best params
to restore (Keras' ``EarlyStopping(restore_best_weights=True)`` rule).
"""

import math
import numbers

import numpy as np

from . import _validate
from ._params import copy_buffer, copy_into, flat_params, plain


def _choice(value, name, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, "
                         f"got {value!r}")
    return value


def _count(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return int(value)


def _metric(value):
    """A reported metric as a Python float (NaN allowed: it never counts as better)."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.ndarray)):
        raise TypeError(f"the metric must be a real number, got {value!r}")
    return float(value)


class ReduceLROnPlateau:
    """Multiply each param group's lr by ``factor`` when the metric has not improved for
    more than ``patience`` steps in a row, as torch.optim.lr_scheduler.ReduceLROnPlateau.

    After each epoch call ``step(metric)``. The metric improves when (mode "min")::

        rel: metric < best * (1 - threshold)        abs: metric < best - threshold

    (mode "max": ``metric > best * (1 + threshold)`` or ``metric > best + threshold``);
    ``best`` starts at +inf (-inf for "max") and a NaN metric never improves. Each step
    that does not improve adds one to a count of bad steps; on the step where the count
    exceeds ``patience``, every group's lr becomes ``max(lr * factor, min_lr)`` (left
    alone if that changes it by ``eps`` or less), the count restarts and the next
    ``cooldown`` steps count no bad steps.

    ``optimizer`` is any fastopt optimizer; each group's lr must be a number (a schedule
    is code that this would overwrite). ``min_lr`` is a number or one per group.
    """

    def __init__(self, optimizer, mode="min", factor=0.1, patience=10, threshold=1e-4,
                 threshold_mode="rel", cooldown=0, min_lr=0, eps=1e-8):
        groups = getattr(optimizer, "param_groups", None)
        if not isinstance(groups, list) or not groups:
            raise TypeError(f"{type(optimizer).__name__} is not an optimizer with "
                            "param_groups")
        for i, group in enumerate(groups):
            if callable(group["lr"]):
                raise TypeError(f"param group {i}'s lr is a schedule; ReduceLROnPlateau "
                                "sets each group's lr, so give it a number")
        self.optimizer = optimizer
        self.mode = _choice(mode, "mode", ("min", "max"))
        self.threshold_mode = _choice(threshold_mode, "threshold_mode", ("rel", "abs"))
        self.factor = _validate.unit_interval(factor, "factor")
        self.patience = _count(patience, "patience")
        self.threshold = _validate.nonnegative(threshold, "threshold")
        self.cooldown = _count(cooldown, "cooldown")
        self.eps = _validate.nonnegative(eps, "eps")
        if isinstance(min_lr, (list, tuple)):
            if len(min_lr) != len(groups):
                raise ValueError(f"expected {len(groups)} min_lrs (one per param group), "
                                 f"got {len(min_lr)}")
            self.min_lrs = [_validate.nonnegative(v, f"min_lr[{i}]") for i, v in enumerate(min_lr)]
        else:
            self.min_lrs = [_validate.nonnegative(min_lr, "min_lr")] * len(groups)
        self.best = self._worst()
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.last_epoch = 0

    def _worst(self):
        return math.inf if self.mode == "min" else -math.inf

    def is_better(self, metric, best):
        """Whether ``metric`` improves on ``best`` by the threshold."""
        if self.mode == "min":
            return metric < (best * (1.0 - self.threshold) if self.threshold_mode == "rel"
                             else best - self.threshold)
        return metric > (best * (self.threshold + 1.0) if self.threshold_mode == "rel"
                         else best + self.threshold)

    @property
    def in_cooldown(self):
        """Whether bad steps are being ignored after a reduction."""
        return self.cooldown_counter > 0

    def step(self, metric):
        """Report this epoch's metric; lowers the lrs when it has stopped improving."""
        current = _metric(metric)
        self.last_epoch += 1
        if self.is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            self._reduce()
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0

    def _reduce(self):
        groups = self.optimizer.param_groups
        if len(groups) != len(self.min_lrs):
            raise RuntimeError(f"the optimizer has {len(groups)} param groups, but "
                               f"{len(self.min_lrs)} when ReduceLROnPlateau was made")
        for group, min_lr in zip(groups, self.min_lrs):
            old = float(group["lr"])
            new = max(old * self.factor, min_lr)
            if old - new > self.eps:
                group["lr"] = new

    def get_last_lr(self):
        """The lr of each param group now."""
        return [float(group["lr"]) for group in self.optimizer.param_groups]

    _SETTINGS = ("mode", "factor", "patience", "threshold", "threshold_mode", "cooldown",
                 "eps", "min_lrs")
    _PROGRESS = ("best", "num_bad_epochs", "cooldown_counter", "last_epoch")

    def state_dict(self):
        """The settings and the progress as plain Python values (savable with np.savez);
        the optimizer's lrs are in the optimizer's own state_dict."""
        sd = {name: getattr(self, name) for name in self._SETTINGS + self._PROGRESS}
        sd["min_lrs"] = tuple(self.min_lrs)
        return sd

    def load_state_dict(self, state_dict):
        """Restore :meth:`state_dict` output; a bad one is refused with nothing changed."""
        sd = {key: plain(value) for key, value in dict(state_dict).items()}
        expected = set(self._SETTINGS + self._PROGRESS)
        if set(sd) != expected:
            raise ValueError(f"state_dict keys differ: missing {sorted(expected - set(sd))}, "
                             f"unexpected {sorted(set(sd) - expected)}")
        check = ReduceLROnPlateau(  # validates the settings against this optimizer
            self.optimizer, mode=sd["mode"], factor=sd["factor"], patience=sd["patience"],
            threshold=sd["threshold"], threshold_mode=sd["threshold_mode"],
            cooldown=sd["cooldown"], min_lr=list(sd["min_lrs"]), eps=sd["eps"])
        best = sd["best"]
        if isinstance(best, bool) or not isinstance(best, numbers.Real):
            raise ValueError(f"state_dict has an invalid 'best': {best!r}")
        for name in ("num_bad_epochs", "cooldown_counter", "last_epoch"):
            _count(sd[name], name)
        self.__dict__.update({name: getattr(check, name) for name in self._SETTINGS})
        self.best = float(best)
        self.num_bad_epochs = int(sd["num_bad_epochs"])
        self.cooldown_counter = int(sd["cooldown_counter"])
        self.last_epoch = int(sd["last_epoch"])

    def __repr__(self):
        return (f"ReduceLROnPlateau(mode={self.mode!r}, factor={self.factor}, "
                f"patience={self.patience}, best={self.best}, "
                f"bad_steps={self.num_bad_epochs}, lrs={self.get_last_lr()})")


class EarlyStopping:
    """Stop training once the metric has not improved for ``patience`` updates, and
    keep a copy of the best params (Keras' ``EarlyStopping`` rule).

    Call ``update(metric)`` after each epoch; it returns True when training should
    stop. The metric improves when it beats the best so far by more than ``min_delta``
    (mode "min": ``metric + min_delta < best``; "max": ``metric - min_delta > best``,
    rounded as Keras rounds them);
    a NaN metric never improves. On an improvement, with ``restore_best``, the params
    are copied into one buffer allocated here (no allocation per improvement); when
    ``update`` returns True they are copied back, bit for bit. :meth:`restore` does
    that at any time (for instance when the epochs run out first).

    ``params``: the arrays the optimizer updates, as a list, a dict or param groups,
    NumPy arrays or CUDA device arrays (the copy then stays on the device).
    """

    def __init__(self, params, *, mode="min", patience=10, min_delta=0.0, restore_best=True):
        self.mode = _choice(mode, "mode", ("min", "max"))
        self.patience = _count(patience, "patience")
        self.min_delta = _validate.nonnegative(min_delta, "min_delta")
        if not isinstance(restore_best, (bool, np.bool_)):
            raise TypeError(f"restore_best must be a bool, got {restore_best!r}")
        self.restore_best = bool(restore_best)
        self._params = flat_params(params)
        self._buffer, self._copies = copy_buffer(self._params) if self.restore_best \
            else (None, None)
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_step = None  # the update (counting from 0) that gave the best
        self.wait = 0
        self.steps = 0  # updates so far
        self.stopped = False
        self._saved = False

    def is_improvement(self, metric):
        """Whether ``metric`` beats the best so far by more than ``min_delta``."""
        # Keras' form, metric -/+ min_delta against the best: `best + min_delta` can
        # round differently (metric 2.7e-31 against best -0.5 with min_delta 0.5).
        if self.mode == "min":
            return metric + self.min_delta < self.best
        return metric - self.min_delta > self.best

    def update(self, metric):
        """Report this epoch's metric; True once ``patience`` updates in a row have not
        improved on the best (then the best params are restored, with restore_best)."""
        current = _metric(metric)
        step = self.steps
        self.steps += 1
        self.wait += 1
        if self.is_improvement(current):
            self.best, self.best_step, self.wait = current, step, 0
            if self.restore_best:
                copy_into(self._copies, self._params)
                self._saved = True
            return False
        if self.restore_best and not self._saved:  # as Keras: the first epoch's weights
            copy_into(self._copies, self._params)
            self._saved = True
        if self.wait >= self.patience and step > 0:
            self.stopped = True
            if self.restore_best:
                self.restore()
            return True
        return False

    def restore(self):
        """Copy the best params back into the params (bit for bit)."""
        if not self.restore_best:
            raise RuntimeError("EarlyStopping(restore_best=False) keeps no copy")
        if not self._saved:
            raise RuntimeError("nothing to restore: update() has not been called")
        copy_into(self._params, self._copies)

    def __repr__(self):
        return (f"EarlyStopping(mode={self.mode!r}, patience={self.patience}, "
                f"best={self.best}, best_step={self.best_step}, wait={self.wait})")
