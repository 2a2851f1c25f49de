"""Convolution and pooling on images ``(N, C, H, W)``, built on two adjoint primitives.

A 2-D convolution (cross-correlation, as in every deep-learning library) is a
matrix product once every receptive field has been copied out as a row: the
*im2col* lowering (Chellapilla, Puri & Simard 2006)::

    patches[n, i, j, p, q, c] = x_pad[n, c, i * s + p, j * s + q]        (im2col)
    y[n, o, i, j] = sum_{p, q, c} patches[n, i, j, p, q, c] * w[o, c, p, q] + b[o]

so ``conv2d`` is ``im2col`` followed by one BLAS GEMM of shape
``(N * OH * OW, C * kh * kw) x (C * kh * kw, O)`` and a transposed view, as
one node. Its VJP is again GEMMs: ``dW = G^T P`` for the patches ``P``, and
``dx = col2im(G W)``, where ``col2im``, the adjoint of ``im2col``, adds every
patch back where it came from (overlapping patches add up); for stride 1 the
same ``dx`` is computed as a convolution of ``G`` with the flipped filters
(the transposed convolution, Dumoulin & Visin 2016, §4), which needs no
scatter-add. The patches are written by a jitted kernel
(:mod:`odeflow.autodiff.conv_kernels`) and made and consumed in chunks of
images that fit in cache. ``ConcatConv2d``'s time channel is written into the
patches by the same kernel (:func:`concat_conv2d`).

For higher derivatives the VJP, when its own pass is recorded, is built from
``im2col``, ``col2im`` and engine products instead: the two primitives are
each other's VJP, like ``getitem`` and ``index_add`` in
:mod:`odeflow.autodiff.ops`, so gradients of any order are right by
construction, with no hand-written second derivative of the convolution.

Pooling: ``avg_pool2d`` is the mean of the patches (a reshape of the image
when the windows tile it), ``global_avg_pool2d`` the mean over the spatial axes.

Shapes follow PyTorch: images ``(N, C, H, W)``, weights ``(O, C, kh, kw)``,
output side ``OH = (H + 2 * padding - kh) // stride + 1``.

References
----------
.. [1] K. Chellapilla, S. Puri, P. Simard, "High performance convolutional
   neural networks for document processing", IWFHR 2006 (unrolling
   convolutions into matrix products).
.. [2] V. Dumoulin, F. Visin, "A guide to convolution arithmetic for deep
   learning", arXiv:1603.07285, 2016, §2 (output sizes with padding and
   stride) and §4 (transposed convolution).
"""
from __future__ import annotations

import builtins
import functools
import math
import numbers

import numpy as np

from odeflow.autodiff.ops import _node, _t, concatenate, mean, reshape, transpose
from odeflow.autodiff.ops import sum as sum_
from odeflow.autodiff.tensor import Tensor, _mode, _wrap
from odeflow.errors import InputError, ShapeError

__all__ = ["im2col", "col2im", "conv2d", "concat_conv2d", "avg_pool2d", "global_avg_pool2d", "conv_output_size"]


def _pair(value, name: str, minimum: int) -> tuple[int, int]:
    """`value` (int or pair of ints) as a pair of ints >= `minimum`."""
    try:
        pair = (value, value) if isinstance(value, numbers.Integral) else tuple(value)
    except TypeError:  # a float or another non-iterable: refused below, by name
        pair = (value,)
    if (len(pair) != 2 or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool)
                                  for v in pair) or min(pair) < minimum):
        raise InputError(f"`{name}` must be an int >= {minimum} or a pair of them; got {value!r}")
    return int(pair[0]), int(pair[1])


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Output length of a convolution or pooling window along one axis.

    ``(size + 2 * padding - kernel) // stride + 1`` (Dumoulin & Visin 2016,
    relationship 6). Zero or negative means the window does not fit.
    """
    return (size + 2 * padding - kernel) // stride + 1


def _geometry(shape, kernel_size, stride, padding):
    """Check an image shape against a window; return ``(kh, kw), (sh, sw), (ph, pw), (OH, OW)``.

    Remembered for hashable arguments (a layer asks the same question at every
    evaluation); a bad one raises every time, as nothing is stored for it.
    """
    try:
        return _geometry_cached(tuple(shape), kernel_size, stride, padding)
    except TypeError:  # unhashable arguments (lists): checked without the cache
        return _check_geometry(tuple(shape), kernel_size, stride, padding)


def _check_geometry(shape, kernel_size, stride, padding):
    if len(shape) != 4:
        raise ShapeError(f"expected images of shape (N, C, H, W); got shape {tuple(shape)}")
    k = _pair(kernel_size, "kernel_size", 1)
    s = _pair(stride, "stride", 1)
    p = _pair(padding, "padding", 0)
    out = tuple(conv_output_size(shape[2 + i], k[i], s[i], p[i]) for i in range(2))
    if min(out) < 1:
        raise ShapeError(f"a window of `kernel_size` {k} with `padding` {p} does not fit images "
                         f"of shape {tuple(shape)} (H, W = {shape[2]}, {shape[3]})")
    return k, s, p, out


_geometry_cached = functools.lru_cache(maxsize=256, typed=True)(_check_geometry)  # True != 1


def im2col(x, kernel_size, stride=1, padding=0):
    """Copy every receptive field of `x` out as one row (zero padding).

    Parameters
    ----------
    x : Tensor or array_like, shape (N, C, H, W), float
    kernel_size : int or (int, int)
        Window ``(kh, kw)``.
    stride : int or (int, int), default 1
    padding : int or (int, int), default 0
        Zeros added on both sides of each spatial axis.

    Returns
    -------
    Tensor, shape (N, OH, OW, kh, kw, C), dtype of `x`
        ``out[n, i, j, p, q, c] = x_pad[n, c, i * sh + p, j * sw + q]``. The
        channel axis is last because the copy is then a run of contiguous
        channel vectors (10-40 times faster than with the window axes last,
        measured on 4x4 and 6x6 maps); a weight ``(O, C, kh, kw)`` matches it
        once transposed to ``(O, kh, kw, C)``. Its VJP is :func:`col2im`.

    Raises
    ------
    ShapeError
        `x` is not 4-D, or the window does not fit.
    InputError
        A non-positive `kernel_size` or `stride`, or a negative `padding`.
    """
    x = _t(x)
    k, s, p, (oh, ow) = _geometry(x.shape, kernel_size, stride, padding)
    n, c, h, w = x.shape
    from odeflow.autodiff.conv_kernels import im2col_into  # Numba, on first use
    # one pass straight from the (N, C, H, W) image: no padded copy, no transpose
    cols = np.empty((n, oh, ow) + k + (c,), dtype=x.dtype)
    im2col_into(x.data, 0.0, 0, s[0], s[1], p[0], p[1], cols)
    return _node(cols, (x,), lambda g, out: col2im(g, x.shape, k, s, p))


def col2im(cols, shape, kernel_size, stride=1, padding=0):
    """Add patches back into an image: the adjoint (and VJP) of :func:`im2col`.

    Parameters
    ----------
    cols : Tensor or array_like, shape (N, OH, OW, kh, kw, C)
    shape : tuple of int
        ``(N, C, H, W)`` of the image the patches were taken from.
    kernel_size, stride, padding
        As for :func:`im2col`.

    Returns
    -------
    Tensor, shape `shape`, dtype of `cols`
        Each pixel receives the sum of its copies in all patches; padding
        positions are dropped. Its VJP is :func:`im2col`.

    Raises
    ------
    ShapeError
        `cols` does not have the shape :func:`im2col` gives for `shape`.
    """
    cols = _t(cols)
    shape = tuple(int(n) for n in shape)
    k, s, p, (oh, ow) = _geometry(shape, kernel_size, stride, padding)
    n, c, h, w = shape
    if cols.shape != (n, oh, ow) + k + (c,):
        raise ShapeError(f"col2im: `cols` has shape {cols.shape}; images of shape {shape} with "
                         f"this window give patches of shape {(n, oh, ow) + k + (c,)}")
    from odeflow.autodiff.conv_kernels import col2im_into  # Numba, on first use
    image = np.empty(shape, dtype=cols.dtype)  # contiguous (N, C, H, W)
    col2im_into(cols.data, 0, s[0], s[1], p[0], p[1], image)
    return _node(image, (cols,), lambda g2, out_: im2col(g2, k, s, p))


def conv2d(x, weight, bias=None, stride=1, padding=0):
    """2-D cross-correlation of images with a bank of filters, zero padding.

    ``y[n, o, i, j] = b[o] + sum_{c, p, q} w[o, c, p, q] * x_pad[n, c, i*sh + p, j*sw + q]``,
    computed as :func:`im2col` followed by one GEMM, as one node.

    Parameters
    ----------
    x : Tensor, shape (N, C, H, W), float
    weight : Tensor, shape (O, C, kh, kw), same dtype
    bias : Tensor, shape (O,), optional
    stride : int or (int, int), default 1
    padding : int or (int, int), default 0

    Returns
    -------
    Tensor, shape (N, O, OH, OW)
        ``OH = (H + 2 * padding - kh) // stride + 1`` and likewise ``OW``. The
        array is a channels-last buffer seen through a transpose (no copy).

    Raises
    ------
    ShapeError
        `x` or `weight` not 4-D, channel counts that differ (both shapes are
        shown), a window that does not fit, or a `bias` that is not ``(O,)``.
    InputError
        Non-positive `stride`, negative `padding`.

    Notes
    -----
    One BLAS product forward and one per gradient (``dW = G^T P`` and
    ``dP = G W`` for the patches ``P``, then :func:`col2im`), all in one
    node; the VJP of the input is skipped when the input needs none (the
    first layer's images). While a backward pass is recorded (second
    derivatives) the VJP is written with :func:`im2col`, :func:`col2im` and
    engine products instead, which are differentiable again: the same values.

    Memory: the patches hold ``N * OH * OW * C * kh * kw`` numbers (9 copies of
    the input for a 3x3 stride-1 window); the graph keeps them until the
    backward walk has used them.

    References
    ----------
    .. [1] K. Chellapilla, S. Puri, P. Simard, IWFHR 2006 (im2col).
    """
    x, weight = _t(x), _t(weight)
    _check_conv(x, weight, 0)
    return _conv(x, weight, bias, stride, padding, None)


def concat_conv2d(t, x, weight, bias=None, stride=1, padding=0):
    """:func:`conv2d` of the images with a constant channel ``t`` in front: ``conv([t * 1, x])``.

    The time channel is written into the patches directly (zero on the
    padding, as the zero-padded constant image), so nothing is concatenated;
    the weight's first input channel multiplies it.

    Parameters
    ----------
    t : float or 0-d Tensor
        The time (a constant: no gradient flows to it through the engine), finite.
    x : Tensor, shape (N, C, H, W), float
    weight : Tensor, shape (O, C + 1, kh, kw)
    bias, stride, padding
        As :func:`conv2d`.

    Returns
    -------
    Tensor, shape (N, O, OH, OW)
        Equal to ``conv2d(concatenate([full((N, 1, H, W), t), x], 1), weight, ...)``.

    Raises
    ------
    ShapeError, InputError
        As :func:`conv2d` (`weight` must have one input channel more than `x`); InputError
        for a `t` that is not one finite real number.

    References
    ----------
    .. [1] R. T. Q. Chen et al., "Neural ordinary differential equations",
       NeurIPS 2018, and its public MNIST example (``ConcatConv2d``).
    """
    # float(t) raised a TypeError for an array and let NaN through (every output NaN); a 0-d
    # Tensor (the adjoint's time) is read as its number, which the time gradients notice
    scalar = t.ndim == 0 if isinstance(t, Tensor) else (
        np.ndim(t) == 0 and not isinstance(t, (bool, np.bool_))
        and isinstance(np.asarray(t).item(), numbers.Real))
    value = float(t) if scalar else math.nan
    if not math.isfinite(value):
        raise InputError(f"concat_conv2d: `t` must be a finite real number; got {t!r}")
    x, weight = _t(x), _t(weight)
    _check_conv(x, weight, 1)
    return _conv(x, weight, bias, stride, padding, value)


def _check_conv(x, weight, lead: int):
    if weight.ndim != 4:
        raise ShapeError(f"conv2d: `weight` must have shape (O, C, kh, kw); got shape {weight.shape}")
    if x.ndim != 4 or x.shape[1] + lead != weight.shape[1]:
        need = weight.shape[1] - lead
        raise ShapeError(f"conv2d: `x` of shape {x.shape} does not fit `weight` of shape "
                         f"{weight.shape} (needs x of shape (N, {need}, H, W))")


# patches are made and consumed in chunks of about this many bytes: a chunk stays in
# cache between the kernel that writes it and the GEMM that reads it, and no patch
# matrix of the whole batch is ever allocated (fresh megabytes per call cost page
# faults and cache misses: 1.5-2x the time of the chunked product on the ODE-Net)
CHUNK_BYTES = 1 << 20


def _chunks(n: int, bytes_per_image: int):
    """``(start, stop)`` image ranges of about :data:`CHUNK_BYTES` of patches, near-equal."""
    per = max(1, CHUNK_BYTES // max(bytes_per_image, 1))
    count = -(-n // per)
    size = -(-n // max(count, 1))
    return [(a, min(a + size, n)) for a in range(0, n, size)]


def _patches(x, value, lead, k, s, p, oh, ow, ct):
    """im2col of the images `x` (ndarray) as a matrix ``(len(x) * OH * OW, kh * kw * ct)``."""
    from odeflow.autodiff.conv_kernels import im2col_into  # Numba, on first use
    cols = np.empty((x.shape[0], oh, ow) + k + (ct,), dtype=x.dtype)
    im2col_into(x, value, lead, s[0], s[1], p[0], p[1], cols)
    return cols.reshape(x.shape[0] * oh * ow, -1)


def _conv(x, weight, bias, stride, padding, time):
    """:func:`conv2d` (``time`` None) or :func:`concat_conv2d` after the shape checks.

    Forward: ``Y = P W^T + b`` chunk by chunk of images (:func:`_chunks`), each
    chunk of patches ``P`` written by the kernel and read by one GEMM while it
    is in cache. With several chunks the node keeps the images, not the
    patches, and the VJP makes them again chunk by chunk for ``dW = G^T P``;
    a single chunk's patches are kept.
    """
    from odeflow.autodiff.conv_kernels import col2im_into  # Numba, on first use
    lead = 0 if time is None else 1
    value = 0.0 if time is None else time
    k, s, p, (oh, ow) = _geometry(x.shape, weight.shape[2:], stride, padding)
    n, c = x.shape[:2]
    o, ct = weight.shape[:2]
    if bias is not None:
        bias = _t(bias)
        if bias.shape != (o,):
            raise ShapeError(f"conv2d: `bias` has shape {bias.shape}; expected {(o,)}")
    w2d = weight.data.transpose(0, 2, 3, 1).reshape(o, -1)  # (O, kh * kw * C), as the patches
    rows = oh * ow  # output pixels per image
    chunks = _chunks(n, rows * w2d.shape[1] * x.dtype.itemsize)
    if len(chunks) == 1:  # small enough to keep for the VJP
        kept = _patches(x.data, value, lead, k, s, p, oh, ow, ct)
        y = kept @ w2d.T  # (N * OH * OW, O): channels last
    else:
        kept = None
        y = np.empty((n * rows, o), dtype=np.result_type(x.dtype, weight.dtype))
        for a, b in chunks:
            np.matmul(_patches(x.data[a:b], value, lead, k, s, p, oh, ow, ct), w2d.T,
                      out=y[a * rows:b * rows])
    if bias is not None:
        y = np.add(y, bias.data, out=y) if y.dtype == bias.dtype else y + bias.data
    y = y.reshape(n, oh, ow, o).transpose(0, 3, 1, 2)
    parents = (x, weight) if bias is None else (x, weight, bias)
    if not (_mode.enabled and builtins.any(q.requires_grad for q in parents)):
        return _wrap(y)

    def vjp(g, out):
        if _mode.enabled:  # recording the backward pass: engine ops, differentiable again
            return _recorded_conv_vjp(g, x, weight, bias, k, s, p, time)
        g2d = g.data.transpose(0, 2, 3, 1).reshape(-1, o)  # (N * OH * OW, O)
        if kept is not None:
            dw = g2d.T @ kept
        else:
            dw = None
            for a, b in chunks:
                part = g2d[a * rows:b * rows].T @ _patches(x.data[a:b], value, lead, k, s, p, oh, ow, ct)
                dw = part if dw is None else np.add(dw, part, out=dw)
        grads = [None, _wrap(dw.reshape(o, k[0], k[1], ct).transpose(0, 3, 1, 2))]
        if x.requires_grad and s == (1, 1) and p[0] < k[0] and p[1] < k[1]:
            grads[0] = _wrap(_transposed_conv(g.data, weight.data[:, lead:], k, p))
        elif x.requires_grad:
            dcols = (g2d @ w2d).reshape((n, oh, ow) + k + (ct,))
            dx = np.empty(x.shape, dtype=dcols.dtype)
            col2im_into(dcols, lead, s[0], s[1], p[0], p[1], dx)
            grads[0] = _wrap(dx)
        if bias is not None:
            grads.append(_wrap(g2d.sum(axis=0)))
        return grads

    return _wrap(y, parents, vjp)


def _transposed_conv(g, weight, k, p):
    """``col2im(G W)`` for a stride-1 convolution, as a convolution of the gradient itself.

    With stride 1 the input gradient is the output gradient `g` ``(N, O, OH, OW)``
    convolved with the flipped, transposed filters ``w'[c, o, p, q] = w[o, c,
    kh-1-p, kw-1-q]`` under padding ``k - 1 - padding`` (Dumoulin & Visin 2016,
    §4.1, the transposed convolution): im2col of `g` and one GEMM per chunk,
    which avoids the scatter-add of :func:`col2im` (a read-modify-write of
    every patch entry). Needs ``padding < k`` on both axes.

    Returns
    -------
    ndarray, shape (N, C, H, W)
        A channels-last buffer seen through a transpose.
    """
    n, o, oh, ow = g.shape
    c = weight.shape[1]
    q = (k[0] - 1 - p[0], k[1] - 1 - p[1])
    h, w = oh + 2 * q[0] - k[0] + 1, ow + 2 * q[1] - k[1] + 1
    flipped = weight[:, :, ::-1, ::-1].transpose(1, 2, 3, 0).reshape(c, -1)  # (C, kh * kw * O)
    dx = np.empty((n * h * w, c), dtype=np.result_type(g.dtype, weight.dtype))
    for a, b in _chunks(n, h * w * flipped.shape[1] * g.dtype.itemsize):
        np.matmul(_patches(g[a:b], 0.0, 0, k, (1, 1), q, h, w, o), flipped.T, out=dx[a * h * w:b * h * w])
    return dx.reshape(n, h, w, c).transpose(0, 3, 1, 2)


def _recorded_conv_vjp(g, x, weight, bias, k, s, p, time):
    """The VJP of :func:`_conv` written with engine ops (differentiable to any order).

    With the patches ``P = im2col(x)`` (``x`` with the time channel in front
    when `time` is set), ``G`` the output gradient as ``(N * OH * OW, O)`` and
    ``W`` the weight as ``(O, kh * kw * C)``: ``dx = col2im(G W)``,
    ``dW = G^T P``, ``db = sum(G, 0)``.
    """
    o, ct = weight.shape[:2]
    n, c, h, w = x.shape
    if time is not None:
        full = _wrap(np.full((n, 1, h, w), time, dtype=x.dtype))
        x = concatenate([full, x], axis=1)
    g2d = reshape(transpose(g, (0, 2, 3, 1)), (-1, o))
    w2d = reshape(transpose(weight, (0, 2, 3, 1)), (o, -1))
    patches = im2col(x, k, s, p)
    dx = None
    if x.requires_grad:
        dx = col2im(reshape(g2d @ w2d, patches.shape), x.shape, k, s, p)
        dx = dx if time is None else dx[:, 1:]
    cols = reshape(patches, (g2d.shape[0], -1))
    dw = transpose(reshape(transpose(g2d) @ cols, (o, k[0], k[1], ct)), (0, 3, 1, 2))
    grads = [dx, dw]
    if bias is not None:
        grads.append(sum_(g2d, 0))
    return grads


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    """Mean over each window (zero padding counts in the mean, as PyTorch's default).

    Parameters
    ----------
    x : Tensor, shape (N, C, H, W)
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Default: `kernel_size` (non-overlapping windows).
    padding : int or (int, int), default 0

    Returns
    -------
    Tensor, shape (N, C, OH, OW)
        Windows that tile the image (stride = window, no padding) are a
        reshape of it (rows and columns left over are cropped, as the
        window's output size says); others go through :func:`im2col`.

    Raises
    ------
    ShapeError, InputError
        As :func:`im2col`.
    """
    x = _t(x)
    stride = kernel_size if stride is None else stride
    k, s, p, (oh, ow) = _geometry(x.shape, kernel_size, stride, padding)
    if s == k and p == (0, 0):  # tiling windows: a reshape of the image, no patches
        n, c = x.shape[:2]
        tiles = x if x.shape[2:] == (oh * k[0], ow * k[1]) else x[:, :, :oh * k[0], :ow * k[1]]
        return mean(reshape(tiles, (n, c, oh, k[0], ow, k[1])), axis=(3, 5))
    cols = im2col(x, k, s, p)
    return transpose(mean(cols, axis=(3, 4)), (0, 3, 1, 2))


def global_avg_pool2d(x):
    """Mean over the spatial axes: ``(N, C, H, W) -> (N, C)``.

    Raises
    ------
    ShapeError
        `x` is not 4-D.
    """
    x = _t(x)
    if x.ndim != 4:
        raise ShapeError(f"global_avg_pool2d: expected shape (N, C, H, W); got shape {x.shape}")
    return mean(x, axis=(2, 3))
