"""Events in solve(): roots of g(t, y) on the dense interpolant, against closed forms and scipy."""
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import odeflow
from odeflow.errors import InputError, InputTypeError

ALL_METHODS = ("dopri5", "bosh3", "euler", "midpoint", "rk4")


def _unit_speed(t, y):
    return np.ones_like(y)


def _oscillator(t, y):  # y = (cos t, -sin t)
    return np.array([y[1], -y[0]])


def _never_called(t, y):
    raise AssertionError("func must not be evaluated for bad input")


def _event(fn, terminal=None, direction=None):
    if terminal is not None:
        fn.terminal = terminal
    if direction is not None:
        fn.direction = direction
    return fn


@pytest.mark.parametrize("method", ALL_METHODS)
def test_cubic_with_three_roots_all_found_to_1e12(method):
    # y(t) = t exactly for every method, so the roots of g are those of the cubic
    roots = (0.5, 1.7, 2.9)

    def cubic(t, y):
        return (y[0] - roots[0]) * (y[0] - roots[1]) * (y[0] - roots[2])

    sol = odeflow.solve(_unit_speed, [0.0], [0.0, 4.0], method=method, events=cubic)
    assert sol.status == "success"
    np.testing.assert_allclose(sol.t_events[0], roots, rtol=0, atol=1e-12)
    np.testing.assert_allclose(sol.y_events[0][:, 0], roots, rtol=0, atol=1e-12)
    assert sol.y_events[0].shape == (3, 1)


def test_several_roots_inside_one_step():
    def wave(t, y):
        return np.sin(2 * np.pi * t)

    sol = odeflow.solve(_unit_speed, [0.0], [0.0, 1.9], method="rk4", events=wave)
    assert sol.stats["n_steps"] == 1
    np.testing.assert_allclose(sol.t_events[0], [0.5, 1.0, 1.5], rtol=0, atol=1e-12)


def test_cubic_roots_on_a_curved_solution_match_the_closed_form():
    # y = exp(t): the roots of (y - 2)(y - 3)(y - 5) are log 2, log 3, log 5
    def cubic(t, y):
        return (y[0] - 2.0) * (y[0] - 3.0) * (y[0] - 5.0)

    sol = odeflow.solve(lambda t, y: y, [1.0], [0.0, 2.0], rtol=1e-12, atol=1e-14, events=cubic)
    np.testing.assert_allclose(sol.t_events[0], np.log([2.0, 3.0, 5.0]), rtol=0, atol=1e-11)


def test_root_exactly_on_a_step_boundary_is_counted_once():
    sol = odeflow.solve(_unit_speed, [0.0], [0.0, 0.5, 1.0], method="euler",
                        events=lambda t, y: y[0] - 0.5)
    np.testing.assert_array_equal(sol.t_events[0], [0.5])
    # adaptive: an event placed on a step boundary of the same solve (events do not change the steps)
    plain = odeflow.solve(_oscillator, [1.0, 0.0], [0.0, 10.0])
    boundary = plain.t_steps[3]
    sol = odeflow.solve(_oscillator, [1.0, 0.0], [0.0, 10.0], events=lambda t, y: t - boundary)
    np.testing.assert_array_equal(sol.t_steps, plain.t_steps)
    np.testing.assert_array_equal(sol.t_events[0], [boundary])


def test_a_zero_at_t0_is_not_an_event():
    sol = odeflow.solve(_unit_speed, [0.0], [0.0, 1.0], events=[lambda t, y: y[0], lambda t, y: t])
    assert [e.size for e in sol.t_events] == [0, 0]
    # but the next crossing is: g = sin(2 pi t) is zero at t0 and crosses at 0.5
    sol = odeflow.solve(_unit_speed, [0.0], [0.0, 0.7], events=lambda t, y: np.sin(2 * np.pi * t))
    np.testing.assert_allclose(sol.t_events[0], [0.5], atol=1e-12)


def test_terminal_event_stops_the_solve_and_drops_later_outputs():
    def ground(t, y):
        return y[0]

    def f(t, y):
        return np.array([y[1], -9.81])

    t_hit = np.sqrt(2 * 10.0 / 9.81)
    sol = odeflow.solve(f, [10.0, 0.0], np.linspace(0.0, 3.0, 7), rtol=1e-10, atol=1e-12,
                        events=_event(ground, terminal=True, direction=-1))
    assert sol.status == "event" and sol.success
    assert "events[0] (ground)" in sol.message
    np.testing.assert_allclose(sol.t_events[0], [t_hit], rtol=0, atol=1e-12)
    np.testing.assert_allclose(sol.y_events[0][0], [0.0, -9.81 * t_hit], rtol=0, atol=1e-11)
    np.testing.assert_array_equal(sol.t, np.linspace(0.0, 3.0, 7)[:3])  # 0, 0.5, 1.0 <= t_hit
    np.testing.assert_allclose(sol.y[:, 0], 10.0 - 0.5 * 9.81 * sol.t ** 2, atol=1e-10)
    assert sol.t_steps[-1] == sol.t_events[0][0]
    np.testing.assert_allclose(sol.interpolate(t_hit), sol.y_events[0][0], atol=1e-12)
    with pytest.raises(InputError, match="integrated interval"):
        sol.interpolate(1.5)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_terminal_event_with_every_method(method):
    ground = _event(lambda t, y: y[0] - 0.25, terminal=True)
    sol = odeflow.solve(_unit_speed, [0.0], [0.0, 0.1, 0.6], method=method, events=ground,
                        options={"step_size": 0.1} if method in ("euler", "midpoint", "rk4") else None)
    assert sol.status == "event"
    np.testing.assert_allclose(sol.t_events[0], [0.25], atol=1e-12)
    np.testing.assert_array_equal(sol.t, [0.0, 0.1])
    np.testing.assert_allclose(sol.y_steps[-1], [0.25], atol=1e-12)


def _scipy_events():
    """Events on the oscillator y = (cos t, -sin t): each with a closed form."""
    def cos_up(t, y):       # cos t = 0 going up: t = 3 pi / 2 + 2 k pi
        return y[0]

    def sin_any(t, y):      # sin t = 0.5: t = pi/6, 5 pi/6, ... (both directions)
        return -y[1] - 0.5

    def cos_down_3(t, y):   # cos t = -0.3 going down, stop at the 3rd
        return y[0] + 0.3

    cos_up.direction = 1
    cos_down_3.direction = -1
    cos_down_3.terminal = 3
    return [cos_up, sin_any, cos_down_3]


@pytest.mark.parametrize("span", [(0.0, 25.0), (25.0, 0.0)])
def test_event_times_direction_and_terminal_counts_agree_with_scipy(span):
    events = _scipy_events()
    y0 = [np.cos(span[0]), -np.sin(span[0])]
    ref = solve_ivp(_oscillator, span, y0, method="RK45", rtol=1e-12, atol=1e-12, events=events)
    sol = odeflow.solve(_oscillator, y0, list(span), rtol=1e-12, atol=1e-12, events=events)
    assert (sol.status == "event") == (ref.status == 1)
    for ours, theirs, y_ours, y_theirs in zip(sol.t_events, ref.t_events, sol.y_events, ref.y_events):
        assert ours.shape == theirs.shape and y_ours.shape == y_theirs.shape
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-9)
        np.testing.assert_allclose(y_ours, y_theirs, rtol=0, atol=1e-9)
    if span[0] == 0.0:  # closed forms, forwards
        k = np.arange(3)
        np.testing.assert_allclose(sol.t_events[0], 1.5 * np.pi + 2 * np.pi * k[:2], atol=1e-10)
        a = np.arccos(-0.3)
        np.testing.assert_allclose(sol.t_events[2], a + 2 * np.pi * k, atol=1e-10)
        s = np.sort(np.concatenate([np.pi / 6 + 2 * np.pi * k, 5 * np.pi / 6 + 2 * np.pi * k]))
        np.testing.assert_allclose(sol.t_events[1], s[s < sol.t_events[2][-1]], atol=1e-10)


def test_no_events_means_none_and_no_occurrence_means_empty_arrays():
    sol = odeflow.solve(_unit_speed, [0.0], [0.0, 1.0])
    assert sol.t_events is None and sol.y_events is None
    sol = odeflow.solve(_unit_speed, np.zeros((2, 3)), [0.0, 1.0], events=lambda t, y: y[0, 0] + 5)
    assert sol.t_events[0].shape == (0,) and sol.y_events[0].shape == (0, 2, 3)


def test_events_see_the_state_in_its_shape_and_the_state_is_a_copy():
    seen = []

    def grab(t, y):
        seen.append(y)
        return y[1, 2] - 0.5

    sol = odeflow.solve(_unit_speed, np.zeros((2, 3)), [0.0, 1.0], events=grab)
    assert seen[0].shape == (2, 3)
    assert len({id(y) for y in seen}) == len(seen)   # not one reused buffer
    np.testing.assert_allclose(sol.t_events[0], [0.5], atol=1e-12)
    assert sol.y_events[0].shape == (1, 2, 3)


@pytest.mark.parametrize("events, error, pattern", [
    (3.0, InputTypeError, r"`events` must be a callable"),
    ([lambda t, y: 0.0, "x"], InputTypeError, r"`events\[1\]` must be callable"),
    (_event(lambda t, y: y[0], direction=2), InputError, r"events\[0\] \(<lambda>\).*`direction` must be -1, 0 or 1; got 2"),
    (_event(lambda t, y: y[0], direction="up"), InputError, r"`direction` must be -1, 0 or 1"),
    (_event(lambda t, y: y[0], terminal=-1), InputError, r"`terminal` must be a bool or a non-negative integer.*got -1"),
    (_event(lambda t, y: y[0], terminal=1.5), InputError, r"`terminal`.*got 1\.5"),
])
def test_bad_event_attributes_are_refused_before_any_evaluation(events, error, pattern):
    with pytest.raises(error, match=pattern):
        odeflow.solve(_never_called, [1.0], [0.0, 1.0], events=events)


def test_event_function_faults_name_the_event():
    def vector(t, y):
        return y

    def boom(t, y):
        if t > 0.3:
            raise ZeroDivisionError("no")
        return 1.0

    def blowup(t, y):
        return np.inf if t > 0.3 else 1.0

    def at_start(t, y):
        return np.nan

    ok = lambda t, y: y[0] - 0.1  # noqa: E731
    with pytest.raises(InputError, match=r"events\[0\] \(vector\) must return a scalar.*shape \(2,\)"):
        odeflow.solve(_unit_speed, [0.0, 0.0], [0.0, 1.0], events=vector)
    with pytest.raises(InputError, match=r"events\[1\] \(boom\) raised ZeroDivisionError at t = .*: no"):
        odeflow.solve(_unit_speed, [0.0, 0.0], [0.0, 1.0], events=[ok, boom])
    with pytest.raises(InputError, match=r"events\[0\] \(blowup\) returned inf at t = "):
        odeflow.solve(_unit_speed, [0.0, 0.0], [0.0, 1.0], events=blowup)
    with pytest.raises(InputError, match=r"events\[0\] \(at_start\) returned nan at t = 0\.0"):
        odeflow.solve(_unit_speed, [0.0, 0.0], [0.0, 1.0], events=at_start, method="rk4")


def test_odeint_refuses_events_and_points_to_solve_and_odeint_event():
    from odeflow.solvers.integrate import odeint as odeint_arrays
    for odeint in (odeflow.odeint, odeint_arrays):
        with pytest.raises(InputError, match=r"`events`.*odeflow\.solve.*odeflow\.odeint_event"):
            odeint(_never_called, [1.0], [0.0, 1.0], events=lambda t, y: y[0])


def test_events_cost_no_function_evaluations():
    plain = odeflow.solve(_oscillator, [1.0, 0.0], [0.0, 20.0])
    sol = odeflow.solve(_oscillator, [1.0, 0.0], [0.0, 20.0], events=_scipy_events()[:2])
    assert sol.stats == plain.stats
    np.testing.assert_array_equal(sol.y, plain.y)


def test_event_samples_trades_roots_per_step_for_speed():
    def wave(t, y):
        return np.sin(2 * np.pi * (t + 0.1))   # zeros at 0.4, 0.9, 1.4 inside one rk4 step

    found = {s: odeflow.solve(_unit_speed, [0.0], [0.0, 1.9], method="rk4", events=wave,
                              options={"event_samples": s}).t_events[0] for s in (1, 2, 4)}
    assert found[1].size == 1          # step ends only (as scipy): one sign change over the step
    np.testing.assert_allclose(found[4], [0.4, 0.9, 1.4], atol=1e-12)
    assert found[2].size == 1          # two of the three roots share a sub-interval: invisible
    with pytest.raises(InputError, match=r"`options\['event_samples'\]` must be a positive integer; got 0"):
        odeflow.solve(_never_called, [0.0], [0.0, 1.0], events=wave, options={"event_samples": 0})


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_two_events_in_one_sub_interval_are_both_located_on_the_solution(order):
    # y = t; roots 0.3 and 0.31 fall in the same quarter of one step. Old code: refining the first
    # event reused the interpolation buffer holding the sample's state, so the second event function
    # was evaluated on a refinement iterate, its crossing was pushed into the next sub-interval and
    # "located" there at 0.333325 (error 0.023) when g0 came first in the list
    def g0(t, y):
        return y[0] - 0.3

    def g1(t, y):
        return y[0] - 0.31
    events = [(g0, g1)[i] for i in order]
    sol = odeflow.solve(lambda t, y: np.ones(1), np.array([0.0]), np.array([0.0, 1.0]), events=events)
    roots = {g0: 0.3, g1: 0.31}
    for fn, t_ev, y_ev in zip(events, sol.t_events, sol.y_events):
        np.testing.assert_allclose(t_ev, [roots[fn]], rtol=0, atol=1e-12)
        np.testing.assert_allclose(y_ev[:, 0], [roots[fn]], rtol=0, atol=1e-12)
