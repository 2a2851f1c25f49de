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
    output. **The gradient is approximate** beyond the tolerances when the
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

``adjoint_options={"norm": "seminorm"}`` leaves the ``a_theta`` channels out of
the backward step-size control (Kidger, Chen & Lyons 2021, "Hey, that's not an
ODE"): they never feed back into the dynamics, so their error need not limit
the step; typically fewer backward evaluations for the same gradient accuracy.
"""
from __future__ import annotations

import numpy as np

from odeflow.adjoint.common import array_func, as_tensor, time_data
from odeflow.adjoint.params import find_params
from odeflow.autodiff.backprop import gradients
from odeflow.autodiff.ops import make_node
from odeflow.autodiff.tensor import Tensor, enable_grad, is_grad_enabled
from odeflow.errors import GradientError, InputError, InputTypeError, SolverError
from odeflow.solvers.integrate import METHODS, method_kind, prepare
from odeflow.solvers.integrate import solve as _solve
from odeflow.solvers.jit import is_jitted
from odeflow.solvers.validate import as_tolerance, check_options

__all__ = ["odeint_adjoint", "ADJOINT_MODES"]

ADJOINT_MODES = ("backsolve", "checkpoint")


def _vjp(func, t, y, a, params):
    """``f(t, y)`` and the vector-Jacobian products ``-a^T df/dy``, ``-a^T df/dtheta``."""
    with enable_grad():
        y_t = Tensor(y, requires_grad=True)
        f = func(t, y_t)
        if not isinstance(f, Tensor) or not f.requires_grad:
            # f does not depend on y nor on any parameter: both products vanish
            f_data = f.data if isinstance(f, Tensor) else np.asarray(f)
            return f_data, np.zeros_like(y), [np.zeros_like(p.data) for p in params]
        grads = gradients(f, [y_t] + params, grad_outputs=-a, allow_unused=True)
    g_y = np.zeros_like(y) if grads[0] is None else grads[0].data
    g_p = [np.zeros_like(p.data) if g is None else g.data for p, g in zip(params, grads[1:])]
    return f.data, g_y, g_p


class _Layout:
    """Packing of the augmented state into one flat array.

    Layout (backsolve)   ``z = [ y (n) | a (n) | a_theta (p_1) ... (p_k) ]``
    Layout (checkpoint)  ``z = [ a (n) | a_theta (p_1) ... (p_k) ]``
    """

    def __init__(self, shape, params, with_y):
        self.shape = shape
        self.n = int(np.prod(shape))
        self.sizes = [p.data.size for p in params]
        self.shapes = [p.data.shape for p in params]
        self.with_y = with_y
        self.offset = self.n if with_y else 0   # start of a
        self.total = self.offset + self.n + sum(self.sizes)

    def pack(self, y, a, a_theta):
        parts = ([y.ravel()] if self.with_y else []) + [a.ravel()] + [g.ravel() for g in a_theta]
        return np.concatenate(parts)

    def unpack(self, z):
        y = z[: self.n].reshape(self.shape) if self.with_y else None
        a = z[self.offset: self.offset + self.n].reshape(self.shape)
        a_theta, start = [], self.offset + self.n
        for size, shape in zip(self.sizes, self.shapes):
            a_theta.append(z[start: start + size].reshape(shape))
            start += size
        return y, a, a_theta


def _tolerances(layout, rtol, atol, seminorm, dtype):
    """Per-channel tolerances of the backward solve, as flat arrays.

    Seminorm: the ``a_theta`` channels get a scale so large that their ratio is
    ~0, and the others a scale shrunk by ``sqrt(n_kept / n_total)`` so the RMS
    over all channels equals the RMS over the kept ones.
    """
    rtol_z = np.full(layout.total, float(np.max(rtol)))
    atol_z = np.full(layout.total, float(np.max(atol)))
    if np.ndim(rtol) or np.ndim(atol):  # per-component tolerances apply to y and a alike
        r = np.broadcast_to(rtol, layout.shape).ravel()
        a = np.broadcast_to(atol, layout.shape).ravel()
        for start in ((0, layout.n) if layout.with_y else (0,)):
            rtol_z[start: start + layout.n] = r
            atol_z[start: start + layout.n] = a
    if seminorm and sum(layout.sizes):
        kept = layout.offset + layout.n
        shrink = np.sqrt(kept / layout.total)
        rtol_z[:kept] *= shrink
        atol_z[:kept] *= shrink
        rtol_z[kept:] = 1.0
        atol_z[kept:] = np.finfo(np.float64).max / 4
    floor = 100 * np.finfo(dtype).eps
    return np.maximum(rtol_z, floor), atol_z


def odeint_adjoint(func, y0, t, *, rtol=1e-7, atol=1e-9, method="dopri5", options=None,
                   adjoint_rtol=None, adjoint_atol=None, adjoint_method=None, adjoint_options=None,
                   adjoint_params=None, adjoint_mode="backsolve", stats=None, batch_axis=None):
    """Solve ``dy/dt = func(t, y)`` and get gradients by the adjoint method.

    Parameters
    ----------
    func : callable ``func(t, y) -> dy/dt``
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
        Solver options of the backward solve (default: ``options`` when the
        method is the same), plus ``"norm"``: ``"rms"`` (default, every
        channel) or ``"seminorm"`` (leave ``a_theta`` out).
    adjoint_params : sequence of Tensor, optional
        Parameters to differentiate. Default: every leaf Tensor requiring grad
        that ``func(t0, y0)`` was computed from, found by one recorded
        evaluation (reported as ``stats["forward"]["nfe_probe"]``).
    adjoint_mode : {"backsolve", "checkpoint"}
        See the module docstring. ``"backsolve"``'s gradients can be
        inaccurate for strongly dissipative dynamics; ``"checkpoint"`` avoids
        that at O(steps x state) memory.
    batch_axis : int, optional
        Per-sample stepping forward and backward (``"backsolve"`` only; see
        :mod:`odeflow.adjoint.batch_adjoint`).
    stats : dict, optional
        Filled with ``stats["forward"]`` (the forward solve's ``nfe``,
        ``n_steps``...) now, and ``stats["backward"]`` (``nfe`` summed over the
        backward solves plus the evaluations for time gradients) after
        ``backward()``.

    Returns
    -------
    Tensor, shape ``(len(t), *y0.shape)``
        The solution; ``backward()`` through it runs the adjoint solve.

    Raises
    ------
    InputError, InputTypeError
        Before any work: every input error of :func:`odeflow.odeint`, and bad
        ``adjoint_*`` arguments or ``stats``, each named; ``"checkpoint"`` with a
        fixed-step method; a Numba-jitted ``func``.
    GradientError
        ``func`` returns an ndarray for a Tensor ``y`` (the graph would be cut),
        or captures float ndarrays that would silently get no gradient (see
        :func:`odeflow.adjoint.params.find_params`).
    SolverError
        From the forward solve, or from a backward solve (same classes, the
        message saying it was the backward solve).

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
    if batch_axis is not None:
        from odeflow.adjoint.batch_adjoint import odeint_adjoint_batch
        return odeint_adjoint_batch(func, y0, t, batch_axis, rtol=rtol, atol=atol, method=method, options=options,
                                    adjoint_rtol=adjoint_rtol, adjoint_atol=adjoint_atol,
                                    adjoint_params=adjoint_params, adjoint_mode=adjoint_mode, stats=stats)
    if is_jitted(func):
        raise InputTypeError("`func` is a Numba-jitted function, which works on arrays only: the "
                             "adjoint needs func built from odeflow ops (an nn.Module, say)")
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
    tab, _, t_checked, _, _, opts = prepare(func, y0.data, t_data, rtol, atol, method, options)
    # the backward solve: checked now, before any work; it inherits the forward
    # method and options unless told otherwise (as torchdiffeq)
    b_method = method if adjoint_method is None else adjoint_method
    if adjoint_options is not None and not isinstance(adjoint_options, dict):
        raise InputTypeError(f"`adjoint_options` must be a dict or None; got {type(adjoint_options).__name__}")
    back_options = dict(adjoint_options) if adjoint_options is not None else (
        dict(opts) if b_method == method else {})
    norm = back_options.pop("norm", "rms")
    if norm not in ("rms", "seminorm"):
        raise InputError(f"`adjoint_options['norm']` must be 'rms' or 'seminorm'; got {norm!r}")
    if not isinstance(b_method, str) or b_method not in METHODS:
        raise InputError(f"`adjoint_method` must be one of {', '.join(METHODS)}; got {b_method!r}")
    back_options = check_options(back_options, method_kind(b_method),
                                 b_method, name="adjoint_options") or None
    b_rtol = rtol if adjoint_rtol is None else adjoint_rtol
    b_atol = atol if adjoint_atol is None else adjoint_atol
    as_tolerance(b_rtol, "adjoint_rtol", y0.shape, y0.dtype)
    as_tolerance(b_atol, "adjoint_atol", y0.shape, y0.dtype)
    checkpoint = adjoint_mode == "checkpoint"
    if checkpoint and tab is not None and not tab.adaptive:  # tab None: radau, which has dense output
        raise InputError(f"`adjoint_mode` 'checkpoint' reads y(t) from the forward dense output, "
                         f"which fixed-step method {method!r} does not have; use 'backsolve', or "
                         f"backprop through the solver (odeflow.odeint with a Tensor y0)")
    if adjoint_params is not None:  # checked before any evaluation
        params = find_params(func, None, adjoint_params)
    if not is_grad_enabled():  # under no_grad nothing will be differentiated: values only
        sol = _solve(array_func(func), y0.data, t_data, rtol=rtol, atol=atol, method=method,
                     options=options, dense_output=False)
        if stats is not None:
            stats["forward"] = dict(sol.stats)
        return Tensor(sol.y)
    # the probe: one recorded evaluation shows which parameters func really uses
    with enable_grad():
        y_probe = Tensor(y0.data, requires_grad=True)
        probe = func(float(t_checked[0]), y_probe)
    if not isinstance(probe, Tensor):
        raise GradientError(
            f"`func` returned a {type(probe).__name__} for a Tensor `y`, so no gradient can flow "
            f"through it: build dy/dt with odeflow ops on `y` (if it truly depends on neither `y` "
            f"nor any parameter, return odeflow.Tensor(...))")
    if adjoint_params is None:
        params = find_params(func, (probe, y_probe))
    f_arrays = array_func(func)
    # forward: values only, no graph (O(1) memory for backsolve)
    sol = _solve(f_arrays, y0.data, t_data, rtol=rtol, atol=atol, method=method, options=options,
                 dense_output=checkpoint)
    if stats is not None:
        stats["forward"] = dict(sol.stats, nfe_probe=1)
    ys = sol.y
    t_data = sol.t
    layout = _Layout(y0.shape, params, with_y=not checkpoint)

    def backward(g):
        g = np.asarray(g.data, dtype=ys.dtype)
        counter = {"nfe": 0}

        def augmented(s, z):
            y, a, _ = layout.unpack(z)
            if checkpoint:
                y = sol.interpolate(s)
            f, g_y, g_p = _vjp(func, s, y, a, params)
            counter["nfe"] += 1
            return layout.pack(f, g_y, g_p) if not checkpoint else layout.pack(None, g_y, g_p)

        if t_data.size == 1:  # y(t0) = y0: identity in y0, independent of t0 and theta
            if stats is not None:
                stats["backward"] = {"nfe": 0, "n_steps": 0}
            return [g[0]] + ([np.zeros(1)] if t_grad else []) + [np.zeros_like(p.data) for p in params]
        rtol_z, atol_z = _tolerances(layout, b_rtol, b_atol, norm == "seminorm", ys.dtype)
        a = g[-1].copy()
        a_theta = [np.zeros_like(p.data) for p in params]
        t_grads = np.zeros(t_data.size) if t_grad else None
        m = t_data.size
        if t_grad:
            t_grads[-1] = np.vdot(g[-1], f_arrays(t_data[-1], ys[-1]))
            counter["nfe"] += 1
        n_steps = 0
        for i in range(m - 1, 0, -1):
            z0 = layout.pack(ys[i], a, a_theta)
            try:
                out = _solve(augmented, z0, [t_data[i], t_data[i - 1]], rtol=rtol_z, atol=atol_z,
                             method=b_method, options=back_options, dense_output=False)
            except SolverError as exc:
                raise type(exc)(f"adjoint backward solve from t = {float(t_data[i])!r} to "
                                f"{float(t_data[i - 1])!r} (set by adjoint_rtol, adjoint_atol, "
                                f"adjoint_method, adjoint_options): {exc}", t=exc.t, h=exc.h,
                                solution=exc.solution) from None
            n_steps += out.stats["n_steps"]
            _, a, a_theta = layout.unpack(out.y[-1])
            a = a.copy()
            if t_grad and i - 1 >= 1:
                t_grads[i - 1] = np.vdot(g[i - 1], f_arrays(t_data[i - 1], ys[i - 1]))
                counter["nfe"] += 1
            if i - 1 >= 1:
                a += g[i - 1]
        if t_grad:  # dL/dt_0 = -a(t_0+) . f(t_0, y_0), before adding dL/dy(t_0)
            t_grads[0] = -np.vdot(a, f_arrays(t_data[0], ys[0]))
            counter["nfe"] += 1
        a = a + g[0]
        if stats is not None:
            stats["backward"] = {"nfe": counter["nfe"], "n_steps": n_steps}
        grads = [a] + ([t_grads] if t_grad else []) + [np.asarray(x) for x in a_theta]
        return grads

    parents = [y0] + ([t] if t_grad else []) + params
    return make_node(ys, parents, backward)
