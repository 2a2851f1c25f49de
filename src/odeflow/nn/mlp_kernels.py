"""Jitted kernel of the fused MLP's backward pass: activation derivative and bias gradient.

Imported on the first fused VJP only (``import odeflow`` and ``import
odeflow.nn`` load no Numba), compiled on first call and cached on disk
(:func:`odeflow.solvers.jit.kernel`).

Each activation's derivative is written in terms of its *output* ``a =
act(z)``, which the forward pass keeps anyway, so the pre-activation ``z`` need
not be stored:

=========  ==========================  =========================================
code       activation ``a = act(z)``   ``d act / d z`` from ``a``
=========  ==========================  =========================================
0          tanh                        ``1 - a^2``
1          relu                        ``1 if a > 0 else 0`` (subgradient 0 at 0)
2          sigmoid                     ``a (1 - a)``
3          softplus                    ``sigmoid(z) = 1 - e^(-a) = -expm1(-a)``
4          elu (``alpha > 0``)         ``1 if a > 0 else a + alpha``
5          identity                    ``1``
=========  ==========================  =========================================

(softplus: ``e^(-a) = 1 / (1 + e^z)``, so ``1 - e^(-a) = e^z / (1 + e^z)``.)
"""
from __future__ import annotations

import math

import numpy as np

from odeflow.nn.fused_mlp import ELU, RELU, SIGMOID, SOFTPLUS, TANH
from odeflow.solvers.jit import kernel

__all__ = ["activation_backward"]


@kernel
def activation_backward(g, a, code, alpha, dz, db, with_bias):
    """``dz = g * act'(a)`` elementwise, and ``db = sum(dz, axis=0)`` when `with_bias`.

    Parameters
    ----------
    g : ndarray, shape (n, m)
        Gradient with respect to the layer's output ``a``.
    a : ndarray, shape (n, m)
        The layer's output (after the activation).
    code : int
        The activation (table in the module docstring).
    alpha : float
        ELU's ``alpha`` (ignored by the others).
    dz : ndarray, shape (n, m), same dtype; may be `g` itself
        Receives the gradient with respect to the pre-activation.
    db : ndarray, shape (m,), or any 1-D array when not `with_bias`
        Receives the column sums of `dz` (the bias gradient) when `with_bias`.
    with_bias : bool

    The bias sum is accumulated in float64 (and stored in `db`'s dtype). No
    temporaries, where NumPy's ``g * (1 - a*a)`` makes three arrays.
    """
    n, m = g.shape
    # one loop per activation: a branch inside the loop would stop it from vectorising
    if code == TANH:
        for i in range(n):
            for j in range(m):
                dz[i, j] = g[i, j] * (1.0 - a[i, j] * a[i, j])
    elif code == RELU:
        for i in range(n):
            for j in range(m):
                dz[i, j] = g[i, j] if a[i, j] > 0 else g[i, j] * 0.0
    elif code == SIGMOID:
        for i in range(n):
            for j in range(m):
                dz[i, j] = g[i, j] * (a[i, j] * (1.0 - a[i, j]))
    elif code == SOFTPLUS:
        for i in range(n):
            for j in range(m):
                dz[i, j] = g[i, j] * -math.expm1(-a[i, j])
    elif code == ELU:
        for i in range(n):
            for j in range(m):
                dz[i, j] = g[i, j] if a[i, j] > 0 else g[i, j] * (a[i, j] + alpha)
    else:
        for i in range(n):
            for j in range(m):
                dz[i, j] = g[i, j]
    if with_bias:
        total = np.zeros(m)  # local: unlike `db` it cannot alias `dz`, so this loop vectorises too
        for i in range(n):
            for j in range(m):
                total[j] += dz[i, j]
        for j in range(m):
            db[j] = total[j]
