"""The CUDA kernels as a GPU would compile them, checked on a machine without one.

The simulator (tests/test_cuda.py) runs the kernels' Python; it never exercises what
only the real target compiles: the intrinsic that turns a device address into a typed
pointer, the overload that picks a rule at typing time, the shared-memory reductions.
Here numba-cuda types and lowers every kernel to LLVM IR for compute capability 8.0
(stopping before NVVM, which needs the CUDA toolkit), in a subprocess with the device
queries stubbed: every variant of every rule in :mod:`fastopt.rules`. Float32 optimizer
kernels must not contain double arithmetic.
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
from fastopt.rules import RULES
from fastopt.rules._spec import HYPER_LEN


def lower(function, argtypes):
    result = compiler.compile_cuda(function, types.void, argtypes, cc=(8, 0))
    return result.library.get_llvm_str()


# Every variant of every rule in float32 (where a stray double would show), and each
# rule's variant with every flag set in float64.
count = 0
for rule in RULES.values():
    used = tuple(i < len(rule.states) for i in range(3))
    variants = rule.variants()
    for flags in variants:
        kernel = numba_cuda._make_optim_kernel(rule.id, flags, used)
        for dtype in (types.float32, types.float64):
            if dtype == types.float64 and flags != variants[-1]:
                continue
            ir = lower(kernel.py_func, (types.int64[:, ::1], types.UniTuple(types.int64, 3),
                                        types.int64[:, ::1], types.UniTuple(dtype, HYPER_LEN)))
            assert "inttoptr" in ir, (rule.name, flags)
            if dtype == types.float32:
                doubles = re.findall(r"f(?:add|sub|mul|div) (?:fast )?double", ir)
                assert not doubles, (rule.name, flags, doubles[:3])
            count += 1

f32, f64, i64 = types.float32, types.float64, types.int64
# Each rule's 8-bit kernel, with its states' codebooks (float32 params only).
count8 = 0
for rule in RULES.values():
    used = tuple(i < len(rule.states) for i in range(3))
    signed = tuple(rule.states[i].signed if i < len(rule.states) else True for i in range(3))
    kernel = numba_cuda._make_optim8_kernel(rule.id, rule.variants()[-1], used, signed)
    ir = lower(kernel.py_func, (i64[:, ::1], types.UniTuple(i64, 3), i64[:, ::1],
                                types.UniTuple(f32, HYPER_LEN), f32[:, ::1],
                                types.int32[:, ::1]))
    doubles = re.findall(r"f(?:add|sub|mul|div) (?:fast )?double", ir)
    assert "bitcast float" in ir and not doubles, (rule.name, doubles[:3])
    count8 += 1
lower(numba_cuda._chunk_reduction.py_func, (f32[::1], i64[:, ::1], f64[::1], types.boolean))
lower(numba_cuda._bn_partial_sums.py_func,
      (f32[:, :, ::1], f32[:, :, ::1], f64[::1], f64[::1], i64, i64, f64[:, ::1],
       f64[:, ::1]))
lower(numba_cuda._bn_affine.py_func,
      (f32[:, :, ::1], f32[:, :, ::1], f32[::1], f32[::1], f32[::1], f32[:, :, ::1],
       types.boolean, i64))
print("lowered", count, "optimizer kernels,", count8,
      "8-bit optimizer kernels and 3 reduction/batch-norm kernels")
'''


def test_every_cuda_kernel_lowers_for_a_gpu():
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    from fastopt.rules import RULES

    expected = sum(len(rule.variants()) + 1 for rule in RULES.values())
    assert f"lowered {expected} optimizer kernels, {len(RULES)} 8-bit" in out.stdout
