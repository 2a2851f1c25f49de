"""Helpers shared by the adjoint tests: solving by any gradient path, central differences."""
import numpy as np

import odeflow
from odeflow import Tensor

PATHS = [("backsolve", "rms"), ("backsolve", "seminorm"), ("checkpoint", "rms"), ("checkpoint", "seminorm")]


def solve(path, func, y0, t, norm="rms", **kw):
    """``odeint`` (path "backprop") or ``odeint_adjoint`` in mode `path` with the given norm."""
    if path == "backprop":
        return odeflow.odeint(func, y0, t, **kw)
    options = dict(kw.pop("adjoint_options", {}), norm=norm)
    return odeflow.odeint_adjoint(func, y0, t, adjoint_mode=path, adjoint_options=options, **kw)


def central(loss, arrays, eps=1e-6):
    """Central differences of the float ``loss()`` w.r.t. every entry of each array (changed in place)."""
    out = []
    for x in arrays:
        g = np.zeros_like(x)
        for k in range(x.size):
            old = x.flat[k]
            x.flat[k] = old + eps
            up = loss()
            x.flat[k] = old - eps
            down = loss()
            x.flat[k] = old
            g.flat[k] = (up - down) / (2 * eps)
        out.append(g)
    return out


def values(func, y0, t, rtol=1e-12, atol=1e-12, breaks=()):
    """The solution of ``func`` (on Tensors) at `t` by the array solver, tight tolerances.

    With `breaks` (times where ``func`` switches, increasing `t`), each piece
    between consecutive times of ``t`` and `breaks` is solved on its own, with
    ``func`` evaluated strictly inside the piece: the result is then a smooth
    function of the parameters, and central differences of it are accurate.
    """
    grid = np.unique(np.concatenate([t, [b for b in breaks if t[0] < b < t[-1]]]))
    y, rows = np.asarray(y0, float), [np.asarray(y0, float)]
    for lo, hi in zip(grid[:-1], grid[1:]):
        inside = (lambda lo, hi: lambda s, y: func(min(max(s, lo + 1e-13), hi - 1e-13), Tensor(y)).data)(lo, hi)
        y = odeflow.odeint(inside, y, [lo, hi], rtol=rtol, atol=atol)[-1]
        rows.append(y)
    keep = [int(np.flatnonzero(grid == ti)[0]) for ti in t]
    return np.stack([rows[k] for k in keep])


def rel(a, b):
    return float(np.abs(np.asarray(a) - b).max() / max(np.abs(b).max(), 1e-12))
