"""Tsitouras' 5(4) pair (``method="tsit5"``), with its 4th-order dense output.

Ch. Tsitouras, "Runge–Kutta pairs of order 5(4) satisfying only the first
column simplifying assumption", Comput. Math. Appl. 62(2), 770–775 (2011),
Table 1. The coefficients are irrational (the nodes come from an
optimisation); they are stored as the exact fractions of their 85-digit
decimals (the high-precision table of OrdinaryDiffEq.jl, also used by
diffrax), so the row sums and the order conditions hold to ~1e-82 in exact
arithmetic (``tol`` below; ``tests/test_solver_tableau.py`` checks every tree).

The dense output (Tsitouras §3) is *derived* here rather than typed in: with
the two free weight polynomials Tsitouras chose,
``b_2(theta) = theta^2 (0.1317 - 0.2234 theta + 0.1017 theta^2)`` and
``b_7(theta) = theta^2 (3/2 - 4 theta + 5/2 theta^2)``, the other five quartics
are the unique solution of the continuous order conditions up to order 4
(HNW §II.6, Theorem 6.1 with the trees of Table II.2.2), ``b_i(1) = b_i`` and
``b_i'(0) = delta_i0``. The solution agrees with Tsitouras' published
polynomials to every printed digit.
"""
from __future__ import annotations

from fractions import Fraction as F

from odeflow.solvers.butcher import ButcherTableau

__all__ = ["TSIT5"]

_D = F  # F("0.123...") is the exact value of the decimal

_C = (F(0), F(161, 1000), F(327, 1000), F(9, 10),
      _D("0.9800255409045096857298102862870245954942137979563024768854764293221195950761080302604"),
      F(1), F(1))

_B = (_D("0.9646076681806522951816731316512876333711995238157997181903319145764851595234062815396e-1"),
      F(1, 100),
      _D("0.4798896504144995747752495322905965199130404621990332488332634944254542060153074523509"),
      _D("1.379008574103741893192274821856872770756462643091360525934940067397245698027561293331"),
      _D("-3.290069515436080679901047585711363850115683290894936158531296799594813811049925401677"),
      _D("2.324710524099773982415355918398765796109060233222962411944060046314465391054716027841"),
      F(0))

_B_HAT = (_D("0.9468075576583945807478876255758922856117527357724631226139574065785592789071067303271e-1"),
          _D("0.9183565540343253096776363936645313759813746240984095238905939532922955247253608687270e-2"),
          _D("0.4877705284247615707855642599631228241516691959761363774365216240304071651579571959813"),
          _D("1.234297566930478985655109673884237654035539930748192848315425833500484878378061439761"),
          _D("-2.707712349983525454881109975059321670689605166938197378763992255714444407154902012702"),
          _D("1.866628418170587035753719399566211498666255505244122593996591602841258328965767580089"),
          F(1, 66))

_A = ((),
      (F(161, 1000),),
      (_D("-0.8480655492356988544426874250230774675121177393430391537369234245294192976164141156943e-2"),
       _D("0.3354806554923569885444268742502307746751211773934303915373692342452941929761641411569")),
      (_D("2.897153057105493432130432594192938764924887287701866490314866693455023795137503079289"),
       _D("-6.359448489975074843148159912383825625952700647415626703305928850207288721235210244366"),
       _D("4.362295432869581411017727318190886861027813359713760212991062156752264926097707165077")),
      (_D("5.325864828439256604428877920840511317836476253097040101202360397727981648835607691791"),
       _D("-11.74888356406282787774717033978577296188744178259862899288666928009020615663593781589"),
       _D("7.495539342889836208304604784564358155658679161518186721010132816213648793440552049753"),
       _D("-0.9249506636175524925650207933207191611349983406029535244034750452930469056411389539635e-1")),
      (_D("5.861455442946420028659251486982647890394337666164814434818157239052507339770711679748"),
       _D("-12.92096931784710929170611868178335939541780751955743459166312250439928519268343184452"),
       _D("8.159367898576158643180400794539253485181918321135053305748355423955009222648673734986"),
       _D("-0.7158497328140099722453054252582973869127213147363544882721139659546372402303777878835e-1"),
       _D("-0.2826905039406838290900305721271224146717633626879770007617876201276764571291579142206e-1")),
      _B[:6])

# Tsitouras' free choices (theta^1 .. theta^4 coefficients)
_FREE = {1: (F(0), F(1317, 10000), F(-2234, 10000), F(1017, 10000)),
         6: (F(0), F(3, 2), F(-4), F(5, 2))}


def _solve_exact(rows, rhs):
    """Least-squares-free exact solve of a consistent overdetermined system by
    Gauss–Jordan elimination on fractions; returns the solution and the largest
    residual of the equations left over (0 for an exactly consistent system)."""
    M = [list(r) + [v] for r, v in zip(rows, rhs)]
    n = len(rows[0])
    for col in range(n):
        pivot = max(range(col, len(M)), key=lambda r: abs(M[r][col]))
        if M[pivot][col] == 0:
            raise ValueError("tsit5 dense output: the conditions do not determine the weights")
        M[col], M[pivot] = M[pivot], M[col]
        M[col] = [x / M[col][col] for x in M[col]]
        for r in range(len(M)):
            if r != col and M[r][col] != 0:
                f = M[r][col]
                M[r] = [x - f * y for x, y in zip(M[r], M[col])]
    return [M[r][n] for r in range(n)], max((abs(M[r][n]) for r in range(n, len(M))), default=F(0))


def _dense():
    """The 7 x 4 dense-output weights (theta^1..theta^4), see the module docstring."""
    s = len(_C)
    A = [list(r) + [F(0)] * (s - len(r)) for r in _A]

    def times_A(v):
        return [sum(A[i][j] * v[j] for j in range(s)) for i in range(s)]

    ones = [F(1)] * s
    c2 = [x * x for x in _C]
    c3 = [x ** 3 for x in _C]
    Ac = times_A(list(_C))
    # (vector Phi(tree), order, gamma) for the 8 trees of order <= 4 (HNW Table II.2.2)
    trees = [(ones, 1, 1), (list(_C), 2, 2), (c2, 3, 3), (Ac, 3, 6), (c3, 4, 4),
             ([x * y for x, y in zip(_C, Ac)], 4, 8), (times_A(c2), 4, 12), (times_A(Ac), 4, 24)]
    unknown = [i for i in range(s) if i not in _FREE]
    rows, rhs = [], []
    for phi, order, gamma in trees:
        for k in range(4):   # coefficient of theta^(k+1)
            rows.append([phi[i] if kk == k else F(0) for i in unknown for kk in range(4)])
            rhs.append((F(1, gamma) if k + 1 == order else F(0))
                       - sum(phi[i] * _FREE[i][k] for i in _FREE))
    for u, i in enumerate(unknown):
        rows.append([F(1) if uu == u else F(0) for uu in range(len(unknown)) for _ in range(4)])
        rhs.append(_B[i])                                           # b_i(1) = b_i
        rows.append([F(1) if (uu == u and kk == 0) else F(0) for uu in range(len(unknown)) for kk in range(4)])
        rhs.append(F(1) if i == 0 else F(0))                        # b_i'(0) = delta_i0
    x, residual = _solve_exact(rows, rhs)
    if residual > F(1, 10 ** 75):
        raise ValueError(f"tsit5 dense output: order conditions inconsistent (residual {float(residual):.3g})")
    P = [list(_FREE[i]) if i in _FREE else x[4 * unknown.index(i): 4 * unknown.index(i) + 4]
         for i in range(s)]
    return tuple(tuple(r) for r in P)


TSIT5 = ButcherTableau(
    name="tsit5",
    c=_C,
    A=_A,
    b=_B,
    order=5,
    b_err=tuple(x - y for x, y in zip(_B, _B_HAT)),
    error_order=4,
    fsal=True,
    dense=_dense(),
    stiff_bound=3.25,  # the test of Hairer's DOPRI5; tsit5's real stability boundary is ~3.3 as well
    tol=F(1, 10 ** 80),
)
