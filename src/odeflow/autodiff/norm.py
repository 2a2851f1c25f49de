"""Group normalisation (Wu & He 2018) as one fused op plus an affine map.

For a batch ``x`` of shape ``(N, C, *spatial)`` split into ``G`` groups of
``C / G`` channels, each sample's group is standardised over its channels and
pixels together (``M = C / G * prod(spatial)`` numbers)::

    mu = mean(x_g),  var = mean((x_g - mu)**2)          (population variance)
    xhat = (x_g - mu) * r,   r = (var + eps) ** -1/2    (Wu & He 2018, eqs. 1-2)
    y = gamma[c] * xhat + beta[c]                       (per channel, eq. 3)

Unlike batch norm nothing depends on the other samples of the batch, so
training and evaluation compute the same function and an ODE right-hand side
using it is an honest function of its state.

The standardisation is one node (four passes over the data instead of the
nine of its composite form) with the VJP, from ``d xhat_i / d x_j =
r (delta_ij - 1/M - xhat_i xhat_j / M)``::

    dL/dx = r * (g - mean(g) - xhat * mean(g * xhat))

written with engine ops on the output ``xhat`` and on ``r``. For higher
derivatives ``r`` must itself be a node depending on ``x``; it is rebuilt as
one (:func:`_inv_std`, with its own VJP ``-r**3 (x - mu) / M``) only when
the backward pass is being recorded, and read from the forward pass otherwise.

References
----------
.. [1] Y. Wu, K. He, "Group normalization", ECCV 2018, §3.1, eqs. 1-3, and
   Fig. 3 (the reference code: groups over channels and pixels).
.. [2] S. Ioffe, C. Szegedy, "Batch normalization", ICML 2015, §3 (the
   gradient of a standardisation, derived there for batch statistics).
"""
from __future__ import annotations

import numbers

import numpy as np

from odeflow.autodiff.ops import _node, _t, mean, reshape
from odeflow.autodiff.tensor import _mode, _wrap
from odeflow.errors import InputError, ShapeError

__all__ = ["group_norm"]


def _inv_std(x, eps: float):
    """``(var(x) + eps) ** -1/2`` over the last axis, kept: ``(..., M) -> (..., 1)``."""
    x = _t(x)
    m = x.shape[-1]
    centred = x.data - x.data.mean(axis=-1, keepdims=True)
    r = 1.0 / np.sqrt(np.mean(centred * centred, axis=-1, keepdims=True) + eps)
    return _node(r.astype(x.dtype, copy=False), (x,),
                 lambda g, out: (g * out ** 3) * (mean(x, axis=-1, keepdims=True) - x) / m)


def _standardize(x, eps: float):
    """``(x - mean) / sqrt(var + eps)`` over the last axis of `x` ``(..., M)``."""
    x = _t(x)
    centred = x.data - x.data.mean(axis=-1, keepdims=True)
    r = 1.0 / np.sqrt(np.mean(centred * centred, axis=-1, keepdims=True) + eps)
    r = r.astype(x.dtype, copy=False)
    centred *= r  # now xhat

    def vjp(g, out):
        # r as a node when this backward pass is recorded (second derivatives need
        # dr/dx); otherwise the forward value, which costs nothing
        rr = _inv_std(x, eps) if _mode.enabled else _wrap(r)
        return rr * (g - mean(g, axis=-1, keepdims=True)
                     - out * mean(g * out, axis=-1, keepdims=True))

    return _node(centred, (x,), vjp)


def group_norm(x, num_groups: int, weight=None, bias=None, eps: float = 1e-5):
    """Group normalisation of images (or any ``(N, C, ...)`` batch).

    Parameters
    ----------
    x : Tensor, shape (N, C, *spatial), float
    num_groups : int
        ``G``, a divisor of ``C``. ``G = C`` is instance norm, ``G = 1`` layer
        norm over channels and pixels.
    weight, bias : Tensor, shape (C,), optional
        Per-channel scale ``gamma`` and shift ``beta`` (Wu & He 2018, eq. 3).
    eps : float, default 1e-5
        Added to the variance (PyTorch's default).

    Returns
    -------
    Tensor, shape and dtype of `x`

    Raises
    ------
    ShapeError
        `x` has fewer than 2 axes, or `weight`/`bias` is not ``(C,)``.
    InputError
        `num_groups` does not divide ``C``, or `eps` is not positive.

    References
    ----------
    .. [1] Y. Wu, K. He, "Group normalization", ECCV 2018, §3.1.
    """
    x = _t(x)
    if x.ndim < 2:
        raise ShapeError(f"group_norm: `x` must have shape (N, C, ...); got shape {x.shape}")
    n, c = x.shape[:2]
    if (isinstance(num_groups, bool) or not isinstance(num_groups, numbers.Integral)
            or num_groups < 1 or c % num_groups):
        raise InputError(f"`num_groups` must be a positive divisor of the {c} channels; "
                         f"got {num_groups!r}")
    if not eps > 0:
        raise InputError(f"`eps` must be positive; got {eps!r}")
    weight = None if weight is None else _t(weight)
    bias = None if bias is None else _t(bias)
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None and p.shape != (c,):
            raise ShapeError(f"group_norm: `{name}` must have shape ({c},); got shape {p.shape}")
    xhat = reshape(_standardize(reshape(x, (n, int(num_groups), -1)), float(eps)), x.shape)
    per_channel = (1, c) + (1,) * (x.ndim - 2)
    if weight is not None:
        xhat = xhat * reshape(weight, per_channel)
    if bias is not None:
        xhat = xhat + reshape(bias, per_channel)
    return xhat
