"""Optimizer kernels against the roofline, the NumPy reference and torch.

    pytest bench/ --benchmark-only --benchmark-group-by=group
    pytest bench/ --benchmark-only --benchmark-save=base   # then --benchmark-compare

Each (kernel, size) is a group; within it the methods (roofline null kernel, fastopt
backends, NumPy reference, torch) are the rows. pytest-benchmark warms up first.
Sizes: FASTOPT_BENCH_SIZES (default 1M,16M) plus the ResNet-50 and MLP lists.
"""

import os

import pytest

from fastopt import benchmark as fastopt_bench
from fastopt.cli import _sizes

SIZES = _sizes(os.environ.get("FASTOPT_BENCH_SIZES", "1M,16M"))
CASES = fastopt_bench.optimizer_cases(SIZES, tuple(fastopt_bench.PARAM_LISTS))
METHODS = list(fastopt_bench.CPU_METHODS)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.kernel}-{c.label}")
def test_optimizer_step(benchmark, case, method):
    if method == "numpy" and case.elements > (1 << 24):
        pytest.skip("the NumPy reference is too slow at this size")
    runners = fastopt_bench.optimizer_runners(case, [method])
    if method not in runners:
        pytest.skip(f"{method} is not available here")
    benchmark.group = f"{case.kernel}-{case.label}"
    benchmark.extra_info["bytes_per_element"] = case.bytes_per_element
    benchmark.extra_info["elements"] = case.elements
    benchmark.pedantic(runners[method], warmup_rounds=1, rounds=7, iterations=1)
