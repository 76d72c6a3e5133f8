"""The update code of the NumPy libraries that :mod:`fastopt.compat` replaces, written
out as each library gives it (same names, operations and order).

These are the references the adapters are tested against for equal bits in float64,
and the baselines of ``fastopt bench --small`` (what a call costs in the library's own
NumPy code). They are plain NumPy, not fast; use :mod:`fastopt.compat` to train.

* :mod:`.cs231n`: the cs231n assignments' ``optim.py`` rules and ``layers.py`` batch norm.
* :mod:`.nnfs`: "Neural Networks from Scratch"'s optimizer classes.
* :mod:`.deeplearning_ai`: Course 2's "Optimization methods" update functions.
* :mod:`.dlfs`: "Deep Learning from Scratch"'s ``common/optimizer.py`` classes.
* :mod:`.autograd`: ``autograd.misc.optimizers``' ``sgd``, ``rmsprop``, ``adam`` on a
  flat vector.
"""
