"""Tableau identities, Butcher order conditions and dense-output properties."""
from fractions import Fraction as F

import numpy as np
import pytest

from odeflow.solvers.tableau import BOSH3, DOP853, DOPRI5, TABLEAUX, TSIT5, ButcherTableau


def _canon(tree):
    return tuple(sorted(_canon(c) for c in tree))


def _grow(tree):
    """Every tree made by attaching one leaf to a node of ``tree``."""
    out = [_canon(tree + ((),))]
    for i, child in enumerate(tree):
        for g in _grow(child):
            out.append(_canon(tree[:i] + (g,) + tree[i + 1:]))
    return out


def rooted_trees(max_order):
    """Rooted trees as nested tuples of children, grouped by order (HNW §II.2)."""
    levels = {1: {()}}
    for n in range(2, max_order + 1):
        levels[n] = {g for t in levels[n - 1] for g in _grow(t)}
    return levels


_PHI = {}


def _phi(tree, A):
    """Elementary weights Phi_i(tree) (HNW §II.2, Def. 2.9), exact fractions (memoized:
    DOP853's 486 trees up to order 9 share their subtrees)."""
    key = (tree, id(A))
    if key not in _PHI:
        s = len(A)
        out = [F(1)] * s
        for child in tree:
            inner = _phi(child, A)
            out = [o * sum(A[i][j] * inner[j] for j in range(i)) for i, o in enumerate(out)]
        _PHI[key] = (A, out)  # keep A alive so its id is not reused
    return _PHI[key][1]


def _gamma(tree):
    size = 1 + sum(_size(c) for c in tree)
    g = size
    for child in tree:
        g *= _gamma(child)
    return g


def _size(tree):
    return 1 + sum(_size(c) for c in tree)


def _order_of(weights, A, max_order=6, tol=F(0)):
    """Largest p such that sum_i w_i Phi_i(t) = 1/gamma(t) for every tree of order <= p,
    exactly (``tol = 0``) or to within ``tol`` for coefficients stored as decimals;
    the first failing order must fail by far more than ``tol`` (a real failure)."""
    levels = rooted_trees(max_order)
    for n in range(1, max_order + 1):
        worst = max(abs(sum(w * p for w, p in zip(weights, _phi(tree, A))) - F(1, _gamma(tree)))
                    for tree in levels[n])
        if worst > tol:
            assert worst > 1e-8, f"order {n} fails by only {float(worst):.3g}"
            return n - 1
    return max_order


def test_tree_counts_match_the_known_sequence():
    # number of rooted trees of order 1..9: 1, 1, 2, 4, 9, 20, 48, 115, 286 (OEIS A000081)
    assert [len(v) for v in rooted_trees(9).values()] == [1, 1, 2, 4, 9, 20, 48, 115, 286]


@pytest.mark.parametrize("name", sorted(TABLEAUX))
def test_order_conditions_hold_exactly_to_the_claimed_order(name):
    tab = TABLEAUX[name]
    assert _order_of(tab.b, tab.A, max_order=tab.order + 1, tol=tab.tol) == tab.order


def test_decimal_tableaux_hold_their_identities_to_far_below_rounding():
    # the stored decimals are exact fractions: identities hold to ~1e-82 (tsit5), ~1e-29 (dop853)
    assert TSIT5.tol <= F(1, 10 ** 80) and DOP853.tol <= F(1, 10 ** 27)
    assert all(t.tol == 0 for t in TABLEAUX.values() if t not in (TSIT5, DOP853))


@pytest.mark.parametrize("tab", [DOPRI5, BOSH3, TSIT5])
def test_embedded_solution_has_the_error_order(tab):
    b_hat = [b - e for b, e in zip(tab.b, tab.b_err)]
    assert _order_of(b_hat, tab.A, tol=tab.tol) == tab.error_order


def test_dop853_error_estimators_are_of_orders_five_and_three():
    # Hairer's DOP853: err5 = y1 - y1_hat5 and err3 = y1 - y1_hat3, combined in the step control
    for b_err, order in ((DOP853.b_err, 5), (DOP853.b_err3, 3)):
        b_hat = [b - e for b, e in zip(DOP853.b, list(b_err) + [F(0)] * DOP853.n_extra)]
        assert _order_of(b_hat, DOP853.A, max_order=order + 1, tol=DOP853.tol) == order


@pytest.mark.parametrize("tab, order", [(TSIT5, 4), (DOP853, 7)])
def test_new_dense_outputs_have_their_order(tab, order):
    # the continuous extension satisfies sum_i b_i(theta) Phi_i(t) = theta^|t| / gamma(t)
    # for every tree up to its order (HNW §II.6), and fails at the next order
    theta = F(3, 7)
    weights = [sum(F(p) * theta ** (j + 1) for j, p in enumerate(row)) for row in tab.dense]
    levels = rooted_trees(order + 1)
    for n in range(1, order + 2):
        worst = max(abs(sum(w * p for w, p in zip(weights, _phi(t, tab.A))) - theta ** n / _gamma(t))
                    for t in levels[n])
        assert (worst <= tab.tol) if n <= order else (worst > 1e-6)


def test_tsit5_dense_output_matches_tsitouras_published_polynomials():
    # Tsitouras (2011), continuous extension, b_1(theta) and b_4(theta) as printed (factored form)
    th = np.linspace(0, 1, 7)
    b1 = -1.0530884977290216 * th * (th - 1.3299890189751412) * (th ** 2 - 1.4364028541716351 * th
                                                                  + 0.7139816917074209)
    b4 = -16.54810288924490272 * (th - 1.21712927295533244) * (th - 0.61620406037800089) * th ** 2
    powers = th[:, None] ** np.arange(1, 5)
    np.testing.assert_allclose(powers @ TSIT5.P_arr[0], b1, rtol=0, atol=1e-14)
    np.testing.assert_allclose(powers @ TSIT5.P_arr[3], b4, rtol=0, atol=1e-13)


@pytest.mark.parametrize("tab", [DOPRI5, BOSH3, TSIT5, DOP853])
def test_dense_output_is_hermite_at_both_ends(tab):
    P = tab.P_arr
    s, total = tab.n_stages, P.shape[0]
    powers = np.arange(1, P.shape[1] + 1)
    np.testing.assert_allclose(P.sum(axis=1), tab.b_arr, atol=1e-13)          # y(1) = y1
    np.testing.assert_allclose(P[:, 0], np.eye(total)[0], atol=1e-15)         # y'(0) = f0
    np.testing.assert_allclose(P @ powers, np.eye(total)[s - 1], atol=1e-12)  # y'(1) = f1


def test_dopri5_dense_output_has_order_four():
    # the continuous extension b_i(theta) satisfies the order conditions
    # sum_i b_i(theta) Phi_i(t) = theta^|t| / gamma(t) for all trees up to order 4 (HNW §II.6)
    levels = rooted_trees(5)
    theta = F(3, 7)
    weights = [sum(F(p) * theta ** (j + 1) for j, p in enumerate(row)) for row in DOPRI5.dense]
    for n in range(1, 5):
        for tree in levels[n]:
            lhs = sum(w * p for w, p in zip(weights, _phi(tree, DOPRI5.A)))
            assert lhs == theta ** n / _gamma(tree)
    lhs5 = [sum(w * p for w, p in zip(weights, _phi(tree, DOPRI5.A))) for tree in levels[5]]
    assert any(v != theta ** 5 / _gamma(t) for v, t in zip(lhs5, levels[5]))


def test_tableau_arrays_match_the_exact_fractions():
    assert DOPRI5.A_arr.shape == (7, 7)
    assert DOPRI5.A_arr[4, 3] == float(F(-212, 729))
    assert DOPRI5.b_err_arr[6] == -1 / 40
    with pytest.raises(ValueError):
        DOPRI5.A_arr[0, 0] = 1.0  # read-only: shared by every solve


@pytest.mark.parametrize("broken, message", [
    (dict(c=(F(0), F(1, 3)), A=((), (F(1, 2),)), b=(F(0), F(1))), "row 1 of A sums"),
    (dict(c=(F(0), F(1, 2)), A=((), (F(1, 2),)), b=(F(1, 2), F(1, 3))), "sum(b)"),
    (dict(c=(F(0), F(1, 2)), A=((F(1),), (F(1, 2),)), b=(F(0), F(1))), "strictly lower triangular"),
    (dict(c=(F(0), F(1, 2)), A=((), (F(1, 2),)), b=(F(0), F(1)), b_err=(F(1), F(0))), "b_err"),
])
def test_a_broken_tableau_is_rejected_when_built(broken, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ButcherTableau(name="broken", order=2, **broken)
