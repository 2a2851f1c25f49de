"""options["jump_t"] (declared discontinuities) and options["min_step"]."""
import numpy as np
import pytest

import odeflow
from odeflow import Tensor
from odeflow.errors import InputError, StepSizeUnderflowError

SWITCH = ((1.0, 1.0), (2.0, 3.0), (2.5, 0.0))   # u = 1 on [1, 2), 3 on [2, 2.5), 0 otherwise


def _forcing(t):
    u = 0.0
    for start, value in SWITCH:
        if t >= start:
            u = value
    return u


def _staircase(t, y):
    return np.full_like(y, _forcing(t))


def _staircase_exact(t):
    return 1.0 * np.clip(t - 1.0, 0, 1) + 3.0 * np.clip(t - 2.0, 0, 0.5)


JUMPS = [s for s, _ in SWITCH]


@pytest.mark.parametrize("method", ["dopri5", "bosh3"])
def test_piecewise_constant_forcing_is_exact_with_far_fewer_evaluations(method):
    t = np.linspace(0.0, 4.0, 9)
    with_jumps = odeflow.solve(_staircase, [0.0], t, method=method, options={"jump_t": JUMPS})
    without = odeflow.solve(_staircase, [0.0], t, method=method)
    np.testing.assert_allclose(with_jumps.y[:, 0], _staircase_exact(t), rtol=0, atol=1e-10)
    assert np.abs(without.y[:, 0] - _staircase_exact(t)).max() > 1e-9
    assert with_jumps.stats["nfe"] * 4 < without.stats["nfe"]
    assert with_jumps.stats["n_rejected"] == 0
    assert set(JUMPS) <= set(with_jumps.t_steps)   # steps end exactly on the jumps


@pytest.mark.parametrize("method", ["euler", "midpoint", "rk4"])
def test_fixed_step_methods_get_the_jumps_as_nodes(method):
    t = np.linspace(0.0, 4.0, 5)
    sol = odeflow.solve(_staircase, [0.0], t, method=method, options={"jump_t": JUMPS, "step_size": 0.3})
    np.testing.assert_allclose(sol.y[:, 0], _staircase_exact(t), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(sol.t, t)   # outputs unaffected
    assert set(JUMPS) <= set(sol.t_steps)


def test_a_narrow_pulse_is_missed_without_jump_t_and_exact_with_it():
    def pulse(t, y):
        return np.array([10.0 if 5.0 <= t < 5.01 else 0.0])

    assert odeflow.solve(pulse, [0.0], [0.0, 10.0]).y[-1, 0] == 0.0
    sol = odeflow.solve(pulse, [0.0], [0.0, 10.0], options={"jump_t": [5.0, 5.01]})
    np.testing.assert_allclose(sol.y[-1, 0], 0.1, rtol=0, atol=1e-12)


def test_func_is_evaluated_on_the_correct_side_of_each_jump_and_fsal_is_discarded():
    calls = []

    def f(t, y):
        calls.append(t)
        return _staircase(t, y)

    plain = odeflow.solve(_staircase, [0.0], [0.0, 4.0])
    sol = odeflow.solve(f, [0.0], [0.0, 4.0], options={"jump_t": JUMPS})
    assert not any(c in JUMPS for c in calls)              # never at a jump itself
    for T in JUMPS:
        assert np.nextafter(T, np.inf) in calls and np.nextafter(T, -np.inf) in calls
    assert sol.stats["nfe"] == len(calls)
    # one extra evaluation per jump beyond the steps' stages (no FSAL across a jump)
    assert sol.stats["nfe"] == 1 + 1 + 6 * sol.stats["n_steps"] + len(JUMPS)
    assert plain.stats["nfe"] == 1 + 1 + 6 * plain.stats["n_steps"]


def test_jump_t_outside_is_ignored_backwards_works_and_non_finite_is_refused():
    ref = odeflow.solve(_staircase, [0.0], [0.0, 4.0])
    out = odeflow.solve(_staircase, [0.0], [0.0, 4.0], options={"jump_t": [-1.0, 0.0, 4.0, 7.0]})
    np.testing.assert_array_equal(out.y, ref.y)
    assert out.stats == ref.stats
    back = odeflow.solve(_staircase, [_staircase_exact(4.0)], [4.0, 0.0], options={"jump_t": JUMPS})
    np.testing.assert_allclose(back.y[-1, 0], 0.0, atol=1e-10)
    with pytest.raises(InputError, match=r"`options\['jump_t'\]` must be finite; jump_t\[1\] = nan"):
        odeflow.solve(_staircase, [0.0], [0.0, 4.0], options={"jump_t": [1.0, np.nan]})


K0, T_ON, T_OFF, T_END = 0.7, 1.0, 1.5, 3.0


def _switched_exact(k, t_on, t_off, y0=1.0, t_end=T_END):
    """y' = -k y + u, u = 1 on [t_on, t_off): y(t_end) in closed form."""
    return y0 * np.exp(-k * t_end) + (1 - np.exp(-k * (t_off - t_on))) / k * np.exp(-k * (t_end - t_off))


@pytest.mark.parametrize("mode", ["backprop", "backsolve", "checkpoint"])
def test_gradient_wrt_the_switch_time_matches_finite_differences(mode):
    k = Tensor(np.float64(K0), requires_grad=True)
    t_on = Tensor(np.float64(T_ON), requires_grad=True)
    y0 = Tensor(np.array([1.0]), requires_grad=True)

    def f(t, y):
        return -k * y + (1.0 if T_ON <= t < T_OFF else 0.0)

    kw = dict(rtol=1e-10, atol=1e-12, options={"jump_t": [t_on, T_OFF]})
    t = [0.0, 2.0, T_END]
    y = odeflow.odeint(f, y0, t, **kw) if mode == "backprop" else odeflow.odeint_adjoint(
        f, y0, t, adjoint_mode=mode, **kw)
    np.testing.assert_allclose(y.data[-1, 0], _switched_exact(K0, T_ON, T_OFF), rtol=0, atol=1e-10)
    y[-1].sum().backward()

    def solved(t_switch):  # finite differences of the array solver, switch moved with the jump
        return odeflow.solve(lambda t, y: -K0 * y + (1.0 if t_switch <= t < T_OFF else 0.0), [1.0], t,
                             rtol=1e-12, atol=1e-14, options={"jump_t": [t_switch, T_OFF]}).y[-1, 0]

    h = 1e-5
    fd = (solved(T_ON + h) - solved(T_ON - h)) / (2 * h)
    np.testing.assert_allclose(t_on.grad.data, fd, rtol=1e-6)
    # closed form: dL/dT = a(T) (f(T-) - f(T+)) = exp(-k (T_END - T_ON)) * (0 - 1)
    np.testing.assert_allclose(t_on.grad.data, -np.exp(-K0 * (T_END - T_ON)), rtol=1e-8)
    # the adjoint is continuous across the jumps: dy(T_END)/dy0 = exp(-k T_END)
    np.testing.assert_allclose(y0.grad.data, [np.exp(-K0 * T_END)], rtol=1e-8)
    e = 1e-6
    dk = (_switched_exact(K0 + e, T_ON, T_OFF) - _switched_exact(K0 - e, T_ON, T_OFF)) / (2 * e)
    np.testing.assert_allclose(k.grad.data, dk, rtol=1e-7)


def test_min_step_raises_naming_min_step_and_t():
    def stiff_kink(t, y):  # |y|^(1/2) singularity in the derivative: the steps shrink near y = 0
        return -np.sign(y) * np.abs(y) ** 0.2 * 50

    with pytest.raises(StepSizeUnderflowError, match=r"below options\['min_step'\] = 0\.001.*") as info:
        odeflow.solve(stiff_kink, [1.0], [0.0, 1.0], options={"min_step": 1e-3})
    assert 0.0 < info.value.t < 1.0 and f"t = {info.value.t!r}" in str(info.value)
    with pytest.raises(StepSizeUnderflowError, match=r"options\['min_step'\]"):
        y0 = Tensor(np.array([1.0]), requires_grad=True)
        odeflow.odeint(lambda t, y: -(y * y + 1e-30) ** 0.1 * 50, y0, [0.0, 1.0], options={"min_step": 1e-3})


@pytest.mark.parametrize("key", ["max_step", "min_step", "first_step"])
def test_step_options_below_the_time_resolution_at_t0_are_refused_by_name(key):
    def never(t, y):
        raise AssertionError("must not be evaluated")

    with pytest.raises(InputError, match=rf"`options\['{key}'\]` = 1e-12 is below the time resolution "
                                         rf"at t0 = 1000000\.0"):
        odeflow.solve(never, [1.0], [1e6, 1e6 + 1.0], options={key: 1e-12})
    with pytest.raises(InputError, match=r"`options\['min_step'\]` = 0\.5 exceeds `options\['max_step'\]`"):
        odeflow.solve(never, [1.0], [0.0, 1.0], options={"min_step": 0.5, "max_step": 0.1})


def test_a_two_dimensional_jump_t_is_refused_by_name():
    with pytest.raises(InputError, match=r"jump_t.*1-D.*\(1, 1\)"):
        odeflow.solve(lambda t, y: -y, np.ones(1), [0.0, 1.0], options={"jump_t": [[0.5]]})
