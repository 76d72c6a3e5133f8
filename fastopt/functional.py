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

import operator
import sys
import threading
import weakref
from types import MappingProxyType

import numpy as np

from . import _safety, _validate, backends
from ._tensorset import TensorSet, flat_view
from .rules import FUNCTIONALS, RULES
from .rules._spec import CONTEXT_DEFAULTS, REQUIRED

# ---------------------------------------------------------------------------
# Running a rule over caller-owned arrays.


def _as_list(x):
    return x if type(x) is list else list(x) if isinstance(x, (list, tuple)) else [x]


def run_rule(rule, params, grads, states, hyper, backend=None, variant=None):
    """Check the arrays, then apply rule ``rule`` (a name in :data:`fastopt.rules.RULES`) with
    already-checked ``hyper`` to caller-owned params and state arrays (``states`` maps
    a state name to one array per param), one fused kernel call per dtype.

    Arrays seen before (the same objects, as when a trainer calls once per step with
    the same weights and state) take a straight route: their :class:`_Plan` (tensor
    sets, overlap checks, launchers) is found by the arrays' ids, and grads that are
    NumPy arrays of the params' dtypes and shapes are checked in a few operations.
    One param given as an array, with its grad and each state as arrays, takes the
    shortest of these routes (:meth:`_Plan.run_one`). Everything else takes the full
    checks, with their errors. ``variant``: the kernel variant
    (:meth:`fastopt.rules.Rule.kernel_variant`) where the caller knows it."""
    if type(params) is np.ndarray:
        arrays = (params, *states.values())
        plan = _PLANS.get(_plan_key(rule, states, backend, arrays))
        if plan is not None and plan.run_one(RULES[rule], arrays, grads, hyper, variant):
            return
        params = [params]
    else:
        params = _as_list(params)
        arrays = params.copy()
        for group in states.values():
            if group is None:
                break
            arrays += _as_list(group)
        else:
            plan = _PLANS.get(_plan_key(rule, states, backend, arrays))
            if plan is not None:
                flat_grads = plan.plain_grads(arrays, _as_list(grads))
                if flat_grads is not None:
                    plan.run(RULES[rule], flat_grads, hyper, variant)
                    return
    _run_checked(rule, params, _as_list(grads), states, hyper, backend, variant)


class _Site:
    """What :func:`run_at` keeps of a call site's last call: the rule, the state names,
    the backend choice, a weak reference to the plan, and ``packed``, the read-only
    hyper mapping of the last direct call given one, with its packed scalars (one
    tuple, replaced whole, so that a thread never reads one call's mapping with
    another's scalars)."""

    __slots__ = ("rule", "names", "chooser", "plan", "packed")

    def __init__(self, rule, names, chooser, plan):
        self.rule, self.names, self.chooser, self.plan = rule, names, chooser, plan
        self.packed = (None, None)


_SITES = {}  # a caller's call-site key -> _Site
_SITES_MAX = 256


def run_at(site, rule, names, arrays, grads, hyper, variant=None):
    """:func:`run_rule` on the default backend for a call site that passes the same
    arrays step after step, as an adapter does for each layer of a model. ``site``: a
    hashable key the caller picks for the site (say ``id(layer)``); ``names``: the state
    names; ``arrays``: the params, then each state's arrays in ``names`` order (one per
    param); ``grads``: a list or tuple, one per param; ``hyper``: checked
    hyperparameters, a dict or a read-only view of one (``types.MappingProxyType``).
    The very view of the site's last call, passed again, has its packed scalars
    reused: a caller that passes a view keeps the dict behind it unchanged (a dict,
    which anyone holding it may change in place, is packed at every call).

    The plan of the site's last call, kept by a weak reference, is tried first: when
    the rule, the state names and the backend choice are the same and the plan's weak
    references show the very same arrays, only the grads are checked
    (:meth:`_Plan.plain_grads`, or :meth:`_Plan.one_grad` for a site of one param), and
    finding the plan by the arrays' ids is skipped. Everything else takes
    :func:`run_rule`, with its checks and errors."""
    kept = _SITES.get(site)
    if kept is not None and kept.rule == rule and kept.names == names \
            and kept.chooser == _chooser(None):
        plan = kept.plan()
        if plan is not None and len(arrays) == len(plan.refs):
            if len(grads) == 1 == len(plan.dtypes):
                flat_grads = plan.one_grad(arrays, grads[0])
            else:
                flat_grads = plan.plain_grads(arrays, grads)
            if flat_grads is not None:
                direct = plan.direct.get(variant)
                if direct is None:
                    plan.run(RULES[rule], flat_grads, hyper, variant)
                    return
                # _Plan.run's one-call branch, inline (through run, with the site's
                # kept scalars, a 3 us cs231n step took 0.1-0.15 us more)
                run, dtype = direct
                last_hyper, values = kept.packed
                if hyper is not last_hyper:
                    values = RULES[rule].pack_values(dtype, hyper)
                    if type(hyper) is MappingProxyType:
                        kept.packed = hyper, values
                # one call into compiled code, which a signal cannot interrupt half way
                run(flat_grads, hyper, values)
                return
    n = len(arrays) // (1 + len(names))
    states = {name: list(arrays[n * (i + 1):n * (i + 2)]) for i, name in enumerate(names)}
    run_rule(rule, list(arrays[:n]), list(grads), states, hyper, variant=variant)
    plan = _PLANS.get(_plan_key(rule, states, None, arrays))
    if plan is not None:
        if len(_SITES) >= _SITES_MAX:
            _SITES.clear()
        _SITES[site] = _Site(rule, names, _chooser(None), weakref.ref(plan))


def _plan_key(rule, states, backend, arrays):
    """The rule, the state names, what chooses the backend (the argument, and the
    environment variable and fork state that apply without one) and the arrays' ids
    (every state list as long as the params: the lengths follow from the names)."""
    return (rule, *states, _chooser(backend), *map(id, arrays))


def _chooser(backend):
    """What chooses the backend of a call: the argument, else the environment variable
    and the fork state that apply without one."""
    return backend if backend is not None else (backends.environment_choice(), backends.FORKED)


def _run_checked(rule, params, grads, states, hyper, backend, variant=None):
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
    plan = _plan(rule, params, state_lists, backend, backend_name)
    plan.spans.check_grads(flat_grads, _grad_name)
    plan.run(RULES[rule], flat_grads, hyper, variant)


def _grad_name(i):
    return f"grad {i}"


class _Plan:
    """What the calls of one rule on the same caller-owned params and states share:
    weak references to the arrays (params first, then each state's), their
    TensorSets (one per dtype) and :class:`fastopt._safety.Spans`, the params' dtypes
    for :func:`fastopt._validate.plain_flat_grads`, the backend, and per kernel
    variant the launchers with their grads' positions."""

    __slots__ = ("refs", "sets", "spans", "dtypes", "runner", "launches", "direct",
                 "__weakref__")

    def __init__(self, sets, spans, dtypes, runner, refs=()):
        self.sets, self.spans, self.dtypes, self.runner = sets, spans, dtypes, runner
        self.refs, self.launches = refs, {}
        # kernel variant -> (launcher, dtype) where a step is one call into compiled code
        self.direct = {}

    def plain_grads(self, arrays, grads):
        """This step's grads as 1-D arrays when ``arrays`` are still the very arrays
        planned for and writable (the flag can be cleared after the first call) and
        each grad is a NumPy array of its param's dtype and shape
        (:func:`fastopt._validate.plain_flat_grads`), checked against the arrays'
        memory; None for anything else (the full checks then decide)."""
        if len(grads) != len(self.dtypes) or len(arrays) != len(self.refs):
            return None
        for ref, a in zip(self.refs, arrays):
            if ref() is not a or not a.flags.writeable:
                return None
        return _validate.plain_flat_grads(grads, self.dtypes, arrays, self.spans, _grad_name)

    def one_grad(self, arrays, grad):
        """``[grad]`` flattened when ``arrays`` (the param, then its states) are the very
        arrays planned for, still writable, and ``grad`` is a NumPy array of the param's
        dtype and shape (the checks of :meth:`plain_grads`, unrolled for one array);
        None for anything else. A grad overlapping the arrays' memory is refused."""
        for ref, a in zip(self.refs, arrays):
            if ref() is not a or not a.flags.writeable:
                return None
        if type(grad) is not np.ndarray or grad.dtype is not self.dtypes[0] \
                or grad.shape != arrays[0].shape:
            return None
        flat_grads = [grad.ravel()]
        owners = self.spans.owners
        if owners is None or grad.base is not None or id(grad) in owners:
            self.spans.check_grads(flat_grads, _grad_name)
        return flat_grads

    def run_one(self, rule, arrays, grad, hyper, variant=None):
        """:meth:`run` for one param and its grad when :meth:`one_grad` vouches for
        them; False, with nothing done, for anything else."""
        flat_grads = self.one_grad(arrays, grad)
        if flat_grads is None:
            return False
        direct = self.direct.get(variant)
        if direct is None:
            self.run(rule, flat_grads, hyper, variant)
        else:
            run, dtype = direct
            run(flat_grads, hyper, rule.pack_values(dtype, hyper))
        return True

    def run(self, rule, flat_grads, hyper, variant=None):
        """Pack the scalars of every set (all of them fit, or this raises before
        anything is written), then run one kernel per set, whole even under Ctrl-C."""
        if variant is None:
            variant = rule.kernel_variant(hyper)
        direct = self.direct.get(variant)
        if direct is None:
            launches = self.launches.get(variant)
            if launches is None:
                launches = self.launches[variant] = self.runner.launches(
                    rule, self.sets, variant, len(flat_grads))
                if len(launches) == 1 and self.runner.single_call:
                    direct = self.direct[variant] = launches[0][0], launches[0][2]
        if direct is not None:
            # one call into compiled code, which a signal cannot interrupt half way
            run, dtype = direct
            run(flat_grads, hyper, rule.pack_values(dtype, hyper))
            return
        steps = [(run, flat_grads if indices is None else [flat_grads[i] for i in indices],
                  rule.pack_values(dtype, hyper)) for run, indices, dtype in launches]
        with _safety.deferred_interrupt():
            for run, grads, values in steps:
                run(grads, hyper, values)


_PLANS = {}  # _plan_key -> _Plan
_PLANS_MAX = 256
_PLANS_LOCK = threading.Lock()


def _plan(rule, params, state_lists, backend, backend_name):
    """The :class:`_Plan` of validated params and states (params and states must not
    overlap), kept while the same array objects come back, as when a trainer calls
    once per step with the same weights and state: it is found by the arrays' ids
    and used only if weak references show the very same objects. Its sets hold views
    of the arrays' memory, so a plan must not outlive the caller's interest: on every
    new plan, plans whose memory nobody but the plans refer to any more are dropped
    (reference counts, as :mod:`fastopt._outputs` uses them), so a caller that lets go
    of its arrays gets their memory back by its next call with other arrays."""
    arrays = list(params) + [a for group in state_lists.values() for a in group]
    names = [f"param {i}" for i in range(len(params))] + [
        f"{name} {i}" for name, group in state_lists.items() for i in range(len(group))]
    spans = _safety.Spans([flat_view(a) for a in arrays], names)
    by_dtype = {}
    for i, p in enumerate(params):
        by_dtype.setdefault(p.dtype, []).append(i)
    sets = [TensorSet([params[i] for i in indices], indices,
                      {name: [group[i] for i in indices] for name, group in state_lists.items()})
            for indices in by_dtype.values()]
    runner = backends.get_backend(backend_name)
    try:
        refs = tuple(weakref.ref(a) for a in arrays)
    except TypeError:  # an array type without weak references: not kept
        return _Plan(sets, spans, (), runner)
    # no strong reference to a caller's array
    plan = _Plan(sets, spans, _validate.plain_dtypes(params), runner, refs)
    with _PLANS_LOCK:
        _drop_unreferenced()
        if len(_PLANS) >= _PLANS_MAX:
            _PLANS.pop(next(iter(_PLANS)), None)
        _PLANS[_plan_key(rule, state_lists, backend, arrays)] = plan
    return plan


def _drop_unreferenced():
    """Drop the plans whose arrays' memory only the plans' own views refer to (the
    caller has let go of those arrays). Host arrays only: a device plan goes when the
    table is full."""
    owners, views = {}, {}  # plan key -> ids of the memory it views; id -> [base, views]
    for key, plan in _PLANS.items():
        ids = owners[key] = set()
        for tensors in plan.sets:
            for view in tensors.params + [v for group in tensors.states.values()
                                          for v in group]:
                if not isinstance(view, np.ndarray) or view.base is None:
                    owners[key] = None  # not a view of host memory: never judged
                    break
                ids.add(id(view.base))
                views.setdefault(id(view.base), [view.base, 0])[1] += 1
            if owners[key] is None:
                break
    # Referred to by the planned views' .base, by `views` and by getrefcount's argument.
    unreferenced = {i for i, entry in views.items()
                    if sys.getrefcount(entry[0]) == entry[1] + 2}
    for key, ids in owners.items():
        if ids is not None and ids <= unreferenced:
            del _PLANS[key]


# ---------------------------------------------------------------------------
# The functional kernels, one per functional front of each rule (fastopt.rules).


class _FrontCall:
    """What the calls of one functional kernel share: its rule, its fixed values, and
    its options' checked values with the states they need, kept for the last few
    distinct sets of option values (a trainer calls with the same options step after
    step). Per call, only what changes per call is checked: the context (``step``,
    ``first``), the carried scalars and ``grad_scale``."""

    MAX_KEPT = 16

    def __init__(self, rule, fixed, option_names):
        self.rule, self.fixed, self.option_names = rule, dict(fixed), tuple(option_names)
        self.per_call = [(name, check) for name, check in rule.checks
                         if name not in self.option_names and name not in self.fixed]
        self.per_call_names = tuple(name for name, _ in self.per_call)
        self.state_names = tuple(s.name for s in rule.states)
        self.kept = {}
        # id(param) -> _Route of a repeated call on one param array; a rule that carries
        # scalars from step to step returns them, and takes the checked route instead
        self.routes = {} if rule.advance is None and not rule.carried else None

    def checked(self, options, per_call, grad_scale):
        """The checked hyperparameters of a call, the names of the states they need and
        the kernel variant (see :func:`run_rule`): ``options`` (values in
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
            needed = rule.state_names(hyper)
            if key is not None:
                if len(self.kept) >= self.MAX_KEPT:
                    self.kept.clear()
                self.kept[key] = ({name: hyper[name] for name in self.option_names
                                   + tuple(self.fixed)}, needed, {})
            return hyper, needed, None
        options, needed, variants = kept
        hyper = options.copy()
        for name, check in self.per_call:
            value = per_call[name]
            # a carried value left out (None) starts at its initial value
            hyper[name] = None if value is None and name in rule.carried else check(value)
        hyper["grad_scale"] = None if grad_scale is None else _validate.grad_scale(grad_scale)
        if rule.carried:
            rule.carried_in(hyper)
        # the variant follows from the options and whether a grad_scale is given
        variant = variants.get(grad_scale is None)
        if variant is None:
            variant = variants[grad_scale is None] = rule.kernel_variant(hyper)
        return hyper, needed, variant


def _run_front(call, param, grad, states, options, per_call, grad_scale, backend):
    """Check the hyperparameters, then run the rule; returns the carried values for
    the next step, for a rule that carries any. ``states`` and ``per_call`` hold values
    in the order of ``call.state_names`` and ``call.per_call_names``."""
    routes = call.routes
    routed = routes is not None and grad_scale is None and type(param) is np.ndarray
    route = routes.get(id(param)) if routed else None
    if route is not None and route.run(call, param, grad, states, options, per_call, backend):
        return None
    rule = call.rule
    hyper, needed, variant = call.checked(options, dict(zip(call.per_call_names, per_call)),
                                          grad_scale)
    named = dict(zip(call.state_names, states))
    run_rule(rule.name, param, grad, {name: named[name] for name in needed}, hyper, backend,
             variant)
    if routed and variant is not None:
        # options seen before: worth a route (options that change per call are not)
        route = _Route.of(call, param, states, options, needed, hyper, variant, backend, route)
        if route is not None:
            if len(routes) >= _Route.MAX_KEPT:
                routes.clear()
            routes[id(param)] = route
    return rule.advance(hyper) if rule.advance is not None else None


class _Route:
    """The straight route of a functional kernel's repeated call on one param array:
    the same option values (the same objects, or equal values of the same types), the
    same param and states (the plan's weak references tell), no grad_scale, and the
    backend chosen as before. It keeps what follows from the options alone: their
    checked values, the common kernel scalars and the plan's launcher. Per call it
    checks the per-call values (``step``, ``first``) and the grad as the full route
    does, packs the rule's own scalars and makes one call into compiled code. It holds
    the plan by a weak reference: the plans decide how long memory is kept."""

    MAX_KEPT = 64  # routes per functional kernel (one per param array of a model)

    __slots__ = ("options", "types", "chooser", "plan", "variant", "pick", "hyper", "common",
                 "last")

    @classmethod
    def of(cls, call, param, states, options, needed, hyper, variant, backend, previous):
        """The route of a call just made on the checked route; None where the call took
        no plan with a one-call launcher, or where ``previous``, the param's route,
        already is this one (what it could not vouch for was the grad, or a per-call
        value: a new route would not take the next call either)."""
        positions = tuple(call.state_names.index(name) for name in needed)
        arrays = (param, *(states[i] for i in positions))
        plan = _PLANS.get(_plan_key(call.rule.name, needed, backend, arrays))
        if plan is None or variant not in plan.direct or len(plan.refs) != len(arrays):
            return None
        types, chooser = tuple(map(type, options)), _chooser(backend)
        if previous is not None and previous.plan() is plan and previous.variant == variant \
                and previous.options == options and previous.types == types \
                and previous.chooser == chooser:
            return None
        route = cls()
        route.options, route.types, route.chooser = options, types, chooser
        route.plan, route.variant = weakref.ref(plan), variant
        # the states a call needs, from the states it was given, as a tuple
        route.pick = operator.itemgetter(slice(0, len(positions))) \
            if positions == tuple(range(len(positions))) else \
            (lambda given: tuple([given[i] for i in positions]))
        route.hyper = {name: hyper[name] for name in hyper if name not in call.per_call_names}
        route.common = call.rule.common_values(hyper)
        route.last = None
        return route

    def run(self, call, param, grad, states, options, per_call, backend):
        """Run the step if this route vouches for the call; False, with nothing done,
        where the checked route must decide. Refuses a bad per-call value or a grad
        overlapping the arrays, as the checked route would, before anything is written."""
        if not all(map(operator.is_, options, self.options)) and (
                options != self.options or tuple(map(type, options)) != self.types):
            return False
        if _chooser(backend) != self.chooser:
            return False
        plan = self.plan()
        if plan is None:
            return False
        hyper = self.hyper.copy()
        checks = call.per_call
        if len(checks) == 1:  # step or first (a route's rule carries no scalars)
            name, check = checks[0]
            values = hyper[name] = check(per_call[0])
        else:
            for (name, check), value in zip(checks, per_call):
                hyper[name] = check(value)
            values = tuple([hyper[name] for name in call.per_call_names])
        flat_grads = plan.one_grad((param, *self.pick(states)), grad)
        if flat_grads is None:
            return False
        run, dtype = plan.direct[self.variant]
        last = self.last  # the last per-call values (checked: an int step, a bool), packed
        if last is None or last[0] != values:
            vector = call.rule.pack_values_after(self.common, dtype, hyper)
            self.last = (values, vector)
        else:
            vector = last[1]
        run(flat_grads, hyper, vector)
        return True


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
              f"({''.join(f'{s.name}, ' for s in rule.states)}), "
              f"({''.join(f'{n}, ' for n in options)}), "
              f"({''.join(f'{n}, ' for n in per_call)}), grad_scale, backend)\n")
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
