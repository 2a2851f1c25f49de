"""Which Tensors does ``func`` depend on? Parameter discovery for the adjoint.

The adjoint needs the list of parameters ``theta`` whose gradient it
integrates (``a_theta`` in Chen et al. 2018, eq. 5). torchdiffeq asks for an
``nn.Module`` or an explicit ``adjoint_params``; odeflow instead evaluates
``func`` once with recording on (the *probe*) and takes the leaf Tensors
requiring grad that the result was computed from. That finds parameters
wherever they live: in a Module, a closure, a global, a plain object, a
``functools.partial``, a helper function.

A gradient silently missing is the worst failure of a gradient library: an
ndarray captured in ``func``'s closure can never receive one, so it is named
in a :class:`~odeflow.errors.GradientError` unless the caller says which
parameters to differentiate (``adjoint_params=...``, possibly empty).
"""
from __future__ import annotations

import numpy as np

from odeflow.autodiff.backprop import leaves
from odeflow.autodiff.tensor import Tensor
from odeflow.errors import GradientError, InputTypeError
from odeflow.nn.module import Module

__all__ = ["find_params"]


def _arrays_in(value, name, depth=0):
    """Float ndarrays held by a closure cell (directly or in a list/tuple/dict), with their names."""
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        return [(name, value.shape)]
    if isinstance(value, (list, tuple)) and depth < 2:
        return [a for i, v in enumerate(value) for a in _arrays_in(v, f"{name}[{i}]", depth + 1)]
    if isinstance(value, dict) and depth < 2:
        return [a for k, v in value.items() for a in _arrays_in(v, f"{name}[{k!r}]", depth + 1)]
    return []


def _unique(params):
    seen, out = set(), []
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


def find_params(func, probe, adjoint_params=None):
    """The Tensors ``theta`` to differentiate, in a fixed order.

    Parameters
    ----------
    func : callable ``func(t, y)``
    probe : tuple ``(output, y)``, or None with ``adjoint_params``
        ``func(t0, y)`` evaluated with recording on, for a leaf ``y`` requiring grad.
    adjoint_params : sequence of Tensor, optional
        Overrides the search; each must require grad. An empty sequence means
        "no parameters" and silences the closure check.

    Returns
    -------
    list of Tensor

    Raises
    ------
    InputTypeError
        ``adjoint_params`` is not a sequence of Tensors (a Module is named
        with a hint to pass ``module.parameters()``).
    GradientError
        An entry does not require grad; or, with no ``adjoint_params``, a
        float ndarray in ``func``'s closure would silently get no gradient.
    """
    if adjoint_params is not None:
        if isinstance(adjoint_params, (Module, Tensor)) or not hasattr(adjoint_params, "__iter__"):
            hint = " (pass module.parameters())" if isinstance(adjoint_params, Module) else ""
            raise InputTypeError(f"`adjoint_params` must be a sequence of Tensors; got "
                                 f"{type(adjoint_params).__name__}{hint}")
        params = list(adjoint_params)
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise InputTypeError(f"`adjoint_params[{i}]` must be a Tensor; got {type(p).__name__}")
            if not p.requires_grad:
                raise GradientError(f"`adjoint_params[{i}]` (shape {p.shape}) does not require grad")
        return _unique(params)
    arrays = []
    code = getattr(func, "__code__", None)
    for name, cell in zip(getattr(code, "co_freevars", ()), getattr(func, "__closure__", None) or ()):
        try:
            arrays += _arrays_in(cell.cell_contents, name)
        except ValueError:  # an empty cell
            continue
    if arrays:
        listed = ", ".join(f"`{n}` (shape {s})" for n, s in arrays)
        raise GradientError(
            f"`func` captures float ndarray(s) {listed} in its closure: they can never receive a "
            f"gradient. Make them Tensors with requires_grad=True (or nn.Parameter) to learn them, "
            f"or pass adjoint_params=[...] listing the Tensors to differentiate (possibly empty) "
            f"to treat them as constants")
    output, y = probe
    used = leaves(output) if isinstance(output, Tensor) else []
    return _unique([p for p in used if p is not y])
