"""The Numba switch: one decorator for odeflow's kernels, one test for user functions.

Every kernel is compiled with ``cache=True`` on first call (never at import)
and then loaded from the on-disk cache in later processes. Setting the
environment variable ``NUMBA_DISABLE_JIT=1`` before the first import turns
every kernel *and* every user ``@numba.njit`` function back into plain Python:
the same source then runs in the interpreter, for reading, debugging with
``pdb`` and measuring coverage.
"""
from __future__ import annotations

import numba
from numba.core.dispatcher import Dispatcher

__all__ = ["kernel", "is_jitted", "JIT_DISABLED", "OPTIONS"]

JIT_DISABLED = bool(numba.config.DISABLE_JIT)


# NumPy's floating-point semantics (x / 0 -> inf, no exception check on every
# division): the loops detect non-finite values themselves.
OPTIONS = {"nogil": True, "error_model": "numpy"}


def kernel(fn=None, *, inline=False):
    """Compile ``fn`` in nopython mode on first call, cached on disk.

    ``@kernel(inline=True)`` also marks ``fn`` for inlining into every jitted
    caller (Numba's ``inline="always"``): the per-step kernels of the loops
    then cost no call and no reference counting of their array arguments,
    while Python callers still get the cached standalone compile.

    Numba keys its disk cache on the source file of ``fn`` (time stamp and
    size), not on these options: after editing ``OPTIONS``, delete the
    ``*.nbi``/``*.nbc`` files under ``src/odeflow`` (a fresh install or clone
    has none).
    """
    if fn is None:
        return lambda f: kernel(f, inline=inline)
    return numba.njit(cache=True, inline="always" if inline else "never", **OPTIONS)(fn)


def is_jitted(func) -> bool:
    """True when ``func`` is a Numba ``@njit`` function (a CPU dispatcher), so a
    whole solve can run in nopython mode with ``func`` as an argument."""
    return isinstance(func, Dispatcher)
