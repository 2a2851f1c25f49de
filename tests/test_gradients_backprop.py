"""Backprop through the solver: second derivatives in ``t``, repeated times, single times,
dtype, and functions whose result is cut from the graph (issue 11, items 3, 4, 5, 7).

Expected values are independent of the solver: each ODE here has a closed-form
solution, written with engine ops and differentiated by the engine (whose ops
are checked against finite differences in test_autodiff_ops.py).
"""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import odeflow
from odeflow import Tensor
from odeflow.adjoint.discretize import odeint_backprop
from odeflow.autodiff import grad, no_grad, ops, vjp
from odeflow.errors import GradientError, InputError
from odeflow.testing import check_grads
from problems import ARENSTORF_Y0, arenstorf_jit

TIGHT = dict(rtol=1e-11, atol=1e-11)


# -- three ODEs with closed forms: (func of (t, y, b), solution of (t, t0, y0, b)) ----------------
def linear(t, y, b):            # dy/dt = b y
    return b * y


def linear_exact(t, t0, y0, b):
    return y0 * ops.exp(b * (t - t0))


def forced(t, y, b):            # dy/dt = -y + b t, with t used through engine ops
    return -y + b * t


def forced_exact(t, t0, y0, b):  # y = b (t - 1) + (y0 - b (t0 - 1)) e^{-(t - t0)}
    return b * (t - 1.0) + (y0 - b * (t0 - 1.0)) * ops.exp(-(t - t0))


def sine(t, y, b):              # dy/dt = -y + b sin(t), t read as a plain number
    return -y + b * math.sin(float(t))


def sine_exact(t, t0, y0, b):   # y = C e^{-t} + b (sin t - cos t) / 2
    p = lambda s: b * (ops.sin(s) - ops.cos(s)) * 0.5
    return p(t) + (y0 - p(t0)) * ops.exp(-(t - t0))


CASES = [(linear, linear_exact, -0.7), (forced, forced_exact, 0.8), (sine, sine_exact, 1.3)]


def _loss_solver(func, method="dopri5", options=None):
    def loss(tt, y0, b):
        ys = odeflow.odeint(lambda t, y: func(t, y, b), y0, tt, method=method, options=options, **TIGHT)
        return ops.sum(ys ** 2 * ops.reshape(1.0 + 0.1 * np.arange(ys.shape[0]), (-1, 1)))
    return loss


def _loss_exact(exact):
    def loss(tt, y0, b):
        ys = ops.stack([exact(tt[i], tt[0], y0, b) for i in range(tt.shape[0])])
        return ops.sum(ys ** 2 * ops.reshape(1.0 + 0.1 * np.arange(ys.shape[0]), (-1, 1)))
    return loss


def _hvp(loss, xs, v):
    """``H v`` for the Hessian of ``loss(*xs)`` over the flattened arguments: one
    ``grad`` of ``<grad loss, v>`` (every mixed second derivative, contracted with ``v``)."""
    argnums = tuple(range(len(xs)))
    sizes = np.cumsum([0] + [np.size(x) for x in xs])

    def g_dot_v(*args):
        gs = grad(loss, argnums)(*args)
        return sum(ops.sum(ops.reshape(g, (-1,)) * v[sizes[i]:sizes[i + 1]]) for i, g in enumerate(gs))

    return np.concatenate([np.ravel(p) for p in grad(g_dot_v, argnums)(*xs)])


def _hvps(loss_a, loss_b, xs, n=2, seed=0):
    """``H v`` of two losses for ``n`` random directions: the pairs to compare."""
    rng = np.random.default_rng(seed)
    size = sum(np.size(x) for x in xs)
    vs = [rng.standard_normal(size) for _ in range(n)]
    return np.array([_hvp(loss_a, xs, v) for v in vs]), np.array([_hvp(loss_b, xs, v) for v in vs])


@pytest.mark.parametrize("func, exact, b", CASES, ids=["linear", "forced-ops-t", "sine-float-t"])
@pytest.mark.parametrize("tt", [[0.0, 0.5, 1.3], [1.2, 0.4, -0.3], [0.0, 1.0, 1.0, 2.0], [0.3, 0.3]],
                         ids=["up", "down", "repeated", "zero-length"])
def test_second_derivatives_in_t_y0_and_parameters_equal_the_closed_form(func, exact, b, tt):
    """Item 3: d2L/dt_i dt_j, d2L/dt_i dy0, d2L/dt_i db through backprop, as Hessian-vector
    products (old: the f(t_i) terms were constants, so those second derivatives were wrong)."""
    xs = (np.array(tt), np.array([0.9, -0.4]), np.array(b))
    h_solver, h_exact = _hvps(_loss_solver(func), _loss_exact(exact), xs)
    np.testing.assert_allclose(h_solver, h_exact, rtol=0, atol=1e-8 * np.max(np.abs(h_exact)))


@pytest.mark.parametrize("method", ["bosh3", "rk4"])
def test_second_derivatives_in_t_for_other_methods(method):
    """The time terms are the exact solution's (module docstring of adjoint.times): with a
    fine grid, rk4 and bosh3 agree with the closed form to their accuracy."""
    options = {"step_size": 1e-2} if method == "rk4" else None
    xs = (np.array([0.0, 0.6, 1.1]), np.array([0.5, 1.5]), np.array(0.8))
    h_solver, h_exact = _hvps(_loss_solver(forced, method, options), _loss_exact(forced_exact), xs, n=1)
    np.testing.assert_allclose(h_solver, h_exact, rtol=0, atol=1e-7 * np.max(np.abs(h_exact)))


def test_check_grads_second_order_in_t_through_backprop():
    """The same, by odeflow.testing.check_grads against central differences (the issue's
    failing check: reverse 0 vs a non-zero finite difference at order 2)."""
    y0 = np.array([0.9, -0.4])

    def ends(tt):
        return odeflow.odeint(lambda t, y: forced(t, y, 0.8), Tensor(y0), tt, **TIGHT)[1:]

    result = check_grads(ends, np.array([0.0, 0.7, 1.4]), order=2, eps=1e-4, rtol=1e-5, atol=1e-9)
    assert result.ok and len(result.checks) >= 4


def test_float_read_time_uses_a_central_difference_only_for_f_t():
    """A func that reads t as a number costs the documented extra evaluations; an ops-t func not."""
    b = 1.3
    for func, nfe_per_time in [(forced, 2), (sine, 5)]:
        stats_t, stats_plain = {}, {}
        tt = Tensor(np.array([0.0, 0.5, 1.0]), requires_grad=True)
        odeint_backprop(lambda t, y: func(t, y, b), Tensor(np.ones(2)), tt, stats=stats_t, **TIGHT)
        odeint_backprop(lambda t, y: func(t, y, b), Tensor(np.ones(2)), tt.data, stats=stats_plain, **TIGHT)
        assert stats_t["forward"]["nfe"] - stats_plain["forward"]["nfe"] == 3 * nfe_per_time


# -- repeated times ------------------------------------------------------------------------------
def _decay(t, y):
    return -0.5 * y + np.sin(t)


@pytest.mark.parametrize("method, options", [("dopri5", None), ("bosh3", None), ("rk4", None),
                                             ("euler", {"step_size": 0.1})])
@pytest.mark.parametrize("tt, distinct, index", [
    ([0.0, 1.0, 1.0, 2.0], [0.0, 1.0, 2.0], [0, 1, 1, 2]),
    ([0.0, 0.0, 1.5], [0.0, 1.5], [0, 0, 1]),
    ([2.0, 1.0, 1.0, 1.0, 0.0, 0.0], [2.0, 1.0, 0.0], [0, 1, 1, 1, 2, 2]),
])
def test_repeated_times_repeat_the_row_at_no_cost(method, options, tt, distinct, index):
    y0 = np.array([1.0, -2.0])
    sol = odeflow.solve(_decay, y0, tt, method=method, options=options)
    ref = odeflow.solve(_decay, y0, distinct, method=method, options=options)
    np.testing.assert_array_equal(sol.t, tt)
    np.testing.assert_array_equal(sol.y, ref.y[index])  # bitwise: the same solve
    assert sol.stats == ref.stats


def test_all_times_equal_costs_no_evaluation():
    calls = []
    sol = odeflow.solve(lambda t, y: calls.append(t) or -y, np.ones(3), [0.5, 0.5, 0.5])
    assert calls == [] and sol.stats["nfe"] == 0
    np.testing.assert_array_equal(sol.y, np.ones((3, 3)))


def test_repeated_times_on_the_compiled_path_and_in_a_partial_solution():
    # arenstorf_jit is compiled by test_solver_accuracy too: one compile per test run
    tt, distinct = [0.0, 1.0, 1.0, 3.0, 3.0], [0.0, 1.0, 3.0]
    sol = odeflow.solve(arenstorf_jit, ARENSTORF_Y0, tt, rtol=1e-6, atol=1e-6)
    ref = odeflow.solve(arenstorf_jit, ARENSTORF_Y0, distinct, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(sol.y, ref.y[[0, 1, 1, 2, 2]])
    y0 = np.array([1.0, 2.0])
    with pytest.raises(odeflow.MaxStepsExceededError) as info:
        odeflow.solve(_decay, y0, [0.0, 0.0, 1e-3, 1e-3, 50.0], options={"max_steps": 4})
    part = info.value.solution
    np.testing.assert_array_equal(part.t, [0.0, 0.0, 1e-3, 1e-3][: part.t.size])
    np.testing.assert_array_equal(part.y[0], part.y[1])


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0, 1.75]), min_size=2, max_size=7),
       st.booleans())
def test_repeated_times_gradients_every_entry_hypothesis(values, backwards):
    """Every entry of a grid with repeats gets its own dL/dt_i (first order) and the
    Hessian block in t, equal to the closed form's."""
    tt = np.sort(values)[::-1] if backwards else np.sort(values)
    xs = (tt.astype(float), np.array([0.7]), np.array(-0.4))
    g_solver = grad(_loss_solver(linear), (0, 1, 2))(*xs)
    g_exact = grad(_loss_exact(linear_exact), (0, 1, 2))(*xs)
    for a, e in zip(g_solver, g_exact):
        np.testing.assert_allclose(a, e, rtol=1e-9, atol=1e-10)


def test_direction_change_after_a_repeat_names_the_index():
    with pytest.raises(InputError, match=r"t\[3\] = 0\.5 does not continue"):
        odeflow.odeint(_decay, np.ones(2), [0.0, 1.0, 1.0, 0.5])
    with pytest.raises(InputError, match=r"t\[3\] = 0\.5 does not continue"):
        odeflow.odeint(lambda t, y: -y, Tensor(np.ones(2), requires_grad=True), [0.0, 1.0, 1.0, 0.5])


# -- a single distinct output time (item 5) ------------------------------------------------------
@pytest.mark.parametrize("tt", [[0.4], [0.4, 0.4]])
def test_single_time_gives_zero_parameter_gradients_not_none(tt):
    w = Tensor(np.array([[0.3, -1.0], [0.2, 0.5]]), requires_grad=True)
    y0 = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    t = Tensor(np.array(tt), requires_grad=True)
    ys = odeflow.odeint(lambda s, y: ops.tanh(y @ w), y0, t)
    np.testing.assert_array_equal(ys.data, np.broadcast_to(y0.data, ys.shape))
    ops.sum(ys * 3.0).backward()
    assert w.grad is not None and y0.grad is not None and t.grad is not None
    np.testing.assert_array_equal(w.grad.data, np.zeros((2, 2)))
    np.testing.assert_array_equal(y0.grad.data, np.full(2, 3.0 * len(tt)))
    if len(tt) == 1:
        np.testing.assert_array_equal(t.grad.data, [0.0])
    else:  # y(t1) = y0 + (t1 - t0) f: dL/dt1 = -dL/dt0 = 3 sum(f(y0))
        slope = 3.0 * np.sum(np.tanh(y0.data @ w.data))
        np.testing.assert_allclose(t.grad.data, [-slope, slope], rtol=1e-12)


def test_single_time_agrees_with_the_adjoint():
    w = Tensor(np.array([[0.3, -1.0], [0.2, 0.5]]), requires_grad=True)
    func = lambda s, y: ops.tanh(y @ w)
    for solve in (odeflow.odeint, odeflow.odeint_adjoint):
        w.grad = None
        ops.sum(solve(func, Tensor(np.array([1.0, 2.0]), requires_grad=True), [0.0]) ** 2).backward()
        np.testing.assert_array_equal(w.grad.data, np.zeros((2, 2)))


# -- dtype (item 7, backprop side) -------------------------------------------------------------
def test_float32_state_with_float64_parameters_stays_float32_in_every_mode():
    w = Tensor(np.array([[0.3, -1.0], [0.2, 0.5]]), requires_grad=True)  # float64
    y0 = Tensor(np.array([[1.0, 2.0], [0.5, -1.0]], dtype=np.float32), requires_grad=True)
    func = lambda s, y: ops.tanh(y @ w)
    t = np.array([0.0, 0.5, 1.0])
    out = {"backprop": odeflow.odeint(func, y0, t, rtol=1e-4, atol=1e-6)}
    for mode in ("backsolve", "checkpoint"):
        out[mode] = odeflow.odeint_adjoint(func, y0, t, rtol=1e-4, atol=1e-6, adjoint_mode=mode)
    for name, ys in out.items():
        assert ys.dtype == np.float32, name
        w.grad = y0.grad = None
        ops.sum(ys ** 2).backward()
        assert w.grad.dtype == np.float64 and y0.grad.dtype == np.float32, name
    np.testing.assert_allclose(out["backprop"].data, out["checkpoint"].data, rtol=1e-4)


# -- results cut from the graph (item 4) ---------------------------------------------------------
@pytest.mark.parametrize("f, why", [
    (lambda x: (x * 2.0).data, "returned a ndarray"),
    (lambda x: np.sum(x.data ** 2), "returned a float64"),
    (lambda x: Tensor((x * x).data), "not connected to its inputs"),
])
def test_vjp_and_grad_refuse_a_result_not_connected_to_the_inputs(f, why):
    x = np.array([1.0, -2.0])
    with pytest.raises(GradientError, match=why):
        vjp(f, x)
    with pytest.raises(GradientError, match=why):
        grad(f)(x)


def test_vjp_refuses_a_result_computed_under_no_grad():
    def f(x):
        with no_grad():
            return ops.sum(x ** 2)
    with pytest.raises(GradientError, match="no_grad"):
        grad(f)(np.array([1.0, 2.0]))
