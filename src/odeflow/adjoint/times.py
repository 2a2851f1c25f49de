"""Gradients with respect to the times ``t``, to second order, shared by the gradient modes.

Moving an output time moves the output along the solution; moving ``t_0``
moves the start of the trajectory. Both are terms that are zero in value and
carry the right first *and second* derivatives (Chen et al. 2018, Appendix B,
for the first order; the second order follows from ``y'' = f_t + f_y f``):

output ``i``, ``delta = t_i - t_i.data``::

    y(c + delta) = Y + delta f + delta^2/2 (f_t + f_y f) + O(delta^3)
                 = Y + delta F(delta),   F(delta) = f(c + delta/2, Y + delta/2 f(c, Y))

start, ``delta = t_0 - t_0.data`` (the state at ``c`` of the trajectory that
passes ``y0`` at ``c + delta``, so that solving from it moves ``t_0`` with
``y0`` fixed)::

    y_start = y0 - delta f + delta^2/2 (f_y f - f_t) + O(delta^3)
            = y0 - delta G(delta),   G(delta) = f(c + delta/2, y0 - delta/2 f(c, y0))

(differentiate twice at ``delta = 0``: ``2 F'(0) = f_t + f_y f`` and
``-2 G'(0) = f_y f - f_t``). ``F`` and ``G`` are recorded evaluations of
``func`` with the time given as a 0-d Tensor, so ``f_t`` is exact when ``func``
computes with ``t`` through odeflow ops. A ``func`` that reads ``t`` as a plain
number (``float(t)``, ``math.sin(t)``, ``np.sin(t)``, ``t.item()``) hides
``f_t`` from the engine: the time then reaches ``func`` as a float and the
missing ``delta^2/2 f_t`` is added with ``f_t`` by a central difference in
``t`` (step ``eps^(1/3) max(1, |t|)``, relative error ~1e-10). Third and higher
derivatives with respect to ``t`` are not represented.
"""
from __future__ import annotations

import numpy as np

from odeflow.autodiff import ops
from odeflow.autodiff.tensor import Tensor, _new, no_grad

__all__ = ["moved"]

_FD_STEP = np.finfo(np.float64).eps ** (1.0 / 3.0)


class _Time(Tensor):
    """A 0-d time Tensor that notices being read as a plain number."""

    __slots__ = ("read",)

    def _number(self):
        self.read = True
        return self.data

    def __float__(self):
        return float(self._number())

    def __int__(self):
        return int(self._number())

    def __array__(self, dtype=None, copy=None):
        data = self._number()
        return np.array(data, dtype=dtype) if copy else np.asarray(data, dtype=dtype)

    def item(self):
        return self._number().item()

    def numpy(self):
        return self._number()

    def __format__(self, spec):
        return format(float(self.data), spec)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):  # np.sin(t) and friends
        inputs = [x._number() if isinstance(x, _Time) else x for x in inputs]
        return getattr(ufunc, method)(*inputs, **kwargs)


def _time(node):
    """``node`` (a 0-d float64 Tensor in the graph) as a :class:`_Time` with the same edges."""
    t = _new(_Time)
    t.data, t.grad, t.requires_grad = node.data, None, node.requires_grad
    t._parents, t._vjp, t.read = node._parents, node._vjp, False
    return t


def _values(func, t, y):
    with no_grad():
        out = func(t, Tensor(y))
    return np.asarray(out.data if isinstance(out, Tensor) else out)


def moved(call, func, c, y, delta, sign):
    """``y + sign * delta * f(c + delta/2, y + sign * delta/2 * f(c, y))`` (module docstring).

    Parameters
    ----------
    call : callable ``call(func, t, y) -> Tensor``
        How the gradient mode evaluates ``func`` on Tensors (shape and type checks).
    func : callable ``func(t, y)``
    c : float
        The time's value.
    y : Tensor
        The state at ``c`` (``Y`` for an output, ``y0`` for the start).
    delta : Tensor, 0-d, float64
        ``t_i - t_i.data``: zero in value, carrying the time's gradient.
    sign : {+1, -1}
        +1 for an output time, -1 for the initial time.

    Returns
    -------
    (Tensor, int)
        The moved state (``y``'s shape and dtype, equal to ``y`` in value) and
        the number of evaluations of ``func`` it took (2, or 5 when ``func``
        read the time as a number).
    """
    f_c = _values(func, c, y.data).astype(y.dtype, copy=False)
    d = ops.astype(delta, y.dtype)
    half = ops.astype(delta * 0.5, y.dtype)
    t_half = _time(c + delta * 0.5)
    slope = call(func, t_half, y + sign * half * f_c)
    nfe = 2
    moved_y = y + sign * d * slope
    if t_half.read:  # f_t is invisible to the engine: time as a float, f_t by central difference
        slope = call(func, c, y + sign * half * f_c)
        h = _FD_STEP * max(1.0, abs(c))
        f_t = (_values(func, c + h, y.data) - _values(func, c - h, y.data)) / (2.0 * h)
        moved_y = y + sign * d * slope + sign * (0.5 * d * d) * f_t.astype(y.dtype, copy=False)
        nfe = 5
    return moved_y, nfe
