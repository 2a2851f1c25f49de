"""Issue 11, item 1: parameters that ``func`` reads only after t[0] get their gradients.

Every form below reads some Tensor for the first time after ``t[0]``; before
issue 11 the adjoint found parameters by one probe at ``t[0]`` and left those
with ``.grad = None``. Expected values: backprop through the solver and
central differences of tight forward solves (independent of the adjoint).
"""
import numpy as np
import pytest

import odeflow
from odeflow import Tensor, nn
from odeflow.autodiff import ops
from odeflow.errors import GradientError

from adjoint_cases import PATHS, central, rel, solve, values

T = np.array([0.0, 0.8, 2.0])


def _branch_on_t():  # switches at t = 1
    early = nn.Parameter(np.array([[-0.5, 0.4], [-0.3, -0.2]]))
    late = nn.Parameter(np.array([[0.2, -0.6], [0.5, -0.4]]))

    def func(t, y):
        return ops.tanh(y @ (early if t < 1.0 else late))
    return func, [early, late], (1.0,)


def _per_interval_weights():
    ws = [nn.Parameter(np.array([[-0.4, 0.3], [0.2, -0.5]]) * (k + 1)) for k in range(3)]

    def func(t, y):
        return ops.tanh(y @ ws[min(int(t / 0.7), 2)])
    return func, ws, (0.7, 1.4)


def _piecewise_control():
    controls = [nn.Parameter(np.array([0.3 * (k - 1), 0.2])) for k in range(4)]

    def func(t, y):
        return -0.5 * y + controls[min(int(t / 0.5), 3)]
    return func, controls, (0.5, 1.0, 1.5)


FORMS = {"branch on t": _branch_on_t, "per-interval weights": _per_interval_weights,
         "piecewise control": _piecewise_control}


@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("mode, norm", PATHS)
def test_parameters_used_only_after_t0_get_the_backprop_and_fd_gradient(form, mode, norm):
    func, params, breaks = FORMS[form]()
    y0v = np.array([[0.5, -1.0], [0.2, 0.7]])
    weights = np.random.default_rng(0).normal(size=(T.size,) + y0v.shape)
    grads = {}
    for path in ("backprop", mode):
        for p in params:
            p.grad = None
        ys = solve(path, func, Tensor(y0v), T, norm=norm, rtol=1e-10, atol=1e-10)
        ops.sum(ys * weights).backward()
        assert all(p.grad is not None for p in params), path
        grads[path] = [p.grad.data.copy() for p in params]
    # central differences of a reference solved piece by piece between the switches
    fd = central(lambda: float(np.sum(weights * values(func, y0v, T, breaks=breaks))),
                 [p.data for p in params])
    for g_adj, g_bp, g_fd in zip(grads[mode], grads["backprop"], fd):
        assert rel(g_adj, g_fd) < 1e-6
        assert rel(g_adj, g_bp) < 1e-6


def test_piecewise_control_matches_the_closed_form_with_seminorm():
    # y' = -y/2 + c_k on [k/2, (k+1)/2): dL/dc_k = sum_i w_i * 2 (e^{-(t_i - min(t_i, b))/2}
    #                                                    - e^{-(t_i - min(t_i, a))/2}), [a, b) piece k
    func, controls, _ = _piecewise_control()
    y0v = np.array([[0.5, -1.0], [0.2, 0.7]])
    weights = np.random.default_rng(0).normal(size=(T.size,) + y0v.shape)
    for mode in ("backsolve", "checkpoint"):
        for p in controls:
            p.grad = None
        ys = solve(mode, func, Tensor(y0v), T, norm="seminorm", rtol=1e-10, atol=1e-10)
        ops.sum(ys * weights).backward()
        for k, p in enumerate(controls):
            lo, hi = 0.5 * k, (0.5 * (k + 1) if k < 3 else np.inf)
            exact = sum(weights[i].sum(0) * 2 * (np.exp(-(ti - min(ti, hi)) / 2) - np.exp(-(ti - min(ti, lo)) / 2))
                        for i, ti in enumerate(T))
            assert rel(p.grad.data, exact) < 1e-6, (mode, k)


def test_adjoint_params_still_restricts_the_list():
    func, ws, _ = _per_interval_weights()
    ys = odeflow.odeint_adjoint(func, Tensor(np.ones(2)), T, adjoint_params=[ws[2]])
    ops.sum(ys).backward()
    assert ws[0].grad is None and ws[1].grad is None  # constants, as asked
    assert ws[2].grad is not None and np.any(ws[2].grad.data != 0)


@pytest.mark.parametrize("create_graph", [False, True])
@pytest.mark.parametrize("mode", ["backsolve", "checkpoint"])
def test_a_tensor_read_only_by_the_backward_solve_is_named_not_ignored(mode, create_graph):
    W = nn.Parameter(np.array([[-0.5, 0.2], [0.1, -0.3]]))
    extra = nn.Parameter(np.array([0.1, 0.2]))
    backward = {"on": False}

    def func(t, y):  # reads `extra` only once the backward pass has begun
        out = y @ W
        return out + extra if backward["on"] else out
    ys = odeflow.odeint_adjoint(func, Tensor(np.ones(2)), [0.0, 1.0], adjoint_mode=mode)
    backward["on"] = True
    with pytest.raises(GradientError, match=r"Tensor of shape \(2,\) requiring grad at t = [01]\.0.*never "
                                            r"during the forward solve"):
        ops.sum(ys).backward(create_graph=create_graph)


@pytest.mark.parametrize("mode, norm", PATHS)
def test_a_captured_tensor_computed_before_the_solve_passes_its_gradient_on(mode, norm):
    # func reads ctx = tanh(x We), computed outside (an encoder's output): dL/dWe goes through
    # ctx at every backward evaluation; before, the first evaluation's walk freed ctx's graph
    # and dL/dWe came out ~1e-7 instead of ~1
    grads = {}
    for path in ("backprop", mode):
        We = nn.Parameter(np.array([[0.5, -0.2], [0.1, 0.3]]))
        A = nn.Parameter(np.array([[-0.5, 0.8], [-0.7, -0.3]]))
        ctx = ops.tanh(Tensor(np.array([1.0, -1.0])) @ We)
        ys = solve(path, lambda s, y: ops.tanh(y @ A) + ctx, Tensor(np.array([0.3, -0.8])), T, norm=norm,
                   rtol=1e-10, atol=1e-10)
        ops.sum(ys ** 2).backward()
        grads[path] = (We.grad.data, A.grad.data)
    for got, ref in zip(grads[mode], grads["backprop"]):
        assert rel(got, ref) < 1e-6
    assert np.abs(grads[mode][0]).max() > 0.1
