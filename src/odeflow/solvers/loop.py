"""The step loops: adaptive embedded Runge–Kutta and fixed-step Runge–Kutta.

Each loop is written once, in the subset of Python that Numba compiles, and
runs two ways:

* as plain Python for a Python ``func`` (each step still calls the jitted
  kernels, so the per-step overhead is a handful of kernel calls);
* compiled whole when ``func`` is itself an ``@njit`` function, so the solve
  runs with no Python per step. ``func`` is then an *argument* of the loop, a
  Numba first-class function (a function pointer, ``numba.types.FunctionType``),
  so the loop is compiled once per argument *types* (state dtype and ndim,
  in-place or not, the types of ``args``) and cached on disk like every kernel
  (:mod:`odeflow.solvers.compiled`): a new ``func`` only compiles itself. The
  same source runs in all three ways with the globals ``evaluate`` and
  ``event_step`` bound differently (:func:`variant`).

Loops never raise: they return a status code, the rows completed and where
they stopped, and :mod:`odeflow.solvers.integrate` turns a failure into the
matching exception of :mod:`odeflow.errors` with the partial solution.

Array layout: the state is flat, ``y`` of shape ``(n,)``; ``func`` sees it as
``y.reshape(shape)``. ``K`` of shape ``(s, n)`` holds the stages. ``ys`` of
shape ``(len(t_out), n)`` holds the output rows. The optional step record for
dense output holds, per accepted step, ``t0``, ``h``, ``y0`` and ``Q = K.T @ P``.
"""
from __future__ import annotations

import math
import types

import numba
import numba.extending
import numpy as np

from odeflow.solvers.jit import OPTIONS, kernel
from odeflow.solvers.stiffness import stiffness_step
from odeflow.solvers.controller import (
    PI_ERR_PREV0, accept_factor, initial_guess, initial_step, min_step_at, next_attempt,
    reject_factor)
from odeflow.solvers.events import NONE as NO_EVENT, grown, no_event_step as event_step
from odeflow.solvers.jumps import after_jump, clip_to_jump, stage_time
from odeflow.solvers.kernels import (
    all_finite, combine, dense_coefficients, dense_eval, error_ratio, error_ratio_dop853,
    error_shares, scaled_rms, stiffness_estimate)

__all__ = ["SUCCESS", "UNDERFLOW", "MAX_STEPS", "NONFINITE", "BAD_SIZE", "python_evaluator",
           "evaluate", "make_evaluator", "adaptive_loop", "fixed_loop", "adaptive_kernel", "variant"]

# status codes returned by the loops
SUCCESS = 0
UNDERFLOW = 1
MAX_STEPS = 2
NONFINITE = 3
BAD_SIZE = 4   # func returned an array whose size differs from y0's
EVENT = 5      # a terminal event stopped the solve (odeflow.solvers.events)
EVENT_NONFINITE = 6  # an event function returned inf or NaN
MIN_STEP = 7   # the controller asked for a step below options["min_step"]


def _python_evaluate(func, fargs, t, y, shape, out):
    out[:] = np.asarray(func(t, y.reshape(shape), *fargs)).reshape(out.shape[0])
    return True


def _python_evaluate_inplace(func, fargs, t, y, shape, out):
    func(t, y.reshape(shape), out.reshape(shape), *fargs)
    return True


def python_evaluator(inplace):
    """``evaluate(func, fargs, t, y, shape, out) -> bool`` for the loop run as plain Python:
    ``out[:] = func(t, y.reshape(shape), *fargs)`` flattened (``func`` already wrapped by a
    check of every output's shape), or with ``inplace`` ``func(t, y, dydt, *fargs)`` writing
    into ``out`` seen with the state's shape."""
    return _python_evaluate_inplace if inplace else _python_evaluate


def evaluate(func, fargs, t, y, shape, out):
    """``out[:] = dy/dt`` at ``(t, y)`` flattened; False, writing nothing, when func's output has
    the wrong size (compiled path; see :func:`_evaluate_compiled` for the four forms)."""
    raise NotImplementedError("compiled only: the Python loop gets python_evaluator()")


@numba.extending.overload(evaluate, inline="always", jit_options=OPTIONS)
def _evaluate_compiled(func, fargs, t, y, shape, out):
    """The compiled evaluation, chosen when the loop is typed: ``func`` is a first-class
    function (``numba.types.FunctionType``) whose number of arguments tells the form
    (in place: ``func(t, y, dydt, *fargs)``); a 1-D state (``shape`` a 1-tuple) skips the
    reshapes, which in nopython mode cost as much again as a small ``func``. The
    out-of-place forms copy element by element (cheaper there than a broadcasting
    assignment)."""
    sig = getattr(func, "signature", None)
    inplace = sig is not None and len(sig.args) == 3 + len(fargs)  # (t, y, dydt, *fargs)
    flat = len(shape) == 1
    if inplace and flat:
        def impl(func, fargs, t, y, shape, out):
            func(t, y, out, *fargs)
            return True
    elif inplace:
        def impl(func, fargs, t, y, shape, out):
            func(t, y.reshape(shape), out.reshape(shape), *fargs)
            return True
    elif flat:
        def impl(func, fargs, t, y, shape, out):
            f = np.asarray(func(t, y, *fargs))
            if f.shape[0] != out.shape[0]:
                return False
            for k in range(out.shape[0]):
                out[k] = f[k]
            return True
    else:
        def impl(func, fargs, t, y, shape, out):
            f = np.asarray(func(t, y.reshape(shape), *fargs))
            if f.size != out.shape[0]:
                return False
            for k in range(out.shape[0]):
                out[k] = f.flat[k]
            return True
    return impl


def make_evaluator(func, jitted, flat=False):
    """For loops with ``func`` closed over (:mod:`odeflow.solvers.radau`):
    ``evaluate(t, y, shape, out) -> bool``: ``out[:] = func(t, y.reshape(shape))`` flattened.

    Returns False, writing nothing, when func's output has the wrong size.

    ``jitted``: ``func`` is an ``@njit`` function and the evaluator is the
    compiled :func:`evaluate` with ``func`` a constant (``flat`` is then read
    from the state's shape when compiled). Otherwise a plain Python evaluator
    with one vectorised copy (``func`` is then already wrapped by a check of
    every output's shape).
    """
    if not jitted:
        def evaluate_py(t, y, shape, out):
            out[:] = np.asarray(func(t, y.reshape(shape))).reshape(out.shape[0])
            return True
        return evaluate_py

    def closed(t, y, shape, out):  # the compiled forms of :func:`evaluate`, func a constant
        return evaluate(func, (), t, y, shape, out)
    return numba.njit(inline="always", **OPTIONS)(closed)


@kernel
def _grow(arr, cap):
    """Copy of ``arr`` with room for ``cap`` rows along axis 0."""
    new = np.empty((cap,) + arr.shape[1:], arr.dtype)
    new[: arr.shape[0]] = arr
    return new


@kernel
def grow_record(rec_t, rec_h, rec_y, rec_Q, n_acc):
    """The step record for dense output, doubled when row ``n_acc`` does not fit (else as it is)."""
    if n_acc >= rec_t.shape[0]:
        cap = 2 * rec_t.shape[0]
        return _grow(rec_t, cap), _grow(rec_h, cap), _grow(rec_y, cap), _grow(rec_Q, cap)
    return rec_t, rec_h, rec_y, rec_Q


@kernel
def _event_buffers(ev, y0, s):
    """Counters, scratch and an empty record for the events ``ev = (terminal, direction, g0, samples)``
    of a method with ``s`` stages."""
    n_ev = ev[0].shape[0]
    n = y0.shape[0]
    return (np.zeros(n_ev, np.int64), ev[2].copy(), np.empty(n_ev), np.empty(n_ev),
            np.empty_like(y0), np.empty(s), np.empty(8), np.empty(8, np.int64),
            np.empty((8, n), y0.dtype))


def adaptive_loop(func, fargs, t_out, y0, f0, shape, rtol, atol, A, b, b_err, c, P, error_order,
                  first_step, max_step, max_steps, beta, stretch, store,
                  b_err3, n_extra, stiff_bound, ev, jumps, min_step_opt):
    """Integrate with an embedded FSAL pair and dense output at ``t_out``.

    Parameters
    ----------
    func : the right-hand side, called through the global ``evaluate`` (see
        :func:`variant`); fargs : tuple, its extra arguments ``func(t, y, *fargs)``.
    t_out : ndarray, float64, shape (m,), strictly monotone; ``t_out[0]`` is t0.
    y0 : ndarray, shape (n,), float64 or float32; the flattened initial state.
    f0 : ndarray, shape (n,), ``func(t0, y0)`` flattened, already checked finite
        (the caller evaluates it once to check its shape).
    shape : tuple of int, the user's state shape.
    rtol, atol : ndarray, float64, shape (n,)
    A, b, b_err, c, P : tableau arrays (see :mod:`odeflow.solvers.tableau`).
    error_order : int, order of the embedded solution.
    first_step : float, 0 means "choose by HNW §II.4".
    max_step : float (``inf`` for no bound); max_steps : int (accepted + rejected).
    beta, stretch : controller constants (see :mod:`odeflow.solvers.controller`).
    store : bool, keep the step record for dense output.
    b_err3 : ndarray, DOP853's 3rd-order estimate (empty for the other methods).
    n_extra : int, trailing stages of ``c, A, P`` evaluated only for steps that
        interpolate (DOP853: 3; the stages per attempt are ``s = len(c) - n_extra``).
    stiff_bound : float, Hairer's stiffness test runs when > 0 (see
        :func:`odeflow.solvers.stiffness.stiffness_step`).
    ev : tuple ``(terminal, direction, g0, samples)`` of the events (length-0 arrays for
        none), see :mod:`odeflow.solvers.events`; ``g0`` their values at ``(t0, y0)``.
    jumps : ndarray, float64, shape (J,), the jump times inside the interval in the
        direction of integration (:mod:`odeflow.solvers.jumps`).
    min_step_opt : float, ``options["min_step"]`` (0 for none).

    Returns
    -------
    tuple ``(status, ys, rows_done, t, h, y, nfe, n_accepted, n_rejected,
    rec_t, rec_h, rec_y, rec_Q, stiff_at, blame, ev_t, ev_k, ev_y, ev_code)`` where
    ``t``, ``y`` are the time and state reached and ``h`` the last step tried;
    ``stiff_at`` is where the stiffness test first fired (NaN if never) and
    ``blame`` (shape (n,)) each component's share of the squared error norm of
    the last rejected steps (halved at every further rejection; zeros if none);
    ``ev_*`` the events found and the code of the last event step.
    """
    n = y0.shape[0]
    m = t_out.shape[0]
    s = c.shape[0] - n_extra
    t0 = t_out[0]
    t_end = t_out[m - 1]
    direction = 1.0 if t_end > t0 else -1.0
    interval = abs(t_end - t0)
    exponent = 1.0 / (error_order + 1) - 0.75 * beta

    ys = np.empty((m, n), y0.dtype)
    ys[0] = y0
    K = np.empty((s + n_extra, n), y0.dtype)
    y = y0.copy()
    y1 = np.empty_like(y0)
    y_prev = np.empty_like(y0)   # state of stage s-2 (stiffness test), extra stages' states
    shares = np.zeros(n)
    blame = np.zeros(n)
    stiff = np.zeros(3)          # stiffness test: positives, negatives in a row, run start
    stiff_at = np.nan
    cap = 64 if store else 1
    rec_t = np.empty(cap)
    rec_h = np.empty(cap)
    rec_y = np.empty((cap, n), y0.dtype)
    rec_Q = np.empty((cap, n, P.shape[1]), y0.dtype)

    n_ev = ev[0].shape[0]
    counts, g_left, g_right, roots, work, w, ev_t, ev_k, ev_y = _event_buffers(ev, y0, s)
    n_found = 0
    ev_code = NO_EVENT
    jn = 0                    # next jump time

    t = t0
    h = 0.0
    K[0] = f0
    nfe = 1
    ok = True

    if first_step > 0.0:
        h_abs = min(first_step, interval, max_step)
    else:
        # HNW §II.4: one explicit Euler trial step estimates the curvature
        d0 = scaled_rms(y0, y0, rtol, atol)
        d1 = scaled_rms(K[0], y0, rtol, atol)
        h0 = initial_guess(d0, d1, interval)
        y1[:] = y0 + (direction * h0) * K[0]
        ok = evaluate(func, fargs, t0 + direction * h0, y1, shape, K[1])  # K[1] as scratch
        nfe += 1
        d2 = scaled_rms(K[1] - K[0], y0, rtol, atol) / h0
        h_abs = initial_step(h0, d1, d2, error_order, interval, max_step)

    j = 1                     # next output row
    n_acc = 0
    n_rej = 0
    err_prev = PI_ERR_PREV0
    status = SUCCESS if ok else BAD_SIZE
    while status == SUCCESS and direction * (t_end - t) > 0.0:
        min_step = min_step_at(t, direction)
        h_abs = min(max(h_abs, min_step), max_step)
        rejected_last = False
        nonfinite_last = False
        while True:
            if h_abs < min_step:
                status = NONFINITE if nonfinite_last else UNDERFLOW
                break
            if h_abs < min_step_opt:
                status = MIN_STEP
                break
            if n_acc + n_rej >= max_steps:
                status = MAX_STEPS
                break
            t_new, h = next_attempt(t, t_end, h_abs, direction, stretch)
            at_jump = False
            if jn < jumps.shape[0]:
                t_new, h, at_jump = clip_to_jump(t, t_new, h, h_abs, jumps[jn], direction, stretch)
            h_proposed = h_abs
            h_abs = abs(h)

            for i in range(1, s):
                # for an FSAL pair the last stage state is the new solution y1
                combine(y, h, K, A[i], i, y1)
                ok = evaluate(func, fargs, stage_time(t, c[i], h, at_jump, t_new), y1, shape, K[i]) and ok
                if i == s - 2 and stiff_bound > 0.0:
                    y_prev[:] = y1
            nfe += s - 1
            if not ok:
                status = BAD_SIZE
                break
            if b_err3.shape[0] > 0:
                err = error_ratio_dop853(y, y1, h, K, b_err, b_err3, rtol, atol)
            else:
                err = error_ratio(y, y1, h, K, b_err, rtol, atol)

            if err <= 1.0:
                if stiff_bound > 0.0 and math.isnan(stiff_at):
                    hl = stiffness_estimate(h, K[s - 1], K[s - 2], y1, y_prev)
                    if stiffness_step(stiff, hl, stiff_bound, t):
                        stiff_at = stiff[2]
                if n_extra > 0 and (store or n_ev > 0 or (j < m and direction * (t_out[j] - t_new) < 0.0)):
                    for i in range(s, s + n_extra):  # the dense output's own stages
                        combine(y, h, K, A[i], i, y_prev)
                        ok = evaluate(func, fargs, stage_time(t, c[i], h, at_jump, t_new), y_prev, shape, K[i]) and ok
                    nfe += n_extra
                    if not ok:
                        status = BAD_SIZE
                        break
                factor = accept_factor(err, err_prev, exponent, beta, rejected_last)
                err_prev = max(err, PI_ERR_PREV0)
                t_fill = t_new  # outputs up to here: a terminal event ends the step early
                if n_ev > 0:
                    if n_found + ev[3] * n_ev > ev_t.shape[0]:
                        ev_t, ev_k, ev_y = grown(ev_t, ev_k, ev_y, n_found + ev[3] * n_ev)
                    n_found, ev_code = event_step(
                        t, h, t_new, y, K, P, y1, shape, ev, counts, g_left, g_right,
                        roots, work, w, ev_t, ev_k, ev_y, n_found, fargs)
                    if ev_code >= 0:
                        t_fill = ev_t[n_found - 1]
                    elif ev_code != NO_EVENT:
                        status = EVENT_NONFINITE
                        break
                # outputs inside (t, t_fill] from the continuous extension
                while j < m and direction * (t_out[j] - t_fill) <= 0.0:
                    if t_out[j] == t_new:
                        ys[j] = y1
                    else:
                        dense_eval(y, h, K, P, (t_out[j] - t) / h, ys[j])
                    j += 1
                if store:
                    rec_t, rec_h, rec_y, rec_Q = grow_record(rec_t, rec_h, rec_y, rec_Q, n_acc)
                    rec_t[n_acc] = t
                    rec_h[n_acc] = h
                    rec_y[n_acc] = y
                    dense_coefficients(K, P, rec_Q[n_acc])
                n_acc += 1
                if ev_code >= 0:
                    t = t_fill
                    y[:] = ev_y[n_found - 1]
                    status = EVENT
                    break
                t = t_new
                y[:] = y1
                h_abs *= factor
                if at_jump:  # no FSAL across a jump: the right limit f(T+, y(T))
                    jn += 1
                    ok = evaluate(func, fargs, after_jump(t, direction), y, shape, K[0])
                    nfe += 1
                    status = SUCCESS if ok else BAD_SIZE
                    h_abs = max(h_abs, h_proposed)  # the step was cut short by the jump
                else:
                    K[0] = K[s - 1]   # FSAL: f(t_new, y1) is the next first stage
                break
            n_rej += 1
            if math.isfinite(err):
                error_shares(y, y1, h, K, b_err, rtol, atol, shares)
                for i in range(n):
                    blame[i] = 0.5 * blame[i] + shares[i]
            nonfinite_last = not math.isfinite(err)
            rejected_last = True
            h_abs *= reject_factor(err, exponent)
        if status != SUCCESS:
            break
    n_rec = n_acc if store else 0
    return (status, ys, j, t, h, y, nfe, n_acc, n_rej,
            rec_t[:n_rec], rec_h[:n_rec], rec_y[:n_rec], rec_Q[:n_rec], stiff_at, blame,
            ev_t[:n_found], ev_k[:n_found], ev_y[:n_found], ev_code)


def fixed_loop(func, fargs, grid, is_output, is_jump, y0, f0, shape, A, b, c, store, ev):
    """Integrate with a fixed-step Runge–Kutta method over the nodes ``grid``.

    ``grid`` (float64, shape (g,)) holds every step boundary, the output times
    among them (``is_output``, bool, shape (g,)), so outputs need no
    interpolation; ``is_jump`` (bool, shape (g,)) marks the jump times of
    :mod:`odeflow.solvers.jumps`, seen from the left by the step ending
    there and from the right by the next; ``f0 = func(t0, y0)`` (flat) is the first step's first
    stage. Returns ``(status, ys, rows_done, t, h, nfe, n_steps,
    rec_y, ev_t, ev_k, ev_y, ev_code)`` where ``rec_y`` (shape (g, n) when
    ``store``) holds the state at every node. A non-finite state stops the
    loop with ``NONFINITE``. Events (``ev`` as for the adaptive loop) are
    located on the linear interpolant between nodes (what
    :meth:`odeflow.Solution.interpolate` returns); after a terminal event
    ``t`` is the event time and ``n_steps`` counts the step it ended.
    """
    n = y0.shape[0]
    g = grid.shape[0]
    s = c.shape[0]
    m = 0
    for k in range(g):
        if is_output[k]:
            m += 1
    ys = np.empty((m, n), y0.dtype)
    ys[0] = y0
    rec_y = np.empty((g if store else 0, n), y0.dtype)
    if store:
        rec_y[0] = y0
    K = np.empty((s, n), y0.dtype)
    y = y0.copy()
    stage = np.empty_like(y0)
    j = 1
    nfe = 1
    h = 0.0
    t = grid[0]
    K[0] = f0
    n_ev = ev[0].shape[0]
    counts, g_left, g_right, roots, work, w, ev_t, ev_k, ev_y = _event_buffers(ev, y0, 1)
    n_found = 0
    ev_code = NO_EVENT
    slope = np.empty((1, n), y0.dtype)   # linear interpolant (y1 - y) / h, with P = [[1]]
    linear = np.ones((1, 1))
    for k in range(g - 1):
        t = grid[k]
        h = grid[k + 1] - t
        ok = True
        if k > 0:
            ok = evaluate(func, fargs, after_jump(t, h) if is_jump[k] else t, y, shape, K[0])
            nfe += 1
        for i in range(1, s):
            combine(y, h, K, A[i], i, stage)
            ok = evaluate(func, fargs, stage_time(t, c[i], h, is_jump[k + 1], grid[k + 1]), stage,
                          shape, K[i]) and ok
        nfe += s - 1
        if not ok:
            return (BAD_SIZE, ys, j, t, h, nfe, k, rec_y, ev_t[:n_found], ev_k[:n_found],
                    ev_y[:n_found], ev_code)
        combine(y, h, K, b, s, stage)
        if not all_finite(stage):
            return (NONFINITE, ys, j, t, h, nfe, k, rec_y, ev_t[:n_found], ev_k[:n_found],
                    ev_y[:n_found], ev_code)
        if n_ev > 0:
            for i in range(n):
                slope[0, i] = (stage[i] - y[i]) / h
            if n_found + ev[3] * n_ev > ev_t.shape[0]:
                ev_t, ev_k, ev_y = grown(ev_t, ev_k, ev_y, n_found + ev[3] * n_ev)
            n_found, ev_code = event_step(
                t, h, grid[k + 1], y, slope, linear, stage, shape, ev, counts, g_left,
                g_right, roots, work, w, ev_t, ev_k, ev_y, n_found, fargs)
            if ev_code >= 0:
                t_ev = ev_t[n_found - 1]
                if t_ev == grid[k + 1] and is_output[k + 1]:
                    ys[j] = stage
                    j += 1
                return (EVENT, ys, j, t_ev, h, nfe, k + 1, rec_y, ev_t[:n_found], ev_k[:n_found],
                        ev_y[:n_found], ev_code)
            if ev_code != NO_EVENT:
                return (EVENT_NONFINITE, ys, j, t, h, nfe, k, rec_y, ev_t[:n_found],
                        ev_k[:n_found], ev_y[:n_found], ev_code)
        y[:] = stage
        if store:
            rec_y[k + 1] = y
        if is_output[k + 1]:
            ys[j] = y
            j += 1
    return (SUCCESS, ys, j, grid[g - 1], h, nfe, g - 1, rec_y, ev_t[:n_found], ev_k[:n_found],
            ev_y[:n_found], ev_code)


# the adaptive loop as a cached kernel, for compiled callers that run many solves (ensemble chunks)
adaptive_kernel = kernel(adaptive_loop)

_VARIANTS = {}


def variant(loop, evaluate_fn, event_step_fn):
    """``loop`` (:func:`adaptive_loop` or :func:`fixed_loop`) with its globals ``evaluate`` and
    ``event_step`` bound to other functions: the same source, run as plain Python (with
    :func:`python_evaluator` and a Python event step) or compiled with a jitted event step
    (:func:`odeflow.solvers.events.make_event_step`). The module-level functions themselves use the
    compiled :func:`evaluate` and :func:`~odeflow.solvers.events.no_event_step`: those are the loops
    compiled once per argument types and cached on disk (see :mod:`odeflow.solvers.compiled`)."""
    key = (loop, evaluate_fn, event_step_fn)
    fn = _VARIANTS.get(key)
    if fn is None:
        env = dict(loop.__globals__, evaluate=evaluate_fn, event_step=event_step_fn)
        fn = types.FunctionType(loop.__code__, env, loop.__name__, loop.__defaults__)
        if event_step_fn is event_step:  # event steps are built per solve: keep only the fixed ones
            _VARIANTS[key] = fn
    return fn

