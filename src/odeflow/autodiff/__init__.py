"""Reverse-mode automatic differentiation on NumPy arrays.

Read in this order: :mod:`~odeflow.autodiff.tensor` (the Tensor and the
``no_grad`` switch), :mod:`~odeflow.autodiff.ops` (every op with its VJP),
:mod:`~odeflow.autodiff.backprop` (the graph walk),
:mod:`~odeflow.autodiff.functional` (``grad`` and ``vjp``).

The ops are available here by name (``ad.tanh(x)``, ``ad.sum(x, axis=0)``);
``sum``, ``max``, ``min``, ``abs`` and ``pow`` are left out of ``__all__`` so
that ``from odeflow.autodiff import *`` does not shadow Python's builtins.
"""
from odeflow.autodiff.backprop import backward, gradients
from odeflow.autodiff.conv import (avg_pool2d, col2im, conv2d, conv_output_size, global_avg_pool2d,
                                   im2col)
from odeflow.autodiff.norm import group_norm
from odeflow.autodiff.functional import grad, vjp
from odeflow.autodiff.ops import *  # noqa: F401,F403  (the op table)
from odeflow.autodiff.ops import __all__ as _ops_all
from odeflow.autodiff.ops import abs, max, min, pow, sum  # noqa: F401,A004
from odeflow.autodiff.tensor import (Tensor, enable_grad, is_grad_enabled, no_grad,
                                     set_grad_enabled)

_SHADOWING = {"sum", "max", "min", "abs", "pow"}
__all__ = ["Tensor", "no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled",
           "grad", "vjp", "gradients", "backward"] + [n for n in _ops_all if n not in _SHADOWING]
__all__ += ["conv2d", "im2col", "col2im", "conv_output_size", "avg_pool2d", "global_avg_pool2d",
            "group_norm"]
