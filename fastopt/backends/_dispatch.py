"""Compile-time selection of a rule's element function, for the Numba targets.

A driver kernel closes over a rule id (an int, so that Numba's disk cache keys stay
stable across processes) and calls ``dispatch(rule_id, ...)``. In Python (and in
the CUDA simulator) ``dispatch`` indexes the tuple of element functions. Compiled,
an ``overload`` resolves the literal id while typing, so only the chosen rule is
typed and lowered into the kernel: with all seven rules behind a runtime branch,
each kernel variant took 6.7 s to compile instead of 2.5 s.
"""


def rule_dispatcher(elements, arity, overload=None):
    """``dispatch(rule, x1, ..., x_arity)`` returning ``elements[rule](x1, ...)``;
    ``overload`` is the target's ``numba...extending.overload`` (None: Python only).
    The arguments are spelled out (Numba cannot inline a closure called with
    ``*args``), so the functions are generated for the arity."""
    names = ", ".join(f"x{i}" for i in range(arity))
    namespace = {"elements": elements}
    exec(f"def dispatch(rule, {names}):\n"  # noqa: S102 - a fixed template
         f"    return elements[rule]({names})\n", namespace)
    dispatch = namespace["dispatch"]

    if overload is not None:
        from numba.core import types

        def choose(rule):
            if not isinstance(rule, types.IntegerLiteral):
                return None
            chosen = {"chosen": elements[rule.literal_value]}
            exec(f"def impl(rule, {names}):\n"  # noqa: S102 - a fixed template
                 f"    return chosen({names})\n", chosen)
            return chosen["impl"]

        typing = {"choose": choose}
        exec(f"def compiled(rule, {names}):\n"  # noqa: S102 - a fixed template
             f"    return choose(rule)\n", typing)
        overload(dispatch, inline="always")(typing["compiled"])

    return dispatch
