"""Gradients through method="radau": backprop through the implicit steps (the implicit
function theorem on the collocation equations, odeflow.adjoint.implicit) and the adjoint
in both modes, on a stiff linear system with a closed form (expm and its Frechet
derivative) and on nonlinear stiff problems against central finite differences."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.linalg import expm, expm_frechet

import odeflow
from odeflow import Tensor, nn
from odeflow.adjoint.discretize import _call
from odeflow.autodiff import ops
from odeflow.errors import GradientError
from odeflow.testing import check_grads
from stiff_problems import robertson, robertson_jac

A_STIFF = np.array([[-1.0, 0.5], [0.0, -1000.0]])  # eigenvalues -1 and -1000
Y0 = np.array([1.0, 2.0])
W = np.array([0.3, -1.1])
T = 1.0
TIMES = np.array([0.0, 0.3, T])
TOL = dict(rtol=1e-8, atol=1e-10)


class StiffLinear(nn.Module):
    """dy/dt = A y: y(t) = expm(A t) y0."""

    def __init__(self, A):
        self.A = nn.Parameter(A)

    def forward(self, t, y):
        return y @ self.A.T


def closed_form(A, y0, times, w):
    """L = sum_i w . y(t_i) (i >= 1) and its gradients w.r.t. y0, A and t, from expm:
    dL/dy0 = sum expm(A t_i)^T w, dL/dA = sum_i <w, Frechet(A t_i; E t_i) y0>,
    dL/dt_i = w . A y(t_i), dL/dt_0 = -(sum_i expm(A (t_i - t_0))^T w) . A y0."""
    d_y0, d_A, d_t = np.zeros(2), np.zeros((2, 2)), np.zeros(len(times))
    L = 0.0
    for i in range(1, len(times)):
        s = times[i] - times[0]
        Phi = expm(A * s)
        L += w @ Phi @ y0
        d_y0 += Phi.T @ w
        for a in range(2):
            for b in range(2):
                E = np.zeros((2, 2))
                E[a, b] = 1.0
                d_A[a, b] += w @ expm_frechet(A * s, E * s, compute_expm=False) @ y0
        d_t[i] = w @ A @ Phi @ y0
    d_t[0] = -(d_y0 @ A @ y0)
    return L, d_y0, d_A, d_t


def _gradients_of(solver, **kw):
    func = StiffLinear(A_STIFF.copy())
    y0 = Tensor(Y0, requires_grad=True)
    t = Tensor(TIMES, requires_grad=True)
    ys = solver(func, y0, t, method="radau", **TOL, **kw)
    (ys[1:] * W).sum().backward()
    return ys.data, y0.grad.data, func.A.grad.data, t.grad.data


SOLVERS = {
    "backprop": (odeflow.odeint, {}),
    "adjoint-backsolve": (odeflow.odeint_adjoint, dict(adjoint_method="radau", adjoint_mode="backsolve")),
    "adjoint-checkpoint": (odeflow.odeint_adjoint, dict(adjoint_method="radau", adjoint_mode="checkpoint")),
}


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_gradients_match_the_closed_form(name):
    solver, kw = SOLVERS[name]
    ys, d_y0, d_A, d_t = _gradients_of(solver, **kw)
    L, e_y0, e_A, e_t = closed_form(A_STIFF, Y0, TIMES, W)
    np.testing.assert_allclose(ys[-1], expm(A_STIFF * T) @ Y0, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(d_y0, e_y0, rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose(d_A, e_A, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(d_t, e_t, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_gradients_match_central_differences(name):
    """y0, the matrix A and the times together, against central differences of the solve."""
    solver, kw = SOLVERS[name]

    def f(y0, A, t):
        return solver(lambda s, y: y @ ops.transpose(A), y0, t, method="radau", **TOL, **kw)

    check_grads(f, Y0, A_STIFF, TIMES, order=1, rtol=1e-5, n_directions=1)


def test_backprop_values_are_the_array_solve():
    """The replay on Tensors reproduces the array solve's outputs (same jac: same steps)."""
    def jac(t, y):
        return A_STIFF
    ys = odeflow.odeint(StiffLinear(A_STIFF.copy()), Tensor(Y0, requires_grad=True), TIMES,
                        method="radau", options={"jac": jac}, **TOL)
    ref = odeflow.odeint(lambda t, y: A_STIFF @ y, Y0, TIMES, method="radau", options={"jac": jac}, **TOL)
    np.testing.assert_allclose(ys.data, ref, rtol=1e-13, atol=1e-15)


_AWAY_FROM_ZERO = st.floats(0.5, 2.0).flatmap(lambda v: st.sampled_from([v, -v]))


@settings(max_examples=5, deadline=None)
@given(y0=st.lists(_AWAY_FROM_ZERO, min_size=2, max_size=2),
       w=st.lists(st.floats(-2.0, 2.0), min_size=2, max_size=2),
       coupling=st.floats(-3.0, 3.0))
def test_backprop_closed_form_hypothesis(y0, w, coupling):
    """The gradient of the computed solution is within tolerance of the exact one where the error
    control sees the stiff component (y0 away from 0: from y0 = 0 the solver takes long steps
    whose stiff sensitivity R(h lambda)^k is that of the discrete solve, not exp(lambda t))."""
    A = np.array([[-1.0, coupling], [0.0, -1000.0]])
    func = StiffLinear(A.copy())
    y = Tensor(np.array(y0), requires_grad=True)
    ys = odeflow.odeint(func, y, [0.0, 0.5], method="radau", rtol=1e-7, atol=1e-9)
    (ys[-1] * np.array(w)).sum().backward()
    _, e_y0, e_A, _ = closed_form(A, np.array(y0), np.array([0.0, 0.5]), np.array(w))
    scale = 1.0 + np.abs(y0).max()
    np.testing.assert_allclose(y.grad.data, e_y0, rtol=1e-5, atol=1e-7 * scale)
    np.testing.assert_allclose(func.A.grad.data, e_A, rtol=1e-5, atol=1e-7 * scale)


def test_second_order_through_radau_is_refused_naming_radau():
    func = StiffLinear(A_STIFF.copy())
    y0 = Tensor(Y0, requires_grad=True)
    ys = odeflow.odeint(func, y0, [0.0, 0.1], method="radau")
    with pytest.raises(GradientError, match="method='radau'"):
        odeflow.autodiff.backprop.gradients(ys[-1].sum(), [y0], create_graph=True)


def _vdp(mu):
    """Van der Pol in HW's scaled form, y1' = y2, y2' = mu^2 ((1 - y1^2) y2 - y1), Tensor ops."""
    def func(t, y):
        y1, y2 = y[0], y[1]
        return ops.stack([y2, mu * mu * ((1.0 - y1 * y1) * y2 - y1)])
    return func


@pytest.mark.parametrize("name", ["backprop", "adjoint-checkpoint"])  # backsolve: see docs/stiff.md
def test_van_der_pol_mu_100_matches_central_differences(name):
    solver, kw = SOLVERS[name]

    def f(y0, mu):
        return solver(_vdp(mu), y0, [0.0, 0.05, 0.2], method="radau", rtol=1e-9, atol=1e-9, **kw)

    check_grads(f, np.array([2.0, -0.66]), 100.0, order=1, rtol=1e-5, n_directions=1)


def _robertson(log_k):
    """Robertson's kinetics with rate constants exp(log_k), Tensor ops."""
    def func(t, y):
        k = ops.exp(log_k)
        r1, r2, r3 = k[0] * y[0], k[1] * y[1] * y[2], k[2] * y[1] * y[1]
        return ops.stack([-r1 + r2, r1 - r2 - r3, r3])
    return func


LOG_K = np.log([0.04, 1e4, 3e7])


def test_backprop_robertson_rate_constants_match_central_differences():
    def f(y0, log_k):
        ys = odeflow.odeint(_robertson(log_k), y0, [0.0, 0.1, 1.0], method="radau", rtol=1e-7,
                            atol=1e-14)
        return ys * np.array([1.0, 1e4, 1.0])  # y2 ~ 1e-5: scaled to count in the check

    check_grads(f, np.array([1.0, 0.0, 0.0]), LOG_K, order=1, rtol=1e-5, n_directions=1)


def test_engine_jacobian_is_the_exact_jacobian():
    from odeflow.adjoint.implicit import engine_jacobian
    y = np.array([0.7, 3e-5, 0.29])
    jac = engine_jacobian(_call, _robertson(Tensor(LOG_K)), y.shape, y.dtype)
    np.testing.assert_allclose(jac(0.0, y), robertson_jac(0.0, y), rtol=1e-14, atol=1e-12)
    np.testing.assert_array_equal(engine_jacobian(_call, lambda t, y: Tensor(np.ones(3)), y.shape,
                                                  y.dtype)(0.0, y), np.zeros((3, 3)))


@pytest.mark.parametrize("solver", [odeflow.odeint_backprop, odeflow.odeint_adjoint])
def test_forward_newton_uses_the_engine_jacobian(solver):
    """No finite differences in the forward Newton for a Tensor func: the same steps, Jacobians
    and evaluations as the array solve given the exact jac (the engine's evaluations count in
    njev, as a jac's do), plus, for backprop, the 3 evaluations per step of the replay."""
    stats = {}
    solver(_robertson(Tensor(LOG_K)), Tensor(np.array([1.0, 0.0, 0.0]), requires_grad=True), [0.0, 1.0],
           method="radau", rtol=1e-6, atol=1e-10, stats=stats)
    ref = odeflow.solve(robertson, np.array([1.0, 0.0, 0.0]), [0.0, 1.0], method="radau",
                        rtol=1e-6, atol=1e-10, options={"jac": robertson_jac})
    fwd = stats["forward"]
    assert fwd["n_accepted"] == ref.stats["n_accepted"] and fwd["njev"] == ref.stats["njev"]
    replay = 3 * fwd["n_accepted"] if solver is odeflow.odeint_backprop else 0
    assert fwd["nfe"] == ref.stats["nfe"] + replay


def test_backprop_uses_a_given_jac_first():
    calls = []

    def jac(t, y):
        calls.append(t)
        return robertson_jac(t, y)
    odeflow.odeint(_robertson(Tensor(LOG_K)), Tensor(np.array([1.0, 0.0, 0.0]), requires_grad=True),
                   [0.0, 1.0], method="radau", options={"jac": jac})
    assert calls


def test_adjoint_with_a_forward_jac_does_not_hand_it_to_the_backward_solve():
    """The forward's df/dy (n x n) is not the Jacobian of the augmented backward system
    (the backward options are chosen the same way in both adjoint modes)."""
    func = StiffLinear(A_STIFF.copy())
    y0 = Tensor(Y0, requires_grad=True)
    ys = odeflow.odeint_adjoint(func, y0, [0.0, T], method="radau", options={"jac": lambda t, y: A_STIFF},
                                adjoint_mode="checkpoint", **TOL)
    (ys[-1] * W).sum().backward()
    _, e_y0, e_A, _ = closed_form(A_STIFF, Y0, np.array([0.0, T]), W)
    np.testing.assert_allclose(y0.grad.data, e_y0, rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose(func.A.grad.data, e_A, rtol=1e-6, atol=1e-9)


def test_backprop_float32_column_state():
    """A (2, 1) float32 state: the rows keep y0's shape and dtype; the gradient is right to
    float32's tolerance (the Newton solve itself runs in float64)."""
    A = Tensor(A_STIFF.copy(), requires_grad=True)
    y0 = Tensor(Y0.reshape(2, 1).astype(np.float32), requires_grad=True)
    ys = odeflow.odeint(lambda t, y: A @ y, y0, [0.0, 0.4, T], method="radau", rtol=2e-5, atol=1e-7)
    assert ys.shape == (3, 2, 1) and ys.dtype == np.float32
    (ys[1:, :, 0] * W).sum().backward()
    _, e_y0, e_A, _ = closed_form(A_STIFF, Y0, np.array([0.0, 0.4, T]), W)
    assert y0.grad.dtype == np.float32
    np.testing.assert_allclose(y0.grad.data[:, 0], e_y0, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(A.grad.data, e_A, rtol=1e-4, atol=1e-6)


def test_backprop_backwards_in_time_matches_the_closed_form():
    """t decreasing (h < 0 in the collocation equations): y(t) = expm(A (t - t0)) y0."""
    A = np.array([[-1.0, 0.5], [0.0, -3.0]])  # backwards, both modes grow: a mild A
    func = StiffLinear(A.copy())
    y0 = Tensor(Y0, requires_grad=True)
    times = np.array([1.0, 0.6, 0.0])
    ys = odeflow.odeint(func, y0, times, method="radau", **TOL)
    (ys[1:] * W).sum().backward()
    _, e_y0, e_A, _ = closed_form(A, Y0, times, W)
    np.testing.assert_allclose(y0.grad.data, e_y0, rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose(func.A.grad.data, e_A, rtol=1e-6, atol=1e-9)
