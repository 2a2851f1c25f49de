"""Bad input is refused before any work; solver failures raise with t, h and the partial solution."""
import subprocess
import sys

import numpy as np
import pytest

import odeflow
from odeflow.errors import (InputError, InputTypeError, MaxStepsExceededError,
                            NonFiniteDerivativeError, ShapeError, SolverError,
                            StepSizeUnderflowError, ToleranceWarning)
from problems import decay


def _never_called(t, y):
    raise AssertionError("func must not be evaluated for bad input")


@pytest.mark.parametrize("kwargs, error, pattern", [
    (dict(y0=[1.0, np.nan]), InputError, r"`y0` must be finite; y0\[1\] = nan"),
    (dict(y0=np.array([1 + 2j])), InputTypeError, r"`y0` must be an array of real numbers.*complex"),
    (dict(t=np.zeros((2, 2))), InputError, r"`t` must be 1-D; got shape \(2, 2\)"),
    (dict(t=[]), InputError, r"`t` must hold at least one time"),
    (dict(t=[0.0, 1.0, 1.0, 0.5]), InputError, r"`t` must be non-decreasing or non-increasing.*t\[3\] = 0\.5"),
    (dict(t=[2.0, 2.0, 1.0, 3.0]), InputError, r"t\[3\] = 3\.0 does not continue"),
    (dict(t=[0.0, 1.0, 0.5]), InputError, r"t\[2\] = 0\.5"),
    (dict(t=[1.0, 0.0, 0.5]), InputError, r"t\[2\] = 0\.5"),
    (dict(t=[0.0, np.inf]), InputError, r"`t` must be finite; t\[1\] = inf"),
    (dict(t=["a", "b"]), InputTypeError, r"`t` must be a 1-D array"),
    (dict(method="rk45"), InputError, r"`method` must be one of dopri5, bosh3, tsit5, dop853, euler, midpoint, rk4, radau; got 'rk45'"),
    (dict(rtol=-1e-3), InputError, r"`rtol` must be finite and non-negative; got -0\.001"),
    (dict(atol=np.nan), InputError, r"`atol` must be finite and non-negative"),
    (dict(rtol=10 ** 400), InputError, r"`rtol` must be finite and non-negative; got an integer of 401 digits"),
    (dict(atol=np.ones(3)), ShapeError, r"`atol` of shape \(3,\) does not broadcast to the state shape \(2,\)"),
    (dict(options={"frist_step": 0.1}), InputError, r"`options` key 'frist_step' does not apply.*first_step"),
    (dict(options={"first_step": -1.0}), InputError, r"`options\['first_step'\]` must be a positive"),
    (dict(options={"max_step": 0.0}), InputError, r"`options\['max_step'\]` must be a positive"),
    (dict(options={"max_steps": 2.5}), InputError, r"`options\['max_steps'\]` must be a positive integer"),
    (dict(options={"controller": "pid"}), InputError, r"`options\['controller'\]` must be 'pi' or 'i'; got 'pid'"),
    (dict(options={"step_size": 0.1}), InputError, r"`options` key 'step_size' does not apply to method 'dopri5'"),
    (dict(method="rk4", options={"step_size": 0.0}), InputError, r"`options\['step_size'\]` must be a positive"),
    (dict(options=[("max_steps", 3)]), InputTypeError, r"`options` must be a dict"),
    (dict(func=3), InputTypeError, r"`func` must be callable"),
])
def test_bad_input_is_refused_before_any_evaluation(kwargs, error, pattern):
    args = dict(func=_never_called, y0=np.ones(2), t=[0.0, 1.0])
    args.update(kwargs)
    with pytest.raises(error, match=pattern):
        odeflow.odeint(args.pop("func"), args.pop("y0"), args.pop("t"), **args)


def test_errors_are_one_hierarchy_and_builtin_compatible():
    assert issubclass(InputError, ValueError) and issubclass(InputError, odeflow.OdeflowError)
    assert issubclass(InputTypeError, TypeError)
    for cls in (StepSizeUnderflowError, MaxStepsExceededError, NonFiniteDerivativeError):
        assert issubclass(cls, SolverError) and issubclass(cls, odeflow.OdeflowError)


def test_func_returning_the_wrong_shape_shows_both_shapes():
    with pytest.raises(ShapeError, match=r"shape of `y0` \(2, 3\).*returned shape \(3, 2\)"):
        odeflow.odeint(lambda t, y: y.T, np.ones((2, 3)), [0.0, 1.0])


def test_func_returning_nonsense_is_a_type_error():
    with pytest.raises(InputTypeError, match="`func` must return an array"):
        odeflow.odeint(lambda t, y: "fast", np.ones(2), [0.0, 1.0])


@pytest.mark.parametrize("dtype, expected_floor", [(np.float64, 100 * 2.220446049250313e-16),
                                                   (np.float32, 100 * 1.1920929e-07)])
def test_too_small_rtol_is_raised_with_a_warning(dtype, expected_floor):
    with pytest.warns(ToleranceWarning, match=r"`rtol` = 1e-20 is below 100 \* machine epsilon"):
        y = odeflow.odeint(decay, np.ones(1, dtype), [0.0, 1.0], rtol=1e-20, atol=1e-6)
    assert abs(y[-1, 0] - np.exp(-0.5)) < 1e3 * expected_floor + 1e-6


def test_blow_up_raises_with_partial_solution_and_no_nan_rows():
    # y' = y^2, y(0) = 1: y = 1/(1 - t) blows up at t = 1
    t = np.linspace(0.0, 2.0, 21)
    with pytest.raises(SolverError) as info:
        odeflow.solve(lambda t, y: y * y, np.ones(1), t)
    err = info.value
    assert isinstance(err, (StepSizeUnderflowError, NonFiniteDerivativeError))
    assert 0.99 < err.t < 1.001 and abs(err.h) < 1e-3  # the numerical singularity
    assert f"t = {err.t!r}" in str(err) and "h = " in str(err)
    sol = err.solution
    assert not sol.success and sol.t.size == sol.y.shape[0] and sol.t[-1] <= err.t
    assert sol.t_steps[-1] == err.t and np.all(np.isfinite(sol.y_steps))
    assert np.all(np.isfinite(sol.y))
    early = sol.t < 0.95
    assert early.sum() == 10
    np.testing.assert_allclose(sol.y[early, 0], 1.0 / (1.0 - sol.t[early]), rtol=1e-6)


def test_max_steps_exceeded_names_t_and_h():
    with pytest.raises(MaxStepsExceededError, match=r"options\['max_steps'\] = 5.*at t = .* h = ") as info:
        odeflow.odeint(decay, np.ones(1), [0.0, 100.0], options={"max_steps": 5, "max_step": 0.1})
    assert info.value.solution.stats["n_steps"] == 5
    assert 0.0 < info.value.t < 1.0


def test_fixed_step_max_steps_is_checked_before_work():
    with pytest.raises(MaxStepsExceededError, match="needs about 1000 steps"):
        odeflow.odeint(_never_called, np.ones(1), [0.0, 1.0], method="euler",
                       options={"step_size": 1e-3, "max_steps": 10})


def test_nonfinite_derivative_that_rejection_cannot_cure():
    def f(t, y):
        return np.full_like(y, np.nan) if t > 0.5 else -y
    with pytest.raises(NonFiniteDerivativeError, match="non-finite") as info:
        odeflow.odeint(f, np.ones(2), [0.0, 0.25, 1.0])
    assert 0.4 < info.value.t <= 0.5
    np.testing.assert_allclose(info.value.solution.y[1], np.exp(-0.25), rtol=1e-6)


def test_nonfinite_derivative_at_the_start():
    with pytest.raises(NonFiniteDerivativeError, match=r"func\(t0, y0\)"):
        odeflow.odeint(lambda t, y: np.full_like(y, np.inf), np.ones(1), [0.0, 1.0])


def test_fixed_step_blow_up_stops_without_nan_rows():
    # y' = y^2 from y = 10 with Euler steps of 0.25: the exponent doubles each step until inf
    with pytest.raises(NonFiniteDerivativeError) as info, np.errstate(over="ignore", invalid="ignore"):
        odeflow.odeint(lambda t, y: y * y, np.full(1, 10.0), [0.0, 0.5, 3.0], method="euler",
                       options={"step_size": 0.25})
    assert 1.0 < info.value.t < 3.0 and info.value.solution.t.tolist() == [0.0, 0.5]
    assert np.all(np.isfinite(info.value.solution.y))


def test_interpolate_outside_the_interval():
    sol = odeflow.solve(decay, np.ones(1), [0.0, 1.0])
    with pytest.raises(InputError, match=r"`t_new` must lie in the integrated interval.*t_new\[1\] = 1\.5"):
        sol.interpolate([0.5, 1.5])


def test_import_compiles_nothing():
    code = ("import sys, odeflow; assert 'numba' not in sys.modules, 'numba imported'; "
            "odeflow.OdeflowError; assert 'odeflow.solvers.integrate' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_plain_python_mode_runs_the_same_source():
    # NUMBA_DISABLE_JIT=1 turns every kernel into plain Python: same numbers
    code = ("import numpy as np, odeflow; s = odeflow.solve(lambda t, y: -y, np.ones(2), [0, 1]); "
            "from odeflow.solvers.jit import JIT_DISABLED; assert JIT_DISABLED; "
            "print(repr(float(s.y[-1, 0])), s.stats['nfe'])")
    import os
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env)
    ref = odeflow.solve(lambda t, y: -y, np.ones(2), [0, 1])
    value, nfe = out.stdout.split()
    assert float(value) == ref.y[-1, 0] and int(nfe) == ref.stats["nfe"]


class _Counter:
    """A func that counts its calls (to check that bad input does no work, and nfe)."""

    def __init__(self, f):
        self.f, self.calls = f, 0

    def __call__(self, t, y):
        self.calls += 1
        return self.f(t, y)


@pytest.mark.parametrize("kwargs, error, pattern", [
    (dict(y0=[[1.0, 2.0], [3.0]]), InputTypeError, r"`y0` must be an array of real numbers"),
    (dict(t=np.array([0.0, 1.0 + 1.0j])), InputTypeError, r"`t` must be a 1-D array of real times; got dtype complex"),
    (dict(t=["0", "1"]), InputTypeError, r"`t` must be a 1-D array of real times; got dtype <U1"),
    (dict(rtol="1e-3"), InputTypeError, r"`rtol` must be a real number or array"),
    (dict(options={"first_step": True}), InputError, r"`options\['first_step'\]` must be a positive finite number; got True"),
    (dict(options={"max_step": True}), InputError, r"`options\['max_step'\]` must be a positive number"),
    (dict(method="rk4", options={"step_size": 1e-10}), MaxStepsExceededError, r"needs about 10000000000 steps"),
    (dict(t=[0.0, 1e300], method="euler", options={"step_size": 1.0}), MaxStepsExceededError, r"more than options\['max_steps'\]"),
])
def test_more_bad_input_is_refused_before_any_evaluation(kwargs, error, pattern):
    func = _Counter(lambda t, y: -y)
    args = dict(y0=np.ones(2), t=[0.0, 1.0])
    args.update(kwargs)
    with pytest.raises(error, match=pattern):
        odeflow.odeint(func, args.pop("y0"), args.pop("t"), **args)
    assert func.calls == 0


def test_func_output_is_checked_at_every_evaluation():
    state = {"calls": 0}

    def shrinking(t, y):
        state["calls"] += 1
        return -y if state["calls"] < 5 else -y[:1]
    with pytest.raises(ShapeError, match=r"at t = .* it returned shape \(1,\)"):
        odeflow.odeint(shrinking, np.ones(2), [0.0, 1.0])
    with pytest.raises(InputTypeError, match=r"`func` must return real numbers; at t = .*complex"):
        odeflow.odeint(lambda t, y: -y + (1j if t > 0 else 0), np.ones(2), [0.0, 1.0])
    with pytest.raises(InputTypeError, match=r"returned NoneType"):
        odeflow.odeint(lambda t, y: None, 1.0, [0.0, 1.0])


@pytest.mark.parametrize("method", ["dopri5", "rk4"])
@pytest.mark.parametrize("shape", [(2,), (2, 2)])
def test_jitted_func_changing_its_output_size_is_a_shape_error(method, shape):
    # the compiled loop checks every output's size itself (its copy is element by element)
    import numba

    @numba.njit
    def shrinking(t, y):
        return -y if t < 0.25 else -y[:1]
    with pytest.raises(ShapeError, match=r"shape of `y0` \(2,( 2)?\); in the step starting at "
                                          r"t = .* returned an array of a different size"):
        odeflow.odeint(shrinking, np.ones(shape), [0.0, 1.0], method=method)


@pytest.mark.parametrize("dtype", [">f8", ">f4"])
def test_non_native_byte_order_state_is_solved_in_native_order(dtype):
    y0 = np.array([1.0, -2.0], dtype=dtype)
    native = np.dtype(dtype).newbyteorder("=")
    ys = odeflow.odeint(lambda t, y: -y, y0, [0.0, 1.0], rtol=1e-4)
    assert ys.dtype == native
    assert np.array_equal(ys, odeflow.odeint(lambda t, y: -y, y0.astype(native), [0.0, 1.0], rtol=1e-4))


def test_zero_atol_with_a_zero_component_solves():
    # atol = 0 and y2(0) = 0: the scaled norm must not divide 0 by 0
    sol = odeflow.solve(lambda t, y: np.stack([y[1], -y[0]]), np.array([1.0, 0.0]), [0.0, 10.0],
                        atol=0.0, rtol=1e-8)
    np.testing.assert_allclose(sol.y[-1], [np.cos(10.0), -np.sin(10.0)], rtol=1e-6, atol=1e-7)
    assert sol.stats["nfe"] < 5000


@pytest.mark.parametrize("method, steps", [("euler", 10), ("midpoint", 10), ("rk4", 10)])
def test_fixed_step_nfe_counts_every_evaluation_and_no_sliver_steps(method, steps):
    func = _Counter(lambda t, y: -y)
    # 0.30000000000000004 from the uniform grid must not leave a 5e-17 step next to 0.3
    sol = odeflow.solve(func, np.ones(1), [0.0, 0.3, 1.0], method=method, options={"step_size": 0.1})
    assert sol.stats["n_steps"] == steps
    assert sol.stats["nfe"] == func.calls == steps * odeflow.solvers.tableau.TABLEAUX[method].n_stages


def test_empty_state_needs_no_evaluation():
    func = _Counter(lambda t, y: -y)
    sol = odeflow.solve(func, np.zeros((0, 3)), [0.0, 1.0, 2.0])
    assert sol.y.shape == (3, 0, 3) and func.calls == 0 and sol.stats["nfe"] == 0


def test_tolerance_warning_points_at_the_caller():
    with pytest.warns(ToleranceWarning) as record:
        odeflow.odeint(decay, np.ones(1), [0.0, 1.0], rtol=0.0)
    assert record[0].filename == __file__
