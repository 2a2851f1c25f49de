"""Which Tensors does ``func`` depend on? Parameter discovery for the adjoint.

The adjoint needs the list of parameters ``theta`` whose gradient it
integrates (``a_theta`` in Chen et al. 2018, eq. 5). torchdiffeq asks for an
``nn.Module`` or an explicit ``adjoint_params``; odeflow instead watches
``func`` as the forward solve evaluates it.

The rule (stated in :func:`odeflow.odeint_adjoint` and docs/adjoint.md):

* every forward evaluation is recorded (:class:`Recorder`), and every leaf
  Tensor requiring grad that a result was computed from becomes a parameter,
  whenever it was first met: a Tensor used only after ``t[0]`` (a branch on
  ``t``, a list of per-interval weights, a piecewise control) is found as
  surely as one used from the start. These are exactly the Tensors that
  backpropagation through the same solve would reach. They become parents of
  the solution's graph node, so the backward walk can deliver their gradients;
* the backward solve starts every ``a_theta`` channel at zero at ``t_N``,
  which is exact for a parameter first used later (its channel stays zero
  until the backward solve reaches the time where ``func`` reads it);
* a leaf requiring grad that ``func`` reads during the backward solve but never
  read during the forward solve cannot receive a gradient (it is not a parent
  of the node): that is a :class:`~odeflow.errors.GradientError` naming its
  shape and the time (see :func:`unknown_leaf_error`), never a silent zero.

Recording costs a few per cent of an evaluation (the graph of one evaluation
is built and dropped). ``adjoint_params=`` replaces the search and restricts
the gradient to the Tensors listed (the others are constants). The counts of
which evaluations read which parameter also tell the seminorm which
``a_theta`` channels may be left out of the step-size control
(:func:`odeflow.adjoint.layout.tolerances`).

A gradient silently missing is the worst failure of a gradient library: an
ndarray captured in ``func``'s closure can never receive one, so it is named
in a :class:`~odeflow.errors.GradientError` unless the caller says which
parameters to differentiate (``adjoint_params=...``, possibly empty).
"""
from __future__ import annotations

import warnings
import weakref

import numpy as np

from odeflow.autodiff.backprop import leaves
from odeflow.autodiff.tensor import Tensor, enable_grad, watch_detach
from odeflow.errors import GradientAccuracyWarning, GradientError, InputTypeError
from odeflow.nn.module import Module

__all__ = ["check_adjoint_params", "check_closure", "Recorder", "find_params", "not_a_tensor_error",
           "unknown_leaf_error", "call_watched"]


def _arrays_in(value, name, depth=0):
    """Float ndarrays held by a closure cell (directly or in a list/tuple/dict), with their names."""
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        return [(name, value.shape)]
    if isinstance(value, (list, tuple)) and depth < 2:
        return [a for i, v in enumerate(value) for a in _arrays_in(v, f"{name}[{i}]", depth + 1)]
    if isinstance(value, dict) and depth < 2:
        return [a for k, v in value.items() for a in _arrays_in(v, f"{name}[{k!r}]", depth + 1)]
    return []


def unique(params):
    """`params` without repeats (by identity), in their first order."""
    seen, out = set(), []
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


def check_adjoint_params(adjoint_params):
    """``adjoint_params`` as a list of distinct Tensors requiring grad.

    Raises
    ------
    InputTypeError
        Not a sequence of Tensors (a Module is named with a hint to pass
        ``module.parameters()``).
    GradientError
        An entry does not require grad.
    """
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
    return unique(params)


def check_closure(func):
    """Refuse a ``func`` whose closure holds float ndarrays (they would silently get no gradient).

    A ``func`` bound to ``args`` (:func:`odeflow.adjoint.common.with_args`) is
    checked as the user's own ``func`` plus the arrays among its ``args``.

    Raises
    ------
    GradientError
        Naming each array and its shape, with the two ways out.
    """
    bound = getattr(func, "bound_args", None)  # func(t, y, *args) bound by adjoint.common.with_args
    if bound is not None:
        check_closure(func.__wrapped__)
        _refuse([a for i, v in enumerate(bound) for a in _arrays_in(v, f"args[{i}]")],
                "float ndarray(s) {} in `args`")
        return
    arrays = []
    code = getattr(func, "__code__", None)
    for name, cell in zip(getattr(code, "co_freevars", ()), getattr(func, "__closure__", None) or ()):
        try:
            arrays += _arrays_in(cell.cell_contents, name)
        except ValueError:  # an empty cell
            continue
    _refuse(arrays, "`func` captures float ndarray(s) {} in its closure")


def _refuse(arrays, where):
    """The GradientError of :func:`check_closure` for `arrays` ``[(name, shape)]``, if any."""
    if arrays:
        listed = ", ".join(f"`{n}` (shape {s})" for n, s in arrays)
        raise GradientError(
            f"{where.format(listed)}: they can never receive a gradient. Make them Tensors with "
            f"requires_grad=True (or nn.Parameter) to learn them, or pass adjoint_params=[...] "
            f"listing the Tensors to differentiate (possibly empty) to treat them as constants")


def find_params(func, probe, adjoint_params=None):
    """The parameters of one probe evaluation ``probe = (func(t0, y), y)``, or `adjoint_params`.

    It sees only what ``func`` reads at that one evaluation, so the solvers never
    use it to discover a ``func``'s parameters: :func:`odeflow.odeint_adjoint`,
    with or without ``batch_axis``, uses :class:`Recorder` (every forward
    evaluation). :mod:`odeflow.adjoint.event` uses it for its checks only.
    """
    if adjoint_params is not None:
        return check_adjoint_params(adjoint_params)
    check_closure(func)
    output, y = probe
    used = leaves(output) if isinstance(output, Tensor) else []
    return unique([p for p in used if p is not y])


def call_watched(func, *args):
    """``func(*args)``, warning if it read a Tensor requiring grad as a plain number or array.

    ``float(W)``, ``W.item()``, ``np.asarray(W)`` or a NumPy function of ``W``
    inside ``func`` return values cut from the graph, so whatever ``func``
    computes from them contributes nothing to ``W``'s gradient, silently (the
    autodiff engine cannot see through NumPy). A
    :class:`~odeflow.errors.GradientAccuracyWarning` names the Tensor's shape;
    ``W.data`` says "a constant" on purpose and is not reported.
    """
    with watch_detach() as hits:
        out = func(*args)
    if hits:
        shapes = ", ".join(str(h.shape) for h in hits[:4]) + (", ..." if len(hits) > 4 else "")
        warnings.warn(
            f"`func` read Tensor(s) requiring grad of shape {shapes} as plain numbers or arrays (float(), "
            f".item(), np.asarray() or a NumPy function on a Tensor): what it computes from them is cut from "
            f"the graph and gets no gradient. Use odeflow ops on the Tensor, or its .data to use it as a "
            f"constant on purpose", GradientAccuracyWarning, stacklevel=3)
    return out


def not_a_tensor_error(out):
    return GradientError(
        f"`func` returned a {type(out).__name__} for a Tensor `y`, so no gradient can flow "
        f"through it: build dy/dt with odeflow ops on `y` (if it truly depends on neither `y` "
        f"nor any parameter, return odeflow.Tensor(...))")


def unknown_leaf_error(leaf, t):
    """The error for a Tensor first met by the backward solve (see the module docstring)."""
    return GradientError(
        f"`func` read a Tensor of shape {leaf.shape} requiring grad at t = {float(t)!r} during the "
        f"adjoint's backward solve, but never during the forward solve, so it is not part of the "
        f"solution's graph and cannot receive its gradient. Pass it in adjoint_params (with the "
        f"other parameters), or use adjoint_mode='checkpoint' / odeflow.odeint")


def _leaves(out):
    """:func:`odeflow.autodiff.backprop.leaves` of `out`, in its order, read off directly when
    `out` is one node over leaves (a fused ``nn.MLP``: no graph search per evaluation)."""
    parents = out._parents
    if out._vjp is None or any(p._vjp is not None for p in parents):
        return leaves(out)
    found, seen = [], set()
    for p in reversed(parents):  # the search's order: depth first, last parent first
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            found.append(p)
    return found


class Recorder:
    """``func`` on arrays for the forward solve, watching which parameters it reads.

    Each evaluation is recorded, the leaves requiring grad of its result
    collected (``params``, in order of first use) and counted, so that
    :meth:`steady` can tell a parameter read by every evaluation from one read
    only at some times (a branch on ``t``).

    Parameters
    ----------
    func : callable ``func(t, y)`` on Tensors

    Raises (when called)
    ------
    GradientError
        ``func`` returned something other than a Tensor.
    """

    def __init__(self, func):
        self.func = func
        self._found = {}
        self._reads = {}
        self.n_evals = 0

    @property
    def params(self):
        return list(self._found.values())

    def steady(self, params):
        """For each of `params`: was it read by every forward evaluation?"""
        return [self._reads.get(id(p), 0) == self.n_evals for p in params]

    def __call__(self, t, y):
        with enable_grad():
            out = call_watched(self.func, t, Tensor(y))
        if not isinstance(out, Tensor):
            raise not_a_tensor_error(out)
        self.n_evals += 1
        data = out.data
        if out.requires_grad:
            new, leaf = [], None
            for leaf in _leaves(out):
                if id(leaf) in self._found:
                    self._reads[id(leaf)] += 1
                else:
                    new.append(weakref.ref(leaf))
            # a leaf first met here is a parameter only if it outlives this evaluation's graph: a
            # leaf func creates for itself (a fresh copy of z to take df/dz against, as the CNF's
            # and the regularizers' dynamics do) dies with `out`, and nothing could read its
            # gradient; as a parameter it added an a_theta channel per evaluation to the backward
            # state, diluting the RMS error norm of the backward solve
            del out, leaf
            for ref in new:
                leaf = ref()
                if leaf is not None:
                    self._found[id(leaf)] = leaf
                    self._reads[id(leaf)] = 1
        return data
