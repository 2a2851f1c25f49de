"""Every differentiable op: its NumPy forward and, next to it, its VJP.

Reading guide. An op

1. turns its inputs into Tensors (constants become Tensors that do not
   require grad; Python scalars take the other operand's dtype);
2. computes the result on ``.data`` with NumPy;
3. calls ``_node(result, parents, *vjps)``, where ``vjps[i]`` is a small
   function ``(g, out) -> gradient of parents[i]``: the vector-Jacobian
   product of the op with the output gradient ``g`` (a Tensor shaped like the
   output); ``out`` is the op's output Tensor, for VJPs that reuse it
   (``exp``, ``tanh``, ``sqrt``...).

``_node`` records the parents and VJPs only when recording is on and some
parent requires grad; otherwise it returns a plain Tensor and the op costs the
NumPy call plus a few attribute stores. The VJPs are written with the ops of
this module, so that when ``backward(create_graph=True)`` records the backward
pass, the gradients are themselves differentiable; when it does not, those
ops record nothing and run at NumPy speed.

Every op that broadcasts sums its gradients back to each input's shape with
:func:`unbroadcast`. Ops that are not smooth everywhere (relu, abs, clip, max)
use the subgradient stated in their docstring.

References
----------
.. [1] D. Maclaurin, D. Duvenaud, M. Johnson, HIPS autograd,
   https://github.com/HIPS/autograd (``numpy/numpy_vjps.py``: one VJP per
   argument, defined next to its op; ``unbroadcast``).
.. [2] A. Griewank, A. Walther, "Evaluating Derivatives", 2nd ed., SIAM, 2008,
   ch. 3 (reverse mode) and §4.6 (higher derivatives by reverse-over-reverse).
"""
from __future__ import annotations

import builtins
import math

import numpy as np

from odeflow.autodiff.tensor import Tensor, _mode, _wrap
from odeflow.errors import InputError, InputTypeError, ShapeError

__all__ = [
    "make_node", "unbroadcast",
    "add", "sub", "mul", "div", "neg", "pow", "matmul", "linear", "lincomb",
    "exp", "log", "sqrt", "tanh", "sigmoid", "softplus", "relu", "elu", "sin", "cos", "abs",
    "sum", "mean", "max", "min", "logsumexp", "softmax", "log_softmax",
    "reshape", "transpose", "swapaxes", "expand_dims", "broadcast_to", "astype",
    "concatenate", "stack", "split", "getitem", "index_add", "where", "clip",
]

_SCALARS = (int, float, np.integer, np.floating)


# -- plumbing ----------------------------------------------------------------------

def _node(data, parents, *vjps):
    """Wrap `data` as an op's output; record `parents` and `vjps` when needed.

    The backward walk calls each ``vjps[i](g, out)`` with the output gradient
    `g` and the output Tensor `out` itself. Passing `out` in, rather than
    letting the VJP capture it, avoids a reference cycle (node -> closure ->
    node) that would keep every saved array alive until Python's cyclic
    garbage collector runs.
    """
    if type(data) is not np.ndarray:  # NumPy returns scalars for 0-d results
        data = np.asarray(data)
    if _mode.enabled:
        for p in parents:
            if p.requires_grad:
                return _wrap(data, parents, lambda g, out: [
                    f(g, out) if q.requires_grad else None for q, f in zip(parents, vjps)])
    return _wrap(data)


def make_node(data, parents, vjp) -> Tensor:
    """Make a Tensor computed outside this module (a custom op) differentiable.

    Parameters
    ----------
    data : array_like
        The op's result.
    parents : sequence of Tensor
        The op's differentiable inputs.
    vjp : callable
        ``vjp(g) -> sequence`` with one entry per parent: the gradient of that
        parent (Tensor or ndarray of the parent's shape, or None for zero),
        given the output gradient ``g`` (a Tensor of `data`'s shape). It is
        called once per backward walk, so one expensive computation (an
        adjoint solve) can serve every parent.

    Returns
    -------
    Tensor
        Requires grad when recording is on and some parent requires grad.
    """
    data = np.asarray(data)
    parents = tuple(parents)
    if _mode.enabled and builtins.any(p.requires_grad for p in parents):
        return _wrap(data, parents, lambda g, out: vjp(g))
    return _wrap(data)


def _t(x) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(x)


def _lift(x, like: Tensor) -> Tensor:
    """A constant as a Tensor; scalars take `like`'s floating dtype (float32 stays float32)."""
    if isinstance(x, _SCALARS) and like.data.dtype.kind == "f":
        return _wrap(np.asarray(x, like.data.dtype))
    return Tensor(x)


def _pair(a, b):
    if isinstance(a, Tensor):
        return a, (b if isinstance(b, Tensor) else _lift(b, a))
    b = _t(b)
    return _lift(a, b), b


def _broadcasting(ufunc, a: Tensor, b: Tensor):
    try:
        return ufunc(a.data, b.data)
    except ValueError:
        try:
            np.broadcast_shapes(a.shape, b.shape)
        except ValueError:
            raise ShapeError(f"{ufunc.__name__}: operands with shapes {a.shape} and {b.shape} "
                             "cannot be broadcast together") from None
        raise


def _axes(axis, ndim: int) -> tuple:
    """`axis` (None, int or tuple) as a sorted tuple of non-negative ints."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    if builtins.any(not -ndim <= a < ndim for a in axes):
        raise InputError(f"`axis` {axis} is out of range for a Tensor with {ndim} dimensions")
    return tuple(sorted(int(a) % ndim for a in axes))


def _kept(shape: tuple, axes: tuple) -> tuple:
    """`shape` after a reduction over `axes` with keepdims=True."""
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


def unbroadcast(g: Tensor, shape: tuple) -> Tensor:
    """Sum `g` over the axes that broadcasting added or stretched, giving `shape`.

    This is the VJP of broadcasting, shared by every broadcasting op.
    """
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1)
    return reshape(sum(g, axes), shape)


# -- arithmetic --------------------------------------------------------------------

def add(a, b):
    """``a + b`` with broadcasting."""
    a, b = _pair(a, b)
    return _node(_broadcasting(np.add, a, b), (a, b),
                 lambda g, out: unbroadcast(g, a.shape),
                 lambda g, out: unbroadcast(g, b.shape))


def sub(a, b):
    """``a - b`` with broadcasting."""
    a, b = _pair(a, b)
    return _node(_broadcasting(np.subtract, a, b), (a, b),
                 lambda g, out: unbroadcast(g, a.shape),
                 lambda g, out: unbroadcast(-g, b.shape))


def mul(a, b):
    """``a * b`` with broadcasting."""
    a, b = _pair(a, b)
    return _node(_broadcasting(np.multiply, a, b), (a, b),
                 lambda g, out: unbroadcast(g * b, a.shape),
                 lambda g, out: unbroadcast(g * a, b.shape))


def div(a, b):
    """``a / b`` with broadcasting."""
    a, b = _pair(a, b)
    return _node(_broadcasting(np.divide, a, b), (a, b),
                 lambda g, out: unbroadcast(g / b, a.shape),
                 lambda g, out: unbroadcast(-g * out / b, b.shape))  # d(a/b)/db = -(a/b)/b


def neg(x):
    """``-x``."""
    x = _t(x)
    return _node(-x.data, (x,), lambda g, out: -g)


def pow(a, b):
    """``a ** b`` with broadcasting.

    The gradient for the exponent uses ``log(a)`` where ``a > 0`` and 0
    elsewhere (the limit for ``a -> 0+`` with ``b > 0``; negative bases have no
    real derivative in ``b``).
    """
    a, b = _pair(a, b)
    return _node(_broadcasting(np.power, a, b), (a, b),
                 lambda g, out: unbroadcast(g * b * a ** (b - 1), a.shape),
                 lambda g, out: unbroadcast(g * out * log(where(a.data > 0, a, 1.0)), b.shape))


def matmul(a, b):
    """``a @ b`` with NumPy's rules: batched over leading axes, 1-D operands allowed.

    Raises
    ------
    ShapeError
        If the contracted axes differ, the batch axes do not broadcast, or an
        operand is 0-d; the message shows both shapes.
    """
    a, b = _pair(a, b)
    try:
        data = np.matmul(a.data, b.data)
    except ValueError as e:
        raise ShapeError(f"matmul: operands with shapes {a.shape} and {b.shape} do not fit "
                         f"({e})") from None
    return _node(data, (a, b),
                 lambda g, out: _matmul_vjp(g, a, b, 0),
                 lambda g, out: _matmul_vjp(g, a, b, 1))


def _matmul_vjp(g, a, b, which):
    if a.ndim == 2 and b.ndim == 2:  # the common case, without the general machinery
        return g @ transpose(b) if which == 0 else transpose(a) @ g
    # Lift 1-D operands to matrices as NumPy does ((n,) is (1, n) on the left,
    # (n, 1) on the right), so that one pair of formulas covers every case.
    a2 = reshape(a, (1, -1)) if a.ndim == 1 else a
    b2 = reshape(b, (-1, 1)) if b.ndim == 1 else b
    batch = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
    g2 = reshape(g, batch + (a2.shape[-2], b2.shape[-1]))
    if which == 0:
        return reshape(unbroadcast(g2 @ swapaxes(b2, -1, -2), a2.shape), a.shape)
    return reshape(unbroadcast(swapaxes(a2, -1, -2) @ g2, b2.shape), b.shape)


def linear(x, weight, bias=None):
    """``x @ weight.T + bias``, the affine map of a Linear layer, as one node.

    Parameters
    ----------
    x : Tensor, shape (..., in_features)
    weight : Tensor, shape (out_features, in_features)
    bias : Tensor, shape (out_features,), optional

    Returns
    -------
    Tensor, shape (..., out_features)

    Notes
    -----
    Equal to ``x @ transpose(weight) + bias`` but one node instead of three,
    and the weight gradient comes out in the weight's own layout: the inner
    loop of training spends less time in Python.

    Raises
    ------
    ShapeError
        If the last axis of `x` is not `weight`'s second, or `bias` does not
        have shape ``(out_features,)``.
    """
    x, weight = _t(x), _t(weight)
    if x.ndim == 0 or weight.ndim != 2 or x.shape[-1] != weight.shape[1]:
        raise ShapeError(f"linear: `x` of shape {x.shape} does not fit `weight` of shape "
                         f"{weight.shape} (needs x.shape[-1] == weight.shape[1])")
    data = x.data @ weight.data.T
    vjps = [lambda g, out: g @ weight,
            # weight gradient: sum over every batch axis of outer(g, x)
            lambda g, out: transpose(reshape(g, (-1, weight.shape[0]))) @ reshape(x, (-1, weight.shape[1]))]
    if bias is None:
        return _node(data, (x, weight), *vjps)
    bias = _t(bias)
    if bias.shape != weight.shape[:1]:
        raise ShapeError(f"linear: `bias` has shape {bias.shape}; expected {weight.shape[:1]}")
    data = np.add(data, bias.data, out=data) if data.dtype == bias.dtype else data + bias.data
    return _node(data, (x, weight, bias), *vjps,
                 lambda g, out: sum(g, tuple(range(g.ndim - 1))))


def lincomb(base, scale, coeffs, terms):
    """``base + scale * sum_j coeffs[j] * terms[j]`` as one node.

    A Runge–Kutta stage ``y + h sum_j a_ij k_j`` (Hairer, Nørsett & Wanner,
    vol. I, §II.1, eq. 1.8) built from ``mul`` and ``add`` is ``2 m + 1`` nodes
    for ``m`` terms; this is one, with one VJP: ``base`` receives ``g`` and
    ``terms[j]`` receives ``(scale * coeffs[j]) g`` (Tensor ops, so it can be
    differentiated again). The forward sums in the order written above, as
    the array solver's :func:`odeflow.solvers.kernels.combine` does.

    Parameters
    ----------
    base : Tensor, any shape
    scale : float
    coeffs : sequence of float, one per term (zeros are skipped)
    terms : sequence of Tensor, each of `base`'s shape

    Returns
    -------
    Tensor of `base`'s shape; its dtype is NumPy's promotion of `base`'s and
    the terms' dtypes (the float coefficients do not promote: float32 stays
    float32)

    Raises
    ------
    ShapeError
        A term's shape differs from `base`'s.
    InputError
        `coeffs` and `terms` differ in length.
    InputTypeError
        `scale` or a coefficient is not a real number (a Tensor would silently
        get no gradient: build that sum from ``mul`` and ``add`` instead).
    """
    for name, value in [("scale", scale)] + [(f"coeffs[{j}]", c) for j, c in enumerate(coeffs)]:
        real = isinstance(value, (int, float, np.integer, np.floating))
        if isinstance(value, (bool, np.bool_)) or not real:
            raise InputTypeError(f"lincomb: `{name}` must be a real number (constant); got "
                                 f"{type(value).__name__}")
    base = _t(base)
    terms = [_t(k) for k in terms]
    if len(coeffs) != len(terms):
        raise InputError(f"lincomb: {len(coeffs)} `coeffs` for {len(terms)} `terms`")
    pairs = [(float(c), k) for c, k in zip(coeffs, terms) if c != 0.0]
    for _, k in pairs:
        if k.shape != base.shape:
            raise ShapeError(f"lincomb: a term of shape {k.shape} does not match `base` of shape {base.shape}")
    if not pairs:
        return base
    scale = float(scale)
    acc = pairs[0][0] * pairs[0][1].data
    for c, k in pairs[1:]:
        acc += c * k.data
    data = base.data + scale * acc
    return _node(data, (base,) + tuple(k for _, k in pairs),
                 lambda g, out: g,
                 *[(lambda c: lambda g, out: g * c)(scale * c) for c, _ in pairs])


# -- elementwise functions ---------------------------------------------------------

def exp(x):
    """``e ** x``."""
    x = _t(x)
    return _node(np.exp(x.data), (x,), lambda g, out: g * out)


def log(x):
    """Natural logarithm."""
    x = _t(x)
    return _node(np.log(x.data), (x,), lambda g, out: g / x)


def sqrt(x):
    """Square root."""
    x = _t(x)
    return _node(np.sqrt(x.data), (x,), lambda g, out: g / (2.0 * out))


def tanh(x):
    """Hyperbolic tangent."""
    x = _t(x)
    return _node(np.tanh(x.data), (x,), lambda g, out: g * (1.0 - out * out))


def sigmoid(x):
    """Logistic function ``1 / (1 + e**-x)``, computed as ``exp(-softplus(-x))``:
    no overflow for large ``|x|`` and full relative precision in both tails."""
    x = _t(x)
    return _node(np.exp(-np.logaddexp(0.0, -x.data)), (x,), lambda g, out: g * out * (1.0 - out))


def softplus(x):
    """``log(1 + e**x)``, computed as ``logaddexp(0, x)`` (no overflow)."""
    x = _t(x)
    return _node(np.logaddexp(0.0, x.data), (x,), lambda g, out: g * sigmoid(x))


def relu(x):
    """``max(x, 0)``; the subgradient at 0 is 0."""
    x = _t(x)
    return _node(np.maximum(x.data, 0), (x,), lambda g, out: g * _mask(x.data > 0, x))


def elu(x, alpha: float = 1.0):
    """``x`` for ``x > 0``, ``alpha * (e**x - 1)`` otherwise (Clevert et al. 2016)."""
    x = _t(x)
    pos = x.data > 0
    # expm1 of the clipped value: the branch not taken must not overflow
    return _node(np.where(pos, x.data, alpha * np.expm1(np.minimum(x.data, 0))), (x,),
                 lambda g, out: where(pos, g, g * (out + alpha)))  # alpha*e**x = out + alpha


def sin(x):
    """Sine (radians)."""
    x = _t(x)
    return _node(np.sin(x.data), (x,), lambda g, out: g * cos(x))


def cos(x):
    """Cosine (radians)."""
    x = _t(x)
    return _node(np.cos(x.data), (x,), lambda g, out: -g * sin(x))


def abs(x):
    """``|x|``; the subgradient at 0 is 0."""
    x = _t(x)
    return _node(np.abs(x.data), (x,), lambda g, out: g * _wrap(np.sign(x.data)))


def clip(x, lo=None, hi=None):
    """Limit `x` to ``[lo, hi]`` (either may be None). Bounds are constants.

    The gradient passes where ``lo <= x <= hi`` (boundaries included, as PyTorch).
    """
    x = _t(x)
    lo, hi = _constant(lo), _constant(hi)
    if lo is None and hi is None:
        return x
    inside = np.ones(x.shape, bool)
    if lo is not None:
        inside &= x.data >= lo
    if hi is not None:
        inside &= x.data <= hi
    return _node(np.clip(x.data, lo, hi), (x,), lambda g, out: g * _mask(inside, x))


def _mask(condition, like: Tensor) -> Tensor:
    return _wrap(condition.astype(like.data.dtype))


def _constant(x):
    return x.data if isinstance(x, Tensor) else x


# -- reductions ---------------------------------------------------------------------

def sum(x, axis=None, keepdims: bool = False):
    """Sum over `axis` (None: all axes; int or tuple of ints)."""
    x = _t(x)
    axes = _axes(axis, x.ndim)
    return _node(x.data.sum(axis=axes, keepdims=keepdims), (x,),
                 lambda g, out: broadcast_to(reshape(g, _kept(x.shape, axes)), x.shape))


def mean(x, axis=None, keepdims: bool = False):
    """Arithmetic mean over `axis`."""
    x = _t(x)
    axes = _axes(axis, x.ndim)
    return sum(x, axes, keepdims) / math.prod(x.shape[i] for i in axes)


def max(x, axis=None, keepdims: bool = False):
    """Maximum over `axis`. Tied maxima share the gradient equally."""
    x = _t(x)
    axes = _axes(axis, x.ndim)
    top = x.data.max(axis=axes, keepdims=True)

    def vjp(g, out):
        hit = x.data == top
        share = (hit / hit.sum(axis=axes, keepdims=True)).astype(x.dtype)
        return broadcast_to(reshape(g, top.shape), x.shape) * _wrap(share)

    return _node(top if keepdims else top.reshape(_reduced(x.shape, axes)), (x,), vjp)


def min(x, axis=None, keepdims: bool = False):
    """Minimum over `axis`. Tied minima share the gradient equally."""
    return -max(-_t(x), axis, keepdims)


def logsumexp(x, axis=None, keepdims: bool = False):
    """``log(sum(exp(x)))`` over `axis`, shifted by the maximum so that it
    neither overflows nor underflows. Its VJP is ``g * softmax(x)``."""
    x = _t(x)
    axes = _axes(axis, x.ndim)
    m = np.max(x.data, axis=axes, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)  # all -inf (or an inf) along an axis: no shift
    kept = np.log(np.sum(np.exp(x.data - m), axis=axes, keepdims=True)) + m
    return _node(kept if keepdims else kept.reshape(_reduced(x.shape, axes)), (x,),
                 lambda g, out: reshape(g, kept.shape) * exp(x - reshape(out, kept.shape)))


def softmax(x, axis: int = -1):
    """``exp(x) / sum(exp(x))`` along `axis`, via :func:`logsumexp` (stable)."""
    return exp(x - logsumexp(x, axis, keepdims=True))


def log_softmax(x, axis: int = -1):
    """``x - logsumexp(x)`` along `axis`."""
    return x - logsumexp(x, axis, keepdims=True)


def _reduced(shape, axes):
    return tuple(n for i, n in enumerate(shape) if i not in axes)


# -- shape ops -----------------------------------------------------------------------

def reshape(x, shape):
    """Same data, new `shape` (one entry may be -1).

    Raises
    ------
    ShapeError
        If the sizes differ; the message shows both shapes.
    """
    x = _t(x)
    shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if shape == x.shape:
        return x
    try:
        data = x.data.reshape(shape)
    except ValueError:
        raise ShapeError(f"cannot reshape a Tensor of shape {x.shape} (size {x.size}) "
                         f"to `shape` {shape}") from None
    return _node(data, (x,), lambda g, out: reshape(g, x.shape))


def transpose(x, axes=None):
    """Permute the axes (None: reverse them), as ``np.transpose``."""
    x = _t(x)
    if axes is None:  # reversing the axes is its own inverse
        return _node(x.data.T, (x,), lambda g, out: transpose(g))
    axes = tuple(int(a) % builtins.max(x.ndim, 1) for a in axes)
    if sorted(axes) != list(range(x.ndim)):
        raise InputError(f"`axes` {axes} is not a permutation of the {x.ndim} axes of shape {x.shape}")
    inverse = tuple(np.argsort(axes))
    return _node(x.data.transpose(axes), (x,), lambda g, out: transpose(g, inverse))


def swapaxes(x, axis1: int, axis2: int):
    """Exchange two axes."""
    x = _t(x)
    axes = list(range(x.ndim))
    axes[axis1], axes[axis2] = axes[axis2], axes[axis1]
    return transpose(x, axes)


def expand_dims(x, axis: int):
    """Insert a size-1 axis at position `axis`."""
    x = _t(x)
    return reshape(x, np.expand_dims(x.data, axis).shape)


def broadcast_to(x, shape):
    """Broadcast `x` to `shape` (a read-only view). Its VJP is :func:`unbroadcast`.

    Raises
    ------
    ShapeError
        If `x`'s shape cannot be broadcast to `shape`.
    """
    x = _t(x)
    shape = tuple(shape)
    if shape == x.shape:
        return x
    try:
        data = np.broadcast_to(x.data, shape)
    except ValueError:
        raise ShapeError(f"cannot broadcast a Tensor of shape {x.shape} to `shape` {shape}") from None
    return _node(data, (x,), lambda g, out: unbroadcast(g, x.shape))


def astype(x, dtype):
    """Convert to floating `dtype`; the gradient is converted back."""
    x = _t(x)
    if np.dtype(dtype) == x.dtype:
        return x
    return _node(x.data.astype(dtype), (x,), lambda g, out: astype(g, x.dtype))


def concatenate(tensors, axis: int = 0):
    """Join Tensors along an existing `axis`.

    Raises
    ------
    ShapeError
        If the shapes differ off `axis`; the message lists every shape.
    """
    ts = [_t(t) for t in tensors]
    if not ts:
        raise InputError("`tensors` is empty: concatenate needs at least one Tensor")
    try:
        data = np.concatenate([t.data for t in ts], axis=axis)
    except ValueError as e:
        raise ShapeError(f"concatenate along axis {axis}: shapes {[t.shape for t in ts]} "
                         f"do not fit ({e})") from None
    axis = axis % data.ndim
    ends = np.cumsum([t.shape[axis] for t in ts])

    def piece(i):  # gradient of ts[i]: its slice of g
        index = (slice(None),) * axis + (slice(int(ends[i] - ts[i].shape[axis]), int(ends[i])),)
        return lambda g, out: getitem(g, index)

    return _node(data, tuple(ts), *[piece(i) for i in range(len(ts))])


def stack(tensors, axis: int = 0):
    """Join Tensors of one shape along a new `axis`.

    Raises
    ------
    ShapeError
        If the shapes differ; the message lists every shape.
    """
    ts = [_t(t) for t in tensors]
    if len({t.shape for t in ts}) > 1:
        raise ShapeError(f"stack needs Tensors of one shape; got shapes {[t.shape for t in ts]}")
    return concatenate([expand_dims(t, axis) for t in ts], axis)


def split(x, indices_or_sections, axis: int = 0):
    """Split into a list of Tensors, as ``np.split``.

    Raises
    ------
    ShapeError
        If an integer number of sections does not divide the axis length.
    """
    x = _t(x)
    n = x.shape[axis]
    if isinstance(indices_or_sections, (int, np.integer)):
        if indices_or_sections <= 0 or n % indices_or_sections:
            raise ShapeError(f"cannot split an axis of length {n} (shape {x.shape}, axis {axis}) "
                             f"into {indices_or_sections} equal sections")
        step = n // indices_or_sections
        cuts = list(range(step, n, step))
    else:
        cuts = [int(i) for i in indices_or_sections]
    lead = (slice(None),) * (axis % x.ndim)
    return [getitem(x, lead + (slice(lo, hi),)) for lo, hi in zip([0] + cuts, cuts + [n])]


def getitem(x, index):
    """``x[index]``: basic indexing (ints, slices, None, Ellipsis), integer
    arrays and boolean masks, as NumPy. Tensor indices are used as constants."""
    x = _t(x)
    index = _index(index)
    return _node(x.data[index], (x,), lambda g, out: index_add(g, index, x.shape))


def index_add(g, index, shape):
    """Zeros of `shape` with `g` added at `index` (repeated indices add up,
    ``np.add.at``). The adjoint of :func:`getitem`, and its VJP."""
    g = _t(g)
    index = _index(index)
    out = np.zeros(shape, dtype=g.dtype)
    if builtins.all(isinstance(i, (int, np.integer, slice)) or i is None or i is Ellipsis
                    for i in index):
        out[index] = g.data  # basic indexing never repeats an element: plain store
    else:
        np.add.at(out, index, g.data)
    return _node(out, (g,), lambda h, out: getitem(h, index))


def _index(index) -> tuple:
    index = index if isinstance(index, tuple) else (index,)
    return tuple(i.data if isinstance(i, Tensor) else np.asarray(i) if isinstance(i, list) else i
                 for i in index)


def where(condition, x, y):
    """Elements of `x` where `condition` holds, of `y` elsewhere (all three broadcast).

    `condition` is a constant (array_like of bool, or a Tensor's data).

    Raises
    ------
    ShapeError
        If the three shapes cannot be broadcast together.
    """
    cond = np.asarray(_constant(condition), dtype=bool)
    x, y = _pair(x, y)
    try:
        data = np.where(cond, x.data, y.data)
    except ValueError:
        raise ShapeError(f"where: `condition`, `x`, `y` with shapes {cond.shape}, {x.shape}, "
                         f"{y.shape} cannot be broadcast together") from None
    return _node(data, (x, y),
                 lambda g, out: unbroadcast(where(cond, g, 0.0), x.shape),
                 lambda g, out: unbroadcast(where(cond, 0.0, g), y.shape))
