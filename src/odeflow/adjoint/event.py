"""Differentiable event times: :func:`odeint_event` (torchdiffeq's name and meaning).

The event time ``t*`` is defined implicitly by ``g(t*, y(t*; theta), phi) = 0``
where ``y(t; theta)`` solves the ODE from ``(t0, y0)`` with parameters
``theta`` of ``func`` and ``phi`` are the parameters of the event function.
Differentiating that identity (implicit function theorem)::

    0 = dg/dtheta = g_t dt*/dtheta + g_y . (dy/dtheta|_t* + f(t*, y*) dt*/dtheta) + g_phi

so, with ``D = g_t + g_y . f(t*, y*)`` (the rate of change of ``g`` along the
solution at the event)::

    dt*/dtheta = -(g_y . dy(t*)/dtheta) / D          dt*/dphi = -g_phi / D

and the same with ``y0`` or ``t0`` in place of ``theta``; ``dy(t*)/dtheta`` is
the ordinary sensitivity at the *fixed* time ``t*``. The state at the event
depends on ``theta`` directly and through ``t*``: ``dy*/dtheta = dy(t*)/dtheta
+ f(t*, y*) dt*/dtheta``. (Derivation in docs/events.md; Chen, Amos & Nickel
2021, "Learning Neural Event Functions for Ordinary Differential Equations",
ICLR, §3.)

How it is computed: the event is located by :func:`odeflow.solve` with a
terminal event (values only); then ``y(t*)`` is recomputed as a differentiable
solve from ``t0`` to the fixed ``t*`` (backprop through the solver, or the
adjoint method), and two value-preserving terms route the gradients::

    t_event = t* + IFT(g(t*, y(t*), phi))        IFT's VJP:  G -> -G / D
    y_event = y(t*) + (t_event - t*) f(t*, y*)

Both added terms are zero in value. ``D`` is held constant, so only the
first derivatives are exact (second derivatives miss the curvature terms).
"""
from __future__ import annotations

import math

import numpy as np

from odeflow.adjoint.adjoint import odeint_adjoint
from odeflow.adjoint.common import array_func, as_tensor, time_data, with_args
from odeflow.adjoint.discretize import odeint_backprop
from odeflow.adjoint.params import find_params
from odeflow.autodiff import ops
from odeflow.autodiff.backprop import gradients
from odeflow.autodiff.tensor import Tensor, enable_grad, is_grad_enabled, no_grad
from odeflow.errors import GradientError, InputError, InputTypeError, SolverError
from odeflow.solvers.integrate import solve
from odeflow.solvers.jit import is_jitted

__all__ = ["odeint_event"]

_UNBOUNDED = 1e300   # "no t_max": the solve runs until the event or options['max_steps']
_GRAZING = math.sqrt(np.finfo(np.float64).eps)


def _event_value(event_fn, t, y):
    """``event_fn(t, y)`` as a float, without recording (the search)."""
    with no_grad():
        out = event_fn(Tensor(np.float64(t)), Tensor(y))
    return float(out.data if isinstance(out, Tensor) else out)


def odeint_event(func, y0, t0, event_fn, *, t_max=None, rtol=1e-7, atol=1e-9, method="dopri5",
                 options=None, adjoint=False, adjoint_kwargs=None, event_params=None, args=None):
    """Solve from ``(t0, y0)`` until ``event_fn(t, y)`` reaches zero; differentiable.

    Parameters
    ----------
    func : callable ``func(t, y) -> dy/dt``
        Built from odeflow ops on the Tensor ``y`` (as for :func:`odeflow.odeint`).
    y0 : Tensor or array_like, any shape
    t0 : float or 0-d Tensor
        Initial time; a Tensor requiring grad gets ``dL/dt0``.
    event_fn : callable ``event_fn(t, y) -> scalar``
        ``t`` is a 0-d float64 Tensor and ``y`` a Tensor of ``y0``'s shape;
        use odeflow ops on both (a dependence on ``t`` through ``float(t)``
        would be missed by the gradient). Its parameters (leaf Tensors
        requiring grad that it uses) are found automatically, like ``func``'s.
        An attribute ``direction`` (+1, -1, 0) selects crossings as in
        :func:`odeflow.solve`; the first one ends the solve. A zero at ``t0``
        is not an event.
    t_max : float, optional
        Give up (SolverError) if no event happens before ``t_max`` (after
        ``t0``; before it with ``t_max < t0``, integrating backwards). Default:
        forwards without bound, limited by ``options['max_steps']``.
    rtol, atol, method, options
        As for :func:`odeflow.solve`.
    adjoint : bool, default False
        False: backpropagate through the solver (:func:`odeflow.odeint_backprop`);
        True: the adjoint method (:func:`odeflow.odeint_adjoint`, with
        ``adjoint_kwargs`` such as ``adjoint_mode="checkpoint"``).

    args : tuple, optional
        Extra arguments of both ``func(t, y, *args)`` and ``event_fn(t, y,
        *args)`` (scipy's ``solve_ivp`` meaning), evaluated exactly as the
        closure forms would be; Tensors in it get their gradients (by
        backprop, or by the adjoint with ``adjoint=True``).
    event_params : sequence of Tensor, optional
        Silences the check below (possibly empty): the Tensors ``event_fn``
        is differentiated for are in any case all those it uses.

    Returns
    -------
    (t_event, y_event) : (Tensor of shape (), Tensor of y0's shape)
        Both differentiable w.r.t. ``y0``, ``t0`` and the parameters of
        ``func`` and ``event_fn`` (first order; see the module docstring).

    Raises
    ------
    InputError, InputTypeError
        Bad arguments, before any work (as :func:`odeflow.solve`; ``event_fn``
        not callable; a jitted ``func``; ``args`` not a tuple); ``event_fn`` faults, named.
    SolverError
        No event before ``t_max``, or the solve failed
        (:class:`~odeflow.errors.MaxStepsExceededError` without ``t_max``).
    GradientError
        ``event_fn`` captures a float ndarray in its closure (it could never
        get a gradient; make it a Tensor, or pass ``event_params``), as for
        ``func`` (:func:`odeflow.adjoint.params.find_params`). In
        ``backward()``: a grazing event (``D = dg/dt`` along the solution
        vanishes, relative to the mean slope ``|g(t0)| / |t* - t0|``, below
        ``sqrt(eps)``), where the event time is not differentiable.

    References
    ----------
    .. [1] R. T. Q. Chen, B. Amos, M. Nickel, "Learning Neural Event Functions
           for Ordinary Differential Equations", ICLR 2021 (torchdiffeq's
           ``odeint_event``).
    """
    if is_jitted(func):
        raise InputTypeError("`func` is a Numba-jitted function, which works on arrays only: "
                             "odeint_event needs func built from odeflow ops (an nn.Module, say)")
    if not callable(event_fn):
        raise InputTypeError(f"`event_fn` must be callable as event_fn(t, y); got {type(event_fn).__name__}")
    user_event_fn, event_fn = event_fn, with_args(event_fn, args, name="event_fn")
    bound_func = with_args(func, args)
    if event_params is not None:
        find_params(event_fn, None, event_params)      # checks the Tensors only
    else:
        try:
            find_params(event_fn, (None, None))        # the closure check, before any work
        except GradientError as exc:
            raise GradientError(str(exc).replace("`func` captures", "`event_fn` captures").replace(
                "adjoint_params=[...]", "event_params=[...]")) from None
    if adjoint_kwargs is not None and not isinstance(adjoint_kwargs, dict):
        raise InputTypeError(f"`adjoint_kwargs` must be a dict or None; got {type(adjoint_kwargs).__name__}")
    clash = sorted(set(adjoint_kwargs or {}) & {"rtol", "atol", "method", "options", "args"})
    if clash:
        raise InputError(f"`adjoint_kwargs` must not repeat odeint_event's own arguments {clash}: pass "
                         f"them to odeint_event (the backward solve's are adjoint_rtol, adjoint_atol, "
                         f"adjoint_method, adjoint_options)")
    y0 = as_tensor(y0)
    t0_data, t0_grad = time_data(t0)
    try:
        t0_data = np.asarray(t0_data, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputTypeError(f"`t0` must be a real scalar time; got {t0!r}") from None
    if t0_data.ndim != 0 or not np.isfinite(t0_data):
        raise InputError(f"`t0` must be a finite scalar time; got {t0_data!r}")
    t0_value = float(t0_data)
    if t_max is None:
        t_end = t0_value + _UNBOUNDED
    else:
        try:
            t_end = float(t_max)
        except (TypeError, ValueError):
            raise InputTypeError(f"`t_max` must be a real scalar time or None; got {t_max!r}") from None
        if not math.isfinite(t_end) or t_end == t0_value:
            raise InputError(f"`t_max` must be finite and differ from t0 = {t0_value!r}; got {t_max!r}")
    direction = getattr(user_event_fn, "direction", 0)

    def g_search(t, y):
        return _event_value(event_fn, t, y)
    g_search.terminal = True
    g_search.direction = direction
    g_search.__name__ = getattr(user_event_fn, "__name__", "event_fn")

    f_arrays = array_func(bound_func)
    sol = solve(f_arrays, y0.data, [t0_value, t_end], rtol=rtol, atol=atol, method=method,
                options=options, dense_output=False, events=g_search)
    if sol.status != "event":
        raise SolverError(f"odeint_event: no event of {g_search.__name__} between t0 = {t0_value!r} "
                          f"and t_max = {t_end!r}", t=t_end, h=0.0, solution=sol)
    t_star = float(sol.t_events[0][0])
    g_start = _event_value(event_fn, t0_value, y0.data)

    # y(t*) at the fixed time t*, differentiable w.r.t. y0, t0 and func's parameters
    t_pair = (ops.stack([ops.reshape(t0, ()), Tensor(np.float64(t_star))]) if t0_grad
              else np.array([t0_value, t_star]))
    if adjoint:
        y_path = odeint_adjoint(func, y0, t_pair, rtol=rtol, atol=atol, method=method, options=options,
                                args=args, **(adjoint_kwargs or {}))
    else:
        y_path = odeint_backprop(bound_func, y0, t_pair, rtol=rtol, atol=atol, method=method,
                                 options=options)
    y_star = y_path[-1]

    # the partial derivatives of g at the event (values) and D
    with enable_grad():
        t_leaf = Tensor(np.float64(t_star), requires_grad=True)
        y_leaf = Tensor(y_star.data, requires_grad=True)
        probe = event_fn(t_leaf, y_leaf)
    g_t = g_y = None
    if isinstance(probe, Tensor) and probe.requires_grad:
        g_t, g_y = gradients(probe, [t_leaf, y_leaf], allow_unused=True)
    f_star = np.asarray(f_arrays(t_star, y_star.data))
    denom = (0.0 if g_t is None else float(g_t.data)) + (
        0.0 if g_y is None else float(np.vdot(g_y.data, f_star)))
    grazing = abs(denom) * abs(t_star - t0_value) <= _GRAZING * abs(g_start) or denom == 0.0
    name = g_search.__name__

    g_expr = event_fn(Tensor(np.float64(t_star)), y_star)   # differentiable w.r.t. y_star and phi
    if not isinstance(g_expr, Tensor):
        g_expr = Tensor(np.float64(g_expr))

    def ift_vjp(g):
        if is_grad_enabled():  # a create_graph walk: D and f(t*) are constants here, so the
            # gradient's own derivative would silently miss the curvature of t*
            raise GradientError(
                f"odeint_event: second-order gradients through the event time of {name} are not "
                f"available (the implicit-function formula is differentiated to first order only); "
                f"take this gradient without create_graph=True")
        if grazing:
            raise GradientError(
                f"odeint_event: the event of {name} at t = {t_star!r} is grazing: dg/dt along the "
                f"solution is {denom!r}, so the event time does not depend smoothly on the inputs "
                f"and has no gradient")
        return [g * (-1.0 / denom)]

    shift = ops.make_node(np.zeros(()), [ops.reshape(g_expr, ())], ift_vjp)
    t_event = shift + t_star
    y_event = y_star + ops.astype(shift, y_star.dtype) * f_star.astype(y_star.dtype)
    return t_event, y_event
