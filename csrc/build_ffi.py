"""cffi builder (API mode) for ``fastopt._fastopt_c``, run by ``pip install``.

setup.py names it in ``cffi_modules``. Flags: -O3 for vectorised loops,
``-ffp-contract=off`` so that no multiply-add is fused (the results must match NumPy
and torch, which round each operation), ``-fno-math-errno`` so that ``sqrt`` can
vectorise (it only drops errno, NaN and Inf behave as before), and OpenMP when the
compiler has it (the kernels run serially otherwise). No ``-march=native``: the
binary targets baseline x86-64 and picks AVX2/AVX-512 clones at load time.
"""

import os
import shutil
import subprocess
import sys
import tempfile

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCES = ["optim.c", "batchnorm.c"]
BASE_FLAGS = ["-O3", "-std=c99", "-ffp-contract=off", "-fno-math-errno"]


def _compiler():
    """The C compiler that setuptools will use (CC, else sysconfig's, else cc)."""
    import sysconfig

    cc = os.environ.get("CC") or (sysconfig.get_config_var("CC") or "cc")
    return cc.split()


def _compiles(flags, program):
    """Whether the compiler builds and links ``program`` with ``flags``."""
    tmp = tempfile.mkdtemp()
    try:
        source = os.path.join(tmp, "probe.c")
        with open(source, "w") as f:
            f.write(program)
        result = subprocess.run(_compiler() + flags + [source, "-o", os.path.join(tmp, "probe")],
                                capture_output=True)
        return result.returncode == 0
    except OSError:
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _openmp_flags():
    """["-fopenmp"] when the compiler builds and links an OpenMP program; else
    ["-fopenmp-simd"] (the simd reductions only) where accepted; else []."""
    program = "#include <omp.h>\nint main(void) { return omp_get_max_threads() < 1; }\n"
    if not os.environ.get("FASTOPT_NO_OPENMP") and _compiles(["-fopenmp"], program):
        return ["-fopenmp"]
    return ["-fopenmp-simd"] if _compiles(["-fopenmp-simd"], "int main(void) { return 0; }\n") \
        else []


def build():
    """The FFI object that setuptools compiles into ``fastopt._fastopt_c``."""
    openmp = _openmp_flags()
    if "-fopenmp" not in openmp:
        print("fastopt: the C compiler has no OpenMP; the C backend will run serially",
              file=sys.stderr)
    ffi = FFI()
    with open(os.path.join(HERE, "fastopt.h")) as f:
        ffi.cdef(f.read())  # cffi drops the comments
    # Relative paths: setuptools builds from the project root.
    ffi.set_source(
        "fastopt._fastopt_c",
        '#include <stdint.h>\n#include "fastopt.h"\n',
        sources=[os.path.join("csrc", name) for name in SOURCES],
        include_dirs=["csrc"],
        extra_compile_args=BASE_FLAGS + openmp,
        extra_link_args=[f for f in openmp if f == "-fopenmp"],
    )
    return ffi


ffibuilder = build()

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
