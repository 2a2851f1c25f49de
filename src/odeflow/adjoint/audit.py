"""The backsolve audit: is the backward-reconstructed ``y`` still the forward solution?

Backsolve rebuilds ``y(t)`` by integrating ``dy/dt = f`` backwards from each
stored output ``y(t_i)``. For dissipative dynamics that reconstruction is
ill-conditioned: an error of size ``atol`` in ``y(t_i)`` grows like
``exp(|lambda| (t_i - t))`` backwards (Gholami et al. 2019, ANODE; Zhuang et
al. 2020, ACA), and the gradient, computed along the wrong trajectory, can be
wrong by orders of magnitude. The check costs nothing extra: at the end of each
interval the reconstruction arrives at ``t_{i-1}``, where the forward output
``y(t_{i-1})`` is stored anyway. Their difference, measured in the forward
solve's own error norm,

    drift_i = sqrt(mean(((y_rec - y_fwd) / (atol + rtol * max(|y_rec|, |y_fwd|)))**2))

is the number of forward tolerances by which the backward solve has left the
forward trajectory (HNW §II.4, eq. 4.11: the same norm accepts a step at
<= 1). A well-conditioned backward solve stays within a few units (each of
its steps errs by <= 1 in the backward norm); the dissipative example of
docs/adjoint.md reaches ~1e6 (the norm saturates near
``1 / rtol`` once the reconstruction is far off). Above ``drift_tol`` (default
:data:`DRIFT_TOL`) the policy ``on_drift`` acts:

``"recompute"`` (default)
    redo that interval in checkpoint mode from a forward re-solve of just that
    interval, starting at the stored ``y(t_{i-1})`` (memory: one interval's
    steps), so the gradient is right;
``"warn"``
    a :class:`~odeflow.errors.GradientAccuracyWarning` naming the interval and
    the drift; ``"raise"``: a :class:`~odeflow.errors.GradientError`;
    ``"ignore"``: nothing (the drift is still reported).

A backward solve that fails outright (a step-size underflow or non-finite
values while reconstructing ``y``) counts as infinite drift under
``"recompute"``; under the other policies the solver error is raised.
"""
from __future__ import annotations

import warnings

import numpy as np

from odeflow.errors import GradientAccuracyWarning, GradientError, InputError, InputTypeError

__all__ = ["DRIFT_TOL", "POLICIES", "audit_options", "drift", "judge"]

POLICIES = ("recompute", "warn", "raise", "ignore")
#: Default ``drift_tol``, in units of the forward tolerance (the norm above); well-conditioned
#: neural ODEs stayed below 5.5 (``scripts/bench_gradients.py --sections drifts``).
DRIFT_TOL = 10.0


def audit_options(back_options):
    """Pop ``on_drift`` and ``drift_tol`` from the backward solve's options (a dict, changed).

    Raises
    ------
    InputError, InputTypeError
        An unknown policy, or a ``drift_tol`` that is not a positive number.
    """
    policy = back_options.pop("on_drift", "recompute")
    tol = back_options.pop("drift_tol", DRIFT_TOL)
    if not isinstance(policy, str) or policy not in POLICIES:
        raise InputError(f"`adjoint_options['on_drift']` must be one of {', '.join(POLICIES)}; "
                         f"got {policy!r}")
    if isinstance(tol, bool) or not isinstance(tol, (int, float, np.integer, np.floating)):
        raise InputTypeError(f"`adjoint_options['drift_tol']` must be a number; got {type(tol).__name__}")
    if not tol > 0:  # also refuses nan
        raise InputError(f"`adjoint_options['drift_tol']` must be positive; got {tol!r}")
    return policy, float(tol)


def drift(y_rec, y_fwd, rtol, atol):
    """The RMS distance of `y_rec` from `y_fwd` in units of the tolerance (module docstring)."""
    if not np.all(np.isfinite(y_rec)):
        return float("inf")
    scale = atol + rtol * np.maximum(np.abs(y_rec), np.abs(y_fwd))
    return float(np.sqrt(np.mean(((y_rec - y_fwd) / scale) ** 2)))


def judge(policy, value, tol, k, t_lo, t_hi):
    """Apply `policy` to interval `k` (from `t_lo` to `t_hi`) with drift `value`.

    Returns True when the interval must be recomputed; warns or raises as the
    policy says.
    """
    if not value > tol:
        return False
    if policy == "recompute":
        return True
    where = (f"the backsolve adjoint's reconstruction of y drifted by {value:.3g} forward "
             f"tolerances (drift_tol {tol:.3g}) over interval {k} [t = {float(t_lo)!r}, "
             f"{float(t_hi)!r}]: the gradient may be inaccurate (typical of dissipative dynamics)")
    if policy == "warn":
        warnings.warn(f"{where}; use adjoint_mode='checkpoint' or adjoint_options['on_drift'] = "
                      f"'recompute'", GradientAccuracyWarning, stacklevel=4)
    elif policy == "raise":
        raise GradientError(f"{where}; use adjoint_mode='checkpoint', or on_drift='recompute'")
    return False
