"""The methods' Butcher tableaux (data; the container and its checks are in
:mod:`odeflow.solvers.butcher`).

dopri5 and bosh3 (adaptive FSAL pairs) and the fixed-step classics are here;
tsit5 and dop853, whose coefficients are long decimals, have a file each
(:mod:`odeflow.solvers.tableau_tsit5`, :mod:`odeflow.solvers.tableau_dop853`).
"""
from __future__ import annotations

from fractions import Fraction as F

from odeflow.solvers.butcher import ButcherTableau, hermite_dense
from odeflow.solvers.tableau_dop853 import DOP853
from odeflow.solvers.tableau_tsit5 import TSIT5

__all__ = ["ButcherTableau", "DOPRI5", "BOSH3", "TSIT5", "DOP853", "EULER", "MIDPOINT", "RK4", "TABLEAUX"]


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
    stiff_bound=3.25,  # Hairer's dopri5.f
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

TABLEAUX = {tab.name: tab for tab in (DOPRI5, BOSH3, TSIT5, DOP853, EULER, MIDPOINT, RK4)}
