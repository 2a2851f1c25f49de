"""Issue 11, item 2: gradients of gradients through ``odeint_adjoint``, both modes.

Before issue 11 the adjoint's gradients were constants even with
``create_graph=True``: Hessian-vector products came out zero, a gradient
penalty lost its second-order term and ``check_grads(order=2)`` failed.
References: backprop through the solver (``odeflow.odeint``, which records
every step), central differences of the first-order gradient, and
``check_grads`` (central differences of the VJP itself).
"""
import numpy as np
import pytest

import odeflow
from odeflow import Tensor, nn
from odeflow.autodiff import ops
from odeflow.autodiff.backprop import gradients
from odeflow.errors import GradientError
from odeflow.testing import check_grads

from adjoint_cases import rel, solve

MODES = ["backsolve", "checkpoint"]
T = np.array([0.0, 0.6, 1.5])
KW = dict(rtol=1e-10, atol=1e-10)


def _problem():
    A = nn.Parameter(np.array([[-0.5, 0.8], [-0.7, -0.3]]))

    def func(t, y):
        return ops.tanh(y @ A) * (1.0 + 0.1 * t)
    return func, A


def _hvp(path, norm="rms"):
    """H v for L = sum(y(t)^3), v = (v_y0, v_A), by two walks, the first recorded."""
    func, A = _problem()
    y0 = Tensor(np.array([[0.3, -0.8], [1.0, 0.4]]), requires_grad=True)
    ys = solve(path, func, y0, T, norm=norm, **KW)
    g_y0, g_A = gradients(ops.sum(ys ** 3), [y0, A], create_graph=True)
    v_y0, v_A = np.array([[0.2, 1.0], [-0.5, 0.3]]), np.array([[0.1, 0.2], [0.3, -0.4]])
    h_y0, h_A = gradients(ops.sum(g_y0 * v_y0) + ops.sum(g_A * v_A), [y0, A])
    return g_y0.data, g_A.data, h_y0.data, h_A.data


@pytest.mark.parametrize("norm", ["rms", "seminorm"])
@pytest.mark.parametrize("mode", MODES)
def test_hessian_vector_products_match_backprop(mode, norm):
    ref = _hvp("backprop")
    got = _hvp(mode, norm)
    for a, b in zip(got, ref):
        assert rel(a, b) < 1e-6


@pytest.mark.parametrize("mode", MODES)
def test_hessian_vector_product_matches_differences_of_the_gradient(mode):
    # central differences of the first-order adjoint gradient along v (eps 1e-4, error ~1e-8)
    func, A = _problem()
    y0v = np.array([[0.3, -0.8], [1.0, 0.4]])
    v = np.array([[0.2, 1.0], [-0.5, 0.3]])

    def grad_y0(x):
        y0 = Tensor(x, requires_grad=True)
        ops.sum(odeflow.odeint_adjoint(func, y0, T, adjoint_mode=mode, **KW) ** 3).backward()
        return y0.grad.data
    fd = (grad_y0(y0v + 1e-4 * v) - grad_y0(y0v - 1e-4 * v)) / 2e-4
    y0 = Tensor(y0v, requires_grad=True)
    (g,) = gradients(ops.sum(odeflow.odeint_adjoint(func, y0, T, adjoint_mode=mode, **KW) ** 3),
                     [y0], create_graph=True)
    (h,) = gradients(ops.sum(g * v), [y0])
    assert rel(h.data, fd) < 1e-6


@pytest.mark.parametrize("mode", MODES)
def test_check_grads_order_two_passes_through_the_adjoint(mode):
    def f(y0, W):
        return odeflow.odeint_adjoint(lambda s, y: ops.tanh(y @ W), y0, [0.0, 0.5, 1.0],
                                      adjoint_mode=mode, **KW)
    rng = np.random.default_rng(4)
    result = check_grads(f, rng.normal(size=(2, 2)), 0.7 * rng.normal(size=(2, 2)), order=2)
    assert result.ok and any(c.order == 2 for c in result.checks)


@pytest.mark.parametrize("mode", MODES)
def test_gradient_penalty_keeps_its_second_order_term(mode):
    # L = sum(y(T)) + ||dL0/dy0||^2 with L0 = sum(y(T)^2): dL/dA needs d/dA of a gradient
    grads = {}
    for path in ("backprop", mode):
        func, A = _problem()
        y0 = Tensor(np.array([[0.3, -0.8]]), requires_grad=True)
        ys = solve(path, func, y0, T, **KW)
        (g,) = gradients(ops.sum(ys[-1] ** 2), [y0], create_graph=True)
        (ops.sum(ys[-1]) + ops.sum(g * g)).backward()
        grads[path] = A.grad.data.copy()
    assert rel(grads[mode], grads["backprop"]) < 1e-6
    assert np.abs(grads[mode]).max() > 1e-3


def test_differentiating_a_gradient_taken_without_create_graph_says_so():
    func, A = _problem()
    y0 = Tensor(np.array([0.3, -0.8]), requires_grad=True)
    (g,) = gradients(ops.sum(odeflow.odeint_adjoint(func, y0, T)), [y0])
    with pytest.raises(GradientError, match=r"gradient returned without create_graph=True"):
        gradients(ops.sum(g * g), [y0])


def test_third_derivatives_match_backprop():
    # three nested walks: d/dy0 |d/dy0 |dL/dy0|^2|^2, L = sum(y(1)^3)
    out = {}
    for path in ("backprop", "backsolve", "checkpoint"):
        func, A = _problem()
        y0 = Tensor(np.array([0.3, -0.8]), requires_grad=True)
        ys = solve(path, func, y0, [0.0, 1.0], **KW)
        (g,) = gradients(ops.sum(ys[-1] ** 3), [y0], create_graph=True)
        (h,) = gradients(ops.sum(g * g), [y0], create_graph=True)
        (k,) = gradients(ops.sum(h * h), [y0])
        out[path] = k.data
    for mode in MODES:
        assert rel(out[mode], out["backprop"]) < 1e-6


@pytest.mark.parametrize("mode", MODES)
def test_second_order_through_a_computed_parameter_listed_in_adjoint_params(mode):
    # W = 1.5 theta is not a leaf: the recorded backward pass must use W itself, not a copy
    out = {}
    for path in ("backprop", mode):
        theta = Tensor(np.array([[-0.5, 0.8], [-0.7, -0.3]]), requires_grad=True)
        W = theta * 1.5
        func = lambda s, y: ops.tanh(y @ W)  # noqa: E731
        y0 = Tensor(np.array([0.3, -0.8]), requires_grad=True)
        extra = {} if path == "backprop" else {"adjoint_params": [W]}
        ys = solve(path, func, y0, [0.0, 1.0], **KW, **extra)
        g_W, g_y0 = gradients(ops.sum(ys[-1] ** 3), [W, y0], create_graph=True)
        (h,) = gradients(ops.sum(g_W * g_W) + ops.sum(g_y0 * g_y0), [theta])
        out[path] = (g_W.data, h.data)
    for a, b in zip(out[mode], out["backprop"]):
        assert rel(a, b) < 1e-6


@pytest.mark.parametrize("mode", MODES + ["backprop"])
def test_second_derivatives_in_the_output_times_match_the_closed_form(mode):
    # y' = A y, L = w . y(T) = w . expm(A (T - t0)) y0:
    # d2L/dT2 = w A^2 E y0 = d2L/dt0^2 = -d2L/dt0 dT,  d2L/dT dy0 = (A E)^T w
    from scipy.linalg import expm
    A = np.array([[-0.4, 0.9], [-0.6, -0.2]])
    w, y0v, t0, T = np.array([0.7, -1.1]), np.array([0.5, 1.5]), 0.2, 1.4
    A_T = Tensor(A.T)  # a constant
    func = lambda s, y: y @ A_T  # noqa: E731
    y0 = Tensor(y0v, requires_grad=True)
    t = Tensor([t0, T], requires_grad=True)
    ys = solve(mode, func, y0, t, **KW)
    (g_t,) = gradients(ops.sum(ys[-1] * w), [t], create_graph=True)
    h_T = gradients(g_t[1], [t, y0])
    E = expm(A * (T - t0))
    second = w @ A @ A @ E @ y0v
    np.testing.assert_allclose(h_T[0].data, [-second, second], rtol=1e-7)
    np.testing.assert_allclose(h_T[1].data, (A @ E).T @ w, rtol=1e-7)


def test_create_graph_with_an_implicit_method_is_refused_by_name():
    A = nn.Parameter(np.array([[-50.0, 1.0], [0.5, -0.3]]))
    y0 = Tensor(np.array([1.0, 0.5]), requires_grad=True)
    ys = odeflow.odeint_adjoint(lambda s, y: y @ A.T, y0, [0.0, 1.0], method="radau")
    with pytest.raises(GradientError, match=r"higher-order gradients .* method 'radau'"):
        gradients(ops.sum(ys), [y0], create_graph=True)
