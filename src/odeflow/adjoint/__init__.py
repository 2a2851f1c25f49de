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

from odeflow.adjoint.adjoint import ADJOINT_MODES, odeint_adjoint
from odeflow.adjoint.discretize import odeint_backprop
from odeflow.adjoint.event import odeint_event
from odeflow.autodiff.tensor import Tensor
from odeflow.solvers.integrate import odeint as _odeint_arrays
from odeflow.solvers.integrate import refuse_events

__all__ = ["odeint", "odeint_adjoint", "odeint_backprop", "odeint_event", "ADJOINT_MODES"]


def odeint(func, y0, t, *, rtol=1e-7, atol=1e-9, method="dopri5", options=None, batch_axis=None,
           events=None):
    """Solve ``dy/dt = func(t, y)``; differentiable when ``y0`` or ``t`` is a Tensor.

    With arrays: :func:`odeflow.solvers.integrate.odeint` (returns an ndarray).
    With a Tensor ``y0`` or ``t``: :func:`~odeflow.adjoint.discretize.odeint_backprop`
    (returns a Tensor; gradients reach ``y0``, ``t`` and the parameters ``func``
    uses, exactly those of the computed solution; memory grows with the steps).
    Arguments, defaults and errors as :func:`odeflow.solve`; ``batch_axis``: per-sample
    stepping (:mod:`odeflow.solvers.batch`; on Tensors :mod:`~odeflow.adjoint.batch_backprop`).
    ``events`` is refused with an InputError pointing to :func:`odeflow.solve` and
    :func:`odeflow.odeint_event` (odeint cannot report events).
    """
    refuse_events(events)
    if batch_axis is not None:
        if isinstance(y0, Tensor) or isinstance(t, Tensor):
            from odeflow.adjoint.batch_backprop import odeint_batch_backprop
            return odeint_batch_backprop(func, y0, t, batch_axis, rtol=rtol, atol=atol, method=method,
                                         options=options)
        return _odeint_arrays(func, y0, t, rtol=rtol, atol=atol, method=method, options=options,
                              batch_axis=batch_axis)
    if isinstance(y0, Tensor) or isinstance(t, Tensor):
        return odeint_backprop(func, y0, t, rtol=rtol, atol=atol, method=method, options=options)
    return _odeint_arrays(func, y0, t, rtol=rtol, atol=atol, method=method, options=options)
