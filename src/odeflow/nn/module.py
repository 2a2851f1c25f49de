"""`Module` and `Parameter`: models as trees of Tensors, as in PyTorch.

A module's parameters are found by looking at its attributes: a
:class:`Parameter`, a :class:`Module` (searched recursively), or a list, tuple
or dict of those. No registration call is needed, and subclasses need not call
``super().__init__()``. Names are attribute paths (``"layers.0.weight"``), in
attribute-assignment order, and a parameter shared by two modules is listed
once, under its first name.

References
----------
.. [1] A. Paszke et al., "PyTorch: an imperative style, high-performance deep
   learning library", NeurIPS 2019 (the ``nn.Module`` interface followed here).
.. [2] A. Karpathy, micrograd, ``nn.py`` (``parameters()`` and ``zero_grad()``).
"""
from __future__ import annotations

import os

import numpy as np

from odeflow.autodiff.tensor import Tensor
from odeflow.errors import InputError, InputTypeError, ShapeError

__all__ = ["Parameter", "Module", "parameters_to_vector", "vector_to_parameters", "split_vector"]


class Parameter(Tensor):
    """A leaf Tensor that a :class:`Module` owns and an optimizer updates.

    Parameters
    ----------
    data : array_like
        Initial values; always copied (optimizers update ``data`` in place,
        which must not change the caller's array). Integers become float64.
    requires_grad : bool, default True

    Raises
    ------
    InputTypeError
        If `data` is not real-valued.
    """

    def __init__(self, data, requires_grad: bool = True):
        array = np.array(data.data if isinstance(data, Tensor) else data, copy=True)
        if array.dtype.kind != "f":
            if array.dtype.kind not in "iub":
                raise InputTypeError(f"`data` of a Parameter must be real; got dtype {array.dtype}")
            array = array.astype(np.float64)
        super().__init__(array, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter" + super().__repr__()[len("Tensor"):]


class Module:
    """Base class of models: override :meth:`forward`, call the module to run it."""

    training = True  # class default, so subclasses need not call super().__init__()

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # -- the tree ----------------------------------------------------------------
    def named_children(self):
        """``(name, module)`` for the direct submodules (list entries named ``attr.i``)."""
        for name, value in vars(self).items():
            for key, item in _items(name, value):
                if isinstance(item, Module):
                    yield key, item

    def named_parameters(self, prefix: str = ""):
        """Yield ``(dotted_name, Parameter)`` for every parameter in the tree, once each."""
        seen = set()
        for name, p in self._named_parameters(prefix):
            if id(p) not in seen:
                seen.add(id(p))
                yield name, p

    def _named_parameters(self, prefix):
        for name, value in vars(self).items():
            for key, item in _items(name, value):
                if isinstance(item, Parameter):
                    yield prefix + key, item
                elif isinstance(item, Module):
                    yield from item._named_parameters(prefix + key + ".")

    def parameters(self) -> list:
        """The parameters, in the order of :meth:`named_parameters`."""
        return [p for _, p in self.named_parameters()]

    def modules(self):
        """This module and all its descendants, depth first."""
        yield self
        for _, child in self.named_children():
            yield from child.modules()

    def num_parameters(self) -> int:
        """Total number of scalar parameters."""
        return sum(p.size for p in self.parameters())

    # -- modes and gradients --------------------------------------------------------
    def train(self, mode: bool = True):
        """Set ``training`` on every module of the tree; returns self."""
        for m in self.modules():
            m.training = bool(mode)
        return self

    def eval(self):
        """Same as ``train(False)``."""
        return self.train(False)

    def zero_grad(self):
        """Reset every parameter's ``.grad`` to None (the next backward() starts afresh)."""
        for p in self.parameters():
            p.grad = None

    # -- saving ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """``{dotted_name: copy of the parameter's array}``."""
        return {name: p.data.copy() for name, p in self.named_parameters()}

    def load_state_dict(self, state, strict: bool = True):
        """Copy arrays into the parameters (in place, keeping each parameter's dtype).

        Parameters
        ----------
        state : mapping of str to array_like, or path to an ``.npz`` file
        strict : bool, default True
            Require exactly the module's parameter names.

        Raises
        ------
        InputError
            Names missing from or unknown to the module (when `strict`).
        ShapeError
            An array whose shape differs from its parameter's; the message
            names the parameter and both shapes.
        """
        if isinstance(state, (str, os.PathLike)):
            with np.load(state) as npz:
                state = {k: npz[k] for k in npz.files}
        own = dict(self.named_parameters())
        if strict:
            missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
            if missing or unexpected:
                raise InputError(f"`state` does not match {type(self).__name__}: missing "
                                 f"{missing}, unexpected {unexpected}")
        for name, p in own.items():
            if name in state:
                array = np.asarray(state[name])
                if array.shape != p.shape:
                    raise ShapeError(f"`state[{name!r}]` has shape {array.shape} but the "
                                     f"parameter has shape {p.shape}")
                p.data[...] = array
        return self

    def save(self, path):
        """Write :meth:`state_dict` to an ``.npz`` file (``numpy.savez``)."""
        np.savez(path, **self.state_dict())

    def load(self, path):
        """Load parameters saved by :meth:`save`; returns self."""
        return self.load_state_dict(path)

    def __repr__(self):
        children = [f"  ({name}): " + repr(child).replace("\n", "\n  ")
                    for name, child in self.named_children()]
        extra = self.extra_repr()
        if not children:
            return f"{type(self).__name__}({extra})"
        return f"{type(self).__name__}({extra}\n" + "\n".join(children) + "\n)"

    def extra_repr(self) -> str:
        return ""


def _items(name, value):
    """`(key, item)` pairs of an attribute: itself, or the entries of a container."""
    if isinstance(value, (list, tuple)):
        return [(f"{name}.{i}", v) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return [(f"{name}.{k}", v) for k, v in value.items()]
    return [(name, value)]


def parameters_to_vector(params) -> np.ndarray:
    """Concatenate parameters (or arrays) into one 1-D array, in order.

    Parameters
    ----------
    params : iterable of Tensor or ndarray

    Returns
    -------
    ndarray, shape (sum of sizes,)
        A copy, in NumPy's result dtype of the inputs (float64 unless all are
        float32). Empty input gives an empty float64 array.
    """
    arrays = [np.ravel(p.data if isinstance(p, Tensor) else p) for p in params]
    return np.concatenate(arrays) if arrays else np.zeros(0)


def split_vector(vector, shapes) -> list:
    """Cut a 1-D array into arrays of the given `shapes` (views, not copies).

    Raises
    ------
    ShapeError
        If the sizes do not add up to ``vector.size``.
    """
    vector = np.asarray(vector)
    shapes = [tuple(s) for s in shapes]
    sizes = [int(np.prod(s)) for s in shapes]
    if vector.ndim != 1 or vector.size != sum(sizes):
        raise ShapeError(f"`vector` of shape {vector.shape} cannot be split into shapes "
                         f"{shapes} (total size {sum(sizes)})")
    ends = np.cumsum(sizes)
    return [vector[e - n:e].reshape(s) for e, n, s in zip(ends, sizes, shapes)]


def vector_to_parameters(vector, params) -> None:
    """Copy consecutive pieces of `vector` into the parameters' data, in place.

    The inverse of :func:`parameters_to_vector`; each parameter keeps its dtype.

    Raises
    ------
    ShapeError
        If ``vector.size`` differs from the total size of `params`.
    """
    params = list(params)
    for p, piece in zip(params, split_vector(vector, [p.shape for p in params])):
        p.data[...] = piece
