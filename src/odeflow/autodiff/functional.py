"""Function transformations: ``vjp(f, *args)`` and ``grad(f)``, as in HIPS autograd and JAX.

Arrays in, arrays out: called with plain arrays, both return ndarrays and
leave no graph behind. Called with Tensors that require grad (inside another
``grad``/``vjp``, or on Parameters of an outer computation), they return
Tensors whose graph reaches those inputs, so derivatives nest:
``grad(grad(f))`` is the second derivative, and a vjp taken inside a function
that is itself differentiated (the trace term of a continuous normalizing flow
under the adjoint method) is differentiable.

References
----------
.. [1] D. Maclaurin, D. Duvenaud, M. Johnson, HIPS autograd,
   https://github.com/HIPS/autograd (``grad``, ``make_vjp``).
.. [2] A. G. Baydin et al., "Automatic differentiation in machine learning: a
   survey", JMLR 18(153), 2018, §3.2 (the vector-Jacobian product).
"""
from __future__ import annotations

import functools

import numpy as np

from odeflow.autodiff.backprop import gradients
from odeflow.autodiff.tensor import Tensor, _wrap, set_grad_enabled
from odeflow.errors import GradientError, InputError, InputTypeError

__all__ = ["vjp", "grad"]


def _differentiable(x) -> bool:
    return isinstance(x, Tensor) and x.requires_grad


def vjp(f, *args, params=None):
    """Evaluate ``f(*args)`` and return a function computing its vector-Jacobian products.

    Parameters
    ----------
    f : callable
        ``f(*tensors) -> Tensor`` built from odeflow ops. It receives each
        argument as a Tensor.
    *args : array_like or Tensor
        Points at which to differentiate. Arrays (and Tensors that do not
        require grad) become fresh leaves; Tensors that require grad are used
        as they are, so the result stays connected to their graph.
    params : sequence of Tensor, optional
        Further Tensors requiring grad that `f` uses without receiving them as
        arguments (for example ``module.parameters()`` captured in a closure).

    Returns
    -------
    out : ndarray or Tensor
        ``f(*args)``; a Tensor when some argument requires grad, else its data.
    vjp_fn : callable
        ``vjp_fn(cotangent)`` with `cotangent` of `out`'s shape returns a tuple
        with one gradient ``cotangent^T d out / d args[i]`` per argument (same
        shape as that argument, zeros if unused), or, when `params` is given,
        the pair ``(arg_gradients, param_gradients)``. Gradients are ndarrays,
        or Tensors with a graph (``create_graph``) when some argument or the
        cotangent requires grad. `vjp_fn` may be called several times.

    Raises
    ------
    InputTypeError
        `f` returns something other than a Tensor or array.
    GradientError
        An entry of `params` is not a Tensor requiring grad; or `f`'s result
        is not connected to its inputs (an ndarray, a Tensor made from
        ``.data`` or computed under ``no_grad``): its gradient cannot be
        computed, and zeros would be a silent lie. An argument `f` does not
        use while the result depends on others gets zeros (it truly has no
        effect).
    ShapeError
        (from `vjp_fn`) the cotangent's shape differs from `out`'s.

    Examples
    --------
    >>> out, vjp_fn = vjp(lambda x: x * x, np.array([1.0, 2.0]))
    >>> vjp_fn(np.ones(2))
    (array([2., 4.]),)
    """
    nested = any(_differentiable(a) for a in args)
    inputs = [a if _differentiable(a) else Tensor(a, requires_grad=True) for a in args]
    extra = [] if params is None else list(params)
    for i, p in enumerate(extra):
        if not _differentiable(p):
            raise GradientError(f"`params[{i}]` must be a Tensor with requires_grad=True; "
                                f"got {type(p).__name__}")
    with set_grad_enabled(True):  # a caller's no_grad must not stop the recording we need
        out = f(*inputs)
    if not isinstance(out, Tensor):
        if not isinstance(out, (np.ndarray, np.generic, float, int)):
            raise InputTypeError(f"`f` must return a Tensor; it returned {type(out).__name__}")
        raise GradientError(
            f"`f` returned a {type(out).__name__}, not a Tensor, so its result is not connected to "
            f"its inputs and no gradient can be computed (zeros would be wrong): build the result "
            f"with odeflow ops on the Tensors `f` receives, without going through `.data` or NumPy")
    targets = inputs + extra
    if not out.requires_grad:
        raise GradientError(
            f"the Tensor `f` returned (shape {out.shape}) is not connected to its inputs: it was "
            f"computed under no_grad, from `.data`, or as a new Tensor(...) of values, so no "
            f"gradient can be computed (zeros would be wrong); build it with odeflow ops on the "
            f"Tensors `f` receives")

    def vjp_fn(cotangent):
        create_graph = nested or _differentiable(cotangent)
        # retain_graph: vjp_fn may be called again with another cotangent
        grads = gradients(out, targets, cotangent,
                          create_graph=create_graph, retain_graph=True, allow_unused=True)
        grads = [_wrap(np.zeros_like(t.data)) if g is None else g for t, g in zip(targets, grads)]
        if not create_graph:
            grads = [g.data for g in grads]
        n = len(inputs)
        return tuple(grads) if params is None else (tuple(grads[:n]), tuple(grads[n:]))

    return (out if nested else out.data), vjp_fn


def grad(f, argnums=0):
    """The gradient of a scalar-valued `f` with respect to the arguments `argnums`.

    Parameters
    ----------
    f : callable
        ``f(*args) -> Tensor`` with one element, built from odeflow ops.
    argnums : int or tuple of int, default 0
        Which positional arguments to differentiate; the others are passed
        to `f` unchanged.

    Returns
    -------
    callable
        ``grad_f(*args)`` returning the gradient (an array shaped like
        ``args[argnums]``), or a tuple of them when `argnums` is a tuple.
        Tensors with a graph instead of arrays when called with Tensors
        requiring grad, so ``grad(grad(f))`` works.

    Raises
    ------
    InputError
        (from ``grad_f``) `argnums` refers to a missing argument.
    GradientError
        (from ``grad_f``) `f` returns more than one element, or a result not
        connected to its inputs (see :func:`vjp`).

    Examples
    --------
    >>> from odeflow.autodiff import ops
    >>> grad(lambda x: ops.sum(x ** 3))(np.array([1.0, 2.0]))
    array([ 3., 12.])
    """
    single = isinstance(argnums, (int, np.integer))
    nums = (int(argnums),) if single else tuple(int(i) for i in argnums)

    @functools.wraps(f)
    def grad_f(*args):
        for i in nums:
            if not -len(args) <= i < len(args):
                raise InputError(f"`argnums` {argnums} refers to argument {i}, but "
                                 f"{len(args)} arguments were given")

        def f_of_chosen(*chosen):
            full = list(args)
            for i, value in zip(nums, chosen):
                full[i] = value
            return f(*full)

        out, vjp_fn = vjp(f_of_chosen, *[args[i] for i in nums])
        if np.size(out.data if isinstance(out, Tensor) else out) != 1:
            raise GradientError(f"grad needs `f` to return one number; it returned shape "
                                f"{np.shape(out)}. Use vjp for vector-valued functions")
        grads = vjp_fn(np.ones(np.shape(out)))
        return grads[0] if single else grads

    return grad_f
