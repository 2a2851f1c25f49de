"""The integrator against published numbers, scipy, exact solutions and convergence orders."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy.integrate import solve_ivp
from scipy.linalg import expm

import odeflow
from odeflow.solvers.tableau import TABLEAUX
from problems import (ARENSTORF_HAIRER, ARENSTORF_T, ARENSTORF_Y0, arenstorf, arenstorf_jit,
                      cos_growth, cos_growth_exact, decay, decay_exact, van_der_pol)


def test_arenstorf_reproduces_hairers_dopri5():
    sol = odeflow.solve(arenstorf, ARENSTORF_Y0, [0.0, ARENSTORF_T], rtol=1e-7, atol=1e-7,
                        options={"first_step": 1e-4, "controller": "pi"})
    assert sol.stats["n_accepted"] == ARENSTORF_HAIRER["n_accepted"]
    assert sol.stats["n_rejected"] == ARENSTORF_HAIRER["n_rejected"]
    assert sol.stats["nfe"] == 1 + 6 * sol.stats["n_steps"]  # FSAL: 6 evaluations per attempt
    assert abs(sol.y[-1, 0] - ARENSTORF_HAIRER["y1"]) < 1e-12
    assert abs(sol.y[-1, 1] - ARENSTORF_HAIRER["y2"]) < 1e-12


def test_jitted_func_runs_the_same_algorithm():
    t = [0.0, ARENSTORF_T]
    kw = dict(rtol=1e-7, atol=1e-7, options={"first_step": 1e-4})
    py = odeflow.solve(arenstorf, ARENSTORF_Y0, t, **kw)
    jit = odeflow.solve(arenstorf_jit, ARENSTORF_Y0, t, **kw)
    for key in ("nfe", "n_accepted", "n_rejected"):
        assert jit.stats[key] == py.stats[key]
    np.testing.assert_allclose(jit.y, py.y, rtol=0, atol=1e-13)
    again = odeflow.solve(arenstorf_jit, ARENSTORF_Y0, t, **kw)
    assert "compile_seconds" not in again.stats  # compiled once per process and func


@pytest.mark.parametrize("rtol, atol", [(1e-3, 1e-6), (1e-6, 1e-9), (1e-9, 1e-12)])
@pytest.mark.parametrize("method, scipy_method", [("dopri5", "RK45"), ("bosh3", "RK23")])
def test_step_by_step_agreement_with_scipy_under_the_i_controller(method, scipy_method, rtol, atol):
    y0 = np.array([2.0, 0.0])
    ref = solve_ivp(van_der_pol, (0.0, 6.0), y0, method=scipy_method, rtol=rtol, atol=atol)
    sol = odeflow.solve(van_der_pol, y0, [0.0, 6.0], rtol=rtol, atol=atol, method=method,
                        options={"controller": "i"})
    # identical decisions: same evaluations, same accepted steps
    assert sol.stats["nfe"] == ref.nfev
    assert sol.stats["n_accepted"] == ref.t.size - 1
    # The error estimate is a difference of nearly equal sums, so its last bits
    # depend on summation order (our kernel vs scipy's BLAS dot); after a very
    # small error ratio this moves h at ~1e-8 relative. States track that.
    np.testing.assert_allclose(sol.t_steps, ref.t, rtol=1e-7, atol=0)
    np.testing.assert_allclose(sol.y_steps, ref.y.T, rtol=0, atol=1e-7)


def _one_dopri5_step(f, t, y, h):
    from odeflow.solvers.kernels import combine
    tab = TABLEAUX["dopri5"]
    K = np.empty((7, y.size))
    K[0] = f(t, y)
    y1 = np.empty_like(y)
    for i in range(1, 7):
        combine(y, h, K, tab.A_arr[i], i, y1)
        K[i] = f(t + tab.c_arr[i] * h, y1)
    return y1, K


def test_one_step_matches_scipys_rk45_step_to_rounding():
    from scipy.integrate._ivp.rk import RK45, rk_step  # reference implementation of one step
    y = np.array([2.0, -0.5])
    for h in (0.3, 0.01, -0.2):
        y1, _ = _one_dopri5_step(van_der_pol, 0.1, y, h)
        K = np.empty((RK45.n_stages + 1, 2))
        y_ref, _ = rk_step(van_der_pol, 0.1, y, van_der_pol(0.1, y), h, RK45.A, RK45.B, RK45.C, K)
        np.testing.assert_allclose(y1, y_ref, rtol=4e-16, atol=0)


def test_error_estimate_bounds_the_local_error_of_one_step():
    # y' = y from y = 1: the embedded estimate (5th minus 4th order solution)
    # bounds the true error of the propagated 5th-order solution and scales like h^5
    hs = np.array([0.4, 0.2, 0.1, 0.05])
    estimates = []
    tab = TABLEAUX["dopri5"]
    for h in hs:
        y1, K = _one_dopri5_step(lambda t, y: y, 0.0, np.ones(1), h)
        est = abs(h * (tab.b_err_arr @ K)[0])
        assert abs(y1[0] - np.exp(h)) < est
        estimates.append(est)
    assert abs(np.polyfit(np.log(hs), np.log(estimates), 1)[0] - 5) < 0.2


def _fixed_rk(tab, f, y0, t_end, n):
    """Plain NumPy fixed-step RK written from the tableau alone (independent of odeflow's loops)."""
    h = t_end / n
    y = np.array(y0, dtype=float)
    for k in range(n):
        t = k * h
        K = []
        for i in range(tab.n_stages):
            K.append(f(t + tab.c_arr[i] * h, y + h * sum(tab.A_arr[i, j] * K[j] for j in range(i))))
        y = y + h * sum(tab.b_arr[i] * K[i] for i in range(tab.n_stages))
    return y


def _observed_order(errors, ns):
    return np.polyfit(np.log(1.0 / np.asarray(ns)), np.log(errors), 1)[0]


@pytest.mark.parametrize("method, expected", [("euler", 1), ("midpoint", 2), ("rk4", 4)])
def test_fixed_step_methods_converge_at_their_order(method, expected):
    y0 = np.array([1.0])
    ns = [16, 32, 64, 128]
    exact = cos_growth_exact(y0, [2.0])[0]
    errors = [np.abs(odeflow.odeint(cos_growth, y0, [0.0, 2.0], method=method,
                                    options={"step_size": 2.0 / n})[-1] - exact).max() for n in ns]
    assert abs(_observed_order(errors, ns) - expected) < 0.2


def test_dopri5_tableau_converges_at_order_five_with_fixed_steps():
    ns = [8, 16, 32, 64]
    exact = cos_growth_exact(np.array([1.0]), [2.0])[0]
    errors = [np.abs(_fixed_rk(TABLEAUX["dopri5"], cos_growth, [1.0], 2.0, n) - exact).max() for n in ns]
    assert abs(_observed_order(errors, ns) - 5) < 0.3


def test_fixed_step_outputs_land_on_nodes():
    t = np.array([0.0, 0.3, 1.0])
    sol = odeflow.solve(decay, np.ones(2), t, method="rk4", options={"step_size": 0.25})
    # nodes: 0, .25, .3, .5, .75, 1  -> 5 steps of 4 evaluations
    assert sol.stats["nfe"] == 20
    np.testing.assert_allclose(sol.t_steps, [0, 0.25, 0.3, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(sol.y, decay_exact(np.ones(2), t), rtol=1e-5)


def test_dense_output_of_one_dopri5_step_has_local_order_five():
    # y' = y over one step h: the interpolant at theta = 1/2 errs like h^5 (order-4 extension)
    hs = np.array([0.2, 0.1, 0.05, 0.025])
    errors = []
    for h in hs:
        sol = odeflow.solve(lambda t, y: y, np.ones(1), [0.0, h], rtol=1e3, atol=1e3,
                            options={"first_step": h})
        assert sol.stats["n_accepted"] == 1
        errors.append(abs(sol.interpolate(h / 2)[0] - np.exp(h / 2)))
    slope = np.polyfit(np.log(hs), np.log(errors), 1)[0]
    assert 4.7 < slope < 5.5


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 5), seed=st.integers(0, 2**32 - 1),
       tol=st.sampled_from([1e-6, 1e-8, 1e-10]), backwards=st.booleans())
def test_linear_systems_match_the_matrix_exponential(n, seed, tol, backwards):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(n, n)) / np.sqrt(n)
    y0 = rng.normal(size=n)
    t = np.linspace(0.0, 2.0, 5) * (-1 if backwards else 1)
    y = odeflow.odeint(lambda t, y: A @ y, y0, t, rtol=tol, atol=tol)
    exact = np.stack([expm(A * ti) @ y0 for ti in t])
    scale = np.abs(exact).max() + 1.0
    # dopri5's global error tracks the tolerance; 100x covers the accumulation over ~2 time units
    assert np.abs(y - exact).max() <= 100 * tol * scale


def test_batched_state_shape_and_dtype_are_kept():
    y0 = np.arange(6, dtype=np.float64).reshape(2, 3)
    t = np.linspace(0, 1, 4)
    y = odeflow.odeint(decay, y0, t)
    assert y.shape == (4, 2, 3)
    np.testing.assert_allclose(y.reshape(4, -1), decay_exact(y0, t), rtol=1e-7, atol=1e-9)
    y32 = odeflow.odeint(decay, y0.astype(np.float32), t, rtol=1e-4, atol=1e-6)
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32.reshape(4, -1), decay_exact(y0, t), rtol=1e-4, atol=1e-5)
    yint = odeflow.odeint(decay, np.array([1, 2]), t)
    assert yint.dtype == np.float64


def test_scalar_state():
    y = odeflow.odeint(decay, 1.0, [0.0, 1.0])
    assert y.shape == (2,)
    assert abs(y[-1] - np.exp(-0.5)) < 1e-8


def test_single_time_returns_y0_without_evaluating():
    calls = []
    sol = odeflow.solve(lambda t, y: calls.append(t) or y, np.ones(3), [5.0])
    assert calls == [] and sol.stats["nfe"] == 0
    np.testing.assert_array_equal(sol.y, np.ones((1, 3)))


def test_many_outputs_cost_no_extra_evaluations():
    few = odeflow.solve(cos_growth, np.ones(2), [0.0, 5.0])
    many = odeflow.solve(cos_growth, np.ones(2), np.linspace(0.0, 5.0, 1000))
    assert many.stats == few.stats
    np.testing.assert_allclose(many.y[-1], few.y[-1], rtol=0, atol=0)
    np.testing.assert_allclose(many.y, cos_growth_exact(np.ones(2), many.t), rtol=1e-6)


@pytest.mark.parametrize("method", ["dopri5", "bosh3"])
def test_interpolate_agrees_with_exact_solution_inside_the_interval(method):
    sol = odeflow.solve(cos_growth, np.ones(1), [0.0, 3.0], method=method, rtol=1e-9, atol=1e-12)
    tq = np.linspace(0.0, 3.0, 37)
    np.testing.assert_allclose(sol.interpolate(tq), cos_growth_exact(np.ones(1), tq), rtol=1e-6)
    assert sol.interpolate(1.5).shape == (1,)


def test_backwards_interpolate_and_steps():
    sol = odeflow.solve(decay, np.ones(1), [2.0, 0.0], rtol=1e-10, atol=1e-12)
    assert np.all(np.diff(sol.t_steps) < 0)
    np.testing.assert_allclose(sol.interpolate([1.0]), [[np.exp(0.5)]], rtol=1e-8)


def test_max_step_bounds_every_step():
    sol = odeflow.solve(decay, np.ones(1), [0.0, 1.0], options={"max_step": 0.05})
    assert np.abs(np.diff(sol.t_steps)).max() <= 0.05 + 1e-15


@pytest.mark.parametrize("controller", ["pi", "i"])
def test_array_tolerances_broadcast_per_component(controller):
    y0 = np.array([[1.0, 1e-3]])
    sol = odeflow.solve(cos_growth, y0, [0, 1], rtol=np.array([1e-8, 1e-4]), atol=1e-12,
                        options={"controller": controller})
    exact = cos_growth_exact(y0, [1.0])[0]
    err = np.abs(sol.y[-1].ravel() - exact) / np.abs(exact)
    assert err[0] < 1e-6 and err[1] < 1e-2


def test_without_dense_output_the_step_record_is_not_kept():
    sol = odeflow.solve(decay, np.ones(1), [0.0, 1.0], dense_output=False)
    assert sol.success and sol._record is None
    with pytest.raises(odeflow.InputError, match="dense_output=False"):
        sol.interpolate(0.5)
