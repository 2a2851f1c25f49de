"""Layers: Linear, MLP, activations, RNNCell and GRUCell.

Shapes and equations follow PyTorch, so weights can be exchanged through
``state_dict`` arrays: a Linear weight is ``(out_features, in_features)`` and
``y = x W^T + b``; recurrent cells pack their gates along the first weight
axis in PyTorch's order. Every layer accepts a batch of any leading shape
``(..., features)``.

References
----------
.. [1] PyTorch, ``torch.nn.Linear``, ``torch.nn.RNNCell``, ``torch.nn.GRUCell``
   (documentation pages: equations and weight layouts).
.. [2] K. Cho et al., "Learning phrase representations using RNN
   encoder-decoder for statistical machine translation", EMNLP 2014, eqs. 5-8
   (the GRU).
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from odeflow.autodiff import ops
from odeflow.autodiff.tensor import Tensor
from odeflow.errors import InputError, InputTypeError, ShapeError
from odeflow.nn import fused_mlp, init
from odeflow.nn.module import Module, Parameter

__all__ = ["Linear", "MLP", "Sequential", "Identity", "Tanh", "ReLU", "ELU", "Sigmoid",
           "Softplus", "RNNCell", "GRUCell", "ACTIVATIONS"]


def _check_features(module, x, expected: int, what: str = "input"):
    shape = x.shape if isinstance(x, (Tensor, np.ndarray)) else np.shape(x)
    if len(shape) == 0 or shape[-1] != expected:
        raise ShapeError(f"{type(module).__name__} expects {what} with last axis {expected}; "
                         f"got shape {shape}")


class Linear(Module):
    """Affine map ``y = x W^T + b`` (one :func:`~odeflow.autodiff.ops.linear` node).

    Parameters
    ----------
    in_features, out_features : int
    bias : bool, default True
    rng : int, numpy.random.Generator or None
        Source of the initial weights (PyTorch's scheme, see :mod:`odeflow.nn.init`).
    dtype : dtype, default float64

    Attributes
    ----------
    weight : Parameter, shape (out_features, in_features)
    bias : Parameter, shape (out_features,), or None
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, rng=None,
                 dtype=np.float64):
        if in_features < 1 or out_features < 1:
            raise InputError(f"`in_features` and `out_features` must be positive; got "
                             f"{in_features} and {out_features}")
        rng = init.as_generator(rng)
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(init.kaiming_uniform((out_features, in_features), rng=rng, dtype=dtype))
        self.bias = (Parameter(init.uniform((out_features,), 1 / math.sqrt(in_features), rng, dtype))
                     if bias else None)

    def forward(self, x):
        """`x` of shape ``(..., in_features)`` to ``(..., out_features)``."""
        _check_features(self, x, self.in_features)
        return ops.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}"


class _Activation(Module):
    """An elementwise function as a module (no parameters)."""
    fn = None

    def forward(self, x):
        return type(self).fn(x)


class Identity(_Activation):
    """``x``."""
    fn = staticmethod(lambda x: x)


class Tanh(_Activation):
    """Hyperbolic tangent."""
    fn = staticmethod(ops.tanh)


class ReLU(_Activation):
    """``max(x, 0)``."""
    fn = staticmethod(ops.relu)


class Sigmoid(_Activation):
    """Logistic sigmoid."""
    fn = staticmethod(ops.sigmoid)


class Softplus(_Activation):
    """``log(1 + e**x)``."""
    fn = staticmethod(ops.softplus)


class ELU(Module):
    """Exponential linear unit with slope parameter `alpha` (a constant)."""

    def __init__(self, alpha: float = 1.0):
        self.alpha = float(alpha)

    def forward(self, x):
        return ops.elu(x, self.alpha)

    def extra_repr(self):
        return f"alpha={self.alpha}"


ACTIVATIONS = {"tanh": Tanh, "relu": ReLU, "elu": ELU, "sigmoid": Sigmoid,
               "softplus": Softplus, "identity": Identity}


def _activation(spec) -> Module:
    if isinstance(spec, Module):
        return spec
    if isinstance(spec, str):
        if spec.lower() not in ACTIVATIONS:
            raise InputError(f"unknown activation {spec!r}; choose from {sorted(ACTIVATIONS)}")
        return ACTIVATIONS[spec.lower()]()
    if isinstance(spec, type) and issubclass(spec, Module):
        return spec()
    raise InputError(f"activation must be a name, a Module class or instance; got {spec!r}")


class Sequential(Module):
    """Modules applied one after the other."""

    def __init__(self, *layers):
        self.layers = list(layers)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


def layer_sizes(sizes, name="sizes"):
    """`sizes` as a list of ints >= 1, each entry checked and named.

    Raises
    ------
    InputTypeError
        `sizes` is not a sequence, or an entry is not an int (a float width
        such as 2.7 was silently truncated to 2 before).
    InputError
        An entry is below 1.
    """
    if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__iter__"):
        raise InputTypeError(f"`{name}` must be a sequence of layer widths, e.g. (2, 64, 2); got "
                             f"{type(sizes).__name__} {sizes!r}")
    return [positive_int(s, f"{name}[{i}]") for i, s in enumerate(sizes)]


def positive_int(value, name: str) -> int:
    """`value` as an int >= 1; InputTypeError (not an int; bools refused) or InputError (< 1)
    naming `name` otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputTypeError(f"`{name}` must be an int; got {type(value).__name__} {value!r}")
    if value < 1:
        raise InputError(f"`{name}` must be >= 1; got {value}")
    return int(value)


class MLP(Sequential):
    """Multilayer perceptron: Linear layers with an activation between them.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths from input to output, e.g. ``(2, 64, 64, 2)``.
    activation : str, Module class or Module, default "tanh"
        Applied after every layer but the last (names in ``ACTIVATIONS``).
        A Module instance is shared by all hidden layers.
    final_activation : same kinds, optional
        Applied after the last layer.
    bias : bool, default True
    rng : int, numpy.random.Generator or None
    dtype : dtype, default float64
    fused : bool, default True
        Evaluate the network as ONE graph node with a fused VJP
        (:mod:`odeflow.nn.fused_mlp`): same values and gradients, several times
        less time and memory inside an ODE solve. It applies when the
        activations are built-in ones (``ELU`` with ``alpha > 0``) and the
        input's dtype is the parameters' (float32 or float64); otherwise, or
        with ``fused=False``, the layers run one by one. Second derivatives
        (``create_graph=True``) work either way.

    Raises
    ------
    InputTypeError
        `sizes` not a sequence of ints (named).
    InputError
        Fewer than two sizes, a width below 1, or an unknown activation.
    """

    fused = True  # class default: MLPs built before this attribute existed stay fused

    def __init__(self, sizes, activation="tanh", final_activation=None, bias: bool = True,
                 rng=None, dtype=np.float64, fused: bool = True):
        sizes = layer_sizes(sizes)
        if len(sizes) < 2:
            raise InputError(f"`sizes` needs an input and an output width; got {sizes}")
        rng = init.as_generator(rng)
        layers = []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(Linear(n_in, n_out, bias=bias, rng=rng, dtype=dtype))
            if i < len(sizes) - 2:
                layers.append(_activation(activation))
        if final_activation is not None:
            layers.append(_activation(final_activation))
        super().__init__(*layers)
        self.sizes = sizes
        self.fused = bool(fused)

    def forward(self, x):
        """`x` of shape ``(..., sizes[0])`` to ``(..., sizes[-1])``."""
        if self.fused:
            plan = self._fused_plan()
            if plan is not None:
                _check_features(self.layers[0], x, plan[0][0].shape[1])
                out = fused_mlp.mlp(x, plan)
                if out is not None:
                    return out
        return super().forward(x)

    def _fused_plan(self):
        """``[(weight, bias, code, alpha)]`` per Linear, or None if a layer is not fusable."""
        plan = []
        for layer in self.layers:
            kind = type(layer)
            if kind is Linear:
                if not isinstance(layer.weight, Tensor) or not isinstance(layer.bias, (Tensor, type(None))):
                    return None  # e.g. a weight replaced by an ndarray: the generic path accepts it
                plan.append([layer.weight, layer.bias, fused_mlp.IDENTITY, 0.0])
            elif kind is Identity:
                continue
            elif plan and plan[-1][2] == fused_mlp.IDENTITY and kind in _FUSED:
                if kind is ELU and not layer.alpha > 0:
                    return None
                plan[-1][2:] = _FUSED[kind], getattr(layer, "alpha", 0.0)
            else:
                return None
        return plan or None

    def extra_repr(self):
        return f"sizes={self.sizes}"


_FUSED = {Tanh: fused_mlp.TANH, ReLU: fused_mlp.RELU, Sigmoid: fused_mlp.SIGMOID,
          Softplus: fused_mlp.SOFTPLUS, ELU: fused_mlp.ELU}


class RNNCell(Module):
    """Elman cell ``h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh)``.

    Parameters
    ----------
    input_size, hidden_size : int
    bias : bool, default True
    nonlinearity : {"tanh", "relu"}, default "tanh"
    rng, dtype : as :class:`Linear`

    Attributes
    ----------
    weight_ih : Parameter, shape (hidden_size, input_size)
    weight_hh : Parameter, shape (hidden_size, hidden_size)
    bias_ih, bias_hh : Parameter, shape (hidden_size,), or None
    """

    _GATES = 1

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", rng=None, dtype=np.float64):
        if nonlinearity not in ("tanh", "relu"):
            raise InputError(f"`nonlinearity` must be 'tanh' or 'relu'; got {nonlinearity!r}")
        rng = init.as_generator(rng)
        rows, bound = self._GATES * hidden_size, 1 / math.sqrt(hidden_size)
        self.input_size, self.hidden_size, self.nonlinearity = input_size, hidden_size, nonlinearity
        self.weight_ih = Parameter(init.uniform((rows, input_size), bound, rng, dtype))
        self.weight_hh = Parameter(init.uniform((rows, hidden_size), bound, rng, dtype))
        self.bias_ih = Parameter(init.uniform((rows,), bound, rng, dtype)) if bias else None
        self.bias_hh = Parameter(init.uniform((rows,), bound, rng, dtype)) if bias else None

    def _affine(self, x, h):
        """The input and hidden pre-activations ``(x W_ih^T + b_ih, h W_hh^T + b_hh)``."""
        _check_features(self, x, self.input_size)
        _check_features(self, h, self.hidden_size, "hidden state")
        return ops.linear(x, self.weight_ih, self.bias_ih), ops.linear(h, self.weight_hh, self.bias_hh)

    def _initial(self, x, h):
        if h is not None:
            return h
        dtype = self.weight_ih.dtype
        return Tensor(np.zeros(np.shape(x)[:-1] + (self.hidden_size,), dtype))

    def forward(self, x, h=None):
        """One step: `x` ``(..., input_size)``, `h` ``(..., hidden_size)`` (zeros if None)."""
        gi, gh = self._affine(x, self._initial(x, h))
        return (ops.tanh if self.nonlinearity == "tanh" else ops.relu)(gi + gh)

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}"


class GRUCell(RNNCell):
    """Gated recurrent unit, PyTorch's formulation (reset gate applied after ``W_hn``)::

        r  = sigmoid(x W_ir^T + b_ir + h W_hr^T + b_hr)
        z  = sigmoid(x W_iz^T + b_iz + h W_hz^T + b_hz)
        n  = tanh(x W_in^T + b_in + r * (h W_hn^T + b_hn))
        h' = (1 - z) * n + z * h

    Parameters and attributes as :class:`RNNCell` (no `nonlinearity`), with the
    three gates stacked as ``(r, z, n)``: ``weight_ih`` is
    ``(3 * hidden_size, input_size)``, ``weight_hh`` ``(3 * hidden_size, hidden_size)``.
    """

    _GATES = 3

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, rng=None,
                 dtype=np.float64):
        super().__init__(input_size, hidden_size, bias, "tanh", rng, dtype)

    def forward(self, x, h=None):
        """One step: `x` ``(..., input_size)``, `h` ``(..., hidden_size)`` (zeros if None)."""
        h = self._initial(x, h)
        gi, gh = self._affine(x, h)
        i_r, i_z, i_n = ops.split(gi, 3, axis=-1)
        h_r, h_z, h_n = ops.split(gh, 3, axis=-1)
        r = ops.sigmoid(i_r + h_r)
        z = ops.sigmoid(i_z + h_z)
        n = ops.tanh(i_n + r * h_n)
        return (1.0 - z) * n + z * h
