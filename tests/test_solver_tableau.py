"""Tableau identities, Butcher order conditions and dense-output properties."""
from fractions import Fraction as F

import numpy as np
import pytest

from odeflow.solvers.tableau import BOSH3, DOPRI5, TABLEAUX, ButcherTableau


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


def _phi(tree, A):
    """Elementary weights Phi_i(tree) (HNW §II.2, Def. 2.9), exact fractions."""
    s = len(A)
    out = [F(1)] * s
    for child in tree:
        inner = _phi(child, A)
        out = [o * sum(A[i][j] * inner[j] for j in range(s)) for i, o in enumerate(out)]
    return out


def _gamma(tree):
    size = 1 + sum(_size(c) for c in tree)
    g = size
    for child in tree:
        g *= _gamma(child)
    return g


def _size(tree):
    return 1 + sum(_size(c) for c in tree)


def _order_of(weights, A, max_order=6):
    """Largest p such that sum_i w_i Phi_i(t) = 1/gamma(t) for every tree of order <= p."""
    levels = rooted_trees(max_order)
    for n in range(1, max_order + 1):
        for tree in levels[n]:
            if sum(w * p for w, p in zip(weights, _phi(tree, A))) != F(1, _gamma(tree)):
                return n - 1
    return max_order


def test_tree_counts_match_the_known_sequence():
    # number of rooted trees of order 1..6: 1, 1, 2, 4, 9, 20 (OEIS A000081)
    assert [len(v) for v in rooted_trees(6).values()] == [1, 1, 2, 4, 9, 20]


@pytest.mark.parametrize("name", sorted(TABLEAUX))
def test_order_conditions_hold_exactly_to_the_claimed_order(name):
    tab = TABLEAUX[name]
    assert _order_of(tab.b, tab.A) == tab.order


@pytest.mark.parametrize("tab", [DOPRI5, BOSH3])
def test_embedded_solution_has_the_error_order(tab):
    b_hat = [b - e for b, e in zip(tab.b, tab.b_err)]
    assert _order_of(b_hat, tab.A) == tab.error_order


@pytest.mark.parametrize("tab", [DOPRI5, BOSH3])
def test_dense_output_is_hermite_at_both_ends(tab):
    P = tab.P_arr
    s = tab.n_stages
    powers = np.arange(1, P.shape[1] + 1)
    np.testing.assert_allclose(P.sum(axis=1), tab.b_arr, atol=1e-15)          # y(1) = y1
    np.testing.assert_allclose(P[:, 0], np.eye(s)[0], atol=1e-15)             # y'(0) = f0
    np.testing.assert_allclose(P @ powers, np.eye(s)[s - 1], atol=1e-13)      # y'(1) = f1


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
