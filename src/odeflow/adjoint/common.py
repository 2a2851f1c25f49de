"""Glue between Tensor-valued ``func`` and the array solver, shared by both gradient modes."""
from __future__ import annotations

import numpy as np

from odeflow.autodiff.tensor import Tensor, no_grad
from odeflow.errors import InputTypeError

__all__ = ["array_func", "as_tensor", "time_data", "with_args"]


def with_args(func, args, name="func"):
    """``func(t, y, *args)`` as a function of ``(t, y)``; `func` itself when `args` is None.

    scipy's ``solve_ivp(..., args=)`` and diffrax's ``args`` meaning: the
    extra arguments follow the state. The result is a plain closure, so every
    evaluation computes exactly what the closure form ``lambda t, y: func(t,
    y, *args)`` computes (bit for bit), and Tensors in `args` are found as
    parameters like any Tensor ``func`` reads. It keeps `func` as
    ``__wrapped__`` and the tuple as ``bound_args`` so that
    :func:`odeflow.adjoint.params.check_closure` inspects both.

    Raises
    ------
    InputTypeError
        `args` is not a tuple or list (one argument is ``args=(value,)``).
    """
    if args is None:
        return func
    if not isinstance(args, (tuple, list)):
        raise InputTypeError(f"`args` must be a tuple of extra arguments, {name}(t, y, *args); got "
                             f"{type(args).__name__} (for one argument pass args=(value,))")
    args = tuple(args)

    def bound(t, y):
        return func(t, y, *args)
    bound.__wrapped__, bound.bound_args = func, args
    bound.__name__ = getattr(func, "__name__", type(func).__name__)
    return bound


def array_func(func):
    """``func(t, y)`` on Tensors seen as a function on arrays, recording nothing.

    The forward solve of either gradient mode needs only values: under
    :func:`~odeflow.autodiff.tensor.no_grad` the engine's ops cost what NumPy costs.
    """
    def f(t, y):
        with no_grad():
            out = func(t, Tensor(y))
        return out.data if isinstance(out, Tensor) else out
    return f


def as_tensor(y0, name="y0"):
    """``y0`` as a Tensor (ndarrays become constants that do not require grad)."""
    if isinstance(y0, Tensor):
        return y0
    try:
        return Tensor(y0)
    except InputTypeError as exc:
        raise InputTypeError(f"`{name}`: {exc}") from None


def time_data(t):
    """The float64 data of ``t`` (an array or a Tensor) and whether it wants a gradient."""
    if isinstance(t, Tensor):
        return np.asarray(t.data, dtype=np.float64), t.requires_grad
    return t, False
