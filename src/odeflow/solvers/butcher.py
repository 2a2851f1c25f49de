"""Butcher tableaux as self-checking data: the :class:`ButcherTableau` container.

An explicit Runge–Kutta method with ``s`` stages advances ``y' = f(t, y)`` by
one step ``h`` as (Hairer, Nørsett & Wanner, *Solving ODEs I*, §II.1, eq. 1.8)::

    k_i = f(t + c_i h, y + h * sum_{j<i} A[i, j] k_j)        i = 0 .. s-1
    y1  = y + h * sum_i b_i k_i
    err = h * sum_i b_err_i k_i      (difference of two embedded solutions)

Every tableau is written with exact fractions; :class:`ButcherTableau` checks
its own identities when it is built (row sums of ``A`` equal ``c``, ``sum(b) =
1``, ``sum(b_err) = 0``, ``A`` strictly lower triangular, FSAL consistency), so
a typo in a coefficient fails at import, not as a silently wrong order.
Coefficients that are irrational (DOP853's involve ``sqrt(6)``; Tsit5's come
from a numerical optimisation) are stored as the exact fractions of their
published decimals, and the identities are then required to hold to within
``tol`` (computed exactly, in rational arithmetic).

Dense output: ``y(t + theta h) = y + h * sum_i k_i * p_i(theta)`` with
``p_i(theta) = sum_j P[i, j] theta**(j+1)``. Adaptive FSAL methods use the
cubic Hermite interpolant of ``(y, f)`` at both ends plus, for Dormand–Prince,
the quartic correction of its continuous extension (HNW §II.6, dense output
of DOPRI5), built here from its defining formula rather than typed in.
DOP853's dense output needs three more stages, evaluated only for steps that
interpolate (``n_extra``; HNW §II.6 and Hairer's ``dop853.f``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction as F

import numpy as np

__all__ = ["ButcherTableau", "hermite_dense", "poly_mul", "poly_add", "poly_scale"]


def poly_mul(p, q):
    """Product of two polynomials given as coefficient lists (lowest power first)."""
    out = [F(0)] * (len(p) + len(q) - 1)
    for i, a in enumerate(p):
        for j, b in enumerate(q):
            out[i + j] += a * b
    return out


def poly_add(*ps):
    """Sum of polynomials given as coefficient lists (lowest power first)."""
    out = [F(0)] * max(len(p) for p in ps)
    for p in ps:
        for i, a in enumerate(p):
            out[i] += a
    return out


def poly_scale(p, s):
    """``s * p`` for a polynomial ``p`` given as a coefficient list."""
    return [a * s for a in p]


def hermite_dense(b, d=None):
    """Dense-output weights ``P`` (shape ``(s, 4)``) of an FSAL method.

    The cubic Hermite interpolant through ``y0, y1`` with slopes ``f0 = k_0``
    and ``f1 = k_{s-1}`` (HNW §II.6, eq. 6.7), written in the stage weights::

        p_i(theta) = theta b_i + theta (1 - theta) [ (1 - theta)(delta_i0 - b_i)
                                                  + theta (b_i - delta_i,s-1) ]

    plus ``theta^2 (1 - theta)^2 d_i`` when correction weights ``d`` are given
    (Dormand–Prince's continuous extension, HNW §II.6; Hairer's DOPRI5
    evaluates the same polynomial in nested form). Exact fractions in, exact
    fractions out (lowest power first, constant term dropped: ``p_i(0) = 0``).
    """
    s = len(b)
    theta = [F(0), F(1)]
    one_minus = [F(1), F(-1)]
    rows = []
    for i in range(s):
        first = F(1) if i == 0 else F(0)
        last = F(1) if i == s - 1 else F(0)
        inner = poly_add(poly_scale(one_minus, first - b[i]), poly_scale(theta, b[i] - last))
        p = poly_add(poly_scale(theta, b[i]), poly_mul(poly_mul(theta, one_minus), inner))
        if d is not None:
            bump = poly_mul(poly_mul(theta, theta), poly_mul(one_minus, one_minus))
            p = poly_add(p, poly_scale(bump, d[i]))
        rows.append(p[1:])
    width = max(len(r) for r in rows)
    return [r + [F(0)] * (width - len(r)) for r in rows]


@dataclass(frozen=True)
class ButcherTableau:
    """An explicit Runge–Kutta method, stored exactly and as float64 arrays.

    Parameters
    ----------
    name : str
        Method name used by ``odeint(method=...)``.
    c : sequence of Fraction, length s + n_extra
        Stage times as fractions of the step.
    A : sequence of sequences of Fraction, shape (s + n_extra, s + n_extra) lower triangular
        Stage coupling; rows may be given ragged (missing entries are zero).
    b : sequence of Fraction, length s (zeros are appended for the extra stages)
        Weights of the propagated solution.
    order : int
        Order of the propagated solution.
    b_err : sequence of Fraction, length s, optional
        ``b - b_hat``, the weights of the embedded error estimate (adaptive methods).
    error_order : int, optional
        The error estimate behaves like ``h**(error_order + 1)``: the controller
        exponent is ``1 / (error_order + 1)`` (the order of ``b_hat`` for an
        ordinary pair; 7 for DOP853's combined estimate).
    fsal : bool
        First Same As Last: the last (non-extra) stage is ``f(t + h, y1)`` and
        is reused as the first stage of the next step.
    dense : sequence of sequences of Fraction, shape (s + n_extra, p), optional
        Dense-output weights ``P`` (see module docstring).
    b_err3 : sequence of Fraction, length s, optional
        DOP853's second (3rd-order) estimate ``b - b_hat3``, combined with
        ``b_err`` as in Hairer's ``dop853.f`` (see :func:`odeflow.solvers.kernels.error_ratio_dop853`).
    n_extra : int
        Trailing stages used only by the dense output (DOP853: 3).
    stiff_bound : float
        Hairer's stiffness test applies when > 0: the problem looks stiff when
        ``h |lambda|`` estimated from the last two stages (both at ``c = 1``)
        exceeds this bound, the edge of the stability region on the negative
        real axis (DOPRI5: 3.25; DOP853: 6.1).
    tol : Fraction
        The identities must hold exactly (0) or, for coefficients published as
        decimals, to within ``tol``.

    Raises
    ------
    ValueError
        If an identity of the tableau does not hold (exactly, or to ``tol``).
    """

    name: str
    c: tuple
    A: tuple
    b: tuple
    order: int
    b_err: tuple | None = None
    error_order: int | None = None
    fsal: bool = False
    dense: tuple | None = None
    b_err3: tuple | None = None
    n_extra: int = 0
    stiff_bound: float = 0.0
    tol: F = F(0)
    # float64 arrays for the kernels, derived in __post_init__
    c_arr: np.ndarray = field(init=False, repr=False, compare=False)
    A_arr: np.ndarray = field(init=False, repr=False, compare=False)
    b_arr: np.ndarray = field(init=False, repr=False, compare=False)
    b_err_arr: np.ndarray = field(init=False, repr=False, compare=False)
    b_err3_arr: np.ndarray = field(init=False, repr=False, compare=False)
    P_arr: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        total = len(self.c)
        s = total - self.n_extra
        A = [list(row) + [F(0)] * (total - len(row)) for row in self.A]
        b = list(self.b) + [F(0)] * (total - len(self.b))
        tol = self.tol

        def differ(x, y):
            return abs(x - y) > tol

        if len(A) != total or len(self.b) not in (s, total):
            raise ValueError(f"tableau {self.name!r}: c, A and b must all have {s} stages")
        for i, row in enumerate(A):
            if any(a != 0 for a in row[i:]):
                raise ValueError(f"tableau {self.name!r}: A is not strictly lower triangular in row {i}")
            if differ(sum(row), self.c[i]):
                raise ValueError(f"tableau {self.name!r}: row {i} of A sums to {sum(row)}, c[{i}] = {self.c[i]}")
        if differ(sum(b), 1):
            raise ValueError(f"tableau {self.name!r}: sum(b) = {sum(b)}, expected 1")
        for name in ("b_err", "b_err3"):
            err = getattr(self, name)
            if err is not None and (len(err) != s or differ(sum(err), 0)):
                raise ValueError(f"tableau {self.name!r}: {name} must have {s} entries summing to 0")
        if self.fsal and (A[s - 1][:s - 1] != b[:s - 1] or b[s - 1] != 0 or self.c[s - 1] != 1):
            raise ValueError(f"tableau {self.name!r}: FSAL requires the last row of A to equal b, b[-1] = 0, c[-1] = 1")
        if self.dense is not None:
            at_one = [sum(row) for row in self.dense]
            if len(at_one) != total or any(differ(x, y) for x, y in zip(at_one, b)):
                raise ValueError(f"tableau {self.name!r}: dense output at theta = 1 must reproduce b")
        set_ = object.__setattr__  # frozen dataclass: derived fields set once here
        set_(self, "A", tuple(tuple(r) for r in A))
        set_(self, "b", tuple(b))
        set_(self, "c_arr", np.array([float(x) for x in self.c]))
        set_(self, "A_arr", np.array([[float(x) for x in r] for r in A]))
        set_(self, "b_arr", np.array([float(x) for x in b]))
        err = list(self.b_err) if self.b_err is not None else [F(0)] * s
        set_(self, "b_err_arr", np.array([float(x) for x in err + [F(0)] * self.n_extra]))
        err3 = [] if self.b_err3 is None else list(self.b_err3) + [F(0)] * self.n_extra
        set_(self, "b_err3_arr", np.array([float(x) for x in err3]))
        dense = self.dense if self.dense is not None else [[F(0)] for _ in range(total)]
        set_(self, "P_arr", np.array([[float(x) for x in r] for r in dense]))
        for arr in (self.c_arr, self.A_arr, self.b_arr, self.b_err_arr, self.b_err3_arr, self.P_arr):
            arr.setflags(write=False)

    @property
    def n_stages(self) -> int:
        """Stages evaluated per attempted step (the extra dense-output stages excluded)."""
        return len(self.c) - self.n_extra

    @property
    def adaptive(self) -> bool:
        return self.b_err is not None
