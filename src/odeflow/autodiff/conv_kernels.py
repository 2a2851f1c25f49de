"""Jitted kernels of the im2col lowering: patches out of an image, and back.

Imported on the first convolution only (``import odeflow`` loads no Numba),
compiled on first call and cached on disk (:func:`odeflow.solvers.jit.kernel`).

Both kernels read and write the image in its own ``(N, C, H, W)`` layout
(any strides), going through one padded channels-last scratch buffer per
image (a few kilobytes, so it stays in cache): no padded copy or transpose
of the whole batch is made, the patch matrix is written once in the order
the GEMM reads it, and the adjoint writes a contiguous ``(N, C, H, W)``
gradient. A constant leading channel (the time channel of a
``ConcatConv2d``) is written by :func:`im2col_into` itself, so the image
and the time need not be concatenated first. NumPy's version needs three copies (pad, transpose, gather) for the
first and ``kh * kw`` strided adds plus a final transposed view for the
second; on the ODE-Net's 4x4 maps those copies took about half the training
time.

References
----------
.. [1] K. Chellapilla, S. Puri, P. Simard, "High performance convolutional
   neural networks for document processing", IWFHR 2006 (unrolling
   convolutions into matrix products).
"""
from __future__ import annotations

import numpy as np

from odeflow.solvers.jit import kernel

__all__ = ["im2col_into", "col2im_into"]


@kernel
def im2col_into(x, value, lead, sh, sw, ph, pw, cols):
    """``cols[n, i, j, p, q, lead + c] = x_pad[n, c, i * sh + p, j * sw + q]`` (zero outside `x`),
    and ``cols[..., :lead]`` the constant channels: `value` inside the image, zero on the padding.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W), float, any strides
    value : float
        Value of the `lead` constant channels (a time channel ``t``).
    lead : int
        Number of constant channels in front of `x`'s (0 or 1).
    sh, sw : int
        Strides of the window.
    ph, pw : int
        Zero padding on both sides of each spatial axis.
    cols : ndarray, shape (N, OH, OW, kh, kw, lead + C), dtype of `x`, C-contiguous
        Receives the patches; every entry is written.

    Each image is first laid out padded and channels-last in a small scratch
    buffer, so every patch entry is then a contiguous run of channels copied
    with unit strides on both sides (2-3 times faster than gathering each
    channel from the ``(N, C, H, W)`` image, measured on 4x4 maps).
    """
    n_img, n_ch, h, w = x.shape
    oh, ow, kh, kw, ct = cols.shape[1], cols.shape[2], cols.shape[3], cols.shape[4], cols.shape[5]
    buf = np.zeros((h + 2 * ph, w + 2 * pw, ct), cols.dtype)  # its border stays zero
    for n in range(n_img):
        for r in range(h):
            for s in range(w):
                for c in range(lead):
                    buf[r + ph, s + pw, c] = value
        for c in range(n_ch):
            for r in range(h):
                for s in range(w):
                    buf[r + ph, s + pw, lead + c] = x[n, c, r, s]
        for i in range(oh):
            for j in range(ow):
                for p in range(kh):
                    for q in range(kw):
                        src = buf[i * sh + p, j * sw + q]
                        dst = cols[n, i, j, p, q]
                        for c in range(ct):
                            dst[c] = src[c]


@kernel
def col2im_into(cols, lead, sh, sw, ph, pw, image):
    """``image[n, c, r, s] = sum of cols[n, i, j, p, q, lead + c]`` over ``i * sh + p - ph = r``,
    ``j * sw + q - pw = s``: the adjoint of :func:`im2col_into` for `x` (the constant
    channels and the padding are dropped).

    Parameters
    ----------
    cols : ndarray, shape (N, OH, OW, kh, kw, lead + C), float, any strides
    lead, sh, sw, ph, pw : int
        As :func:`im2col_into`.
    image : ndarray, shape (N, C, H, W), dtype of `cols`
        Overwritten with the sums.

    The sums are made in a padded channels-last scratch buffer per image
    (unit-stride runs of channels), then written out in ``(N, C, H, W)`` order.
    """
    n_img, n_ch, h, w = image.shape
    oh, ow, kh, kw = cols.shape[1], cols.shape[2], cols.shape[3], cols.shape[4]
    buf = np.empty((h + 2 * ph, w + 2 * pw, n_ch), image.dtype)
    for n in range(n_img):
        buf[...] = 0.0
        for i in range(oh):
            for j in range(ow):
                for p in range(kh):
                    for q in range(kw):
                        src = cols[n, i, j, p, q]
                        dst = buf[i * sh + p, j * sw + q]
                        for c in range(n_ch):
                            dst[c] += src[lead + c]
        for c in range(n_ch):
            for r in range(h):
                for s in range(w):
                    image[n, c, r, s] = buf[r + ph, s + pw, c]
