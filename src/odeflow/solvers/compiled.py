"""The whole-solve compiled loops for an ``@njit`` ``func``, compiled once per argument types.

A loop of :mod:`odeflow.solvers.loop` takes ``func`` as an argument typed as a
Numba *first-class function* (``numba.types.FunctionType``: a pointer to the
compiled ``func``, called without Python). The loop's machine code therefore
depends only on the *types* of its arguments (the state's dtype and ndim,
in-place or out-of-place ``func``, the types in ``args``, the event count), not
on ``func`` itself, so Numba caches it on disk (``cache=True``) next to the
other kernels: the very first process on a machine compiles it (tens of
seconds for the adaptive loop), every later process loads it in milliseconds,
and a new ``func`` costs only its own compile. A call through the pointer
costs about as much as an inlined call for these loops (measured in
``scripts/bench_solvers.py``: the yardstick inlines its right-hand side).

With ``@njit`` event functions the event step is compiled into the loop with
the event functions as constants (:func:`odeflow.solvers.events.make_event_step`);
that loop is not cached on disk (once per process and event set).

References: Numba documentation, "First-class function objects"
(``numba.types.FunctionType``) and "Cache" (``cache=True``).
"""
from __future__ import annotations

import time

import numba
from numba import types as nt

from odeflow.errors import InputTypeError
from odeflow.solvers import events as _events
from odeflow.solvers import loop as _loop
from odeflow.solvers.jit import OPTIONS

__all__ = ["func_argtypes", "check_signature", "function_type", "run_compiled"]

_LOOPS = {"adaptive": _loop.adaptive_loop, "fixed": _loop.fixed_loop}
_runners = {}   # (kind, loop argument types[, event functions]) -> explicit-signature dispatcher


def func_argtypes(y_view, fargs, inplace):
    """Numba types of ``func``'s arguments as the loop calls it: ``(t, y[, dydt], *args)``;
    ``y_view`` an array of the state's shape and dtype (C-contiguous, as in the loop)."""
    y_type = nt.Array(numba.from_dtype(y_view.dtype), y_view.ndim, "C")
    return (nt.float64, y_type) + ((y_type,) if inplace else ()) + tuple(numba.typeof(a) for a in fargs)


def check_signature(func, argtypes, y0, inplace):
    """InputTypeError (before any work) when ``func`` has explicit Numba signatures, cannot
    compile others, and none takes the loop's argument types."""
    if func._can_compile or not func.signatures:
        return
    if tuple(argtypes) in [tuple(s) for s in func.signatures]:
        return
    form = "func(t, y, dydt, *args)" if inplace else "func(t, y, *args)"
    raise InputTypeError(
        f"`func` {getattr(func, '__name__', func)!r} has the explicit Numba signature(s) "
        f"{', '.join(str(s) for s in func.nopython_signatures)}, none of which takes the arguments "
        f"the solver passes as {form}: {', '.join(str(a) for a in argtypes)} (`y0` is "
        f"{y0.dtype} of ndim {y0.ndim}); declare that signature, or leave the signature out")


def function_type(func, argtypes):
    """``func`` (an ``@njit`` dispatcher) compiled for ``argtypes``, as a first-class function type."""
    argtypes = tuple(argtypes)
    cres = func.overloads.get(argtypes)
    if cres is None:
        func.compile(argtypes)
        cres = func.overloads[argtypes]
    return nt.FunctionType(cres.signature.return_type(*argtypes))


def run_compiled(kind, func, argtypes, fargs, loop_args, events=(), flat=True):
    """Run the ``kind`` loop compiled, with ``func`` a first-class function argument.

    Returns the loop's tuple and the seconds spent compiling or loading code from
    the disk cache (``func`` for these types, and the loop; 0.0 when both were
    already in memory).
    """
    start = time.perf_counter()
    n_before = len(func.overloads)
    ftype = function_type(func, argtypes)
    sig = (ftype, numba.typeof(fargs)) + tuple(numba.typeof(a) for a in loop_args)
    key = (kind, sig, tuple(events))
    runner = _runners.get(key)
    fresh = runner is None
    if fresh:
        if events:
            step = _events.make_event_step(
                _events.make_event_function(events, jitted=True, flat=flat), jitted=True)
            runner = numba.njit([sig], **OPTIONS)(_loop.variant(_LOOPS[kind], _loop.evaluate, step))
        else:
            runner = numba.njit([sig], cache=True, **OPTIONS)(_LOOPS[kind])
        _runners[key] = runner
    seconds = time.perf_counter() - start if (fresh or len(func.overloads) > n_before) else 0.0
    return runner(func, fargs, *loop_args), seconds
