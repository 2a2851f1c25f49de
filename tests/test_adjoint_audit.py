"""Issue 11, item 6: the backsolve adjoint audits its reconstruction of y.

The dissipative example of docs/adjoint.md: y1' = -20 y1 feeds y2' = -y2/2 +
theta tanh(y1), L = y2(2). Unaudited backsolve is wrong by ~30x there
(tests/test_adjoint.py); by default the audit now sees the drift and redoes
the interval in checkpoint mode.
"""
import warnings

import numpy as np
import pytest

import odeflow
from odeflow import Tensor
from odeflow.autodiff import ops
from odeflow.errors import GradientAccuracyWarning, GradientError, InputError, InputTypeError

from adjoint_cases import rel
from test_adjoint import Dynamics, _dissipative_grad, _dissipative_reference, _dissipative_setup

T = np.array([0.0, 2.0])


def test_default_backsolve_gives_the_checkpoint_and_backprop_gradient_on_dissipative_dynamics():
    func, W, y0v = _dissipative_setup()
    stats = {}
    default = _dissipative_grad("backsolve", func, W, y0v, T, stats=stats)
    assert stats["backward"]["recomputed"] == 1
    assert stats["backward"]["drift"][0] > 1e3  # the reconstruction left the trajectory
    assert stats["backward"]["nfe_recompute"] > 0
    for mode in ("checkpoint", "backprop"):
        assert rel(default, _dissipative_grad(mode, func, W, y0v, T)) <= 1e-4, mode
    assert rel(default, _dissipative_reference(func, W, y0v, T)) <= 1e-3


def test_on_drift_warn_warns_naming_the_interval_and_raise_raises():
    func, W, y0v = _dissipative_setup()
    with pytest.warns(GradientAccuracyWarning, match=r"drifted by .* over interval 0 \[t = 0\.0, 2\.0\]"
                                                     r".*adjoint_mode='checkpoint'"):
        _dissipative_grad("backsolve", func, W, y0v, T, adjoint_options={"on_drift": "warn"})
    with pytest.raises(GradientError, match=r"drifted by .* over interval 0"):
        _dissipative_grad("backsolve", func, W, y0v, T, adjoint_options={"on_drift": "raise"})
    # a threshold above the drift lets it pass silently
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _dissipative_grad("backsolve", func, W, y0v, T,
                          adjoint_options={"on_drift": "warn", "drift_tol": 1e12})


def test_well_conditioned_solve_costs_no_extra_evaluation_for_the_audit():
    rng = np.random.default_rng(2)
    func = Dynamics(2, 16, rng)
    y0 = Tensor(rng.normal(size=(8, 2)))
    out = {}
    for policy in ("recompute", "ignore"):
        func.zero_grad()
        stats = {}
        ys = odeflow.odeint_adjoint(func, y0, np.linspace(0.0, 2.0, 4), rtol=1e-6, atol=1e-6,
                                    stats=stats, adjoint_options={"on_drift": policy})
        ops.sum(ys ** 2).backward()
        out[policy] = (stats["backward"], [p.grad.data.copy() for p in func.parameters()])
    back = out["recompute"][0]
    assert back["recomputed"] == 0 and len(back["drift"]) == 3
    assert max(back["drift"]) < odeflow.adjoint.audit.DRIFT_TOL
    assert back["nfe"] == out["ignore"][0]["nfe"]
    for a, b in zip(out["recompute"][1], out["ignore"][1]):
        np.testing.assert_array_equal(a, b)


def test_checkpoint_mode_reports_no_drift():
    stats = {}
    ys = odeflow.odeint_adjoint(lambda t, y: -y, Tensor(np.ones(2), requires_grad=True), [0.0, 1.0],
                                adjoint_mode="checkpoint", stats=stats)
    ops.sum(ys).backward()
    assert stats["backward"]["drift"] is None and stats["backward"]["recomputed"] == 0


@pytest.mark.parametrize("options, error, pattern", [
    ({"on_drift": "fix"}, InputError, r"`adjoint_options\['on_drift'\]` must be one of recompute, warn, "
                                      r"raise, ignore; got 'fix'"),
    ({"drift_tol": -1.0}, InputError, r"`adjoint_options\['drift_tol'\]` must be positive; got -1.0"),
    ({"drift_tol": float("nan")}, InputError, r"`adjoint_options\['drift_tol'\]` must be positive"),
    ({"drift_tol": "10"}, InputTypeError, r"`adjoint_options\['drift_tol'\]` must be a number; got str"),
])
def test_bad_audit_options_are_refused_before_any_evaluation(options, error, pattern):
    calls = []

    def func(t, y):
        calls.append(t)
        return -y
    with pytest.raises(error, match=pattern):
        odeflow.odeint_adjoint(func, Tensor(np.ones(2)), [0.0, 1.0], adjoint_options=options)
    assert not calls


def test_only_the_interval_that_drifted_is_recomputed():
    # on [0, 0.3] y1 decays by e^6 only (drift ~9 tolerances, below drift_tol); on [0.3, 2] by e^34
    func, W, y0v = _dissipative_setup()
    t = np.array([0.0, 0.3, 2.0])
    stats = {}
    default = _dissipative_grad("backsolve", func, W, y0v, t, stats=stats)
    drift = stats["backward"]["drift"]
    assert drift[0] < odeflow.adjoint.audit.DRIFT_TOL < drift[1]
    assert stats["backward"]["recomputed"] == 1
    assert rel(default, _dissipative_grad("checkpoint", func, W, y0v, t)) <= 1e-4


def test_a_backsolve_that_fails_outright_is_recomputed_by_default():
    # max_steps = 80: the reconstruction needs ~124 backward steps, checkpoint's pass ~48
    func, W, y0v = _dissipative_setup()
    options = {"max_steps": 80}
    stats = {}
    default = _dissipative_grad("backsolve", func, W, y0v, T, adjoint_options=options, stats=stats)
    assert stats["backward"]["drift"] == [float("inf")] and stats["backward"]["recomputed"] == 1
    assert rel(default, _dissipative_grad("checkpoint", func, W, y0v, T)) <= 1e-4
    with pytest.raises(odeflow.MaxStepsExceededError, match="adjoint backward solve"):
        _dissipative_grad("backsolve", func, W, y0v, T, adjoint_options=dict(options, on_drift="ignore"))
