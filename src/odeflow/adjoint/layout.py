"""The augmented state of the backward solve, packed into one flat array, and its tolerances.

The backward pass integrates several quantities at once (Chen et al. 2018,
Appendix B): the state ``y`` (backsolve only), the adjoint ``a = dL/dy`` and one
``a_theta`` channel per parameter. The array solver integrates one flat vector,
so this module is the one place that decides where each piece lives::

    backsolve    z = [ y (n) | a (n) | a_theta (p_1) ... (p_k) ]
    checkpoint   z = [ a (n) | a_theta (p_1) ... (p_k) ]

and which error tolerances each channel gets (:func:`tolerances`).
"""
from __future__ import annotations

import numpy as np

__all__ = ["Layout", "tolerances"]


class Layout:
    """Packing of ``(y, a, a_theta)`` into one flat array (see the module docstring).

    Parameters
    ----------
    shape : tuple of int
        Shape of the state ``y`` (and of ``a``).
    params : sequence of Tensor
        The parameters, one ``a_theta`` channel each, in this order.
    with_y : bool
        Whether ``y`` is part of the state (backsolve) or read from elsewhere (checkpoint).
    """

    def __init__(self, shape, params, with_y):
        self.shape = tuple(shape)
        self.n = int(np.prod(shape))
        self.sizes = [p.data.size for p in params]
        self.shapes = [p.data.shape for p in params]
        self.with_y = with_y
        self.offset = self.n if with_y else 0   # start of a
        self.total = self.offset + self.n + sum(self.sizes)

    def pack(self, y, a, a_theta):
        """One flat array from ``y`` (ignored without ``with_y``), ``a`` and the list ``a_theta``."""
        parts = ([y.ravel()] if self.with_y else []) + [a.ravel()] + [g.ravel() for g in a_theta]
        return np.concatenate(parts)

    def unpack(self, z):
        """``(y, a, a_theta)`` as views of `z` (``y`` is None without ``with_y``)."""
        y = z[: self.n].reshape(self.shape) if self.with_y else None
        a = z[self.offset: self.offset + self.n].reshape(self.shape)
        a_theta, start = [], self.offset + self.n
        for size, shape in zip(self.sizes, self.shapes):
            a_theta.append(z[start: start + size].reshape(shape))
            start += size
        return y, a, a_theta


def tolerances(layout, rtol, atol, seminorm, dtype, steady=None):
    """Per-channel tolerances of the backward solve, as flat arrays ``(rtol_z, atol_z)``.

    ``y`` and ``a`` get the (possibly per-component) tolerances of the backward
    solve; every ``a_theta`` channel their largest value. Seminorm (Kidger,
    Chen & Lyons 2021): the ``a_theta`` channels get a scale so large that their
    ratio is ~0, and the others a scale shrunk by ``sqrt(n_kept / n_total)``
    so the RMS over all channels equals the RMS over the kept ones. Only the
    channels of *steady* parameters (``steady[k]`` true: read by every
    evaluation) are left out: a parameter that ``func`` reads only at some
    times has an integrand ``a^T df/dtheta`` that jumps where the reading
    starts or stops, and that jump is seen by no other channel, so its error
    must still limit the step. ``rtol`` is floored at 100 machine epsilons of
    `dtype`.
    """
    rtol_z = np.full(layout.total, float(np.max(rtol)))
    atol_z = np.full(layout.total, float(np.max(atol)))
    if np.ndim(rtol) or np.ndim(atol):  # per-component tolerances apply to y and a alike
        r = np.broadcast_to(rtol, layout.shape).ravel()
        a = np.broadcast_to(atol, layout.shape).ravel()
        for start in ((0, layout.n) if layout.with_y else (0,)):
            rtol_z[start: start + layout.n] = r
            atol_z[start: start + layout.n] = a
    steady = [True] * len(layout.sizes) if steady is None else list(steady)
    left_out = np.zeros(layout.total, bool)
    start = layout.offset + layout.n
    for size, skip in zip(layout.sizes, steady):
        left_out[start: start + size] = skip
        start += size
    if seminorm and left_out.any():
        shrink = np.sqrt((~left_out).sum() / layout.total)
        rtol_z[~left_out] *= shrink
        atol_z[~left_out] *= shrink
        rtol_z[left_out] = 1.0
        atol_z[left_out] = np.finfo(np.float64).max / 4
    floor = 100 * np.finfo(dtype).eps
    return np.maximum(rtol_z, floor), atol_z
