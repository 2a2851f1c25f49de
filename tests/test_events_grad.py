"""odeint_event: differentiable event times (implicit function theorem) against closed forms and FD."""
import numpy as np
import pytest

import odeflow
from odeflow import Tensor
from odeflow.autodiff import ops
from odeflow.errors import GradientError, InputError, InputTypeError, SolverError
from odeflow.testing import check_grads

MODES = [dict(adjoint=False), dict(adjoint=True),
         dict(adjoint=True, adjoint_kwargs={"adjoint_mode": "checkpoint"})]
MODE_IDS = ["backprop", "backsolve", "checkpoint"]
TOL = dict(rtol=1e-10, atol=1e-12)
SHIFT = np.array([[0.0, 1.0], [0.0, 0.0]])   # d(h, v)/dt = (v, -g)
DOWN = np.array([0.0, -1.0])


def _falling(g):
    return lambda t, y: ops.matmul(Tensor(SHIFT), y) + Tensor(DOWN) * g


def _ground(t, y):
    return y[0]


_ground.direction = -1


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_free_fall_event_time_and_gradients_match_the_quadratic_formula(mode):
    h0, v0, g0, t0 = 10.0, 2.0, 9.81, 0.3
    y0 = Tensor(np.array([h0, v0]), requires_grad=True)
    g = Tensor(np.float64(g0), requires_grad=True)
    t0_t = Tensor(np.float64(t0), requires_grad=True)
    t_hit, y_hit = odeflow.odeint_event(_falling(g), y0, t0_t, _ground, **TOL, **mode)
    root = np.sqrt(v0 ** 2 + 2 * g0 * h0)
    tau = (v0 + root) / g0        # h0 + v0 tau - g tau^2 / 2 = 0
    np.testing.assert_allclose(t_hit.data, t0 + tau, rtol=0, atol=1e-10)
    np.testing.assert_allclose(y_hit.data, [0.0, -root], rtol=0, atol=1e-9)
    t_hit.backward()
    np.testing.assert_allclose(y0.grad.data, [1 / root, (1 + v0 / root) / g0], rtol=0, atol=1e-8)
    np.testing.assert_allclose(g.grad.data, h0 / (root * g0) - tau / g0, rtol=0, atol=1e-8)
    np.testing.assert_allclose(t0_t.grad.data, 1.0, rtol=0, atol=1e-8)   # autonomous: a shift


@pytest.mark.parametrize("mode", MODES[:2], ids=MODE_IDS[:2])
def test_impact_velocity_gradient_includes_the_moving_event_time(mode):
    h0, v0, g0 = 10.0, 2.0, 9.81
    y0 = Tensor(np.array([h0, v0]), requires_grad=True)
    g = Tensor(np.float64(g0), requires_grad=True)
    _, y_hit = odeflow.odeint_event(_falling(g), y0, 0.0, _ground, **TOL, **mode)
    y_hit[1].backward()           # v* = -sqrt(v0^2 + 2 g h0)
    root = np.sqrt(v0 ** 2 + 2 * g0 * h0)
    np.testing.assert_allclose(y0.grad.data, [-g0 / root, -v0 / root], rtol=0, atol=1e-8)
    np.testing.assert_allclose(g.grad.data, -h0 / root, rtol=0, atol=1e-8)


def _bounces(y0, e, g, n, **mode):
    """Chained terminal events: fall, reverse the velocity times e, fall again."""
    t, y, times = 0.0, y0, []
    keep_bounce = Tensor(np.array([1.0, 0.0]))
    for _ in range(n):
        t, y = odeflow.odeint_event(_falling(g), y, t, _ground, **TOL, **mode)
        times.append(t)
        y = y * keep_bounce - ops.reshape(e * y[1], (1,)) * Tensor(np.array([0.0, 1.0]))
    return times, y


@pytest.mark.parametrize("mode", MODES[:2], ids=MODE_IDS[:2])
def test_bouncing_ball_bounce_times_and_gradients_match_the_analytic_ones(mode):
    h0, e0, g0, n = 5.0, 0.7, 9.81, 3
    y0 = Tensor(np.array([h0, 0.0]), requires_grad=True)
    e = Tensor(np.float64(e0), requires_grad=True)
    g = Tensor(np.float64(g0), requires_grad=True)
    times, _ = _bounces(y0, e, g, n, **mode)
    tau = np.sqrt(2 * h0 / g0)    # T_k = tau (1 + 2 (e + ... + e^(k-1)))
    expected = [tau * (1 + 2 * sum(e0 ** i for i in range(1, k))) for k in range(1, n + 1)]
    np.testing.assert_allclose([float(t.data) for t in times], expected, rtol=0, atol=1e-9)
    times[-1].backward()
    T = expected[-1]
    np.testing.assert_allclose(y0.grad.data[0], T / (2 * h0), rtol=0, atol=1e-7)
    np.testing.assert_allclose(e.grad.data, tau * 2 * sum(i * e0 ** (i - 1) for i in range(1, n)),
                               rtol=0, atol=1e-7)
    np.testing.assert_allclose(g.grad.data, -T / (2 * g0), rtol=0, atol=1e-7)


@pytest.mark.parametrize("mode", MODES[:2], ids=MODE_IDS[:2])
def test_event_function_parameters_get_their_gradient(mode):
    # y' = -k y from y0: y reaches the threshold c at t* = log(y0 / c) / k
    k0, c0, y00 = 0.8, 0.3, 2.0

    def t_star(y0, k, c):
        def threshold(t, y):
            return y[0] - c
        return odeflow.odeint_event(lambda t, y: -k * y, y0, 0.0, threshold, **TOL, **mode)[0]

    args = (Tensor(np.array([y00]), requires_grad=True), Tensor(np.float64(k0), requires_grad=True),
            Tensor(np.float64(c0), requires_grad=True))
    t = t_star(*args)
    np.testing.assert_allclose(t.data, np.log(y00 / c0) / k0, rtol=0, atol=1e-10)
    t.backward()
    np.testing.assert_allclose(args[2].grad.data, -1 / (c0 * k0), rtol=0, atol=1e-8)
    np.testing.assert_allclose(args[1].grad.data, -np.log(y00 / c0) / k0 ** 2, rtol=0, atol=1e-8)
    np.testing.assert_allclose(args[0].grad.data, [1 / (y00 * k0)], rtol=0, atol=1e-8)
    check_grads(t_star, np.array([y00]), k0, c0, order=1, rtol=1e-5)


def test_time_dependent_event_function_uses_dg_dt():
    # y' = 1 from 0, g = y - (2 - t): t* = 1; dt*/dy0 = -1 / (1 + 1)
    y0 = Tensor(np.array([0.0]), requires_grad=True)
    t, _ = odeflow.odeint_event(lambda t, y: y * 0.0 + 1.0, y0, 0.0, lambda t, y: y[0] - (2.0 - t), **TOL)
    t.backward()
    np.testing.assert_allclose(t.data, 1.0, atol=1e-12)
    np.testing.assert_allclose(y0.grad.data, [-0.5], atol=1e-12)


def test_grazing_event_has_no_gradient():
    # g = (t - 1)^3 crosses zero at t = 1 with dg/dt = 0 there
    y0 = Tensor(np.array([1.0]), requires_grad=True)
    t, _ = odeflow.odeint_event(lambda t, y: -y, y0, 0.0, lambda t, y: (t - 1.0) ** 3 + 0.0 * y[0], **TOL)
    np.testing.assert_allclose(t.data, 1.0, atol=1e-5)
    with pytest.raises(GradientError, match=r"grazing.*dg/dt"):
        t.backward()


def test_odeint_event_bad_input_and_no_event():
    f = _falling(9.81)
    with pytest.raises(InputTypeError, match=r"`event_fn` must be callable"):
        odeflow.odeint_event(f, np.array([1.0, 0.0]), 0.0, 3.0)
    with pytest.raises(InputError, match=r"`t0` must be a finite scalar"):
        odeflow.odeint_event(f, np.array([1.0, 0.0]), [0.0, 1.0], _ground)
    with pytest.raises(InputError, match=r"`t_max` must be finite"):
        odeflow.odeint_event(f, np.array([1.0, 0.0]), 0.0, _ground, t_max=np.inf)
    with pytest.raises(SolverError, match=r"no event of _ground between t0 = 0\.0 and t_max = 0\.1"):
        odeflow.odeint_event(f, np.array([1.0, 0.0]), 0.0, _ground, t_max=0.1)


def test_event_function_capturing_an_ndarray_is_refused_unless_event_params_is_given():
    level = np.array([0.3])

    def threshold(t, y):
        return y[0] - Tensor(level)[0]

    y0 = Tensor(np.array([1.0]), requires_grad=True)
    with pytest.raises(GradientError, match=r"`event_fn` captures float ndarray.*`level`.*event_params=\[\.\.\.\]"):
        odeflow.odeint_event(lambda t, y: -y, y0, 0.0, threshold)
    t, _ = odeflow.odeint_event(lambda t, y: -y, y0, 0.0, threshold, event_params=[], **TOL)
    np.testing.assert_allclose(t.data, np.log(1 / 0.3), atol=1e-10)


def test_second_order_through_an_event_time_is_refused_not_silently_wrong():
    """D = dg/dt along the solution is a constant in the IFT node, so a create_graph walk
    would miss the curvature of t*: it raises instead of returning a wrong second derivative."""
    from odeflow.errors import GradientError
    h0 = Tensor(np.array(10.0), requires_grad=True)

    def fall(t, y):
        return ops.stack([y[1], Tensor(np.array(-9.81))])

    t_star, _ = odeflow.odeint_event(fall, ops.stack([h0, Tensor(np.array(0.0))]), 0.0,
                                     lambda t, y: y[0], t_max=10.0, rtol=1e-10, atol=1e-10)
    t_star.backward()  # first order: fine
    np.testing.assert_allclose(h0.grad.data, 1.0 / np.sqrt(2 * 9.81 * 10.0), rtol=1e-7)
    t_star, _ = odeflow.odeint_event(fall, ops.stack([h0, Tensor(np.array(0.0))]), 0.0,
                                     lambda t, y: y[0], t_max=10.0, rtol=1e-10, atol=1e-10)
    with pytest.raises(GradientError, match="second-order gradients through the event time"):
        t_star.backward(create_graph=True)
