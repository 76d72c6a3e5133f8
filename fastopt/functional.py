"""Stateless, in-place optimizer kernels: one function per update rule.

Each function takes a param (or a list of params), its gradient(s) and the state
array(s) it needs, updates them in place in one fused pass, and returns nothing.
All arguments are validated before anything is written. A list is handled by one
multi-tensor call per dtype. The optimizer classes in :mod:`fastopt.optim` are thin
layers over the same validators and backend calls.

In every rule the gradient is first prepared as::

    g = grad / grad_scale              (when grad_scale is given)
    g = -g                             (maximize)
    g = g + weight_decay * p           (coupled L2; not in AdamW)
    g = g + l1 * sign(p)               (sign(0) = 0)
"""

import sys
import threading
import weakref

import numpy as np

from . import _safety, _validate, backends
from ._rules import RULES
from ._tensorset import TensorSet, flat_view

# ---------------------------------------------------------------------------
# Hyperparameter checks (shared with fastopt.optim), as torch.optim makes them.


def check_sgd(kw):
    """Validate SGD hyperparameters (lr may not be a schedule here)."""
    _common(kw)
    kw["momentum"] = _validate.nonnegative(kw["momentum"], "momentum")
    kw["dampening"] = _validate.real(kw["dampening"], "dampening")
    kw["nesterov"] = _validate.boolean(kw["nesterov"], "nesterov")
    if kw["nesterov"] and (kw["momentum"] <= 0 or kw["dampening"] != 0):
        raise ValueError("nesterov momentum requires a momentum > 0 and zero dampening")
    return kw


def check_rmsprop(kw):
    """Validate RMSprop hyperparameters."""
    _common(kw)
    kw["alpha"] = _validate.nonnegative(kw["alpha"], "alpha")
    kw["eps"] = _validate.nonnegative(kw["eps"], "eps")
    kw["momentum"] = _validate.nonnegative(kw["momentum"], "momentum")
    kw["centered"] = _validate.boolean(kw["centered"], "centered")
    return kw


def check_adam(kw):
    """Validate Adam/AdamW hyperparameters."""
    _common(kw)
    kw["beta1"] = _validate.unit_interval(kw["beta1"], "beta parameter at index 0 (beta1)")
    kw["beta2"] = _validate.unit_interval(kw["beta2"], "beta parameter at index 1 (beta2)")
    kw["eps"] = _validate.nonnegative(kw["eps"], "eps")
    kw["amsgrad"] = _validate.boolean(kw["amsgrad"], "amsgrad")
    kw["decoupled"] = _validate.boolean(kw["decoupled"], "decoupled")
    return kw


def check_adagrad(kw):
    """Validate Adagrad hyperparameters."""
    _common(kw)
    kw["lr_decay"] = _validate.nonnegative(kw["lr_decay"], "lr_decay")
    kw["eps"] = _validate.nonnegative(kw["eps"], "eps")
    return kw


def _common(kw):
    kw["lr"] = _validate.nonnegative(kw["lr"], "learning rate (lr)")
    kw["weight_decay"] = _validate.nonnegative(kw["weight_decay"], "weight_decay")
    kw["l1"] = _validate.nonnegative(kw["l1"], "l1")
    kw["maximize"] = _validate.boolean(kw["maximize"], "maximize")
    kw["grad_scale"] = _validate.grad_scale(kw["grad_scale"])
    if "step" in kw:
        step = kw["step"]
        if isinstance(step, bool) or not isinstance(step, int) and not hasattr(step, "__index__"):
            raise TypeError(f"step must be an integer, got {step!r}")
        if int(step) < 1:
            raise ValueError(f"step must be >= 1 (the step being taken), got {step}")
        kw["step"] = int(step)


CHECKS = {"sgd": check_sgd, "rmsprop": check_rmsprop, "adam": check_adam,
          "adagrad": check_adagrad}

# ---------------------------------------------------------------------------
# Running a rule over caller-owned arrays.


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _apply(rule, params, grads, states, hyper, backend):
    """Validate everything, then run ``rule`` once per dtype over the arrays."""
    run_rule(rule, params, grads, states, CHECKS[rule](hyper), backend)


def run_rule(rule, params, grads, states, hyper, backend=None):
    """Check the arrays, then apply rule ``rule`` (a name in :mod:`fastopt._rules`) with
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


def sgd_(param, grad, momentum_buffer=None, *, lr, momentum=0.0, dampening=0.0,
         nesterov=False, weight_decay=0.0, l1=0.0, maximize=False, first=False,
         grad_scale=None, backend=None):
    """SGD, in place. With ``momentum`` a ``momentum_buffer`` is required::

        buf = g                                  (first=True: the first step)
        buf = momentum * buf + (1 - dampening) * g   (later steps)
        g = g + momentum * buf  if nesterov else  buf
        p = p - lr * g
    """
    hyper = dict(lr=lr, momentum=momentum, dampening=dampening, nesterov=nesterov,
                 weight_decay=weight_decay, l1=l1, maximize=maximize,
                 first=_validate.boolean(first, "first"), grad_scale=grad_scale)
    states = {"momentum_buffer": momentum_buffer} if momentum != 0 else {}
    _apply("sgd", param, grad, states, hyper, backend)


def rmsprop_(param, grad, square_avg, grad_avg=None, momentum_buffer=None, *, lr,
             alpha=0.99, eps=1e-8, momentum=0.0, centered=False, weight_decay=0.0,
             l1=0.0, maximize=False, grad_scale=None, backend=None):
    """RMSprop, in place (``grad_avg`` when centered, ``momentum_buffer`` with momentum)::

        sq = alpha * sq + (1 - alpha) * g * g
        centered: ga = alpha * ga + (1 - alpha) * g ;  avg = sqrt(sq - ga * ga) + eps
        else:     avg = sqrt(sq) + eps
        momentum > 0: buf = momentum * buf + g / avg ;  p = p - lr * buf
        else:         p = p - lr * g / avg
    """
    hyper = dict(lr=lr, alpha=alpha, eps=eps, momentum=momentum, centered=centered,
                 weight_decay=weight_decay, l1=l1, maximize=maximize, grad_scale=grad_scale)
    states = {"square_avg": square_avg}
    if centered:
        states["grad_avg"] = grad_avg
    if momentum > 0:
        states["momentum_buffer"] = momentum_buffer
    _apply("rmsprop", param, grad, states, hyper, backend)


def adam_(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq=None, *, step, lr, beta1=0.9,
          beta2=0.999, eps=1e-8, weight_decay=0.0, amsgrad=False,
          decoupled_weight_decay=False, l1=0.0, maximize=False, grad_scale=None,
          backend=None):
    """Adam (or AdamW with ``decoupled_weight_decay``), in place, for step ``step`` >= 1::

        AdamW: p = p * (1 - lr * weight_decay)       (and no coupled L2)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        amsgrad: vmax = max(vmax, v), and vmax replaces v below
        p = p - (lr / (1 - beta1**step)) * m / (sqrt(v) / sqrt(1 - beta2**step) + eps)
    """
    hyper = dict(step=step, lr=lr, beta1=beta1, beta2=beta2, eps=eps,
                 weight_decay=weight_decay, decoupled=decoupled_weight_decay,
                 amsgrad=amsgrad, l1=l1, maximize=maximize, grad_scale=grad_scale)
    states = {"exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}
    if amsgrad:
        states["max_exp_avg_sq"] = max_exp_avg_sq
    _apply("adam", param, grad, states, hyper, backend)


def adamw_(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq=None, *, step, lr,
           beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=1e-2, amsgrad=False, l1=0.0,
           maximize=False, grad_scale=None, backend=None):
    """AdamW, in place: :func:`adam_` with decoupled weight decay
    ``p = p * (1 - lr * weight_decay)`` applied before the moments."""
    adam_(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, step=step, lr=lr, beta1=beta1,
          beta2=beta2, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
          decoupled_weight_decay=True, l1=l1, maximize=maximize, grad_scale=grad_scale,
          backend=backend)


def adagrad_(param, grad, state_sum, *, step, lr, lr_decay=0.0, eps=1e-10,
             weight_decay=0.0, l1=0.0, maximize=False, grad_scale=None, backend=None):
    """Adagrad, in place, for step ``step`` >= 1::

        clr = lr / (1 + (step - 1) * lr_decay)
        sum = sum + g * g
        p = p - clr * g / (sqrt(sum) + eps)
    """
    hyper = dict(step=step, lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                 l1=l1, maximize=maximize, grad_scale=grad_scale)
    _apply("adagrad", param, grad, {"sum": state_sum}, hyper, backend)
