"""The graph walk of reverse mode: from outputs back to inputs.

Given output Tensors and their gradients ("seeds"), reverse mode visits every
node after all the nodes that consumed it (reverse topological order), and at
each node turns the gradient of its output into gradients of its parents with
the node's VJP. A node used twice (a diamond in the graph) receives two
contributions, which are summed before it is visited: that sum is the chain
rule for a shared subexpression.

Two entry points share the walk (:func:`_walk`):

* :func:`backward` accumulates into the ``.grad`` of every leaf that requires
  grad (what ``Tensor.backward`` does, and what training loops use);
* :func:`gradients` returns the gradients of chosen inputs and touches no
  ``.grad`` (as ``torch.autograd.grad``; what the adjoint method uses).

With ``create_graph=True`` the walk runs with recording on, so the gradients
are Tensors with a graph of their own and can be differentiated again. Without
it, recording is off and each VJP costs its NumPy arithmetic only.

Unless asked to retain it, the walk frees the graph as it goes (each visited
node drops its parents and VJP closure, and with them the saved arrays); a
second walk through a freed node raises :class:`~odeflow.errors.GradientError`.

References
----------
.. [1] A. Griewank, A. Walther, "Evaluating Derivatives", 2nd ed., SIAM, 2008,
   §3.2 (the reverse sweep, incremental adjoints).
.. [2] A. G. Baydin et al., "Automatic differentiation in machine learning: a
   survey", JMLR 18(153), 2018, §3.2 and Table 3.
"""
from __future__ import annotations

import numpy as np

from odeflow.autodiff.tensor import Tensor, _mode, _wrap
from odeflow.blas import limited
from odeflow.errors import GradientError, InputError, InputTypeError, ShapeError

__all__ = ["backward", "gradients", "leaf_gradients"]


def _freed(g, out):
    raise GradientError(
        "trying to walk a part of the graph that an earlier backward() already freed; "
        "pass retain_graph=True to the first backward() to walk the graph twice")


def _toposort(roots) -> list:
    """Nodes requiring grad reachable from `roots`, each *after* its parents
    (so ``order.pop()`` yields consumers before the nodes they consumed).

    Iterative depth-first search: graphs built by stepping an ODE solver are
    far deeper than Python's recursion limit.
    """
    order, seen = [], set()
    stack = [(root, False) for root in roots]
    while stack:
        node, expanded = stack.pop()
        if expanded:  # all parents are already in `order`
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        for p in node._parents:
            if p.requires_grad and id(p) not in seen:
                stack.append((p, False))
    return order


def _needed(order, targets: set) -> set:
    """Ids of the nodes from which some target can be reached (targets included)."""
    needed = set()
    for node in order:  # parents first
        if id(node) in targets or any(id(p) in needed for p in node._parents):
            needed.add(id(node))
    return needed


def leaves(outputs) -> list:
    """The leaf Tensors requiring grad that `outputs` were computed from, in a fixed order.

    These are the Tensors a backward walk from `outputs` would give a ``.grad``:
    a function's parameters, found from what it actually used.
    """
    roots = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
    return [n for n in _toposort([r for r in roots if r.requires_grad]) if n._vjp is None]


def _accumulate(grads: dict, node: Tensor, g) -> None:
    if not isinstance(g, Tensor):  # custom VJPs (make_node) may return arrays
        g = _wrap(np.asarray(g))
    if g.shape != node.shape:
        raise GradientError(f"a VJP returned a gradient of shape {g.shape} for a Tensor of "
                            f"shape {node.shape}")
    if g.dtype != node.dtype:
        g = g.astype(node.dtype)
    previous = grads.get(id(node))
    grads[id(node)] = g if previous is None else previous + g


def _walk(roots, seeds, targets, create_graph, retain_graph) -> dict:
    """Propagate `seeds` from `roots`; return ``{id: (node, gradient)}`` for the
    nodes in `targets` (a set of ids), or for every leaf when `targets` is None."""
    with limited(roots[0].size if roots else 0):  # BLAS threads: once per walk (odeflow.blas)
        return _walk_limited(roots, seeds, targets, create_graph, retain_graph)


def _walk_limited(roots, seeds, targets, create_graph, retain_graph) -> dict:
    order = _toposort(roots)
    needed = None if targets is None else _needed(order, targets)
    grads, found = {}, {}
    previous, _mode.enabled = _mode.enabled, create_graph
    try:
        for root, seed in zip(roots, seeds):
            _accumulate(grads, root, seed)
        while order:
            # pop: once its VJP has run, nothing here holds the node, so a freed
            # node's saved arrays are released at once and their memory reused
            node = order.pop()
            g = grads.pop(id(node), None)  # likewise each gradient, once used
            if g is None:
                continue
            wanted = node._vjp is None if targets is None else id(node) in targets
            if wanted:
                found[id(node)] = (node, g)
            if node._vjp is None:
                continue
            parents = node._parents
            if needed is not None and not any(id(p) in needed for p in parents):
                continue
            for parent, pg in zip(parents, node._vjp(g, node)):
                if pg is not None and parent.requires_grad and (needed is None or id(parent) in needed):
                    _accumulate(grads, parent, pg)
            if not retain_graph:
                node._parents, node._vjp = (), _freed
    finally:
        _mode.enabled = previous
    return found


def _seed(output, grad, name: str) -> Tensor:
    if not isinstance(output, Tensor):
        raise InputTypeError(f"can only differentiate a Tensor; got {type(output).__name__}")
    if not output.requires_grad:
        raise GradientError(
            f"the Tensor of shape {output.shape} does not require grad: none of the Tensors it "
            "was computed from has requires_grad=True, or it was computed under no_grad(), or it "
            "is (computed from) a gradient returned without create_graph=True; to differentiate "
            "a gradient, take it with backward(create_graph=True) or gradients(..., create_graph=True)")
    if grad is None:
        if output.size != 1:
            raise GradientError(
                f"`{name}` may be omitted only for a one-element Tensor; this one has shape "
                f"{output.shape}. Pass `{name}` of that shape, or reduce to a scalar first")
        return _wrap(np.ones(output.shape, output.dtype))
    g = grad if isinstance(grad, Tensor) else Tensor(grad)
    if g.shape != output.shape:
        raise ShapeError(f"`{name}` has shape {g.shape} but the Tensor it is the gradient "
                         f"of has shape {output.shape}")
    return g


def backward(tensor: Tensor, grad=None, create_graph: bool = False,
             retain_graph: bool | None = None) -> None:
    """Accumulate the gradient of `tensor` into ``.grad`` of every leaf requiring grad.

    Parameters
    ----------
    tensor : Tensor
        The output to differentiate.
    grad : array_like or Tensor, optional
        Seed: gradient of some scalar with respect to `tensor` (same shape).
        Defaults to 1 for a one-element `tensor`.
    create_graph : bool, default False
        Record the walk so the resulting ``.grad`` can be differentiated.
    retain_graph : bool, optional
        Keep the graph for another walk; defaults to `create_graph`.

    Raises
    ------
    GradientError
        `tensor` does not require grad; `grad` omitted for a Tensor with more
        than one element; the graph was freed by an earlier walk.
    ShapeError
        `grad`'s shape differs from `tensor`'s.

    Notes
    -----
    Without `create_graph`, each ``.grad`` gets its own array (a fresh copy the
    first time), so updating one in place never changes another.
    """
    seed = _seed(tensor, grad, "grad")
    retain = create_graph if retain_graph is None else retain_graph
    found = _walk([tensor], [seed], None, create_graph, retain)
    previous, _mode.enabled = _mode.enabled, create_graph
    try:
        for leaf, g in found.values():
            if leaf.grad is None:
                leaf.grad = g if create_graph else _wrap(g.data.copy())
            else:
                leaf.grad = leaf.grad + g
    finally:
        _mode.enabled = previous


def gradients(outputs, inputs, grad_outputs=None, create_graph: bool = False,
              retain_graph: bool | None = None, allow_unused: bool = False) -> tuple:
    """Gradients of `outputs` with respect to `inputs`, without touching ``.grad``.

    Computes ``sum_k grad_outputs[k]^T d outputs[k] / d inputs[i]`` for each
    input: a vector-Jacobian product. Inputs may be leaves or intermediate
    Tensors; only the part of the graph leading to them is walked.

    Parameters
    ----------
    outputs : Tensor or sequence of Tensor
    inputs : Tensor or sequence of Tensor
        Tensors requiring grad, for instance a module's parameters.
    grad_outputs : array_like, Tensor, or sequence of them, optional
        One seed per output, same shape; None entries mean 1 (one-element
        outputs only).
    create_graph : bool, default False
        Return gradients with a graph, differentiable again.
    retain_graph : bool, optional
        Keep the graph for another walk; defaults to `create_graph`.
    allow_unused : bool, default False
        Return None for an input the outputs do not depend on, instead of
        raising.

    Returns
    -------
    tuple of Tensor or None
        One entry per input, same shape and dtype as that input. Without
        `create_graph` they may share memory with `grad_outputs` or with each
        other: copy before modifying in place.

    Raises
    ------
    GradientError
        An input does not require grad, or is unused and `allow_unused` is
        False; an output does not require grad; see also :func:`backward`.
    ShapeError
        A seed's shape differs from its output's.
    InputError
        `grad_outputs` has a different length from `outputs`.
    """
    outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
    inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    elif not isinstance(grad_outputs, (list, tuple)):
        grad_outputs = [grad_outputs]
    if len(grad_outputs) != len(outputs):
        raise InputError(f"`grad_outputs` has {len(grad_outputs)} entries for "
                         f"{len(outputs)} outputs")
    for i, x in enumerate(inputs):
        if not isinstance(x, Tensor) or not x.requires_grad:
            raise GradientError(f"`inputs[{i}]` (shape {np.shape(x)}) does not require grad, "
                                "so no gradient can be computed for it")
    seeds = [_seed(o, g, f"grad_outputs[{k}]") for k, (o, g) in enumerate(zip(outputs, grad_outputs))]
    retain = create_graph if retain_graph is None else retain_graph
    found = _walk(outputs, seeds, {id(x) for x in inputs}, create_graph, retain)
    result = []
    for i, x in enumerate(inputs):
        entry = found.get(id(x))
        if entry is None and not allow_unused:
            raise GradientError(f"`inputs[{i}]` (shape {x.shape}) is not used to compute the "
                                "outputs; pass allow_unused=True to get None for it")
        result.append(None if entry is None else entry[1])
    return tuple(result)


def leaf_gradients(output: Tensor, grad, create_graph: bool = False,
                   retain_graph: bool | None = None) -> list:
    """``[(leaf, gradient), ...]`` for every leaf requiring grad that `output` was computed from.

    One walk, as :func:`backward`, but returning the gradients instead of
    accumulating them into ``.grad``: for callers that must see every leaf
    reached, not only chosen ones (the adjoint method meets parameters as it
    goes). The graph is freed unless `retain_graph` (default: `create_graph`).
    """
    seed = _seed(output, grad, "grad")
    retain = create_graph if retain_graph is None else retain_graph
    return list(_walk([output], [seed], None, create_graph, retain).values())
