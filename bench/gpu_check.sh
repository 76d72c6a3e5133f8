#!/usr/bin/env bash
# The CUDA backend on a real NVIDIA GPU, in one command (`make gpu-check`):
#   1. makes sure numpy, numba, numba-cuda, pytest and hypothesis import, installing the
#      missing ones from wheels carried in $FASTOPT_WHEELS (default bench/wheels) when
#      that folder exists, else from the package index;
#   2. runs the suite's CUDA tests on the device (pytest -m cuda), from the source tree:
#      the C extension is not needed, so a machine without cffi or a compiler will do;
#   3. runs `fastopt bench --methods cuda-copy,cuda,torch-cuda --full` (torch-cuda where
#      torch sees the GPU) and writes the record where the benchmark records live:
#      $FASTOPT_GPU_OUT (default docs/gpu): tests.txt, benchmarks.md/.json/.png.
# It works offline. Each stage has a time limit, so the whole check ends within about
# 8 minutes. FASTOPT_GPU_CHECK_SIMULATE=1 runs the same steps under Numba's CUDA
# simulator with a tiny benchmark, to check the script itself on a machine without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
OUT=${FASTOPT_GPU_OUT:-docs/gpu}
WHEELS=${FASTOPT_WHEELS:-bench/wheels}
TEST_LIMIT=${FASTOPT_GPU_TEST_SECONDS:-270}
BENCH_LIMIT=${FASTOPT_GPU_BENCH_SECONDS:-180}
BENCH_ARGS=(--methods cuda-copy,cuda,torch-cuda --full --rounds 21)
if [ "${FASTOPT_GPU_CHECK_SIMULATE:-}" = 1 ]; then
    export NUMBA_ENABLE_CUDASIM=1
    BENCH_ARGS=(--methods cuda-copy,cuda --sizes 2K --lists "" --kernels adam,sgd_momentum
                --rounds 2)
fi
start=$SECONDS
say() { echo "gpu-check [$((SECONDS - start)) s]: $*"; }

# 1. What the check imports. (module:package pairs)
missing=()
for pair in numpy:numpy numba:numba numba_cuda:numba-cuda pytest:pytest hypothesis:hypothesis; do
    "$PYTHON" -c "import ${pair%%:*}" 2>/dev/null || missing+=("${pair#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ -d "$WHEELS" ]; then
        say "installing ${missing[*]} from $WHEELS"
        "$PYTHON" -m pip install --quiet --no-index --find-links "$WHEELS" "${missing[@]}"
    else
        say "installing ${missing[*]} from the package index"
        "$PYTHON" -m pip install --quiet "${missing[@]}" || {
            say "could not install ${missing[*]}: carry their wheels in $WHEELS"; exit 1; }
    fi
fi

# 2. fastopt from this source tree; the device.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$PYTHON" - <<'EOF' || { say "numba-cuda sees no GPU here"; exit 1; }
from numba import cuda
import fastopt
assert cuda.is_available() and "cuda" in fastopt.available_backends()
name = getattr(cuda.get_current_device(), "name", "the simulator")
print("gpu-check: device:", name.decode() if isinstance(name, bytes) else name)
EOF
mkdir -p "$OUT"

# 3. The CUDA tests on the device.
say "pytest -m cuda (limit ${TEST_LIMIT} s)"
set +e
timeout "$TEST_LIMIT" "$PYTHON" -m pytest -q -m cuda -p no:cacheprovider tests \
    > "$OUT/tests.txt" 2>&1
tests_status=$?
set -e
tail -n 5 "$OUT/tests.txt"

# 4. The GPU benchmark and its record.
plot=()
"$PYTHON" -c "import matplotlib" 2>/dev/null && plot=(--plot "$OUT/benchmarks.png")
say "fastopt bench ${BENCH_ARGS[*]} (limit ${BENCH_LIMIT} s)"
timeout "$BENCH_LIMIT" "$PYTHON" -m fastopt bench "${BENCH_ARGS[@]}" \
    --json "$OUT/benchmarks.json" --markdown "$OUT/benchmarks.md" "${plot[@]}"
say "done: $OUT"
exit "$tests_status"
