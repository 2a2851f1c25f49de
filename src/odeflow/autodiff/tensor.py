"""The `Tensor`: a NumPy array that remembers how it was computed.

A Tensor produced by an op while gradient recording is on keeps its parent
Tensors (``_parents``) and one closure (``_vjp``); ``_vjp(g, node)`` maps the
gradient ``g`` of the node to the gradients of its parents. ``backward()`` walks those links in
reverse topological order (see :mod:`odeflow.autodiff.backprop`). A Tensor with
``_vjp is None`` is a *leaf*: created by the user, a constant, or computed while
recording was off.

Recording is on by default and switched off by :func:`no_grad`. The state is
per thread, as in PyTorch, so a solver running in another thread cannot switch
it off for this one.

Conventions
-----------
* ``data`` is always an ``ndarray``. Floating dtypes are kept (float32 stays
  float32); integer and boolean data are promoted to float64 when
  ``requires_grad=True`` and kept otherwise (useful for index arrays). Complex
  and object data are refused.
* ``grad`` is ``None`` or a Tensor of the same shape and dtype as ``data``
  (as in PyTorch). After ``backward(create_graph=True)`` it is itself part of a
  graph and can be differentiated again.
* Python and NumPy scalars combined with a floating Tensor take the Tensor's
  dtype; arrays follow NumPy's promotion rules (NEP 50).

References
----------
.. [1] A. G. Baydin, B. A. Pearlmutter, A. A. Radul, J. M. Siskind, "Automatic
   differentiation in machine learning: a survey", JMLR 18(153), 2018, §3.2.
.. [2] A. Karpathy, micrograd, https://github.com/karpathy/micrograd (the
   one-closure-per-node design, here on arrays).
"""
from __future__ import annotations

import contextlib
import threading
from operator import attrgetter

import numpy as np

from odeflow.errors import InputTypeError, ShapeError

__all__ = ["Tensor", "no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled", "watch_detach"]


class _GradMode(threading.local):
    enabled = True  # class attribute: the default seen by every new thread


_mode = _GradMode()


class _DetachWatch(threading.local):
    hits = None  # a list while a solver evaluates the user's func (watch_detach), else None


_detach = _DetachWatch()


@contextlib.contextmanager
def watch_detach():
    """Collect the Tensors requiring grad that are read as plain numbers or arrays inside the block.

    ``float(W)``, ``int(W)``, ``W.item()`` and ``np.asarray(W)`` (which NumPy
    functions call on a Tensor) return values cut from the graph: a ``func``
    that computes with them silently loses their gradient. The solvers'
    gradient paths evaluate the user's ``func`` inside this block and warn
    (:class:`~odeflow.errors.GradientAccuracyWarning`) when it did so.
    ``W.data`` is the explicit way to read a constant and is not collected.
    Yields the list of such Tensors (by identity, in order of first read).
    """
    previous, _detach.hits = _detach.hits, []
    try:
        yield _detach.hits
    finally:
        _detach.hits = previous


def _note_detach(tensor):
    hits = _detach.hits
    if hits is not None and tensor.requires_grad and _mode.enabled and not any(h is tensor for h in hits):
        hits.append(tensor)


def is_grad_enabled() -> bool:
    """Return True when ops record the graph needed by ``backward()``."""
    return _mode.enabled


@contextlib.contextmanager
def set_grad_enabled(mode: bool):
    """Context manager (and decorator, ``@set_grad_enabled(False)``) setting recording on or off."""
    previous, _mode.enabled = _mode.enabled, bool(mode)
    try:
        yield
    finally:
        _mode.enabled = previous


def no_grad():
    """Switch graph recording off inside a ``with`` block or a decorated function.

    Ops then return plain Tensors (``requires_grad=False``) at the cost of the
    NumPy call alone. Use it for evaluation, optimizer updates and solver
    steps whose gradient comes from elsewhere (the adjoint method).

    Examples
    --------
    >>> with no_grad():
    ...     y = model(x)          # doctest: +SKIP
    """
    return set_grad_enabled(False)


def enable_grad():
    """Switch graph recording back on (for example inside a ``no_grad`` block)."""
    return set_grad_enabled(True)


_new = object.__new__


def _wrap(data, parents=(), vjp=None):
    """Fast internal constructor: no checks; `data` must already be an ndarray.

    A node with a `vjp` requires grad; a node without is a constant or a leaf.
    """
    t = _new(Tensor)
    t.data = data
    t.grad = None
    t.requires_grad = vjp is not None
    t._parents = parents
    t._vjp = vjp
    return t


class Tensor:
    """An n-dimensional array with reverse-mode automatic differentiation.

    Parameters
    ----------
    data : array_like or Tensor
        Values. ndarrays are not copied (like ``np.asarray``); a Tensor's
        ``data`` is shared.
    requires_grad : bool, optional
        Make this a leaf whose gradient ``backward()`` stores in ``.grad``.
        Integer/boolean data are then promoted to float64.
    dtype : dtype, optional
        Convert the data to this dtype first.

    Attributes
    ----------
    data : ndarray
        The values.
    grad : Tensor or None
        Accumulated gradient (leaves only), same shape and dtype as ``data``.
    requires_grad : bool
        Whether gradients flow to (and through) this Tensor.

    Raises
    ------
    InputTypeError
        If the data are complex, object or string arrays, or if
        ``requires_grad=True`` is asked for an explicitly non-float ``dtype``.
    """

    __slots__ = ("data", "grad", "requires_grad", "_parents", "_vjp", "__weakref__")
    # NumPy must hand `ndarray * Tensor` to Tensor.__rmul__ and refuse ufuncs on
    # Tensors outright (a ufunc would silently drop the graph).
    __array_priority__ = 1000.0
    __array_ufunc__ = None

    def __init__(self, data, requires_grad: bool = False, dtype=None):
        if isinstance(data, Tensor):
            data = data.data
        array = np.asarray(data, dtype=dtype)
        kind = array.dtype.kind
        if kind not in "fiub":
            raise InputTypeError(
                f"`data` must hold real numbers; got an array of dtype {array.dtype}")
        if requires_grad and kind != "f":
            if dtype is not None:
                raise InputTypeError(
                    f"`requires_grad=True` needs a floating `dtype`; got {array.dtype}")
            array = array.astype(np.float64)
        self.data = array
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._parents = ()
        self._vjp = None

    # -- array-like attributes -------------------------------------------------
    # attrgetter: read in C, since the engine asks for shapes on every op
    shape = property(attrgetter("data.shape"), doc="Tuple of array dimensions.")
    dtype = property(attrgetter("data.dtype"), doc="Data type of the elements.")
    ndim = property(attrgetter("data.ndim"), doc="Number of dimensions.")
    size = property(attrgetter("data.size"), doc="Number of elements.")
    is_leaf = property(lambda self: self._vjp is None, doc="True unless produced by a recorded op.")

    @property
    def T(self) -> Tensor:
        """The transpose (all axes reversed), as ``ndarray.T``."""
        return ops.transpose(self)

    def numpy(self) -> np.ndarray:
        """The data as an ndarray (shared, not copied)."""
        return self.data

    def item(self) -> float:
        """The single element as a Python number.

        Raises
        ------
        ShapeError
            If the Tensor has more than one element.
        """
        if self.data.size != 1:
            raise ShapeError(f"item() needs a one-element Tensor; got shape {self.data.shape}")
        _note_detach(self)
        return self.data.item()

    def detach(self) -> Tensor:
        """A new leaf sharing the data, cut from the graph (``requires_grad=False``)."""
        return _wrap(self.data)

    def backward(self, grad=None, create_graph: bool = False, retain_graph: bool | None = None):
        """Accumulate d(self)/d(leaf), contracted with `grad`, into every leaf's ``.grad``.

        Parameters
        ----------
        grad : array_like or Tensor, optional
            Gradient of some scalar with respect to this Tensor, same shape.
            May be omitted only for one-element Tensors (it is then 1).
        create_graph : bool, default False
            Record the backward pass itself, so that ``.grad`` can be
            differentiated again (higher-order gradients).
        retain_graph : bool, optional
            Keep the graph for another ``backward()``. Defaults to
            `create_graph`; otherwise the graph is freed as it is walked.

        Raises
        ------
        GradientError
            If this Tensor does not require grad, if `grad` is omitted for a
            Tensor with more than one element, or if the graph was freed by an
            earlier ``backward()``.
        ShapeError
            If `grad` does not have this Tensor's shape.

        See Also
        --------
        odeflow.autodiff.backprop.gradients : the same walk, returning gradients
            of chosen inputs instead of accumulating into ``.grad``.
        """
        backprop.backward(self, grad, create_graph=create_graph, retain_graph=retain_graph)

    def __repr__(self):
        body = np.array2string(self.data, separator=", ", prefix="Tensor(")
        extra = ", requires_grad=True" if self.requires_grad else ""
        if self.data.dtype != np.float64:
            extra = f", dtype={self.data.dtype}" + extra
        return f"Tensor({body}{extra})"

    def __array__(self, dtype=None, copy=None):
        _note_detach(self)
        if copy:
            return np.array(self.data, dtype=dtype, copy=True)
        return self.data if dtype is None else self.data.astype(dtype, copy=False)

    def __len__(self):
        return len(self.data)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __bool__(self):
        return bool(self.data)

    def __float__(self):
        _note_detach(self)
        return float(self.data)

    __hash__ = object.__hash__  # `==` is elementwise, so hash by identity

    # -- arithmetic (reflected forms put the constant first) ---------------------
    def __add__(self, other): return ops.add(self, other)
    def __radd__(self, other): return ops.add(other, self)
    def __sub__(self, other): return ops.sub(self, other)
    def __rsub__(self, other): return ops.sub(other, self)
    def __mul__(self, other): return ops.mul(self, other)
    def __rmul__(self, other): return ops.mul(other, self)
    def __truediv__(self, other): return ops.div(self, other)
    def __rtruediv__(self, other): return ops.div(other, self)
    def __pow__(self, other): return ops.pow(self, other)
    def __rpow__(self, other): return ops.pow(other, self)
    def __matmul__(self, other): return ops.matmul(self, other)
    def __rmatmul__(self, other): return ops.matmul(other, self)
    def __neg__(self): return ops.neg(self)
    def __pos__(self): return self
    def __abs__(self): return ops.abs(self)
    def __getitem__(self, index): return ops.getitem(self, index)

    # Comparisons are not differentiable: they return NumPy boolean arrays.
    def __lt__(self, other): return self.data < _raw(other)
    def __le__(self, other): return self.data <= _raw(other)
    def __gt__(self, other): return self.data > _raw(other)
    def __ge__(self, other): return self.data >= _raw(other)
    def __eq__(self, other): return self.data == _raw(other)
    def __ne__(self, other): return self.data != _raw(other)

    # -- methods mirroring NumPy / PyTorch -------------------------------------
    def sum(self, axis=None, keepdims=False): return ops.sum(self, axis, keepdims)
    def mean(self, axis=None, keepdims=False): return ops.mean(self, axis, keepdims)
    def max(self, axis=None, keepdims=False): return ops.max(self, axis, keepdims)
    def min(self, axis=None, keepdims=False): return ops.min(self, axis, keepdims)
    def logsumexp(self, axis=None, keepdims=False): return ops.logsumexp(self, axis, keepdims)
    def exp(self): return ops.exp(self)
    def log(self): return ops.log(self)
    def sqrt(self): return ops.sqrt(self)
    def tanh(self): return ops.tanh(self)
    def sigmoid(self): return ops.sigmoid(self)
    def relu(self): return ops.relu(self)
    def abs(self): return ops.abs(self)
    def clip(self, lo=None, hi=None): return ops.clip(self, lo, hi)
    def astype(self, dtype): return ops.astype(self, dtype)
    def swapaxes(self, axis1, axis2): return ops.swapaxes(self, axis1, axis2)
    def flatten(self): return ops.reshape(self, (-1,))

    def reshape(self, *shape):
        """``t.reshape(2, 3)`` or ``t.reshape((2, 3))``, as NumPy."""
        return ops.reshape(self, shape[0] if len(shape) == 1 else shape)

    def transpose(self, *axes):
        """``t.transpose()``, ``t.transpose(1, 0, 2)`` or ``t.transpose((1, 0, 2))``."""
        return ops.transpose(self, (axes[0] if len(axes) == 1 else axes) or None)


def _raw(x):
    return x.data if isinstance(x, Tensor) else x


# Imported last: both modules need the Tensor class defined above.
from odeflow.autodiff import backprop, ops  # noqa: E402
