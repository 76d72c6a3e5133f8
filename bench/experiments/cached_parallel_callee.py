"""Why the numba backend starts Numba's threading layer when it is imported.

A cached, non-parallel function that calls a ``parallel=True`` one (fastopt's
compiled batch-norm passes do) links the parallel code into its own. Loaded from the
disk cache in a new process before anything has started the threading layer, its
parallel-runtime symbols can be missing, and the process can crash (numba issues
#4807 and #8578). This script compiles such callers, two and three levels above a
parallel kernel, into an empty cache, then calls the middle one from new processes,
``runs`` times as it is and ``runs`` times after ``numba.get_num_threads()`` (which
starts the layer), and counts the crashes.

A measurement behind bench/RESULTS.md, not part of fastopt. Run from anywhere:

    python bench/experiments/cached_parallel_callee.py 6
"""

import os
import subprocess
import sys
import tempfile
import textwrap

CHILD = textwrap.dedent('''
    import sys
    import numba
    import numpy as np

    if sys.argv[2] == "start":
        numba.get_num_threads()


    @numba.njit(parallel=True, cache=True)
    def row_sums(x, rows, out):
        for block in numba.prange(out.shape[0]):
            for r in range(block * rows, min(block * rows + rows, x.shape[0])):
                for c in range(x.shape[1]):
                    out[block, c] += x[r, c]


    @numba.njit(cache=True)
    def totals(out):
        for block in range(1, out.shape[0]):
            out[0] += out[block]
        return out[0]


    @numba.njit(cache=True)
    def column_sums(x):
        out = np.zeros((8, x.shape[1]))
        row_sums(x, (x.shape[0] + 7) // 8, out)
        return totals(out)


    @numba.njit(cache=True)
    def caller(x):
        return column_sums(x)


    @numba.njit(cache=True)
    def outer(x):
        return caller(x)[0]


    x = np.ones((256, 64))
    mode = sys.argv[1]
    print({"column_sums": column_sums, "caller": caller, "outer": outer}[mode](x)[:1])
''')


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 6
    with tempfile.TemporaryDirectory() as directory:
        script = os.path.join(directory, "child.py")
        with open(script, "w") as f:
            f.write(CHILD)
        env = dict(os.environ, NUMBA_CACHE_DIR=os.path.join(directory, "cache"))

        def run(*args):
            return subprocess.run([sys.executable, script, *args], env=env,
                                  capture_output=True).returncode

        for mode in ("column_sums", "caller", "outer"):  # compile and cache the callers
            run(mode, "no")
        for start in ("no", "start"):
            crashes = sum(run("caller", start) != 0 for _ in range(runs))
            label = "threading layer started first" if start == "start" else "as loaded"
            print(f"{label:31s}: {crashes} of {runs} runs crashed")


if __name__ == "__main__":
    main()
