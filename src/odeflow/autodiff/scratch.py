"""Scratch arrays reused across calls: hot loops that allocate the same large shapes.

Why this exists. glibc's ``malloc`` serves blocks of 128 KiB and more (a
256 x 64 float64 array is exactly 128 KiB) by ``mmap``, or from the top of the
heap, which ``free`` trims back to the operating system. Either way, a fresh
block of that size costs a system call and a page fault for each of its 4 KiB
pages, more than the arithmetic done on it: measured on the gradient benchmark
(``scripts/bench_gradients.py``), page faults were half of the time of a
gradient through an ODE solve. A solver evaluates the same network on the same
batch shape again and again, so the fused MLP op (:mod:`odeflow.nn.fused_mlp`)
takes its hidden activations and backward temporaries from here and gives them
back when done. This is the idea of PyTorch's caching allocators, in a few lines.

Rules for callers:

* :func:`take` returns an *uninitialised* array; write before reading.
* Give back (:func:`give`, or drop the :class:`Lease` holding it) only an array
  that nothing else refers to, not even a view: it will be overwritten by the
  next taker. Never give back an array returned to user code.

The pool keeps at most ``MAX_BYTES`` in total; arrays smaller than
``MIN_BYTES`` come from ``np.empty`` (small blocks are cheap for ``malloc``).
It is shared by all threads; ``list.append`` and ``list.pop`` are atomic in
CPython, so two threads never receive the same array.
"""
from __future__ import annotations

import numpy as np

__all__ = ["take", "give", "Lease", "MIN_BYTES", "MAX_BYTES", "clear"]

MIN_BYTES = 32 * 1024
MAX_BYTES = 64 * 1024 * 1024

_free: dict = {}        # (shape, dtype) -> list of arrays
_held = [0]             # bytes in the pool (approximate under threads; only a cap)


def take(shape, dtype) -> np.ndarray:
    """An uninitialised C-contiguous array of `shape` and `dtype`, reused when possible."""
    shape, dtype = tuple(shape), np.dtype(dtype)
    bucket = _free.get((shape, dtype))
    if bucket:
        try:
            array = bucket.pop()
        except IndexError:  # another thread took the last one
            return np.empty(shape, dtype)
        _held[0] -= array.nbytes
        return array
    return np.empty(shape, dtype)


def give(*arrays) -> None:
    """Return arrays obtained from :func:`take` (see the module's rules)."""
    for array in arrays:
        if array is None or array.nbytes < MIN_BYTES or _held[0] + array.nbytes > MAX_BYTES:
            continue
        _free.setdefault((array.shape, array.dtype), []).append(array)
        _held[0] += array.nbytes


def clear() -> None:
    """Drop every pooled array (their memory goes back to ``malloc``)."""
    _free.clear()
    _held[0] = 0


class Lease:
    """Arrays from :func:`take` that go back to the pool when this object is dropped.

    A graph node keeps its saved activations in a Lease: when the backward walk
    frees the node (or the graph is discarded), CPython's reference counting
    deletes the Lease at once and the arrays serve the next evaluation.
    """

    __slots__ = ("arrays",)

    def __init__(self, arrays):
        self.arrays = arrays

    def __del__(self):
        try:
            give(*self.arrays)
        except Exception:  # interpreter shutdown: module globals may be gone
            pass
