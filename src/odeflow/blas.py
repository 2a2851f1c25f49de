"""BLAS threads inside solves and gradient walks: one thread for small products.

A neural ODE's products are small (a batch of 256 states through 64-wide
layers: a few hundred thousand multiply-adds each) and there are thousands of
them per solve. OpenBLAS splits any product above a small size across all its
threads, and for products this small the split, the wake-up and the
synchronisation cost more than the arithmetic saves: on the 2-core benchmark
machine a default-threaded gradient step was 3-7x slower than a
single-threaded one (issue 14), worse still when the other core is busy.

So odeflow runs every solve whose ``func`` is Python code (it may call BLAS),
every gradient by the adjoint or through the solver, and every backward walk
of the engine with BLAS limited to ``threads()`` threads (default 1), and
gives the user's setting back afterwards, exactly as it was. States of at
least ``large()`` elements (default ``4096 * 64``) are left alone: their
products are big enough for threads to pay (see docs/adjoint.md, "BLAS
threads", for the measurements behind both defaults). A solve whose ``func``
is Numba-jitted calls no BLAS and is not touched.

The BLAS libraries are found by ``threadpoolctl`` (Ogrisel et al., the
library scikit-learn uses for the same purpose), on the first limited call
and again after new imports; setting the count then costs a few microseconds per solve or walk, not
per product (``threadpoolctl.threadpool_limits`` itself rescans the loaded
libraries on every call, about a millisecond). Nested limited calls (the
adjoint's backward solves inside a backward walk) cost a counter increment:
only the outermost call sets and restores.

Call :func:`set_threads` to change the limit (None: never limit).

References
----------
.. [1] threadpoolctl, https://github.com/joblib/threadpoolctl (BSD licence).
.. [2] OpenBLAS, ``openblas_set_num_threads`` (its threading model: one pool
       shared by the whole process).
"""
from __future__ import annotations

import functools
import sys
import threading

import numpy as np

from odeflow.errors import InputError, InputTypeError

__all__ = ["limited", "limit_blas", "set_threads", "threads", "large"]

_LOCK = threading.Lock()
_STATE = {"threads": 1, "large": 4096 * 64, "libs": None, "modules": 0, "depth": 0, "saved": None}


def threads():
    """The thread count BLAS is limited to inside odeflow's solves (None: no limit)."""
    return _STATE["threads"]


def large():
    """The state size from which a solve is not limited."""
    return _STATE["large"]


def set_threads(n=1, large=None):
    """Limit BLAS to `n` threads inside odeflow's solves and walks (None: never limit).

    Parameters
    ----------
    n : int >= 1 or None
    large : int >= 1, optional
        States of at least this many elements are not limited (default
        unchanged: ``4096 * 64``).

    Raises
    ------
    InputTypeError, InputError
        `n` or `large` not a positive integer (or None for `n`).
    """
    for name, value, none_ok in (("n", n, True), ("large", large, True)):
        if value is None and none_ok:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise InputTypeError(f"`{name}` must be a positive int{' or None' if name == 'n' else ''}; "
                                 f"got {type(value).__name__}")
        if value < 1:
            raise InputError(f"`{name}` must be >= 1; got {value}")
    _STATE["threads"] = None if n is None else int(n)
    if large is not None:
        _STATE["large"] = int(large)


def _libraries():
    """threadpoolctl's controllers of the loaded BLAS libraries.

    The scan (about a millisecond) is redone only when modules were imported
    since the last one: a new BLAS (scipy's own OpenBLAS, say) arrives with
    an import.
    """
    if _STATE["libs"] is None or _STATE["modules"] != len(sys.modules):
        from threadpoolctl import ThreadpoolController
        _STATE["modules"] = len(sys.modules)
        _STATE["libs"] = list(ThreadpoolController().select(user_api="blas").lib_controllers)
    return _STATE["libs"]


class limited:
    """Context manager: BLAS at ``threads()`` threads inside, the caller's setting restored after.

    Parameters
    ----------
    size : int, optional
        The state size; at least ``large()`` leaves BLAS alone.

    Re-entrant and thread-safe: only the outermost entry sets and restores
    (module docstring).
    """

    __slots__ = ("active",)

    def __init__(self, size=0):
        n = _STATE["threads"]
        self.active = n is not None and size < _STATE["large"]

    def __enter__(self):
        if not self.active:
            return self
        with _LOCK:
            _STATE["depth"] += 1
            if _STATE["depth"] == 1:
                n, saved = _STATE["threads"], []
                for lib in _libraries():
                    before = lib.get_num_threads()
                    if before is not None and before > n:
                        lib.set_num_threads(n)
                        saved.append((lib, before))
                _STATE["saved"] = saved
        return self

    def __exit__(self, *exc):
        if not self.active:
            return False
        with _LOCK:
            _STATE["depth"] -= 1
            if _STATE["depth"] == 0:
                for lib, before in _STATE["saved"]:
                    lib.set_num_threads(before)
                _STATE["saved"] = None
        return False


def limit_blas(solve):
    """Decorate ``solve(func, y0, ...)`` to run :class:`limited` unless ``func`` is Numba-jitted."""
    @functools.wraps(solve)
    def wrapper(func, y0, *args, **kwargs):
        if _STATE["threads"] is None or _is_dispatcher(func):
            return solve(func, y0, *args, **kwargs)
        with limited(_size(y0)):
            return solve(func, y0, *args, **kwargs)
    return wrapper


def _size(y0):
    """Elements of ``y0`` (an array, a Tensor or a nested sequence); 0 for anything else, whose
    error the solve itself reports (named) after this."""
    size = getattr(y0, "size", None)
    if isinstance(size, (int, np.integer)):
        return size
    try:
        return np.size(y0)
    except (ValueError, TypeError):
        return 0


def _is_dispatcher(func):
    """A Numba dispatcher, checked without importing Numba (``import odeflow`` loads none)."""
    return type(func).__module__.startswith("numba")
