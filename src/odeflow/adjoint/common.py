"""Glue between Tensor-valued ``func`` and the array solver, shared by both gradient modes."""
from __future__ import annotations

import numpy as np

from odeflow.autodiff.tensor import Tensor, no_grad
from odeflow.errors import InputTypeError

__all__ = ["array_func", "as_tensor", "time_data"]


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
