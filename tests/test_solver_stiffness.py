"""Hairer's stiffness test and the explanation of failed solves."""
import re

import numpy as np
import pytest
from scipy.integrate import solve_ivp

import odeflow
from odeflow.errors import MaxStepsExceededError, NonFiniteDerivativeError, StepSizeUnderflowError
from problems import ARENSTORF_T, ARENSTORF_Y0, arenstorf, van_der_pol

MU = 1000.0


def _vdp(t, y):
    return van_der_pol(t, y, MU)


def _slow_manifold_entry():
    """First t where y2 is within 10 % of the slow manifold y2 = y1 / (mu (1 - y1^2)),
    from scipy's Radau (independent of odeflow)."""
    ref = solve_ivp(_vdp, (0.0, 0.02), [2.0, 0.0], method="Radau", rtol=1e-9, atol=1e-9, dense_output=True)
    t = np.linspace(0.0, 0.02, 20001)
    y = ref.sol(t)
    slow = y[0] / (MU * (1.0 - y[0] ** 2))
    return t[np.argmax(np.abs(y[1] - slow) < 0.1 * np.abs(slow))]


@pytest.mark.parametrize("method", ["dopri5", "tsit5"])
def test_van_der_pol_failure_says_the_problem_is_stiff_and_where(method):
    with pytest.raises(MaxStepsExceededError) as info:
        odeflow.solve(_vdp, [2.0, 0.0], [0.0, 3000.0], rtol=1e-6, atol=1e-6, method=method,
                      options={"max_steps": 2000})
    message = str(info.value)
    stiff_at = info.value.solution.stats["stiff_at"]
    assert "appears stiff from t = " in message and 'method="radau"' in message
    assert f"t = {stiff_at!r}" in message
    # the fast transient lasts ~1/(3 mu); the slow phase lasts ~0.8 mu: the test fires
    # within a few milliseconds of the solution reaching its slow manifold
    entry = _slow_manifold_entry()
    assert 0.0007 < entry < 0.001
    assert entry < stiff_at < entry + 0.005


def test_a_nonstiff_solve_is_not_called_stiff():
    for method in ("dopri5", "tsit5", "dop853"):
        sol = odeflow.solve(arenstorf, ARENSTORF_Y0, [0.0, ARENSTORF_T], rtol=1e-8, atol=1e-8, method=method)
        assert sol.stats["stiff_at"] is None


def test_the_failure_names_the_component_that_dominated_the_error():
    # shape (2, 2); only y[1, 0] blows up (y' = y^2 from 1: y = 1/(1 - t)), the others decay
    def func(t, y):
        out = -0.1 * y
        out[1, 0] = y[1, 0] ** 2
        return out

    with pytest.raises((StepSizeUnderflowError, NonFiniteDerivativeError)) as info:
        odeflow.solve(func, np.ones((2, 2)), [0.0, 2.0], rtol=1e-8, atol=1e-8)
    message = str(info.value)
    assert re.search(r"dominated by y\[1, 0\] = [0-9.e+]+ \(100%\)", message), message
    assert "stiff" not in message.split("?)")[-1]  # no stiffness claim for a blow-up


def test_stiff_at_is_none_for_methods_without_the_test():
    sol = odeflow.solve(_vdp, [2.0, 0.0], [0.0, 0.05], method="bosh3", rtol=1e-4, atol=1e-4)
    assert sol.stats["stiff_at"] is None
