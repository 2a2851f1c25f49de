"""odeint_adjoint with repeated output times, and the dtype rule shared by every gradient mode.

Repeated times (issue 11, "zero-length and repeated times"): the repeated row
equals the previous one, the zero-length interval costs no evaluation, and the
gradients w.r.t. every entry of ``t`` are those of backprop and of central
differences. dtype (item 7): the solution has the state's dtype in every mode.
"""
import numpy as np
import pytest

import odeflow
from odeflow import Tensor, nn
from odeflow.autodiff import ops

from adjoint_cases import central, rel, solve

W0 = np.array([[0.3, -1.0], [0.2, 0.5]])


def _func():
    w = nn.Parameter(W0.copy())

    def func(t, y):
        return ops.tanh(y @ w) * (1.0 + 0.2 * t)
    return func, w


@pytest.mark.parametrize("tt", [[0.4, 0.4], [0.0, 1.0, 1.0, 2.0], [0.0, 0.0, 1.0], [2.0, 1.0, 1.0, 0.0]])
@pytest.mark.parametrize("mode", ["backsolve", "checkpoint"])
def test_repeated_times_give_the_backprop_and_fd_gradients(mode, tt):
    func, w = _func()
    y0v = np.array([1.0, 2.0])
    tv = np.array(tt)
    weights = np.arange(tv.size * 2).reshape(tv.size, 2) * 0.1 + 0.3
    grads = {}
    for path in ("backprop", mode):
        w.grad = None
        y0, t = Tensor(y0v, requires_grad=True), Tensor(tv, requires_grad=True)
        ys = solve(path, func, y0, t, rtol=1e-10, atol=1e-10)
        for i in range(1, tv.size):
            if tv[i] == tv[i - 1]:
                np.testing.assert_array_equal(ys.data[i], ys.data[i - 1])
        ops.sum(ys * ys * weights).backward()
        grads[path] = (y0.grad.data, t.grad.data, w.grad.data)

    def row(y0c, t0, ti):  # y(t_i) by its own solve from t_0: smooth in every entry of t
        if ti == t0:
            return y0c
        return odeflow.odeint(lambda s, y: func(s, Tensor(y)).data, y0c, [t0, ti], rtol=1e-12, atol=1e-12)[-1]

    def loss(y0c, tc):
        return float(sum(np.sum(row(y0c, tc[0], ti) ** 2 * wi) for ti, wi in zip(tc, weights)))
    y0c, tc = y0v.copy(), tv.copy()
    fd_y0, fd_t = central(lambda: loss(y0c, tc), [y0c, tc], eps=1e-5)
    (fd_w,) = central(lambda: loss(y0c, tc), [w.data], eps=1e-5)
    for got, bp, fd in zip(grads[mode], grads["backprop"], (fd_y0, fd_t, fd_w)):
        assert rel(got, bp) < 1e-6
        assert rel(got, fd) < 1e-5


@pytest.mark.parametrize("mode", ["backsolve", "checkpoint"])
def test_a_zero_length_interval_costs_no_evaluation(mode):
    func, w = _func()
    counts = {}
    for tt, weights in (([0.0, 1.0, 2.0], [1.0, 1.0, 1.0]), ([0.0, 1.0, 1.0, 2.0], [1.0, 1.0, 0.0, 1.0])):
        stats = {}
        ys = odeflow.odeint_adjoint(func, Tensor(np.array([1.0, 2.0]), requires_grad=True), tt,
                                    adjoint_mode=mode, stats=stats)
        ops.sum(ys * np.array(weights)[:, None]).backward()
        counts[len(tt)] = (stats["forward"]["nfe"], stats["backward"]["nfe"])
    assert counts[3] == counts[4]


@pytest.mark.parametrize("create_graph", [False, True])
def test_every_mode_returns_the_state_dtype_with_float64_parameters(create_graph):
    # the rule: the solution has y0's dtype; each gradient the dtype of its Tensor
    func, w = _func()
    dtypes = {}
    for path in ("backprop", "backsolve", "checkpoint"):
        y0 = Tensor(np.array([[1.0, 2.0]], dtype=np.float32), requires_grad=True)
        ys = solve(path, func, y0, np.array([0.0, 0.5, 1.0]), rtol=1e-4, atol=1e-6)
        w.grad = None
        ops.sum(ys ** 2).backward(create_graph=create_graph)
        dtypes[path] = (ys.dtype, y0.grad.dtype, w.grad.dtype)
    assert set(dtypes.values()) == {(np.dtype(np.float32), np.dtype(np.float32), np.dtype(np.float64))}, dtypes


@pytest.mark.parametrize("tt", [[0.0, 1.0, 1.0, 2.0], [0.4, 0.4], [0.0, 0.0, 1.0]])
@pytest.mark.parametrize("mode", ["backsolve", "checkpoint"])
def test_repeated_times_at_second_order_match_backprop(mode, tt):
    from odeflow.autodiff.backprop import gradients
    out = {}
    for path in ("backprop", mode):
        func, w = _func()
        y0, t = Tensor(np.array([1.0, 2.0]), requires_grad=True), Tensor(np.array(tt), requires_grad=True)
        ys = solve(path, func, y0, t, rtol=1e-10, atol=1e-10)
        g = gradients(ops.sum(ys ** 3), [y0, t, w], create_graph=True)
        h = gradients(sum(ops.sum(x * x) for x in g), [y0, t, w])
        out[path] = np.concatenate([x.data.ravel() for x in h])
    assert rel(out[mode], out["backprop"]) < 1e-6
