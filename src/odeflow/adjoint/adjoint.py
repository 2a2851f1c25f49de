"""The adjoint method: gradients of an ODE solution by a second, backward ODE.

For ``dy/dt = f(t, y, theta)`` and a loss ``L`` of the outputs ``y(t_i)``, the
adjoint ``a(t) = dL/dy(t)`` obeys (Chen et al. 2018, eq. 4; Pontryagin 1962)::

    da/dt        = -a(t)^T  df/dy                  a(t_N) = dL/dy(t_N)
    da_theta/dt  = -a(t)^T  df/dtheta              a_theta(t_N) = 0
    dL/dtheta    = a_theta(t_0)                    (eq. 5)

Between output times ``a`` is integrated backwards; at each ``t_i`` the direct
contribution ``dL/dy(t_i)`` is added (Appendix B, Algorithm 2). The products
``a^T df/dy`` and ``a^T df/dtheta`` are one vector-Jacobian product of ``func``
by the engine (:func:`odeflow.autodiff.gradients`): the Jacobian is never formed.

Time gradients need no extra channel: moving an output time moves the output
along the solution, ``dL/dt_i = dL/dy(t_i) . f(t_i, y(t_i))`` for ``i >= 1``, and
since ``d(a . f)/dt = a . df/dt`` along the adjoint, the integrated ``a_t`` of
Appendix B reduces to ``dL/dt_0 = -a(t_0) . f(t_0, y_0)``. So ``func`` is never
asked for ``df/dt``, and a ``func`` that uses ``t`` as a plain float works.

Two modes (``adjoint_mode``):

``"backsolve"`` (the paper's; O(1) memory in the number of steps)
    The augmented state ``[y, a, a_theta]`` is integrated from ``t_i`` back to
    ``t_{i-1}``, ``y`` restarting at each ``t_i`` from the stored forward
    output. Unaudited, **the gradient would be approximate** beyond the tolerances when the
    backward reconstruction of ``y`` is ill-conditioned: for dissipative
    dynamics (eigenvalues with large negative real part) the errors of ``y``
    grow like ``exp(|lambda| T)`` backwards (Gholami et al. 2019, ANODE;
    Zhuang et al. 2020, ACA).
``"checkpoint"`` (O(steps x state) memory, no graph)
    The forward solve keeps its dense output (the states and interpolation
    polynomials of every accepted step); the backward pass integrates only
    ``[a, a_theta]`` and reads ``y(t)`` from that interpolant, so ``y`` is never
    reconstructed backwards (the interpolated reverse dynamic method of
    Daulbaev et al. 2020, in the spirit of ACA's checkpoints).

Backsolve audits itself (:mod:`~odeflow.adjoint.audit`): at each ``t_{i-1}``
the reconstructed ``y`` is compared with the stored forward output, and an
interval that drifted is by default redone in checkpoint mode.

With a recorded walk (``create_graph=True``) the backward pass is itself
recorded, interval by interval (:mod:`~odeflow.adjoint.higher`), so gradients
of gradients work in both modes.

The code: this module checks the arguments and ties the pieces together; the
forward solve records which parameters ``func`` reads
(:mod:`~odeflow.adjoint.params`), :mod:`~odeflow.adjoint.interval` solves the
backward pass over one interval, :mod:`~odeflow.adjoint.audit` judges it, and
:mod:`~odeflow.adjoint.layout` packs the augmented state.

``adjoint_options={"norm": "seminorm"}`` leaves the ``a_theta`` channels out of
the backward step-size control (Kidger, Chen & Lyons 2021, "Hey, that's not an
ODE"): they never feed back into the dynamics, so their error need not limit
the step; typically fewer backward evaluations for the same gradient accuracy.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import numpy as np

from odeflow.adjoint.audit import audit_options, drift, judge
from odeflow.adjoint.common import array_func, as_tensor, time_data, with_args
from odeflow.adjoint.higher import recorded_backward
from odeflow.adjoint.implicit import with_engine_jacobian
from odeflow.adjoint.interval import BackwardPass
from odeflow.adjoint.params import Recorder, check_adjoint_params, check_closure
from odeflow.autodiff.ops import make_node
from odeflow.autodiff.tensor import Tensor, is_grad_enabled
from odeflow.errors import InputError, InputTypeError, SolverError
from odeflow.solvers.integrate import METHODS, method_kind, prepare
from odeflow.solvers.integrate import solve as _solve
from odeflow.solvers.jit import is_jitted
from odeflow.solvers.validate import as_tolerance, check_options

__all__ = ["odeint_adjoint", "ADJOINT_MODES"]

ADJOINT_MODES = ("backsolve", "checkpoint")


@dataclass
class _Settings:
    """What the backward pass needs besides ``func`` and the forward solution."""
    forward: dict            # rtol, atol, method, options of the forward solve
    fwd_rtol: np.ndarray     # the forward's checked tolerances (flat), for the drift norm
    fwd_atol: np.ndarray
    adaptive: bool
    checkpoint: bool
    on_drift: str
    drift_tol: float
    make_pass: object        # params -> BackwardPass
    stats: dict = field(default=None)


def _backward_options(method, opts, adjoint_method, adjoint_options, adjoint_rtol, adjoint_atol,
                      rtol, atol, y0):
    """The backward solve's settings, checked before any work (they inherit the forward's)."""
    b_method = method if adjoint_method is None else adjoint_method
    if adjoint_options is not None and not isinstance(adjoint_options, dict):
        raise InputTypeError(f"`adjoint_options` must be a dict or None; got {type(adjoint_options).__name__}")
    # the forward options are inherited (a fixed step's step_size, max_step...) and overridden
    back = dict(opts) if b_method == method else {}
    back.pop("jac", None)  # the forward's df/dy is not the Jacobian of the augmented backward system
    back.update(adjoint_options or {})
    norm = back.pop("norm", "rms")
    if norm not in ("rms", "seminorm"):
        raise InputError(f"`adjoint_options['norm']` must be 'rms' or 'seminorm'; got {norm!r}")
    policy, drift_tol = audit_options(back)
    if not isinstance(b_method, str) or b_method not in METHODS:
        raise InputError(f"`adjoint_method` must be one of {', '.join(METHODS)}; got {b_method!r}")
    back = check_options(back, method_kind(b_method), b_method, name="adjoint_options") or None
    b_rtol = rtol if adjoint_rtol is None else adjoint_rtol
    b_atol = atol if adjoint_atol is None else adjoint_atol
    as_tolerance(b_rtol, "adjoint_rtol", y0.shape, y0.dtype)
    as_tolerance(b_atol, "adjoint_atol", y0.shape, y0.dtype)
    return dict(rtol=b_rtol, atol=b_atol, method=b_method, options=back,
                seminorm=norm == "seminorm"), policy, drift_tol


def _first_order(func, params, strict, sol, g, t_grad, s):
    """The adjoint's backward pass on arrays: ``[dL/dy0, (dL/dt), dL/dtheta...]`` (module docstring)."""
    ys, t_data, m = sol.y, sol.t, sol.t.size
    f_arrays = array_func(func)
    bp = s.make_pass(params)
    audited = not s.checkpoint
    back = {"nfe": 0, "n_steps": 0, "drift": [None] * (m - 1) if audited else None,
            "recomputed": 0, "nfe_recompute": 0}
    a = g[-1].copy() if m > 1 else np.zeros_like(g[0])  # g[0] is added at the end
    a_theta = [np.zeros_like(p.data) for p in params]
    t_grads = np.zeros(m) if t_grad else None
    if t_grad and m > 1:
        t_grads[-1] = np.vdot(g[-1], f_arrays(t_data[-1], ys[-1]))
        back["nfe"] += 1
    for i in range(m - 1, 0, -1):
        if s.checkpoint:
            _, a_new, th_new = bp.interval(t_data[i], t_data[i - 1], a, a_theta, dense=sol.interpolate)
        else:
            try:
                y_rec, a_new, th_new = bp.interval(t_data[i], t_data[i - 1], a, a_theta, y_hi=ys[i])
                value = drift(y_rec.ravel(), ys[i - 1].ravel(), s.fwd_rtol, s.fwd_atol)
            except SolverError:
                if s.on_drift != "recompute" or not s.adaptive:
                    raise
                value = float("inf")
            back["drift"][i - 1] = value
            if s.adaptive and judge(s.on_drift, value, s.drift_tol, i - 1, t_data[i - 1], t_data[i]):
                # checkpoint mode on this interval alone, from a forward re-solve of it
                nfe_before = bp.nfe
                piece = _solve(f_arrays, ys[i - 1], t_data[i - 1: i + 1], dense_output=True, **s.forward)
                _, a_new, th_new = bp.interval(t_data[i], t_data[i - 1], a, a_theta, dense=piece.interpolate)
                back["recomputed"] += 1
                back["nfe_recompute"] += piece.stats["nfe"] + bp.nfe - nfe_before
                back["nfe"] += piece.stats["nfe"]
        a, a_theta = a_new, th_new
        if t_grad and i - 1 >= 1:
            t_grads[i - 1] = np.vdot(g[i - 1], f_arrays(t_data[i - 1], ys[i - 1]))
            back["nfe"] += 1
        if i - 1 >= 1:
            a += g[i - 1]
    if t_grad and m > 1:  # dL/dt_0 = -a(t_0+) . f(t_0, y_0), before adding dL/dy(t_0)
        t_grads[0] = -np.vdot(a, f_arrays(t_data[0], ys[0]))
        back["nfe"] += 1
    a = a + g[0]
    back["nfe"] += bp.nfe
    back["n_steps"] = bp.n_steps
    if s.stats is not None:
        s.stats["backward"] = back
    return [a] + ([t_grads] if t_grad else []) + list(a_theta)


def odeint_adjoint(func, y0, t, *, rtol=1e-7, atol=1e-9, method="dopri5", options=None,
                   adjoint_rtol=None, adjoint_atol=None, adjoint_method=None, adjoint_options=None,
                   adjoint_params=None, adjoint_mode="backsolve", stats=None, batch_axis=None, args=None):
    """Solve ``dy/dt = func(t, y)`` and get gradients by the adjoint method.

    Parameters
    ----------
    func : callable ``func(t, y) -> dy/dt``, or ``func(t, y, *args)`` with `args`
        Built from odeflow ops on the Tensor ``y`` (shape of ``y0``), usually an
        :class:`odeflow.nn.Module`; ``t`` is passed as a Python float.
    y0 : Tensor or array_like, any shape
        Initial state; gets ``.grad`` when it requires grad.
    t : Tensor or array_like of float, shape (m,)
        Output times, strictly monotone; a Tensor requiring grad gets the time
        gradients ``dL/dt_i``.
    rtol, atol, method, options
        As for :func:`odeflow.odeint`, for the forward solve.
    adjoint_rtol, adjoint_atol, adjoint_method : optional
        For the backward solve; default to the forward ones.
    adjoint_options : dict, optional
        Solver options of the backward solve, over ``options`` (inherited when
        the method is the same: a fixed step's ``step_size`` included), plus ``"norm"``: ``"rms"`` (default, every
        channel) or ``"seminorm"`` (leave ``a_theta`` out); and the backsolve
        audit (:mod:`odeflow.adjoint.audit`): ``"on_drift"`` in
        ``{"recompute" (default), "warn", "raise", "ignore"}`` and
        ``"drift_tol"`` (default ``DRIFT_TOL`` = 10 forward tolerances). The
        audit acts for adaptive methods; with a fixed-step method the drift is
        only reported.
    adjoint_params : sequence of Tensor, optional
        Parameters to differentiate (other Tensors ``func`` reads are then
        constants). Default: every leaf Tensor requiring grad that any
        forward evaluation of ``func`` was computed from, whenever it was
        first read (a Tensor used only after ``t[0]`` included): exactly the
        Tensors backprop through the solver would reach. Each forward
        evaluation is recorded for that (:mod:`odeflow.adjoint.params`).
    adjoint_mode : {"backsolve", "checkpoint"}
        See the module docstring. ``"backsolve"`` reconstructs ``y``
        backwards and audits the reconstruction (an interval that drifted is
        redone in checkpoint mode by default); ``"checkpoint"`` keeps the
        forward dense output, O(steps x state) memory.
    batch_axis : int, optional
        Per-sample stepping forward and backward (``"backsolve"`` only; see
        :mod:`odeflow.adjoint.batch_adjoint`).
    args : tuple, optional
        Extra arguments: ``func(t, y, *args)`` (scipy's ``solve_ivp`` and
        diffrax's meaning), evaluated exactly as the closure ``lambda t, y:
        func(t, y, *args)`` would be (the same numbers, bit for bit). Tensors
        in `args` requiring grad are parameters like any other: they get
        their gradients in every mode (backsolve, checkpoint, seminorm,
        recorded walks); float ndarrays in `args` are refused as in a closure
        unless ``adjoint_params`` is given.
    stats : dict, optional
        Filled with ``stats["forward"]`` (the forward solve's ``nfe``,
        ``n_steps``...) now, and after ``backward()`` with
        ``stats["backward"]``: ``nfe`` (every evaluation of the backward
        pass: the backward solves, the time gradients and any recomputation),
        ``n_steps``, ``drift`` (backsolve: one float per interval ``[t_k,
        t_{k+1}]``, in units of the forward tolerance; checkpoint: None),
        ``recomputed`` (intervals redone in checkpoint mode) and
        ``nfe_recompute`` (their evaluations). A recorded walk
        (``create_graph=True``) reports ``nfe`` and ``recorded=True``.

    Returns
    -------
    Tensor, shape ``(len(t), *y0.shape)``
        The solution; ``backward()`` through it runs the adjoint solve. Its
        dtype is the state's (``y0``'s), in both modes and as
        :func:`odeflow.odeint`, whatever the parameters' dtype; each gradient
        has the dtype of the Tensor it belongs to.

    Raises
    ------
    InputError, InputTypeError
        Before any work: every input error of :func:`odeflow.odeint`, and bad
        ``adjoint_*`` arguments, ``stats`` or ``args`` (not a tuple), each named; ``"checkpoint"`` with a
        fixed-step method; a Numba-jitted ``func``.
    GradientError
        ``func`` returns an ndarray for a Tensor ``y`` (the graph would be cut),
        or captures float ndarrays that would silently get no gradient (see
        :func:`odeflow.adjoint.params.check_closure`); during ``backward()``:
        ``func`` reads a Tensor requiring grad that no forward evaluation read
        (named by shape and time), or the audit's ``on_drift="raise"``.
    GradientAccuracyWarning
        The audit's ``on_drift="warn"``, naming the interval and the drift.
    SolverError
        From the forward solve, or from a backward solve (same classes, the
        message saying it was the backward solve).

    Notes
    -----
    Higher-order gradients: when the walk is recorded (``backward(create_graph=True)``,
    ``gradients(..., create_graph=True)``, nested :func:`odeflow.grad`), the
    backward pass is recorded too (:mod:`odeflow.adjoint.higher`), in both
    modes, so Hessian-vector products and gradient penalties work.

    References
    ----------
    .. [1] R. T. Q. Chen, Y. Rubanova, J. Bettencourt, D. Duvenaud, "Neural
           Ordinary Differential Equations", NeurIPS 2018, §2, eq. 4-5, App. B.
    .. [2] P. Kidger, R. T. Q. Chen, T. Lyons, "'Hey, that's not an ODE':
           Faster ODE Adjoints via Seminorms", ICML 2021.
    .. [3] J. Zhuang et al., "Adaptive Checkpoint Adjoint Method for Gradient
           Estimation in Neural ODE", ICML 2020; A. Gholami, K. Keutzer, G. Biros,
           "ANODE", IJCAI 2019; T. Daulbaev et al., "Interpolation Technique to
           Speed Up Gradients Propagation in Neural ODEs", NeurIPS 2020.
    """
    if is_jitted(func):
        raise InputTypeError("`func` is a Numba-jitted function, which works on arrays only: the "
                             "adjoint needs func built from odeflow ops (an nn.Module, say)")
    func = with_args(func, args)
    if batch_axis is not None:
        from odeflow.adjoint.batch_adjoint import odeint_adjoint_batch
        return odeint_adjoint_batch(func, y0, t, batch_axis, rtol=rtol, atol=atol, method=method, options=options,
                                    adjoint_rtol=adjoint_rtol, adjoint_atol=adjoint_atol,
                                    adjoint_method=adjoint_method, adjoint_options=adjoint_options,
                                    adjoint_params=adjoint_params, adjoint_mode=adjoint_mode, stats=stats)
    if isinstance(options, dict) and options.get("jump_t") is not None:  # split at the jumps
        from odeflow.adjoint.jumps import odeint_segmented
        return odeint_segmented(
            odeint_adjoint, func, y0, t, options, adjoint=True, stats=stats, rtol=rtol, atol=atol,
            method=method, adjoint_rtol=adjoint_rtol, adjoint_atol=adjoint_atol, adjoint_method=adjoint_method,
            adjoint_options=adjoint_options, adjoint_params=adjoint_params, adjoint_mode=adjoint_mode)
    if adjoint_mode not in ADJOINT_MODES:
        raise InputError(f"`adjoint_mode` must be one of {', '.join(ADJOINT_MODES)}; got {adjoint_mode!r}")
    if stats is not None and not isinstance(stats, dict):
        raise InputTypeError(f"`stats` must be a dict or None; got {type(stats).__name__}")
    y0 = as_tensor(y0)
    t_data, t_grad = time_data(t)
    tab, _, _, fwd_rtol, fwd_atol, opts = prepare(func, y0.data, t_data, rtol, atol, method, options)
    backward_kw, policy, drift_tol = _backward_options(method, opts, adjoint_method, adjoint_options,
                                                       adjoint_rtol, adjoint_atol, rtol, atol, y0)
    checkpoint = adjoint_mode == "checkpoint"
    if checkpoint and tab is not None and not tab.adaptive:  # tab None: radau, which has dense output
        raise InputError(f"`adjoint_mode` 'checkpoint' reads y(t) from the forward dense output, "
                         f"which fixed-step method {method!r} does not have; use 'backsolve', or "
                         f"backprop through the solver (odeflow.odeint with a Tensor y0)")
    strict = adjoint_params is None  # checked before any evaluation
    if strict:
        check_closure(func)
    else:
        params = check_adjoint_params(adjoint_params)
    forward_kw = dict(rtol=rtol, atol=atol, method=method,
                      options=with_engine_jacobian(func, options, method, y0))  # radau: J by the engine
    if not is_grad_enabled():  # under no_grad nothing will be differentiated: values only
        sol = _solve(array_func(func), y0.data, t_data, dense_output=False, **forward_kw)
        if stats is not None:
            stats["forward"] = dict(sol.stats)
        return Tensor(sol.y)
    # forward: values only, no graph kept (O(1) memory for backsolve); each
    # evaluation is recorded just long enough to see which parameters it read
    recorder = Recorder(func)
    sol = _solve(recorder, y0.data, t_data, dense_output=checkpoint, **forward_kw)
    if recorder.n_evals == 0:  # no distinct second time: one look at func(t0, y0) finds its
        recorder(float(sol.t[0]), y0.data)  # parameters, whose gradients are then zero (not None)
    if strict:
        params = recorder.params
    steady = recorder.steady(params)
    if stats is not None:
        stats["forward"] = dict(sol.stats)
    settings = _Settings(
        forward=forward_kw, fwd_rtol=fwd_rtol, fwd_atol=fwd_atol,
        adaptive=tab is None or tab.adaptive,  # tab None: radau, adaptive
        checkpoint=checkpoint, on_drift=policy, drift_tol=drift_tol, stats=stats,
        make_pass=lambda ps: BackwardPass(func, ps, strict, y0.shape, sol.y.dtype, steady=steady,
                                          **backward_kw))

    def backward(g):
        if is_grad_enabled():  # a recorded walk: gradients that can be differentiated again
            counter = {"nfe": 0}
            grads = recorded_backward(func, node_ref(), g, t, t_grad, params, strict, forward_kw, counter)
            if stats is not None:
                stats["backward"] = {"nfe": counter["nfe"], "recorded": True}
            return grads
        return _first_order(func, params, strict, sol, np.asarray(g.data, dtype=sol.y.dtype), t_grad,
                            settings)

    parents = [y0] + ([t] if t_grad else []) + params
    node = make_node(sol.y, parents, backward)
    node_ref = weakref.ref(node)  # not the node itself: no reference cycle through the closure
    return node
