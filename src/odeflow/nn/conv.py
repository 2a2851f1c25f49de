"""Convolutional layers: Conv2d, the time-conditioned ConcatConv2d, GroupNorm and pooling.

Shapes, weight layouts and initialisation follow PyTorch (``Conv2d.weight`` is
``(out_channels, in_channels, kh, kw)``; weights and biases drawn from
``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` with ``fan_in = in_channels * kh * kw``;
GroupNorm starts at ``gamma = 1, beta = 0``), so weights can be exchanged
through ``state_dict`` arrays.

References
----------
.. [1] PyTorch, ``torch.nn.Conv2d``, ``torch.nn.GroupNorm``, ``torch.nn.AvgPool2d``
   (documentation pages: shapes, defaults and initialisation).
.. [2] Y. Wu, K. He, "Group normalization", ECCV 2018.
.. [3] R. T. Q. Chen, Y. Rubanova, J. Bettencourt, D. Duvenaud, "Neural ordinary
   differential equations", NeurIPS 2018, §3, and its public MNIST example
   (``ConcatConv2d``: the time as one more input channel).
"""
from __future__ import annotations

import math

import numpy as np

from odeflow.autodiff import conv as C
from odeflow.autodiff import ops
from odeflow.autodiff.norm import group_norm
from odeflow.autodiff.tensor import Tensor
from odeflow.errors import InputError, ShapeError
from odeflow.nn import init
from odeflow.nn.module import Module, Parameter

__all__ = ["Conv2d", "ConcatConv2d", "GroupNorm", "AvgPool2d", "GlobalAvgPool2d", "Flatten"]


def _check_channels(module, x, expected: int):
    shape = x.shape if isinstance(x, (Tensor, np.ndarray)) else np.shape(x)
    if len(shape) != 4 or shape[1] != expected:
        raise ShapeError(f"{type(module).__name__} expects images of shape (N, {expected}, H, W); "
                         f"got shape {tuple(shape)}")


class Conv2d(Module):
    """2-D convolution (cross-correlation) with zero padding, by im2col + one GEMM.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size : int or (int, int)
    stride : int or (int, int), default 1
    padding : int or (int, int), default 0
    bias : bool, default True
    rng : int, numpy.random.Generator or None
    dtype : dtype, default float64

    Attributes
    ----------
    weight : Parameter, shape (out_channels, in_channels, kh, kw)
    bias : Parameter, shape (out_channels,), or None

    Raises
    ------
    InputError
        Non-positive channel counts, kernel size or stride, or negative padding.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 bias: bool = True, rng=None, dtype=np.float64):
        if in_channels < 1 or out_channels < 1:
            raise InputError(f"`in_channels` and `out_channels` must be positive; got "
                             f"{in_channels} and {out_channels}")
        k = C._pair(kernel_size, "kernel_size", 1)
        self.stride = C._pair(stride, "stride", 1)
        self.padding = C._pair(padding, "padding", 0)
        rng = init.as_generator(rng)
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, k
        shape = (out_channels, in_channels) + k
        self.weight = Parameter(init.kaiming_uniform(shape, rng=rng, dtype=dtype))
        fan_in = in_channels * k[0] * k[1]
        self.bias = (Parameter(init.uniform((out_channels,), 1 / math.sqrt(fan_in), rng, dtype))
                     if bias else None)

    def forward(self, x):
        """`x` ``(N, in_channels, H, W)`` to ``(N, out_channels, OH, OW)``."""
        _check_channels(self, x, self.in_channels)
        return C.conv2d(x, self.weight, self.bias, self.stride, self.padding)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}")


class ConcatConv2d(Conv2d):
    """A convolution that also sees the time: ``conv([t * 1, x])``.

    The input gets one extra channel, filled with the scalar ``t``, in front of
    its own channels; so the weight is ``(out_channels, in_channels + 1, kh, kw)``
    and the layer computes ``y = W_t * T + W_x * x + b`` where ``T`` is the
    constant image ``t`` (zero-padded like ``x``). It lets an ODE right-hand
    side ``f(t, h)`` depend on ``t`` (Chen et al. 2018, §3 and the public
    MNIST example).

    Parameters
    ----------
    in_channels : int
        Channels of ``x`` (not counting the time channel).
    out_channels, kernel_size, stride, padding, bias, rng, dtype
        As :class:`Conv2d`; the defaults (3x3, stride 1, padding 1) keep the size.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, stride=1, padding=1,
                 bias: bool = True, rng=None, dtype=np.float64):
        super().__init__(in_channels + 1, out_channels, kernel_size, stride, padding, bias, rng, dtype)

    def forward(self, t, x):
        """`t` a float (or 0-d array), `x` ``(N, in_channels, H, W)``."""
        _check_channels(self, x, self.in_channels - 1)
        # the time channel goes straight into the patches: nothing is concatenated
        return C.concat_conv2d(t, x, self.weight, self.bias, self.stride, self.padding)

    def extra_repr(self):
        return f"t + {self.in_channels - 1}, " + super().extra_repr().split(", ", 1)[1]


class GroupNorm(Module):
    """Group normalisation with a per-channel affine map (Wu & He 2018).

    Parameters
    ----------
    num_groups : int
        A divisor of `num_channels`.
    num_channels : int
    eps : float, default 1e-5
    affine : bool, default True
        Learn ``gamma`` (``weight``, starts at 1) and ``beta`` (``bias``, at 0).
    dtype : dtype, default float64

    Raises
    ------
    InputError
        `num_groups` does not divide `num_channels`, or `eps` is not positive.
    """

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True,
                 dtype=np.float64):
        if num_groups < 1 or num_channels < 1 or num_channels % num_groups:
            raise InputError(f"`num_groups` must be a positive divisor of `num_channels` = "
                             f"{num_channels}; got {num_groups}")
        if not 0 < eps < np.inf:  # an infinite eps made every output 0 (or beta)
            raise InputError(f"`eps` must be positive and finite; got {eps!r}")
        self.num_groups, self.num_channels, self.eps = int(num_groups), int(num_channels), float(eps)
        self.weight = Parameter(np.ones(num_channels, dtype)) if affine else None
        self.bias = Parameter(np.zeros(num_channels, dtype)) if affine else None

    def forward(self, x, relu: bool = False):
        """`x` ``(N, num_channels, ...)`` to the same shape; with `relu`, ``relu(GN(x))``
        as one node (:func:`odeflow.autodiff.norm.group_norm`)."""
        shape = x.shape if isinstance(x, (Tensor, np.ndarray)) else np.shape(x)
        if len(shape) < 2 or shape[1] != self.num_channels:
            raise ShapeError(f"GroupNorm expects shape (N, {self.num_channels}, ...); got shape "
                             f"{tuple(shape)}")
        return group_norm(x, self.num_groups, self.weight, self.bias, self.eps, relu=relu)

    def extra_repr(self):
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.weight is not None}"


class AvgPool2d(Module):
    """Mean over windows (see :func:`odeflow.autodiff.conv.avg_pool2d`)."""

    def __init__(self, kernel_size, stride=None, padding=0):
        self.kernel_size = C._pair(kernel_size, "kernel_size", 1)
        self.stride = self.kernel_size if stride is None else C._pair(stride, "stride", 1)
        self.padding = C._pair(padding, "padding", 0)

    def forward(self, x):
        return C.avg_pool2d(x, self.kernel_size, self.stride, self.padding)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class GlobalAvgPool2d(Module):
    """Mean over the spatial axes: ``(N, C, H, W) -> (N, C)``."""

    def forward(self, x):
        return C.global_avg_pool2d(x)


class Flatten(Module):
    """``(N, ...) -> (N, prod(...))``: images to feature vectors for a Linear layer."""

    def forward(self, x):
        x = x if isinstance(x, Tensor) else Tensor(x)
        return ops.reshape(x, (x.shape[0], -1))
