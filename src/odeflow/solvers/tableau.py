"""Butcher tableaux as self-checking data.

An explicit Runge–Kutta method with ``s`` stages advances ``y' = f(t, y)`` by
one step ``h`` as (Hairer, Nørsett & Wanner, *Solving ODEs I*, §II.1, eq. 1.8)::

    k_i = f(t + c_i h, y + h * sum_{j<i} A[i, j] k_j)        i = 0 .. s-1
    y1  = y + h * sum_i b_i k_i
    err = h * sum_i b_err_i k_i      (difference of two embedded solutions)

Every tableau is written with exact fractions; :class:`ButcherTableau` checks
its own identities when it is built (row sums of ``A`` equal ``c``, ``sum(b) =
1``, ``sum(b_err) = 0``, ``A`` strictly lower triangular, FSAL consistency), so
a typo in a coefficient fails at import, not as a silently wrong order.

Dense output: ``y(t + theta h) = y + h * sum_i k_i * p_i(theta)`` with
``p_i(theta) = sum_j P[i, j] theta**(j+1)``. Adaptive FSAL methods use the
cubic Hermite interpolant of ``(y, f)`` at both ends plus, for Dormand–Prince,
the quartic correction of its continuous extension (HNW §II.6, dense output
of DOPRI5), built here from its defining formula rather than typed in.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction as F

import numpy as np

__all__ = ["ButcherTableau", "DOPRI5", "BOSH3", "EULER", "MIDPOINT", "RK4", "TABLEAUX"]


def _poly_mul(p, q):
    """Product of two polynomials given as coefficient lists (lowest power first)."""
    out = [F(0)] * (len(p) + len(q) - 1)
    for i, a in enumerate(p):
        for j, b in enumerate(q):
            out[i + j] += a * b
    return out


def _poly_add(*ps):
    out = [F(0)] * max(len(p) for p in ps)
    for p in ps:
        for i, a in enumerate(p):
            out[i] += a
    return out


def _scale(p, s):
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
        inner = _poly_add(_scale(one_minus, first - b[i]), _scale(theta, b[i] - last))
        p = _poly_add(_scale(theta, b[i]), _poly_mul(_poly_mul(theta, one_minus), inner))
        if d is not None:
            bump = _poly_mul(_poly_mul(theta, theta), _poly_mul(one_minus, one_minus))
            p = _poly_add(p, _scale(bump, d[i]))
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
    c : sequence of Fraction, length s
        Stage times as fractions of the step.
    A : sequence of sequences of Fraction, shape (s, s) lower triangular
        Stage coupling; rows may be given ragged (missing entries are zero).
    b : sequence of Fraction, length s
        Weights of the propagated solution.
    order : int
        Order of the propagated solution.
    b_err : sequence of Fraction, length s, optional
        ``b - b_hat``, the weights of the embedded error estimate (adaptive methods).
    error_order : int, optional
        Order of the embedded solution ``b_hat``; the controller exponent is
        ``1 / (error_order + 1)``.
    fsal : bool
        First Same As Last: the last stage is ``f(t + h, y1)`` and is reused as
        the first stage of the next step.
    dense : sequence of sequences of Fraction, shape (s, p), optional
        Dense-output weights ``P`` (see module docstring).

    Raises
    ------
    ValueError
        If an identity of the tableau does not hold exactly.
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
    # float64 arrays for the kernels, derived in __post_init__
    c_arr: np.ndarray = field(init=False, repr=False, compare=False)
    A_arr: np.ndarray = field(init=False, repr=False, compare=False)
    b_arr: np.ndarray = field(init=False, repr=False, compare=False)
    b_err_arr: np.ndarray = field(init=False, repr=False, compare=False)
    P_arr: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        s = len(self.c)
        A = [list(row) + [F(0)] * (s - len(row)) for row in self.A]
        if len(A) != s or len(self.b) != s:
            raise ValueError(f"tableau {self.name!r}: c, A and b must all have {s} stages")
        for i, row in enumerate(A):
            if any(a != 0 for a in row[i:]):
                raise ValueError(f"tableau {self.name!r}: A is not strictly lower triangular in row {i}")
            if sum(row) != self.c[i]:
                raise ValueError(f"tableau {self.name!r}: row {i} of A sums to {sum(row)}, c[{i}] = {self.c[i]}")
        if sum(self.b) != 1:
            raise ValueError(f"tableau {self.name!r}: sum(b) = {sum(self.b)}, expected 1")
        if self.b_err is not None:
            if len(self.b_err) != s or sum(self.b_err) != 0:
                raise ValueError(f"tableau {self.name!r}: b_err must have {s} entries summing to 0")
        if self.fsal and (A[-1][:-1] != list(self.b[:-1]) or self.b[-1] != 0 or self.c[-1] != 1):
            raise ValueError(f"tableau {self.name!r}: FSAL requires the last row of A to equal b, b[-1] = 0, c[-1] = 1")
        if self.dense is not None:
            at_one = [sum(row) for row in self.dense]
            if at_one != list(self.b):
                raise ValueError(f"tableau {self.name!r}: dense output at theta = 1 must reproduce b")
        set_ = object.__setattr__  # frozen dataclass: derived fields set once here
        set_(self, "A", tuple(tuple(r) for r in A))
        set_(self, "c_arr", np.array([float(x) for x in self.c]))
        set_(self, "A_arr", np.array([[float(x) for x in r] for r in A]))
        set_(self, "b_arr", np.array([float(x) for x in self.b]))
        err = self.b_err if self.b_err is not None else [F(0)] * s
        set_(self, "b_err_arr", np.array([float(x) for x in err]))
        dense = self.dense if self.dense is not None else [[F(0)] for _ in range(s)]
        set_(self, "P_arr", np.array([[float(x) for x in r] for r in dense]))
        for arr in (self.c_arr, self.A_arr, self.b_arr, self.b_err_arr, self.P_arr):
            arr.setflags(write=False)

    @property
    def n_stages(self) -> int:
        return len(self.c)

    @property
    def adaptive(self) -> bool:
        return self.b_err is not None


# Dormand & Prince (1980), "A family of embedded Runge-Kutta formulae",
# J. Comput. Appl. Math. 6(1), Table 2 (RK5(4)7M); HNW Table II.5.2.
# b_err = b - b_hat with b_hat the 4th-order solution: the classic estimate of
# Hairer's DOPRI5 and scipy's RK45 (torchdiffeq and diffrax use Shampine's
# alternative b_hat instead).
_DP_B = (F(35, 384), F(0), F(500, 1113), F(125, 192), F(-2187, 6784), F(11, 84), F(0))
_DP_B_HAT = (F(5179, 57600), F(0), F(7571, 16695), F(393, 640), F(-92097, 339200),
             F(187, 2100), F(1, 40))
# Dense-output correction of DOPRI5 (HNW §II.6; Hairer's dopri5.f, d1..d7).
_DP_D = (F(-12715105075, 11282082432), F(0), F(87487479700, 32700410799),
         F(-10690763975, 1880347072), F(701980252875, 199316789632),
         F(-1453857185, 822651844), F(69997945, 29380423))

DOPRI5 = ButcherTableau(
    name="dopri5",
    c=(F(0), F(1, 5), F(3, 10), F(4, 5), F(8, 9), F(1), F(1)),
    A=((),
       (F(1, 5),),
       (F(3, 40), F(9, 40)),
       (F(44, 45), F(-56, 15), F(32, 9)),
       (F(19372, 6561), F(-25360, 2187), F(64448, 6561), F(-212, 729)),
       (F(9017, 3168), F(-355, 33), F(46732, 5247), F(49, 176), F(-5103, 18656)),
       _DP_B[:6]),
    b=_DP_B,
    order=5,
    b_err=tuple(x - y for x, y in zip(_DP_B, _DP_B_HAT)),
    error_order=4,
    fsal=True,
    dense=tuple(tuple(r) for r in hermite_dense(_DP_B, _DP_D)),
)

# Bogacki & Shampine (1989), "A 3(2) pair of Runge-Kutta formulas",
# Appl. Math. Lett. 2(4); the method of MATLAB's ode23 and scipy's RK23.
_BS_B = (F(2, 9), F(1, 3), F(4, 9), F(0))
_BS_B_HAT = (F(7, 24), F(1, 4), F(1, 3), F(1, 8))
BOSH3 = ButcherTableau(
    name="bosh3",
    c=(F(0), F(1, 2), F(3, 4), F(1)),
    A=((), (F(1, 2),), (F(0), F(3, 4)), _BS_B[:3]),
    b=_BS_B,
    order=3,
    b_err=tuple(x - y for x, y in zip(_BS_B, _BS_B_HAT)),
    error_order=2,
    fsal=True,
    dense=tuple(tuple(r) for r in hermite_dense(_BS_B)),
)

# Fixed-step classics (HNW §II.1).
EULER = ButcherTableau(name="euler", c=(F(0),), A=((),), b=(F(1),), order=1)
MIDPOINT = ButcherTableau(name="midpoint", c=(F(0), F(1, 2)), A=((), (F(1, 2),)),
                          b=(F(0), F(1)), order=2)
RK4 = ButcherTableau(
    name="rk4",
    c=(F(0), F(1, 2), F(1, 2), F(1)),
    A=((), (F(1, 2),), (F(0), F(1, 2)), (F(0), F(0), F(1))),
    b=(F(1, 6), F(1, 3), F(1, 3), F(1, 6)),
    order=4,
)

TABLEAUX = {tab.name: tab for tab in (DOPRI5, BOSH3, EULER, MIDPOINT, RK4)}
