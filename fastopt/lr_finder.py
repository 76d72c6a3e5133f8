"""The learning-rate range test (Smith 2017; fastai's lr_find): ``fastopt.lr_find``."""

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ._params import copy_buffer, copy_into, flat_params
from .optim import Adam


@dataclass
class LRFindResult:
    """What :func:`lr_find` saw: the lr of each step, the smoothed (debiased) loss
    after it, and a suggested lr (steepest descent of the smoothed loss)."""

    lrs: list
    losses: list
    suggestion: float

    def plot(self, path):
        """Write the loss-vs-lr curve (log lr axis) to ``path`` (needs matplotlib)."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(self.lrs, self.losses)
        if self.suggestion is not None:
            ax.axvline(self.suggestion, color="red", linestyle="--",
                       label=f"suggestion {self.suggestion:.2e}")
            ax.legend()
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("smoothed loss")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)


def _suggest(lrs, losses):
    """The lr where the smoothed loss falls fastest against log(lr)."""
    if len(losses) < 3:
        return None
    slopes = np.gradient(np.asarray(losses), np.log(np.asarray(lrs)))
    return float(lrs[int(np.argmin(slopes))])


def lr_find(params, loss_and_grads, *, optimizer=Adam, start_lr=1e-7, end_lr=10.0,
            num_it=100, smooth=0.98, diverge=4.0, **optimizer_kwargs):
    """Sweep the learning rate exponentially from ``start_lr`` to ``end_lr``.

    Each of up to ``num_it`` steps calls ``loss_and_grads(params) -> (loss, grads)`` on
    the next mini-batch and takes one optimizer step at
    ``lr_t = start_lr * (end_lr / start_lr) ** (t / (num_it - 1))``. The loss is
    smoothed as ``avg = smooth*avg + (1-smooth)*loss`` and debiased by
    ``1 - smooth**(t+1)``; the sweep stops once the smoothed loss exceeds ``diverge``
    times the best seen (or the loss stops being finite). The params are restored
    exactly afterwards, also when the sweep stops on an error.

    ``params`` may be a list, a dict or param groups; the swept lr applies to every
    group (a group's own "lr" is left out for the sweep), its other options stay.
    """
    if not (isinstance(start_lr, (int, float)) and isinstance(end_lr, (int, float))):
        raise TypeError("start_lr and end_lr must be numbers")
    if not 0 < start_lr < end_lr or not math.isfinite(end_lr):
        raise ValueError(f"need 0 < start_lr < end_lr, got start_lr={start_lr}, "
                         f"end_lr={end_lr}")
    if not isinstance(num_it, int) or num_it < 2:
        raise ValueError(f"num_it must be an integer >= 2, got {num_it!r}")
    if not 0 <= smooth < 1:
        raise ValueError(f"smooth must be in [0, 1), got {smooth}")
    if not diverge > 1:
        raise ValueError(f"diverge must be > 1, got {diverge}")
    arrays = flat_params(params)
    _, saved = copy_buffer(arrays)
    copy_into(saved, arrays)
    if isinstance(params, (list, tuple)) and isinstance(params[0], Mapping):
        params = [{k: v for k, v in group.items() if k != "lr"} for group in params]
    ratio = end_lr / start_lr

    def schedule(step):
        return start_lr * ratio ** (step / (num_it - 1))

    lrs, losses = [], []
    try:
        opt = optimizer(params, lr=schedule, **optimizer_kwargs)
        avg, best = 0.0, math.inf
        for t in range(num_it):
            loss, grads = loss_and_grads(params)
            loss = float(loss)
            if not math.isfinite(loss):
                if t == 0:
                    raise ValueError(f"loss_and_grads returned a non-finite loss ({loss}) "
                                     "at the start lr; fix the model before the sweep")
                break
            avg = smooth * avg + (1 - smooth) * loss
            smoothed = avg / (1 - smooth ** (t + 1))
            lrs.append(schedule(t))
            losses.append(smoothed)
            if t > 0 and smoothed > diverge * best:
                break
            best = min(best, smoothed)
            opt.step(grads)
    finally:
        copy_into(arrays, saved)
    return LRFindResult(lrs=lrs, losses=losses, suggestion=_suggest(lrs, losses))
