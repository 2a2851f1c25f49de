"""Higher-order gradients through ``odeint_adjoint``: the backward pass, recorded.

When the walk through an ``odeint_adjoint`` node records itself
(``backward(create_graph=True)``, ``gradients(..., create_graph=True)``,
nested ``odeflow.grad``), the gradients it returns must be differentiable
functions of ``y0``, the parameters, the output times and the incoming
gradient. The backward pass is then recorded with the engine's ops, one
interval at a time, as the checkpointing scheme of ACA (Zhuang et al. 2020):
each interval ``[t_{i-1}, t_i]`` is re-solved from its stored start
``y(t_{i-1})`` by the Tensor loop of backpropagation through the solver
(:mod:`~odeflow.adjoint.discretize`), and the interval's VJP is taken through
that recorded solve with ``create_graph=True``. Nothing is reconstructed
backwards, so this is exact (to the discretization of the re-solve) in both
adjoint modes, dissipative dynamics included; the first-order values agree
with those of the unrecorded adjoint to the tolerances. Memory: the recorded
re-solves stay alive until the second walk uses them (like backprop).

The chain between intervals runs through the solution's own node: the start
``y(t_{i-1})`` of each re-solve is the solution row, so second derivatives
that pass through ``y(t_{i-1})`` call the adjoint's first-order backward again.
Each interval is wrapped by :func:`local_call` so that its VJP is a *partial*
derivative (the rows, the adjoint ``a`` and the times are the interval's
inputs, not re-differentiated through the graph upstream of them).

References
----------
.. [1] J. Zhuang, N. Dvornek, X. Li, S. Tatikonda, X. Papademetris, J. Duncan,
       "Adaptive Checkpoint Adjoint Method for Gradient Estimation in Neural
       ODE", ICML 2020, §3 (re-solving each interval from a checkpoint).
.. [2] A. Griewank, A. Walther, "Evaluating Derivatives", 2nd ed., SIAM, 2008,
       §4.6 (second derivatives by reverse-over-reverse).
"""
from __future__ import annotations

import numpy as np

from odeflow.adjoint.discretize import odeint_backprop
from odeflow.adjoint.params import unknown_leaf_error
from odeflow.autodiff import ops
from odeflow.autodiff.backprop import gradients, leaves
from odeflow.autodiff.tensor import Tensor, _wrap, enable_grad, is_grad_enabled
from odeflow.errors import GradientError
from odeflow.solvers.tableau import TABLEAUX

__all__ = ["local_call", "recorded_backward"]


def _flat(parts):
    return ops.concatenate([ops.reshape(p, (-1,)) for p in parts]) if parts else Tensor(np.zeros(0))


def local_call(fn, inputs, n_detached):
    """``fn(*inputs)`` (a list of Tensors) as one graph node whose VJP is ``fn``'s own graph.

    The first `n_detached` inputs are replaced, inside ``fn``, by fresh leaves
    with their values, so the VJP is the partial derivative with respect to
    them and never walks the graph upstream of them (which may reach the same
    parameters again). The other inputs (the parameters, which ``fn`` reads by
    closure) are used as they are. The node's VJP, when itself recorded, is
    another :func:`local_call`, so derivatives of any order are available.

    Returns
    -------
    list of Tensor
        ``fn``'s outputs, each connected to `inputs` through the node.
    """
    local = [Tensor(x.data, requires_grad=True) if k < n_detached and x.requires_grad else x
             for k, x in enumerate(inputs)]
    with enable_grad():
        outs = fn(*local)
    shapes = [o.shape for o in outs]
    diff = [k for k, o in enumerate(outs) if o.requires_grad]
    wanted = [k for k, x in enumerate(local) if x.requires_grad]

    def vjp(g):
        pieces, start = [], 0
        for shape in shapes:
            size = int(np.prod(shape))
            pieces.append(ops.reshape(g[start: start + size], shape))
            start += size
        grads = [None] * len(inputs)
        if not diff or not wanted:
            return grads
        seeds = [pieces[k] for k in diff]
        if is_grad_enabled():  # recorded: the VJP as another local call, for the next order
            def inner(*args):
                xs = args[:n_detached] + args[n_detached + len(seeds):]
                res = gradients(_select(fn(*xs), diff), [xs[k] for k in wanted],
                                list(args[n_detached: n_detached + len(seeds)]), create_graph=True,
                                allow_unused=True)
                return [r if r is not None else _wrap(np.zeros(xs[k].shape, xs[k].dtype))
                        for r, k in zip(res, wanted)]
            res = local_call(inner, list(inputs[:n_detached]) + seeds + list(inputs[n_detached:]),
                             n_detached + len(seeds))
        else:
            res = gradients(_select(outs, diff), [local[k] for k in wanted], [p.data for p in seeds],
                            retain_graph=True, allow_unused=True)
        for r, k in zip(res, wanted):
            grads[k] = r
        return grads

    node = ops.make_node(_flat(outs).data, inputs, vjp)
    result, start = [], 0
    for shape in shapes:
        size = int(np.prod(shape))
        result.append(ops.reshape(node[start: start + size], shape))
        start += size
    return result


def _select(outs, ks):
    return [outs[k] for k in ks]


def recorded_backward(func, out, g, t, t_grad, params, strict, solve_kw, counter):
    """The adjoint node's VJP with recording on: Tensors ``[dL/dy0, (dL/dt), dL/dtheta...]``.

    Parameters
    ----------
    func : callable on Tensors
    out : Tensor
        The solution node itself (rows ``y(t_i)``), shape ``(m, *y0.shape)``.
    g : Tensor
        ``dL/dy(t_i)`` for every row.
    t : Tensor or ndarray
        The output times (a Tensor requiring grad when `t_grad`).
    params : list of Tensor
    strict : bool
        Raise for a leaf requiring grad that is not in `params`.
    solve_kw : dict
        ``rtol``, ``atol``, ``method``, ``options`` of the forward solve.
    counter : dict
        ``counter["nfe"]`` receives the evaluations of the re-solves.
    """
    if solve_kw["method"] not in TABLEAUX:  # an implicit method (radau): no Tensor loop to record
        raise GradientError(
            f"higher-order gradients through odeint_adjoint re-solve each interval by backprop through "
            f"the solver, which method {solve_kw['method']!r} does not have: use an explicit method "
            f"for create_graph=True")
    m = out.shape[0]
    t_data = np.asarray(t.data if isinstance(t, Tensor) else t, dtype=np.float64)
    a = g[m - 1]
    d_theta = [None] * len(params)
    d_t = [None] * m
    known = {id(p) for p in params}

    def add(acc, k, value):
        acc[k] = value if acc[k] is None else acc[k] + value

    for i in range(m - 1, 0, -1):
        def interval(y_s, a_e, *rest, i=i):
            t_pair = rest[0] if t_grad else t_data[i - 1: i + 1]
            stats = {}
            y_e = odeint_backprop(func, y_s, t_pair, stats=stats, **solve_kw)[-1]
            counter["nfe"] += stats["forward"]["nfe"]
            if strict:
                for leaf in leaves(y_e):
                    if id(leaf) not in known and leaf is not y_s and leaf is not t_pair:
                        raise unknown_leaf_error(leaf, t_data[i - 1])
            targets = [y_s] + ([t_pair] if t_grad else []) + list(params)
            res = gradients(y_e, targets, a_e, create_graph=True, allow_unused=True)
            return [r if r is not None else _wrap(np.zeros(x.shape, x.dtype)) for r, x in zip(res, targets)]
        detached = [out[i - 1], a] + ([t[i - 1: i + 1]] if t_grad else [])
        res = local_call(interval, detached + list(params), len(detached))
        a = res[0] + g[i - 1]
        if t_grad:
            add(d_t, i - 1, res[1][0])
            add(d_t, i, res[1][1])
        for k, r in enumerate(res[1 + t_grad:]):
            add(d_theta, k, r)
    zero = _wrap(np.zeros((), np.float64))
    grads = [a]
    if t_grad:
        grads.append(ops.stack([d if d is not None else zero for d in d_t]))
    return grads + [d if d is not None else _wrap(np.zeros_like(p.data)) for d, p in zip(d_theta, params)]
