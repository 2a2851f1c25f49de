"""The Jacobian ``df/dy`` for Radau IIA: a user's ``jac`` checked, or forward differences.

``options={"jac": jac}`` with ``jac(t, y) -> (n, n)`` for the flattened state, checked once
before the solve (:func:`check_jac`) and then at every use (shape, finiteness); without it,
forward differences with RADAU5's increments ``sqrt(eps * max(1e-5, |y_j|))`` (Hairer &
Wanner, *Solving ODEs II*, §IV.8; ``radau5.f``), ``n`` evaluations counted in ``nfe``.
Written in the subset of Python Numba compiles, so it runs inside the compiled Radau loop
(:mod:`odeflow.solvers.radau`) when ``func`` and ``jac`` are ``@njit``.
"""
from __future__ import annotations

import math

import numpy as np

from odeflow.errors import InputError, ShapeError
from odeflow.solvers.kernels import all_finite
from odeflow.solvers.loop import BAD_SIZE

__all__ = ["BAD_JAC", "JAC_NONFINITE", "JacShape", "check_jac", "make_jacobian"]

BAD_JAC = 5        # jac returned the wrong shape (status codes continue loop.py's)
JAC_NONFINITE = 6  # jac returned inf or NaN


def make_jacobian(evaluate, jac, jitted, flat):
    """``jacobian(t, y, f, shape, J) -> (code, n_evaluations)``.

    With ``jac``: ``J[:] = jac(t, y)`` (flat state ``y``), checked for shape
    ``(n, n)`` and finiteness. Without: forward differences on ``evaluate``
    with RADAU5's increments ``delta_j = sqrt(eps * max(1e-5, |y_j|))``
    (``n`` evaluations).
    """
    if jac is not None and not jitted:
        def jacobian(t, y, f, shape, J):
            out = np.asarray(jac(t, y.reshape(shape).copy()), dtype=np.float64)
            if out.shape != J.shape:
                raise JacShape(out.shape)
            if not np.all(np.isfinite(out)):
                return JAC_NONFINITE, 0
            J[:] = out
            return 0, 0
        return jacobian

    def fd_jacobian(t, y, f, shape, J):
        n = y.shape[0]
        yd = y.copy()
        fd = np.empty(n)
        eps = np.finfo(np.float64).eps
        for c in range(n):
            delta = math.sqrt(eps * max(1e-5, abs(y[c])))
            yd[c] = y[c] + delta
            if not evaluate(t, yd, shape, fd):
                return BAD_SIZE, c + 1
            yd[c] = y[c]
            for r in range(n):
                J[r, c] = (fd[r] - f[r]) / delta
        if not all_finite(J.reshape(-1)):
            return JAC_NONFINITE, n
        return 0, n

    def user_jacobian(t, y, f, shape, J):
        out = np.asarray(jac(t, y)) if flat else np.asarray(jac(t, y.reshape(shape)))
        if out.ndim != 2 or out.shape[0] != J.shape[0] or out.shape[1] != J.shape[1]:
            return BAD_JAC, 0
        for r in range(J.shape[0]):
            for c in range(J.shape[1]):
                J[r, c] = out[r, c]
        if not all_finite(J.reshape(-1)):
            return JAC_NONFINITE, 0
        return 0, 0

    impl = fd_jacobian if jac is None else user_jacobian
    if not jitted:
        return impl
    import numba  # only here: `import odeflow` must not import numba

    from odeflow.solvers.jit import OPTIONS
    return numba.njit(inline="always", **OPTIONS)(impl)


class JacShape(Exception):
    """A Python ``jac`` returned the wrong shape (turned into a ShapeError by the caller)."""

    def __init__(self, shape):
        super().__init__(shape)
        self.shape = shape


def check_jac(jac, t0, y0, shape):
    """Evaluate ``jac(t0, y0)`` once before the solve: the Jacobian of the flattened
    state, shape ``(n, n)``, finite. Raises ShapeError / InputError naming ``jac``."""
    n = y0.size
    out = np.asarray(jac(t0, y0.reshape(shape).copy()))
    if out.shape != (n, n):
        raise ShapeError(f"`options['jac']` must return df/dy of the flattened state, shape ({n}, {n}) "
                         f"for `y0` of shape {shape}; jac(t0, y0) returned shape {out.shape}")
    if out.dtype.kind not in "biuf" or not np.all(np.isfinite(out)):
        raise InputError(f"`options['jac']` returned non-finite or non-real values at t = {float(t0)!r} "
                         f"(dtype {out.dtype}); the Jacobian must be finite")
