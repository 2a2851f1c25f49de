"""solve_ensemble: compiled, parallel, per-member status (odeflow.solvers.ensemble).

One jitted func serves every test (each new func costs a Numba compile of the
whole loop, several seconds).
"""
import math
import os
import sys

import numba
import numpy as np
import pytest

import odeflow
from odeflow.errors import InputError, InputTypeError, ShapeError


@numba.njit
def riccati(t, y, a):
    """y' = a y^2 (blows up at t = 1/(a y0) for a y0 > 0); a < -100 returns a wrong-size array."""
    out = np.empty(2 if a < -100.0 else 1)
    out[0] = a * y[0] * y[0]
    return out


T = np.array([0.0, 0.25, 0.5, 1.0])


def test_members_identical_to_a_serial_loop_and_to_solve():
    a = np.array([0.3, -1.0, 0.9, 0.0, -0.2, 0.5, 0.7])
    y0s = np.ones((a.size, 1))
    par = odeflow.solve_ensemble(riccati, y0s, T, args=(a,), workers=2, chunk_size=2)
    ser = odeflow.solve_ensemble(riccati, y0s, T, args=(a,), workers=1)
    assert par.y.shape == (7, 4, 1) and par.success.all() and par.stats["chunks"] == 4
    assert np.array_equal(par.y, ser.y)
    for key in ("nfe", "n_accepted", "n_rejected"):
        assert np.array_equal(par.stats[key], ser.stats[key])
    for i in range(a.size):  # each member is exactly the compiled solve of that member
        ref = odeflow.solve(lambda t, y: riccati(t, y, a[i]), y0s[i], T)
        assert np.array_equal(par.y[i], ref.y) and par.stats["nfe"][i] == ref.stats["nfe"]
    exact = 1.0 / (1.0 - a[:, None] * T[None])  # y0 = 1
    np.testing.assert_allclose(par.y[:, :, 0], exact, rtol=1e-6)


def test_failing_members_reported_while_the_others_succeed():
    a = np.array([0.5, 2.0, -1.0, 1e300, -200.0, 0.1])
    y0s = np.array([[1.0], [1.0], [1.0], [1e10], [1.0], [1.0]])  # member 3: a y0^2 overflows to inf
    sol = odeflow.solve_ensemble(riccati, y0s, T, args=(a,), workers=2, chunk_size=1)
    assert list(sol.status) == ["success", "step_size_underflow", "success", "nonfinite_derivative",
                                "bad_output_size", "success"]
    assert "step size underflow at t = 0.5" in sol.messages[1]
    assert "func(t0, y0) returned non-finite" in sol.messages[3]
    assert "different size" in sol.messages[4]
    with pytest.raises(odeflow.StepSizeUnderflowError) as alone:  # the same member by solve()
        odeflow.solve(lambda t, y: riccati(t, y, 2.0), np.ones(1), T)
    assert sol.rows[1] == alone.value.solution.y.shape[0] and sol.rows[3] == 1
    assert np.array_equal(sol.y[1, :sol.rows[1]], alone.value.solution.y)
    assert np.isnan(sol.y[1, sol.rows[1]:]).all() and np.isfinite(sol.y[1, :sol.rows[1]]).all()
    good = odeflow.solve_ensemble(riccati, np.ones((2, 1)), T, args=(a[[0, 5]],), workers=1)
    assert np.array_equal(sol.y[[0, 5]], good.y)


def test_python_func_fallback_matches_the_compiled_path():
    a = np.array([0.3, 2.0, -0.5])

    def py(t, y, a):
        return np.array([a * y[0] * y[0]])

    slow = odeflow.solve_ensemble(py, np.ones((3, 1)), T, args=(a,))
    fast = odeflow.solve_ensemble(riccati, np.ones((3, 1)), T, args=(a,), workers=1)
    assert list(slow.status) == list(fast.status)
    np.testing.assert_allclose(slow.y[[0, 2]], fast.y[[0, 2]], rtol=1e-14)
    assert np.array_equal(slow.stats["nfe"][[0, 2]], fast.stats["nfe"][[0, 2]])
    assert "underflow" in slow.messages[1]


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(args=(np.ones(4),)), ShapeError, r"`args\[0\]` of shape \(4,\) must have a leading axis of length 3"),
    (dict(args=[np.ones(3)]), InputTypeError, r"`args` must be a tuple"),
    (dict(args=(np.ones(3),) * 5), InputError, r"at most 4"),
    (dict(y0s=np.ones(3)), ShapeError, r"`y0s` must have shape \(members, \*state shape\)"),
    (dict(y0s=[[1.0], [1.0, 2.0]]), InputTypeError, r"`y0s`"),
    (dict(method="rk4"), InputError, r"adaptive methods"),
    (dict(t=[0.0, 1.0, 0.5]), InputError, r"`t` must be non-decreasing or non-increasing.*t\[2\] = 0\.5"),
    (dict(t=[0.0, 1.0, 1.0]), InputError, r"`t` must not repeat a time for solve_ensemble; t\[2\]"),
    (dict(workers=0), InputError, r"`workers` must be a positive int"),
    (dict(chunk_size=0), InputError, r"`chunk_size` must be a positive int"),
    (dict(func=3), InputTypeError, r"`func` must be callable"),
])
def test_bad_input(kwargs, error, match):
    kw = dict(func=riccati, y0s=np.ones((3, 1)), t=T, args=(np.ones(3),))
    kw.update(kwargs)
    with pytest.raises(error, match=match):
        odeflow.solve_ensemble(kw.pop("func"), kw.pop("y0s"), kw.pop("t"), **kw)


def test_trivial_ensembles():
    one_time = odeflow.solve_ensemble(riccati, np.ones((2, 1)), [0.0], args=(np.ones(2),))
    assert one_time.y.shape == (2, 1, 1) and one_time.success.all()
    empty = odeflow.solve_ensemble(riccati, np.ones((0, 1)), T, args=(np.ones(0),))
    assert empty.y.shape == (0, 4, 1)
    assert math.isfinite(empty.stats["wall_seconds"])


def test_dask_run_identical_to_the_local_run():
    """client=: a LocalCluster of 2 worker processes, started and stopped here."""
    distributed = pytest.importorskip("distributed")  # the [dask] extra; [dev] installs it
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this module
    a = np.linspace(-1.0, 0.9, 23)
    a[7] = 3.0  # blows up at t = 1/3: reported, the others unaffected
    y0s = np.ones((a.size, 1))
    local = odeflow.solve_ensemble(riccati, y0s, T, args=(a,), workers=1)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address="127.0.0.1:0", silence_logs=40) as cluster, \
            distributed.Client(cluster) as client:
        remote = odeflow.solve_ensemble(riccati, y0s, T, args=(a,), client=client, chunk_size=5)
        pids = set(client.run(os.getpid).values())
    assert remote.stats["chunks"] == 5 and remote.stats["workers"] == 2 and len(pids) == 2
    assert os.getpid() not in pids
    assert np.array_equal(remote.y, local.y, equal_nan=True)
    assert list(remote.status) == list(local.status) and remote.status[7] == "step_size_underflow"
    assert remote.messages == local.messages
    for key in ("nfe", "n_accepted", "n_rejected"):
        assert np.array_equal(remote.stats[key], local.stats[key])
