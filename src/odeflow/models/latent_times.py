"""How a batch of irregularly sampled series is solved: on the union of its times, or per sample.

The latent ODE needs ``z_b(t_{b,i})`` for every row ``b`` at that row's own
observation times. Two ways, both one batched solve (``func`` called once per
stage on the whole batch):

* ``grid="union"`` (:func:`solve_on_union`): integrate every row over the
  sorted union of all the batch's times with one shared step size and error
  norm, then gather each row's states at its own times. This is the trick of
  Chen et al. (2018, §5) and Rubanova et al. (2019): correct because the rows
  do not interact, but a row's solution (and its gradient) then depends on its
  batch-mates, and every row is stepped over the whole union span.
* ``grid="per_sample"`` (:func:`solve_per_sample`): each row has its own
  output times, step size and accept/reject decisions
  (:mod:`odeflow.solvers.batch`, ``batch_axis=0``; torchode's per-sample
  control, Lienen & Günnemann 2022): a row's result is the same alone or in
  any batch, and a row that ends early stops early.

References
----------
.. [1] R. T. Q. Chen et al., "Neural Ordinary Differential Equations", NeurIPS 2018, §5.
.. [2] Y. Rubanova, R. T. Q. Chen, D. Duvenaud, "Latent ODEs for irregularly-sampled
   time series", NeurIPS 2019, §3.
.. [3] M. Lienen, S. Günnemann, "torchode: A Parallel ODE Solver for PyTorch",
   NeurIPS 2022 workshop (per-sample step control).
"""
from __future__ import annotations

import numpy as np

from odeflow.adjoint import odeint_adjoint, odeint_backprop
from odeflow.adjoint.batch_backprop import odeint_batch_backprop
from odeflow.autodiff import ops
from odeflow.autodiff.tensor import Tensor
from odeflow.errors import InputError, ShapeError
from odeflow.models.encoders import check_batch

__all__ = ["GRADIENTS", "GRIDS", "union_times", "per_sample_times", "solve_on_union", "solve_per_sample",
           "solve_times"]

GRADIENTS = ("backprop", "adjoint")
GRIDS = ("union", "per_sample")


def _tensor(x):
    return x if isinstance(x, Tensor) else Tensor(np.asarray(x, dtype=np.float64))


def union_times(times, mask, t0):
    """The sorted union of a batch's observation times, starting at ``t0``, and where each entry sits.

    Parameters
    ----------
    times : ndarray, shape (B, N), float64
        Canonical times (:func:`~odeflow.models.encoders.check_batch`), all ``>= t0``.
    mask : ndarray, shape (B, N), bool
    t0 : float

    Returns
    -------
    t_union : ndarray, shape (M,), float64
        Strictly increasing, ``t_union[0] == t0``, every observed time present.
    index : ndarray, shape (B, N), int64
        ``t_union[index[b, i]] == times[b, i]`` wherever ``mask[b, i]``
        (padding points at a valid entry too).
    """
    t_union = np.unique(np.concatenate([[t0], times[mask]]))
    index = np.searchsorted(t_union, times)
    return t_union, np.minimum(index, t_union.size - 1).astype(np.int64)


def solve_on_union(func, z0, times, mask=None, t0=0.0, *, gradient="backprop", rtol=1e-3,
                   atol=1e-4, method="dopri5", options=None, stats=None):
    """Latent states of every row at its own times, from ONE batched solve.

    Parameters
    ----------
    func : callable ``func(t, z)`` (usually :class:`LatentDynamics`)
        Row-wise dynamics: row ``b`` of the output depends on row ``b`` of
        ``z`` only (true of any MLP), so the batch can share one time grid.
    z0 : Tensor, shape (B, L)
        States at ``t0``.
    times : array_like, shape (B, N)
        Each row's times (``>= t0``, non-decreasing over the observed entries).
    mask : array_like of bool, shape (B, N), optional
        Padding marker as in :func:`~odeflow.models.encoders.check_batch`.
    t0 : float, default 0.0
    gradient : {"backprop", "adjoint"}, default "backprop"
        How gradients pass through the solve (module docstring).
    rtol, atol, method, options
        Solver settings (:func:`odeflow.odeint`).
    stats : dict, optional
        Receives the solver's statistics (``stats["forward"]``, and after
        ``backward()`` ``stats["backward"]`` for the adjoint) and
        ``stats["n_times"]``, the size of the union.

    Returns
    -------
    Tensor, shape (B, N, L)
        ``z_b(times[b, i])`` (padding entries hold some state of their row).

    Raises
    ------
    InputError
        Unknown `gradient`, or bad `times` (see ``check_batch``).
    ShapeError
        If `z0` is not (B, L) with B the rows of `times`.
    """
    z0, times, mask, t0 = _checked(func, z0, times, mask, t0, gradient)
    t_union, index = union_times(times, mask, t0)
    return _solve_gather(func, z0, t_union, index, gradient, False, rtol, atol, method, options, stats)


def per_sample_times(times, mask, t0):
    """Each row's own sorted times, starting at ``t0``, padded to one length, and where each entry sits.

    Parameters as :func:`union_times`.

    Returns
    -------
    grid : ndarray, shape (B, M), float64
        Row ``b``: ``t0`` then the distinct observed times of row ``b`` above
        it, padded at the end by repeating its last time (a zero-length
        interval costs no evaluation); ``M`` is the longest row's count.
    index : ndarray, shape (B, N), int64
        ``grid[b, index[b, i]] == times[b, i]`` wherever ``mask[b, i]``
        (padding points at a valid entry too).
    """
    rows = [np.unique(np.concatenate([[t0], row[keep]])) for row, keep in zip(times, mask)]
    M = max(r.size for r in rows)
    grid = np.empty((len(rows), M))
    index = np.empty(times.shape, dtype=np.int64)
    for b, r in enumerate(rows):
        grid[b, :r.size], grid[b, r.size:] = r, r[-1]
        index[b] = np.minimum(np.searchsorted(r, times[b]), r.size - 1)
    return grid, index


def _checked(func, z0, times, mask, t0, gradient):
    if gradient not in GRADIENTS:
        raise InputError(f"`gradient` must be one of {GRADIENTS}; got {gradient!r}")
    z0 = _tensor(z0)
    times = np.asarray(times, dtype=np.float64)
    if z0.ndim != 2 or times.ndim != 2 or z0.shape[0] != times.shape[0]:
        raise ShapeError(f"`z0` must have shape (B, L) and `times` (B, N) with the same B; got "
                         f"{z0.shape} and {times.shape}")
    times, _, mask, t0 = check_batch(times, np.zeros(times.shape + (1,)), mask, t0)
    return z0, times, mask, t0


def solve_per_sample(func, z0, times, mask=None, t0=0.0, *, gradient="backprop", rtol=1e-3,
                     atol=1e-4, method="dopri5", options=None, stats=None):
    """Latent states of every row at its own times, each row with its own steps (module docstring).

    Parameters, returns and raises as :func:`solve_on_union`; ``func`` is
    called with ``t`` of shape ``(k,)`` (each active row's time) or a float
    when they agree (:func:`odeflow.solve`'s ``batch_axis`` contract), so it
    must accept both (the autonomous :class:`~odeflow.models.latent_ode.LatentDynamics`
    ignores ``t``). ``stats["forward"]`` holds per-row ``nfe`` etc., and
    ``stats["n_times"]`` the padded row length ``M``.
    """
    z0, times, mask, t0 = _checked(func, z0, times, mask, t0, gradient)
    grid, index = per_sample_times(times, mask, t0)
    return _solve_gather(func, z0, grid, index, gradient, True, rtol, atol, method, options, stats)


def _solve_gather(func, z0, grid, index, gradient, per_sample, rtol, atol, method, options, stats):
    """One solve on `grid` (M,) or, `per_sample`, (B, M); row b, entry i is the output at index[b, i]."""
    if stats is not None:
        stats["n_times"] = int(grid.shape[-1])
    if grid.shape[-1] == 1:  # everything observed at t0
        zs = ops.expand_dims(z0, 0)
    elif gradient == "adjoint":
        # parameters found by watching the forward solve (a Tensor func reads that is not one of a
        # Module's parameters gets its gradient, as with backprop; adjoint_params=func.parameters()
        # made it a constant, its gradient silently None)
        zs = odeint_adjoint(func, z0, grid, rtol=rtol, atol=atol, method=method, options=options,
                            stats=stats, batch_axis=0 if per_sample else None)
    elif per_sample:
        zs = odeint_batch_backprop(func, z0, grid, 0, rtol=rtol, atol=atol, method=method, options=options,
                                   stats=stats)
    else:
        zs = odeint_backprop(func, z0, grid, rtol=rtol, atol=atol, method=method, options=options, stats=stats)
    # zs: (M, B, L); row b, entry i reads zs[index[b, i], b]
    rows = np.broadcast_to(np.arange(index.shape[0])[:, None], index.shape)
    return zs[index, rows]


def solve_times(grid, func, z0, times, mask=None, t0=0.0, **kw):
    """:func:`solve_on_union` or :func:`solve_per_sample` by `grid` (``"union"`` or ``"per_sample"``).

    Raises
    ------
    InputError
        Unknown `grid`.
    """
    if grid not in GRIDS:
        raise InputError(f"`grid` must be one of {GRIDS}; got {grid!r}")
    return (solve_on_union if grid == "union" else solve_per_sample)(func, z0, times, mask, t0, **kw)
