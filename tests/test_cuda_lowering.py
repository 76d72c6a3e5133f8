"""The CUDA kernels as a GPU would compile them, checked on a machine without one.

The simulator (tests/test_cuda.py) runs the kernels' Python; it never exercises what
only the real target compiles: the intrinsic that turns a device address into a typed
pointer, the overload that picks a rule at typing time, the shared-memory reductions.
Here numba-cuda types and lowers every kernel to LLVM IR for compute capability 8.0
(stopping before NVVM, which needs the CUDA toolkit), in a subprocess with the device
queries stubbed. Float32 optimizer kernels must not contain double arithmetic.
"""

import importlib.util
import os
import subprocess
import sys

import pytest

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("numba_cuda") is None,
                       reason="numba-cuda (the cuda extra) is not installed"),
    pytest.mark.skipif(bool(os.environ.get("NUMBA_ENABLE_CUDASIM")),
                       reason="the simulator replaces the CUDA target"),
]

SCRIPT = r'''
import re
from types import SimpleNamespace
from unittest import mock

from numba import cuda, types
from numba.cuda import compiler
import numba.cuda.dispatcher

# No driver here: say the device is an sm_80 and that CUDA is available.
numba.cuda.dispatcher.get_current_device = lambda: SimpleNamespace(compute_capability=(8, 0))
with mock.patch.object(cuda, "is_available", lambda: True):
    from fastopt.backends import numba_cuda
assert not numba_cuda.SIMULATED
from fastopt import _math
from fastopt._rules import RULES

FLAGS = {"sgd": [(m, n, s, d) for m in (0, 1) for n in (0, 1) for s in (0, 1) for d in (0, 1)],
         "rmsprop": [(c, m, s, d) for c in (0, 1) for m in (0, 1) for s in (0, 1)
                     for d in (0, 1)],
         "adam": [(a, 0, s, d) for a in (0, 1) for s in (0, 1) for d in (0, 1)],
         "adagrad": [(0, 0, s, d) for s in (0, 1) for d in (0, 1)],
         "velocity": [(n, 0, s, 0) for n in (0, 1) for s in (0, 1)],
         "rmsprop_sq": [(0, 0, s, 0) for s in (0, 1)],
         "adam_sq": [(c, 0, s, 0) for c in (0, 1) for s in (0, 1)]}
assert set(FLAGS) == set(RULES)


def lower(function, argtypes):
    result = compiler.compile_cuda(function, types.void, argtypes, cc=(8, 0))
    return result.library.get_llvm_str()


count = 0
for rule, flag_sets in FLAGS.items():
    for flags in flag_sets:
        flags = tuple(bool(f) for f in flags)
        used = tuple(name is not None for name in RULES[rule].slots(flags))
        kernel = numba_cuda._make_optim_kernel(_math.RULE_IDS[rule], flags, used)
        for dtype in (types.float32, types.float64):
            ir = lower(kernel.py_func, (types.int64[:, ::1], types.UniTuple(types.int64, 3),
                                        types.int64[:, ::1], types.UniTuple(dtype, 12)))
            assert "inttoptr" in ir, (rule, flags)
            if dtype == types.float32:
                doubles = re.findall(r"f(?:add|sub|mul|div) (?:fast )?double", ir)
                assert not doubles, (rule, flags, doubles[:3])
            count += 1

f32, f64, i64 = types.float32, types.float64, types.int64
lower(numba_cuda._chunk_reduction.py_func, (f32[::1], i64[:, ::1], f64[::1], types.boolean))
lower(numba_cuda._bn_partial_sums.py_func,
      (f32[:, :, ::1], f32[:, :, ::1], f64[::1], f64[::1], i64, i64, f64[:, ::1],
       f64[:, ::1]))
lower(numba_cuda._bn_affine.py_func,
      (f32[:, :, ::1], f32[:, :, ::1], f32[::1], f32[::1], f32[::1], f32[:, :, ::1],
       types.boolean, i64))
print("lowered", count, "optimizer kernels and 3 reduction/batch-norm kernels")
'''


def test_every_cuda_kernel_lowers_for_a_gpu():
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "lowered 108 optimizer kernels" in out.stdout  # 54 flag variants x 2 dtypes
