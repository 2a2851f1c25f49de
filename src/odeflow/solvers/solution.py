"""The result of :func:`odeflow.solve`: outputs, statistics and the dense interpolant."""
from __future__ import annotations

import numpy as np

from odeflow.errors import InputError
from odeflow.solvers.kernels import dense_eval

__all__ = ["Solution"]


class Solution:
    """An ODE solution at the requested times, with statistics and interpolation.

    Attributes
    ----------
    t : ndarray, float64, shape (m,)
        Output times actually reached (all of the requested ones on success).
    y : ndarray, shape (m, *y0.shape), dtype of the state
        ``y[i]`` is the solution at ``t[i]``.
    stats : dict
        ``nfe`` (evaluations of ``func``), ``n_steps`` (attempted steps),
        ``n_accepted``, ``n_rejected``; ``compile_seconds`` when a jitted
        ``func`` made odeflow compile its whole-solve loop in this call.
    status : str
        ``"success"``, ``"event"`` (a terminal event stopped the solve: the
        outputs end at the last requested time before it), ``"step_size_underflow"``,
        ``"max_steps_exceeded"`` or ``"nonfinite_derivative"``.
    message : str
        Human-readable account of ``status`` (names the terminal event).
    t_events : list of ndarray, float64, shape (count_k,), or None
        With ``events=``: the times of each event function's events, in order
        (scipy's ``solve_ivp`` layout); None without events.
    y_events : list of ndarray, shape (count_k, *y0.shape), or None
        The states at those times (from the step's interpolant).
    """

    def __init__(self, t, y, stats, status, message, *, method, t_span, record=None, events=None):
        self.t = t
        self.y = y
        self.stats = stats
        self.status = status
        self.message = message
        self.method = method
        self._t_span = t_span      # (t0, t_reached)
        self._record = record      # step record for interpolate (None: dense_output=False)
        self.t_events, self.y_events = events if events is not None else (None, None)

    @property
    def success(self) -> bool:
        """True on reaching the end or stopping at a terminal event (scipy's ``status >= 0``)."""
        return self.status in ("success", "event")

    def _steps_record(self):
        if self._record is None:
            raise InputError("this Solution was computed with dense_output=False: solve again with "
                             "dense_output=True for interpolate(), t_steps and y_steps")
        return self._record

    @property
    def t_steps(self):
        """Times of the step boundaries actually taken (accepted steps), shape (k+1,)."""
        kind, *data = self._steps_record()
        if kind == "dense":
            return np.append(data[0], self._t_span[1])  # step starts, then where the last ended
        return data[0].copy()

    @property
    def y_steps(self):
        """States at :attr:`t_steps`, shape ``(k+1, *y0.shape)`` (like scipy's
        ``solve_ivp`` without ``t_eval``)."""
        kind, *data = self._steps_record()
        shape = self.y.shape[1:]
        if kind == "dense":
            rec_y, y_end = data[2], data[4]
            return np.concatenate([rec_y, y_end.reshape(1, -1)]).reshape((-1,) + shape)
        return data[1].reshape((-1,) + shape)

    def __repr__(self):
        return (f"Solution(method={self.method!r}, status={self.status!r}, t.shape={self.t.shape}, "
                f"y.shape={self.y.shape}, stats={self.stats})")

    def interpolate(self, t_new):
        """Evaluate the dense interpolant at ``t_new``.

        Adaptive methods use their continuous extension (4th order for
        ``dopri5``, 3rd for ``bosh3``; HNW §II.6); fixed-step methods
        interpolate linearly between their nodes (2nd order).

        Parameters
        ----------
        t_new : float or array_like of float, shape (k,)
            Times inside the integrated interval, in the units of ``t``.

        Returns
        -------
        ndarray, shape ``y0.shape`` for a scalar ``t_new``, else ``(k, *y0.shape)``.

        Raises
        ------
        InputError
            If a time lies outside the integrated interval or is not finite.
        """
        tq = np.asarray(t_new, dtype=np.float64)
        scalar = tq.ndim == 0
        tq = np.atleast_1d(tq).reshape(-1)
        lo, hi = sorted(float(x) for x in self._t_span)
        bad = ~np.isfinite(tq) | (tq < lo) | (tq > hi)
        if bad.any():
            i = int(np.argmax(bad))
            raise InputError(f"`t_new` must lie in the integrated interval [{lo!r}, {hi!r}]; "
                             f"t_new[{i}] = {float(tq[i])!r}")
        shape = self.y.shape[1:]
        n = int(np.prod(shape))
        out = np.empty((tq.size, n), self.y.dtype)
        kind, *data = self._steps_record()
        if kind == "dense":
            rec_t, rec_h, rec_y, rec_Q, _ = data
            if rec_t.size == 0:  # nothing integrated
                out[:] = self.y[0].reshape(n)
            else:
                # step k covers [rec_t[k], rec_t[k] + rec_h[k]] in the direction of time
                direction = 1.0 if rec_h[0] > 0 else -1.0
                k = np.searchsorted(direction * rec_t, direction * tq, side="right") - 1
                k = np.clip(k, 0, rec_t.size - 1)
                eye = np.eye(rec_Q.shape[2])  # Q already holds K.T @ P: evaluate with P = I
                for i in range(tq.size):
                    kk = k[i]
                    theta = (tq[i] - rec_t[kk]) / rec_h[kk]
                    dense_eval(rec_y[kk], rec_h[kk], rec_Q[kk].T, eye, theta, out[i])
        else:
            nodes, values = data
            order = np.argsort(nodes)
            for col in range(n):
                out[:, col] = np.interp(tq, nodes[order], values[order, col])
        out = out.reshape((tq.size,) + shape)
        return out[0] if scalar else out
