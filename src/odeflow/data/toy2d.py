"""2-D toy densities: FFJORD's samplers, the exact 8gaussians density, and the
Rezende & Mohamed (2015) energy functions used for density matching.

Samplers (:func:`sample_toy2d`) follow the generators of FFJORD
(rtqichen/ffjord, ``lib/toy_data.py``, ``inf_train_gen``) in shape, scale and noise,
re-implemented on a ``numpy.random.Generator``, always returning exactly ``n``
float64 points. Where FFJORD places points on an evenly spaced angle grid
(``moons``, ``circles``, ``rings``, through scikit-learn) or mirrors one arm's
draws onto the other (``2spirals``), the angles / arms are drawn i.i.d. here: the
same distribution, but independent samples, which is what maximum likelihood
assumes.

Units: log-densities in nats.
"""
from __future__ import annotations

import numbers

import numpy as np

from odeflow.errors import InputError, InputTypeError, ShapeError

__all__ = ["TOY2D_NAMES", "TARGET_NAMES", "sample_toy2d", "log_prob_8gaussians", "log_target",
           "EIGHT_GAUSSIANS_RADIUS", "EIGHT_GAUSSIANS_STD"]

# FFJORD draws centre(4 * unit vector) + 0.5 * N(0, I), then divides everything by 1.414
# (not sqrt(2)): the mixture below has exactly these constants.
EIGHT_GAUSSIANS_RADIUS = 4.0 / 1.414
EIGHT_GAUSSIANS_STD = 0.5 / 1.414
_ANGLES8 = np.arange(8) * (np.pi / 4)
_CENTERS8 = EIGHT_GAUSSIANS_RADIUS * np.stack([np.cos(_ANGLES8), np.sin(_ANGLES8)], axis=1)


def _gaussians8(n, rng):
    k = rng.integers(8, size=n)
    return _CENTERS8[k] + EIGHT_GAUSSIANS_STD * rng.standard_normal((n, 2))


def _pinwheel(n, rng):
    # 5 arms; radial coordinate N(1, 0.3), tangential N(0, 0.1), arm bent by 0.25 exp(radial)
    arm = rng.permutation(np.arange(n) % 5)
    radial = 1.0 + 0.3 * rng.standard_normal(n)
    tangential = 0.1 * rng.standard_normal(n)
    angle = arm * (2 * np.pi / 5) + 0.25 * np.exp(radial)
    c, s = np.cos(angle), np.sin(angle)
    # FFJORD's einsum("ti,tij->tj") with rows [[c, -s], [s, c]] rotates by -angle
    return 2.0 * np.stack([radial * c + tangential * s, -radial * s + tangential * c], axis=1)


def _checkerboard(n, rng):
    x1 = rng.uniform(-2.0, 2.0, n)
    x2 = rng.random(n) - 2.0 * rng.integers(2, size=n) + np.floor(x1) % 2
    return 2.0 * np.stack([x1, x2], axis=1)


def _two_spirals(n, rng):
    theta = np.sqrt(rng.random(n)) * (540.0 * np.pi / 180.0)  # up to 1.5 turns
    arm = np.where(rng.permutation(np.arange(n) % 2) == 0, 1.0, -1.0)
    x = -np.cos(theta) * theta + 0.5 * rng.random(n)
    y = np.sin(theta) * theta + 0.5 * rng.random(n)
    pts = arm[:, None] * np.stack([x, y], axis=1) / 3.0
    return pts + 0.1 * rng.standard_normal((n, 2))


def _moons(n, rng):
    # scikit-learn's make_moons (n // 2 outer), noise 0.1, then * 2 + (-1, -0.2)
    inner = rng.permutation(np.arange(n) >= n // 2)
    theta = rng.uniform(0.0, np.pi, n)
    x = np.where(inner, 1.0 - np.cos(theta), np.cos(theta))
    y = np.where(inner, 0.5 - np.sin(theta), np.sin(theta))
    pts = np.stack([x, y], axis=1) + 0.1 * rng.standard_normal((n, 2))
    return 2.0 * pts + np.array([-1.0, -0.2])


def _circles(n, rng):
    # scikit-learn's make_circles(factor=0.5, noise=0.08) (n // 2 outer), then * 3
    radius = np.where(rng.permutation(np.arange(n) >= n // 2), 0.5, 1.0)
    theta = rng.uniform(0.0, 2 * np.pi, n)
    pts = radius[:, None] * np.stack([np.cos(theta), np.sin(theta)], axis=1)
    return 3.0 * (pts + 0.08 * rng.standard_normal((n, 2)))


def _rings(n, rng):
    # radii 3 * (1, 0.75, 0.5, 0.25), n // 4 points on each of the outer three,
    # the rest on the innermost; noise 0.08 added after scaling
    q = n // 4
    which = np.full(n, 3)
    which[: 3 * q] = np.repeat(np.arange(3), q)
    radius = 3.0 * np.array([1.0, 0.75, 0.5, 0.25])[rng.permutation(which)]
    theta = rng.uniform(0.0, 2 * np.pi, n)
    pts = radius[:, None] * np.stack([np.cos(theta), np.sin(theta)], axis=1)
    return pts + 0.08 * rng.standard_normal((n, 2))


def _swissroll(n, rng):
    # scikit-learn's make_swiss_roll(noise=1.0) keeps (x, z) = t (cos t, sin t) + N(0, 1), / 5
    t = 1.5 * np.pi * (1.0 + 2.0 * rng.random(n))
    pts = t[:, None] * np.stack([np.cos(t), np.sin(t)], axis=1)
    return (pts + rng.standard_normal((n, 2))) / 5.0


_SAMPLERS = {
    "8gaussians": _gaussians8,
    "pinwheel": _pinwheel,
    "checkerboard": _checkerboard,
    "2spirals": _two_spirals,
    "moons": _moons,
    "circles": _circles,
    "rings": _rings,
    "swissroll": _swissroll,
}
TOY2D_NAMES = tuple(_SAMPLERS)


def sample_toy2d(name: str, n: int, rng) -> np.ndarray:
    """Draw ``n`` points from one of FFJORD's 2-D toy distributions.

    Parameters
    ----------
    name : str
        One of ``TOY2D_NAMES``: ``8gaussians``, ``pinwheel``, ``checkerboard``,
        ``2spirals``, ``moons``, ``circles``, ``rings``, ``swissroll``.
    n : int
        Number of points, >= 1.
    rng : numpy.random.Generator or int
        Source of randomness (an int is used as a seed); the same state gives the
        same points.

    Returns
    -------
    ndarray, shape (n, 2), float64
        The points, in a random order (classes / arms / rings interleaved).

    Raises
    ------
    InputError
        If ``name`` is unknown (the message lists the valid names) or ``n < 1``.
    InputTypeError
        If ``n`` is not an int or ``rng`` is not a Generator or seed.

    References
    ----------
    .. [1] W. Grathwohl, R. T. Q. Chen, J. Bettencourt, I. Sutskever, D. Duvenaud,
       "FFJORD: Free-form Continuous Dynamics for Scalable Reversible Generative
       Models", ICLR 2019, §4.1; rtqichen/ffjord ``lib/toy_data.py``.
    """
    sampler = _SAMPLERS.get(name) if isinstance(name, str) else None
    if sampler is None:
        raise InputError(f"`name` must be one of {', '.join(TOY2D_NAMES)}; got {name!r}")
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise InputTypeError(f"`n` must be an int; got {type(n).__name__} {n!r}")
    if n < 1:
        raise InputError(f"`n` must be >= 1; got {n}")
    try:
        rng = np.random.default_rng(rng)
    except (TypeError, ValueError) as exc:
        raise InputTypeError(f"`rng` must be a numpy.random.Generator or an int seed; "
                             f"got {type(rng).__name__}") from exc
    return np.ascontiguousarray(sampler(int(n), rng), dtype=np.float64)


def _points(z, name) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    if z.ndim == 0 or z.shape[-1] != 2:
        raise ShapeError(f"`{name}` must have shape (..., 2); got {z.shape}")
    return z


def log_prob_8gaussians(x) -> np.ndarray:
    """Exact log-density of the ``8gaussians`` distribution of :func:`sample_toy2d`.

    An equal-weight mixture of 8 isotropic Gaussians with std
    ``EIGHT_GAUSSIANS_STD = 0.5 / 1.414`` centred at ``EIGHT_GAUSSIANS_RADIUS *
    (cos(k pi/4), sin(k pi/4))``, ``EIGHT_GAUSSIANS_RADIUS = 4 / 1.414``, k = 0..7
    (FFJORD's generator: centres at radius 4, noise std 0.5, all divided by 1.414)::

        log p(x) = logsumexp_k(-|x - mu_k|^2 / (2 s^2)) - log 8 - log(2 pi s^2)

    Parameters
    ----------
    x : array_like, shape (..., 2)
        Points.

    Returns
    -------
    ndarray, shape (...), float64
        ``log p(x)`` in nats.

    Raises
    ------
    ShapeError
        If the last axis of ``x`` is not of length 2.
    """
    x = _points(x, "x")
    s2 = EIGHT_GAUSSIANS_STD ** 2
    sq = np.sum((x[..., None, :] - _CENTERS8) ** 2, axis=-1)  # (..., 8)
    e = -sq / (2 * s2)
    m = e.max(axis=-1)
    return m + np.log(np.exp(e - m[..., None]).sum(axis=-1)) - np.log(8.0) - np.log(2 * np.pi * s2)


def _log_add_exp_neg_half_sq(u, v):
    """log(exp(-u^2/2) + exp(-v^2/2)), stable."""
    return np.logaddexp(-0.5 * u ** 2, -0.5 * v ** 2)


def _energy(name, z1, z2):
    w1 = np.sin(2 * np.pi * z1 / 4)
    if name == "U1":
        r = np.hypot(z1, z2)
        return 0.5 * ((r - 2) / 0.4) ** 2 - _log_add_exp_neg_half_sq((z1 - 2) / 0.6, (z1 + 2) / 0.6)
    if name == "U2":
        return 0.5 * ((z2 - w1) / 0.4) ** 2
    if name == "U3":
        w2 = 3 * np.exp(-0.5 * ((z1 - 1) / 0.6) ** 2)
        return -_log_add_exp_neg_half_sq((z2 - w1) / 0.35, (z2 - w1 + w2) / 0.35)
    # U4
    w3 = 1.5 * (1 + np.tanh((z1 - 1) / 0.6))  # = 3 sigma((z1 - 1) / 0.3), no overflow
    return -_log_add_exp_neg_half_sq((z2 - w1) / 0.4, (z2 - w1 + w3) / 0.35)


TARGET_NAMES = ("U1", "U2", "U3", "U4")


def log_target(name: str, z) -> np.ndarray:
    """Unnormalised log-density ``-U(z)`` of a Rezende & Mohamed (2015) target.

    The four energies of Rezende & Mohamed (2015), Table 1, with
    ``w1 = sin(2 pi z1 / 4)``, ``w2 = 3 exp(-((z1 - 1) / 0.6)^2 / 2)``,
    ``w3 = 3 sigma((z1 - 1) / 0.3)``, ``sigma(x) = 1 / (1 + exp(-x))``::

        U1 = ((|z| - 2) / 0.4)^2 / 2 - log(exp(-((z1 - 2)/0.6)^2/2) + exp(-((z1 + 2)/0.6)^2/2))
        U2 = ((z2 - w1) / 0.4)^2 / 2
        U3 = -log(exp(-((z2 - w1)/0.35)^2/2) + exp(-((z2 - w1 + w2)/0.35)^2/2))
        U4 = -log(exp(-((z2 - w1)/0.4)^2/2)  + exp(-((z2 - w1 + w3)/0.35)^2/2))

    and ``p(z) proportional to exp(-U(z))``. These are the density-matching targets
    (minimise KL(q || p)) of the planar NF vs planar CNF comparison in Chen et al.
    (2018), §4.1, Fig. 4. Only ``U1`` is normalisable on the plane: ``exp(-U2..U4)``
    does not decay along ``z1``, so (as Rezende & Mohamed's plots) use them on a
    bounded window such as [-4, 4]^2 or expect ``q`` to drift along ``z1``.

    Parameters
    ----------
    name : str
        ``"U1"``, ``"U2"``, ``"U3"`` or ``"U4"`` (``TARGET_NAMES``).
    z : array_like, shape (..., 2)
        Points.

    Returns
    -------
    ndarray, shape (...), float64
        ``-U(z)`` in nats, up to an additive constant.

    Raises
    ------
    InputError
        If ``name`` is not one of ``TARGET_NAMES`` (the message lists them).
    ShapeError
        If the last axis of ``z`` is not of length 2.

    References
    ----------
    .. [1] D. J. Rezende, S. Mohamed, "Variational Inference with Normalizing Flows",
       ICML 2015, Table 1 and Fig. 3.
    .. [2] R. T. Q. Chen et al., "Neural Ordinary Differential Equations", NeurIPS 2018,
       §4.1 and Fig. 4.
    """
    if not isinstance(name, str) or name not in TARGET_NAMES:
        raise InputError(f"`name` must be one of {', '.join(TARGET_NAMES)}; got {name!r}")
    z = _points(z, "z")
    return -_energy(name, z[..., 0], z[..., 1])
