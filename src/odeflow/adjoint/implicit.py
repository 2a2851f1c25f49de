"""Backpropagation through implicit Runge–Kutta steps (``method="radau"``).

The explicit methods are differentiated by recording every stage on the tape
(:mod:`odeflow.adjoint.discretize`). An implicit step cannot be recorded that
way: its stages come out of Newton iterations, whose iterates are not what the
step computes. What the step computes is the root ``Z = (Z_1, Z_2, Z_3)`` of the
collocation equations (Hairer & Wanner, *Solving ODEs II*, §IV.8, eq. 8.1)::

    G(Z, y_n, theta) = Z - h (A ⊗ I) F(y_n + Z) = 0,
    F(y_n + Z)_i = f(t_n + c_i h, y_n + Z_i),

and the implicit function theorem gives its derivative directly: with
``J_i = df/dy`` at the stage points and
``M = dG/dZ = I - h (A ⊗ I) blockdiag(J_1, J_2, J_3)``,
a cotangent ``g`` on ``Z`` pulls back through

    M^T lambda = g,        mu_i = h sum_j A_ji lambda_j,
    dL/dy_n = sum_i J_i^T mu_i,    dL/dtheta = sum_i (df/dtheta)_i^T mu_i,

the last two being one VJP of ``func`` at each stage point with cotangent
``mu_i`` (:func:`_stage_node`). Newton's transformed system (RADAU5's
``T^-1 A^-1 T``) is only how the forward solves ``G = 0``; the derivative
depends on the root alone. It is the derivative of the exact root, so the
gradient is that of the discrete solve up to the Newton tolerance (the forward
stops within ``newton_tol`` of the root in the error norm).

The forward solve is the ordinary array solve (:func:`odeflow.solve`, values
only, the Jacobian by the engine, :func:`engine_jacobian`); its accepted steps
``(t_n, h_n, Z_n)`` are then replayed on Tensors: one graph node per step for
``Z_n``, ``y_{n+1} = y_n + Z_3`` (stiffly accurate) and the outputs inside the
step from the collocation polynomial ``u(t_n + x h) = y_n + sum_i l_i(x) Z_i``
(:data:`odeflow.solvers.radau.P`) as ordinary ops, so every output time gets
its gradient. Step sizes are constants of the graph, as in backpropagation
through the explicit methods. Gradients with respect to the times ``t`` come
from :mod:`odeflow.adjoint.times` (the caller's job, as for every method).

Second-order gradients (``create_graph=True`` through a step) are refused with
a GradientError: the node's backward uses dense linear algebra on arrays.

References
----------
.. [1] E. Hairer, G. Wanner, *Solving Ordinary Differential Equations II*,
       2nd ed., Springer 1996, §IV.8 (the collocation system, eq. 8.1).
.. [2] A. Griewank, A. Walther, *Evaluating Derivatives*, 2nd ed., SIAM 2008,
       §15.1 (derivatives of implicitly defined functions, the transposed
       linear system).
"""
from __future__ import annotations

import numpy as np

from odeflow.autodiff import ops
from odeflow.autodiff.backprop import gradients, leaves
from odeflow.autodiff.tensor import Tensor, enable_grad, is_grad_enabled
from odeflow.errors import GradientError

__all__ = ["engine_jacobian", "jacobian_of", "with_engine_jacobian", "integrate_radau"]


def jacobian_of(outs, ys):
    """``d outs[i] / d ys[i]`` for each ``i`` (flattened, float64 ``(n, n)``) by reverse mode.

    ``outs[i]`` must depend on ``ys[i]`` alone among ``ys`` (separate
    evaluations of one function, of one shape): then one walk seeded with
    ``e_r`` on every output gives row ``r`` of every Jacobian, ``n`` VJPs in
    all through the recorded graphs (kept for the next walk). An output
    independent of its input gives zero rows.
    """
    n = ys[0].size
    Js = [np.zeros((n, n)) for _ in ys]
    live = [i for i, out in enumerate(outs) if out.requires_grad]
    if not live:
        return Js
    seed = np.zeros(outs[live[0]].shape, dtype=outs[live[0]].dtype)
    flat = seed.reshape(-1)
    for r in range(n):
        flat[r] = 1.0
        rows = gradients([outs[i] for i in live], [ys[i] for i in live], [seed] * len(live),
                         retain_graph=True, allow_unused=True)
        flat[r] = 0.0
        for i, row in zip(live, rows):
            if row is not None:
                Js[i][r] = row.data.reshape(-1)
    return Js


def engine_jacobian(call, func, shape, dtype):
    """``jac(t, y) -> (n, n)``: ``df/dy`` of a Tensor ``func`` by the engine, for radau's Newton.

    The form of ``options={"jac": ...}`` (``y`` in ``y0``'s shape, the result
    for the flattened state). One recorded evaluation of ``func`` at
    ``(t, y)`` and ``n`` VJPs (:func:`jacobian_of`): exact, where finite
    differences lose half the digits. ``call(func, t, y)`` evaluates ``func``
    on Tensors with the gradient mode's checks. Like a given ``jac``, its
    evaluations count in ``njev``, not ``nfe`` (scipy's convention).
    """
    def jac(t, y):
        leaf = Tensor(np.asarray(y, dtype=dtype).reshape(shape), requires_grad=True)
        with enable_grad():
            out = call(func, t, leaf)
        return jacobian_of([out], [leaf])[0]
    return jac


def with_engine_jacobian(func, options, method, y0, call=None):
    """``options`` for a solve of the Tensor ``func`` from ``y0`` (a Tensor), with
    ``jac`` by the engine (:func:`engine_jacobian`) when ``method`` is radau and
    none is given; otherwise ``options`` unchanged (already checked). ``call``
    defaults to backpropagation's checked evaluation."""
    if method != "radau" or (options or {}).get("jac") is not None:
        return options
    if call is None:
        from odeflow.adjoint.discretize import _call as call  # not at the top: discretize imports us
    return dict(options or {}, jac=engine_jacobian(call, func, y0.shape, y0.dtype))


def _stage_node(call, func, t, h, y, y_start, Z):
    """The converged stages of one step as a graph node ``(3, *y.shape)`` (module docstring).

    ``y`` is the step's start (a Tensor), ``y_start`` its value in the array
    solve and ``Z`` that solve's stage increments, both float64 (``(n,)``,
    ``(3, n)``). The three stage evaluations are recorded here, at the array
    solve's stage points, with fresh leaves there, so that the node's parents
    are ``y`` and every Tensor requiring grad ``func`` read in this step.
    """
    from odeflow.solvers.radau import A, C
    shape, n = y.shape, y.size
    points = [Tensor((y_start + Z[i]).reshape(shape).astype(y.dtype), requires_grad=True) for i in range(3)]
    with enable_grad():
        F = [call(func, t + C[i] * h, points[i]) for i in range(3)]
    ids = {id(p) for p in points}
    params = [leaf for leaf in leaves(F) if id(leaf) not in ids]

    def vjp(g):
        if is_grad_enabled():
            raise GradientError(
                "second-order gradients (create_graph=True) through method='radau' are not "
                "available: the implicit step's backward is linear algebra on arrays; use an "
                "explicit method for Hessian-vector products")
        gz = np.asarray(g.data, dtype=np.float64).reshape(3 * n)
        Js = jacobian_of(F, points)
        MT = np.eye(3 * n)  # block (i, j) of M^T: delta_ij I - h A_ji J_i^T
        for i in range(3):
            for j in range(3):
                MT[i * n:(i + 1) * n, j * n:(j + 1) * n] -= h * A[j, i] * Js[i].T
        lam = np.linalg.solve(MT, gz).reshape(3, n)
        mu = h * (A.T @ lam)
        seeds = [mu[i].reshape(shape).astype(F[i].dtype) for i in range(3)]
        wanted = [p for p in points] + params
        used = [i for i in range(3) if F[i].requires_grad]
        if not used:
            return [None] * (1 + len(params))
        res = gradients([F[i] for i in used], wanted, [seeds[i] for i in used], retain_graph=True,
                        allow_unused=True)
        d_y = sum(r.data for r in res[:3] if r is not None)
        return [d_y if not np.isscalar(d_y) else None] + list(res[3:])

    data = np.asarray(Z, dtype=np.float64).reshape((3,) + shape).astype(y.dtype)
    return ops.make_node(data, [y] + params, vjp)


def _stages(rec_h, rec_Q):
    """The stage increments ``Z_n`` (N, 3, n) from the solver's record of the collocation
    polynomials (``Q = Z^T P / h``, so ``Z_i = h Q (c_i, c_i^2, c_i^3)``)."""
    from odeflow.solvers.radau import C
    powers = C[:, None] ** np.arange(1, 4)  # (3 stages, 3 powers)
    return rec_h[:, None, None] * np.einsum("iq,nkq->nik", powers, rec_Q)


def integrate_radau(call, func, t_out, y, rtol, atol, opts, counts):
    """Radau IIA on Tensors: the outputs at the distinct times ``t_out``, ``(k, *y.shape)``.

    Parameters
    ----------
    call : callable ``call(func, t, y) -> Tensor``
        How backpropagation through the solver evaluates ``func`` (checks).
    func : callable ``func(t, y)`` on Tensors
    t_out : ndarray (k,), float64
        Distinct, monotone output times, ``k >= 2``.
    y : Tensor
        The state at ``t_out[0]``.
    rtol, atol : ndarray (n,), float64
        The checked tolerances (:func:`odeflow.solvers.integrate.prepare`).
    opts : dict
        The checked options (radau's keys).
    counts : dict
        Receives ``nfe``, ``n_accepted``, ``n_rejected``, ``njev``, ``nlu``.

    Returns
    -------
    Tensor
        Shape ``(k, *y.shape)``, ``y``'s dtype.

    Raises
    ------
    SolverError
        From the array solve (same classes and messages as :func:`odeflow.solve`).
    """
    from odeflow.adjoint.common import array_func
    from odeflow.solvers.integrate import solve
    from odeflow.solvers.radau import P
    sol = solve(array_func(func), y.data, t_out, rtol=rtol.reshape(y.shape), atol=atol.reshape(y.shape),
                method="radau",
                options=with_engine_jacobian(func, opts, "radau", y, call))  # the engine's J, not differences
    for key in ("nfe", "n_accepted", "n_rejected", "njev", "nlu"):
        counts[key] = counts.get(key, 0) + sol.stats[key]
    _, rec_t, rec_h, rec_y, rec_Q, _ = sol._steps_record()
    if not is_grad_enabled():  # values only
        return Tensor(sol.y.astype(y.dtype, copy=False))
    Zs = _stages(rec_h, rec_Q)
    direction = 1.0 if t_out[-1] > t_out[0] else -1.0
    rows, j = [ops.expand_dims(y, 0)], 1
    for step in range(rec_t.size):
        t, h = float(rec_t[step]), float(rec_h[step])
        t_new = float(rec_t[step + 1]) if step + 1 < rec_t.size else float(t_out[-1])
        Z = _stage_node(call, func, t, h, y, rec_y[step], Zs[step])
        counts["nfe"] += 3
        end = j
        while end < t_out.size and direction * (t_out[end] - t_new) < 0.0:
            end += 1
        if end > j:  # outputs strictly inside the step: the collocation polynomial
            x = (t_out[j:end] - t) / h
            W = (x[:, None] ** np.arange(1, 4)) @ P.T  # (outputs, stages): l_i(x)
            inner = ops.matmul(W.astype(y.dtype), ops.reshape(Z, (3, -1)))
            rows.append(ops.reshape(inner, (end - j,) + y.shape) + y)
            j = end
        y = y + Z[2]
        if j < t_out.size and t_out[j] == t_new:
            rows.append(ops.expand_dims(y, 0))
            j += 1
    if j != t_out.size:  # the record did not reach every output: never a silently short graph
        raise GradientError(f"radau: the replay of the solve reached {j} of {t_out.size} output times "
                            f"(t_out = {t_out!r}); please report this")
    replay = ops.concatenate(rows, axis=0)
    # the values are the array solve's (the replay's sums y + Z_3 differ from them by
    # rounding, which the stiff components do not damp); the graph is the replay's
    return ops.make_node(sol.y.astype(y.dtype, copy=False), [replay], lambda g: [g])
