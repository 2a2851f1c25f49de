"""Per-sample adaptive stepping: every sample of a batch has its own step size.

:func:`odeflow.solve` with ``batch_axis`` lands here. Without it a batched
``y0`` of shape ``(batch, ...)`` is one big system: one RMS error norm over all
samples decides every step, so a sample's solution depends on its batch-mates
and one hard sample makes the whole batch crawl. Here each sample ``b`` along
``batch_axis`` keeps its own time ``t_b``, step size ``h_b``, error norm (the
RMS of HNW §II.4 eq. 4.11 over *its* components only), accept/reject decisions,
PI-controller memory, statistics and, optionally, its own output times
``t[b, :]`` (the torchode idea: Lienen & Günnemann 2022, "torchode: A Parallel
ODE Solver for PyTorch"; diffrax gets the same by ``jax.vmap``).

The ``func`` contract
---------------------
``func(t, y)`` is called once per Runge–Kutta stage on the samples still
integrating (the *active* ones): ``y`` has the user's layout with ``k <= batch``
samples along ``batch_axis``, ``t`` is an ndarray of shape ``(k,)`` holding each
active sample's own time, or a Python float when those times all agree (so a
``func`` written for a scalar ``t`` keeps working then: e.g. a shared start
time, or an autonomous ``func`` that ignores ``t``). It returns ``dy/dt`` of
``y``'s shape. Each returned row must depend on its own row of ``y`` (and its
own ``t``) only; per-sample parameters follow the sample through ``args``:
arrays whose leading axis has length ``batch``, passed as ``func(t, y, *args)``
with the same rows selected as ``y``.

Bitwise independence
--------------------
Every per-sample operation (stage sums, error norm, controller, dense output)
is the engine's own jitted kernel of :mod:`odeflow.solvers.kernels` and
:mod:`odeflow.solvers.controller` run on that sample's row: a sample's result,
statistics and step sequence are bitwise the same alone or in any batch,
provided ``func``'s row ``b`` is bitwise independent of the other rows (true
for element-wise NumPy code; a BLAS matrix product may round differently for
different batch sizes).

Not provided (raise :class:`~odeflow.errors.InputError`): ``options["jump_t"]`` and
``options["min_step"]``, ``dop853`` (two-estimate error norm, three extra dense-output
stages), fixed-step methods
(they take the same steps for every sample: solve without ``batch_axis``) and
dense output (``Solution.interpolate``).
"""
from __future__ import annotations

import math

import numpy as np

from odeflow.errors import InputError, InputTypeError, ShapeError
from odeflow.solvers import loop as _loop
from odeflow.solvers.controller import (
    CONTROLLERS, PI_ERR_PREV0, accept_factor, initial_guess, initial_step, min_step_at,
    next_attempt, reject_factor)
from odeflow.solvers.jit import entry_point, kernel
from odeflow.solvers.kernels import dense_eval, scaled_rms
from odeflow.solvers.solution import Solution
from odeflow.solvers.validate import derivative_array, first_time_fault

__all__ = ["solve_batch", "prepare_batch", "integrate", "check_batch", "BatchSolution", "batch_layout"]

RUNNING = -1  # sample status while integrating; then one of loop.SUCCESS ... NONFINITE
# the rows of the loop's packed per-sample state (one array per dtype, see _finish_and_next)
FLOAT_ROWS = ("t", "t_new", "h", "h_abs", "direction", "err_prev", "t_end", "min_step")
BOOL_ROWS = ("rejected_last", "nonfinite_last", "fresh")
INT_ROWS = ("j", "n_acc", "n_rej", "nfe", "status")


class BatchSolution(Solution):
    """A :class:`~odeflow.Solution` of a per-sample solve.

    ``t`` is ``(m,)`` for shared output times or ``(batch, m)`` for per-sample
    ones; ``y`` is ``(m, *y0.shape)`` with ``y[i]`` taken at each sample's own
    ``t[b, i]``. ``stats`` holds per-sample arrays of shape ``(batch,)``:
    ``nfe``, ``n_steps``, ``n_accepted``, ``n_rejected``, ``status`` (str), plus
    the ints ``n_calls`` (batched calls of ``func``) and ``sample_evaluations``
    (``nfe`` summed over samples).
    """

    def _steps_record(self):
        raise InputError("a per-sample solve (batch_axis) keeps no dense output: interpolate(), "
                         "t_steps and y_steps are not available; pass the times you need in `t`")

    def interpolate(self, t_new):
        """Not available for a per-sample solve: raises InputError."""
        self._steps_record()


def check_batch(y0_shape, t, batch_axis):
    """Check ``batch_axis`` and the times; return ``(axis, t (batch, m) float64, per_sample)``.

    Raises InputTypeError (``batch_axis`` not an int), InputError (axis out of
    range, a time not finite, a row not strictly monotone: row and index named),
    ShapeError (per-sample ``t`` whose leading size is not the batch size).
    """
    if isinstance(batch_axis, (bool, np.bool_)) or not isinstance(batch_axis, (int, np.integer)):
        raise InputTypeError(f"`batch_axis` must be an int or None; got {type(batch_axis).__name__}")
    ndim = len(y0_shape)
    if not -ndim <= batch_axis < ndim:
        raise InputError(f"`batch_axis` = {int(batch_axis)} is out of range for `y0` of shape "
                         f"{tuple(y0_shape)} ({ndim} axes)")
    axis = int(batch_axis) % ndim
    batch = y0_shape[axis]
    try:
        arr = np.asarray(t, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputTypeError(f"`t` must be an array of real times; {exc}") from None
    if arr.ndim not in (1, 2):
        raise InputError(f"`t` must be 1-D (shared times) or 2-D (batch, m) with batch_axis; "
                         f"got shape {arr.shape}")
    if arr.shape[-1] == 0:
        raise InputError("`t` must hold at least one time; got an empty array")
    per_sample = arr.ndim == 2
    if per_sample and arr.shape[0] != batch:
        raise ShapeError(f"per-sample `t` of shape {arr.shape} must have one row per sample: "
                         f"{batch} rows (y0.shape[{axis}] of y0 shape {tuple(y0_shape)})")
    rows = arr if per_sample else arr[None]
    for r in range(rows.shape[0]):
        fault, i = first_time_fault(np.ascontiguousarray(rows[r]))
        where = f"t[{r}, {i}]" if per_sample else f"t[{i}]"
        name = f"`t` row {r}" if per_sample else "`t`"
        if fault == 1:
            raise InputError(f"{name} must be finite; {where} = {float(rows[r, i])!r}")
        if fault == 2:
            raise InputError(f"{name} must be strictly increasing or strictly decreasing; {where} = "
                             f"{float(rows[r, i])!r} does not continue the direction of the "
                             f"previous times (ending at {float(rows[r, i - 1])!r})")
    return axis, np.ascontiguousarray(np.broadcast_to(rows, (batch, rows.shape[1]))), per_sample


def batch_layout(x, axis):
    """``x`` (user layout, batch along ``axis``) as a C-contiguous ``(batch, n)`` array."""
    x = np.asarray(x)
    if axis:   # np.moveaxis costs ~8 us even when it moves nothing
        x = np.moveaxis(x, axis, 0)
    return np.ascontiguousarray(x.reshape(x.shape[0], math.prod(x.shape[1:])))


def check_args(args, batch):
    """``args`` as a tuple of arrays with leading size ``batch`` (per-sample parameters)."""
    if not isinstance(args, tuple):
        raise InputTypeError(f"`args` must be a tuple; got {type(args).__name__}")
    out = []
    for i, a in enumerate(args):
        arr = np.asarray(a)
        if arr.ndim == 0 or arr.shape[0] != batch:
            raise ShapeError(f"`args[{i}]` of shape {arr.shape} must have a leading axis of length "
                             f"{batch} (one entry per sample) with batch_axis")
        out.append(arr)
    return tuple(out)


class _Caller:
    """Calls ``func`` on the active rows in the user's layout and checks what it returns."""

    def __init__(self, func, sample_shape, axis, dtype, args):
        self.func, self.sample_shape, self.axis, self.dtype, self.args = func, sample_shape, axis, np.dtype(dtype), args
        self.batch = 0  # set by integrate
        self.n_calls = 0
        self.flat = axis == 0 and len(sample_shape) == 1  # y is Y itself: no reshape either way

    def __call__(self, t, rows, Y, same=None, full=False):
        """``func`` at times ``t`` (k,) and states ``Y`` (k, n) of the samples ``rows``; (k, n).

        ``same``: whether all of ``t`` agree (computed here when None); ``full``:
        ``rows`` is every sample, so ``args`` pass whole (no copy).
        """
        k = Y.shape[0]
        if self.flat:
            y = Y
        else:
            y = Y.reshape((k,) + self.sample_shape)
            if self.axis:
                y = np.moveaxis(y, 0, self.axis)
        if same is None:
            same = k > 0 and t.min() == t.max()
        t_arg = float(t[0]) if same else t
        try:
            if self.args:
                out = self.func(t_arg, y, *(self.args if full else [a[rows] for a in self.args]))
            else:
                out = self.func(t_arg, y)
        except (ValueError, IndexError) as exc:
            if full:
                raise
            # the usual cause: a per-sample array captured by func, which still has every sample
            raise ShapeError(f"`func` failed when called on the {k} samples still integrating (of "
                             f"{self.batch}): with batch_axis, func sees only the active samples, so "
                             f"per-sample parameters must come through `args` (solve_batch), not be "
                             f"captured whole; the error was: {type(exc).__name__}: {exc}") from exc
        self.n_calls += 1
        f = out if type(out) is np.ndarray else derivative_array(out)
        if f.shape != y.shape:
            raise ShapeError(f"`func` must return dy/dt with the shape of its `y` {y.shape} "
                             f"({k} active samples along batch_axis {self.axis}); returned shape {f.shape}")
        dtype = f.dtype
        if dtype is not self.dtype and dtype.kind not in "biuf":  # (the state's own dtype is real)
            raise InputTypeError(f"`func` must return real numbers; returned dtype {dtype}")
        if self.flat:
            if dtype is self.dtype and f.flags.c_contiguous:
                return f
            return np.ascontiguousarray(f, dtype=self.dtype)
        if self.axis:
            f = np.moveaxis(f, self.axis, 0)
        return np.ascontiguousarray(f, dtype=self.dtype).reshape(k, -1)


@kernel(inline=True)
def _stage_sum_row(w, K, b, m, i):
    """:func:`~odeflow.solvers.kernels.stage_sum` on sample ``b`` of ``K`` (B, s, n), by index.

    This and the two kernels below are the row-indexed twins of the engine's
    ``stage_sum``, ``combine`` and ``error_ratio``: the same arithmetic in the same
    order (so a sample stays bitwise equal to the unbatched solver, tested), with
    ``K[b, j, i]`` indexed instead of a view ``K[b]`` taken per sample: Numba
    reference-counts every view, about 60 ns for the five views of one sample's
    error norm, which made per-sample stepping cost more per evaluation than coupled.
    """
    acc = 0.0
    for j in range(m):
        if w[j] != 0.0:
            acc += w[j] * K[b, j, i]
    return acc


@kernel(inline=True)
def _combine_row(Y, b, h, K, w, m, out, r):
    """``out[r] = Y[b] + h * sum_{j<m} w[j] K[b, j]`` (:func:`~odeflow.solvers.kernels.combine`)."""
    for i in range(Y.shape[1]):
        out[r, i] = Y[b, i] + h * _stage_sum_row(w, K, b, m, i)


@kernel(inline=True)
def _error_ratio_row(Y, b, Y1, r, h, K, b_err, rtol, atol):
    """:func:`~odeflow.solvers.kernels.error_ratio` of sample ``b`` (new state ``Y1[r]``)."""
    n = Y.shape[1]
    s = K.shape[1]
    acc = 0.0
    for i in range(n):
        e = h * _stage_sum_row(b_err, K, b, s, i)
        sc = atol[b, i] + rtol[b, i] * max(abs(Y[b, i]), abs(Y1[r, i]))
        q = 0.0 if e == 0.0 else e / sc
        acc += q * q
        if not (math.isfinite(Y1[r, i]) and math.isfinite(e)):
            return np.nan
    return math.sqrt(acc / max(n, 1))


@kernel
def _initial_trial(Y, F0, rtol, atol, interval, direction, t0, Y1, d1, h0, t1):
    """HNW §II.4 steps a-b per sample: ``h0``, the Euler trial state ``Y1`` and its time ``t1``."""
    for b in range(Y.shape[0]):
        d0 = scaled_rms(Y[b], Y[b], rtol[b], atol[b])
        d1[b] = scaled_rms(F0[b], Y[b], rtol[b], atol[b])
        h0[b] = initial_guess(d0, d1[b], interval[b])
        step = direction[b] * h0[b]
        for i in range(Y.shape[1]):
            Y1[b, i] = Y[b, i] + step * F0[b, i]
        t1[b] = t0[b] + step


@kernel
def _initial_steps(Y, F0, F1, rtol, atol, d1, h0, error_order, interval, max_step, h_abs):
    """HNW §II.4 steps c-f per sample from the trial slope ``F1``."""
    diff = np.empty(Y.shape[1], Y.dtype)
    for b in range(Y.shape[0]):
        for i in range(Y.shape[1]):
            diff[i] = F1[b, i] - F0[b, i]
        if h0[b] == 0.0:   # a zero-length interval: no step is ever taken (and no 0 / 0)
            h_abs[b] = 0.0
            continue
        d2 = scaled_rms(diff, Y[b], rtol[b], atol[b]) / h0[b]
        h_abs[b] = initial_step(h0[b], d1[b], d2, error_order, interval[b], max_step)


@kernel
def _next_attempts(t, t_end, direction, h_abs, h, t_new, min_step, fresh, rejected_last, nonfinite_last,
                   status, n_acc, n_rej, max_step, max_steps, stretch):
    """Start every running sample's next attempt; return the rows that attempt one.

    Per sample this is the head of the loop of
    :func:`odeflow.solvers.loop.adaptive_loop`: at a new step the step
    bounds are taken at ``t``; then underflow and ``max_steps`` end the sample.
    """
    rows = np.empty(t.shape[0], np.int64)
    k = 0
    for b in range(t.shape[0]):
        if status[b] != RUNNING:
            continue
        if fresh[b]:
            if direction[b] * (t_end[b] - t[b]) <= 0.0:
                status[b] = 0  # SUCCESS
                continue
            min_step[b] = min_step_at(t[b], direction[b])
            h_abs[b] = min(max(h_abs[b], min_step[b]), max_step)
            rejected_last[b] = False
            nonfinite_last[b] = False
            fresh[b] = False
        if h_abs[b] < min_step[b]:
            status[b] = 3 if nonfinite_last[b] else 1  # NONFINITE, UNDERFLOW
            continue
        if n_acc[b] + n_rej[b] >= max_steps:
            status[b] = 2  # MAX_STEPS
            continue
        t_new[b], h[b] = next_attempt(t[b], t_end[b], h_abs[b], direction[b], stretch)
        h_abs[b] = abs(h[b])
        rows[k] = b
        k += 1
    return rows[:k]


@kernel
def _stage_states(Y, fl, K, A, c, i, rows, out, t_stage, F_prev):
    """``K[b, i-1] = F_prev[r]`` (the previous stage's derivatives; skipped when
    ``F_prev`` has no rows), then ``out[r] = Y[b] + h[b] * sum_{j<i} A[i, j] K[b, j]``
    (HNW eq. 1.8) and ``t_stage[r] = t[b] + c[i] h[b]`` for ``b = rows[r]``, with ``t``,
    ``h`` the rows of the packed state ``fl`` (:data:`FLOAT_ROWS`); returns whether all
    ``t_stage`` agree. One call per stage: the scatter of ``func``'s rows into ``K``
    costs no separate NumPy indexing."""
    t, h = fl[0], fl[2]
    a = A[i]
    c_i = c[i]
    same = True
    scatter = F_prev.shape[0] == rows.shape[0]
    for r in range(rows.shape[0]):
        b = rows[r]
        if scatter:
            for q in range(K.shape[2]):
                K[b, i - 1, q] = F_prev[r, q]
        _combine_row(Y, b, h[b], K, a, i, out, r)
        t_stage[r] = t[b] + c_i * h[b]
        if t_stage[r] != t_stage[0]:
            same = False
    return same


@kernel
def _finish_attempts(rows, Y, Y1, K, t, t_new, h, h_abs, direction, t_out, ys, j, b_err, P, rtol, atol,
                     err_prev, rejected_last, nonfinite_last, fresh, n_acc, n_rej, nfe, exponent, beta):
    """Error norm, accept/reject and controller per attempting sample; outputs of accepted steps.

    ``Y1[r]`` is the last stage state (the new solution of an FSAL pair) of
    sample ``rows[r]``. The tail of the loop of
    :func:`odeflow.solvers.loop.adaptive_loop`, row by row.
    """
    s = K.shape[1]
    m = t_out.shape[1]
    for r in range(rows.shape[0]):
        b = rows[r]
        nfe[b] += s - 1
        err = _error_ratio_row(Y, b, Y1, r, h[b], K, b_err, rtol, atol)
        if err <= 1.0:
            factor = accept_factor(err, err_prev[b], exponent, beta, rejected_last[b])
            err_prev[b] = max(err, PI_ERR_PREV0)
            while j[b] < m and direction[b] * (t_out[b, j[b]] - t_new[b]) <= 0.0:
                if t_out[b, j[b]] == t_new[b]:
                    ys[b, j[b]] = Y1[r]
                else:
                    dense_eval(Y[b], h[b], K[b], P, (t_out[b, j[b]] - t[b]) / h[b], ys[b, j[b]])
                j[b] += 1
            n_acc[b] += 1
            t[b] = t_new[b]
            for i in range(Y.shape[1]):  # element loops: no array views in the hot path
                Y[b, i] = Y1[r, i]
                K[b, 0, i] = K[b, s - 1, i]  # FSAL
            h_abs[b] *= factor
            fresh[b] = True
        else:
            n_rej[b] += 1
            nonfinite_last[b] = not math.isfinite(err)
            rejected_last[b] = True
            h_abs[b] *= reject_factor(err, exponent)


@kernel
def _finish_and_next(rows, Y, Y1, K, fl, bl, il, t_out, ys, b_err, P, rtol, atol, exponent, beta,
                     max_step, max_steps, stretch, F_last, A, c, S, t_stage, same):
    """``K[b, s-1] = F_last[r]``, :func:`_finish_attempts`, :func:`_next_attempts`, and the
    next pass's first stage states into ``S``, ``t_stage`` (:func:`_stage_states` for stage 1;
    ``same[0]``: whether their times agree) in one call: fewer dispatches and no NumPy
    indexing per step in the Python loop. The per-sample state comes packed (:data:`FLOAT_ROWS`, :data:`BOOL_ROWS`,
    :data:`INT_ROWS` of ``fl``, ``bl``, ``il``): every array argument costs its unboxing on each
    call. Returns the next pass's rows."""
    t, t_new, h, h_abs, direction, err_prev, t_end, min_step = (fl[0], fl[1], fl[2], fl[3], fl[4], fl[5],
                                                                 fl[6], fl[7])
    rejected_last, nonfinite_last, fresh = bl[0], bl[1], bl[2]
    j, n_acc, n_rej, nfe, status = il[0], il[1], il[2], il[3], il[4]
    s = K.shape[1]
    for r in range(rows.shape[0]):
        for q in range(K.shape[2]):
            K[rows[r], s - 1, q] = F_last[r, q]
    _finish_attempts(rows, Y, Y1, K, t, t_new, h, h_abs, direction, t_out, ys, j, b_err, P, rtol, atol,
                     err_prev, rejected_last, nonfinite_last, fresh, n_acc, n_rej, nfe, exponent, beta)
    rows = _next_attempts(t, t_end, direction, h_abs, h, t_new, min_step, fresh, rejected_last,
                          nonfinite_last, status, n_acc, n_rej, max_step, max_steps, stretch)
    same[0] = _stage_states(Y, fl, K, A, c, 1, rows, S, t_stage, F_last[:0])  # nothing to scatter
    return rows


def prepare_batch(func, y0, t, batch_axis, rtol, atol, method, options, args):
    """Every check of :func:`solve_batch`, before any work; returns what :func:`integrate` takes:
    ``(tab, y0, t_rows, per_sample, axis, rtol, atol, opts, max_steps, args)``."""
    from odeflow.solvers.integrate import DEFAULT_MAX_STEPS, prepare  # integrate imports this module
    from odeflow.solvers.validate import as_state

    shape = as_state(y0).shape
    if not shape:
        raise InputError("`batch_axis` needs a `y0` with at least one axis; got a scalar")
    axis, t_rows, per_sample = check_batch(shape, t, batch_axis)
    t_check = t_rows[0] if len(t_rows) else np.arange(float(t_rows.shape[1]))  # an empty batch
    tab, y0, _, rtol, atol, opts = prepare(func, y0, t_check, rtol, atol, method, options)
    if tab is None:
        raise InputError("`batch_axis` needs an explicit adaptive method (dopri5, bosh3, tsit5); "
                         "method 'radau' has no per-sample mode: solve without batch_axis")
    if tab.n_extra > 0 or tab.b_err3_arr.shape[0] > 0:
        # DOP853's error norm combines two estimates and its dense output needs three more stages
        # per step; the per-sample loop has neither (it would use the wrong norm and read past K)
        raise InputError(f"`batch_axis` is not available with method {method!r} (its error norm and "
                         f"dense output need stages the per-sample loop does not compute); use dopri5 or "
                         f"tsit5 with batch_axis, or solve_ensemble / no batch_axis for {method}")
    if not tab.adaptive:
        raise InputError(f"`batch_axis` needs an adaptive method (dopri5, tsit5, bosh3): fixed-step method "
                         f"{method!r} takes the same steps for every sample; solve without batch_axis")
    for key in ("jump_t", "min_step", "event_samples"):  # not in the per-sample loop: refuse, never ignore
        if opts.get(key) is not None:
            raise InputError(f"`options[{key!r}]` is not available with `batch_axis` (the per-sample "
                             f"solve would ignore it); solve without batch_axis")
    args = check_args(args, shape[axis])
    max_steps = int(opts.get("max_steps") or DEFAULT_MAX_STEPS)
    return tab, y0, t_rows, per_sample, axis, rtol, atol, opts, max_steps, args


def solve_batch(func, y0, t, batch_axis, *, rtol=1e-7, atol=1e-9, method="dopri5", options=None, args=()):
    """The per-sample solve behind ``odeflow.solve(..., batch_axis=...)``.

    Parameters as :func:`odeflow.solve`, and

    batch_axis : int
        The axis of ``y0`` along which samples lie (negative counts from the end).
    t : array_like of float, shape (m,) or (batch, m)
        Shared output times, or one strictly monotone row per sample
        (``t[b, 0]`` is sample ``b``'s initial time; rows may differ in direction).
    args : tuple of arrays with leading axis of length ``batch``
        Per-sample parameters, passed as ``func(t, y, *args)`` with the active rows.

    Returns
    -------
    BatchSolution
        ``stats`` per sample (see :class:`BatchSolution`).

    Raises
    ------
    InputTypeError, InputError, ShapeError
        Before any work (see :func:`check_batch`), and those of :func:`odeflow.solve`.
    SolverError
        The first failed sample's failure (naming the sample), raised after every
        other sample has finished; ``exc.solution`` holds the rows every sample
        completed and per-sample ``stats["status"]``.
    """
    tab, y0, t_rows, per_sample, axis, rtol, atol, opts, max_steps, args = prepare_batch(
        func, y0, t, batch_axis, rtol, atol, method, options, args)
    solution = integrate(func, y0, t_rows, axis, tab, rtol, atol, opts, method, max_steps, args)
    if not per_sample:
        solution.t = np.array(t, dtype=np.float64)
    return solution


def integrate(func, y0, t_out, axis, tab, rtol, atol, opts, method, max_steps, args, record=None,
              on_accept=None, dense=None):
    """The lockstep loop: every pass, each running sample attempts one step of its own size.

    ``record``, when a list, receives per pass ``(rows, t, h, t_new)`` of the
    accepted steps (the samples, their start times, signed step sizes and end
    times: ``t + h`` may differ from ``t_new`` in the last place), for replaying
    the solve on Tensors (:mod:`odeflow.adjoint.batch_backprop`).
    ``on_accept(rows, states, times, h)``, when given, is called after each
    pass with the samples whose step was accepted, the stage states (a list of
    ``s - 1`` arrays ``(k, n)``, the step's start first) and stage times of
    those steps, and their step sizes (for a quadrature along the steps:
    :mod:`odeflow.adjoint.batch_adjoint`).
    ``dense``, when a :class:`~odeflow.solvers.batch_dense.BatchDense`, receives
    every accepted step (start state and stages) for interpolation.
    """
    shape = y0.shape
    B, m = t_out.shape
    sample_shape = shape[:axis] + shape[axis + 1:]
    Y = batch_layout(y0, axis)
    n = Y.shape[1]
    # C-contiguous float64 and writeable, like every array the loop makes itself, so the kernels'
    # argument types stay those the entry points below were bound to
    rtol_b = np.ascontiguousarray(batch_layout(rtol.reshape(shape), axis), dtype=np.float64)
    atol_b = np.ascontiguousarray(batch_layout(atol.reshape(shape), axis), dtype=np.float64)
    t_out = np.array(t_out, dtype=np.float64, order="C")
    s = tab.n_stages
    call = _Caller(func, sample_shape, axis, y0.dtype, args)
    call.batch = B
    fl = np.zeros((len(FLOAT_ROWS), B))
    bl = np.zeros((len(BOOL_ROWS), B), np.bool_)
    il = np.zeros((len(INT_ROWS), B), np.int64)
    t, t_new, h, h_abs, direction, err_prev, t_end, min_step = fl   # views: rows of the packed state
    rejected_last, nonfinite_last, fresh = bl
    j, n_acc, n_rej, nfe, status = il
    status[:] = RUNNING
    ys = np.empty((B, m, n), y0.dtype)
    ys[:, 0] = Y
    # outputs repeating a sample's start time are its start state: no step ever reaches them
    j[:] = np.cumprod(t_out == t_out[:, :1], axis=1).sum(axis=1)  # next output to fill
    for b in np.flatnonzero(j > 1):
        ys[b, 1:j[b]] = Y[b]
    t[:] = t_out[:, 0]
    t_end[:] = t_out[:, m - 1]
    fail_t = t.copy()
    fail_h = np.zeros(B)
    if m > 1 and n > 0 and B > 0:
        K = np.empty((B, s, n), y0.dtype)
        all_rows = np.arange(B)
        K[:, 0] = call(t, all_rows, Y, None, True)
        nfe += 1
        bad = ~np.isfinite(K[:, 0]).all(axis=1)
        status[bad] = _loop.NONFINITE  # nothing can be integrated from there
        direction[:] = np.where(t_end > t, 1.0, -1.0)
        interval = np.abs(t_end - t)
        max_step = float(opts.get("max_step") or np.inf)
        if opts.get("first_step"):
            h_abs[:] = np.minimum(np.minimum(float(opts["first_step"]), interval), max_step)
        else:
            Y1, d1, h0, t1 = np.empty_like(Y), np.empty(B), np.empty(B), np.empty(B)
            _initial_trial(Y, K[:, 0], rtol_b, atol_b, interval, direction, t, Y1, d1, h0, t1)
            if not bad.any():   # the usual case: no copies of the rows
                F1 = call(t1, all_rows, Y1, None, True)
                nfe += 1
            else:
                ok = np.flatnonzero(~bad)
                F1 = np.zeros_like(Y)
                if ok.size:
                    F1[ok] = call(t1[ok], ok, Y1[ok])
                    nfe[ok] += 1
            _initial_steps(Y, K[:, 0], F1, rtol_b, atol_b, d1, h0, tab.error_order, interval, max_step, h_abs)
        beta, stretch = CONTROLLERS[opts.get("controller") or "pi"]
        beta, stretch = float(beta), float(stretch)
        exponent = 1.0 / (tab.error_order + 1) - 0.75 * beta
        fresh[:] = True
        err_prev[:] = PI_ERR_PREV0
        A, c = tab.A_arr, tab.c_arr
        S_buf, t_buf = np.empty((B, n), y0.dtype), np.empty(B)
        no_rows = np.empty((0, n), y0.dtype)
        watched = record is not None or on_accept is not None or dense is not None
        rows = _next_attempts(t, t_end, direction, h_abs, h, t_new, min_step, fresh, rejected_last,
                              nonfinite_last, status, n_acc, n_rej, max_step, max_steps, stretch)
        same_buf = np.ones(1, np.bool_)
        first_done = False   # stage 1 of this pass already computed by the last finish_and_next
        if rows.size:  # the kernels called per stage and per step, bound to this solve's types
            stage_states = entry_point(_stage_states, Y, fl, K, A, c, 1, rows, S_buf[: rows.size],
                                       t_buf[: rows.size], no_rows)
            finish_and_next = entry_point(
                _finish_and_next, rows, Y, S_buf[: rows.size], K, fl, bl, il, t_out, ys, tab.b_err_arr,
                tab.P_arr, rtol_b, atol_b, exponent, beta, max_step, int(max_steps), stretch, no_rows, A, c,
                S_buf, t_buf, same_buf)
        while rows.size:
            S, t_stage = S_buf[: rows.size], t_buf[: rows.size]
            full = rows.size == B
            if watched:
                t_r, h_r = t[rows], h[rows]
            if on_accept is not None:
                states, times = [Y[rows]], [t_r]
            F = no_rows
            for i in range(1, s):
                # stores the previous stage's F into K (none before stage 1: K[:, 0] is FSAL)
                if i == 1 and first_done:
                    same = bool(same_buf[0])
                else:
                    same = stage_states(Y, fl, K, A, c, i, rows, S, t_stage, F)
                if on_accept is not None and i < s - 1:
                    states.append(S.copy())
                    times.append(t_stage.copy())
                F = call(t_stage, rows, S, same, full)
            if watched:
                K[rows, s - 1] = F
            acc_before = n_acc[rows] if watched else None
            if dense is not None:  # the step's start and stages, before the accepted ones overwrite them
                Y_r, K_r = Y[rows], K[rows]
            if watched:
                _finish_attempts(rows, Y, S, K, t, t_new, h, h_abs, direction, t_out, ys, j, tab.b_err_arr,
                                 tab.P_arr, rtol_b, atol_b, err_prev, rejected_last, nonfinite_last, fresh,
                                 n_acc, n_rej, nfe, exponent, beta)
                took = n_acc[rows] > acc_before
                if dense is not None:
                    dense.add(rows[took], t_r[took], h_r[took], Y_r[took], K_r[took])
                if record is not None:
                    record.append((rows[took], t_r[took], h_r[took], t[rows[took]]))
                if on_accept is not None and took.any():
                    on_accept(rows[took], [x[took] for x in states], [x[took] for x in times], h_r[took])
                rows = _next_attempts(t, t_end, direction, h_abs, h, t_new, min_step, fresh, rejected_last,
                                      nonfinite_last, status, n_acc, n_rej, max_step, max_steps, stretch)
                first_done = False
            else:
                rows = finish_and_next(rows, Y, S, K, fl, bl, il, t_out, ys, tab.b_err_arr, tab.P_arr, rtol_b,
                                       atol_b, exponent, beta, max_step, max_steps, stretch, F, A, c,
                                       S_buf, t_buf, same_buf)
                first_done = True
        fail_t, fail_h = t, h  # where each sample stopped and the last step it tried (as the loop)
    status[status == RUNNING] = _loop.SUCCESS  # m == 1, an empty state or batch: nothing to do
    return _solution(t_out, ys, status, j, nfe, n_acc, n_rej, call.n_calls, shape, axis, method,
                            opts, max_steps, fail_t, fail_h)


def _solution(t_out, ys, status, j, nfe, n_acc, n_rej, n_calls, shape, axis, method, opts, max_steps,
              fail_t, fail_h):
    """The BatchSolution (rows completed by every sample) and, on a failure, the exception."""
    from odeflow.solvers.integrate import STATUS, failure_message  # integrate imports this module

    B, m = t_out.shape
    if B and np.all(status == _loop.SUCCESS):
        names = np.full(B, STATUS[_loop.SUCCESS][0])
    else:
        names = np.array([STATUS[int(code)][0] for code in status]) if B else np.empty(0, "<U20")
    nfe, n_acc, n_rej = nfe.copy(), n_acc.copy(), n_rej.copy()   # own arrays, not rows of the loop's state
    stats = {"nfe": nfe, "n_steps": n_acc + n_rej, "n_accepted": n_acc, "n_rejected": n_rej,
             "status": names, "n_calls": n_calls, "sample_evaluations": int(nfe.sum())}
    failed = np.flatnonzero(status != _loop.SUCCESS)
    rows = int(j.min()) if failed.size and B else m
    y = ys[:, :rows].reshape((B, rows) + shape[:axis] + shape[axis + 1:])
    y = np.swapaxes(y, 0, 1) if axis == 0 else np.moveaxis(y, 0, axis + 1)
    t_done = t_out[:, :rows].copy()
    if not failed.size:
        return BatchSolution(t_done, np.ascontiguousarray(y), stats, "success",
                             "every sample reached the end of its interval", method=method,
                             t_span=(t_out[:, 0], t_out[:, -1]))
    b = int(failed[0])
    code = int(status[b])
    if code == _loop.NONFINITE and stats["n_steps"][b] == 0:
        detail = (f"{method}: func(t0, y0) returned non-finite values at t = {float(t_out[b, 0])!r}; "
                  f"nothing can be integrated from there")
    else:
        detail = failure_message(code, method, fail_t[b], fail_h[b],
                                 {"nfe": int(nfe[b]), "n_steps": int(stats["n_steps"][b])},
                                 dict(opts, max_steps=max_steps))
    message = (f"sample {b} (of {B}; {failed.size} failed, the others finished): {detail}")
    sol = BatchSolution(t_done, np.ascontiguousarray(y), stats, names[b], message, method=method,
                        t_span=(t_out[:, 0], fail_t.copy()))
    error = STATUS[code][1]
    raise error(message, t=fail_t[b], h=fail_h[b], solution=sol)

