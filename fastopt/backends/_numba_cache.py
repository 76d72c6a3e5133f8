"""Where Numba keeps fastopt's compiled kernels, or whether it can at all.

Numba caches compiled code on disk (``cache=True``) in the first writable place among
``NUMBA_CACHE_DIR``, a ``__pycache__`` folder beside the source, and the user's cache
folder; where none is writable (a read-only install run by a user with no writable
home), decorating a function with ``cache=True`` raises. fastopt then caches in a
folder of the system's temporary directory, and failing that compiles in memory in
each process (a few seconds per kernel), with a warning either way.
"""

import functools
import os
import tempfile
import warnings


def _probe():
    """A function of this package's own, whose cache location Numba is asked for."""


@functools.cache
def disk_cache():
    """The ``cache=`` flag for fastopt's Numba kernels (see the module docstring)."""
    import numba
    from numba.core.caching import FunctionCache

    try:
        FunctionCache(_probe)
        return True
    except RuntimeError:
        pass
    previous = numba.config.CACHE_DIR
    folder = os.path.join(tempfile.gettempdir(), f"fastopt-numba-{getattr(os, 'getuid', int)()}")
    try:
        os.makedirs(folder, exist_ok=True)
        numba.config.CACHE_DIR = folder
        FunctionCache(_probe)
    except (OSError, RuntimeError):
        numba.config.CACHE_DIR = previous
        warnings.warn("fastopt: Numba has no writable place to cache compiled kernels "
                      "(set NUMBA_CACHE_DIR to one); they are compiled in each process",
                      RuntimeWarning, stacklevel=3)
        return False
    warnings.warn(f"fastopt: Numba cannot cache compiled kernels beside fastopt or in "
                  f"the user's cache folder; caching them in {folder} (set NUMBA_CACHE_DIR "
                  "to choose)", RuntimeWarning, stacklevel=3)
    return True
