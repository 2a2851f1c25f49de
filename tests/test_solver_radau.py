"""Radau IIA (method="radau") on stiff problems against scipy, its errors, the
compiled path and gradients through it by the adjoint method."""
import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.linalg import expm

import odeflow
from odeflow import Tensor, nn
from odeflow.errors import InputError, InputTypeError, ShapeError, StepSizeUnderflowError
from odeflow.testing import check_grads
from stiff_problems import (HIRES_T, HIRES_Y0, hires, robertson, robertson_jac, robertson_jac_jit,
                            robertson_jit, van_der_pol_scaled)

_VDP3 = van_der_pol_scaled(1e3)
_VDP6 = van_der_pol_scaled(1e6)
_ROBER_T = np.array([0.0, 1e-2, 1.0, 1e2, 1e4, 1e5])
CASES = {
    # name: func, jac, y0, t, rtol, atol
    "robertson": (robertson, robertson_jac, [1.0, 0.0, 0.0], _ROBER_T, 1e-6, 1e-10),
    "robertson_1e11": (robertson, robertson_jac, [1.0, 0.0, 0.0], np.append(_ROBER_T, 1e11), 1e-6,
                       np.array([1e-10, 1e-16, 1e-10])),   # y2 ~ 1e-16 late: its atol scaled down
    "vdp_mu1e3": (*_VDP3, [2.0, -0.66], np.array([0.0, 0.7, 2.0]), 1e-5, 1e-5),
    "vdp_mu1e6": (*_VDP6, [2.0, -0.66], np.array([0.0, 0.7, 2.0]), 1e-5, 1e-5),
    "hires": (hires, None, HIRES_Y0, np.array([0.0, 5.0, HIRES_T]), 1e-6, 1e-8),  # jac by differences
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_stiff_problems_within_ten_times_the_tolerance_at_scipys_cost(name):
    func, jac, y0, t, rtol, atol = CASES[name]
    # reference: scipy's LSODA at 1e-12 (scipy's Radau at 1e-12 takes ~30 s on VDPOL and
    # fails with a step-size underflow for mu = 1e6)
    ref = solve_ivp(func, (t[0], t[-1]), y0, method="LSODA", rtol=1e-12, atol=1e-14, t_eval=t, jac=jac)
    assert ref.success
    sol = odeflow.solve(func, y0, t, rtol=rtol, atol=atol, method="radau",
                        options={"jac": jac} if jac is not None else None)
    scale = atol + rtol * np.abs(ref.y.T)
    assert np.max(np.abs(sol.y - ref.y.T) / scale) < 10
    peer = solve_ivp(func, (t[0], t[-1]), y0, method="Radau", rtol=rtol, atol=atol, t_eval=t, jac=jac)
    assert 0.5 < sol.stats["nfe"] / peer.nfev < 2
    assert 0.5 < sol.stats["njev"] / peer.njev < 2 and 0.5 < sol.stats["nlu"] / peer.nlu < 2


def test_dense_output_is_the_collocation_polynomial_within_tolerance():
    func, jac, y0, t, rtol, atol = CASES["vdp_mu1e3"]
    sol = odeflow.solve(func, y0, [0.0, 2.0], rtol=rtol, atol=atol, method="radau", options={"jac": jac})
    tq = np.linspace(0.0, 2.0, 41)
    ref = solve_ivp(func, (0.0, 2.0), y0, method="LSODA", rtol=1e-12, atol=1e-14, t_eval=tq, jac=jac)
    np.testing.assert_allclose(sol.interpolate(tq), ref.y.T, rtol=0, atol=50 * rtol * 2)
    np.testing.assert_allclose(sol.interpolate(sol.t_steps), sol.y_steps, rtol=0, atol=1e-14)


def test_observed_convergence_order_five_with_fixed_steps():
    # linear oscillator with the exact Jacobian: simplified Newton solves the collocation
    # system exactly, and first_step = max_step = h with loose tolerances gives fixed steps
    A = np.array([[0.0, 1.0], [-1.0, 0.0]])
    ns = np.array([8, 10, 16, 20])  # h = 10 / n exact in binary: no sliver step
    errors = []
    for n in ns:
        h = 10.0 / n
        sol = odeflow.solve(lambda t, y: A @ y, [0.0, 1.0], [0.0, 10.0], rtol=1e-1, atol=1e-1, method="radau",
                            options={"jac": lambda t, y: A, "first_step": h, "max_step": h})
        assert sol.stats["n_accepted"] == n and sol.stats["n_rejected"] == 0
        errors.append(np.abs(sol.y[-1] - [np.sin(10.0), np.cos(10.0)]).max())
    slope = np.polyfit(np.log(1.0 / ns), np.log(errors), 1)[0]
    assert abs(slope - 5) < 0.3


def test_jitted_func_and_jac_run_the_whole_solve_compiled():
    kw = dict(rtol=1e-6, atol=1e-10, method="radau")
    py = odeflow.solve(robertson, [1.0, 0.0, 0.0], _ROBER_T, options={"jac": robertson_jac}, **kw)
    jit = odeflow.solve(robertson_jit, [1.0, 0.0, 0.0], _ROBER_T, options={"jac": robertson_jac_jit}, **kw)
    assert jit.stats["compile_seconds"] > 0
    for key in ("nfe", "n_accepted", "n_rejected", "njev", "nlu"):
        assert jit.stats[key] == py.stats[key]
    np.testing.assert_allclose(jit.y, py.y, rtol=1e-9, atol=1e-15)
    # (without jac the finite-difference Jacobian is compiled into the loop instead: the
    # same code path, not compiled again here to keep the suite fast)


@pytest.mark.parametrize("jac, error, pattern", [
    (lambda t, y: np.eye(2), ShapeError, r"`options\['jac'\]` must return df/dy .* shape \(3, 3\) .* "
                                         r"returned shape \(2, 2\)"),
    (lambda t, y: np.full((3, 3), np.nan), InputError, r"`options\['jac'\]` returned non-finite"),
    ("not callable", InputTypeError, r"`options\['jac'\]` must be callable"),
])
def test_bad_jac_is_refused_before_the_solve(jac, error, pattern):
    with pytest.raises(error, match=pattern):
        odeflow.solve(robertson, [1.0, 0.0, 0.0], [0.0, 1.0], method="radau", options={"jac": jac})


def test_jac_changing_shape_during_the_solve_is_a_shape_error():
    calls = []

    def jac(t, y):
        calls.append(t)
        return robertson_jac(t, y) if len(calls) < 3 else np.eye(4)

    with pytest.raises(ShapeError, match=r"`options\['jac'\]`.*\(3, 3\).*\(4, 4\)"):
        odeflow.solve(robertson, [1.0, 0.0, 0.0], [0.0, 1e5], method="radau", options={"jac": jac})


def test_a_methods_option_given_to_another_method_names_both():
    with pytest.raises(InputError, match=r"key 'jac' does not apply to method 'dopri5'"):
        odeflow.solve(robertson, [1.0, 0.0, 0.0], [0.0, 1.0], options={"jac": robertson_jac})
    with pytest.raises(InputError, match=r"key 'controller' does not apply to method 'radau'"):
        odeflow.solve(robertson, [1.0, 0.0, 0.0], [0.0, 1.0], method="radau", options={"controller": "i"})


def test_newton_failure_at_the_smallest_step_says_so():
    # y' = -1 from y = 1 while func is NaN for y < 0: past t = 1 no stage can be evaluated,
    # so Newton fails at every step size down to the smallest
    def func(t, y):
        return np.where(y >= 0.0, -1.0, np.nan)

    with pytest.raises(StepSizeUnderflowError, match="Newton's iteration did not converge") as info:
        odeflow.solve(func, [1.0], [0.0, 2.0], method="radau")
    assert 0.99 < info.value.t <= 1.0
    assert info.value.solution.stats["n_newton_failures"] > 10


class _StiffLinear(nn.Module):
    """dy/dt = A y with a stiff A (eigenvalues -1 and -1000): y(T) = expm(A T) y0."""

    def __init__(self, A):
        self.A = nn.Parameter(A)

    def forward(self, t, y):
        return y @ self.A.T


_A_STIFF = np.array([[-1.0, 0.5], [0.0, -1000.0]])


@pytest.mark.parametrize("mode", ["backsolve", "checkpoint"])
def test_adjoint_through_radau_matches_the_closed_form_and_finite_differences(mode):
    T, w, y0v = 2.0, np.array([0.3, -1.1]), np.array([1.0, 2.0])
    func = _StiffLinear(_A_STIFF.copy())
    kw = dict(rtol=1e-9, atol=1e-11, method="radau", adjoint_method="radau", adjoint_mode=mode)
    y0 = Tensor(y0v, requires_grad=True)
    ys = odeflow.odeint_adjoint(func, y0, [0.0, T], **kw)
    (ys[-1] * w).sum().backward()
    np.testing.assert_allclose(ys.data[-1], expm(_A_STIFF * T) @ y0v, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(y0.grad.data, expm(_A_STIFF * T).T @ w, rtol=1e-6, atol=1e-10)
    check_grads(lambda y: odeflow.odeint_adjoint(func, y, [0.0, 0.5, T], **kw), y0v, order=1, rtol=1e-5,
                n_directions=1)
