"""Stiffness detection and the explanation of a failed solve.

An explicit method on a stiff problem is held to step sizes by *stability*,
not accuracy: ``h |lambda|`` stays pinned at the edge of the method's
stability region (about 3.3 on the negative real axis for dopri5 and tsit5,
6.1 for dop853) while the solution itself is smooth. Hairer's test (Hairer &
Wanner, *Solving ODEs II*, §IV.2, "stiffness detection"; the ``NSTIFF``
option of ``dopri5.f`` and ``dop853.f``) estimates ``h |lambda|`` for free
from the last two stages of every accepted step
(:func:`odeflow.solvers.kernels.stiffness_estimate`) and declares the problem
stiff after 15 positive tests not interrupted by 6 negative ones in a row
(:func:`stiffness_step`, run inside the adaptive loop).

When a solve then fails by ``max_steps`` or step-size underflow,
:func:`explain` adds to the error message where the problem appears stiff and
that ``method="radau"`` is made for it; for every failure it also names the
state components that dominated the error norm of the last rejected steps
(the loop keeps each component's share, :func:`odeflow.solvers.kernels.error_shares`),
so a user sees *which* variable is hard. A successful solve that was found
stiff gives no warning (``stats["stiff_at"]`` says where): a warning would
fire inside every training step of a stiff neural ODE, where the cost is the
signal, and a success needs no rescue.
"""
from __future__ import annotations

import math

import numpy as np

from odeflow.solvers.jit import kernel

__all__ = ["STIFF_RUN", "NONSTIFF_RESET", "stiffness_step", "explain"]
STIFF_RUN = 15      # Hairer's dopri5.f: 15 positive tests ...
NONSTIFF_RESET = 6  # ... not interrupted by 6 negative ones in a row


@kernel(inline=True)
def stiffness_step(state, hl, bound, t):
    """One accepted step of Hairer's stiffness test (``dopri5.f``, ``NSTIFF``).

    ``state`` (float64, shape (3,)) holds the count of positive tests, the
    count of negative ones in a row, and the start ``t`` of the current run
    of positives. A step is positive when ``hl = |h lambda|`` (from
    :func:`odeflow.solvers.kernels.stiffness_estimate`) exceeds ``bound``, i.e.
    the step size is held at the edge of the stability region rather than by
    accuracy. Returns True when the run reaches 15 positives: the problem is
    stiff from ``state[2]`` on. Hairer tests every 1000th step to save work;
    here every step is tested (two norms next to ``s`` evaluations of func),
    so the onset is located to within 15 steps.
    """
    if hl > bound:
        if state[0] == 0.0:
            state[2] = t
        state[0] += 1.0
        state[1] = 0.0
        return state[0] >= STIFF_RUN
    state[1] += 1.0
    if state[1] >= NONSTIFF_RESET:
        state[0] = 0.0
    return False

def explain(stiff_at, blame, y, shape, bound, stiff_failure):
    """Sentences to append to a failure message (may be empty).

    Parameters
    ----------
    stiff_at : float or None
        Where the stiffness test fired (``stats["stiff_at"]``).
    blame : ndarray, shape (n,)
        Shares of the squared error norm of the last rejected steps (from the loop).
    y : ndarray, shape (n,)
        The state where the solve stopped.
    shape : tuple
        The user's state shape (components are named by their index in it).
    bound : float
        The method's stability bound of the test (for the message).
    stiff_failure : bool
        The failure is one stiffness explains (``max_steps``, step-size underflow).
    """
    parts = []
    if stiff_failure and stiff_at is not None:
        parts.append(f"The problem appears stiff from t = {stiff_at!r} on (Hairer's test: h*|lambda| stayed "
                     f"above {bound}, the edge of the stability region, so the step size was set by "
                     f"stability, not accuracy): use an implicit method, method=\"radau\".")
    total = float(np.sum(blame))
    if total > 0.0 and math.isfinite(total):
        share = np.asarray(blame) / total
        order = np.argsort(-share, kind="stable")
        named = []
        for k in order[:3]:
            if named and share[k] < 0.05:
                break
            index = np.unravel_index(int(k), shape) if shape else ()
            label = "y[" + ", ".join(str(int(i)) for i in index) + "]" if shape else "y"
            named.append(f"{label} = {float(y[k]):.6g} ({100 * share[k]:.0f}%)")
        parts.append("The error norm of the last rejected steps was dominated by " + ", ".join(named) + ".")
    return (" " + " ".join(parts)) if parts else ""
