"""``args=`` on odeint_adjoint, odeint_backprop and odeint_event (issue 14): ``func(t, y, *args)``.

Each form is compared bit for bit with the closure form ``lambda t, y: func(t, y, *args)``
(values and every gradient), and the gradients of Tensors in ``args`` with central finite
differences (odeflow.testing.check_grads), to second order where the mode records its walk.
"""
import numpy as np
import pytest

import odeflow
from odeflow import Tensor, nn
from odeflow.autodiff import ops
from odeflow.autodiff.backprop import gradients
from odeflow.errors import GradientError, InputError, InputTypeError
from odeflow.testing import check_grads

KW = dict(rtol=1e-8, atol=1e-10)
T = [0.0, 0.4, 1.0]
# (odeint function, extra keywords): every adjoint mode, the seminorm and backprop
MODES = {
    "backsolve": (odeflow.odeint_adjoint, {"adjoint_mode": "backsolve"}),
    "checkpoint": (odeflow.odeint_adjoint, {"adjoint_mode": "checkpoint"}),
    "seminorm": (odeflow.odeint_adjoint, {"adjoint_options": {"norm": "seminorm"}}),
    "backprop": (odeflow.odeint_backprop, {}),
}


def dynamics(t, y, W, b, scale):
    """Reads two Tensors and a float from args."""
    return scale * ops.tanh(y @ W + b)


def point():
    rng = np.random.default_rng(3)
    return rng.normal(size=(3, 2)), 0.8 * rng.normal(size=(2, 2)), 0.3 * rng.normal(size=(2,))


def run(mode, with_args, create_graph=False):
    """Solution, loss and the gradients of y0, W, b (with `create_graph`, their Tensors)."""
    solver, extra = MODES[mode]
    y0v, Wv, bv = point()
    y0, W, b = (Tensor(v, requires_grad=True) for v in (y0v, Wv, bv))
    if with_args:
        ys = solver(dynamics, y0, T, args=(W, b, 0.9), **extra, **KW)
    else:
        ys = solver(lambda t, y: dynamics(t, y, W, b, 0.9), y0, T, **extra, **KW)
    loss = ops.sum(ys ** 2)
    grads = gradients(loss, [y0, W, b], create_graph=create_graph)
    return ys, grads


@pytest.mark.parametrize("mode", list(MODES))
def test_args_bit_identical_to_the_closure_form(mode):
    ys_a, g_a = run(mode, True)
    ys_c, g_c = run(mode, False)
    assert np.array_equal(ys_a.data, ys_c.data)
    for a, c in zip(g_a, g_c):
        assert np.array_equal(a.data, c.data)
        assert np.abs(a.data).max() > 1e-3  # a gradient, not zeros


@pytest.mark.parametrize("mode", list(MODES))
def test_args_second_order_bit_identical_to_the_closure_form(mode):
    v = [np.full((3, 2), 0.5), np.array([[1.0, -1.0], [0.3, 0.2]]), np.array([0.4, -0.7])]
    hvps = []
    for with_args in (True, False):
        solver, extra = MODES[mode]
        y0v, Wv, bv = point()
        y0, W, b = (Tensor(x, requires_grad=True) for x in (y0v, Wv, bv))
        f = dynamics if with_args else (lambda t, y: dynamics(t, y, W, b, 0.9))
        kw = {"args": (W, b, 0.9)} if with_args else {}
        ys = solver(f, y0, T, **extra, **kw, **KW)
        g = gradients(ops.sum(ys ** 2), [y0, W, b], create_graph=True)
        hvps.append(gradients(sum(ops.sum(gi * vi) for gi, vi in zip(g, v)), [W, b]))
    for a, c in zip(*hvps):
        assert np.array_equal(a.data, c.data)


@pytest.mark.parametrize("mode", list(MODES))
def test_gradients_of_tensors_in_args_against_finite_differences(mode):
    solver, extra = MODES[mode]
    order = 2

    def f(y0, W, b):
        return solver(dynamics, y0, [0.0, 0.5, 1.0], args=(W, b, 0.9), **extra, **KW)
    result = check_grads(f, *point(), order=order)
    assert result.ok and any(c.order == order for c in result.checks)


def test_args_with_an_nn_module_and_a_tensor_args():
    net = nn.MLP((2, 8, 2), activation="tanh", rng=np.random.default_rng(0))
    c = Tensor(np.array([0.5, -0.2]), requires_grad=True)

    def func(t, y, shift):
        return net(y) + shift
    y0 = np.random.default_rng(1).normal(size=(4, 2))
    ys = odeflow.odeint_adjoint(func, Tensor(y0), [0.0, 1.0], args=(c,), **KW)
    ops.sum(ys[-1]).backward()
    grad_c = c.grad.data.copy()
    for p in net.parameters():
        assert p.grad is not None
    c.grad = None
    for p in net.parameters():
        p.grad = None
    ys2 = odeflow.odeint_adjoint(lambda t, y: func(t, y, c), Tensor(y0), [0.0, 1.0], **KW)
    ops.sum(ys2[-1]).backward()
    assert np.array_equal(grad_c, c.grad.data)


def test_args_errors_named_before_any_work():
    calls = []

    def func(t, y, k):
        calls.append(t)
        return -k * y
    with pytest.raises(InputTypeError, match="`args` must be a tuple"):
        odeflow.odeint_adjoint(func, Tensor(np.ones(2)), [0.0, 1.0], args=0.5)
    with pytest.raises(GradientError, match=r"`args\[1\]` \(shape \(2,\)\)"):
        odeflow.odeint_adjoint(func, Tensor(np.ones(2)), [0.0, 1.0], args=(0.5, np.ones(2)))
    with pytest.raises(InputTypeError, match="`args` must be a tuple"):
        odeflow.odeint_event(func, Tensor(np.ones(2)), 0.0, lambda t, y, k: y[0] - 0.5, args=0.5)
    assert calls == []
    # the user's own closure is still checked behind args
    A = np.ones((2, 2))
    with pytest.raises(GradientError, match="`A`"):
        odeflow.odeint_adjoint(lambda t, y, k: -k * (y @ A), Tensor(np.ones(2)), [0.0, 1.0], args=(0.5,))
    # an ndarray in args is a constant when adjoint_params says what to differentiate
    k = Tensor(np.array(0.7), requires_grad=True)
    ys = odeflow.odeint_adjoint(lambda t, y, k, m: -k * (y @ m), Tensor(np.ones(2)), [0.0, 1.0],
                                args=(k, np.eye(2)), adjoint_params=[k], **KW)
    ops.sum(ys[-1]).backward()
    assert abs(k.grad.data - (-2 * np.exp(-0.7))) < 1e-7
    with pytest.raises(InputError, match="adjoint_kwargs"):
        odeflow.odeint_event(func, Tensor(np.ones(2)), 0.0, lambda t, y, k: y[0] - 0.5, args=(1.0,),
                             adjoint=True, adjoint_kwargs={"args": (1.0,)})


@pytest.mark.parametrize("adjoint", [False, True])
def test_odeint_event_args_reach_func_and_event_fn(adjoint):
    # y' = -k y, y(0) = 1: the event y = c happens at t* = log(1/c) / k
    def run(with_args):
        k = Tensor(np.array(0.8), requires_grad=True)
        c = Tensor(np.array(0.4), requires_grad=True)

        def func(t, y, k, c):
            return -k * y

        def event_fn(t, y, k, c):
            return ops.sum(y) - c
        if with_args:
            t_star, _ = odeflow.odeint_event(func, Tensor(np.array([1.0])), 0.0, event_fn, args=(k, c),
                                             adjoint=adjoint, **KW)
        else:
            t_star, _ = odeflow.odeint_event(lambda t, y: func(t, y, k, c), Tensor(np.array([1.0])), 0.0,
                                             lambda t, y: event_fn(t, y, k, c), adjoint=adjoint, **KW)
        t_star.backward()
        return t_star.data, k.grad.data, c.grad.data
    with_args, closure = run(True), run(False)
    assert all(np.array_equal(a, b) for a, b in zip(with_args, closure))
    t_star, dk, dc = with_args
    assert abs(t_star - np.log(1 / 0.4) / 0.8) < 1e-7
    assert abs(dk - (-np.log(1 / 0.4) / 0.8 ** 2)) < 1e-6   # d t*/dk
    assert abs(dc - (-1 / (0.4 * 0.8))) < 1e-6              # d t*/dc
