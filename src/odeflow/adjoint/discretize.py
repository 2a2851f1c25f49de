"""Backpropagation through the solver ("discretize-then-optimize").

When ``odeflow.odeint`` receives a Tensor ``y0`` it differentiates the
numerical solution itself: the exact gradient of what the solver computed, not
of the true ODE solution. The step loop below is the one of
:mod:`odeflow.solvers.loop` run on Tensors: every stage is an engine op, so the
backward walk sees each step. Step-size decisions use values only (the error
ratio, the controller and the step bounds are the same jitted kernels as the
array solver's) and are not differentiated; a rejected attempt's graph is simply
dropped. Memory grows with the number of steps: use
:func:`odeflow.odeint_adjoint` for O(1) memory.

It is a second loop rather than the array loop itself because Tensors cannot
enter Numba's nopython mode and the array loop works in place.

Gradients w.r.t. the times ``t`` (a Tensor requiring grad) are those of the
exact solution, for every method: moving an output
time ``t_i`` moves the output along the solution, ``d y(t_i) / d t_i =
f(t_i, y(t_i))``; moving ``t_0`` shifts the whole trajectory, ``dL/dt_0 =
-a(t_0) . f(t_0, y_0)`` (Chen et al. 2018, Appendix B). Both enter the graph as
value-preserving terms ``(t_i - t_i.data) * f_i``: zero in value, with the
right derivative. (For fixed-step methods the computed solution also depends on
``t`` through the step sizes; that discretization effect, of the order of the
method's error, is not differentiated.)
"""
from __future__ import annotations

import numpy as np

from odeflow.adjoint.common import array_func, as_tensor, time_data, with_args
from odeflow.adjoint.implicit import integrate_radau  # radau: implicit steps, by the IFT
from odeflow.adjoint.params import call_watched
from odeflow.adjoint.times import moved
from odeflow.autodiff import ops
from odeflow.autodiff.backprop import leaves
from odeflow.autodiff.ops import make_node
from odeflow.autodiff.tensor import Tensor, is_grad_enabled
from odeflow.blas import limit_blas
from odeflow.errors import GradientError, InputTypeError, NonFiniteDerivativeError, ShapeError
from odeflow.solvers import loop as _loop
from odeflow.solvers.controller import (
    CONTROLLERS, PI_ERR_PREV0, accept_factor, initial_guess, initial_step, min_step_at,
    next_attempt, reject_factor)
from odeflow.solvers.integrate import (
    DEFAULT_MAX_STEPS, STATUS, failure_message, fixed_grid, prepare)
from odeflow.solvers.jit import is_jitted
from odeflow.solvers.kernels import error_ratio, error_ratio_dop853, scaled_rms
from odeflow.solvers.solution import Solution
from odeflow.solvers.validate import distinct_times

__all__ = ["odeint_backprop"]


def _call(func, t, y):
    """``func(t, y)`` as a Tensor of ``y``'s shape, refusing outputs that would
    silently cut the graph (an ndarray computed from ``y.data``; a Tensor read as a number: a warning)."""
    out = call_watched(func, t, y)
    if not isinstance(out, Tensor):
        if y.requires_grad:
            raise GradientError(
                f"`func` returned a {type(out).__name__} for a Tensor `y` that requires grad, so no "
                f"gradient can flow through it: build dy/dt with odeflow ops on `y` (if it truly "
                f"depends on neither `y` nor any parameter, return odeflow.Tensor(...))")
        try:
            out = Tensor(out)
        except InputTypeError:
            raise InputTypeError(f"`func` must return dy/dt as a Tensor or array; returned "
                                 f"{type(out).__name__}") from None
    if out.shape != y.shape:
        raise ShapeError(f"`func` must return dy/dt with the shape of `y0` {y.shape}; at "
                         f"t = {float(t)!r} it returned shape {out.shape}")
    if out.dtype != y.dtype:  # the state keeps y0's dtype (float64 parameters, float32 state)
        out = ops.astype(out, y.dtype)
    return out


def _step(func, tab, t, h, y, k0):
    """One Runge–Kutta step on Tensors (HNW §II.1, eq. 1.8): ``(y1, stages)``.

    ``k0 = f(t, y)`` is passed in (for FSAL pairs it is the last stage of the
    previous step).
    """
    ks = [k0]
    state = y
    for i in range(1, tab.n_stages):  # one lincomb node per stage, not 2 i + 1 mul/add nodes
        state = ops.lincomb(y, h, tab.A_arr[i, :i], ks)
        ks.append(_call(func, t + tab.c_arr[i] * h, state))
    if not tab.fsal:  # FSAL: the last stage's state is already y1
        state = ops.lincomb(y, h, tab.b_arr, ks)
    return state, ks


def _dense_stages(func, tab, t, h, y, ks, counts):
    """The stages only the dense output uses (DOP853's last three), on Tensors."""
    ks = list(ks)
    for i in range(tab.n_stages, tab.n_stages + tab.n_extra):
        ks.append(_call(func, t + tab.c_arr[i] * h, ops.lincomb(y, h, tab.A_arr[i, :i], ks)))
    counts["nfe"] += tab.n_extra
    return ks[tab.n_stages:]


def _flat(x):
    return x.data.reshape(-1)


class _Failure(Exception):
    """The loop stopped: status code, where, and the output rows completed."""

    def __init__(self, status, t, h, rows):
        self.status, self.t, self.h, self.rows = status, t, h, rows


def _adaptive(func, tab, t_out, y, k0, rtol, atol, opts, counts):
    """The adaptive loop of :func:`odeflow.solvers.loop.adaptive_loop` on Tensors.

    Returns the outputs as a list of Tensors with a leading axis (one piece
    per step that holds outputs); ``counts`` receives nfe and step counts.
    Raises ``_Failure`` when the loop must stop.
    """
    beta, stretch = CONTROLLERS[opts.get("controller") or "pi"]
    max_step = float(opts.get("max_step") or np.inf)
    max_steps = int(opts.get("max_steps") or DEFAULT_MAX_STEPS)
    min_step_opt = float(opts.get("min_step") or 0.0)
    exponent = 1.0 / (tab.error_order + 1) - 0.75 * beta
    t0, t_end = float(t_out[0]), float(t_out[-1])
    direction = 1.0 if t_end > t0 else -1.0
    interval = abs(t_end - t0)
    if opts.get("first_step"):
        h_abs = min(float(opts["first_step"]), interval, max_step)
    else:  # HNW §II.4 on values only: one Euler trial step
        y0f, f0f = _flat(y), _flat(k0)
        d0, d1 = scaled_rms(y0f, y0f, rtol, atol), scaled_rms(f0f, y0f, rtol, atol)
        h0 = initial_guess(d0, d1, interval)
        f1 = np.asarray(array_func(func)(t0 + direction * h0, (y0f + direction * h0 * f0f).reshape(y.shape)))
        counts["nfe"] += 1
        d2 = scaled_rms(f1.reshape(-1) - f0f, y0f, rtol, atol) / h0
        h_abs = initial_step(h0, d1, d2, tab.error_order, interval, max_step)
    rows = [ops.expand_dims(y, 0)]
    t, j, err_prev = t0, 1, PI_ERR_PREV0
    while direction * (t_end - t) > 0.0:
        min_step = min_step_at(t, direction)
        h_abs = min(max(h_abs, min_step), max_step)
        rejected_last = nonfinite_last = False
        while True:
            if h_abs < min_step:
                raise _Failure(_loop.NONFINITE if nonfinite_last else _loop.UNDERFLOW, t, direction * h_abs,
                               rows)
            if h_abs < min_step_opt:
                raise _Failure(_loop.MIN_STEP, t, direction * h_abs, rows)
            if counts["n_accepted"] + counts["n_rejected"] >= max_steps:
                raise _Failure(_loop.MAX_STEPS, t, direction * h_abs, rows)
            t_new, h = next_attempt(t, t_end, h_abs, direction, stretch)
            h_abs = abs(h)
            y1, ks = _step(func, tab, t, h, y, k0)
            counts["nfe"] += tab.n_stages - 1
            K_values = np.stack([_flat(k) for k in ks])
            err = (error_ratio_dop853(_flat(y), _flat(y1), h, K_values, tab.b_err_arr, tab.b_err3_arr,
                                      rtol, atol) if tab.b_err3_arr.size
                   else error_ratio(_flat(y), _flat(y1), h, K_values, tab.b_err_arr, rtol, atol))
            if err <= 1.0:
                factor = accept_factor(err, err_prev, exponent, beta, rejected_last)
                err_prev = max(err, PI_ERR_PREV0)
                end = j
                while end < t_out.size and direction * (t_out[end] - t_new) < 0.0:
                    end += 1
                if end > j:  # strictly inside the step: the continuous extension (HNW §II.6),
                    # every output of the step at once: y + h * W @ K with W (outputs x stages)
                    theta = (t_out[j:end] - t) / h
                    W = (theta[:, None] ** np.arange(1, tab.P_arr.shape[1] + 1)) @ tab.P_arr.T
                    ks_dense = ks + _dense_stages(func, tab, t, h, y, ks, counts)
                    K = ops.reshape(ops.stack(ks_dense, axis=0), (len(ks_dense), -1))
                    rows.append(y + h * ops.reshape(ops.matmul(W.astype(y.dtype), K), (end - j,) + y.shape))
                    j = end
                if j < t_out.size and t_out[j] == t_new:
                    rows.append(ops.expand_dims(y1, 0))
                    j += 1
                counts["n_accepted"] += 1
                t, y, k0 = t_new, y1, ks[-1]
                h_abs *= factor
                break
            counts["n_rejected"] += 1
            nonfinite_last = not np.isfinite(err)
            rejected_last = True
            h_abs *= reject_factor(err, exponent)
    return rows


def _fixed(func, tab, grid, is_output, y, k0, counts):
    """Fixed steps over the nodes ``grid`` (outputs where ``is_output``) on Tensors."""
    rows = [ops.expand_dims(y, 0)]
    for k in range(grid.size - 1):
        t, h = float(grid[k]), float(grid[k + 1] - grid[k])
        if k > 0:
            k0 = _call(func, t, y)
            counts["nfe"] += 1
        y, _ = _step(func, tab, t, h, y, k0)
        counts["nfe"] += tab.n_stages - 1
        counts["n_accepted"] += 1
        if not np.all(np.isfinite(y.data)):
            raise _Failure(_loop.NONFINITE, t, h, rows)
        if is_output[k + 1]:
            rows.append(ops.expand_dims(y, 0))
    return rows


@limit_blas  # BLAS at one thread for the solve and its products (odeflow.blas)
def odeint_backprop(func, y0, t, *, rtol=1e-7, atol=1e-9, method="dopri5", options=None, stats=None,
                    args=None):
    """Solve on Tensors and differentiate through the solver's operations.

    Same arguments, checks and errors as :func:`odeflow.solve`, with ``y0``
    (and optionally ``t``) a Tensor and ``func`` built from engine ops.
    Returns a Tensor of shape ``(len(t), *y0.shape)`` and ``y0``'s dtype
    (``func``'s output is cast to it, so float64 parameters do not promote a
    float32 state); ``backward()`` through it reaches ``y0``, ``t`` and every
    parameter ``func`` used, to any order (to second order for ``t``: see
    :mod:`odeflow.adjoint.times`; radau: first order only, see
    :mod:`odeflow.adjoint.implicit`). A repeated time repeats the row at no cost,
    and its entry of ``t`` gets its own gradient. With a single distinct time
    (``len(t) == 1`` or ``t = [a, a]``) the output is ``y0``: one recorded
    evaluation finds the parameters, whose gradient is then zero (not None).
    ``stats``, when a dict, receives ``stats["forward"]`` (``nfe``,
    ``n_steps``, ``n_accepted``, ``n_rejected``). ``args``, a tuple: ``func(t,
    y, *args)``, exactly as the closure ``lambda t, y: func(t, y, *args)``
    (:func:`odeflow.adjoint.common.with_args`); Tensors in it get gradients.
    """
    if is_jitted(func):
        raise InputTypeError("`func` is a Numba-jitted function, which works on arrays only: with a "
                             "Tensor `y0` build func from odeflow ops (an nn.Module, say)")
    func = with_args(func, args)
    if isinstance(options, dict) and options.get("jump_t") is not None:  # split at the jumps
        from odeflow.adjoint.jumps import odeint_segmented
        return odeint_segmented(odeint_backprop, func, y0, t, options, stats=stats, rtol=rtol,
                                atol=atol, method=method)
    y0 = as_tensor(y0)
    t_data, t_grad = time_data(t)
    tab, _, t_all, rtol_f, atol_f, opts = prepare(func, y0.data, t_data, rtol, atol, method, options)
    t_out, index = distinct_times(t_all)
    if tab is not None and not tab.adaptive:  # before any evaluation: the step count is checked here
        grid, is_output, _ = fixed_grid(t_out, opts.get("step_size"),
                                     int(opts.get("max_steps") or DEFAULT_MAX_STEPS), method)
    counts = {"nfe": 0, "n_accepted": 0, "n_rejected": 0}
    delta = t - t_all if t_grad else None  # zero in value: carries dL/dt (adjoint.times)
    if t_out.size == 1 and not (t_grad and t_all.size > 1):
        out = _unmoved(func, y0, t, t_all, counts)
    else:
        y = y0
        if t_grad:  # start on the trajectory that passes y0 at t[0]
            y, counts["nfe"] = moved(_call, func, float(t_out[0]), y0, delta[0], -1)
        if t_out.size == 1:  # t = [a, a, ...]: no step, only the moved outputs
            ys = ops.expand_dims(y, 0)
        else:
            ys = (integrate_radau(_call, func, t_out, y, rtol_f, atol_f, opts, counts) if tab is None
                  else _integrate(func, tab, t_out, y, rtol_f, atol_f, opts, counts, method,
                                  None if tab.adaptive else (grid, is_output)))
        if t_grad:  # each output moved along the solution by its own time
            pos = np.arange(t_all.size) if index is None else index
            pieces = [ops.expand_dims(y0, 0)]
            for i in range(1, t_all.size):
                row, nfe = moved(_call, func, float(t_all[i]), ys[int(pos[i])], delta[i], +1)
                pieces.append(ops.expand_dims(row, 0))
                counts["nfe"] += nfe
            out = ops.concatenate(pieces, axis=0)
        else:
            out = ys if index is None else ys[index]
    if stats is not None:
        stats["forward"] = dict(counts, n_steps=counts["n_accepted"] + counts["n_rejected"])
    return out


def _integrate(func, tab, t_out, y, rtol, atol, opts, counts, method, fixed):
    """The outputs at the distinct times ``t_out`` (a Tensor ``(k, *y.shape)``) from ``y``."""
    k0 = _call(func, float(t_out[0]), y)
    counts["nfe"] += 1
    if not np.all(np.isfinite(k0.data)):
        raise NonFiniteDerivativeError(
            f"{method}: func(t0, y0) returned non-finite values at t = {float(t_out[0])!r}; "
            f"nothing can be integrated from there", t=t_out[0], h=0.0)
    try:
        rows = (_adaptive(func, tab, t_out, y, k0, rtol, atol, opts, counts) if fixed is None
                else _fixed(func, tab, fixed[0], fixed[1], y, k0, counts))
    except _Failure as fail:
        _raise(fail, method, counts, opts, t_out)
    return rows[0] if len(rows) == 1 else ops.concatenate(rows, axis=0)


def _unmoved(func, y0, t, t_all, counts):
    """Every row ``y0`` (a single distinct time): connected, with zero gradient, to the
    parameters one recorded evaluation shows and to ``t``, so none of them is left None."""
    used = []
    if is_grad_enabled():
        used = [p for p in leaves(_call(func, float(t_all[0]), y0)) if p is not y0]
        counts["nfe"] = 1
    if isinstance(t, Tensor) and t.requires_grad:
        used.append(t)
    parents = [y0] + used
    rows = t_all.size

    def vjp(g):
        return [ops.sum(g, axis=0)] + [np.zeros_like(p.data) for p in used]

    return make_node(np.broadcast_to(y0.data, (rows,) + y0.shape).copy(), parents, vjp)


def _raise(fail, method, counts, opts, t_out):
    """Turn a loop failure into the solver's exception, with the rows done as a Solution."""
    stats = dict(counts, n_steps=counts["n_accepted"] + counts["n_rejected"])
    name, error = STATUS[fail.status]
    message = failure_message(fail.status, method, fail.t, fail.h, stats, opts)
    ys = np.concatenate([r.data for r in fail.rows])
    done = t_out[: ys.shape[0]].copy()
    sol = Solution(done, ys, stats, name, message, method=method, t_span=(t_out[0], fail.t),
                   record=("nodes", done, ys.reshape(len(done), -1)))
    raise error(message, t=fail.t, h=fail.h, solution=sol) from None
