"""Optimizer classes over NumPy arrays: SGD, RMSprop, Adam, AdamW, Adagrad.

Each class keeps torch.optim's constructor, defaults and maths (README, "Maths") and
adds ``l1``. State lives in one arena per state name and dtype for each param group,
and one step is one fused multi-tensor kernel call per group and dtype.
"""

import threading
from collections.abc import Mapping

import numpy as np

from . import _device, _safety, _validate, backends
from ._params import is_array, plain
from ._rules import RULES
from ._tensorset import TensorSet
from .functional import CHECKS
from .grads import _all_finite_flat


class Optimizer:
    """Base class: param structure, groups, validation, step and state_dict.

    Subclasses set ``_rule`` (a name in :mod:`fastopt._rules`) and implement
    ``_rule_hyper(group, lr)`` (the rule's keyword arguments for one group; the step
    counter is ``self._steps``) and ``_state_names(group)``.
    """

    _rule = None
    _state_fill_keys = {}  # state name -> group key holding its initial value

    def __init__(self, params, defaults, *, skip_nonfinite=False, backend=None):
        self.defaults = dict(defaults)
        self.skip_nonfinite = _validate.boolean(skip_nonfinite, "skip_nonfinite")
        groups = _param_groups(params)
        self._on_device = backends.placement(
            [p for g in groups for p in _members(g["params"])], "params")
        self.backend = backends.resolve_for(self._on_device, backend)
        self._backend = backends.get_backend(self.backend)
        self._steps = 0
        self._flat, self._names, self._keys = [], [], []
        self.param_groups = []
        for group in groups:
            unknown = set(group) - set(self.defaults) - {"params"}
            if unknown:
                raise ValueError(f"unknown param group option(s): {sorted(unknown)}")
            full = {**self.defaults, **group}
            self._checked_hyper(full, grad_scale=None)
            self.param_groups.append(full)
        self._sets = []
        seen = set()
        for group in self.param_groups:
            members = group["params"]
            items = members.items() if isinstance(members, Mapping) else \
                ((None, p) for p in members)
            group_indices = []
            for key, p in items:
                name = repr(key) if key is not None else str(len(self._flat))
                if id(p) in seen:
                    raise ValueError(f"param {name} appears more than once")
                seen.add(id(p))
                p = _validate.param(p, f"param {name}", device=self._on_device)
                group_indices.append(len(self._flat))
                self._flat.append(p)
                self._names.append(name)
                self._keys.append(key)
            self._sets.append(self._make_sets(group, group_indices))
        if not self._flat:
            raise ValueError("optimizer got an empty parameter list")
        keyed = [k is not None for k in self._keys]
        if any(keyed) and not all(keyed):
            raise ValueError("mix of dict and list params; use one structure")
        self._keyed = all(keyed)
        self._spans = _safety.Spans(self._flat, [f"param {n}" for n in self._names])
        # One step at a time: a step reads and writes the whole state, and a second
        # thread's step would interleave with it (an uncontended lock costs ~0.1 us).
        self._lock = threading.Lock()

    # -- structure ----------------------------------------------------------------

    def _make_sets(self, group, indices):
        by_dtype = {}
        for i in indices:
            by_dtype.setdefault(self._flat[i].dtype, []).append(i)
        fill = {name: float(group[key]) for name, key in self._state_fill_keys.items()}
        return [TensorSet.with_arenas([self._flat[i] for i in idx], idx,
                                      self._state_names(group), fill)
                for idx in by_dtype.values()]

    def _match_grads(self, grads):
        """Grads in flat param order, each checked and as 1-D in its param's order."""
        n = len(self._flat)
        if isinstance(grads, Mapping):
            if not self._keyed:
                raise TypeError("grads is a dict but params were not given by name")
            missing = [k for k in self._keys if k not in grads]
            extra = [k for k in grads if k not in set(self._keys)]
            if missing or extra:
                raise ValueError(f"grads keys do not match params: missing {missing}, "
                                 f"unexpected {extra}")
            ordered = [grads[k] for k in self._keys]
        elif isinstance(grads, (list, tuple)):
            ordered = list(grads)
            nested = (len(ordered) == len(self.param_groups)
                      and not all(is_array(g) for g in ordered))
            if nested:
                ordered = []
                for group, part in zip(self.param_groups, grads):
                    members = group["params"]
                    if isinstance(part, Mapping) and isinstance(members, Mapping):
                        if set(part) != set(members):
                            raise ValueError("grads keys do not match a group's params")
                        ordered.extend(part[k] for k in members)
                    elif isinstance(part, (list, tuple)) and len(part) == len(members):
                        ordered.extend(part)
                    else:
                        raise ValueError("per-group grads must match each group's params")
            if len(ordered) != n:
                raise ValueError(f"expected {n} grads (one per param), got {len(ordered)}")
        else:
            raise TypeError("grads must be a list, a tuple or a dict of arrays, "
                            f"like params; got {type(grads).__name__}")
        flat = [_validate.flat_grad(g, p, f"grad {name}")
                for g, p, name in zip(ordered, self._flat, self._names)]
        self._spans.check_grads(flat, lambda i: f"grad {self._names[i]}")
        return flat

    def _checked_hyper(self, group, grad_scale):
        lr = group["lr"]
        if callable(lr):
            lr = lr(self._steps)
        hyper = CHECKS[self._rule]({**self._rule_hyper(group, lr), "grad_scale": grad_scale})
        return hyper

    # -- the step -----------------------------------------------------------------

    def step(self, grads, *, grad_scale=None):
        """Apply one update to every param from ``grads`` (the structure of params).

        ``grad_scale`` divides every gradient inside the kernel. Returns True, or
        False when ``skip_nonfinite`` is set and a gradient holds NaN or Inf (then
        nothing changes, the step counter included).

        Steps from several threads are taken one at a time, each whole; a Ctrl-C that
        arrives while the kernels run is raised once they are done.
        """
        with self._lock:
            return self._step(grads, grad_scale)

    def _step(self, grads, grad_scale):
        flat_grads = self._match_grads(grads)
        grad_scale = _validate.grad_scale(grad_scale)
        plan = []
        for group, sets in zip(self.param_groups, self._sets):
            hyper = self._checked_hyper(group, grad_scale)
            needed = self._state_names(group)
            for tensors in sets:
                if set(needed) != set(tensors.states):
                    raise ValueError(
                        "this step needs state " + repr(sorted(needed)) + " but the group "
                        "was built with " + repr(sorted(tensors.states)) + "; options that "
                        "add or remove state cannot change after construction")
                packed = RULES[self._rule].pack(tensors.dtype, hyper)  # fits, or raises
                plan.append((tensors, [flat_grads[i] for i in tensors.indices], hyper,
                             packed))
        if self.skip_nonfinite and not _all_finite_flat(flat_grads, self._backend):
            return False
        with _safety.deferred_interrupt():
            for tensors, group_grads, hyper, packed in plan:
                self._backend.optim_step(self._rule, tensors, group_grads, hyper, packed)
            self._steps += 1
        return True

    @property
    def steps(self):
        """The number of steps taken (skipped steps do not count)."""
        return self._steps

    # -- state --------------------------------------------------------------------

    def state(self, index):
        """The state arrays of param ``index`` (flat order) as views with its shape."""
        for sets in self._sets:
            for tensors in sets:
                if index in tensors.indices:
                    j = tensors.indices.index(index)
                    return {name: tensors.shaped(flats[j], j)
                            for name, flats in tensors.states.items()}
        raise IndexError(f"no param {index}")

    def state_dict(self):
        """A flat dict of Python scalars and array copies, savable with ``np.savez``.

        Keys: ``optimizer``, ``steps``, ``group.G.OPTION`` (schedules are code and are
        not saved) and ``state.I.NAME`` for param ``I`` in flat order.
        """
        with self._lock:
            return self._state_dict()

    def _state_dict(self):
        sd = {"optimizer": type(self).__name__, "steps": self._steps}
        for gi, group in enumerate(self.param_groups):
            for key, value in group.items():
                if key != "params" and not callable(value):
                    sd[f"group.{gi}.{key}"] = value
        for index in range(len(self._flat)):
            for name, array in self.state(index).items():
                sd[f"state.{index}.{name}"] = _device.to_host(array) if self._on_device \
                    else array.copy()
        return sd

    def load_state_dict(self, state_dict):
        """Restore :meth:`state_dict` output (or ``np.load`` of it).

        Everything is checked first; a state that does not fit these params raises
        ``ValueError`` and leaves the optimizer exactly as it was.
        """
        with self._lock:
            self._load_state_dict(dict(state_dict))

    def _load_state_dict(self, sd):
        kind = plain(sd.get("optimizer"))
        if kind != type(self).__name__:
            raise ValueError(f"state_dict is for {kind!r}, not {type(self).__name__}")
        steps = plain(sd.get("steps"))
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"state_dict has an invalid 'steps': {steps!r}")
        expected = {"optimizer", "steps"}
        new_groups = []
        for gi, group in enumerate(self.param_groups):
            updated = dict(group)
            for key, value in group.items():
                name = f"group.{gi}.{key}"
                if key == "params" or name not in sd:
                    continue
                expected.add(name)
                if not callable(value):
                    updated[key] = plain(sd[name])
            if sorted(self._state_names(updated)) != sorted(self._state_names(group)):
                raise ValueError(f"state_dict group {gi} needs different state arrays "
                                 "(amsgrad, centered or momentum differ)")
            self._checked_hyper(updated, grad_scale=None)
            new_groups.append(updated)
        writes = []
        for index, p in enumerate(self._flat):
            for name, target in self.state(index).items():
                key = f"state.{index}.{name}"
                expected.add(key)
                if key not in sd:
                    raise ValueError(f"state_dict lacks {key!r}")
                source = np.asarray(sd[key])
                if source.shape != p.shape or source.dtype != p.dtype:
                    raise ValueError(f"state_dict {key!r} has shape {source.shape} and "
                                     f"dtype {source.dtype}; param {self._names[index]} "
                                     f"has {p.shape} and {p.dtype}")
                writes.append((target, source))
        extra = sorted(set(sd) - expected)
        if extra:
            raise ValueError(f"state_dict has entries these params do not: {extra[:5]}")
        with _safety.deferred_interrupt():  # all of it or none of it
            for target, source in writes:
                if self._on_device:
                    _device.write(target, source)
                else:
                    np.copyto(target, source)
            for group, updated in zip(self.param_groups, new_groups):
                group.update(updated)
            self._steps = steps

    def __repr__(self):
        options = ", ".join(f"{k}={v!r}" for k, v in self.defaults.items())
        return (f"{type(self).__name__}({len(self._flat)} params in "
                f"{len(self.param_groups)} group(s), {options}, backend={self.backend!r})")


def _members(params):
    return params.values() if isinstance(params, Mapping) else params


def _param_groups(params):
    """Normalise params to a list of group dicts whose 'params' is a list or a dict."""
    if is_array(params):
        raise TypeError("params must be a list or a dict of arrays, not a single array; "
                        "wrap it in a list")
    if isinstance(params, Mapping):
        return [{"params": dict(params)}]
    if not isinstance(params, (list, tuple)):
        raise TypeError(f"params must be a list, a dict or param groups; "
                        f"got {type(params).__name__}")
    params = list(params)
    if params and all(isinstance(g, Mapping) and "params" in g for g in params):
        groups = []
        for g in params:
            members = g["params"]
            if is_array(members):
                members = [members]
            elif not isinstance(members, Mapping):
                members = list(members)
            groups.append({**g, "params": members})
        return groups
    return [{"params": params}]


def _betas(betas):
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    return betas


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, dampening and Nesterov::

        g = g + weight_decay * p + l1 * sign(p)        (-g first when maximize)
        buf = g (first step) ;  buf = momentum * buf + (1 - dampening) * g
        g = g + momentum * buf  if nesterov else  buf   (with momentum)
        p = p - lr * g
    """

    _rule = "sgd"

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, nesterov=False,
                 weight_decay=0.0, l1=0.0, maximize=False, backend=None, *,
                 skip_nonfinite=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      nesterov=nesterov, weight_decay=weight_decay, l1=l1,
                                      maximize=maximize),
                         skip_nonfinite=skip_nonfinite, backend=backend)

    def _rule_hyper(self, group, lr):
        return dict(lr=lr, momentum=group["momentum"], dampening=group["dampening"],
                    nesterov=group["nesterov"], weight_decay=group["weight_decay"],
                    l1=group["l1"], maximize=group["maximize"], first=self._steps == 0)

    def _state_names(self, group):
        return ["momentum_buffer"] if group["momentum"] != 0 else []


class RMSprop(Optimizer):
    """RMSprop (optionally centered, with momentum)::

        sq = alpha * sq + (1 - alpha) * g * g
        avg = sqrt(sq - ga * ga) + eps  (centered, ga = alpha * ga + (1 - alpha) * g)
              sqrt(sq) + eps            (otherwise)
        buf = momentum * buf + g / avg ; p = p - lr * buf   (momentum > 0)
        p = p - lr * g / avg                                (otherwise)
    """

    _rule = "rmsprop"

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0,
                 momentum=0.0, centered=False, l1=0.0, maximize=False, backend=None, *,
                 skip_nonfinite=False):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered, l1=l1,
                                      maximize=maximize),
                         skip_nonfinite=skip_nonfinite, backend=backend)

    def _rule_hyper(self, group, lr):
        return dict(lr=lr, alpha=group["alpha"], eps=group["eps"], momentum=group["momentum"],
                    centered=group["centered"], weight_decay=group["weight_decay"],
                    l1=group["l1"], maximize=group["maximize"])

    def _state_names(self, group):
        names = ["square_avg"]
        if group["centered"]:
            names.append("grad_avg")
        if group["momentum"] > 0:
            names.append("momentum_buffer")
        return names


class Adam(Optimizer):
    """Adam (Kingma & Ba), optionally AMSGrad, with coupled L2 and L1::

        t = t + 1
        m = beta1 * m + (1 - beta1) * g ;  v = beta2 * v + (1 - beta2) * g * g
        vmax = max(vmax, v), used in place of v   (amsgrad)
        p = p - (lr / (1 - beta1**t)) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)
    """

    _rule = "adam"
    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False, l1=0.0, maximize=False, backend=None, *,
                 skip_nonfinite=False):
        super().__init__(params, dict(lr=lr, betas=tuple(_betas(betas)), eps=eps,
                                      weight_decay=weight_decay, amsgrad=amsgrad, l1=l1,
                                      maximize=maximize),
                         skip_nonfinite=skip_nonfinite, backend=backend)

    def _rule_hyper(self, group, lr):
        beta1, beta2 = _betas(group["betas"])
        return dict(step=self._steps + 1, lr=lr, beta1=beta1, beta2=beta2, eps=group["eps"],
                    weight_decay=group["weight_decay"], decoupled=self._decoupled,
                    amsgrad=group["amsgrad"], l1=group["l1"], maximize=group["maximize"])

    def _state_names(self, group):
        names = ["exp_avg", "exp_avg_sq"]
        if group["amsgrad"]:
            names.append("max_exp_avg_sq")
        return names


class AdamW(Adam):
    """AdamW (Loshchilov & Hutter): Adam with decoupled weight decay::

        t = t + 1 ;  p = p * (1 - lr * weight_decay)
        then the Adam update, without coupled L2
    """

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, l1=0.0, maximize=False, backend=None, *,
                 skip_nonfinite=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, l1=l1, maximize=maximize, backend=backend,
                         skip_nonfinite=skip_nonfinite)


class Adagrad(Optimizer):
    """Adagrad with learning-rate decay::

        t = t + 1 ;  clr = lr / (1 + (t - 1) * lr_decay)
        sum = sum + g * g        (sum starts at initial_accumulator_value)
        p = p - clr * g / (sqrt(sum) + eps)
    """

    _rule = "adagrad"
    _state_fill_keys = {"sum": "initial_accumulator_value"}

    def __init__(self, params, lr=1e-2, lr_decay=0.0, weight_decay=0.0,
                 initial_accumulator_value=0.0, eps=1e-10, l1=0.0, maximize=False,
                 backend=None, *, skip_nonfinite=False):
        _validate.nonnegative(initial_accumulator_value, "initial_accumulator_value")
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value,
                                      eps=eps, l1=l1, maximize=maximize),
                         skip_nonfinite=skip_nonfinite, backend=backend)

    def _rule_hyper(self, group, lr):
        return dict(step=self._steps + 1, lr=lr, lr_decay=group["lr_decay"], eps=group["eps"],
                    weight_decay=group["weight_decay"], l1=group["l1"],
                    maximize=group["maximize"])

    def _state_names(self, group):
        return ["sum"]
