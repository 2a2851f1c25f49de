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
import weakref

import numba
import numpy as np
from numba import types as nt
from numba.core.types.function_type import CompileResultWAP

from odeflow.errors import InputTypeError
from odeflow.solvers import events as _events
from odeflow.solvers import loop as _loop
from odeflow.solvers.jit import OPTIONS, type_key

__all__ = ["func_argtypes", "check_signature", "function_type", "run_compiled"]

_LOOPS = {"adaptive": _loop.adaptive_loop, "fixed": _loop.fixed_loop}
_runners = {}   # (kind, func key, loop argument keys, event functions) -> explicit-signature dispatcher


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
    """``func`` (an ``@njit`` dispatcher) compiled for ``argtypes``: its first-class function
    type and a value of that type (Numba's ``CompileResultWAP``, the compiled code's address),
    which the loop takes without converting the dispatcher on every call."""
    argtypes = tuple(argtypes)
    cres = func.overloads.get(argtypes)
    if cres is None:
        func.compile(argtypes)
        cres = func.overloads[argtypes]
    return nt.FunctionType(cres.signature.return_type(*argtypes)), CompileResultWAP(cres)


# func -> {(dtype, ndim, inplace, args key): (its FunctionType, its compiled code as a value of it)}
_pointers = weakref.WeakKeyDictionary()


def run_compiled(kind, func, fargs, inplace, loop_args, events=(), flat=True):
    """Run the ``kind`` loop compiled, with ``func`` a first-class function argument.

    ``loop_args``: the loop's arguments after ``func`` and ``fargs``, the state ``y0`` at
    index 1 (adaptive) or 3 (fixed). Returns the loop's tuple and the seconds spent
    compiling or loading code from the disk cache (``func`` for these types, and the loop;
    0.0 when both were already in memory).
    """
    y = loop_args[1] if kind == "adaptive" else loop_args[3]
    fkey = (y.dtype.str, len(loop_args[3 if kind == "adaptive" else 5]), inplace, type_key(fargs))
    known = _pointers.get(func)
    hit = known.get(fkey) if known is not None else None
    seconds = 0.0
    if hit is None:
        start = time.perf_counter()
        shape = loop_args[3 if kind == "adaptive" else 5]
        hit = function_type(func, func_argtypes(np.empty(shape, y.dtype), fargs, inplace))
        _pointers.setdefault(func, {})[fkey] = hit
        seconds = time.perf_counter() - start
    ftype, pointer = hit
    # the other arguments' types follow from these (made by odeflow.solvers.integrate with fixed
    # dtypes); the tableau (its arrays live as long as the module) by identity. ``ftype`` holds
    # func's return type (float32, int64, another layout...), which the loop is compiled for
    key = (kind, fkey, ftype, id(loop_args[6]), tuple(events))
    runner = _runners.get(key)
    if runner is not None:
        return runner(pointer, fargs, *loop_args), seconds  # the compiled entry point: no type dispatch
    start = time.perf_counter()
    sig = (ftype, numba.typeof(fargs)) + tuple(numba.typeof(a) for a in loop_args)
    if events:
        step = _events.make_event_step(
            _events.make_event_function(events, jitted=True, flat=flat), jitted=True)
        runner = numba.njit([sig], **OPTIONS)(_loop.variant(_LOOPS[kind], _loop.evaluate, step))
    else:
        runner = numba.njit([sig], cache=True, **OPTIONS)(_LOOPS[kind])
    # call the compiled code's entry point directly: the argument types are those of
    # ``key`` by construction, so the dispatcher's per-call type resolution (~100 us with a
    # first-class function argument) is skipped
    runner = _runners[key] = runner.overloads[runner.signatures[0]].entry_point
    seconds += time.perf_counter() - start
    return runner(pointer, fargs, *loop_args), seconds
