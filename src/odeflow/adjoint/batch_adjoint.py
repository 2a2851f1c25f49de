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

``adjoint_mode="checkpoint"``: the forward solve keeps every sample's
accepted steps (:class:`odeflow.solvers.batch_dense.BatchDense`) and the
backward solve reads ``y_b(t)`` from that sample's continuous extension (the
interpolated reverse dynamic method of Daulbaev et al. 2020, as the unbatched
``"checkpoint"`` mode): no re-integration of ``y`` backwards, so no drift on
dissipative dynamics, at the memory of the forward steps. Its state is
``[q_b, a_b]`` with ``q' = f(t, y_b(t))``: ``q`` feeds nothing back, but since
``a_theta`` takes no part in the step control, ``q``'s error estimate is what
refines the backward steps where ``f`` has kinks in ``t`` (with ``a`` alone, a
smooth ``a`` took long steps across a kink of ``df/dtheta`` and the quadrature
of ``a_theta`` erred by 1e-4 at rtol 1e-10). The sample a backward row belongs
to travels with it as a per-sample argument (``args``) of the backward solve.

Backsolve is audited per sample (:mod:`odeflow.adjoint.audit`): a sample whose
reconstruction of ``y`` drifted over an interval has that interval redone from
its forward steps (a forward re-solve of the interval for those samples).
"""
from __future__ import annotations

import numpy as np

from odeflow.adjoint.batch_backprop import _arrays_func, _from_user, _to_user
from odeflow.adjoint.common import as_tensor, time_data
from odeflow.adjoint.audit import audit_options, drift, judge
from odeflow.adjoint.params import Recorder, check_closure, find_params, unknown_leaf_error
from odeflow.autodiff.backprop import gradients, leaves
from odeflow.autodiff.ops import make_node
from odeflow.autodiff.tensor import Tensor, enable_grad, is_grad_enabled
from odeflow.errors import GradientError, InputError, InputTypeError, SolverError
from odeflow.solvers import batch as _batch
from odeflow.solvers.batch_dense import BatchDense
from odeflow.solvers.jit import is_jitted
from odeflow.solvers.validate import as_tolerance

__all__ = ["odeint_adjoint_batch"]


def odeint_adjoint_batch(func, y0, t, batch_axis, *, rtol=1e-7, atol=1e-9, method="dopri5", options=None,
                         adjoint_rtol=None, adjoint_atol=None, adjoint_method=None, adjoint_options=None,
                         adjoint_params=None, adjoint_mode="backsolve", stats=None):
    """Per-sample solve with gradients by the adjoint method (module docstring).

    Parameters as :func:`odeflow.odeint_adjoint`, plus ``batch_axis`` and ``t``
    of shape ``(m,)`` or ``(batch, m)`` as :func:`odeflow.solvers.batch.solve_batch`.
    The backward solve uses ``method`` and ``options``, with ``adjoint_rtol``,
    ``adjoint_atol`` (default: the forward ones) on ``[y, a]`` (backsolve) or
    ``a`` (checkpoint). ``adjoint_method`` may only repeat ``method``;
    ``adjoint_options`` may hold the backsolve audit's ``on_drift`` and
    ``drift_tol`` (:mod:`odeflow.adjoint.audit`), applied per sample: a sample
    whose reconstruction of ``y`` drifted over an interval has that interval
    redone in checkpoint mode from a forward re-solve of it (``"recompute"``,
    the default; the other samples' work on the interval is kept as it was).

    Returns
    -------
    Tensor, shape ``(m, *y0.shape)``; ``backward()`` runs the per-sample adjoint.
    ``stats`` (a dict) receives ``stats["forward"]`` and, after ``backward()``,
    ``stats["backward"]`` (per-sample ``nfe`` summed over the intervals, and
    ``n_calls``, the batched calls of the VJP; backsolve: ``drift``, shape
    ``(batch, m - 1)``, each sample's drift per interval, and ``recomputed``,
    the (sample, interval) pairs redone).

    Raises
    ------
    InputError
        ``adjoint_mode`` other than ``"backsolve"`` or ``"checkpoint"``, an ``adjoint_method``
        other than ``method``, ``adjoint_options`` other than the audit's; and every input error of
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
    if adjoint_mode not in ("backsolve", "checkpoint"):
        raise InputError(f"`adjoint_mode` {adjoint_mode!r} is not available with batch_axis: only "
                         f"'backsolve' and 'checkpoint' (the seminorm is always on with batch_axis)")
    checkpoint = adjoint_mode == "checkpoint"
    if adjoint_method is not None and adjoint_method != method:
        raise InputError(f"`adjoint_method` {adjoint_method!r} differs from `method` {method!r}: with "
                         f"batch_axis the backward solve uses the forward method")
    if adjoint_options is not None and not isinstance(adjoint_options, dict):
        raise InputTypeError(f"`adjoint_options` must be a dict; got {type(adjoint_options).__name__}")
    back_options = dict(adjoint_options or {})
    policy, drift_tol = audit_options(back_options)
    if back_options:
        raise InputError(f"`adjoint_options` {sorted(back_options)} are not available with batch_axis (only "
                         f"'on_drift' and 'drift_tol'): the backward solve uses the forward `options`")
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
    # the backward state z = [y, a] (checkpoint: [q, a]) stacks on a new leading axis: the batch moves to axis + 1
    tiny = 100 * np.finfo(y0_arr.dtype).eps
    tol_z = (as_tolerance(b_rtol, "adjoint_rtol", (2,) + shape, y0_arr.dtype, minimum=tiny),
             as_tolerance(b_atol, "adjoint_atol", (2,) + shape, y0_arr.dtype))
    recorder = None
    if adjoint_params is not None:
        params = find_params(func, None, adjoint_params)
        f_arrays = _arrays_func(func)
    elif is_grad_enabled():  # every forward evaluation watched: a parameter read after t[0] is found
        check_closure(func)
        f_arrays = recorder = Recorder(func)
    else:
        f_arrays = _arrays_func(func)
    dense = BatchDense(_batch.batch_layout(y0_arr, axis), tab.P_arr) if checkpoint else None
    sol = _batch.integrate(f_arrays, y0_arr, t_rows, axis, tab, rtol_f, atol_f, opts, method, max_steps, (),
                           dense=dense)
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
            # retain_graph: func may read a Tensor computed before the solve (an encoder's output); the
            # graph upstream of it must survive for the next evaluation (without it the first walk freed
            # it and that Tensor's leaves got ~1e-3 instead of ~3: the unbatched adjoint's issue 11)
            grads = gradients(f, [y_t] + (params if with_params else []), grad_outputs=cot, allow_unused=True,
                              retain_graph=True)
        g_y = np.zeros_like(Y) if grads[0] is None else grads[0].data
        g_p = [np.zeros_like(p.data) if g is None else g.data for p, g in zip(params, grads[1:])] \
            if with_params else None
        return f.data, g_y, g_p

    def take(tol, rows, ax):  # the samples `rows` of a flat tolerance of the layout with the batch at `ax`
        full = shape if ax == axis else (2,) + shape  # the forward's or the backward's [y, a]
        return np.ascontiguousarray(np.take(tol.reshape(full), rows, axis=ax)).reshape(-1)

    def user(X, k, ax):  # (k, ...) batch layout -> the user's layout with the batch at `ax`
        return np.ascontiguousarray(np.moveaxis(X.reshape((k,) + X.shape[1:]), 0, ax))

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
        drifts = np.zeros((B, max(m - 1, 0)))
        redone = []

        def quadrature(rows, Y, A, ts, h, w_i):  # a_theta += h b_i (-a_i^T df/dtheta) at one stage
            t_arg = float(ts[0]) if np.all(ts == ts[0]) else ts
            _, _, g_p = vjp(t_arg, Y, A, rows.size, True, weight=h * w_i)
            counts["n_calls"] += 1
            for acc, gp in zip(a_theta, g_p):
                acc += gp

        def solve_back(sel, i, read_y):
            """Samples `sel` over interval i -> i-1 with state z = [y, a]: (a, z's y part, per-sample nfe).

            ``read_y(Zb, idx, t)`` gives the y at which f and its VJPs are taken: backsolve reads z's own
            y (integrated backwards); the checkpoint reads the forward steps, and z's y part is then the
            quadrature q' = f(t, y(t)), which feeds nothing back (no drift) but gives the step control
            what the forward's had (kinks of f in t). ``idx``: the rows' positions in `sel`.
            """
            k = sel.size

            def dynamics(t_arg, Z, idx):
                Zb = _batch.batch_layout(Z, axis + 1)  # (k', 2n): [y | a] per sample
                kk = Zb.shape[0]
                f, g_y, _ = vjp(t_arg, read_y(Zb, idx, t_arg), Zb[:, n:], kk, False)
                counts["n_calls"] += 1
                return np.moveaxis(np.concatenate([f, g_y], axis=1).reshape((kk, 2) + sample_shape), 0, axis + 1)

            def on_accept(rows, states, times, h):  # a_theta += h sum_i b_i (-a_i^T df/dtheta)
                for w_i, Z, ts in zip(tab.b_arr, states, times):
                    if w_i != 0.0 and params:
                        quadrature(rows, read_y(Z, rows, ts), Z[:, n:], ts, h, w_i)
            Z0 = np.concatenate([Yf[sel, i], a[sel]], axis=1).reshape((k, 2) + sample_shape)
            out = _batch.integrate(dynamics, user(Z0, k, axis + 1), t_rows[sel][:, [i, i - 1]], axis + 1, tab,
                                   take(tol_z[0], sel, axis + 1), take(tol_z[1], sel, axis + 1), opts, method,
                                   max_steps, (np.arange(k),), on_accept=on_accept)
            end = _batch.batch_layout(out.y[-1], axis + 1)
            return end[:, n:], end[:, :n], out.stats["nfe"]

        def own_y(Zb, idx, t_arg):
            return Zb[:, :n]

        def steps_y(steps):
            return lambda Zb, idx, t_arg: steps(idx, t_arg)

        def interval_steps(sel, i):  # a forward re-solve of interval i-1 -> i for `sel`, keeping its steps
            y_start = Yf[sel, i - 1]
            steps = BatchDense(y_start, tab.P_arr)
            _batch.integrate(_arrays_func(func), user(y_start, sel.size, axis), t_rows[sel][:, [i - 1, i]], axis,
                             tab, take(rtol_f, sel, axis), take(atol_f, sel, axis), opts, method, max_steps, (),
                             dense=steps)  # its evaluations are forward work, not counted in stats["backward"]
            return steps

        rt = _batch.batch_layout(rtol_f.reshape(shape), axis)  # the audit's norm: the forward tolerances
        at = _batch.batch_layout(atol_f.reshape(shape), axis)
        every = np.arange(B)
        for i in range(m - 1, 0, -1):
            try:
                if checkpoint:
                    a_new, _, nfe = solve_back(every, i, steps_y(dense))
                else:
                    saved = [x.copy() for x in a_theta]
                    a_new, y_rec, nfe = solve_back(every, i, own_y)
                    drifts[:, i - 1] = [drift(y_rec[b], Yf[b, i - 1], rt[b], at[b]) for b in range(B)]
                    bad = np.flatnonzero([judge(policy, d, drift_tol, i, t_rows[b, i - 1], t_rows[b, i])
                                          for b, d in enumerate(drifts[:, i - 1])])
                    if bad.size:  # redo those samples from their forward steps; the others' work as it was
                        a_theta[:] = saved
                        good = np.setdiff1d(every, bad)
                        if good.size:
                            a_new[good], _, _ = solve_back(good, i, own_y)
                        a_new[bad], _, nfe_bad = solve_back(bad, i, steps_y(interval_steps(bad, i)))
                        nfe[bad] += nfe_bad
                        redone.extend((int(b), i - 1) for b in bad)
                counts["nfe"] += nfe
            except SolverError as exc:
                raise type(exc)(f"adjoint backward solve with batch_axis, from output {i} to {i - 1} (set by "
                                f"adjoint_rtol, adjoint_atol, options): {exc}", t=exc.t, h=exc.h,
                                solution=exc.solution) from None
            a = a_new + G[:, i - 1]
        if m == 1:
            a = G[:, 0].copy()
        if stats is not None:
            stats["backward"] = {"nfe": counts["nfe"], "n_calls": counts["n_calls"]}
            if not checkpoint:
                stats["backward"].update(drift=drifts, recomputed=redone)
        grad_y0 = np.moveaxis(a.reshape((B,) + sample_shape), 0, axis)
        return [grad_y0] + a_theta

    return make_node(ys, [y0] + params, backward)
