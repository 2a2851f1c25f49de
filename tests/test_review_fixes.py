"""Defects found by the adversarial review of the merged issues 11-17 (each failed before its fix)."""
import numpy as np
import pytest

import odeflow
from odeflow import Tensor
from odeflow.autodiff import ops
from odeflow.autodiff.backprop import gradients
from odeflow.errors import GradientError


def test_jump_t_with_a_parameter_read_only_after_the_jump_gets_its_adjoint_gradient():
    """Was W.grad = None (the segments were given the parameters one probe at t[0] saw)."""
    for mode in ("backsolve", "checkpoint"):
        W = Tensor(np.array(0.5), requires_grad=True)
        f = lambda t, y: -W * y if t > 0.5 else -y
        ys = odeflow.odeint_adjoint(f, Tensor(np.array([1.0])), np.array([0.0, 1.0]), rtol=1e-10,
                                    atol=1e-10, options={"jump_t": [0.5]}, adjoint_mode=mode, stats={})
        ops.sum(ys[-1]).backward()
        # y(1) = e^{-0.5} e^{-0.5 W}: dy/dW = -0.5 e^{-0.5 - 0.5 W}
        np.testing.assert_allclose(W.grad.data, -0.5 * np.exp(-0.5 - 0.25), rtol=1e-7)


def test_adjoint_options_keep_the_forward_step_size_of_a_fixed_step_method():
    """Was: any adjoint_options replaced the forward options, so the backward euler solve took
    one step of size 1 instead of ten, and the gradient was wrong with no error."""
    W = Tensor(np.array([[0.3, -0.8], [0.5, 0.2]]), requires_grad=True)
    y0 = Tensor(np.array([[1.0, 0.5]]))
    f = lambda t, y: ops.tanh(ops.matmul(y, W))
    grads = []
    for kw in ({}, {"adjoint_options": {"norm": "seminorm"}}, {"adjoint_options": {"on_drift": "ignore"}}):
        W.grad = None
        st = {}
        ys = odeflow.odeint_adjoint(f, y0, np.array([0.0, 1.0]), method="rk4", options={"step_size": 0.1},
                                    stats=st, **kw)
        ops.sum(ys[-1]).backward()
        grads.append(W.grad.data.copy())
        assert st["backward"]["n_steps"] == 10
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-12)
    np.testing.assert_allclose(grads[2], grads[0], rtol=1e-12)
    W.grad = None
    ops.sum(odeflow.odeint(f, y0, np.array([0.0, 1.0]), method="rk4", options={"step_size": 0.1})[-1]).backward()
    np.testing.assert_allclose(grads[0], W.grad.data, rtol=1e-5)  # continuous vs discrete: O(h^4)


def test_second_order_through_the_per_sample_adjoint_is_refused():
    """Was: a gradient without a graph, so d(gW . W)/dW came out silently wrong."""
    rng = np.random.default_rng(0)
    W = Tensor(rng.normal(size=(2, 2)) * 0.7, requires_grad=True)
    y0 = Tensor(rng.normal(size=(3, 2)))
    ys = odeflow.odeint_adjoint(lambda s, y: ops.tanh(ops.matmul(y, W)), y0, np.array([0.0, 1.0]),
                                rtol=1e-8, atol=1e-8, batch_axis=0)
    with pytest.raises(GradientError, match="first-order gradients only"):
        gradients(ops.sum(ys[-1] ** 2), [W], create_graph=True)


def test_jump_t_with_stats_through_the_adjoint():
    """Was a raw TypeError summing the segments' stiff_at = None."""
    W = Tensor(np.array(0.5), requires_grad=True)
    stats = {}
    ys = odeflow.odeint_adjoint(lambda t, y: -W * y, Tensor(np.array([1.0])), np.array([0.0, 1.0]),
                                options={"jump_t": [0.5]}, stats=stats)
    assert len(stats["segments"]) == 2 and stats["forward"]["nfe"] > 0
    np.testing.assert_allclose(ys.data[-1], np.exp(-0.5), rtol=1e-6)


@pytest.mark.parametrize("call, error, pattern", [
    (lambda: odeflow.solve(lambda t, y: -y, np.ones((3, 2)), [0.0, 1.0], method="radau", batch_axis=0),
     odeflow.InputError, r"method 'radau' has no per-sample mode"),
    (lambda: odeflow.solve_ensemble(lambda t, y: -y, np.ones((2, 1)), [0.0, 1.0], client="x"),
     odeflow.InputTypeError, r"`client` must be a dask.distributed.Client; got str"),
    (lambda: __import__("odeflow.regularizers").regularizers.odeint_regularized(
        lambda t, z: -z, np.ones((3, 2)), [0.0, 1.0],
        [__import__("odeflow.regularizers").regularizers.jacobian_frobenius()], rng="x"),
     odeflow.InputTypeError, r"`rng` must be an int seed"),
    (lambda: __import__("odeflow.regularizers").regularizers.odeint_regularized(
        lambda t, z: -z, np.ones((3, 2)), [0.0, 1.0],
        [__import__("odeflow.regularizers").regularizers.kinetic_energy()], rtol=np.ones(5)),
     odeflow.ShapeError, r"`rtol` of shape \(5,\) does not broadcast"),
    (lambda: odeflow.solve(lambda t, y: -y, [1.0], [0.0, 1.0], events=_terminal_huge()),
     odeflow.InputError, r"`terminal` must be a bool or a non-negative integer"),
    (lambda: odeflow.solve(lambda t, y: -y, [1.0], [0.0, 1.0], events=lambda t, y: y[0] - 0.5,
                           options={"event_samples": 10 ** 6}),
     odeflow.InputError, r"`options\['event_samples'\]` must be at most 1024"),
    (lambda: odeflow.odeint_event(lambda t, y: -y, Tensor(np.array([1.0])), 0.0, lambda t, y: y[0] - 0.5,
                                  adjoint=True, adjoint_kwargs={"rtol": 1e-3}),
     odeflow.InputError, r"`adjoint_kwargs` must not repeat odeint_event's own arguments \['rtol'\]"),
    (lambda: odeflow.solve(lambda t, y: -y, [1.0], [0.0, 1.0], method="radau", events=lambda t, y: y[0]),
     odeflow.InputError, r"`events` are not supported by method='radau'"),
    (lambda: odeflow.solve(lambda t, y: -y, np.ones((2, 1)), [0.0, 1.0], batch_axis=0,
                           events=lambda t, y: y[0]),
     odeflow.InputError, r"`events` cannot be combined with `batch_axis`"),
])
def test_bad_inputs_found_by_the_review_are_named(call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()


def _terminal_huge():
    def g(t, y):
        return y[0] - 0.5
    g.terminal = 10 ** 30
    return g
