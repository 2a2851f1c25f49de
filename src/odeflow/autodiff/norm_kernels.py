"""Jitted kernels of group normalisation: the fused forward pass and its VJP.

Imported on the first :func:`odeflow.autodiff.norm.group_norm` only
(``import odeflow`` loads no Numba), compiled on first call and cached on
disk (:func:`odeflow.solvers.jit.kernel`).

The input is seen as ``(N, C, M)`` (``M`` pixels per channel, any strides: a
convolution's channels-last output is read where it lies), group ``g`` being
channels ``g * C/G .. (g + 1) * C/G - 1``. Sums are accumulated in float64
whatever the dtype (the element arithmetic too, rounded once on storing), and
the inverse standard deviation ``r`` is rounded to the data's dtype before
use, as the NumPy formulation does. Each kernel makes
two passes over a group (statistics, then output) instead of the nine array
operations of the composite form, and writes the standardised values, the
affine output and (backward) all three gradients in those passes.

References
----------
.. [1] Y. Wu, K. He, "Group normalization", ECCV 2018, §3.1, eqs. 1-3.
.. [2] S. Ioffe, C. Szegedy, "Batch normalization", ICML 2015, §3 (the
   gradient of a standardisation).
"""
from __future__ import annotations

import math

import numpy as np

from odeflow.solvers.jit import kernel

__all__ = ["group_norm_forward", "group_norm_forward_channels_last", "group_norm_backward"]


@kernel
def group_norm_forward(x, groups, eps, gamma, beta, xhat, y, r):
    """Standardise each (sample, group) of `x` and apply ``gamma[c] * xhat + beta[c]``.

    Parameters
    ----------
    x : ndarray, shape (N, C, M), float, any strides
    groups : int
        ``G``, a divisor of ``C``.
    eps : float
        Added to the (population) variance.
    gamma, beta : ndarray, shape (C,)
        Scale and shift (ones and zeros for none).
    xhat, y : ndarray, shape (N, C, M), dtype of `x`
        Receive ``(x - mu) * r`` and the affine output; `y` may be `xhat`.
    r : ndarray, shape (N, G), dtype of `x`
        Receives ``(var + eps) ** -1/2``.
    """
    n_img, n_ch, m = x.shape
    cpg = n_ch // groups
    count = cpg * m
    for n in range(n_img):
        for g in range(groups):
            c0 = g * cpg
            total = 0.0
            for c in range(c0, c0 + cpg):
                for k in range(m):
                    total += x[n, c, k]
            mu = total / count
            ss = 0.0
            for c in range(c0, c0 + cpg):
                for k in range(m):
                    d = x[n, c, k] - mu
                    ss += d * d
            r[n, g] = 1.0 / math.sqrt(ss / count + eps)
            rg = r[n, g]  # read back in the data's dtype, as the NumPy formulation rounds it
            for c in range(c0, c0 + cpg):
                a, b = gamma[c], beta[c]
                for k in range(m):
                    v = (x[n, c, k] - mu) * rg
                    xhat[n, c, k] = v
                    y[n, c, k] = a * v + b


@kernel
def group_norm_forward_channels_last(x_cl, groups, eps, gamma, beta, xhat, y, r):
    """:func:`group_norm_forward` for images stored channels-last: `x_cl` is ``(N, M, C)``.

    A convolution's output is a channels-last buffer; reading it pixel by
    pixel with the channels innermost keeps every load unit-stride and lets
    the per-channel sums run side by side (then they are added per group),
    where :func:`group_norm_forward` on its ``(N, C, M)`` view would stride by
    ``C`` between neighbouring reads. Same results (`xhat`, `y` ``(N, C, M)``,
    `r` ``(N, G)``), the sums added in a different order (equal to rounding).
    """
    n_img, m, n_ch = x_cl.shape
    cpg = n_ch // groups
    count = cpg * m
    s_c = np.empty(n_ch)
    mu_c = np.empty(n_ch)
    r_c = np.empty(n_ch, r.dtype)
    for n in range(n_img):
        s_c[:] = 0.0
        for k in range(m):
            for c in range(n_ch):
                s_c[c] += x_cl[n, k, c]
        for g in range(groups):
            total = 0.0
            for c in range(g * cpg, (g + 1) * cpg):
                total += s_c[c]
            for c in range(g * cpg, (g + 1) * cpg):
                mu_c[c] = total / count
        s_c[:] = 0.0
        for k in range(m):
            for c in range(n_ch):
                d = x_cl[n, k, c] - mu_c[c]
                s_c[c] += d * d
        for g in range(groups):
            ss = 0.0
            for c in range(g * cpg, (g + 1) * cpg):
                ss += s_c[c]
            r[n, g] = 1.0 / math.sqrt(ss / count + eps)
            for c in range(g * cpg, (g + 1) * cpg):
                r_c[c] = r[n, g]  # in the data's dtype, as the NumPy formulation rounds it
        for c in range(n_ch):
            a, b, mc, rc = gamma[c], beta[c], mu_c[c], r_c[c]
            for k in range(m):
                v = (x_cl[n, k, c] - mc) * rc
                xhat[n, c, k] = v
                y[n, c, k] = a * v + b


@kernel
def group_norm_backward(g, xhat, r, gamma, dx, dgamma, dbeta):
    """The VJP of :func:`group_norm_forward` for an output gradient `g`.

    ``dx = r * (gh - mean(gh) - xhat * mean(gh * xhat))`` per group with
    ``gh = gamma[c] * g``; ``dgamma[c] = sum_{n, k} g * xhat``,
    ``dbeta[c] = sum_{n, k} g``.

    Parameters
    ----------
    g : ndarray, shape (N, C, M), float, any strides
    xhat : ndarray, shape (N, C, M)
        The forward pass's standardised values.
    r : ndarray, shape (N, G)
        The forward pass's inverse standard deviations.
    gamma : ndarray, shape (C,)
    dx : ndarray, shape (N, C, M)
        Receives the input gradient.
    dgamma, dbeta : ndarray, shape (C,), float64
        Receive the scale and shift gradients (overwritten).
    """
    n_img, n_ch, m = g.shape
    groups = r.shape[1]
    cpg = n_ch // groups
    count = cpg * m
    dgamma[:] = 0.0
    dbeta[:] = 0.0
    for n in range(n_img):
        for grp in range(groups):
            c0 = grp * cpg
            s1 = 0.0
            s2 = 0.0
            for c in range(c0, c0 + cpg):
                a = gamma[c]
                sg = 0.0
                sgx = 0.0
                for k in range(m):
                    gk = g[n, c, k]
                    xk = xhat[n, c, k]
                    sg += gk
                    sgx += gk * xk
                dbeta[c] += sg
                dgamma[c] += sgx
                s1 += a * sg
                s2 += a * sgx
            mean_g = s1 / count
            mean_gx = s2 / count
            rg = r[n, grp]
            for c in range(c0, c0 + cpg):
                a = gamma[c]
                for k in range(m):
                    dx[n, c, k] = rg * (a * g[n, c, k] - mean_g - xhat[n, c, k] * mean_gx)
