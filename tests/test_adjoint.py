"""Gradients through ODE solutions: adjoint (backsolve, checkpoint) vs backprop vs closed form vs FD."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy.linalg import expm, expm_frechet

import odeflow
from odeflow import Tensor, nn
from odeflow.autodiff import ops
from odeflow.errors import GradientError, InputError

from adjoint_cases import central

MODES = ["backsolve", "checkpoint", "backprop"]


def _solve(mode, func, y0, t, **kw):
    if mode == "backprop":
        return odeflow.odeint(func, y0, t, **kw)
    return odeflow.odeint_adjoint(func, y0, t, adjoint_mode=mode, **kw)


class Linear(nn.Module):
    """dy/dt = A y (rows of a batch), A a Parameter."""

    def __init__(self, A):
        self.A = nn.Parameter(A)

    def forward(self, t, y):
        return y @ self.A.T


class Dynamics(nn.Module):
    """A small time-dependent MLP: dy/dt = W2 tanh(W1 [y, t] + b1) + b2."""

    def __init__(self, dim, hidden, rng, scale=1.0):
        self.net = nn.MLP((dim + 1, hidden, dim), activation="tanh", rng=rng)
        self.scale = scale

    def forward(self, t, y):
        tt = ops.broadcast_to(Tensor(np.asarray(t, y.dtype)), y.shape[:-1] + (1,))
        return self.net(ops.concatenate([y, tt], axis=-1)) * self.scale


@pytest.mark.parametrize("mode", MODES)
def test_linear_ode_gradients_match_the_closed_form(mode):
    # L = w^T y(T),  y(T) = expm(A T) y0:  dL/dy0 = expm(A T)^T w,
    # dL/dA = Frechet derivative of expm, dL/dT = w^T A expm(A T) y0, dL/dt0 = -dL/dT
    rng = np.random.default_rng(1)
    n, T = 3, 1.3
    A = rng.normal(size=(n, n)) / 2
    w, y0v = rng.normal(size=n), rng.normal(size=n)
    func = Linear(A.copy())
    y0 = Tensor(y0v, requires_grad=True)
    t = Tensor([0.0, T], requires_grad=True)
    ys = _solve(mode, func, y0, t, rtol=1e-11, atol=1e-12)
    (ys[-1] * w).sum().backward()
    E = expm(A * T)
    dA = np.array([[w @ expm_frechet(A * T, T * np.eye(n)[:, [i]] @ np.eye(n)[[j]], compute_expm=False) @ y0v
                    for j in range(n)] for i in range(n)])
    dT = w @ A @ E @ y0v
    np.testing.assert_allclose(y0.grad.data, E.T @ w, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(func.A.grad.data, dA, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(t.grad.data, [-dT, dT], rtol=1e-7, atol=1e-9)


def _loss_weights(shape, seed):
    return np.random.default_rng(seed).normal(size=shape)


def _fd_grads(func, y0, t, weights, params, eps=1e-5):
    """Central differences of L = sum(weights * y(t)) w.r.t. y0, t and every parameter entry,
    from forward solves at rtol = atol = 1e-13 (their noise ~1e-13 / eps stays below 1e-7)."""
    def loss(y0v, tv):
        return float(np.sum(weights * odeflow.odeint(
            lambda s, y: func(s, Tensor(y)).data, y0v, tv, rtol=1e-13, atol=1e-13)))

    y0c, tc = y0.copy(), t.copy()
    g_y0, g_t, *g_p = central(lambda: loss(y0c, tc), [y0c, tc] + [p.data for p in params], eps=eps)
    return g_y0, g_t, g_p


def _rel(a, b):
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-12)


@settings(max_examples=6, deadline=None)
@given(dim=st.integers(1, 3), batch=st.sampled_from([(), (2,), (2, 2)]), n_t=st.integers(2, 4),
       backwards=st.booleans(), seed=st.integers(0, 1000))
def test_mlp_dynamics_adjoint_backprop_and_finite_differences_agree(dim, batch, n_t, backwards, seed):
    rng = np.random.default_rng(seed)
    func = Dynamics(dim, 5, rng)
    y0v = rng.normal(size=batch + (dim,))
    tv = np.sort(rng.uniform(0.0, 1.0, size=n_t)) + np.arange(n_t) * 0.1
    if backwards:
        tv = tv[::-1].copy()
    weights = _loss_weights((n_t,) + y0v.shape, seed)
    fd_y0, fd_t, fd_p = _fd_grads(func, y0v, tv, weights, func.parameters())
    for mode in MODES:
        func.zero_grad()
        y0 = Tensor(y0v, requires_grad=True)
        t = Tensor(tv, requires_grad=True)
        ys = _solve(mode, func, y0, t, rtol=1e-10, atol=1e-10)
        assert ys.shape == (n_t,) + y0v.shape
        ops.sum(ys * weights).backward()
        assert _rel(y0.grad.data, fd_y0) <= 1e-6, mode
        assert _rel(t.grad.data, fd_t) <= 1e-6, mode
        for p, g in zip(func.parameters(), fd_p):
            assert _rel(p.grad.data, g) <= 1e-6, mode


@pytest.mark.parametrize("mode", MODES)
def test_float32_state_keeps_working_with_looser_tolerance(mode):
    rng = np.random.default_rng(3)
    func = Dynamics(2, 8, rng)
    y0v = rng.normal(size=(4, 2))
    grads = {}
    for dtype, tol in ((np.float64, 1e-10), (np.float32, 1e-4)):
        func32 = Dynamics(2, 8, np.random.default_rng(3))
        for p, q in zip(func32.parameters(), func.parameters()):
            p.data = q.data.astype(dtype)
        y0 = Tensor(y0v.astype(dtype), requires_grad=True)
        ys = _solve(mode, func32, y0, np.array([0.0, 0.5, 1.0]), rtol=tol, atol=tol)
        assert ys.dtype == dtype
        ops.sum(ys ** 2).backward()
        grads[dtype] = (y0.grad.data, [p.grad.data for p in func32.parameters()])
    assert grads[np.float32][0].dtype == np.float32
    np.testing.assert_allclose(grads[np.float32][0], grads[np.float64][0], rtol=1e-3, atol=1e-3)


def _dissipative_setup():
    # y1' = -20 y1 decays like exp(-20 t); y2' = -y2/2 + theta tanh(y1) carries the loss.
    # Backsolve rebuilds y1 backwards from y1(T) ~ 4e-18, whose absolute forward error
    # (~atol) grows by exp(40) ~ 2e17, so tanh(y1) is wrong where a2 is not small
    # (Gholami et al. 2019, ANODE; Zhuang et al. 2020, ACA).
    theta = nn.Parameter(np.array([0.7]))

    def func(t, y):
        y1, y2 = y[..., 0:1], y[..., 1:2]
        return ops.concatenate([-20.0 * y1, -0.5 * y2 + theta * ops.tanh(y1)], axis=-1)
    return func, theta, np.array([1.0, 0.0])


def _dissipative_reference(func, W, y0v, t):
    """dL/dtheta of L = y2(T) by central differences of forward solves at rtol 1e-12."""
    def loss():
        return float(odeflow.odeint(lambda s, y: func(s, Tensor(y)).data, y0v, t,
                                    rtol=1e-12, atol=1e-14)[-1, 1])
    return central(loss, [W.data])[0]


def _dissipative_grad(mode, func, W, y0v, t, **kw):
    W.grad = None
    ys = _solve(mode, func, Tensor(y0v), t, rtol=1e-6, atol=1e-8, **kw)
    ys[-1, 1].backward()
    return W.grad.data.copy()


def test_unaudited_backsolve_is_measurably_wrong_on_dissipative_dynamics_and_checkpoint_is_right():
    func, W, y0v = _dissipative_setup()
    t = np.array([0.0, 2.0])
    ref = _dissipative_reference(func, W, y0v, t)
    assert _rel(_dissipative_grad("checkpoint", func, W, y0v, t), ref) < 1e-3
    assert _rel(_dissipative_grad("backprop", func, W, y0v, t), ref) < 1e-3
    # with the audit switched off the reconstruction error dominates
    wrong = _dissipative_grad("backsolve", func, W, y0v, t, adjoint_options={"on_drift": "ignore"})
    assert _rel(wrong, ref) > 1e-1


def test_seminorm_lowers_backward_nfe_without_changing_the_gradient():
    rng = np.random.default_rng(11)
    func = Dynamics(2, 32, rng)
    y0 = Tensor(rng.normal(size=(16, 2)))
    t = np.linspace(0.0, 5.0, 3)
    out = {}
    for norm in ("rms", "seminorm"):
        func.zero_grad()
        stats = {}
        ys = odeflow.odeint_adjoint(func, y0, t, rtol=1e-7, atol=1e-7, stats=stats,
                                    adjoint_options={"norm": norm})
        ops.sum(ys ** 2).backward()
        out[norm] = (stats["backward"]["nfe"], [p.grad.data.copy() for p in func.parameters()])
    assert out["seminorm"][0] < out["rms"][0]
    for g_semi, g_rms in zip(out["seminorm"][1], out["rms"][1]):
        np.testing.assert_allclose(g_semi, g_rms, rtol=1e-5, atol=1e-6)


def test_forward_and_backward_nfe_are_reported():
    func = Dynamics(2, 8, np.random.default_rng(0))
    stats = {}
    ys = odeflow.odeint_adjoint(func, Tensor(np.ones((3, 2))), [0.0, 1.0], stats=stats)
    assert stats["forward"]["nfe"] > 0 and "backward" not in stats
    ops.sum(ys).backward()
    assert stats["backward"]["nfe"] > 0


def test_func_without_parameters_still_gives_y0_and_t_gradients():
    y0 = Tensor([1.0, 2.0], requires_grad=True)
    t = Tensor([0.0, 1.0], requires_grad=True)
    ys = odeflow.odeint_adjoint(lambda s, y: -0.5 * y, y0, t, rtol=1e-10, atol=1e-12)
    ops.sum(ys[-1]).backward()
    np.testing.assert_allclose(y0.grad.data, np.exp(-0.5) * np.ones(2), rtol=1e-8)
    dT = -0.5 * np.exp(-0.5) * 3.0
    np.testing.assert_allclose(t.grad.data, [-dT, dT], rtol=1e-8)


def test_ndarray_captured_in_a_closure_is_named_not_silently_ignored():
    W = np.eye(2)

    def func(t, y):
        return y @ W

    with pytest.raises(GradientError, match=r"`W` \(shape \(2, 2\)\).*adjoint_params"):
        odeflow.odeint_adjoint(func, Tensor(np.ones(2), requires_grad=True), [0.0, 1.0])
    # saying which Tensors to differentiate (none) treats W as a constant
    y0 = Tensor(np.ones(2), requires_grad=True)
    ops.sum(odeflow.odeint_adjoint(func, y0, [0.0, 1.0], adjoint_params=())[-1]).backward()
    np.testing.assert_allclose(y0.grad.data, np.e * np.ones(2), rtol=1e-6)


@pytest.mark.parametrize("kwargs, error, pattern", [
    (dict(adjoint_mode="reverse"), InputError, r"`adjoint_mode` must be one of backsolve, checkpoint; got 'reverse'"),
    (dict(adjoint_options={"norm": "max"}), InputError, r"`adjoint_options\['norm'\]` must be 'rms' or 'seminorm'"),
    (dict(adjoint_params=[np.ones(2)]), odeflow.InputTypeError, r"`adjoint_params\[0\]` must be a Tensor"),
    (dict(adjoint_params=[Tensor(np.ones(2))]), GradientError, r"`adjoint_params\[0\]` \(shape \(2,\)\) does not require grad"),
    (dict(method="rk45"), InputError, r"`method` must be one of"),
])
def test_bad_adjoint_arguments(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        odeflow.odeint_adjoint(lambda s, y: -y, Tensor(np.ones(2)), [0.0, 1.0], **kwargs)


def test_backprop_takes_the_same_steps_as_the_array_solver():
    func = Dynamics(2, 8, np.random.default_rng(5))
    y0v = np.random.default_rng(6).normal(size=(4, 2))
    stats = {}
    odeflow.odeint_backprop(func, Tensor(y0v), [0.0, 0.7, 2.0], rtol=1e-6, atol=1e-8, stats=stats)
    ref = odeflow.solve(lambda s, y: func(s, Tensor(y)).data, y0v, [0.0, 0.7, 2.0], rtol=1e-6, atol=1e-8)
    assert stats["forward"] == {k: v for k, v in ref.stats.items() if k != "stiff_at"}  # no stiffness test on Tensors


def test_backprop_through_fixed_step_rk4_is_the_exact_discrete_gradient():
    # y' = a y with N rk4 steps of size h: y_N = R(a h)^N y0, R(z) = 1 + z + z^2/2 + z^3/6 + z^4/24
    a, T, N = -0.8, 2.0, 5
    h = T / N
    y0 = Tensor([1.5], requires_grad=True)
    coef = Tensor([a], requires_grad=True)
    ys = odeflow.odeint(lambda s, y: coef * y, y0, [0.0, T], method="rk4", options={"step_size": h})
    ys[-1, 0].backward()
    z = a * h
    R = 1 + z + z ** 2 / 2 + z ** 3 / 6 + z ** 4 / 24
    dR = h * (1 + z + z ** 2 / 2 + z ** 3 / 6)
    np.testing.assert_allclose(ys.data[-1, 0], R ** N * 1.5, rtol=1e-14)
    np.testing.assert_allclose(y0.grad.data, [R ** N], rtol=1e-13)
    np.testing.assert_allclose(coef.grad.data, [N * R ** (N - 1) * dR * 1.5], rtol=1e-13)


def test_backprop_blow_up_raises_with_the_rows_done():
    t = np.linspace(0.0, 2.0, 21)
    with pytest.raises(odeflow.SolverError) as info:
        odeflow.odeint(lambda s, y: y * y, Tensor([1.0], requires_grad=True), t)
    sol = info.value.solution
    assert 0.99 < info.value.t < 1.001 and np.all(np.isfinite(sol.y))
    early = sol.t < 0.95
    np.testing.assert_allclose(sol.y[early, 0], 1.0 / (1.0 - sol.t[early]), rtol=1e-6)


def test_backprop_func_returning_the_wrong_shape():
    with pytest.raises(odeflow.ShapeError, match=r"shape of `y0` \(2,\).*returned shape \(1,\)"):
        odeflow.odeint(lambda s, y: y[:1], Tensor(np.ones(2)), [0.0, 1.0])


class _Holder:
    """A plain object (not a Module) holding a Module: parameters must still be found."""

    def __init__(self):
        self.net = nn.Linear(2, 2, rng=0)

    def __call__(self, t, y):
        return ops.tanh(self.net(y))


_GLOBAL_NETS = [nn.Linear(2, 2, rng=1)]


def _uses_global_list(t, y):
    return ops.tanh(_GLOBAL_NETS[0](y))


@pytest.mark.parametrize("make", [
    lambda: (_Holder(), lambda f: f.net.parameters()),
    lambda: (_uses_global_list, lambda f: _GLOBAL_NETS[0].parameters()),
    lambda: (__import__("functools").partial(lambda t, y, net: ops.tanh(net(y)), net=nn.Linear(2, 2, rng=2)),
             lambda f: f.keywords["net"].parameters()),
])
@pytest.mark.parametrize("mode", ["backsolve", "checkpoint"])
def test_parameters_are_found_wherever_func_keeps_them(make, mode):
    func, params_of = make()
    grads = {}
    for which in ("backprop", mode):
        for p in params_of(func):
            p.grad = None
        ys = _solve(which, func, Tensor(np.array([0.5, -1.0])), [0.0, 1.0], rtol=1e-10, atol=1e-10)
        ops.sum(ys[-1] ** 2).backward()
        grads[which] = [p.grad.data.copy() for p in params_of(func)]
    for g_adj, g_bp in zip(grads[mode], grads["backprop"]):
        np.testing.assert_allclose(g_adj, g_bp, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("mode", MODES)
def test_single_time_gives_identity_gradients(mode):
    y0 = Tensor([1.0, 2.0], requires_grad=True)
    t = Tensor([0.5], requires_grad=True)
    ys = _solve(mode, lambda s, y: -y, y0, t)
    assert ys.shape == (1, 2)
    ops.sum(ys).backward()
    np.testing.assert_array_equal(y0.grad.data, [1.0, 1.0])
    np.testing.assert_array_equal(t.grad.data, [0.0])


def test_fixed_step_adjoint_inherits_the_forward_step_size():
    W = nn.Parameter(np.array([[0.3, -1.0], [1.0, 0.2]]))

    def func(t, y):
        return ops.tanh(y @ W) - 0.3 * y
    kw = dict(method="euler", options={"step_size": 0.01})
    grads = {}
    for mode in ("backprop", "backsolve"):
        y0 = Tensor(np.array([1.0, 0.5]), requires_grad=True)
        ops.sum(_solve(mode, func, y0, [0.0, 1.0], **kw)[-1] ** 2).backward()
        grads[mode] = y0.grad.data
    # the continuous adjoint on the same grid differs from the discrete gradient by O(h)
    assert _rel(grads["backsolve"], grads["backprop"]) < 5e-3
    with pytest.raises(InputError, match=r"'checkpoint'.*fixed-step method 'euler'"):
        odeflow.odeint_adjoint(func, Tensor(np.ones(2)), [0.0, 1.0], adjoint_mode="checkpoint", **kw)


def test_func_returning_an_ndarray_for_a_tensor_is_refused():
    y0 = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    with pytest.raises(GradientError, match=r"`func` returned a ndarray"):
        odeflow.odeint(lambda t, y: -y.data, y0, [0.0, 1.0])
    with pytest.raises(GradientError, match=r"`func` returned a ndarray"):
        odeflow.odeint_adjoint(lambda t, y: -y.data, y0, [0.0, 1.0])


def test_jitted_func_with_a_tensor_state_is_refused():
    import numba

    @numba.njit
    def f(t, y):
        return -y
    for solve in (odeflow.odeint, odeflow.odeint_adjoint):
        with pytest.raises(odeflow.InputTypeError, match="Numba-jitted"):
            solve(f, Tensor(np.ones(2)), [0.0, 1.0])


def test_backprop_nonfinite_first_derivative_fails_at_once():
    calls = []

    def f(t, y):
        calls.append(t)
        return y * np.nan
    with pytest.raises(odeflow.NonFiniteDerivativeError, match=r"func\(t0, y0\)"):
        odeflow.odeint(f, Tensor(np.ones(2), requires_grad=True), [0.0, 1.0])
    assert len(calls) == 1


class _Counted:
    def __init__(self):
        self.calls = 0

    def __call__(self, t, y):
        self.calls += 1
        return -y


@pytest.mark.parametrize("kwargs, error, pattern", [
    (dict(adjoint_options={"bogus": 1}), InputError, r"`adjoint_options` key 'bogus'"),
    (dict(adjoint_options=[("norm", "rms")]), odeflow.InputTypeError, r"`adjoint_options` must be a dict"),
    (dict(adjoint_method="rk45"), InputError, r"`adjoint_method` must be one of"),
    (dict(adjoint_atol=np.nan), InputError, r"`adjoint_atol` must be finite and non-negative; got nan"),
    (dict(adjoint_rtol=-1.0), InputError, r"`adjoint_rtol` must be finite and non-negative; got -1.0"),
    (dict(adjoint_atol=np.ones(5)), odeflow.ShapeError, r"`adjoint_atol` of shape \(5,\)"),
    (dict(stats=[]), odeflow.InputTypeError, r"`stats` must be a dict or None; got list"),
    (dict(adjoint_params=nn.Linear(2, 2)), odeflow.InputTypeError, r"`adjoint_params` must be a sequence.*module.parameters\(\)"),
])
def test_adjoint_arguments_are_checked_before_any_evaluation(kwargs, error, pattern):
    func = _Counted()
    with pytest.raises(error, match=pattern):
        odeflow.odeint_adjoint(func, Tensor(np.ones(2)), [0.0, 1.0], **kwargs)
    assert func.calls == 0


def test_backward_solver_failures_say_they_come_from_the_backward_solve():
    y0 = Tensor(np.ones(2), requires_grad=True)
    ys = odeflow.odeint_adjoint(lambda t, y: -y, y0, [0.0, 1.0], adjoint_options={"max_steps": 1})
    with pytest.raises(odeflow.MaxStepsExceededError, match=r"adjoint backward solve from t = 1.0 to 0.0"):
        ops.sum(ys).backward()


def test_under_no_grad_the_adjoint_only_solves():
    func = _Counted()
    with odeflow.no_grad():
        ys = odeflow.odeint_adjoint(func, Tensor(np.ones(2), requires_grad=True), [0.0, 1.0])
    assert not ys.requires_grad
    ref = odeflow.solve(lambda t, y: -y, np.ones(2), [0.0, 1.0])
    assert func.calls == ref.stats["nfe"]  # no recorded probe evaluation
    np.testing.assert_array_equal(ys.data, ref.y)


def test_float32_state_stays_float32_with_time_gradients():
    t = Tensor([0.0, 1.0], requires_grad=True)
    y0 = Tensor(np.ones(2, np.float32), requires_grad=True)
    ys = odeflow.odeint(lambda s, y: -y, y0, t, rtol=1e-4, atol=1e-6)
    assert ys.dtype == np.float32
    ops.sum(ys[-1]).backward()
    np.testing.assert_allclose(t.grad.data, [2 * np.exp(-1.0), -2 * np.exp(-1.0)], rtol=1e-3)
