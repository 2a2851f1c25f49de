"""Gradients through ODE solutions: the adjoint method and backpropagation through the solver.

This is the only package that knows both the solver (arrays) and the autodiff
engine (Tensors):

* :func:`odeint` -- the public entry point: arrays in, arrays out (the plain
  solver); a Tensor ``y0`` or ``t`` makes it differentiable by backpropagating
  through the solver's operations (:mod:`~odeflow.adjoint.discretize`).
* :func:`odeint_adjoint` -- gradients by the adjoint ODE in O(1) memory
  (:mod:`~odeflow.adjoint.adjoint`).
* :func:`odeint_event` -- solve until an event; the event time and state,
  differentiable by the implicit function theorem (:mod:`~odeflow.adjoint.event`).
"""
from __future__ import annotations

import numpy as np

from odeflow.adjoint.adjoint import ADJOINT_MODES, odeint_adjoint
from odeflow.adjoint.discretize import odeint_backprop
from odeflow.adjoint.event import odeint_event
from odeflow.autodiff.tensor import Tensor
from odeflow.errors import InputError
from odeflow.solvers.integrate import odeint as _odeint_arrays
from odeflow.solvers.integrate import check_args, refuse_events

__all__ = ["odeint", "odeint_adjoint", "odeint_backprop", "odeint_event", "ADJOINT_MODES"]


def _args(args):
    check_args(args)
    return args


def _bind(func, args):
    """``func`` with ``args`` bound, for the Tensor paths (which call ``func(t, y)``)."""
    if not args:
        return func

    def bound(t, y):
        return func(t, y, *args)
    return bound


def odeint(func, y0, t, *, rtol=1e-7, atol=1e-9, method="dopri5", options=None, batch_axis=None,
           events=None, args=(), inplace=False):
    """Solve ``dy/dt = func(t, y, *args)``; differentiable when ``y0`` or ``t`` is a Tensor.

    With arrays: :func:`odeflow.solvers.integrate.odeint` (returns an ndarray).
    With a Tensor ``y0`` or ``t``: :func:`~odeflow.adjoint.discretize.odeint_backprop`
    (returns a Tensor; gradients reach ``y0``, ``t`` and the parameters ``func``
    uses, exactly those of the computed solution; memory grows with the steps).
    Arguments, defaults and errors as :func:`odeflow.solve`; ``batch_axis``: per-sample
    stepping (:mod:`odeflow.solvers.batch`; on Tensors :mod:`~odeflow.adjoint.batch_backprop`).
    ``events`` is refused with an InputError pointing to :func:`odeflow.solve` and
    :func:`odeflow.odeint_event` (odeint cannot report events). ``args``: extra arguments,
    ``func(t, y, *args)`` (Tensors among them get gradients like any parameter ``func``
    uses); ``inplace``: ``func(t, y, dydt, *args)`` writes into ``dydt`` (arrays only).
    """
    refuse_events(events)
    tensors_in_args = any(isinstance(a, Tensor) for a in _args(args))
    if not (isinstance(y0, Tensor) or isinstance(t, Tensor) or tensors_in_args):
        return _odeint_arrays(func, y0, t, rtol=rtol, atol=atol, method=method, options=options,
                              batch_axis=batch_axis, args=args, inplace=inplace)
    if inplace:
        raise InputError("`inplace=True` needs ndarrays: a Tensor solve records every operation, so "
                         "func must return dy/dt (func(t, y, *args))")
    func = _bind(func, args)
    if not isinstance(y0, Tensor) and not isinstance(t, Tensor):  # Tensors only in args
        arr = np.asarray(y0)
        y0 = Tensor(arr if arr.dtype in (np.float32, np.float64) else arr.astype(np.float64))
    if batch_axis is not None:
        from odeflow.adjoint.batch_backprop import odeint_batch_backprop
        return odeint_batch_backprop(func, y0, t, batch_axis, rtol=rtol, atol=atol, method=method,
                                     options=options)
    return odeint_backprop(func, y0, t, rtol=rtol, atol=atol, method=method, options=options)
