"""The adjoint method with per-sample stepping (``odeint_adjoint(..., batch_axis=...)``).

Forward: the per-sample array solve of :mod:`odeflow.solvers.batch`, values
only. Backward, from each sample's ``t[b, i]`` to ``t[b, i-1]``: the
per-sample solve of the augmented state ``z_b = [y_b, a_b]`` (Chen et al.
2018, eq. 4; ``y`` restarts from the stored forward output at every output
time, as the ``"backsolve"`` mode of :mod:`odeflow.adjoint.adjoint`), each
sample with its own steps, ``func`` and its vector-Jacobian product called
once per stage on the active samples.

The parameter adjoint ``a_theta`` is shared by the samples, so it cannot be
a per-sample channel of that solve. Since it never feeds back into ``y`` or
``a``, it is accumulated *alongside* it: after every pass, for the accepted
steps only, ``a_theta += sum_b h_b sum_i b_i (-a_{b,i}^T df/dtheta(y_{b,i}))``
over the stage states of those steps, which is exactly what the Runge-Kutta
step would have added to an ``a_theta`` channel; one batched VJP per stage,
the per-sample ``h_b b_i`` folded into the cotangent. ``a_theta`` thus takes
no part in the step-size control: the seminorm of Kidger, Chen & Lyons
(2021), always on here.

Parameters are found as :func:`odeflow.odeint_adjoint` finds them
(:class:`odeflow.adjoint.params.Recorder`: every forward evaluation is
watched), and a Tensor first read by the backward solve raises
:class:`~odeflow.errors.GradientError` instead of silently getting no gradient.

Only ``"backsolve"``: the ``"checkpoint"`` mode reads ``y(t)`` from the
forward dense output, which the per-sample solve does not keep.
"""
from __future__ import annotations

import numpy as np

from odeflow.adjoint.batch_backprop import _arrays_func, _from_user, _to_user
from odeflow.adjoint.common import as_tensor, time_data
from odeflow.adjoint.params import Recorder, check_closure, find_params, unknown_leaf_error
from odeflow.autodiff.backprop import gradients, leaves
from odeflow.autodiff.ops import make_node
from odeflow.autodiff.tensor import Tensor, enable_grad, is_grad_enabled
from odeflow.errors import GradientError, InputError, InputTypeError, SolverError
from odeflow.solvers import batch as _batch
from odeflow.solvers.jit import is_jitted
from odeflow.solvers.validate import as_tolerance

__all__ = ["odeint_adjoint_batch"]


def odeint_adjoint_batch(func, y0, t, batch_axis, *, rtol=1e-7, atol=1e-9, method="dopri5", options=None,
                         adjoint_rtol=None, adjoint_atol=None, adjoint_params=None, adjoint_mode="backsolve",
                         stats=None):
    """Per-sample solve with gradients by the adjoint method (module docstring).

    Parameters as :func:`odeflow.odeint_adjoint`, plus ``batch_axis`` and ``t``
    of shape ``(m,)`` or ``(batch, m)`` as :func:`odeflow.solvers.batch.solve_batch`.
    The backward solve uses ``method`` and ``options``, with ``adjoint_rtol``,
    ``adjoint_atol`` (default: the forward ones) on ``[y, a]``.

    Returns
    -------
    Tensor, shape ``(m, *y0.shape)``; ``backward()`` runs the per-sample adjoint.
    ``stats`` (a dict) receives ``stats["forward"]`` and, after ``backward()``,
    ``stats["backward"]`` (per-sample ``nfe`` summed over the intervals, and
    ``n_calls``, the batched calls of the VJP).

    Raises
    ------
    InputError
        ``adjoint_mode`` other than ``"backsolve"``; and every input error of
        :func:`~odeflow.solvers.batch.solve_batch`, before any work.
    GradientError
        ``t`` requiring grad (time gradients are not provided here); ``func``
        returning ndarrays for Tensors.
    SolverError
        From the forward or (saying so) the backward solve.
    """
    if is_jitted(func):
        raise InputTypeError("`func` is a Numba-jitted function, which works on arrays only: the "
                             "adjoint needs func built from odeflow ops (an nn.Module, say)")
    if adjoint_mode != "backsolve":
        raise InputError(f"`adjoint_mode` {adjoint_mode!r} is not available with batch_axis: only "
                         f"'backsolve' (the per-sample solve keeps no dense output for 'checkpoint')")
    y0 = as_tensor(y0)
    t_data, t_grad = time_data(t)
    if t_grad:
        raise GradientError("gradients with respect to `t` are not available with batch_axis; pass `t` "
                            "as an array (or a Tensor that does not require grad)")
    tab, y0_arr, t_rows, per_sample, axis, rtol_f, atol_f, opts, max_steps, _ = _batch.prepare_batch(
        func, y0.data, t_data, batch_axis, rtol, atol, method, options, ())
    b_rtol = rtol if adjoint_rtol is None else adjoint_rtol
    b_atol = atol if adjoint_atol is None else adjoint_atol
    shape = y0_arr.shape
    aug_shape = (2,) + shape  # z = [y, a] stacked on a new leading axis: the batch moves to axis + 1
    b_rtol_f = as_tolerance(b_rtol, "adjoint_rtol", aug_shape, y0_arr.dtype, minimum=100 * np.finfo(y0_arr.dtype).eps)
    b_atol_f = as_tolerance(b_atol, "adjoint_atol", aug_shape, y0_arr.dtype)
    recorder = None
    if adjoint_params is not None:
        params = find_params(func, None, adjoint_params)
        f_arrays = _arrays_func(func)
    elif is_grad_enabled():  # every forward evaluation watched: a parameter read after t[0] is found
        check_closure(func)
        f_arrays = recorder = Recorder(func)
    else:
        f_arrays = _arrays_func(func)
    sol = _batch.integrate(f_arrays, y0_arr, t_rows, axis, tab, rtol_f, atol_f, opts, method, max_steps, ())
    if stats is not None:
        stats["forward"] = dict(sol.stats)
    if not is_grad_enabled():
        return Tensor(sol.y)
    if recorder is not None:
        params = recorder.params
    known = {id(p) for p in params}
    ys = sol.y  # (m, *shape), batch at axis + 1
    B, m = t_rows.shape
    sample_shape = shape[:axis] + shape[axis + 1:]

    def vjp(t_arg, Y, A, k, with_params, weight=None):
        """f and -a^T df/dy for rows Y (k, n) (batch layout); with_params: also -w a^T df/dtheta."""
        with enable_grad():
            y_t = Tensor(Y, requires_grad=True)
            f = _from_user(func(t_arg, _to_user(y_t, sample_shape, axis)), k, axis,
                           shape[:axis] + (k,) + shape[axis + 1:])
            if recorder is not None:  # parameters found by the forward solve: any other leaf is unreachable
                for leaf in leaves(f):
                    if leaf is not y_t and id(leaf) not in known:
                        raise unknown_leaf_error(leaf, np.max(t_arg))
            cot = -A if weight is None else -A * weight[:, None]
            grads = gradients(f, [y_t] + (params if with_params else []), grad_outputs=cot, allow_unused=True)
        g_y = np.zeros_like(Y) if grads[0] is None else grads[0].data
        g_p = [np.zeros_like(p.data) if g is None else g.data for p, g in zip(params, grads[1:])] \
            if with_params else None
        return f.data, g_y, g_p

    def backward(g):
        if is_grad_enabled():  # a create_graph walk: this backward pass works on arrays only
            raise GradientError(
                "odeint_adjoint(..., batch_axis=...) gives first-order gradients only: its per-sample "
                "backward pass is not recorded, so create_graph=True cannot be honoured; use "
                "odeflow.odeint(..., batch_axis=...) (backprop through the per-sample solve) or the "
                "adjoint without batch_axis for higher orders")
        g = np.asarray(g.data, dtype=ys.dtype)
        G = np.stack([_batch.batch_layout(g[i], axis) for i in range(m)], axis=1)  # (B, m, n)
        Yf = np.stack([_batch.batch_layout(ys[i], axis) for i in range(m)], axis=1)
        n = G.shape[2]
        a = G[:, m - 1].copy()
        a_theta = [np.zeros_like(p.data) for p in params]
        counts = {"nfe": np.zeros(B, np.int64), "n_calls": 0}

        def augmented(t_arg, Z):  # Z: (2, ..., k at axis + 1, ...) in the aug layout
            Zb = _batch.batch_layout(Z, axis + 1)  # (k, 2n): [y | a] per sample
            k = Zb.shape[0]
            f, g_y, _ = vjp(t_arg, Zb[:, :n], Zb[:, n:], k, False)
            counts["n_calls"] += 1
            out = np.concatenate([f, g_y], axis=1).reshape((k, 2) + sample_shape)
            return np.moveaxis(out, 0, axis + 1)

        def on_accept(rows, states, times, h):  # a_theta += h sum_i b_i (-a_i^T df/dtheta)
            for w_i, Z, ts in zip(tab.b_arr, states, times):
                if w_i == 0.0 or not params:
                    continue
                t_arg = float(ts[0]) if np.all(ts == ts[0]) else ts
                _, _, g_p = vjp(t_arg, Z[:, :n], Z[:, n:], rows.size, True, weight=h * w_i)
                counts["n_calls"] += 1
                for acc, gp in zip(a_theta, g_p):
                    acc += gp

        for i in range(m - 1, 0, -1):
            Z0 = np.concatenate([Yf[:, i], a], axis=1).reshape((B, 2) + sample_shape)
            Z0 = np.moveaxis(Z0, 0, axis + 1)
            try:
                out = _batch.integrate(augmented, np.ascontiguousarray(Z0), t_rows[:, [i, i - 1]], axis + 1,
                                       tab, b_rtol_f, b_atol_f, opts, method, max_steps, (), on_accept=on_accept)
            except SolverError as exc:
                raise type(exc)(f"adjoint backward solve with batch_axis, from output {i} to {i - 1} (set by "
                                f"adjoint_rtol, adjoint_atol, options): {exc}", t=exc.t, h=exc.h,
                                solution=exc.solution) from None
            counts["nfe"] += out.stats["nfe"]
            a = _batch.batch_layout(out.y[-1], axis + 1)[:, n:] + G[:, i - 1]
        if m == 1:
            a = G[:, 0].copy()
        if stats is not None:
            stats["backward"] = {"nfe": counts["nfe"], "n_calls": counts["n_calls"]}
        grad_y0 = np.moveaxis(a.reshape((B,) + sample_shape), 0, axis)
        return [grad_y0] + a_theta

    return make_node(ys, [y0] + params, backward)
