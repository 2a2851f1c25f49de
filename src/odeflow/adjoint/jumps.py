"""Jump times in both gradient modes: solve piece by piece between the jumps.

With ``options["jump_t"]`` a differentiable solve (backprop through the
solver, or the adjoint method) is split at the jump times ``T_1, ..., T_J``
inside the interval: segment ``s`` runs from ``T_s`` to ``T_{s+1}``, starts
from the state the previous one ended in, and sees ``func`` with its time
clamped to ``[next(T_s), prev(T_{s+1})]`` (the float just after / before each
jump), so every evaluation is on the correct side of each jump. Steps
therefore never straddle a jump, forwards or in the adjoint's backward solve,
and no FSAL stage crosses one.

The gradient w.r.t. a jump time comes out of the time gradients of the two
segments meeting there. The end of segment ``s`` gives ``dL/dT = a(T) .
f(T-, y(T))`` and the start of segment ``s+1`` gives ``-a(T) . f(T+, y(T))``
(Chen et al. 2018, App. B), so::

    dL/dT = a(T) . (f(T-, y(T)) - f(T+, y(T)))

with ``a(T) = dL/dy(T)`` the adjoint at the jump (continuous across it: the
state is) and ``f(T-)``, ``f(T+)`` the left and right limits in the direction
of time. Delaying a switch by ``dT`` keeps the old dynamics ``f(T-)`` for
``dT`` longer, moving ``y`` by ``(f(T-) - f(T+)) dT``: the formula is that
change seen through ``a``.
"""
from __future__ import annotations

import numpy as np

from odeflow.adjoint.common import as_tensor, time_data
from odeflow.adjoint.params import check_closure
from odeflow.autodiff import ops
from odeflow.autodiff.ops import make_node
from odeflow.autodiff.tensor import Tensor
from odeflow.errors import GradientError, InputTypeError
from odeflow.solvers.validate import as_times, check_jump_t

__all__ = ["odeint_segmented"]


def _jump_entries(jump_t):
    """The jump times as (values float64 (J,), entry(k) -> Tensor scalar or float)."""
    if isinstance(jump_t, Tensor):
        values = check_jump_t(jump_t.data)
        flat = ops.reshape(jump_t, (-1,)) if jump_t.requires_grad else None
        return values, (lambda k: flat[k] if flat is not None else float(values[k]))
    items = list(jump_t) if isinstance(jump_t, (list, tuple)) else None
    values = check_jump_t(jump_t)
    if items is not None and any(isinstance(v, Tensor) and v.requires_grad for v in items):
        return values, (lambda k: ops.reshape(items[k], ()) if isinstance(items[k], Tensor)
                        else float(values[k]))
    return values, (lambda k: float(values[k]))


def _clamped(func, lo, hi):
    """``func`` with its time clamped to ``[lo, hi]`` (either may be None)."""
    def segment_func(t, y):
        if lo is not None and t < lo:
            t = lo
        if hi is not None and t > hi:
            t = hi
        return func(t, y)
    return segment_func


def _times(entries):
    """A segment's times: a Tensor if some entry is one requiring grad, else float64."""
    if any(isinstance(e, Tensor) for e in entries):
        return ops.stack([e if isinstance(e, Tensor) else Tensor(np.float64(e)) for e in entries])
    return np.array(entries, dtype=np.float64)


def _kink(value, parents, where):
    """``value`` as a Tensor whose gradient raises: a jump time at an output time or at an end.

    There the solution's one-sided derivatives w.r.t. the jump time (and the output
    time) differ by the jump of ``func``, so no gradient is right (as for a grazing event).
    """
    def vjp(g):
        raise GradientError(
            f"`options['jump_t']` has a jump at t = {float(value)!r}, {where}: the solution is not "
            f"differentiable there w.r.t. the jump time or that output time (the one-sided "
            f"derivatives differ by the jump of func); move the jump off the output times, or "
            f"differentiate neither (a jump_t and t that do not require grad)")
    return make_node(np.float64(value), parents, vjp)


def _unused_jumps(out, values, entry, idx, t_data, t_entry):
    """Connect what the split did not use, never leaving a silent None or zero.

    A jump Tensor outside ``(t[0], t[-1])`` gets a zero gradient. A jump at ``t[0]``
    or ``t[-1]`` is a :func:`_kink` of that jump Tensor and of that end time (if
    either requires grad). A jump time given twice is a :func:`_kink` of both
    entries: ``func`` shows one discontinuity there, and how its jump splits
    between the two entries (each one's gradient) is not known.
    """
    links = []
    for k in np.setdiff1d(np.arange(values.size), idx):
        e = entry(int(k))
        if values[k] in (t_data[0], t_data[-1]):
            i = 0 if values[k] == t_data[0] else t_data.size - 1
            parents = [p for p in (e, t_entry(i)) if isinstance(p, Tensor)]
            if parents:
                links.append(_kink(values[k], parents, f"an end of the interval t (t[{i}])"))
            continue
        same = idx[values[idx] == values[k]]
        if same.size:   # a repeat of a used jump
            parents = [p for p in (e, entry(int(same[0]))) if isinstance(p, Tensor)]
            if parents:
                links.append(_kink(values[k], parents, f"given twice in jump_t (entries {int(same[0])} "
                                                       f"and {int(k)})"))
        elif isinstance(e, Tensor):
            links.append(make_node(np.float64(0.0), [e], lambda g: [np.zeros(())]))
    for link in links:
        out = out + ops.astype(link * 0.0, out.dtype)
    return out


def odeint_segmented(odeint_fn, func, y0, t, options, *, adjoint=False, stats=None, **kwargs):
    """``odeint_fn(func, y0, t, options=..., **kwargs)`` split at ``options["jump_t"]``.

    ``odeint_fn`` is :func:`odeflow.odeint_backprop` or
    :func:`odeflow.odeint_adjoint` (``adjoint=True``: the user's closure is
    checked once; each segment finds the parameters its evaluations read). Returns the
    Tensor of shape ``(len(t), *y0.shape)``. ``stats`` (a dict) receives
    ``stats["segments"]``, one stats dict per segment, and ``stats["forward"]``
    summed over them.
    """
    if stats is not None and not isinstance(stats, dict):
        raise InputTypeError(f"`stats` must be a dict or None; got {type(stats).__name__}")
    opts = dict(options)
    values, entry = _jump_entries(opts.pop("jump_t"))
    y0 = as_tensor(y0)
    t_data, _ = time_data(t)
    t_data = as_times(t_data)
    direction = 1.0 if t_data[-1] > t_data[0] else -1.0
    inside = (direction * (values - t_data[0]) > 0) & (direction * (t_data[-1] - values) > 0)
    idx = np.flatnonzero(inside)
    idx = idx[np.unique(values[idx], return_index=True)[1]]       # first of equal times
    idx = idx[np.argsort(direction * values[idx], kind="stable")]
    t_entry = (lambda i: t[i]) if isinstance(t, Tensor) and t.requires_grad else (lambda i: float(t_data[i]))
    if idx.size == 0:
        return _unused_jumps(odeint_fn(func, y0, t, options=opts or None, stats=stats, **kwargs),
                             values, entry, idx, t_data, t_entry)
    if adjoint and kwargs.get("adjoint_params") is None:
        # the segments see a wrapper of func: check the user's closure here; each segment then
        # finds the parameters its own evaluations read (one read only after a jump included)
        check_closure(func)
    bounds = [("t", 0)] + [("jump", int(k)) for k in idx] + [("t", t_data.size - 1)]
    b_values = np.concatenate([[t_data[0]], values[idx], [t_data[-1]]])
    rows, state, seg_stats = [], y0, []
    for s in range(len(bounds) - 1):
        a, b = b_values[s], b_values[s + 1]
        last_segment = s == len(bounds) - 2
        # the outputs this segment gives: t[i] in (a, b] (a repeat of t[0] in the first segment)
        covered = [i for i in range(1, t_data.size)
                   if (direction * (t_data[i] - a) > 0 and direction * (b - t_data[i]) >= 0)
                   or (s == 0 and t_data[i] == a)]
        ends_on_output = bool(covered) and t_data[covered[-1]] == b
        rows_t = []
        for i in covered:
            if not last_segment and t_data[i] == b:  # the jump is at the output time t[i]
                parents = [e for e in (entry(bounds[s + 1][1]), t_entry(i)) if isinstance(e, Tensor)]
                rows_t.append(_kink(b, parents, f"which is the output time t[{i}]") if parents else float(b))
            else:
                rows_t.append(t_entry(i))
        entries = [t_entry(0) if s == 0 else entry(bounds[s][1])] + rows_t
        if not ends_on_output:
            entries.append(entry(bounds[s + 1][1]))
        lo = np.nextafter(a, direction * np.inf) if s > 0 else None
        hi = np.nextafter(b, -direction * np.inf) if s < len(bounds) - 2 else None
        if direction < 0:
            lo, hi = hi, lo
        seg = {} if stats is not None else None
        path = odeint_fn(_clamped(func, lo, hi), state, _times(entries), options=opts or None, stats=seg,
                         **kwargs)
        if seg is not None:
            seg_stats.append(seg)
        keep_from = 0 if s == 0 else 1
        keep_to = path.shape[0] if ends_on_output else path.shape[0] - 1
        rows.append(path[keep_from:keep_to])
        state = path[-1]
    if stats is not None:
        stats["segments"] = seg_stats
        keys = seg_stats[0].get("forward", {}).keys()
        stats["forward"] = {k: sum(d["forward"][k] for d in seg_stats) for k in keys
                            if all(isinstance(d["forward"].get(k), (int, float, np.integer, np.floating))
                                   for d in seg_stats)}
    return _unused_jumps(ops.concatenate(rows, axis=0), values, entry, idx, t_data, t_entry)
