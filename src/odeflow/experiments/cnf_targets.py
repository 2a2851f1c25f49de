"""The density-matching targets of the CNF experiment (Rezende & Mohamed 2015, Table 1).

Of Rezende & Mohamed's energies only ``U1`` is normalisable on the plane:
``exp(-U2)`` and ``exp(-U3)`` do not decay along ``z1``, so ``KL(q || p)`` has
no minimum. We use ``U1`` as it is, and ``U2``, ``U3`` times a Gaussian
envelope ``exp(-z1^2 / (2 * 2^2))`` that keeps their shape on [-4, 4]^2 and
makes them normalisable; ``log Z`` comes from quadrature
(:func:`log_normaliser`).

References
----------
.. [1] D. J. Rezende, S. Mohamed, "Variational Inference with Normalizing Flows",
   ICML 2015, Table 1 (the energies U1-U4).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["MATCH_TARGETS", "ENVELOPE_STD", "target_log_density", "target_log_density_np",
           "log_normaliser", "mean_se"]

MATCH_TARGETS = ("U1", "U2", "U3")
ENVELOPE_STD = 2.0  # std of the Gaussian envelope along z1 that makes U2, U3 normalisable
_ENVELOPED = ("U2", "U3")


def mean_se(values):
    """Mean and standard error of the mean of `values`."""
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(values.size))


def _logaddexp_half_sq(u, v):
    """``log(exp(-u^2/2) + exp(-v^2/2))`` on Tensors (stable, through logsumexp)."""
    from odeflow.autodiff import ops
    return ops.logsumexp(ops.stack([-0.5 * u * u, -0.5 * v * v], axis=-1), axis=-1)


def target_log_density(name, z):
    """Unnormalised log-density ``log p~(z)`` of a density-matching target, on Tensors.

    ``-U(z)`` of Rezende & Mohamed (2015), Table 1, minus ``z1^2 / (2 * 2^2)``
    for ``U2`` and ``U3`` (see the module docstring). Written with odeflow ops
    so that the loss can be differentiated; the NumPy reference is
    :func:`odeflow.data.toy2d.log_target`.

    Parameters
    ----------
    name : {"U1", "U2", "U3"}
    z : Tensor, shape (batch, 2)

    Returns
    -------
    Tensor, shape (batch,), nats (up to the constant ``log Z``)

    Raises
    ------
    InputError
        Unknown `name`.
    """
    from odeflow.autodiff import ops
    from odeflow.errors import InputError
    if name not in MATCH_TARGETS:
        raise InputError(f"`name` must be one of {', '.join(MATCH_TARGETS)}; got {name!r}")
    z1, z2 = z[:, 0], z[:, 1]
    if name == "U1":
        r = ops.sqrt(z1 * z1 + z2 * z2)
        return -0.5 * ((r - 2.0) / 0.4) ** 2 + _logaddexp_half_sq((z1 - 2.0) / 0.6, (z1 + 2.0) / 0.6)
    w1 = ops.sin((0.5 * math.pi) * z1)
    envelope = -0.5 * (z1 / ENVELOPE_STD) ** 2
    if name == "U2":
        return -0.5 * ((z2 - w1) / 0.4) ** 2 + envelope
    w2 = 3.0 * ops.exp(-0.5 * ((z1 - 1.0) / 0.6) ** 2)
    return _logaddexp_half_sq((z2 - w1) / 0.35, (z2 - w1 + w2) / 0.35) + envelope


def target_log_density_np(name, z):
    from odeflow.data.toy2d import log_target
    z = np.asarray(z, dtype=np.float64)
    out = log_target(name, z)
    if name in _ENVELOPED:
        out = out - 0.5 * (z[..., 0] / ENVELOPE_STD) ** 2
    return out


def log_normaliser(name, half_width=8.0, n=801):
    """``log Z = log of the integral of p~`` by the trapezoidal rule on ``[-w, w]^2``.

    With the defaults (``w = 8``, spacing 0.02) the grid resolves the narrowest
    feature (width 0.35) with 17 points and the mass outside the square is below
    ``1e-4`` of the total for all three targets (envelope: 4 standard deviations).

    Returns
    -------
    float, nats
    """
    g = np.linspace(-half_width, half_width, n)
    zz = np.stack(np.meshgrid(g, g, indexing="ij"), axis=-1)
    logp = target_log_density_np(name, zz)
    m = logp.max()
    weights = np.ones(n)
    weights[[0, -1]] = 0.5
    h = g[1] - g[0]
    return float(m + np.log(np.einsum("i,j,ij->", weights, weights, np.exp(logp - m)) * h * h))
