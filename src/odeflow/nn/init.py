"""Weight initialisation, following PyTorch's defaults.

PyTorch initialises ``nn.Linear`` with ``kaiming_uniform_(weight, a=sqrt(5))``,
which works out to ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, and its bias with
the same bound; ``nn.RNNCell`` and ``nn.GRUCell`` draw every weight and bias
from ``U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))``. odeflow does the same,
so a model trains here as it would with PyTorch's defaults (the random numbers
themselves differ: they come from a NumPy ``Generator``).

All functions return new ndarrays; layers wrap them in Parameters.

References
----------
.. [1] PyTorch, ``torch/nn/modules/linear.py`` (``Linear.reset_parameters``),
   ``torch/nn/modules/rnn.py`` (``RNNCellBase.reset_parameters``), and
   ``torch/nn/init.py``.
.. [2] K. He, X. Zhang, S. Ren, J. Sun, "Delving deep into rectifiers",
   ICCV 2015, §2.2 (the Kaiming/He scheme).
.. [3] X. Glorot, Y. Bengio, "Understanding the difficulty of training deep
   feedforward neural networks", AISTATS 2010, eq. 16 (the Xavier scheme).
"""
from __future__ import annotations

import math

import numpy as np

from odeflow.errors import InputError

__all__ = ["as_generator", "uniform", "kaiming_uniform", "xavier_uniform", "zeros"]


def as_generator(rng) -> np.random.Generator:
    """`rng` as a NumPy Generator: a Generator is used as is, an int or None seeds a new one."""
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def uniform(shape, bound: float, rng=None, dtype=np.float64) -> np.ndarray:
    """Samples of ``U(-bound, bound)`` with the given `shape` and `dtype`."""
    return as_generator(rng).uniform(-bound, bound, size=shape).astype(dtype)


def _fan_in_out(shape):
    # Weights are (fan_out, fan_in), as PyTorch's Linear stores them.
    if len(shape) < 2:
        raise InputError(f"fan-in and fan-out need a weight with 2 or more axes; got shape {shape}")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def kaiming_uniform(shape, a: float = math.sqrt(5), rng=None, dtype=np.float64) -> np.ndarray:
    """He initialisation for a leaky-ReLU slope `a`: ``U(-b, b)`` with
    ``b = sqrt(2 / (1 + a**2)) * sqrt(3 / fan_in)``. The default ``a = sqrt(5)``
    is PyTorch's for Linear layers and gives ``b = 1 / sqrt(fan_in)``."""
    fan_in, _ = _fan_in_out(tuple(shape))
    gain = math.sqrt(2.0 / (1.0 + a * a))
    return uniform(shape, gain * math.sqrt(3.0 / fan_in), rng, dtype)


def xavier_uniform(shape, gain: float = 1.0, rng=None, dtype=np.float64) -> np.ndarray:
    """Glorot initialisation: ``U(-b, b)`` with ``b = gain * sqrt(6 / (fan_in + fan_out))``."""
    fan_in, fan_out = _fan_in_out(tuple(shape))
    return uniform(shape, gain * math.sqrt(6.0 / (fan_in + fan_out)), rng, dtype)


def zeros(shape, dtype=np.float64) -> np.ndarray:
    """An array of zeros (for biases that should start at 0)."""
    return np.zeros(shape, dtype=dtype)
