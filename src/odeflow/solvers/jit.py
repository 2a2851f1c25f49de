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
import numpy as np
from numba.core.dispatcher import Dispatcher

__all__ = ["kernel", "is_jitted", "entry_point", "type_key", "JIT_DISABLED", "OPTIONS"]

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


_entries = {}   # (kernel, argument key) -> compiled entry point


def type_key(x):
    """A cheap stand-in for ``numba.typeof(x)`` as a dict key (the same key means the same Numba
    type for the loops' arguments): numba.typeof costs ~5 us per array, this ~0.3 us."""
    if type(x) is np.ndarray:
        # the dtype itself (two record dtypes of one size share a .str) and both contiguity flags
        # (C, F or neither: Numba's layouts 'C', 'F', 'A' are compiled differently)
        f = x.flags
        return (x.dtype, x.ndim, f.c_contiguous, f.f_contiguous, f.writeable, f.aligned)
    if type(x) is tuple:
        return tuple(type_key(e) for e in x)
    if type(x) in _PLAIN:
        return type(x)
    if isinstance(x, np.generic):   # a NumPy scalar: its dtype (record scalars are all np.void)
        return (type(x), x.dtype)
    # anything else (a typed List or Dict, a jitclass, ...): its class does not fix its Numba type
    # (a List of int64 and one of float64 are both numba.typed.List), so ask Numba
    return numba.typeof(x)


_PLAIN = (float, int, bool, complex, str)


def entry_point(fn, *args):
    """The compiled code of kernel ``fn`` for the Numba types of ``args`` (compiled or loaded
    from the cache now if needed), callable without the dispatcher's per-call type resolution.

    For a Python loop that calls the same kernel with arguments of the same types many times
    (a few microseconds saved per call with ten or more arguments). The caller must pass
    arguments of exactly these types later: the entry point does not check them. ``fn``
    itself when the JIT is disabled.
    """
    if JIT_DISABLED or not isinstance(fn, Dispatcher):
        return fn
    key = (fn, tuple(type_key(a) for a in args))
    entry = _entries.get(key)
    if entry is None:
        sig = tuple(numba.typeof(a) for a in args)
        cres = fn.overloads.get(sig)
        if cres is None:
            fn.compile(sig)
            cres = fn.overloads[sig]
        entry = _entries[key] = cres.entry_point
    return entry
