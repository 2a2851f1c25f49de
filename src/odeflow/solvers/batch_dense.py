"""Dense output of a per-sample solve: each sample's own steps, interpolated at each sample's own time.

A per-sample solve (:mod:`odeflow.solvers.batch`) accepts steps of different
sizes at different times for each sample. When asked (``integrate(...,
dense=BatchDense(...))``), it hands every accepted step to :meth:`BatchDense.add`:
the samples, their step start times ``t``, signed sizes ``h``, start states and
stages ``K``. :meth:`BatchDense.__call__` then evaluates the continuous
extension of the tableau (HNW §II.6; the same ``P`` and kernel as the
unbatched solve's dense output) of sample ``rows[r]`` at ``times[r]``, each
sample in its own step: what the ``"checkpoint"`` mode of the per-sample
adjoint (:mod:`odeflow.adjoint.batch_adjoint`) reads ``y(t)`` from.

References
----------
.. [1] E. Hairer, S. P. Nørsett, G. Wanner, "Solving Ordinary Differential
   Equations I", 2nd ed., Springer 1993, §II.6 (dense output).
"""
from __future__ import annotations

import numpy as np

from odeflow.solvers.jit import kernel
from odeflow.solvers.kernels import dense_eval

__all__ = ["BatchDense"]


@kernel
def _interpolate(rows, times, offsets, t0s, hs, Y0s, Ks, P, y_start, out):
    """``out[r]`` = sample ``rows[r]``'s continuous extension at ``times[r]`` (module docstring)."""
    for r in range(rows.shape[0]):
        b = rows[r]
        lo, hi = offsets[b], offsets[b + 1]
        if hi == lo:  # a sample that took no step (zero span): its start state
            for i in range(out.shape[1]):
                out[r, i] = y_start[b, i]
            continue
        d = 1.0 if hs[lo] > 0.0 else -1.0
        x = d * times[r]
        a, z = lo, hi - 1  # the last step starting at or before the time (clipped to the steps)
        while a < z:
            mid = (a + z + 1) // 2
            if d * t0s[mid] <= x:
                a = mid
            else:
                z = mid - 1
        dense_eval(Y0s[a], hs[a], Ks[a], P, (times[r] - t0s[a]) / hs[a], out[r])


class BatchDense:
    """The accepted steps of a per-sample solve, per sample, for interpolation.

    Parameters
    ----------
    y_start : ndarray, shape (batch, n)
        Every sample's start state (batch layout), returned for a sample that
        took no step.
    P : ndarray, shape (s, p)
        The tableau's dense-output coefficients (``Tableau.P_arr``).
    """

    def __init__(self, y_start, P):
        self.y_start = np.ascontiguousarray(y_start)
        self.P = P
        self._parts = []
        self._arrays = None

    def add(self, rows, t, h, Y, K):
        """Record accepted steps: samples ``rows`` (k,), start times ``t`` (k,), signed sizes ``h``
        (k,), start states ``Y`` (k, n) and stages ``K`` (k, s, n) (copied by the caller)."""
        if rows.size:
            self._parts.append((rows, t, h, Y, K))
            self._arrays = None

    def _build(self):
        B, n = self.y_start.shape
        if not self._parts:
            s = self.P.shape[0]
            return (np.zeros(B + 1, np.int64), np.zeros(0), np.ones(0), np.zeros((0, n)),
                    np.zeros((0, s, n)))
        rows = np.concatenate([p[0] for p in self._parts])
        order = np.argsort(rows, kind="stable")  # per sample, its steps stay in time order
        offsets = np.zeros(B + 1, np.int64)
        offsets[1:] = np.cumsum(np.bincount(rows, minlength=B))
        cat = [np.concatenate([p[k] for p in self._parts])[order] for k in (1, 2, 3, 4)]
        return (offsets, *[np.ascontiguousarray(c) for c in cat])

    def __call__(self, rows, times):
        """States ``(k, n)`` of samples ``rows`` (int, (k,)) at ``times`` (float or (k,))."""
        if self._arrays is None:
            self._arrays = self._build()
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        times = np.ascontiguousarray(np.broadcast_to(np.asarray(times, dtype=np.float64), rows.shape))
        out = np.empty((rows.size, self.y_start.shape[1]), self.y_start.dtype)
        _interpolate(rows, times, *self._arrays, self.P, self.y_start, out)
        return out
