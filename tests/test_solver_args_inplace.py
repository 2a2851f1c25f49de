"""``args=`` (func(t, y, *args)) and ``inplace=True`` (func(t, y, dydt, *args)) on solve and odeint.

Every form must give bit-identical results to the out-of-place closure form, for every method,
with Python and with ``@njit`` functions (issue 14); a jitted func compiles once for all values
of ``args``; bad ``args``/``inplace`` and a jitted func whose explicit signature cannot take
``y0`` are InputTypeErrors raised before any work.
"""
from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from odeflow import InputError, InputTypeError, Tensor, odeint, solve
from odeflow.testing import check_grads

METHODS = ("dopri5", "bosh3", "tsit5", "dop853", "euler", "midpoint", "rk4", "radau")
T = np.linspace(0.0, 2.0, 6)
Y0 = np.array([1.0, 0.5])


def osc(t, y, k, c):            # damped oscillator with a forcing in t
    return np.array([y[1], -k * y[0] - c * y[1] + np.sin(t)])


def osc_inplace(t, y, dydt, k, c):
    dydt[0] = y[1]
    dydt[1] = -k * y[0] - c * y[1] + np.sin(t)


osc_jit = numba.njit(osc)
osc_inplace_jit = numba.njit(osc_inplace)


def closure(k, c):
    def f(t, y):
        return np.array([y[1], -k * y[0] - c * y[1] + np.sin(t)])
    return f


def options(method):
    return {"step_size": 0.05} if method in ("euler", "midpoint", "rk4") else None


@pytest.mark.parametrize("method", METHODS)
def test_args_and_inplace_bit_identical_to_the_closure_python(method):
    ref = solve(closure(2.0, 0.3), Y0, T, method=method, options=options(method), rtol=1e-8)
    sol_args = solve(osc, Y0, T, method=method, options=options(method), rtol=1e-8, args=(2.0, 0.3))
    sol_ip = solve(osc_inplace, Y0, T, method=method, options=options(method), rtol=1e-8,
                   args=(2.0, 0.3), inplace=True)
    for sol in (sol_args, sol_ip):
        assert np.array_equal(sol.y, ref.y)
        assert sol.stats["nfe"] == ref.stats["nfe"]
        assert np.array_equal(sol.interpolate(np.array([0.33, 1.7])), ref.interpolate(np.array([0.33, 1.7])))
    assert np.array_equal(odeint(osc_inplace, Y0, T, method=method, options=options(method), rtol=1e-8,
                                 args=(2.0, 0.3), inplace=True), ref.y)


# radau's compiled path closes over func (one compile per func, ~30 s): its args/inplace wrapper
# is covered with Python funcs above; here the explicit methods, whose loop takes func as an argument
@pytest.mark.parametrize("method", METHODS[:-1])
def test_args_and_inplace_bit_identical_to_the_closure_jitted(method):
    ref = solve(numba.njit(closure(2.0, 0.3)), Y0, T, method=method, options=options(method), rtol=1e-8)
    sol_args = solve(osc_jit, Y0, T, method=method, options=options(method), rtol=1e-8, args=(2.0, 0.3))
    sol_ip = solve(osc_inplace_jit, Y0, T, method=method, options=options(method), rtol=1e-8,
                   args=(2.0, 0.3), inplace=True)
    for sol in (sol_args, sol_ip):
        assert np.array_equal(sol.y, ref.y)
        assert sol.stats["nfe"] == ref.stats["nfe"]


def test_against_the_closed_form_and_scipy():
    # y'' = -k y (c = 0, no forcing): y = cos(sqrt(k) t) for y(0) = 1, y'(0) = 0
    @numba.njit
    def f(t, y, dydt, k):
        dydt[0] = y[1]
        dydt[1] = -k * y[0]
    for k in (0.5, 4.0):
        y = odeint(f, np.array([1.0, 0.0]), T, args=(k,), inplace=True, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(y[:, 0], np.cos(np.sqrt(k) * T), atol=1e-8)


def test_state_of_several_dimensions_in_place():
    A = np.array([[0.0, 1.0], [-1.0, 0.0]])

    @numba.njit
    def f(t, y, dydt, a):   # y of shape (3, 2): three independent rotations
        for i in range(y.shape[0]):
            dydt[i, 0] = a * y[i, 1]
            dydt[i, 1] = -a * y[i, 0]
    y0 = np.arange(6.0).reshape(3, 2)
    ref = odeint(lambda t, y: 2.0 * y @ A.T, y0, T, rtol=1e-10, atol=1e-12)
    for fn in (f, f.py_func):
        y = odeint(fn, y0, T, args=(2.0,), inplace=True, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(y, ref, atol=1e-8)


def test_jitted_func_compiles_once_for_all_parameter_values():
    @numba.njit
    def decay(t, y, k):
        return -k * y
    first = solve(decay, np.array([1.0]), T, args=(1.0,))
    assert first.stats["compile_seconds"] > 0
    n = len(decay.overloads)
    for k in (0.5, 2.0, 3.0):
        sol = solve(decay, np.array([1.0]), T, args=(k,), rtol=1e-10, atol=1e-12)
        assert "compile_seconds" not in sol.stats
        np.testing.assert_allclose(sol.y[:, 0], np.exp(-k * T), rtol=1e-8)
    assert len(decay.overloads) == n


def test_array_args_and_events_get_the_args():
    @numba.njit
    def f(t, y, v, level):
        return v.copy()

    @numba.njit
    def crossing(t, y, v, level):
        return y[0] - level

    def crossing_py(t, y, v, level):
        return y[0] - level
    v = np.array([2.0, 1.0])
    for g in (crossing, crossing_py):
        sol = solve(f, np.zeros(2), np.linspace(0, 3, 4), events=g, args=(v, 1.5))
        np.testing.assert_allclose(sol.t_events[0], [0.75], rtol=1e-12)


@settings(max_examples=10, deadline=None)
@given(k=st.floats(0.1, 5.0), y0=st.floats(-3.0, 3.0))
def test_args_form_equals_the_closure_form_for_any_parameter(k, y0):
    def f(t, y, k):
        return -k * y + t
    ref = odeint(lambda t, y: -k * y + t, np.array([y0]), T)
    assert np.array_equal(odeint(f, np.array([y0]), T, args=(k,)), ref)


def test_gradient_through_odeint_reaches_tensors_in_args():
    # y' = -k y: y(T) = y0 exp(-k T), dy(T)/dk = -T y0 exp(-k T)
    def f(t, y, k):
        return -k * y
    k = Tensor(np.array(0.7), requires_grad=True)
    y = odeint(f, np.array([2.0]), T, args=(k,), rtol=1e-10, atol=1e-12)
    y[-1].sum().backward()
    np.testing.assert_allclose(k.grad, -T[-1] * 2.0 * np.exp(-0.7 * T[-1]), rtol=1e-6)
    check_grads(lambda kk, y0: odeint(f, y0, T, args=(kk,), rtol=1e-10, atol=1e-12),
                np.array(0.7), np.array([2.0]), order=2)


def test_bad_args_and_inplace_are_named_before_any_work():
    calls = []

    def f(t, y, k):
        calls.append(t)
        return -k * y
    with pytest.raises(InputTypeError, match="`args` must be a tuple"):
        solve(f, np.ones(1), T, args=2.0)
    with pytest.raises(InputTypeError, match="`args` must be a tuple"):
        odeint(f, np.ones(1), T, args=[2.0])
    with pytest.raises(InputTypeError, match="`inplace` must be True or False"):
        solve(f, np.ones(1), T, args=(2.0,), inplace="yes")
    with pytest.raises(InputError, match="inplace=True"):
        odeint(f, Tensor(np.ones(1)), T, args=(2.0,), inplace=True)
    assert calls == []


def test_explicit_numba_signature_not_matching_y0_is_an_input_type_error():
    @numba.njit("float64[::1](float64, float64[::1])")
    def f(t, y):
        return -y
    with pytest.raises(InputTypeError, match=r"`func` 'f' has the explicit Numba signature.*float32"):
        solve(f, np.ones(2, np.float32), T)
    with pytest.raises(InputTypeError, match=r"ndim 2"):
        solve(f, np.ones((2, 2)), T)
    np.testing.assert_allclose(solve(f, np.ones(2), T).y[-1], np.exp(-2.0), rtol=1e-6)

