"""Which Tensors does ``func`` depend on? Parameter discovery for the adjoint.

The adjoint needs the list of parameters ``theta`` whose gradient it
integrates (``a_theta`` in Chen et al. 2018, eq. 5). Like torchdiffeq it takes
them from ``func`` when ``func`` is an :class:`odeflow.nn.Module`, or from
``adjoint_params``. For a plain function it looks in the closure (and at a
bound method's ``self``), so that ``lambda t, y: model(y)`` works too.

A gradient silently missing is the worst failure of a gradient library: an
ndarray captured in ``func``'s closure can never receive one, so it is named
in a :class:`~odeflow.errors.GradientError` unless the caller says which
parameters to differentiate (``adjoint_params=...``, possibly empty).
"""
from __future__ import annotations

import numpy as np

from odeflow.autodiff.tensor import Tensor
from odeflow.errors import GradientError, InputTypeError
from odeflow.nn.module import Module

__all__ = ["find_params"]


def _collect(value, found, arrays, name, depth=0):
    if isinstance(value, Module):
        found.extend(value.parameters())
    elif isinstance(value, Tensor):
        if value.requires_grad:
            found.append(value)
    elif isinstance(value, np.ndarray) and value.dtype.kind == "f":
        arrays.append((name, value.shape))
    elif isinstance(value, (list, tuple)) and depth < 2:
        for i, v in enumerate(value):
            _collect(v, found, arrays, f"{name}[{i}]", depth + 1)
    elif isinstance(value, dict) and depth < 2:
        for k, v in value.items():
            _collect(v, found, arrays, f"{name}[{k!r}]", depth + 1)


def _unique(params):
    seen, out = set(), []
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


def find_params(func, adjoint_params=None):
    """The Tensors ``theta`` to differentiate, in a fixed order.

    Searched, without ``adjoint_params``: ``func`` itself if a Module, a bound
    method's ``self``, the closure's cells (Modules, Tensors requiring grad,
    lists/tuples/dicts of them), and the module-level names ``func``'s code
    refers to (Modules and Tensors only).

    Parameters
    ----------
    func : callable ``func(t, y)``
        An :class:`~odeflow.nn.Module`, a bound method of one, or a function
        whose closure holds Modules or Tensors requiring grad.
    adjoint_params : sequence of Tensor, optional
        Overrides the search; each must require grad. An empty sequence means
        "no parameters" and silences the closure check.

    Returns
    -------
    list of Tensor

    Raises
    ------
    InputTypeError
        An entry of ``adjoint_params`` is not a Tensor.
    GradientError
        An entry does not require grad; or, with no ``adjoint_params``, a
        float ndarray in ``func``'s closure would silently get no gradient.
    """
    if adjoint_params is not None:
        params = list(adjoint_params)
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise InputTypeError(f"`adjoint_params[{i}]` must be a Tensor; got {type(p).__name__}")
            if not p.requires_grad:
                raise GradientError(f"`adjoint_params[{i}]` (shape {p.shape}) does not require grad")
        return _unique(params)
    found, arrays = [], []
    if isinstance(func, Module):
        found.extend(func.parameters())
    owner = getattr(func, "__self__", None)
    if owner is not None:
        _collect(owner, found, arrays, "self")
    code = getattr(func, "__code__", None)
    for name, cell in zip(getattr(code, "co_freevars", ()), getattr(func, "__closure__", None) or ()):
        try:
            _collect(cell.cell_contents, found, arrays, name)
        except ValueError:  # an empty cell
            continue
    # module-level names the code refers to (a script's `W = Tensor(..., requires_grad=True)`);
    # plain arrays there are taken as constants, as NumPy code uses them
    for name in getattr(code, "co_names", ()):
        value = getattr(func, "__globals__", {}).get(name)
        if isinstance(value, (Module, Tensor)):
            _collect(value, found, [], name)
    if arrays:
        listed = ", ".join(f"`{n}` (shape {s})" for n, s in arrays)
        raise GradientError(
            f"`func` captures float ndarray(s) {listed} in its closure: they can never receive a "
            f"gradient. Make them Tensors with requires_grad=True (or nn.Parameter) to learn them, "
            f"or pass adjoint_params=[...] listing the Tensors to differentiate (possibly empty) "
            f"to treat them as constants")
    return _unique(found)
