"""The backward pass over one interval ``[t_{i-1}, t_i]``: the adjoint ODE solved from ``t_i`` back.

Chen et al. 2018, eq. 4-5 and Appendix B: between two output times the
augmented state is integrated backwards with

    dy/dt        =  f(t, y)                         (backsolve only)
    da/dt        = -a(t)^T  df/dy
    da_theta/dt  = -a(t)^T  df/dtheta

whose right-hand side is one ``func`` evaluation plus one vector-Jacobian
product by the engine (:func:`vjp`): the Jacobian is never formed. In
backsolve mode ``y`` starts from the stored forward output ``y(t_i)`` and is
reconstructed backwards; in checkpoint mode ``y(t)`` is read from a dense
forward solution instead (the interpolated reverse dynamic method, Daulbaev et
al. 2020). The layout of ``[y | a | a_theta]`` is :mod:`~odeflow.adjoint.layout`'s.
"""
from __future__ import annotations

import numpy as np

from odeflow.adjoint.layout import Layout, tolerances
from odeflow.adjoint.params import not_a_tensor_error, unknown_leaf_error
from odeflow.autodiff.backprop import gradients, leaf_gradients
from odeflow.autodiff.tensor import Tensor, enable_grad, no_grad
from odeflow.errors import SolverError
from odeflow.solvers.integrate import solve as _solve

__all__ = ["vjp", "BackwardPass"]


def vjp(func, t, y, a, params, strict):
    """``f(t, y)`` and the vector-Jacobian products ``-a^T df/dy``, ``-a^T df/dtheta_k``.

    With `strict` (parameters found by the forward solve) one walk reaches
    every leaf the evaluation used, and a leaf requiring grad that is not in
    `params` raises :func:`~odeflow.adjoint.params.unknown_leaf_error`;
    otherwise (``adjoint_params=`` given) only `params` are differentiated and
    other leaves are constants.
    """
    with enable_grad():
        y_t = Tensor(y, requires_grad=True)
        f = func(t, y_t)
    if not isinstance(f, Tensor):
        raise not_a_tensor_error(f)
    if not f.requires_grad:  # f depends on neither y nor a parameter: both products vanish
        return f.data, np.zeros_like(y), [np.zeros_like(p.data) for p in params]
    if strict:
        shortcut = _one_node(f, y_t, -a, params, t)
        if shortcut is not None:
            return (f.data, *shortcut)
    g_y = np.zeros_like(y)
    g_p = [np.zeros_like(p.data) for p in params]
    # retain_graph: func may read a Tensor computed before the solve (an encoder's output);
    # the graph upstream of it must survive for the next evaluation (this evaluation's own
    # nodes are released anyway when `f` goes out of scope)
    if not strict:
        grads = gradients(f, [y_t] + params, grad_outputs=-a, retain_graph=True, allow_unused=True)
        g_y = g_y if grads[0] is None else grads[0].data
        return f.data, g_y, [z if g is None else g.data for z, g in zip(g_p, grads[1:])]
    index = {id(p): k for k, p in enumerate(params)}
    for leaf, g in leaf_gradients(f, -a, retain_graph=True):
        if leaf is y_t:
            g_y = g.data
        elif id(leaf) in index:
            g_p[index[id(leaf)]] = g.data
        else:
            raise unknown_leaf_error(leaf, t)
    return f.data, g_y, g_p


def _one_node(f, y_t, seed, params, t):
    """The strict walk of :func:`vjp` when `f` is one node over distinct leaves (a fused
    ``nn.MLP``, say): its VJP called directly, ``(g_y, g_p)``; None for any other graph.

    The same numbers as the walk (which would call this one VJP and cast each
    gradient to its leaf's dtype), without the walk's bookkeeping.
    """
    parents = f._parents
    if f._vjp is None or len({id(p) for p in parents}) != len(parents):
        return None
    for p in parents:
        if p._vjp is not None:  # an inner node: the general walk
            return None
    with no_grad():
        grads = f._vjp(Tensor(seed), f)
    index = {id(p): k for k, p in enumerate(params)}
    g_y = None
    g_p = [None] * len(params)
    for parent, g in zip(parents, grads):
        if g is None or not parent.requires_grad:
            continue
        g = np.asarray(g.data if isinstance(g, Tensor) else g)
        if g.dtype != parent.dtype:
            g = g.astype(parent.dtype)
        if parent is y_t:
            g_y = g
        elif id(parent) in index:
            g_p[index[id(parent)]] = g
        else:
            raise unknown_leaf_error(parent, t)
    g_y = np.zeros_like(y_t.data) if g_y is None else g_y
    return g_y, [np.zeros_like(p.data) if g is None else g for p, g in zip(params, g_p)]


class BackwardPass:
    """Settings and counters shared by the backward solves of every interval.

    Parameters
    ----------
    func : callable on Tensors
    params : list of Tensor
        One ``a_theta`` channel each.
    strict : bool
        See :func:`vjp`.
    shape, dtype
        Of the state.
    rtol, atol, method, options, seminorm
        Of the backward solve.
    steady : list of bool
        Per parameter, whether every forward evaluation read it (see
        :func:`~odeflow.adjoint.layout.tolerances`).

    Attributes
    ----------
    nfe, n_steps : int
        Evaluations of ``func`` and backward steps so far.
    """

    def __init__(self, func, params, strict, shape, dtype, rtol, atol, method, options, seminorm,
                 steady):
        self.func, self.params, self.strict = func, params, strict
        self.method, self.options = method, options
        self.layouts = {with_y: Layout(shape, params, with_y) for with_y in (True, False)}
        self.tols = {with_y: tolerances(self.layouts[with_y], rtol, atol, seminorm, dtype, steady)
                     for with_y in (True, False)}
        self.nfe = 0
        self.n_steps = 0

    def interval(self, t_hi, t_lo, a, a_theta, y_hi=None, dense=None):
        """Integrate from `t_hi` back to `t_lo`: ``(y(t_lo) reconstructed or None, a, a_theta)``.

        Backsolve with `y_hi` (the forward output at `t_hi`); checkpoint with
        `dense`, a callable ``s -> y(s)`` (a forward solution's interpolant).
        The results are fresh arrays. A zero-length interval (a repeated
        output time) returns its inputs and costs nothing.

        Raises
        ------
        SolverError
            The backward solve failed; the message names the interval and the
            arguments that set it.
        """
        with_y = dense is None
        if t_hi == t_lo:  # a repeated output time: nothing to integrate, no evaluation
            return (None if y_hi is None else y_hi.copy()), a.copy(), [g.copy() for g in a_theta]
        layout = self.layouts[with_y]
        rtol_z, atol_z = self.tols[with_y]

        lo, hi = min(t_lo, t_hi), max(t_lo, t_hi)

        def augmented(s, z):
            y, a_s, _ = layout.unpack(z)
            if not with_y:  # the last step may end a rounding error past the interval
                y = dense(min(max(s, lo), hi))
            f, g_y, g_p = vjp(self.func, s, y, a_s, self.params, self.strict)
            self.nfe += 1
            return layout.pack(f, g_y, g_p)

        try:
            out = _solve(augmented, layout.pack(y_hi, a, a_theta), [t_hi, t_lo], rtol=rtol_z,
                         atol=atol_z, method=self.method, options=self.options, dense_output=False)
        except SolverError as exc:
            raise type(exc)(f"adjoint backward solve from t = {float(t_hi)!r} to {float(t_lo)!r} "
                            f"(set by adjoint_rtol, adjoint_atol, adjoint_method, adjoint_options): "
                            f"{exc}", t=exc.t, h=exc.h, solution=exc.solution) from None
        self.n_steps += out.stats["n_steps"]
        y_lo, a, a_theta = layout.unpack(out.y[-1].copy())
        return y_lo, a, a_theta
