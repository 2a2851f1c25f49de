"""Noisy 2-D spirals for the latent ODE (Chen et al. 2018, §5, Table 2).

Protocol of the public reference (``generate_spiral2d`` and its ``__main__`` call in
rtqichen/torchdiffeq, ``examples/latent_ode.py``), re-implemented here:

* one time grid of ``n_total = 500`` points, ``t_full = linspace(0, 6*pi, 500)``
  (the reference script sets ``ntotal = 1000`` but never passes it on, so the
  function default 500 is what runs);
* two base curves, with ``a = 0``, ``b = 0.3``:

  - counter-clockwise, an Archimedean spiral centred at (+5, 0):
    ``theta = t``, ``r = a + b * theta``;
  - clockwise, centred at (-5, 0), with the angle running backwards,
    ``theta = 6*pi + 1 - t`` (from 6*pi + 1 down to 1), and radius
    ``r = a + 50 * b / theta`` -- in the reference this one is a *hyperbolic*
    spiral, not an Archimedean one; its radius grows from 0.76 at t = 0 to 15 at
    t = 6*pi (the counter-clockwise one from 0 to 5.65);

  each point is ``(r cos(theta) +- 5, r sin(theta))``;
* each of the ``n_spirals = 1000`` trajectories takes one curve (exactly half
  clockwise here; the reference flips a fair coin per trajectory) and a window of
  ``n_points = 100`` consecutive grid points starting at an index drawn uniformly
  from ``[100, 400)`` (``[n_points, n_total - n_points)``);
* the window is re-timed to start at 0: every trajectory is observed at
  ``t = t_full[:100]`` (as the reference's ``samp_ts``);
* i.i.d. Gaussian noise of std ``noise_std`` is added to both coordinates. The
  reference script uses 0.3 (its function default is 0.1); 0.3 is the default here.

Beyond the reference: ``n_obs`` of the 100 points per trajectory (30, 50 or 100 in
Table 2) are kept as the irregular observations, a sorted seeded random subset
per trajectory; and a seeded train/test split.

Independent random streams (one ``SeedSequence`` child each) drive the directions,
window starts, noise, observation subsets and split, so changing ``n_obs`` or
``test_fraction`` leaves the trajectories and their noise unchanged.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from odeflow.errors import InputError, InputTypeError

__all__ = ["SpiralData", "make_spirals", "spiral_paths", "irregular_indices"]


@dataclass(frozen=True, repr=False)
class SpiralData:
    """Noisy windows of 2-D spirals with irregular observation subsets.

    Attributes
    ----------
    t : ndarray, shape (n_points,), float64
        Observation times of every window (the first ``n_points`` of ``t_full``,
        so starting at 0), in the units of the spiral parameter.
    clean : ndarray, shape (n, n_points, 2), float64
        Noise-free windows.
    noisy : ndarray, shape (n, n_points, 2), float64
        ``clean`` plus Gaussian noise of std ``noise_std``.
    obs_index : ndarray, shape (n, n_obs), int64
        Sorted, distinct indices into the window of each trajectory's observations.
    obs_mask : ndarray, shape (n, n_points), bool
        True at the observed points (the same information as ``obs_index``).
    clockwise : ndarray, shape (n,), bool
        Which base curve each trajectory follows.
    start_index : ndarray, shape (n,), int64
        Index into ``t_full`` of each window's first point.
    is_test : ndarray, shape (n,), bool
        Membership of the held-out split.
    t_full : ndarray, shape (n_total,), float64
        The full time grid.
    paths : ndarray, shape (2, n_total, 2), float64
        The two noise-free base curves on ``t_full``: ``paths[0]`` counter-clockwise,
        ``paths[1]`` clockwise (index with ``clockwise.astype(int)``).
    noise_std : float
        Standard deviation of the added noise.
    """

    t: np.ndarray
    clean: np.ndarray
    noisy: np.ndarray
    obs_index: np.ndarray
    obs_mask: np.ndarray
    clockwise: np.ndarray
    start_index: np.ndarray
    is_test: np.ndarray
    t_full: np.ndarray
    paths: np.ndarray
    noise_std: float

    _PER_TRAJECTORY = ("clean", "noisy", "obs_index", "obs_mask", "clockwise", "start_index",
                       "is_test")

    def __len__(self) -> int:
        return self.clean.shape[0]

    @property
    def n_obs(self) -> int:
        """Number of observations per trajectory."""
        return self.obs_index.shape[1]

    @property
    def t_obs(self) -> np.ndarray:
        """Observation times, shape (n, n_obs), float64."""
        return self.t[self.obs_index]

    @property
    def x_obs(self) -> np.ndarray:
        """Noisy observations, shape (n, n_obs, 2), float64."""
        return np.take_along_axis(self.noisy, self.obs_index[..., None], axis=1)

    @property
    def full(self) -> np.ndarray:
        """Each trajectory's whole noise-free curve, shape (n, n_total, 2), float64."""
        return self.paths[self.clockwise.astype(np.intp)]

    def subset(self, index) -> "SpiralData":
        """The trajectories selected by ``index`` (int array, slice or bool mask of length n)."""
        picked = {name: getattr(self, name)[index] for name in self._PER_TRAJECTORY}
        return SpiralData(t=self.t, t_full=self.t_full, paths=self.paths,
                          noise_std=self.noise_std, **picked)

    @property
    def train(self) -> "SpiralData":
        """The training trajectories (``~is_test``)."""
        return self.subset(~self.is_test)

    @property
    def test(self) -> "SpiralData":
        """The held-out trajectories (``is_test``)."""
        return self.subset(self.is_test)

    def __repr__(self) -> str:
        n_cw = int(self.clockwise.sum())
        return (f"SpiralData(n={len(self)} ({n_cw} clockwise, {int(self.is_test.sum())} test), "
                f"n_points={self.t.size}, n_obs={self.n_obs}, noise_std={self.noise_std})")


def _int(value, name, low, high=None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputTypeError(f"`{name}` must be an int; got {type(value).__name__} {value!r}")
    if value < low or (high is not None and value > high):
        span = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise InputError(f"`{name}` must be {span}; got {value}")
    return int(value)


def _real(value, name) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise InputError(f"`{name}` must be a finite number; got {value!r}")
    return float(value)


def spiral_paths(t_full, *, a: float = 0.0, b: float = 0.3) -> np.ndarray:
    """The two base curves of the spirals data set on a time grid.

    Parameters
    ----------
    t_full : array_like, shape (n_total,)
        Increasing times in ``[0, t_max]``, ``t_max = t_full[-1]``.
    a, b : float, default 0.0 and 0.3
        Spiral parameters (radius offset and growth).

    Returns
    -------
    ndarray, shape (2, n_total, 2), float64
        ``[0]`` counter-clockwise: ``theta = t``, ``r = a + b theta``, centre (5, 0);
        ``[1]`` clockwise: ``theta = t_max + 1 - t``, ``r = a + 50 b / theta``,
        centre (-5, 0). A point is ``(r cos theta + centre_x, r sin theta)``.

    References
    ----------
    .. [1] rtqichen/torchdiffeq, ``examples/latent_ode.py``, ``generate_spiral2d``.
    """
    t_full = np.asarray(t_full, dtype=np.float64)
    theta_cc = t_full
    r_cc = a + b * theta_cc
    theta_cw = t_full[-1] + 1.0 - t_full  # runs backwards, ends at 1: no division by 0
    r_cw = a + 50.0 * b / theta_cw
    cc = np.stack([r_cc * np.cos(theta_cc) + 5.0, r_cc * np.sin(theta_cc)], axis=-1)
    cw = np.stack([r_cw * np.cos(theta_cw) - 5.0, r_cw * np.sin(theta_cw)], axis=-1)
    return np.stack([cc, cw])


def irregular_indices(n_series: int, n_points: int, n_obs: int, rng) -> np.ndarray:
    """For each series, a sorted random subset of ``n_obs`` of ``n_points`` indices.

    Parameters
    ----------
    n_series, n_points, n_obs : int
        Number of series, points per series, and points kept (``1 <= n_obs <= n_points``).
    rng : numpy.random.Generator or int
        Randomness (an int is used as a seed).

    Returns
    -------
    ndarray, shape (n_series, n_obs), int64
        Each row strictly increasing, values in ``[0, n_points)``; all subsets of size
        ``n_obs`` are equally likely.
    """
    n_series = _int(n_series, "n_series", 0)
    n_points = _int(n_points, "n_points", 1)
    n_obs = _int(n_obs, "n_obs", 1, n_points)
    rng = np.random.default_rng(rng)
    # the first n_obs positions of a uniform random permutation = a uniform subset
    keys = rng.random((n_series, n_points))
    picked = np.argsort(keys, axis=1)[:, :n_obs]
    return np.sort(picked, axis=1).astype(np.int64)


def make_spirals(*, n_spirals: int = 1000, n_total: int = 500, n_points: int = 100,
                 t_max: float = 6 * np.pi, a: float = 0.0, b: float = 0.3,
                 noise_std: float = 0.3, n_obs: int = 100, test_fraction: float = 0.2,
                 seed: int | None = 0) -> SpiralData:
    """Generate the latent-ODE spirals data set (see the module docstring for the protocol).

    Parameters
    ----------
    n_spirals : int, default 1000
        Number of trajectories; ``n_spirals // 2`` are clockwise.
    n_total : int, default 500
        Points of the full time grid on ``[0, t_max]``; must exceed ``2 * n_points``.
    n_points : int, default 100
        Consecutive grid points per window; the window start is uniform on
        ``[n_points, n_total - n_points)``.
    t_max : float, default 6*pi
        End of the time grid.
    a, b : float, default 0.0 and 0.3
        Spiral parameters (:func:`spiral_paths`).
    noise_std : float, default 0.3
        Std of the Gaussian observation noise (the reference script's 0.3; some
        versions use 0.1). Must be >= 0.
    n_obs : int, default 100
        Observations kept per trajectory, ``1 <= n_obs <= n_points`` (Table 2 uses
        30, 50 and 100); drawn by :func:`irregular_indices`.
    test_fraction : float, default 0.2
        Share of trajectories held out (``is_test``), in [0, 1); rounded to an int.
    seed : int or None, default 0
        Seed of all randomness; the same seed gives identical data.

    Returns
    -------
    SpiralData
        All ``n_spirals`` trajectories; ``.train`` and ``.test`` give the split.

    Raises
    ------
    InputError
        If a count is out of range (including ``n_total <= 2 * n_points``), a real
        parameter is not finite, ``t_max <= 0``, ``noise_std < 0``, or
        ``test_fraction`` is not in [0, 1).
    InputTypeError
        If a count is not an int or ``seed`` is not an int >= 0 or None.

    References
    ----------
    .. [1] R. T. Q. Chen, Y. Rubanova, J. Bettencourt, D. Duvenaud, "Neural Ordinary
       Differential Equations", NeurIPS 2018, §5 and Table 2.
    .. [2] rtqichen/torchdiffeq, ``examples/latent_ode.py``, ``generate_spiral2d``.
    """
    n_spirals = _int(n_spirals, "n_spirals", 1)
    n_points = _int(n_points, "n_points", 1)
    n_total = _int(n_total, "n_total", 2 * n_points + 1)
    n_obs = _int(n_obs, "n_obs", 1, n_points)
    t_max, a, b = _real(t_max, "t_max"), _real(a, "a"), _real(b, "b")
    noise_std, test_fraction = _real(noise_std, "noise_std"), _real(test_fraction, "test_fraction")
    if t_max <= 0:
        raise InputError(f"`t_max` must be > 0; got {t_max}")
    if noise_std < 0:
        raise InputError(f"`noise_std` must be >= 0; got {noise_std}")
    if not 0.0 <= test_fraction < 1.0:
        raise InputError(f"`test_fraction` must be in [0, 1); got {test_fraction}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)
                             or seed < 0):
        raise InputTypeError(f"`seed` must be an int >= 0 or None; got {seed!r}")

    # one independent stream per random choice (see module docstring)
    rng_dir, rng_start, rng_noise, rng_obs, rng_split = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5))

    t_full = np.linspace(0.0, t_max, n_total)
    paths = spiral_paths(t_full, a=a, b=b)

    clockwise = np.zeros(n_spirals, dtype=bool)
    clockwise[: n_spirals // 2] = True
    rng_dir.shuffle(clockwise)
    start = rng_start.integers(n_points, n_total - n_points, size=n_spirals).astype(np.int64)

    window = start[:, None] + np.arange(n_points)  # (n, n_points) indices into t_full
    clean = paths[clockwise.astype(np.intp)[:, None], window]  # (n, n_points, 2)
    noisy = clean + noise_std * rng_noise.standard_normal(clean.shape)

    obs_index = irregular_indices(n_spirals, n_points, n_obs, rng_obs)
    obs_mask = np.zeros((n_spirals, n_points), dtype=bool)
    np.put_along_axis(obs_mask, obs_index, True, axis=1)

    is_test = np.zeros(n_spirals, dtype=bool)
    is_test[rng_split.permutation(n_spirals)[: int(round(test_fraction * n_spirals))]] = True

    return SpiralData(t=t_full[:n_points].copy(), clean=clean, noisy=noisy, obs_index=obs_index,
                      obs_mask=obs_mask, clockwise=clockwise, start_index=start, is_test=is_test,
                      t_full=t_full, paths=paths, noise_std=noise_std)
