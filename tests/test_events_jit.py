"""Events inside the compiled loop: an @njit func with @njit event functions.

One compiled loop for the whole file (Numba compiles it once per process and
per func, events and kind): every test below reuses the same func, events and
state shape.
"""
import math

import numba
import numpy as np
import pytest

import odeflow
from odeflow.errors import InputError

G = 9.81


@numba.njit
def fall(t, y):
    return np.array([y[1], -G])


@numba.njit
def speed_5(t, y):          # v = -5: t = (5 + v0) / g
    return y[1] + 5.0


@numba.njit
def ground(t, y):           # h = 0, terminal, going down
    return y[0] * math.sqrt(y[1] + 30.0)   # NaN once v < -30 (never before the ground for h0 = 10)


ground.terminal = True
ground.direction = -1
EVENTS = [speed_5, ground]


def _python(fn):
    return fn.py_func


def test_compiled_events_match_the_python_loop_and_the_closed_form():
    y0, t = np.array([10.0, 0.0]), np.linspace(0.0, 3.0, 7)
    kw = dict(rtol=1e-10, atol=1e-12)
    jit = odeflow.solve(fall, y0, t, events=EVENTS, **kw)
    py_events = [_python(speed_5), _python(ground)]
    py_events[1].terminal, py_events[1].direction = True, -1
    py = odeflow.solve(_python(fall), y0, t, events=py_events, **kw)
    assert jit.status == py.status == "event" and "events[1] (ground)" in jit.message
    for key in ("nfe", "n_steps", "n_accepted", "n_rejected"):
        assert jit.stats[key] == py.stats[key]
    for a, b in zip(jit.t_events, py.t_events):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-14)
    np.testing.assert_allclose(jit.y, py.y, rtol=0, atol=1e-13)
    np.testing.assert_allclose(jit.t_events[0], [5.0 / G], rtol=0, atol=1e-12)
    np.testing.assert_allclose(jit.t_events[1], [math.sqrt(2 * 10.0 / G)], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(jit.t, t[:3])


def test_compiled_event_returning_nan_names_the_event():
    # thrown down at 25 m/s from 100 m: v < -30 (g = NaN) long before the ground
    with pytest.raises(InputError, match=r"events\[1\] \(ground\) returned a non-finite value"):
        odeflow.solve(fall, np.array([100.0, -25.0]), np.linspace(0.0, 3.0, 7), events=EVENTS,
                      rtol=1e-10, atol=1e-12)
