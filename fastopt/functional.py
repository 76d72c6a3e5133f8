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
    a state name to one array per param), one fused kernel call per dtype."""
    params, grads = _as_list(params), _as_list(grads)
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
    packed = [RULES[rule].pack(tensors.dtype, hyper) for tensors in sets]  # fit, or raise
    runner = backends.get_backend(backend_name)
    with _safety.deferred_interrupt():
        for tensors, scalars in zip(sets, packed):
            runner.optim_step(rule, tensors, [flat_grads[i] for i in tensors.indices],
                              hyper, scalars)


_SETS = {}  # (rule, param ids, state ids) -> (weak references, TensorSets, Spans)
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
    key = (rule, tuple(map(id, params)),
           tuple((name, tuple(map(id, group))) for name, group in state_lists.items()))
    with _SETS_LOCK:
        entry = _SETS.get(key)
    if entry is not None and all(ref() is a for ref, a in zip(entry[0], arrays)):
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
    with _SETS_LOCK:
        _drop_unreferenced()
        if len(_SETS) >= _SETS_MAX:
            _SETS.pop(next(iter(_SETS)), None)
        _SETS[key] = (refs, sets, spans)
    return sets, spans


def _drop_unreferenced():
    """Drop the cache entries whose arrays' memory only the cache's own views refer to
    (the caller has let go of those arrays). Host arrays only: a device entry goes when
    the cache is full."""
    owners, views = {}, {}  # entry -> ids of the memory it views; id -> [base, views]
    for key, (_, sets, _) in _SETS.items():
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


def _run_front(rule, fixed, param, grad, states, hyper, backend):
    """Check ``hyper`` (with the front's fixed values), then run the rule; returns the
    carried values for the next step, for a rule that carries any."""
    hyper = rule.check(rule.carried_in({**hyper, **fixed}))
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
    hyper = [name for name in rule.hyper_names if name not in front.fixed]
    source = (f"def {front.name}(param, grad, {', '.join(positional)}, *, "
              f"{', '.join(keywords)}):\n"
              f"    return _run_front(_rule, _fixed, param, grad, "
              f"{{{', '.join(f'{s.name!r}: {s.name}' for s in rule.states)}}}, "
              f"{{{', '.join(f'{n!r}: {n}' for n in hyper)}}}, backend)\n")
    namespace = {"_run_front": _run_front, "_rule": rule, "_fixed": dict(front.fixed),
                 "_defaults": defaults}
    exec(source, namespace)  # noqa: S102 - generated from the rule declarations
    function = namespace[front.name]
    function.__doc__ = front.doc
    function.__module__ = __name__
    return function


KERNELS = {front.name: _functional(front, rule) for front, rule in FUNCTIONALS}
globals().update(KERNELS)
__all__ = ["run_rule", *KERNELS]
