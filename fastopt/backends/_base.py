"""What every backend shares: launchers of optimizer steps, kept per tensor set.

A backend builds, for one rule variant on one :class:`fastopt._tensorset.TensorSet`,
a *launcher* ``run(grads, hyper, values)`` that applies one step given this step's
flat grads, checked hyperparameters and kernel scalars (``values``, from
:meth:`fastopt.rules.Rule.pack_values`: float64 values that fit the set's dtype, which
the launcher casts to it the way its kernel takes them). Everything that does not
change from step to step (the compiled kernel, the address and chunk tables, the
thread count of small work) is looked up when the launcher is built, so a step pays
for the grads' addresses and the call only. Launchers are kept in the set's cache.
"""

from .. import _safety
from ..rules import RULES


class Backend:
    """Base class: :meth:`launch` and :meth:`optim_step` over a subclass's
    ``_launcher(rule, tensors, flags, slots)``."""

    name = None
    # Whether a launcher is one call into compiled code, which a signal cannot interrupt
    # half way (so a step of one launcher needs no deferred interrupt).
    single_call = False

    def launch(self, rule, tensors, flags, slots):
        """The launcher of ``rule``'s variant with structural ``flags`` and state
        ``slots`` (:meth:`fastopt.rules.Rule.kernel_flags`, :meth:`~.Rule.slots`) on
        ``tensors``, built on first use and kept in ``tensors.cache``."""
        key = ("launch", self.name, flags, slots)
        run = tensors.cache.get(key)
        if run is None:
            # Building one compiles or loads kernels; a KeyboardInterrupt raised inside
            # Numba's compiler can leave LLVM objects that crash the process when they
            # are freed (a double free), so Ctrl-C waits until the launcher is built.
            with _safety.deferred_interrupt():
                run = tensors.cache[key] = self._launcher(rule, tensors, flags, slots)
        return run

    def launches(self, rule, sets, variant, n_params):
        """``[(launcher, indices, dtype)]`` of each TensorSet in ``sets`` for kernel
        ``variant`` (:meth:`fastopt.rules.Rule.kernel_variant`): ``indices`` are the
        positions of the set's grads among a step's ``n_params`` grads, None where the
        set holds all of them (in order: sets list their params in order)."""
        return [(self.launch(rule, tensors, *variant),
                 None if len(tensors.indices) == n_params else tensors.indices, tensors.dtype)
                for tensors in sets]

    def optim_step(self, rule_name, tensors, grads, hyper, values=None):
        """Apply one step of rule ``rule_name`` to every tensor of ``tensors`` (with
        its kernel scalars ``values`` already, or packed here)."""
        rule = RULES[rule_name]
        if values is None:
            values = rule.pack_values(tensors.dtype, hyper)
        run = self.launch(rule, tensors, *rule.kernel_variant(hyper))
        run(grads, hyper, values)

    def _launcher(self, rule, tensors, flags, slots):
        raise NotImplementedError
