"""Backpropagation through the solver ("discretize-then-optimize").

When ``odeflow.odeint`` receives a Tensor ``y0`` it differentiates the
numerical solution itself: the exact gradient of what the solver computed,
not of the true ODE solution.

How: the array solver first runs the adaptive loop on values only (fast,
jitted kernels) and records the accepted steps; then those steps are replayed
with the engine's ops, which builds the graph. Step-size decisions are not
differentiated (they never are: the accepted ``h`` are constants), and rejected
attempts contribute nothing to the result, so replaying only the accepted
steps gives the same values and the full gradient. It costs one extra pass of
``6 * n_accepted`` evaluations, in exchange for a single control loop
(:mod:`odeflow.solvers.loop`) instead of a second one written on Tensors.
Memory grows with the number of steps (every stage is kept for the backward
walk): use :func:`odeflow.odeint_adjoint` for O(1) memory.

Gradients w.r.t. the times ``t`` (a Tensor requiring grad): moving an output
time ``t_i`` moves the output along the solution, ``d y(t_i) / d t_i =
f(t_i, y(t_i))``; moving ``t_0`` shifts the whole trajectory, ``dL/dt_0 =
-a(t_0) . f(t_0, y_0)`` (Chen et al. 2018, Appendix B). Both enter the graph as
value-preserving terms ``(t_i - t_i.data) * f_i``, zero in value, with the
right derivative.
"""
from __future__ import annotations

import numpy as np

from odeflow.adjoint.common import array_func, as_tensor, time_data
from odeflow.autodiff import ops
from odeflow.autodiff.tensor import Tensor
from odeflow.solvers.integrate import solve
from odeflow.solvers.tableau import TABLEAUX

__all__ = ["odeint_backprop"]


def _step(func, tab, t, h, y, k0):
    """One Runge–Kutta step on Tensors (HNW §II.1, eq. 1.8): ``(y1, stages)``.

    ``k0`` is ``f(t, y)`` when already known (FSAL: the last stage of the
    previous step), else None.
    """
    ks = [k0 if k0 is not None else _as_t(func(t, y))]
    state = y
    for i in range(1, tab.n_stages):
        state = y + h * _sum([tab.A_arr[i, j] * ks[j] for j in range(i) if tab.A_arr[i, j] != 0.0])
        ks.append(_as_t(func(t + tab.c_arr[i] * h, state)))
    if not tab.fsal:  # FSAL: the last stage's state is already y1
        state = y + h * _sum([tab.b_arr[i] * ks[i] for i in range(tab.n_stages) if tab.b_arr[i] != 0.0])
    return state, ks


def _sum(terms):
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def _as_t(x):
    return x if isinstance(x, Tensor) else Tensor(x)


def _weights(P, theta):
    """Dense-output weights ``w_i = sum_j P[i, j] theta**(j+1)`` (HNW §II.6)."""
    return P @ theta ** np.arange(1, P.shape[1] + 1)


def odeint_backprop(func, y0, t, *, rtol=1e-7, atol=1e-9, method="dopri5", options=None, stats=None):
    """Solve on Tensors and differentiate through the solver's operations.

    Same arguments as :func:`odeflow.odeint`, with ``y0`` (and optionally ``t``)
    a Tensor; returns a Tensor of shape ``(len(t), *y0.shape)``. ``stats``, when
    a dict, receives the forward statistics under ``"forward"`` (the replay's
    evaluations are counted in ``"replay_nfe"``).
    """
    y0 = as_tensor(y0)
    t_data, t_grad = time_data(t)
    sol = solve(array_func(func), y0.data, t_data, rtol=rtol, atol=atol, method=method, options=options)
    tab = TABLEAUX[method]
    steps = sol.t_steps
    t_out = sol.t
    f_out = None
    if t_grad:  # f at the outputs, values only, for the time terms
        fa = array_func(func)
        f_out = [np.asarray(fa(ti, yi)) for ti, yi in zip(t_out, sol.y)]
        y = y0 - (t[0] - float(t_out[0])) * f_out[0]
    else:
        y = y0
    rows = [y]
    j = 1
    nfe = 0
    k_next = None
    for k in range(steps.size - 1):
        t0, t1 = float(steps[k]), float(steps[k + 1])
        h = t1 - t0
        nfe += tab.n_stages - (k_next is not None)
        y1, ks = _step(func, tab, t0, h, y, k_next)
        k_next = ks[-1] if tab.fsal else None
        while j < t_out.size and (t_out[j] - t1) * np.sign(h) <= 0.0:
            if t_out[j] == t1:
                rows.append(y1)
            else:  # inside the step: the continuous extension, on Tensors
                w = _weights(tab.P_arr, (t_out[j] - t0) / h)
                rows.append(y + h * _sum([w[i] * ks[i] for i in range(tab.n_stages) if w[i] != 0.0]))
            j += 1
        y = y1
    if t_grad:
        rows = [r + (t[i] - float(t_out[i])) * f_out[i] for i, r in enumerate(rows)]
    if stats is not None:
        stats["forward"] = dict(sol.stats, replay_nfe=nfe)
    return ops.stack(rows, axis=0)
