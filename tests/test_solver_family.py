"""tsit5 and dop853: against scipy's DOP853 step by step, exact solutions, convergence
orders, dense output, the compiled path and gradients (backprop and adjoint)."""
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import odeflow
from odeflow import Tensor
from odeflow.autodiff import ops
from odeflow.solvers.kernels import combine
from odeflow.solvers.tableau import TABLEAUX
from odeflow.testing import check_grads
from problems import ARENSTORF_T, ARENSTORF_Y0, arenstorf, arenstorf_jit, van_der_pol

NEW = ["tsit5", "dop853"]


@pytest.mark.parametrize("rtol, atol", [(1e-3, 1e-6), (1e-6, 1e-9), (1e-10, 1e-12)])
def test_dop853_makes_scipys_step_decisions_under_the_i_controller(rtol, atol):
    y0 = np.array([2.0, 0.0])
    ref = solve_ivp(van_der_pol, (0.0, 6.0), y0, method="DOP853", rtol=rtol, atol=atol)
    kw = dict(rtol=rtol, atol=atol, method="dop853", options={"controller": "i"})
    plain = odeflow.solve(van_der_pol, y0, [0.0, 6.0], dense_output=False, **kw)
    # same evaluations (12 per attempt + 2 to start), same accepted and rejected steps
    assert plain.stats["nfe"] == ref.nfev
    assert plain.stats["n_accepted"] == ref.t.size - 1
    assert plain.stats["n_steps"] == (ref.nfev - 2) // 12
    # with the step record kept, each accepted step also evaluates the 3 dense-output stages
    sol = odeflow.solve(van_der_pol, y0, [0.0, 6.0], **kw)
    assert sol.stats["nfe"] == ref.nfev + 3 * sol.stats["n_accepted"]
    # The error estimate of the first, tiny steps is rounding noise (a combination
    # of stages that cancels to ~1e-17), so its value depends on summation order
    # (our kernel vs scipy's BLAS dot) and moves the next h at up to ~1e-3
    # relative; the decisions stay the same and the states track that shift.
    np.testing.assert_allclose(sol.t_steps, ref.t, rtol=2e-3, atol=0)
    # at the end point (both land on t = 6) the states agree far below the tolerance (atol here
    # >= 1e-6): that shift of h, which depends on the CPU's BLAS kernel, left 1.2e-11 on an AMD
    # EPYC with scipy 1.17.1 and less elsewhere, so the bound is 1e-10, four decades below atol
    np.testing.assert_allclose(plain.y[-1], ref.y[:, -1], rtol=0, atol=1e-10)


def test_dop853_one_step_matches_scipy_to_rounding():
    from scipy.integrate import DOP853
    y0 = np.array([2.0, -0.5])
    for h in (0.3, 0.05, -0.2):
        ref = DOP853(van_der_pol, 0.1, y0, 0.1 + h, rtol=1e-3, atol=1e-6, first_step=abs(h))
        ref.step()
        # one attempt of odeflow with the same h (max_steps=1; large tolerances: accepted)
        sol = odeflow.solve(van_der_pol, y0, [0.1, 0.1 + h], rtol=1e-3, atol=1e-6, method="dop853",
                            options={"first_step": abs(h), "max_steps": 1, "controller": "i"},
                            dense_output=False)
        assert ref.t == sol.t[-1]
        np.testing.assert_allclose(sol.y[-1], ref.y, rtol=1e-14, atol=0)


def _fixed_rk(tab, f, y0, t_end, n):
    """Plain NumPy fixed-step RK from the tableau alone (independent of odeflow's loops)."""
    h = t_end / n
    y = np.array(y0, dtype=float)
    s = tab.n_stages
    for k in range(n):
        t = k * h
        K = []
        for i in range(s):
            K.append(f(t + tab.c_arr[i] * h, y + h * sum(tab.A_arr[i, j] * K[j] for j in range(i))))
        y = y + h * sum(tab.b_arr[i] * K[i] for i in range(s))
    return y


def _oscillator(t, y):
    return np.array([y[1], -y[0]])  # y = (sin t, cos t)


@pytest.mark.parametrize("method, order, ns", [("tsit5", 5, [32, 64, 128, 256]), ("dop853", 8, [20, 30, 40, 60])])
def test_observed_convergence_order_with_fixed_steps(method, order, ns):
    # tsit5's 5th-order error constants are small (Tsitouras optimised them): on coarse
    # grids the 6th-order term still dominates, so the grids start at h = 10/32
    exact = np.array([np.sin(10.0), np.cos(10.0)])
    errors = [np.abs(_fixed_rk(TABLEAUX[method], _oscillator, [0.0, 1.0], 10.0, n) - exact).max() for n in ns]
    assert min(errors) > 1e-14  # above rounding: the slope is the method's
    slope = np.polyfit(np.log(1.0 / np.asarray(ns)), np.log(errors), 1)[0]
    assert abs(slope - order) < 0.35


@pytest.mark.parametrize("method, rtol", [("tsit5", 1e-8), ("dop853", 1e-10)])
def test_arenstorf_orbit_closes_to_the_tolerance(method, rtol):
    # the orbit is periodic: y(T) = y(0) (HNW §II.0); reference numbers independent of odeflow
    ref = solve_ivp(arenstorf, (0.0, ARENSTORF_T), ARENSTORF_Y0, method="DOP853", rtol=1e-13, atol=1e-13)
    sol = odeflow.solve(arenstorf, ARENSTORF_Y0, [0.0, ARENSTORF_T], rtol=rtol, atol=rtol, method=method)
    np.testing.assert_allclose(sol.y[-1, :2], ref.y[:2, -1], rtol=0, atol=2000 * rtol)
    assert sol.stats["nfe"] == 1 + 1 + (TABLEAUX[method].n_stages - 1) * sol.stats["n_steps"] \
        + TABLEAUX[method].n_extra * sol.stats["n_accepted"]


def _one_step(tab, f, y, h):
    n_all = tab.c_arr.size
    K = np.zeros((n_all, y.size))
    K[0] = f(0.0, y)
    y1 = np.empty_like(y)
    stage = np.empty_like(y)
    for i in range(1, n_all):
        combine(y, h, K, tab.A_arr[i], i, stage)
        K[i] = f(tab.c_arr[i] * h, stage)
        if i == tab.n_stages - 1:
            y1[:] = stage
    return y1, K


@pytest.mark.parametrize("method, order, hs", [("tsit5", 4, [0.2, 0.1, 0.05]), ("dop853", 7, [0.8, 0.4, 0.2])])
def test_dense_output_of_one_step_has_its_local_order(method, order, hs):
    # one step of the oscillator from (sin 0, cos 0): the interpolant at theta = 0.4
    # errs like h^(order+1) (grids above the pre-asymptotic range of tsit5, below rounding)
    tab = TABLEAUX[method]
    hs = np.asarray(hs)
    errors = []
    for h in hs:
        y1, K = _one_step(tab, _oscillator, np.array([0.0, 1.0]), h)
        w = (0.4 ** np.arange(1, tab.P_arr.shape[1] + 1)) @ tab.P_arr.T
        approx = np.array([0.0, 1.0]) + h * (w @ K)
        errors.append(np.abs(approx - [np.sin(0.4 * h), np.cos(0.4 * h)]).max())
    slope = np.polyfit(np.log(hs), np.log(errors), 1)[0]
    assert abs(slope - (order + 1)) < 0.4


@pytest.mark.parametrize("method", NEW)
def test_outputs_and_interpolate_agree_with_scipy_at_tight_tolerance(method):
    y0 = np.array([2.0, 0.0])
    t = np.linspace(0.0, 6.0, 25)
    ref = solve_ivp(van_der_pol, (0.0, 6.0), y0, method="DOP853", rtol=1e-13, atol=1e-13, dense_output=True)
    sol = odeflow.solve(van_der_pol, y0, t, rtol=1e-10, atol=1e-12, method=method)
    np.testing.assert_allclose(sol.y, ref.sol(t).T, rtol=0, atol=1e-7)
    tq = np.linspace(0.0, 6.0, 301)
    np.testing.assert_allclose(sol.interpolate(tq), ref.sol(tq).T, rtol=0, atol=1e-7)
    np.testing.assert_allclose(sol.interpolate(t), sol.y, rtol=0, atol=1e-13)


@pytest.mark.parametrize("method", NEW)
def test_jitted_func_runs_the_same_algorithm(method):
    t = np.linspace(0.0, ARENSTORF_T, 7)
    kw = dict(rtol=1e-8, atol=1e-8, method=method)
    py = odeflow.solve(arenstorf, ARENSTORF_Y0, t, **kw)
    jit = odeflow.solve(arenstorf_jit, ARENSTORF_Y0, t, **kw)
    for key in ("nfe", "n_accepted", "n_rejected"):
        assert jit.stats[key] == py.stats[key]
    np.testing.assert_allclose(jit.y, py.y, rtol=0, atol=1e-9)  # rounding of func, amplified by the orbit


class _Spiral(odeflow.nn.Module):
    """dy/dt = A tanh(y) with a Parameter A (nonlinear, 2-D)."""

    def __init__(self):
        self.A = odeflow.nn.Parameter(np.array([[-0.1, 2.0], [-2.0, -0.1]]))

    def forward(self, t, y):
        return ops.tanh(y) @ self.A.T


@pytest.mark.parametrize("method", NEW)
def test_backprop_through_the_solver_matches_finite_differences(method):
    func = _Spiral()
    t = np.array([0.0, 0.7, 1.5])  # an interior output: dop853's dense stages are on the tape

    def f(y0):
        return odeflow.odeint(func, y0, t, rtol=1e-6, atol=1e-8, method=method)

    y0 = np.array([0.5, -0.3])
    np.testing.assert_allclose(f(Tensor(y0)).data, odeflow.odeint(
        lambda tt, y: np.tanh(y) @ func.A.data.T, y0, t, rtol=1e-6, atol=1e-8, method=method), atol=1e-13)
    check_grads(f, y0, order=2)


@pytest.mark.parametrize("mode", ["backsolve", "checkpoint"])
@pytest.mark.parametrize("method", NEW)
def test_adjoint_gradients_match_finite_differences(method, mode):
    func = _Spiral()
    t = np.array([0.0, 0.7, 1.5])

    def f(y0):
        return odeflow.odeint_adjoint(func, y0, t, rtol=1e-10, atol=1e-10, method=method, adjoint_mode=mode)

    check_grads(f, np.array([0.5, -0.3]), order=1, rtol=1e-5)
