"""Optimizer classes over NumPy arrays, one per optimizer front of each rule in
:mod:`fastopt.rules`: SGD, RMSprop, Adam, AdamW, Adagrad, Adadelta, Adamax, NAdam, RAdam,
ASGD, Rprop and Lion.

Each class keeps torch.optim's constructor, defaults and maths (README, "Maths") and
adds ``l1``. State lives in one arena per state name and dtype for each param group,
and one step is one fused multi-tensor kernel call per group and dtype. The classes
are generated from the rule declarations; :class:`Optimizer` holds all their code.
"""

import threading
from collections.abc import Mapping

import numpy as np

from . import _device, _safety, _validate, backends, quant
from ._params import is_array, plain
from ._tensorset import TensorSet
from .grads import _all_finite_flat
from .rules import OPTIMIZERS
from .rules._spec import LEARNING_RATE, tuple_getter


class Optimizer:
    """Base class: param structure, groups, validation, step and state_dict.

    A subclass sets ``_rule`` (a :class:`fastopt.rules.Rule`) and ``_front`` (its
    :class:`fastopt.rules._spec.Front`); :func:`_optimizer_class` makes them.
    """

    _rule = None
    _front = None

    def __init__(self, params, defaults, *, skip_nonfinite=False, backend=None,
                 state_bits=32, min_8bit_size=4096):
        self.defaults = dict(defaults)
        self.skip_nonfinite = _validate.boolean(skip_nonfinite, "skip_nonfinite")
        if isinstance(state_bits, bool) or state_bits not in (32, 8):
            raise ValueError(f"state_bits must be 32 or 8, got {state_bits!r}")
        if isinstance(min_8bit_size, bool) or not isinstance(min_8bit_size, int) \
                or min_8bit_size < 0:
            raise ValueError(f"min_8bit_size must be an integer >= 0, got {min_8bit_size!r}")
        self.state_bits, self.min_8bit_size = state_bits, min_8bit_size
        groups = _param_groups(params)
        self._on_device = backends.placement(
            [p for g in groups for p in _members(g["params"])], "params")
        self.backend = backends.resolve_for(self._on_device, backend)
        self._backend = backends.get_backend(self.backend)
        self._steps = 0
        self._flat, self._names, self._keys = [], [], []
        self.param_groups = []
        self._carried = []  # per group: the rule's carried scalars (after the first step)
        self._checked = {}  # per group: its _CheckedGroup (checked options, launchers)
        for group in groups:
            unknown = set(group) - set(self.defaults) - {"params"}
            if unknown:
                raise ValueError(f"unknown param group option(s): {sorted(unknown)}")
            full = {**self.defaults, **group}
            self._carried.append({})
            self._checked_hyper(len(self.param_groups), full, grad_scale=None)
            self.param_groups.append(full)
        self._sets = []
        seen = set()
        for gi, group in enumerate(self.param_groups):
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
            self._sets.append(self._make_sets(gi, group, group_indices))
        if not self._flat:
            raise ValueError("optimizer got an empty parameter list")
        keyed = [k is not None for k in self._keys]
        if any(keyed) and not all(keyed):
            raise ValueError("mix of dict and list params; use one structure")
        self._keyed = all(keyed)
        # the grads of named params in flat order
        self._pick = tuple_getter(self._keys) if self._keyed else None
        self._spans = _safety.Spans(self._flat, [f"param {n}" for n in self._names])
        self._plain_dtypes = _validate.plain_dtypes(self._flat)  # for _plain_grads
        # One step at a time: a step reads and writes the whole state, and a second
        # thread's step would interleave with it (an uncontended lock costs ~0.1 us).
        self._lock = threading.Lock()

    # -- structure ----------------------------------------------------------------

    def _make_sets(self, gi, group, indices):
        by_dtype = {}
        for i in indices:
            by_dtype.setdefault(self._flat[i].dtype, []).append(i)
        fill = {s.name: float(group[s.fill]) if isinstance(s.fill, str) else s.fill
                for s in self._rule.states}
        names = self._rule.state_names(self._checked_hyper(gi, group, None))
        signed = {s.name: s.signed for s in self._rule.states}
        sets = []
        for dtype, idx in by_dtype.items():
            # 8-bit state for float32 tensors of at least min_8bit_size elements (as
            # bitsandbytes keeps small tensors' state in float32)
            small = [i for i in idx if self.state_bits == 32 or dtype != np.float32
                     or self._flat[i].size < self.min_8bit_size]
            big = [i for i in idx if i not in small]
            if small:
                sets.append(TensorSet.with_arenas([self._flat[i] for i in small], small,
                                                  names, fill))
            if big:
                sets.append(TensorSet.with_codes([self._flat[i] for i in big], big,
                                                 [(n, signed[n]) for n in names], fill))
        return sets

    def _match_grads(self, grads):
        """Grads in flat param order, each checked and as 1-D in its param's order."""
        flat = self._plain_grads(grads)
        if flat is None:
            flat = self._checked_grads(grads)
            self._spans.check_grads(flat, self._grad_name)
        return flat

    def _grad_name(self, i):
        return f"grad {self._names[i]}"

    def _plain_grads(self, grads):
        """The common case in few operations: a dict (for named params) or a list of
        NumPy arrays of exactly the params' dtypes and shapes, as 1-D arrays; None for
        anything else, which :meth:`_checked_grads` then takes (and refuses with its
        error, where it is wrong)."""
        if type(grads) is dict and self._keyed:
            if len(grads) != len(self._keys):
                return None
            try:
                grads = self._pick(grads)
            except (KeyError, TypeError):
                return None
        elif type(grads) is not list or len(grads) != len(self._flat):
            return None
        return _validate.plain_flat_grads(grads, self._plain_dtypes, self._flat, self._spans,
                                          self._grad_name)

    def _checked_grads(self, grads):
        """Grads in flat param order as :meth:`_match_grads` gives them, from any
        structure and layout the API accepts, with the error for what it does not."""
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
        return [_validate.flat_grad(g, p, f"grad {name}")
                for g, p, name in zip(ordered, self._flat, self._names)]

    def _checked_hyper(self, gi, group, grad_scale):
        """Group ``gi``'s kernel hyperparameters for the next step, checked (``grad_scale``
        has been checked by the caller). The checked options are kept while the group's
        values stay the same, so a step re-checks only what changes between steps: a
        scheduled lr; the step counter and the carried scalars are the optimizer's own."""
        rule, lr = self._rule, group["lr"]
        cached = self._checked.get(gi)
        if cached is None or not cached.matches(group):
            checked = rule.check(rule.carried_in(self._hyper(gi, group, grad_scale)))
            self._checked[gi] = _CheckedGroup(group, checked)
            return checked
        hyper = dict(cached.checked, grad_scale=grad_scale)
        if callable(lr):
            hyper["lr"] = LEARNING_RATE(lr(self._steps))
        hyper = self._per_step(gi, hyper)
        return rule.carried_in(hyper) if rule.carried else hyper

    def _per_step(self, gi, hyper):
        """``hyper`` with what the optimizer itself supplies each step: the step (from
        1) or whether it is the first, and group ``gi``'s carried scalars (None before
        the first step: :meth:`Rule.carried_in` then gives their initial values)."""
        rule = self._rule
        if "step" in rule.context:
            hyper["step"] = self._steps + 1
        if "first" in rule.context:
            hyper["first"] = self._steps == 0
        if rule.carried:
            carried = self._carried[gi]
            for name in rule.carried:
                hyper[name] = carried.get(name)
        return hyper

    def _hyper(self, gi, group, grad_scale):
        """Group ``gi``'s kernel hyperparameters for the next step, unchecked."""
        rule, front = self._rule, self._front
        lr = group["lr"]
        hyper = dict(front.fixed, lr=lr(self._steps) if callable(lr) else lr,
                     grad_scale=grad_scale)
        for option in rule.options:
            if option.name in front.fixed or option.name == "lr":
                continue
            if not option.kernel:
                option.check(group[option.name])
            elif option.split:
                hyper.update(option.parts(group[option.name]))
            else:
                hyper[option.name] = group[option.name]
        if rule.penalties:
            hyper["l1"], hyper["maximize"] = group["l1"], group["maximize"]
        return self._per_step(gi, hyper)

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
        if backends.FORKED and self._backend.name == "numba":
            self._rebind()
        flat_grads = self._match_grads(grads)
        if grad_scale is not None:
            grad_scale = _validate.grad_scale(grad_scale)
        rule = self._rule
        if len(self._sets) == 1:  # one group, most often one launch: the short way
            hyper = self._checked_hyper(0, self.param_groups[0], grad_scale)
            hypers = (hyper,)
            launches = self._launches(0, hyper, self._sets[0])
            if len(launches) == 1 and launches[0][1] is None:  # all the grads, one call
                run, _, dtype = launches[0]
                plan = ((run, flat_grads, hyper, rule.pack_values(dtype, hyper)),)
            else:
                plan = self._group_plan(hyper, launches, flat_grads)
        else:
            hypers = [self._checked_hyper(gi, group, grad_scale)
                      for gi, group in enumerate(self.param_groups)]
            plan = [step for gi, (hyper, sets) in enumerate(zip(hypers, self._sets))
                    for step in self._group_plan(hyper, self._launches(gi, hyper, sets),
                                                 flat_grads)]
        if self.skip_nonfinite and not _all_finite_flat(flat_grads, self._backend):
            return False
        with _safety.deferred_interrupt():
            for run, group_grads, hyper, values in plan:
                run(group_grads, hyper, values)
            if rule.advance is not None:
                self._carried = [rule.advance(hyper) for hyper in hypers]
            self._steps += 1
        return True

    def _group_plan(self, hyper, launches, flat_grads):
        """``[(launcher, grads, hyper, values)]`` of one group's ``launches`` for this
        step, every scalar packed (each fits its dtype, or this raises before anything
        is written)."""
        pack = self._rule.pack_values
        return [(run, flat_grads if indices is None else [flat_grads[i] for i in indices],
                 hyper, pack(dtype, hyper)) for run, indices, dtype in launches]

    def _rebind(self):
        """In a process forked after the thread pools started (backends.FORKED), take
        the backend that stands in for this one and drop the launchers of the old."""
        self.backend = backends.resolve_name(self.backend)
        self._backend = backends.get_backend(self.backend)
        for cached in self._checked.values():
            cached.launches.clear()

    def _launches(self, gi, hyper, sets):
        """``[(launcher, indices, dtype)]`` of group ``gi``'s sets for this step (the
        positions of their grads among all params', None for all). The kernel variant
        depends on the group's options and on whether a grad_scale is given, not on
        the step, so the launchers are kept with the group's checked options (and
        the state they need checked once, when the options change)."""
        cached = self._checked[gi]
        scaled = hyper["grad_scale"] is not None
        launches = cached.launches.get(scaled)
        if launches is None:
            self._check_states(hyper, sets)
            rule = self._rule
            launches = cached.launches[scaled] = self._backend.launches(
                rule, sets, rule.kernel_variant(hyper), len(self._flat))
        return launches

    def _check_states(self, hyper, sets):
        """Refuse options that need other state than the group was built with."""
        needed = self._rule.state_names(hyper)
        for tensors in sets:
            if set(needed) != set(tensors.states):
                raise ValueError(
                    "this step needs state " + repr(sorted(needed)) + " but the group "
                    "was built with " + repr(sorted(tensors.states)) + "; options that "
                    "add or remove state cannot change after construction")

    @property
    def steps(self):
        """The number of steps taken (skipped steps do not count)."""
        return self._steps

    # -- state --------------------------------------------------------------------

    def _locate(self, index):
        """``(tensors, j)``: the tensor set holding param ``index``, and its place there."""
        for sets in self._sets:
            for tensors in sets:
                if index in tensors.indices:
                    return tensors, tensors.indices.index(index)
        raise IndexError(f"no param {index}")

    def state(self, index):
        """The state arrays of param ``index`` (flat order) with its shape: views of
        the state, or, for 8-bit state, its float32 values decoded (copies)."""
        tensors, j = self._locate(index)
        if tensors.bits == 8:
            host = _device.to_host if self._on_device else np.asarray
            return {name: tensors.shaped(quant.dequantize_blockwise(
                host(codes[j]), host(tensors.absmax[name][j]), tensors.signed[name]), j)
                for name, codes in tensors.states.items()}
        return {name: tensors.shaped(flats[j], j) for name, flats in tensors.states.items()}

    def _raw_state(self, index):
        """``{key suffix: array view}`` of what param ``index``'s state is stored as:
        ``NAME`` (its shape), and for 8-bit state ``NAME`` (uint8 codes) and
        ``NAME.absmax`` (float32, one per block)."""
        tensors, j = self._locate(index)
        raw = {}
        for name, flats in tensors.states.items():
            raw[name] = tensors.shaped(flats[j], j)
            if tensors.bits == 8:
                raw[f"{name}.absmax"] = tensors.absmax[name][j]
        return raw

    def state_dict(self):
        """A flat dict of Python scalars and array copies, savable with ``np.savez``.

        Keys: ``optimizer``, ``steps``, ``group.G.OPTION`` (schedules are code and are
        not saved), ``state.I.NAME`` for param ``I`` in flat order, and
        ``carried.G.NAME`` for the scalars a rule carries from step to step (NAdam's
        ``mu_product``, ASGD's ``eta`` and ``mu``), once a step has been taken.
        """
        with self._lock:
            return self._state_dict()

    def _state_dict(self):
        sd = {"optimizer": self._front.name, "steps": self._steps}
        for gi, group in enumerate(self.param_groups):
            for key, value in group.items():
                if key != "params" and not callable(value):
                    sd[f"group.{gi}.{key}"] = value
            for name, value in self._carried[gi].items():
                sd[f"carried.{gi}.{name}"] = value
        for index in range(len(self._flat)):
            for name, array in self._raw_state(index).items():
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
        if kind != self._front.name:
            raise ValueError(f"state_dict is for {kind!r}, not {self._front.name}")
        steps = plain(sd.get("steps"))
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"state_dict has an invalid 'steps': {steps!r}")
        expected = {"optimizer", "steps"}
        new_groups, new_carried = [], []
        for gi, group in enumerate(self.param_groups):
            updated = dict(group)
            for key, value in group.items():
                name = f"group.{gi}.{key}"
                if key == "params" or name not in sd:
                    continue
                expected.add(name)
                if not callable(value):
                    updated[key] = plain(sd[name])
            carried = {}
            for name in self._rule.carried:
                key = f"carried.{gi}.{name}"
                if key in sd:
                    expected.add(key)
                    carried[name] = _validate.real(plain(sd[key]), key)
                elif steps:
                    raise ValueError(f"state_dict lacks {key!r}")
            now = self._rule.state_names(self._checked_hyper(gi, group, None))
            wanted = self._rule.state_names(self._checked_hyper(gi, updated, None))
            if sorted(wanted) != sorted(now):
                changed = [k for k in group if k != "params" and not callable(group[k])
                           and updated[k] != group[k]]
                raise ValueError(f"state_dict group {gi} needs state {sorted(wanted)}, not "
                                 f"{sorted(now)}: its {', '.join(changed)} differ(s), and "
                                 "options that add or remove state cannot change")
            new_groups.append(updated)
            new_carried.append(carried)
        writes = []
        for index in range(len(self._flat)):
            for name, target in self._raw_state(index).items():
                key = f"state.{index}.{name}"
                expected.add(key)
                if key not in sd:
                    raise ValueError(f"state_dict lacks {key!r}")
                source = np.asarray(sd[key])
                if source.shape != target.shape or source.dtype != target.dtype:
                    kind = "8-bit codes" if target.dtype == np.uint8 else \
                        "block absmax values" if name.endswith(".absmax") else "the state"
                    raise ValueError(f"state_dict {key!r} has shape {source.shape} and "
                                     f"dtype {source.dtype}; param {self._names[index]} "
                                     f"keeps {kind} of shape {target.shape} and dtype "
                                     f"{target.dtype} (state_bits={self.state_bits})")
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
            self._carried = new_carried
            self._steps = steps

    def __repr__(self):
        options = ", ".join(f"{k}={v!r}" for k, v in self.defaults.items())
        return (f"{type(self).__name__}({len(self._flat)} params in "
                f"{len(self.param_groups)} group(s), {options}, backend={self.backend!r})")


class _CheckedGroup:
    """A param group's checked hyperparameters, and what its options were when they
    were checked. :meth:`matches` tells in a few operations whether they still are:
    each option is the same object or an equal value, and a list or array option
    (which can change in place) has the same contents."""

    __slots__ = ("keys", "values", "mutable", "size", "checked", "launches")

    def __init__(self, group, checked):
        keys = [k for k in group if k != "params"]
        self.keys = tuple_getter(keys)  # the options' values, as a tuple
        self.values = self.keys(group)
        self.mutable = [(k, _frozen(group[k])) for k in keys
                        if isinstance(group[k], (list, np.ndarray))]
        self.size = len(group)
        self.checked = checked
        self.launches = {}  # grad_scale given? -> the step's launchers (Optimizer._launches)

    def matches(self, group):
        if len(group) != self.size:
            return False
        try:
            if self.keys(group) != self.values:
                return False
        except (KeyError, ValueError, TypeError):  # a key gone; arrays compared
            return False
        return not self.mutable or all(_frozen(group[k]) == frozen
                                       for k, frozen in self.mutable)


def _frozen(value):
    """A group option's value as a comparable snapshot (a list or array may be changed
    in place after it was checked)."""
    if isinstance(value, np.ndarray):
        return ("array", value.dtype.str, value.shape, value.tobytes())
    return (type(value), *value) if isinstance(value, (list, tuple)) else value


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


def _optimizer_class(front, rule, state_bits=32):
    """The optimizer class ``front.name`` for ``rule``: a subclass of :class:`Optimizer`
    whose constructor has the rule's options, in order, with their defaults, then
    ``l1``, ``maximize`` and ``backend``, and ``skip_nonfinite``, ``state_bits`` and
    ``min_8bit_size`` by keyword. ``state_bits=8``: the class ``NAME8bit``, whose
    state is 8-bit by default (bitsandbytes' names)."""
    options = rule.class_options(front)
    defaults = dict(options)
    arguments = ", ".join(f"{name}=_defaults[{name!r}]" for name in defaults)
    name = front.name if state_bits == 32 else f"{front.name}8bit"
    source = (f"def __init__(self, params, {arguments}, backend=None, *, "
              f"skip_nonfinite=False, state_bits={state_bits}, min_8bit_size=4096):\n"
              f"    Optimizer.__init__(self, params, "
              f"{{{', '.join(f'{name!r}: {name}' for name in defaults)}}}, "
              f"skip_nonfinite=skip_nonfinite, backend=backend, state_bits=state_bits, "
              f"min_8bit_size=min_8bit_size)\n")
    namespace = {"Optimizer": Optimizer, "_defaults": defaults}
    exec(source, namespace)  # noqa: S102 - generated from the rule declarations
    init = namespace["__init__"]
    init.__qualname__ = f"{name}.__init__"
    doc = front.doc if state_bits == 32 else (
        f"{front.name} with 8-bit blockwise state (``state_bits=8``; tensors under "
        f"``min_8bit_size`` elements keep float32 state):\n\n" + front.doc)
    return type(name, (Optimizer,), {
        "__init__": init, "__doc__": doc, "__module__": __name__,
        "_rule": rule, "_front": front})


# The optimizers with an 8-bit alias: bitsandbytes' (SGD with momentum, RMSprop, Adam,
# AdamW, Adagrad, Lion) and those whose state is moments of the same kind. Rprop's
# step sizes and ASGD's average are left in float32.
EIGHT_BIT = ("SGD", "RMSprop", "Adam", "AdamW", "Adagrad", "Lion", "Adadelta", "Adamax",
             "NAdam", "RAdam")


CLASSES = {front.name: _optimizer_class(front, rule) for front, rule in OPTIMIZERS}
CLASSES.update({f"{front.name}8bit": _optimizer_class(front, rule, state_bits=8)
                for front, rule in OPTIMIZERS if front.name in EIGHT_BIT})
globals().update(CLASSES)
__all__ = ["Optimizer", *CLASSES]
