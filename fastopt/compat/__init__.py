"""Drop-in adapters for NumPy trainers people already have.

Each adapter keeps its library's names, signatures, defaults and maths (including
where they differ from torch.optim) and runs fastopt's fused kernels underneath:

* :mod:`fastopt.compat.cs231n`: the Stanford cs231n assignments' ``optim.py`` update
  rules and batch-norm layers.
* :mod:`fastopt.compat.sklearn`: scikit-learn's MLP optimizers, and ``accelerate()``,
  under which ``MLPClassifier``/``MLPRegressor`` train with them.
* :mod:`fastopt.compat.nnfs`: the optimizers of "Neural Networks from Scratch".
* :mod:`fastopt.compat.deeplearning_ai`: the update functions of the Deep Learning
  Specialization's "Optimization methods" notebook (Course 2).
* :mod:`fastopt.compat.dlfs`: the optimizers of "Deep Learning from Scratch".
* :mod:`fastopt.compat.autograd`: HIPS autograd's ``sgd``, ``rmsprop`` and ``adam``.

Import the submodule you need; nothing is imported here.
"""
