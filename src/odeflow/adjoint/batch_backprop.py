"""Backpropagation through the per-sample solve (``odeint(..., batch_axis=...)`` on Tensors).

Two passes:

1. the array solve of :mod:`odeflow.solvers.batch` (values only, no graph)
   decides every sample's steps and records the accepted ones (start time
   and signed size per sample);
2. those steps are replayed on Tensors with the engine's ops, so the backward
   walk sees each stage: the same lockstep as the array loop, each pass one
   batched call of ``func`` per stage on the samples that still have steps.

As in :mod:`odeflow.adjoint.discretize`, step-size decisions are values and
are not differentiated; rejected attempts add nothing to the graph (here they
are not even replayed). Memory grows with the number of steps.

The replay sorts samples by their number of steps (most first), so the
samples still integrating at pass ``k`` are a prefix: each pass slices the
previous one's states and no scatter is needed. A sample's graph touches
only its own rows, so its gradient is that of the sample solved alone
(bitwise, for a row-independent ``func``: see :mod:`odeflow.solvers.batch`).

Time gradients are not provided: a ``t`` Tensor requiring grad raises
:class:`~odeflow.errors.GradientError`.
"""
from __future__ import annotations

import numpy as np

from odeflow.adjoint.common import as_tensor, time_data
from odeflow.adjoint.params import call_watched
from odeflow.autodiff import ops
from odeflow.autodiff.tensor import Tensor, no_grad
from odeflow.errors import GradientError, InputTypeError, ShapeError
from odeflow.solvers import batch as _batch
from odeflow.solvers.jit import is_jitted

__all__ = ["odeint_batch_backprop"]


def _to_user(Y, sample_shape, axis):
    """Tensor ``(k, n)`` -> the user's layout ``(..., k at axis, ...)``."""
    y = ops.reshape(Y, (Y.shape[0],) + sample_shape)
    if axis == 0:
        return y
    order = list(range(1, axis + 1)) + [0] + list(range(axis + 1, y.ndim))
    return ops.transpose(y, order)


def _from_user(f, k, axis, shape_k):
    """``func``'s output in the user's layout -> Tensor ``(k, n)``, its shape checked."""
    if not isinstance(f, Tensor):
        raise GradientError(f"`func` returned a {type(f).__name__} for a Tensor `y`, so no gradient can "
                            f"flow through it: build dy/dt with odeflow ops on `y`")
    if f.shape != shape_k:
        raise ShapeError(f"`func` must return dy/dt with the shape of its `y` {shape_k}; returned {f.shape}")
    if axis != 0:
        order = [axis] + [d for d in range(f.ndim) if d != axis]
        f = ops.transpose(f, order)
    return ops.reshape(f, (k, -1))


def _dense_weights(P, theta):
    """``W[e, i] = sum_j P[i, j] theta_e**(j+1)``, summed as :func:`odeflow.solvers.kernels.dense_eval`
    does (element-wise per output: no matrix product, whose rounding could depend on the batch)."""
    W = np.zeros((theta.size, P.shape[0]))
    for i in range(P.shape[0]):
        power = theta.copy()
        for j in range(P.shape[1]):
            W[:, i] += P[i, j] * power
            power = power * theta
    return W


def _arrays_func(func):
    """``func`` on Tensors seen as a function on arrays (the forward, values-only solve)."""
    def f(t, y, *args):
        with no_grad():
            out = func(t, Tensor(y), *[Tensor(a) for a in args])
        return out.data if isinstance(out, Tensor) else out
    return f


def odeint_batch_backprop(func, y0, t, batch_axis, *, rtol=1e-7, atol=1e-9, method="dopri5", options=None,
                          args=(), stats=None):
    """Per-sample adaptive solve on Tensors, differentiable by backpropagation.

    Parameters as :func:`odeflow.solvers.batch.solve_batch`; ``y0`` a Tensor
    (or array), ``func`` built from engine ops, ``args`` per-sample parameters
    (arrays or Tensors with leading axis ``batch``, passed as Tensors rows
    ``func(t, y, *args)``) that receive gradients when they require grad.
    ``stats``, when a dict, receives ``stats["forward"]``: the per-sample
    statistics of the deciding array solve.

    Returns
    -------
    Tensor, shape ``(m, *y0.shape)``; row ``i`` at each sample's ``t[b, i]``.

    Raises
    ------
    As :func:`~odeflow.solvers.batch.solve_batch`; GradientError for a ``t``
    that requires grad or a ``func`` returning ndarrays; InputTypeError for a
    jitted ``func``.
    """
    if is_jitted(func):
        raise InputTypeError("`func` is a Numba-jitted function, which works on arrays only: with a "
                             "Tensor `y0` build func from odeflow ops (an nn.Module, say)")
    y0 = as_tensor(y0)
    t_data, t_grad = time_data(t)
    if t_grad:
        raise GradientError("gradients with respect to `t` are not available with batch_axis; pass `t` "
                            "as an array (or a Tensor that does not require grad)")
    if not isinstance(args, tuple):
        raise InputTypeError(f"`args` must be a tuple; got {type(args).__name__}")
    args_t = tuple(a if isinstance(a, Tensor) else Tensor(np.asarray(a)) for a in args)
    tab, y0_arr, t_rows, per_sample, axis, rtol_f, atol_f, opts, max_steps, _ = _batch.prepare_batch(
        func, y0.data, t_data, batch_axis, rtol, atol, method, options, tuple(a.data for a in args_t))
    record = []
    sol = _batch.integrate(_arrays_func(func), y0_arr, t_rows, axis, tab, rtol_f, atol_f, opts, method,
                           max_steps, tuple(a.data for a in args_t), record=record)
    if stats is not None:
        stats["forward"] = dict(sol.stats)
    return _replay(func, y0, t_rows, axis, tab, args_t, record)


def _replay(func, y0, t_out, axis, tab, args, record):
    """The recorded accepted steps on Tensors; returns the outputs ``(m, *y0.shape)``."""
    B, m = t_out.shape
    shape = y0.shape
    sample_shape = shape[:axis] + shape[axis + 1:]
    n = int(np.prod(sample_shape, dtype=np.int64))
    steps = [[] for _ in range(B)]  # per sample: (t, h, t_new) of its accepted steps, in order
    for rows, ts, hs, ends in record:
        for b, tb, hb, eb in zip(rows.tolist(), ts.tolist(), hs.tolist(), ends.tolist()):
            steps[b].append((tb, hb, eb))
    order = np.argsort([-len(s) for s in steps], kind="stable")  # most steps first
    counts = np.array([len(steps[b]) for b in order], dtype=np.int64)
    Y = ops.reshape(y0, shape)
    if axis != 0:
        Y = ops.transpose(Y, [axis] + [d for d in range(len(shape)) if d != axis])
    Y = ops.reshape(Y, (B, n))[order]
    args = tuple(a[order] for a in args)
    pieces, labels = [Y], [(order, np.zeros(B, np.int64))]  # outputs and which (sample, row) they are
    lead = np.cumprod(t_out == t_out[:, :1], axis=1).sum(axis=1)  # outputs repeating the start time
    for j in range(1, int(lead.max(initial=1))):  # initial: an empty batch
        at_start = np.flatnonzero(lead[order] > j)  # positions in Y (sample order[i] at Y[i])
        pieces.append(Y[at_start])
        labels.append((order[at_start], np.full(at_start.size, j, np.int64)))
    s = tab.n_stages
    P = tab.P_arr
    active = int((counts > 0).sum())

    def call(tt, Yk, k):
        t_arg = float(tt[0]) if np.all(tt == tt[0]) else tt
        f = call_watched(func, t_arg, _to_user(Yk, sample_shape, axis), *[a[:k] for a in args])
        shape_k = shape[:axis] + (k,) + shape[axis + 1:]
        return _from_user(f, k, axis, shape_k)

    if active:
        Y = Y[:active]
        K0 = call(t_out[order[:active], 0], Y, active)
    step = 0
    while active:
        rows = order[:active]
        tk = np.array([steps[b][step][0] for b in rows])
        hk = np.array([steps[b][step][1] for b in rows])
        h_col = hk[:, None].astype(Y.dtype)
        ks = [K0]
        zero = Tensor(np.zeros((active, n), Y.dtype))
        for i in range(1, s):  # HNW eq. 1.8, each sample with its own h
            state = Y + h_col * ops.lincomb(zero, 1.0, tab.A_arr[i, :i], ks)
            ks.append(call(tk + tab.c_arr[i] * hk, state, active))
        Y1 = state  # FSAL: the last stage state is the new solution
        t_new = np.array([steps[b][step][2] for b in rows])  # as the array loop's (not tk + hk)
        # outputs in (t, t_new] per sample: dense output (HNW §II.6) or y1 itself at t_new
        T = t_out[rows, 1:]  # (k, m - 1); outputs in (t, t_new] of each sample's step
        d = np.where(hk > 0, 1.0, -1.0)[:, None]
        inside = (d * (T - tk[:, None]) > 0.0) & (d * (T - t_new[:, None]) <= 0.0)
        at_end = inside & (T == t_new[:, None])
        r_end, j_end = np.nonzero(at_end)
        r_in, j_in = np.nonzero(inside & ~at_end)
        j_end, j_in = j_end + 1, j_in + 1
        theta = (t_out[rows[r_in], j_in] - tk[r_in]) / hk[r_in]
        if r_end.size:
            pieces.append(Y1[r_end])
            labels.append((rows[r_end], j_end))
        if r_in.size:
            ri = r_in
            W = _dense_weights(P, theta)
            acc = ops.lincomb(Tensor(np.zeros((ri.size, n), Y.dtype)), 1.0, [1.0] * s,
                              [ks[i][ri] * W[:, i:i + 1].astype(Y.dtype) for i in range(s)])
            pieces.append(Y[ri] + hk[ri][:, None].astype(Y.dtype) * acc)
            labels.append((rows[ri], j_in))
        step += 1
        active = int((counts > step).sum())
        Y, K0 = Y1[:active], ks[-1][:active]
    allout = ops.concatenate(pieces, axis=0)
    where = np.full(B * m, -1, np.int64)  # position of (sample b, row j) in allout
    start = 0
    for samples, js in labels:
        where[samples * m + js] = np.arange(start, start + samples.size)
        start += samples.size
    if where.size and where.min() < 0:  # every output lies in exactly one replayed step: a bug otherwise
        b, j = divmod(int(np.argmin(where)), m)
        raise RuntimeError(f"odeflow internal error: output t[{b}, {j}] fell in no replayed step")
    out = ops.reshape(allout[where], (B, m) + sample_shape)  # (B, m, *sample_shape)
    return ops.transpose(out, [1] + list(range(2, axis + 2)) + [0] + list(range(axis + 2, out.ndim)))
