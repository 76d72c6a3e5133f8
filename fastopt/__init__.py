"""fastopt: fused, in-place optimizer and batch-norm kernels for NumPy arrays.

Backends: "numba" (CPU, default), "c" (cffi), "numpy" (the reference); choose with
``backend=`` or the ``FASTOPT_BACKEND`` environment variable.
"""

from . import functional, schedules
from .backends import available_backends
from .batchnorm import BatchNorm, batchnorm_backward, batchnorm_forward
from .grads import all_finite, clip_grad_norm_, global_norm
from .lr_finder import LRFindResult, lr_find
from .optim import CLASSES as _CLASSES
from .optim import Optimizer
from .plateau import EarlyStopping

__version__ = "0.1.0"

globals().update(_CLASSES)  # SGD, RMSprop, Adam, ... Lion (one per rule front)

__all__ = [
    *_CLASSES, "Optimizer",
    "functional", "schedules", "lr_find", "LRFindResult", "available_backends",
    "global_norm", "clip_grad_norm_", "all_finite",
    "BatchNorm", "batchnorm_forward", "batchnorm_backward", "EarlyStopping",
]
