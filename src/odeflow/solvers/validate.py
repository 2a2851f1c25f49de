"""Argument checks for :func:`odeflow.odeint` and :func:`odeflow.solve`.

Every check runs before any evaluation of ``func`` and raises an exception of
:mod:`odeflow.errors` whose message names the argument and the offending value.
"""
from __future__ import annotations

import math
import sys
import warnings

import numpy as np

from odeflow.errors import InputError, InputTypeError, ShapeError, ToleranceWarning
from odeflow.solvers.jit import kernel
from odeflow.solvers.kernels import all_finite

__all__ = ["as_state", "as_times", "distinct_times", "as_tolerance", "check_options", "OPTION_KEYS", "caller_stacklevel"]

MAX_EVENT_SAMPLES = 1024  # per step: more is a hang in disguise (each sample evaluates every event)

OPTION_KEYS = {
    "adaptive": ("first_step", "max_step", "max_steps", "controller", "min_step", "jump_t",
                 "event_samples"),
    "fixed": ("step_size", "max_steps", "jump_t", "event_samples"),
    "radau": ("first_step", "max_step", "max_steps", "jac"),
}


def caller_stacklevel():
    """The ``stacklevel`` that makes a warning point at the first frame outside odeflow."""
    frame, level = sys._getframe(1), 1
    package = __name__.split(".")[0] + "."
    while frame is not None and frame.f_globals.get("__name__", "").startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def _real_array(value, name, what):
    """``np.asarray(value)`` refusing ragged input, complex, strings and objects."""
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:  # ragged nested lists
        raise InputTypeError(f"`{name}` must be {what}; {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise InputTypeError(f"`{name}` must be {what}; got dtype {arr.dtype}")
    return arr


def as_state(y0, name="y0"):
    """``y0`` as an ndarray: float64 or float32 kept, integers and bools promoted
    to float64. Raises InputTypeError for other dtypes, InputError if not finite."""
    if type(y0) is np.ndarray and y0.dtype.char in "df" and y0.dtype.isnative:  # common, fast
        arr = y0.copy()
    else:
        arr = _real_array(y0, name, "an array of real numbers (float64, float32 or integers)")
        if arr.dtype.kind == "f" and arr.dtype.itemsize in (4, 8):  # float32/64, either byte order
            arr = arr.astype(arr.dtype.newbyteorder("="))  # a native copy: what Numba can read
        elif arr.dtype.kind in "biu":
            arr = arr.astype(np.float64)
        else:
            raise InputTypeError(
                f"`{name}` must hold real numbers (float64, float32 or integers); got dtype {arr.dtype}")
    if not all_finite(arr.reshape(-1)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        where = tuple(int(i) for i in bad)
        raise InputError(f"`{name}` must be finite; {name}[{', '.join(map(str, where))}] = "
                         f"{float(arr[tuple(bad)])!r}" if arr.ndim else f"`{name}` must be finite; got {float(arr)!r}")
    return arr


def derivative_array(out):
    """What ``func`` returned, as an ndarray of real numbers; InputTypeError naming ``func`` else."""
    try:
        f = np.asarray(out)
    except (TypeError, ValueError):
        f = None
    if f is None or f.dtype.kind not in "biuf":
        raise InputTypeError(f"`func` must return an array of dy/dt (real numbers); returned "
                             f"{type(out).__name__}" + (f" of dtype {f.dtype}" if f is not None else ""))
    return f


def as_times(t, name="t"):
    """``t`` as a 1-D float64 array, non-decreasing or non-increasing.

    A time may repeat (``[0, 1, 1, 2]``, or ``[a, a]``): the repeated output is
    the previous one and costs no evaluation (see :func:`distinct_times`). The
    direction is that of the first two different times; a later step against
    it is an :class:`~odeflow.errors.InputError` naming the first offending index.
    """
    arr = _real_array(t, name, "a 1-D array of real times").astype(np.float64)
    if arr.ndim != 1:
        raise InputError(f"`{name}` must be 1-D; got shape {arr.shape}")
    if arr.size == 0:
        raise InputError(f"`{name}` must hold at least one time; got an empty array")
    fault, i = first_time_fault(arr)
    if fault == 1:
        raise InputError(f"`{name}` must be finite; {name}[{i}] = {float(arr[i])!r}")
    if fault == 2:
        raise InputError(
            f"`{name}` must be non-decreasing or non-increasing (repeated times are allowed); "
            f"{name}[{i}] = {float(arr[i])!r} does not continue the direction of "
            f"{name}[0..{i - 1}] (ending at {name}[{i - 1}] = {float(arr[i - 1])!r})")
    return arr


@kernel
def first_time_fault(t):
    """``(0, -1)`` for a finite, monotone ``t`` (float64, shape (m,), repeats allowed);
    else ``(1, i)`` for the first non-finite ``t[i]``, or ``(2, i)`` for the first
    ``t[i]`` that goes against the direction set by the first two different times."""
    m = t.shape[0]
    for i in range(m):
        if not math.isfinite(t[i]):
            return 1, i
    direction = 0.0
    for i in range(1, m):
        step = t[i] - t[i - 1]
        if step == 0.0:
            continue
        if direction == 0.0:
            direction = 1.0 if step > 0.0 else -1.0
        elif step * direction < 0.0:
            return 2, i
    return 0, -1


def distinct_times(t):
    """The distinct times of a monotone ``t`` and where each entry of ``t`` is among them.

    Returns ``(u, index)``: ``u`` float64 of shape (k,), strictly monotone, and
    ``index`` int64 of shape (m,) with ``t == u[index]``. When ``t`` has no
    repeats, ``u`` is ``t`` itself and ``index`` is ``None`` (nothing to expand).
    """
    if t.size < 2 or np.all(t[1:] != t[:-1]):
        return t, None
    new = np.concatenate(([True], t[1:] != t[:-1]))
    return t[new], np.cumsum(new) - 1


def as_tolerance(value, name, shape, dtype, minimum=None):
    """A tolerance broadcast to the state ``shape`` and flattened (float64, (n,)).

    ``minimum`` (for ``rtol``): values below it are raised to it with a
    :class:`~odeflow.errors.ToleranceWarning`, as scipy's ``solve_ivp`` does.
    """
    n = math.prod(shape)
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            float(value)
        except OverflowError:
            raise InputError(f"`{name}` must be finite and non-negative; got an integer of "
                             f"{len(str(abs(value)))} digits, beyond float64") from None
    if isinstance(value, (float, int)) and not isinstance(value, bool) and value >= 0 \
            and value != float("inf") and (minimum is None or value >= minimum):
        arr = np.empty(n)  # the common case, without broadcasting machinery (nor np.full's cost)
        arr.fill(value)
        return arr
    arr = _real_array(value, name, "a real number or array").astype(np.float64)
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise InputError(f"`{name}` must be finite and non-negative; got {value!r}")
    try:
        arr = np.broadcast_to(arr, shape)
    except ValueError:
        raise ShapeError(f"`{name}` of shape {arr.shape} does not broadcast to the state shape "
                         f"{tuple(shape)} of `y0`") from None
    arr = np.ascontiguousarray(arr, dtype=np.float64).reshape(-1)
    if minimum is not None and np.any(arr < minimum):
        warnings.warn(f"`{name}` = {value!r} is below 100 * machine epsilon of {np.dtype(dtype)} "
                      f"and was raised to {minimum:.3g}", ToleranceWarning, stacklevel=caller_stacklevel())
        arr = np.maximum(arr, minimum)
    return arr


def _number(v):
    return isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, (bool, np.bool_))


def check_options(options, kind, method, name="options"):
    """Validate the ``options`` dict for a method of ``kind`` ('adaptive' or 'fixed');
    ``name`` is the argument named in messages (``adjoint_options`` for the backward solve)."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise InputTypeError(f"`{name}` must be a dict or None; got {type(options).__name__}")
    valid = OPTION_KEYS[kind]
    for key in options:
        if key not in valid:
            raise InputError(f"`{name}` key {key!r} does not apply to method {method!r}; "
                             f"valid keys: {', '.join(valid)}")
    out = dict(options)
    for key in ("first_step", "step_size", "min_step"):
        if key in out and out[key] is not None:
            v = out[key]
            if not (_number(v) and np.isfinite(v) and v > 0):
                raise InputError(f"`{name}['{key}']` must be a positive finite number; got {v!r}")
    if out.get("max_step") is not None:
        v = out["max_step"]
        if not (_number(v) and v > 0 and not np.isnan(v)):
            raise InputError(f"`{name}['max_step']` must be a positive number (inf allowed); got {v!r}")
    for key in ("max_steps", "event_samples"):
        v = out.get(key)
        if v is not None and (isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer))
                              or v < 1):
            raise InputError(f"`{name}['{key}']` must be a positive integer; got {v!r}")
    if out.get("event_samples") is not None and out["event_samples"] > MAX_EVENT_SAMPLES:
        raise InputError(f"`{name}['event_samples']` must be at most {MAX_EVENT_SAMPLES} (sub-intervals "
                         f"searched per step; a smaller max_step finds close roots more cheaply); got "
                         f"{out['event_samples']!r}")
    if out.get("jac") is not None and not callable(out["jac"]):
        raise InputTypeError(f"`{name}['jac']` must be callable as jac(t, y) -> df/dy of shape (n, n); "
                             f"got {type(out['jac']).__name__}")
    if out.get("controller") is not None and out["controller"] not in ("pi", "i"):
        raise InputError(f"`{name}['controller']` must be 'pi' or 'i'; got {out['controller']!r}")
    if out.get("jump_t") is not None:
        out["jump_t"] = check_jump_t(out["jump_t"], name)
    if out.get("min_step") is not None and out.get("max_step") is not None \
            and out["min_step"] > out["max_step"]:
        raise InputError(f"`{name}['min_step']` = {out['min_step']!r} exceeds `{name}['max_step']` "
                         f"= {out['max_step']!r}")
    return out


def check_jump_t(value, name="options"):
    """``options["jump_t"]`` as finite float64 values, shape (J,) (Tensors give their data)."""
    data = getattr(value, "data", value) if not isinstance(value, (list, tuple)) else [
        getattr(v, "data", v) for v in value]
    arr = _real_array(data, f"{name}['jump_t']", "a 1-D array of real times").astype(np.float64)
    if arr.ndim > 1:
        raise InputError(f"`{name}['jump_t']` must be a time or a 1-D array of times; got shape {arr.shape}")
    arr = arr.reshape(-1)
    if not np.all(np.isfinite(arr)):
        i = int(np.argmax(~np.isfinite(arr)))
        raise InputError(f"`{name}['jump_t']` must be finite; jump_t[{i}] = {float(arr[i])!r}")
    return arr


def check_step_resolution(options, t0, name="options"):
    """``max_step``, ``min_step``, ``first_step`` of at least the time resolution at ``t0``
    (10 units in the last place, the smallest step the solver can take there)."""
    resolution = 10.0 * float(np.spacing(abs(float(t0))))
    for key in ("max_step", "min_step", "first_step"):
        v = options.get(key)
        if v is not None and v < resolution:
            raise InputError(f"`{name}['{key}']` = {v!r} is below the time resolution at "
                             f"t0 = {float(t0)!r} ({resolution:.3g}, 10 units in the last place): "
                             f"no step that small can change t")
