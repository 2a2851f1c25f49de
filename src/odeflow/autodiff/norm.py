"""Group normalisation (Wu & He 2018) with its per-channel affine map, as one fused op.

For a batch ``x`` of shape ``(N, C, *spatial)`` split into ``G`` groups of
``C / G`` channels, each sample's group is standardised over its channels and
pixels together (``M = C / G * prod(spatial)`` numbers)::

    mu = mean(x_g),  var = mean((x_g - mu)**2)          (population variance)
    xhat = (x_g - mu) * r,   r = (var + eps) ** -1/2    (Wu & He 2018, eqs. 1-2)
    y = gamma[c] * xhat + beta[c]                       (per channel, eq. 3)

Unlike batch norm nothing depends on the other samples of the batch, so
training and evaluation compute the same function and an ODE right-hand side
using it is an honest function of its state.

Normalisation and affine map are one node: its forward pass and its VJP
are fused jitted kernels (:mod:`odeflow.autodiff.norm_kernels`), the VJP from
``d xhat_i / d x_j = r (delta_ij - 1/M - xhat_i xhat_j / M)``::

    dL/dx = r * (gh - mean(gh) - xhat * mean(gh * xhat)),   gh = gamma * g
    dL/dgamma = sum(g * xhat),   dL/dbeta = sum(g)

(means per sample and group, sums over samples and pixels). When the
backward pass is itself recorded (higher derivatives) the same VJP is built
from engine ops instead (:func:`_recorded_vjp`), with ``xhat`` and ``r`` as
nodes depending on ``x``: ``r`` by :func:`_inv_std`, with its own VJP
``-r**3 (x - mu) / M``.

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
from odeflow.autodiff.ops import sum as sum_
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


def group_norm(x, num_groups: int, weight=None, bias=None, eps: float = 1e-5, relu: bool = False):
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
    relu : bool, default False
        Return ``relu(group_norm(x, ...))`` from the same node (the ODE-Net's
        GN -> ReLU pairs): the output is clipped in place and the VJP masks
        the gradient by ``y > 0`` first, which saves the ReLU node's array
        and pass each way.

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
    if not 0 < eps < np.inf:  # an infinite eps made every output 0 (or beta)
        raise InputError(f"`eps` must be positive and finite; got {eps!r}")
    weight = None if weight is None else _t(weight)
    bias = None if bias is None else _t(bias)
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None and p.shape != (c,):
            raise ShapeError(f"group_norm: `{name}` must have shape ({c},); got shape {p.shape}")
    return _fused_group_norm(x, int(num_groups), weight, bias, float(eps), bool(relu))


def _fused_group_norm(x, groups: int, weight, bias, eps: float, relu: bool = False):
    """:func:`group_norm` after its checks: one node, forward and VJP by the fused kernels.

    While a backward pass is being recorded (second derivatives) the VJP is
    built from engine ops instead (:func:`_recorded_vjp`): same values, and
    differentiable again.
    """
    from odeflow.autodiff import norm_kernels as K  # Numba, on first use
    n, c = x.shape[:2]
    data = x.data if x.dtype.kind == "f" else x.data.astype(np.float64)
    x3 = data.reshape(n, c, -1)  # a view for contiguous and channels-last images
    gamma = np.ones(c, data.dtype) if weight is None else weight.data
    beta = np.zeros(c, data.dtype) if bias is None else bias.data
    parents = tuple(p for p in (x, weight, bias) if p is not None)
    recording = _mode.enabled and any(p.requires_grad for p in parents)
    out_dtype = np.result_type(data.dtype, gamma.dtype, beta.dtype)
    y = np.empty(x3.shape, out_dtype)
    # xhat is kept for the VJP only; without one the kernel writes it into y, then y over it
    separate = weight is not None or bias is not None or relu
    xhat = np.empty(x3.shape, data.dtype) if recording and separate else y
    r = np.empty((n, groups), data.dtype)
    # a convolution's channels-last output is read in its own order
    x_cl = x3.transpose(0, 2, 1)
    if x3.shape[2] > 1 and not x3.flags.c_contiguous and x_cl.flags.c_contiguous:
        K.group_norm_forward_channels_last(x_cl, groups, eps, gamma, beta, xhat, y, r)
    else:
        K.group_norm_forward(x3, groups, eps, gamma, beta, xhat, y, r)
    if relu:
        np.maximum(y, 0, out=y)
    y = y.reshape(x.shape)
    if not recording:
        return _wrap(y)

    def vjp(g, out):
        if relu:  # the ReLU's VJP first: its derivative is 1 where the output is positive
            mask = out.data > 0
            g = g * _wrap(mask.astype(g.dtype)) if _mode.enabled else _wrap(g.data * mask)
        if _mode.enabled:  # recording the backward pass: engine ops, differentiable again
            return _recorded_vjp(g, x, groups, weight, bias, eps)
        g3 = g.data.reshape(x3.shape)
        dx = np.empty(x3.shape, g3.dtype)
        dgamma, dbeta = np.empty(c), np.empty(c)
        K.group_norm_backward(g3, xhat, r, gamma, dx, dgamma, dbeta)
        grads = [_wrap(dx.reshape(x.shape))]
        if weight is not None:
            grads.append(_wrap(dgamma.astype(weight.dtype)))
        if bias is not None:
            grads.append(_wrap(dbeta.astype(bias.dtype)))
        return grads

    return _wrap(y, parents, vjp)


def _recorded_vjp(g, x, groups: int, weight, bias, eps: float):
    """The VJP of :func:`group_norm` as engine ops on `x`, `g` and the parameters.

    ``dL/dx = r * (gh - mean(gh) - xhat * mean(gh * xhat))`` per group with
    ``gh = gamma * g``, ``dL/dgamma = sum(g * xhat)``, ``dL/dbeta = sum(g)``
    (sums over every axis but the channels), with ``xhat`` and ``r`` rebuilt
    as nodes depending on `x` so that the result can be differentiated again.
    """
    n, c = x.shape[:2]
    grouped = (n, groups, -1)
    per_channel = (1, c) + (1,) * (x.ndim - 2)
    others = (0,) + tuple(range(2, x.ndim))
    xg = reshape(x, grouped)
    xhat = _standardize(xg, eps)
    gh = g if weight is None else g * reshape(weight, per_channel)
    gh = reshape(gh, grouped)
    dx = _inv_std(xg, eps) * (gh - mean(gh, axis=-1, keepdims=True)
                              - xhat * mean(gh * xhat, axis=-1, keepdims=True))
    grads = [reshape(dx, x.shape)]
    if weight is not None:
        grads.append(sum_(g * reshape(xhat, x.shape), others))
    if bias is not None:
        grads.append(sum_(g, others))
    return grads
