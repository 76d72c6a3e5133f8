"""Stateless, in-place optimizer kernels: one function per update rule.

Each function takes a param (or a list of params), its gradient(s) and the state
array(s) it needs, and updates them in place in one fused pass. It returns nothing,
except for the rules that carry per-step scalars from one step to the next (NAdam's
``mu_product``, ASGD's ``eta`` and ``mu``): those take them as keywords and return
their values for the next step. The functions are generated from the rule
declarations in :mod:`fastopt.rules`, each with its update rule as its docstring.
All arguments are validated before anything is written. A list is handled by one
multi-tensor call per dtype. The optimizer classes in :mod:`fastopt.optim` are thin
layers over the same validators and backend calls.

In every rule the gradient is first prepared as::

    g = grad / grad_scale              (when grad_scale is given)
    g = -g                             (maximize)
    g = g + weight_decay * p           (coupled L2; decoupled decay instead multiplies
                                        p by 1 - lr * weight_decay: AdamW, Lion, ...)
    g = g + l1 * sign(p)               (sign(0) = 0)
"""

import sys
import threading
import weakref

import numpy as np

from . import _safety, _validate, backends
from ._tensorset import TensorSet, flat_view
from .rules import FUNCTIONALS, RULES
from .rules._spec import CONTEXT_DEFAULTS, REQUIRED

# ---------------------------------------------------------------------------
# Running a rule over caller-owned arrays.


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def run_rule(rule, params, grads, states, hyper, backend=None):
    """Check the arrays, then apply rule ``rule`` (a name in :data:`fastopt.rules.RULES`) with
    already-checked ``hyper`` to caller-owned params and state arrays (``states`` maps
    a state name to one array per param), one fused kernel call per dtype.

    Arrays seen before (the same objects, as when a trainer calls once per step with
    the same weights and state) skip the checks that cannot have changed: their
    tensor sets and overlap checks are cached (:func:`_tensor_sets`), and grads that
    are plain C-contiguous arrays of the params' dtypes and shapes are checked in a
    few operations. Everything else takes the full checks, with their errors."""
    params, grads = _as_list(params), _as_list(grads)
    state_lists = {name: _as_list(arrays) for name, arrays in states.items()
                   if arrays is not None}
    entry = _cached_sets(rule, params, state_lists) if len(state_lists) == len(states) \
        else None
    flat_grads = _plain_grads(entry, grads) if entry is not None else None
    if flat_grads is None:
        _run_checked(rule, params, grads, states, hyper, backend)
        return
    _refs, sets, spans, _specs = entry
    spans.check_grads(flat_grads, lambda i: f"grad {i}")
    _launch(RULES[rule], sets, flat_grads, hyper,
            backends.get_backend(backends.resolve_for(False, backend)))


def _run_checked(rule, params, grads, states, hyper, backend):
    """:func:`run_rule` with every check made (the first call on new arrays)."""
    if not params:
        raise ValueError("no params given")
    if len(grads) != len(params):
        raise ValueError(f"got {len(grads)} grads for {len(params)} params")
    if len({id(p) for p in params}) != len(params):
        raise ValueError("the same param appears more than once")
    on_device = backends.placement(params, "params")
    backend_name = backends.resolve_for(on_device, backend)
    params = [_validate.param(p, f"param {i}", device=on_device)
              for i, p in enumerate(params)]
    flat_grads = [_validate.flat_grad(g, p, f"grad {i}") for i, (g, p) in
                  enumerate(zip(grads, params))]
    state_lists = {}
    for name, arrays in states.items():
        if arrays is None:
            raise ValueError(f"{name} is required with these options")
        arrays = _as_list(arrays)
        if len(arrays) != len(params):
            raise ValueError(f"got {len(arrays)} {name} arrays for {len(params)} params")
        state_lists[name] = [_validate.state(s, p, f"{name} {i}") for i, (s, p) in
                             enumerate(zip(arrays, params))]
    sets, spans = _tensor_sets(rule, params, state_lists)
    spans.check_grads(flat_grads, lambda i: f"grad {i}")
    _launch(RULES[rule], sets, flat_grads, hyper, backends.get_backend(backend_name))


def _launch(rule, sets, flat_grads, hyper, runner):
    """Pack the scalars of every set (all of them fit, or this raises before anything
    is written), then run one kernel per set, whole even under Ctrl-C."""
    flags, slots = rule.kernel_flags(hyper), rule.slots(hyper)
    plan = [(runner.launch(rule, tensors, flags, slots),
             [flat_grads[i] for i in tensors.indices], rule.pack(tensors.dtype, hyper))
            for tensors in sets]
    if len(plan) == 1 and runner.single_call:  # a signal cannot arrive inside one C call
        run, grads, packed = plan[0]
        run(grads, hyper, packed)
        return
    with _safety.deferred_interrupt():
        for run, grads, packed in plan:
            run(grads, hyper, packed)


def _plain_grads(entry, grads):
    """The grads of a cached entry as 1-D views when each is a C-contiguous NumPy array
    of its param's dtype and shape and the params and states are still writable;
    None for anything else (the full checks then decide)."""
    refs, _sets, _spans, dtypes = entry
    if len(grads) != len(dtypes):
        return None
    arrays = [ref() for ref in refs]  # the params first, then the states
    if not all(a.flags.writeable for a in arrays):  # the flag can be cleared after the first call
        return None
    return _validate.plain_flat_grads(grads, dtypes, arrays)


def _cache_key(rule, params, state_lists):
    """The rule, the state names and the ids of the params and of each state's arrays
    (every list as long as the params: the lengths follow from the names)."""
    return (rule, tuple(state_lists), *map(id, params),
            *[id(a) for group in state_lists.values() for a in group])


def _cached_sets(rule, params, state_lists, key=None):
    """The cache entry of exactly these arrays (the same objects), or None."""
    with _SETS_LOCK:
        entry = _SETS.get(key or _cache_key(rule, params, state_lists))
    if entry is None:
        return None
    arrays = params + [a for group in state_lists.values() for a in group]
    refs = entry[0]
    if len(refs) != len(arrays) or any(ref() is not a for ref, a in zip(refs, arrays)):
        return None
    return entry


_SETS = {}  # (rule, param ids, state ids) -> (weak references, TensorSets, Spans, dtypes)
_SETS_MAX = 256
_SETS_LOCK = threading.Lock()


def _tensor_sets(rule, params, state_lists):
    """The TensorSets (one per dtype) of validated params and states, and their
    :class:`fastopt._safety.Spans` (params and states must not overlap).

    They are cached while the same array objects come back, as when a trainer calls
    once per step with the same weights and state: an entry is found by the arrays'
    ids and used only if weak references show the very same objects. Its sets hold
    views of the arrays' memory, so an entry must not outlive the caller's interest:
    on every miss, entries whose memory nobody but the cache refers to any more are
    dropped (reference counts, as :mod:`fastopt._outputs` uses them), so a caller that
    lets go of its arrays gets their memory back by its next call with other arrays."""
    arrays = list(params) + [a for group in state_lists.values() for a in group]
    key = _cache_key(rule, params, state_lists)
    entry = _cached_sets(rule, params, state_lists, key)
    if entry is not None:
        return entry[1], entry[2]
    names = [f"param {i}" for i in range(len(params))] + [
        f"{name} {i}" for name, group in state_lists.items() for i in range(len(group))]
    spans = _safety.Spans([flat_view(a) for a in arrays], names)
    by_dtype = {}
    for i, p in enumerate(params):
        by_dtype.setdefault(p.dtype, []).append(i)
    sets = [TensorSet([params[i] for i in indices], indices,
                      {name: [group[i] for i in indices] for name, group in state_lists.items()})
            for indices in by_dtype.values()]
    try:
        refs = tuple(weakref.ref(a) for a in arrays)
    except TypeError:  # an array type without weak references: not cached
        return sets, spans
    dtypes = _validate.plain_dtypes(params)  # no strong reference to a caller's array
    with _SETS_LOCK:
        _drop_unreferenced()
        if len(_SETS) >= _SETS_MAX:
            _SETS.pop(next(iter(_SETS)), None)
        _SETS[key] = (refs, sets, spans, dtypes)
    return sets, spans


def _drop_unreferenced():
    """Drop the cache entries whose arrays' memory only the cache's own views refer to
    (the caller has let go of those arrays). Host arrays only: a device entry goes when
    the cache is full."""
    owners, views = {}, {}  # entry -> ids of the memory it views; id -> [base, views]
    for key, (_, sets, _, _) in _SETS.items():
        ids = owners[key] = set()
        for tensors in sets:
            for view in tensors.params + [v for group in tensors.states.values()
                                          for v in group]:
                if not isinstance(view, np.ndarray) or view.base is None:
                    owners[key] = None  # not a view of host memory: never judged
                    break
                ids.add(id(view.base))
                views.setdefault(id(view.base), [view.base, 0])[1] += 1
            if owners[key] is None:
                break
    # Referred to by the cached views' .base, by `views` and by getrefcount's argument.
    unreferenced = {i for i, entry in views.items()
                    if sys.getrefcount(entry[0]) == entry[1] + 2}
    for key, ids in owners.items():
        if ids is not None and ids <= unreferenced:
            del _SETS[key]


# ---------------------------------------------------------------------------
# The functional kernels, one per functional front of each rule (fastopt.rules).


class _FrontCall:
    """What the calls of one functional kernel share: its rule, its fixed values, and
    its options' checked values, kept for the last few distinct sets of option values
    (a trainer calls with the same options step after step). Per call, only what
    changes per call is checked: the context (``step``, ``first``), the carried
    scalars and ``grad_scale``."""

    MAX_KEPT = 16

    def __init__(self, rule, fixed, option_names):
        self.rule, self.fixed, self.option_names = rule, dict(fixed), tuple(option_names)
        self.per_call = [(name, check) for name, check in rule.checks
                         if name not in self.option_names and name not in self.fixed]
        self.kept = {}

    def checked(self, options, per_call, grad_scale):
        """The checked hyperparameters of a call: ``options`` (values in
        ``option_names`` order), ``per_call`` (context and carried values by name)."""
        rule = self.rule
        key = (options, tuple(map(type, options)))  # True and 1 are equal but checked apart
        try:
            kept = self.kept.get(key)
        except TypeError:  # an unhashable value: checked below, and refused or not kept
            key, kept = None, None
        if kept is None:
            hyper = dict(zip(self.option_names, options), **self.fixed, **per_call,
                         grad_scale=grad_scale)
            hyper = rule.check(rule.carried_in(hyper))
            if key is not None:
                if len(self.kept) >= self.MAX_KEPT:
                    self.kept.clear()
                self.kept[key] = {name: hyper[name] for name in self.option_names
                                  + tuple(self.fixed)}
            return hyper
        hyper = dict(kept)
        for name, check in self.per_call:
            value = per_call[name]
            # a carried value left out (None) starts at its initial value
            hyper[name] = None if value is None and name in rule.carried else check(value)
        hyper["grad_scale"] = _validate.grad_scale(grad_scale)
        return rule.carried_in(hyper)


def _run_front(call, param, grad, states, options, per_call, grad_scale, backend):
    """Check the hyperparameters, then run the rule; returns the carried values for
    the next step, for a rule that carries any."""
    rule = call.rule
    hyper = call.checked(options, per_call, grad_scale)
    needed = rule.state_names(hyper)
    run_rule(rule.name, param, grad, {name: states[name] for name in needed}, hyper, backend)
    return rule.advance(hyper) if rule.advance is not None else None


def _functional(front, rule):
    """The function ``front.name`` for ``rule``, with a real signature: the states as
    positional arguments (those that exist only with some options default to None),
    the hyperparameters as keywords (``lr`` and ``step`` required)."""
    defaults = {}
    positional = [s.name if s.when is None else f"{s.name}=None" for s in rule.states]
    keywords = [name if CONTEXT_DEFAULTS[name] is REQUIRED else f"{name}={CONTEXT_DEFAULTS[name]!r}"
                for name in rule.context]
    for option in rule.options:
        if not option.kernel or option.name in front.fixed:
            continue
        default = front.defaults.get(option.name, option.default)
        names = [n for n, _ in option.split] or [option.name]
        values = list(default) if option.split else [default]
        for name, value in zip(names, values):
            if option.name == "lr" or value is REQUIRED:
                keywords.append(name)
            else:
                defaults[name] = value
                keywords.append(f"{name}=_defaults[{name!r}]")
    if rule.penalties:
        keywords += ["l1=0.0", "maximize=False"]
    keywords += [f"{name}=None" for name in rule.carried] + ["grad_scale=None", "backend=None"]
    per_call = list(rule.context) + list(rule.carried)
    options = [name for name in rule.hyper_names
               if name not in front.fixed and name not in per_call and name != "grad_scale"]
    source = (f"def {front.name}(param, grad, {', '.join(positional)}, *, "
              f"{', '.join(keywords)}):\n"
              f"    return _run_front(_call, param, grad, "
              f"{{{', '.join(f'{s.name!r}: {s.name}' for s in rule.states)}}}, "
              f"({''.join(f'{n}, ' for n in options)}), "
              f"{{{', '.join(f'{n!r}: {n}' for n in per_call)}}}, grad_scale, backend)\n")
    namespace = {"_run_front": _run_front, "_call": _FrontCall(rule, front.fixed, options),
                 "_defaults": defaults}
    exec(source, namespace)  # noqa: S102 - generated from the rule declarations
    function = namespace[front.name]
    function.__doc__ = front.doc
    function.__module__ = __name__
    return function


KERNELS = {front.name: _functional(front, rule) for front, rule in FUNCTIONALS}
globals().update(KERNELS)
__all__ = ["run_rule", *KERNELS]
