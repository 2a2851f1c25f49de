"""Right-hand sides ``f(t, z)`` for continuous normalizing flows.

Two families, both Modules called as ``dynamics(t, z)`` with ``t`` a Python
float (time, in the units of the flow's time interval) and ``z`` a Tensor of
shape ``(batch, dim)``, returning ``dz/dt`` of the same shape:

* :class:`HyperPlanarDynamics` -- the paper's planar CNF (Chen et al. 2018,
  §4, eq. 10 and §4.1): ``dz/dt = sum_m u_m(t) tanh(w_m(t)^T z + b_m(t))``,
  with ``(u, w, b)`` produced from ``t`` by a small hypernetwork. ``M`` hidden
  units in parallel play the role of ``K`` planar layers in series.
* :class:`ConcatSquashMLP` -- FFJORD's free-form dynamics (Grathwohl et al.
  2019, the "concatsquash" layer of their code): every layer is
  ``out = (W x + b) * sigmoid(A t + c) + B t``, so time gates and shifts each
  unit.

References
----------
.. [1] R. T. Q. Chen, Y. Rubanova, J. Bettencourt, D. Duvenaud, "Neural Ordinary
   Differential Equations", NeurIPS 2018, §4 and Appendix A.
.. [2] W. Grathwohl, R. T. Q. Chen, J. Bettencourt, I. Sutskever, D. Duvenaud,
   "FFJORD: Free-form Continuous Dynamics for Scalable Reversible Generative
   Models", ICLR 2019, §4.1 and Appendix (model architectures).
"""
from __future__ import annotations

import numpy as np

from odeflow.autodiff import ops
from odeflow.autodiff.tensor import Tensor
from odeflow.errors import InputError
from odeflow.nn import MLP, Module, Parameter, init
from odeflow.nn.layers import _activation, layer_sizes, positive_int

__all__ = ["ConcatSquashLinear", "ConcatSquashMLP", "HyperPlanarDynamics", "positive_int"]


class ConcatSquashLinear(Module):
    """A linear layer gated and shifted by time: ``(x W^T + b) * sigmoid(t a + c) + t d``.

    Parameters
    ----------
    in_features, out_features : int
    rng : int, numpy.random.Generator or None
    dtype : dtype, default float64

    Attributes
    ----------
    weight : Parameter, shape (out_features, in_features)
    bias : Parameter, shape (out_features,)
    gate_weight, gate_bias : Parameter, shape (out_features,)
        ``a`` and ``c`` of the gate ``sigmoid(t a + c)``.
    time_shift : Parameter, shape (out_features,)
        ``d``, the coefficient of the additive ``t d`` term.

    Notes
    -----
    The gate and shift are what FFJORD's ``hyper_gate`` and ``hyper_bias``
    linear maps of the scalar ``t`` compute; with a scalar input a linear map
    is one weight per output, stored here as a vector. Initialised like
    PyTorch's Linear layers (``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, fan-in 1
    for the time terms).
    """

    def __init__(self, in_features: int, out_features: int, rng=None, dtype=np.float64):
        in_features = positive_int(in_features, "in_features")
        out_features = positive_int(out_features, "out_features")
        rng = init.as_generator(rng)
        bound = 1.0 / np.sqrt(in_features)
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(init.uniform((out_features, in_features), bound, rng, dtype))
        self.bias = Parameter(init.uniform((out_features,), bound, rng, dtype))
        self.gate_weight = Parameter(init.uniform((out_features,), 1.0, rng, dtype))
        self.gate_bias = Parameter(init.uniform((out_features,), 1.0, rng, dtype))
        self.time_shift = Parameter(init.uniform((out_features,), 1.0, rng, dtype))

    def forward(self, t, x):
        """`x` of shape ``(batch, in_features)`` at time `t` (float) to ``(batch, out_features)``."""
        gate = ops.sigmoid(self.gate_weight * t + self.gate_bias)
        return ops.linear(x, self.weight, self.bias) * gate + self.time_shift * t

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}"


class ConcatSquashMLP(Module):
    """FFJORD's dynamics network: ConcatSquash layers with an activation between them.

    Parameters
    ----------
    sizes : sequence of int
        Widths from input to output, e.g. ``(2, 64, 64, 64, 2)``; the first and
        last are the data dimension.
    activation : str or Module, default "tanh"
        Between layers (not after the last); names as :data:`odeflow.nn.ACTIVATIONS`.
        Use a smooth one: the trace term differentiates the network twice.
    rng : int, numpy.random.Generator or None
    dtype : dtype, default float64

    Raises
    ------
    InputTypeError
        `sizes` not a sequence of ints (named).
    InputError
        Fewer than two sizes, first and last sizes differ, or an unknown activation.
    """

    def __init__(self, sizes, activation="tanh", rng=None, dtype=np.float64):
        sizes = layer_sizes(sizes)
        if len(sizes) < 2 or sizes[0] != sizes[-1]:
            raise InputError(f"`sizes` must run from the data dimension back to it, e.g. "
                             f"(2, 64, 2); got {sizes}")
        rng = init.as_generator(rng)
        self.sizes = sizes
        self.layers = [ConcatSquashLinear(a, b, rng=rng, dtype=dtype)
                       for a, b in zip(sizes[:-1], sizes[1:])]
        self.activation = _activation(activation)

    def forward(self, t, z):
        """``dz/dt`` at time `t` (float) for `z` of shape ``(batch, dim)``."""
        h = z
        for i, layer in enumerate(self.layers):
            h = layer(t, h)
            if i < len(self.layers) - 1:
                h = self.activation(h)
        return h

    def extra_repr(self):
        return f"sizes={self.sizes}"


class HyperPlanarDynamics(Module):
    """The planar CNF: ``dz/dt = sum_m u_m(t) tanh(w_m(t)^T z + b_m(t))``.

    A hypernetwork ``t -> (w, u, b)`` (an MLP ``1 -> hidden -> hidden -> M (2 d + 1)``
    with tanh) makes the ``M`` planar units time-dependent (Chen et al. 2018,
    §4.1). Because the trace is linear, the log-density cost is linear in ``M``
    (§4, eq. 10): here ``tr(df/dz) = sum_m (1 - tanh^2(a_m)) u_m^T w_m``
    (:meth:`divergence`), with no invertibility constraint on ``u``.

    Parameters
    ----------
    dim : int
        Data dimension ``d``.
    width : int
        Number of planar units ``M``.
    hidden : int, default 32
        Width of the hypernetwork's two hidden layers.
    rng : int, numpy.random.Generator or None
    dtype : dtype, default float64

    Attributes
    ----------
    hyper : MLP
        ``(1, hidden, hidden, width * (2 * dim + 1))``, tanh.
    """

    def __init__(self, dim: int, width: int, hidden: int = 32, rng=None, dtype=np.float64):
        self.dim = positive_int(dim, "dim")
        self.width = positive_int(width, "width")
        hidden = positive_int(hidden, "hidden")
        self.hyper = MLP((1, hidden, hidden, self.width * (2 * self.dim + 1)), activation="tanh",
                         rng=rng, dtype=dtype)

    def planar_parameters(self, t):
        """``(w, u, b)`` at time `t`: Tensors of shapes ``(M, d)``, ``(M, d)``, ``(M,)``."""
        dtype = self.hyper.layers[0].weight.dtype
        params = self.hyper(Tensor(np.full((1, 1), t, dtype=dtype)))
        m, d = self.width, self.dim
        # layout of the hypernetwork's output row: [ w (M*d) | u (M*d) | b (M) ]
        w = ops.reshape(params[0, : m * d], (m, d))
        u = ops.reshape(params[0, m * d: 2 * m * d], (m, d))
        b = params[0, 2 * m * d:]
        return w, u, b

    def forward(self, t, z):
        """``dz/dt`` at time `t` (float) for `z` of shape ``(batch, dim)``."""
        w, u, b = self.planar_parameters(t)
        return ops.tanh(ops.linear(z, w, b)) @ u

    def divergence(self, t, z):
        """``tr(df/dz)`` in closed form, shape ``(batch,)``: an independent check of the
        automatic-differentiation traces (and their cheap alternative for this family)."""
        w, u, b = self.planar_parameters(t)
        h = ops.tanh(ops.linear(z, w, b))                      # (batch, M)
        return (1.0 - h * h) @ ops.sum(u * w, axis=1)          # (batch,)

    def extra_repr(self):
        return f"dim={self.dim}, width={self.width}"
