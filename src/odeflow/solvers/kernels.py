"""Jitted kernels of one Runge–Kutta step: stage sums, error ratio, dense output.

All arrays are flat: a state of any shape is stored as ``y`` of shape ``(n,)``
and the stages as ``K`` of shape ``(s, n)``, ``K[i] = f(t + c_i h, Y_i)``. The
state dtype (float64 or float32) is kept; coefficients and time are float64.
Both drivers (the jitted one and the Python loop) call exactly these functions.
"""
from __future__ import annotations

import math

import numpy as np

from odeflow.solvers.jit import kernel

__all__ = ["combine", "error_ratio", "error_ratio_dop853", "error_shares", "stiffness_estimate",
           "scaled_rms", "dense_eval", "dense_eval_scratch", "dense_coefficients", "all_finite"]


@kernel(inline=True)
def stage_sum(w, K, m, i):
    """``sum_{j<m} w[j] K[j, i]`` in float64, zero weights skipped (so a stage whose
    weight is zero cannot leak an inf into the sum): the sum behind every stage
    state, new solution and error estimate of a step."""
    acc = 0.0
    for j in range(m):
        if w[j] != 0.0:
            acc += w[j] * K[j, i]
    return acc


@kernel(inline=True)
def tolerance_scale(y0, y1, rtol, atol, i):
    """``atol_i + rtol_i * max(|y0_i|, |y1_i|)``: the scale of component ``i`` in the
    error norm (HNW §II.4, eq. 4.10)."""
    return atol[i] + rtol[i] * max(abs(y0[i]), abs(y1[i]))


@kernel(inline=True)
def combine(y, h, K, w, m, out):
    """``out = y + h * sum_{j<m} w[j] K[j]`` (a stage state or the new solution).

    HNW §II.1, eq. (1.8). ``w`` is a row of ``A`` (``m`` = stage index) or ``b``.
    Zero weights are skipped, so a stage whose weight is zero cannot leak an
    inf into the sum. The sum runs over ``j`` in a register for each component.
    """
    n = y.shape[0]
    for i in range(n):
        out[i] = y[i] + h * stage_sum(w, K, m, i)


@kernel(inline=True)
def error_ratio(y0, y1, h, K, b_err, rtol, atol):
    """RMS norm of the embedded error estimate relative to the tolerance.

    ``err_i = h * sum_j b_err[j] K[j, i]``, ``sc_i = atol_i + rtol_i * max(|y0_i|,
    |y1_i|)`` and the ratio is ``sqrt(mean((err / sc)**2))`` (HNW §II.4,
    eq. 4.11). A step is accepted when the ratio is <= 1. Returns NaN when the
    new state or the estimate is not finite, so the caller rejects the step.
    """
    n = y0.shape[0]
    s = K.shape[0]
    acc = 0.0
    for i in range(n):
        e = h * stage_sum(b_err, K, s, i)
        sc = tolerance_scale(y0, y1, rtol, atol, i)
        r = 0.0 if e == 0.0 else e / sc  # atol = 0 at a zero component: nothing to control
        acc += r * r
        if not (math.isfinite(y1[i]) and math.isfinite(e)):
            return np.nan
    return math.sqrt(acc / max(n, 1))


@kernel(inline=True)
def error_ratio_dop853(y0, y1, h, K, e5, e3, rtol, atol):
    """DOP853's error ratio: the 5th- and 3rd-order estimates combined (Hairer's
    ``dop853.f``, HNW I §II.10; scipy's ``DOP853._estimate_error_norm``).

    With ``r5_i = sum_j e5[j] K[j, i] / sc_i`` and ``r3_i`` likewise (``sc`` as in
    :func:`error_ratio`, the estimates not yet multiplied by ``h``)::

        ratio = |h| * sum(r5**2) / sqrt(n * (sum(r5**2) + 0.01 * sum(r3**2)))

    which behaves like ``h**8`` for small ``h`` (the 3rd-order term guards
    against a 5th-order estimate that vanishes by accident). 0 when both sums
    are 0; NaN when the new state or an estimate is not finite.
    """
    n = y0.shape[0]
    s = K.shape[0]
    acc5 = 0.0
    acc3 = 0.0
    for i in range(n):
        a = stage_sum(e5, K, s, i)
        b = stage_sum(e3, K, s, i)
        if not (math.isfinite(y1[i]) and math.isfinite(a) and math.isfinite(b)):
            return np.nan
        sc = tolerance_scale(y0, y1, rtol, atol, i)
        r5 = 0.0 if a == 0.0 else a / sc
        r3 = 0.0 if b == 0.0 else b / sc
        acc5 += r5 * r5
        acc3 += r3 * r3
    if acc5 == 0.0 and acc3 == 0.0:
        return 0.0
    return abs(h) * acc5 / math.sqrt(max(n, 1) * (acc5 + 0.01 * acc3))


@kernel(inline=True)
def error_shares(y0, y1, h, K, b_err, rtol, atol, out):
    """``out[i]`` = component ``i``'s share of the squared error norm of a step,
    ``(err_i / sc_i)**2 / sum_k (err_k / sc_k)**2`` (as in :func:`error_ratio`;
    for DOP853 ``b_err`` is its 5th-order estimate). Used to name, when a solve
    fails, the components that forced its steps down. All zero when the error is
    0 or not finite."""
    n = y0.shape[0]
    s = K.shape[0]
    total = 0.0
    for i in range(n):
        e = stage_sum(b_err, K, s, i)
        sc = tolerance_scale(y0, y1, rtol, atol, i)
        r = 0.0 if e == 0.0 else h * e / sc
        out[i] = r * r
        total += r * r
    if not (total > 0.0 and math.isfinite(total)):
        out[:] = 0.0
        return
    for i in range(n):
        out[i] /= total


@kernel(inline=True)
def stiffness_estimate(h, k_last, k_prev, y_last, y_prev):
    """Hairer's estimate of ``|h lambda|`` from the last two stages of a step
    (Hairer & Wanner, *Solving ODEs II*, §IV.2, "stiffness detection"; ``dopri5.f``, ``dop853.f``).

    Both stages sit at ``t + h``, so ``(k_last - k_prev) / (y_last - y_prev)``
    approximates the dominant eigenvalue of the Jacobian met by the step:
    ``|h| * ||k_last - k_prev|| / ||y_last - y_prev||`` (Euclidean norms); 0
    when the two stage states coincide.
    """
    num = 0.0
    den = 0.0
    for i in range(y_last.shape[0]):
        d = k_last[i] - k_prev[i]
        num += d * d
        e = y_last[i] - y_prev[i]
        den += e * e
    if den > 0.0:
        return abs(h) * math.sqrt(num / den)
    return 0.0


@kernel(inline=True)
def scaled_rms(x, ref, rtol, atol):
    """``sqrt(mean((x / (atol + rtol * |ref|))**2))``, the norm of HNW §II.4 (4.11)
    with the scale taken at one point (used by the initial step size)."""
    n = x.shape[0]
    acc = 0.0
    for i in range(n):
        r = 0.0 if x[i] == 0.0 else x[i] / (atol[i] + rtol[i] * abs(ref[i]))
        acc += r * r
    return math.sqrt(acc / max(n, 1))


@kernel(inline=True)
def dense_eval(y0, h, K, P, theta, out):
    """Continuous extension ``out = y0 + h * sum_i K[i] * sum_j P[i, j] theta**(j+1)``.

    ``theta = (t - t0) / h`` in [0, 1]; ``P`` comes from the tableau
    (HNW §II.6, dense output). Weights per stage are formed first so the cost
    is ``O(s*p + s*n)``.
    """
    dense_eval_scratch(y0, h, K, P, theta, np.empty(P.shape[0]), out)


@kernel(inline=True)
def dense_eval_scratch(y0, h, K, P, theta, w, out):
    """:func:`dense_eval` with the stage weights in the scratch ``w`` (float64, shape (s,)),
    for callers that interpolate several times per step (event location) and allocate nothing."""
    s, p = P.shape
    n = y0.shape[0]
    for i in range(s):
        acc = 0.0
        power = theta
        for j in range(p):
            acc += P[i, j] * power
            power *= theta
        w[i] = acc
    for k in range(n):
        acc = 0.0
        for i in range(s):
            acc += w[i] * K[i, k]
        out[k] = y0[k] + h * acc


@kernel(inline=True)
def dense_coefficients(K, P, out):
    """``out = K.T @ P`` (shape ``(n, p)``): the step's interpolation polynomial
    stored for :meth:`odeflow.Solution.interpolate`."""
    s, n = K.shape
    p = P.shape[1]
    for k in range(n):
        for j in range(p):
            acc = 0.0
            for i in range(s):
                acc += K[i, k] * P[i, j]
            out[k, j] = acc


@kernel(inline=True)
def all_finite(x):
    """True when every entry of the flat array ``x`` is finite."""
    for i in range(x.shape[0]):
        if not math.isfinite(x[i]):
            return False
    return True
