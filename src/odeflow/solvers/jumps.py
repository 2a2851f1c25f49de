"""Declared discontinuities: ``options["jump_t"]``, times where ``func`` jumps.

A Runge–Kutta step assumes ``func`` smooth across the step; a step that
straddles a jump of ``func`` in ``t`` (a dose, a switched forcing) loses its
order, its error estimate is meaningless, and the controller can only shrink
steps around the jump (hundreds of rejected steps), or miss a narrow pulse
altogether. With the jump times declared (torchdiffeq's ``jump_t``, diffrax's
``ClipStepSizeController(jump_ts=...)``, DifferentialEquations.jl's ``tstops``
with ``d_discontinuities``):

* a step that would pass the next jump ``T`` (or end within the controller's
  1 % stretch of it) is shortened to end exactly at ``T``;
* the stages of that step are evaluated no later than ``prev(T)`` (the float
  just before ``T`` in the direction of integration), so they see the left
  limit ``f(T-, y)`` whatever ``func`` returns at ``T`` itself;
* the FSAL stage is discarded and the next step starts with
  ``f(next(T), y(T))``, the right limit: one extra evaluation per jump.

Output times are unaffected. Jump times outside the open interval
``(t[0], t[-1])`` are ignored. Fixed-step methods get the jump times as extra
nodes (see :func:`odeflow.solvers.integrate.fixed_grid`) with the same
one-sided evaluations.
"""
from __future__ import annotations

import numpy as np

from odeflow.solvers.jit import kernel

__all__ = ["jumps_inside", "clip_to_jump", "stage_time", "after_jump"]


def jumps_inside(jump_t, t0, t_end):
    """The declared jump times strictly inside ``(t0, t_end)``, unique, in the
    direction of integration (float64, shape (J,)); an empty array for None."""
    if jump_t is None:
        return np.empty(0)
    direction = 1.0 if t_end > t0 else -1.0
    jumps = np.unique(np.asarray(jump_t, dtype=np.float64).reshape(-1))
    jumps = jumps[(direction * (jumps - t0) > 0) & (direction * (t_end - jumps) > 0)]
    return jumps if direction > 0 else jumps[::-1].copy()


@kernel(inline=True)
def clip_to_jump(t, t_new, h, h_abs, jump, direction, stretch):
    """``(t_new, h, at_jump)``: the attempt ``[t, t_new]`` ended at ``jump`` when
    it would pass it or land within the ``stretch`` of it (as the last step)."""
    if direction * (t + stretch * direction * h_abs - jump) >= 0.0:
        return jump, jump - t, True
    return t_new, h, False


@kernel(inline=True)
def stage_time(t, c, h, at_jump, t_new):
    """``t + c h``, but at most ``prev(t_new)`` in a step ending at a jump (left limit)."""
    ts = t + c * h
    if at_jump:
        before = np.nextafter(t_new, t)
        if (h > 0.0 and ts > before) or (h < 0.0 and ts < before):
            ts = before
    return ts


@kernel(inline=True)
def after_jump(t, direction):
    """``next(t)`` in the direction of integration: where ``f(T+, y)`` is evaluated."""
    return np.nextafter(t, direction * np.inf)
