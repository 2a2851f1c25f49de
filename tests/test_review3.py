"""Defects found by the third adversarial review; each test failed on the code before its fix."""
import numba
import numpy as np
import pytest

import odeflow


@numba.njit
def _decay3(t, y, k):   # a 3-D state and a float32 argument: a compiled-loop key no other test uses
    return -k * y


@pytest.mark.parametrize("method", ["rk4", "euler"])
def test_compiled_fixed_step_backwards_after_forwards_is_right(method):
    # old: the backward solve after a forward one (same types) ran the forward solve's compiled
    # entry point on the reversed (negative-stride) grid view: y(-1) = 1.0 (no step taken) or
    # garbage, with status "success"; the right value is e^1 (to the method's accuracy)
    y0 = np.ones((1, 2, 1))
    k = np.float32(1.0)
    opts = {"step_size": 0.01}
    fwd = odeflow.solve(_decay3, y0, [0.0, 1.0], method=method, options=opts, args=(k,))
    back = odeflow.solve(_decay3, y0, [0.0, -0.5, -1.0], method=method, options=opts, args=(k,))
    tol = 1e-8 if method == "rk4" else 2e-2
    np.testing.assert_allclose(fwd.y[-1], np.exp(-1.0), rtol=tol)
    np.testing.assert_allclose(back.y[:, 0, 0, 0], np.exp([0.0, 0.5, 1.0]), rtol=tol)
    py = odeflow.solve(lambda t, y, k: -k * y, y0, [0.0, -0.5, -1.0], method=method, options=opts, args=(k,))
    np.testing.assert_array_equal(back.y, py.y)   # the compiled loop is the Python loop compiled


@numba.njit
def _osc(t, y, w):
    return np.array([y[1], -w * w * y[0]])


@numba.njit
def _sin5(t, y, w):
    return np.sin(5.0 * t) + 0.0 * y[0]


def test_compiled_fixed_step_events_backwards_after_forwards():
    # old: the 4 zeros of sin(5t) on [0, -5] came out as [0, 0, 0, 0] (or a NonFiniteDerivativeError
    # at t = 5e-321) after a forward solve with the same types; they are -k pi / 5
    _sin5.terminal = 4
    opts = {"step_size": 0.05, "event_samples": 3}
    odeflow.solve(_osc, np.array([1.0, 0.0]), [0.0, 5.0], method="rk4", events=[_sin5], args=(2.0,),
                  options=opts)
    back = odeflow.solve(_osc, np.array([1.0, 0.0]), [0.0, -5.0], method="rk4", events=[_sin5], args=(2.0,),
                         options=opts)
    np.testing.assert_allclose(back.t_events[0], -np.pi / 5 * np.arange(1, 5), rtol=1e-6)
    assert back.status == "event"


@numba.njit
def _linear(t, y, M):
    return np.array([M[0, 0] * y[0] + M[0, 1] * y[1], M[1, 0] * y[0] + M[1, 1] * y[1]])


def test_compiled_loop_args_fortran_then_strided_array():
    # old: the compiled-loop key saw neither C- nor F-contiguous for both, so the strided M ran the
    # code compiled for the Fortran M: y(1) = [0.684, 0.99999] instead of [0.484, 0.135]
    M = np.array([[-1.0, 0.5], [0.0, -2.0]])
    big = np.zeros((4, 4))
    big[::2, ::2] = M
    y0 = np.array([1.0, 1.0])
    ref = np.array([np.exp(-1.0) + 0.5 * (np.exp(-1.0) - np.exp(-2.0)), np.exp(-2.0)])  # closed form
    for m in (np.asfortranarray(M), big[::2, ::2], M):
        np.testing.assert_allclose(odeflow.solve(_linear, y0, [0.0, 1.0], args=(m,), rtol=1e-10,
                                                 atol=1e-12).y[-1], ref, rtol=1e-8)


@numba.njit
def _decay_field(t, y, p):
    return -p[0].a * y


def test_compiled_loop_args_record_dtypes_of_one_size():
    # old: both record dtypes have dtype.str '|V16', so the second solve ran code compiled for the
    # first layout and read field b = 3 as a: y(1) = e^-3 = 0.0498 instead of e^-1
    y0 = np.array([1.0])
    for fields in ([("a", "<f8"), ("b", "<f8")], [("b", "<f8"), ("a", "<f8")]):
        p = np.zeros(1, np.dtype(fields))
        p["a"], p["b"] = 1.0, 3.0
        np.testing.assert_allclose(odeflow.solve(_decay_field, y0, [0.0, 1.0], args=(p,), rtol=1e-10,
                                                 atol=1e-12).y[-1], [np.exp(-1.0)], rtol=1e-8)


@numba.njit
def _decay_list(t, y, p):
    return -p[0] * y


def test_compiled_loop_args_typed_lists_of_other_item_types():
    # old: the key was the class numba.typed.List for both, so the int64 list ran the code compiled
    # for the float64 one (1 read as 5e-324): y(1) = 0.99999 instead of e^-1
    from numba.typed import List
    y0 = np.array([1.0])
    for item in (1.0, np.int64(1)):
        p = List()
        p.append(item)
        np.testing.assert_allclose(odeflow.solve(_decay_list, y0, [0.0, 1.0], args=(p,), rtol=1e-10,
                                                 atol=1e-12).y[-1], [np.exp(-1.0)], rtol=1e-8)


@numba.njit
def _ret_f64(t, y):
    return -y


@numba.njit
def _ret_f32(t, y):
    return (-y).astype(np.float32)


@numba.njit
def _ret_int(t, y):
    return -(y.astype(np.int64))


@pytest.mark.parametrize("method", ["dopri5", "rk4"])
def test_compiled_loop_funcs_returning_other_dtypes(method):
    # old: the compiled loop was keyed on func's argument types only, so a func returning float32 or
    # int64 ran the loop compiled for one returning float64 (or the reverse): dopri5 gave
    # y(1) = [-0.9999, 1.99999] for _ret_f32 instead of e^-1 [1, 2]; rk4 raised NonFiniteDerivativeError
    y0 = np.array([1.0, 2.0])
    opts = {"step_size": 0.01} if method == "rk4" else None
    for f in (_ret_f64, _ret_f32, _ret_int, _ret_f64):
        got = odeflow.solve(f, y0, [0.0, 1.0], method=method, options=opts).y[-1]
        ref = odeflow.solve(f.py_func, y0, [0.0, 1.0], method=method, options=opts).y[-1]
        np.testing.assert_allclose(got, ref, rtol=1e-6)
    np.testing.assert_allclose(odeflow.solve(_ret_f32, y0, [0.0, 1.0], method=method, options=opts).y[-1],
                               np.exp(-1.0) * y0, rtol=1e-6)
