"""Per-sample adaptive stepping: solve(..., batch_axis=...) (odeflow.solvers.batch)."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import odeflow
from odeflow import solve_batch
from odeflow.errors import InputError, InputTypeError, ShapeError, StepSizeUnderflowError


def vdp(t, y, mu):
    """Van der Pol, samples along axis 0: y (k, 2), mu (k,); element-wise, so row-independent."""
    x, v = y[:, 0], y[:, 1]
    return np.stack([v, mu * (1.0 - x * x) * v - x], axis=1)


def vdp_one(mu):
    return lambda t, y: vdp(t, y[None], np.array([mu]))[0]


TOL = dict(rtol=1e-6, atol=1e-8)


def test_each_sample_as_solved_alone_bitwise():
    rng = np.random.default_rng(0)
    mu = rng.uniform(0.1, 10.0, 5)
    y0 = rng.uniform(-2, 2, (5, 2))
    t = np.linspace(0.0, 6.0, 7)
    sol = solve_batch(vdp, y0, t, 0, args=(mu,), **TOL)
    assert sol.success and sol.t.shape == (7,) and sol.y.shape == (7, 5, 2)
    for b in range(5):
        alone = odeflow.solve(vdp_one(mu[b]), y0[b], t, **TOL)  # the plain (unbatched) solver
        assert np.array_equal(sol.y[:, b], alone.y)
        for key in ("nfe", "n_steps", "n_accepted", "n_rejected"):
            assert sol.stats[key][b] == alone.stats[key]
    assert list(sol.stats["status"]) == ["success"] * 5
    assert sol.stats["sample_evaluations"] == sol.stats["nfe"].sum()
    # the hard sample needs more evaluations than the easy one: stats really are per sample
    assert sol.stats["nfe"][np.argmax(mu)] > sol.stats["nfe"][np.argmin(mu)]


def test_per_sample_times_against_closed_form_and_alone():
    # y' = -k y (k per sample), each sample on its own irregular times, one of them backwards
    k = np.array([0.5, 2.0, 1.0])
    t = np.array([[0.0, 0.3, 1.1, 2.0], [1.0, 1.2, 1.25, 3.0], [2.0, 1.5, 0.2, -1.0]])
    y0 = np.array([[1.0], [2.0], [-1.0]])

    def decay(t, y, k):
        return -k[:, None] * y

    sol = solve_batch(decay, y0, t, 0, args=(k,), rtol=1e-10, atol=1e-12)
    assert sol.t.shape == (3, 4) and np.array_equal(sol.t, t)
    exact = y0[:, 0][None] * np.exp(-k[None] * (t.T - t[:, 0][None]))
    np.testing.assert_allclose(sol.y[:, :, 0], exact, rtol=1e-8)
    for b in range(3):
        alone = odeflow.solve(lambda s, y: -k[b] * y, y0[b], t[b], rtol=1e-10, atol=1e-12)
        assert np.array_equal(sol.y[:, b], alone.y)
        assert sol.stats["nfe"][b] == alone.stats["nfe"]


def test_batch_axis_not_first_and_negative():
    rng = np.random.default_rng(1)
    mu = rng.uniform(0.1, 5.0, 4)
    y0 = rng.uniform(-1, 1, (4, 2))
    t = np.linspace(0.0, 3.0, 4)

    def vdp_last(t, y, mu):  # samples along the last axis: y (2, k)
        return vdp(t, y.T, mu).T

    ref = solve_batch(vdp, y0, t, 0, args=(mu,), **TOL)
    sol = solve_batch(vdp_last, y0.T.copy(), t, -1, args=(mu,), **TOL)
    assert sol.y.shape == (4, 2, 4)
    assert np.array_equal(sol.y, np.swapaxes(ref.y, 1, 2))
    assert np.array_equal(sol.stats["nfe"], ref.stats["nfe"])


def test_odeint_batch_axis_returns_the_array():
    y0 = np.array([[1.0], [3.0]])
    y = odeflow.odeint(lambda t, y: -y, y0, [0.0, 1.0], batch_axis=0, rtol=1e-10, atol=1e-12)
    assert isinstance(y, np.ndarray) and y.shape == (2, 2, 1)
    np.testing.assert_allclose(y[1, :, 0], y0[:, 0] * math.exp(-1.0), rtol=1e-8)


def test_t_is_an_array_of_own_times_or_a_float_when_all_agree():
    seen = []

    def f(t, y):
        seen.append(t)
        return -y

    # identical samples: their times agree at every stage, so func sees a float (a scalar-t func works)
    odeflow.solve(lambda t, y: f(t, y) * math.cos(0.0 * t), np.ones((3, 2)), [0.0, 1.0], batch_axis=0)
    assert all(isinstance(t, float) for t in seen)
    seen.clear()
    sol = odeflow.solve(f, np.array([[1.0], [100.0]]), [0.0, 1.0], batch_axis=0, atol=1e-12)
    arrays = [t for t in seen if isinstance(t, np.ndarray)]
    assert isinstance(seen[0], float) and arrays and all(t.shape in ((1,), (2,)) for t in arrays)
    assert sol.success


def test_finished_samples_are_not_evaluated():
    calls = []

    def f(t, y, mu):
        calls.append(y.shape[0])
        return vdp(t, y, mu)

    mu = np.array([0.1, 8.0])
    sol = solve_batch(f, np.array([[2.0, 0.0], [2.0, 0.0]]), [0.0, 8.0], 0, args=(mu,), **TOL)
    assert min(calls) == 1 and sum(calls) == sol.stats["sample_evaluations"]
    assert sol.stats["n_calls"] == len(calls)


@st.composite
def _batches(draw):
    """A sample (mu, y0, own times) and a batch around it: size, position and the others' samples."""
    n_other = draw(st.integers(0, 4))
    pos = draw(st.integers(0, n_other))
    floats = st.floats(-2.0, 2.0, allow_nan=False)
    mus = draw(st.lists(st.floats(0.1, 10.0), min_size=n_other + 1, max_size=n_other + 1))
    y0s = draw(st.lists(st.tuples(floats, floats), min_size=n_other + 1, max_size=n_other + 1))
    starts = draw(st.lists(st.floats(-1.0, 1.0), min_size=n_other + 1, max_size=n_other + 1))
    spans = draw(st.lists(st.floats(0.5, 3.0), min_size=n_other + 1, max_size=n_other + 1))
    return pos, np.array(mus), np.array(y0s), np.array(starts), np.array(spans)


@settings(max_examples=15, deadline=None)
@given(_batches())
def test_property_a_sample_is_bitwise_the_same_alone_or_in_any_batch(case):
    pos, mu, y0, starts, spans = case
    t = starts[:, None] + spans[:, None] * np.array([0.0, 0.25, 0.6, 1.0])[None]
    sol = solve_batch(vdp, y0, t, 0, args=(mu,), **TOL)
    alone = solve_batch(vdp, y0[pos:pos + 1], t[pos:pos + 1], 0, args=(mu[pos:pos + 1],), **TOL)
    assert np.array_equal(sol.y[:, pos], alone.y[:, 0])
    for key in ("nfe", "n_steps", "n_accepted", "n_rejected", "status"):
        assert sol.stats[key][pos] == alone.stats[key][0]


def test_failing_sample_named_while_the_others_finish():
    # y' = y^2 from y0 = 1 blows up at t = 1; the other samples are harmless
    y0 = np.array([[0.1], [1.0], [-0.5]])
    with pytest.raises(StepSizeUnderflowError, match=r"sample 1 \(of 3; 1 failed") as info:
        odeflow.solve(lambda t, y: y * y, y0, [0.0, 2.0], batch_axis=0)
    sol = info.value.solution
    assert list(sol.stats["status"]) == ["success", "step_size_underflow", "success"]
    assert sol.y.shape == (1, 3, 1)  # only the rows every sample completed: no NaN row
    good = odeflow.solve(lambda t, y: y * y, np.array([0.1]), [0.0, 2.0])
    assert sol.stats["nfe"][0] == good.stats["nfe"]
    with pytest.raises(StepSizeUnderflowError) as alone:
        odeflow.solve(lambda t, y: y * y, np.array([1.0]), [0.0, 2.0])
    assert info.value.t == alone.value.t and info.value.h == alone.value.h
    assert sol.stats["nfe"][1] == alone.value.solution.stats["nfe"]


def test_non_finite_first_derivative_of_one_sample():
    def f(t, y):
        with np.errstate(divide="ignore"):
            return 1.0 / y

    with pytest.raises(odeflow.NonFiniteDerivativeError, match="sample 0 .*func\\(t0, y0\\)"):
        odeflow.solve(f, np.array([[0.0], [1.0]]), [0.0, 1.0], batch_axis=0)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(batch_axis=2), InputError, r"`batch_axis` = 2 is out of range for `y0` of shape \(3, 2\)"),
    (dict(batch_axis=-3), InputError, r"`batch_axis` = -3 is out of range"),
    (dict(batch_axis=True), InputTypeError, r"`batch_axis` must be an int"),
    (dict(batch_axis=0.0), InputTypeError, r"`batch_axis` must be an int"),
    (dict(batch_axis=0, t=np.zeros((2, 3)) + [0.0, 1.0, 2.0]), ShapeError,
     r"per-sample `t` of shape \(2, 3\) must have one row per sample: 3 rows"),
    (dict(batch_axis=0, t=[[0.0, 1.0, 2.0], [0.0, 1.0, 2.0], [0.0, 1.0, 0.5]]), InputError,
     r"`t` row 2 must be strictly increasing or strictly decreasing; t\[2, 2\] = 0.5"),
    (dict(batch_axis=0, t=[[0.0, 1.0], [0.0, np.nan], [0.0, 1.0]]), InputError, r"`t` row 1 must be finite; t\[1, 1\]"),
    (dict(batch_axis=0, t=np.zeros((3, 2, 2))), InputError, r"`t` must be 1-D .* or 2-D"),
    (dict(batch_axis=0, method="rk4"), InputError, r"`batch_axis` needs an adaptive method"),
    (dict(batch_axis=0, args=(np.ones(2),)), ShapeError, r"`args\[0\]` of shape \(2,\)"),
    (dict(batch_axis=0, args=[np.ones(3)]), InputTypeError, r"`args` must be a tuple"),
    (dict(batch_axis=0, y0=5.0), InputError, r"at least one axis"),
])
def test_bad_input_raised_before_any_evaluation(kwargs, error, match):
    calls = []

    def f(t, y, *args):
        calls.append(1)
        return -y

    kw = dict(y0=np.ones((3, 2)), t=[0.0, 1.0])
    kw.update(kwargs)
    args = kw.pop("args", ())
    with pytest.raises(error, match=match):
        solve_batch(f, kw.pop("y0"), kw.pop("t"), kw.pop("batch_axis"), args=args, **kw)
    assert not calls


def test_bad_input_through_solve():
    with pytest.raises(InputError, match="out of range"):
        odeflow.solve(lambda t, y: -y, np.ones((3, 2)), [0.0, 1.0], batch_axis=5)
    with pytest.raises(ShapeError, match="one row per sample"):
        odeflow.odeint(lambda t, y: -y, np.ones((3, 2)), np.ones((4, 2)) * [0.0, 1.0], batch_axis=0)


def test_func_returning_the_wrong_shape():
    with pytest.raises(ShapeError, match=r"shape of its `y` \(3, 2\)"):
        odeflow.solve(lambda t, y: y[:, :1], np.ones((3, 2)), [0.0, 1.0], batch_axis=0)


def test_no_dense_output_and_trivial_cases():
    sol = odeflow.solve(lambda t, y: -y, np.ones((2, 1)), [0.0, 1.0], batch_axis=0)
    with pytest.raises(InputError, match="keeps no dense output"):
        sol.interpolate(0.5)
    one = odeflow.solve(lambda t, y: -y, np.ones((2, 1)), [0.0], batch_axis=0)
    assert one.y.shape == (1, 2, 1) and list(one.stats["nfe"]) == [0, 0]
    empty = odeflow.solve(lambda t, y: -y, np.ones((0, 2)), [0.0, 1.0], batch_axis=0)
    assert empty.y.shape == (2, 0, 2) and empty.success


def test_float32_state_stays_float32_and_matches_alone():
    y0 = np.array([[1.0], [2.0], [0.5]], dtype=np.float32)
    k = np.array([0.5, 1.0, 3.0], dtype=np.float32)
    sol = solve_batch(lambda t, y, k: -k[:, None] * y, y0, [0.0, 1.0], 0, args=(k,), rtol=1e-4, atol=1e-6)
    assert sol.y.dtype == np.float32
    for b in range(3):
        alone = odeflow.solve(lambda t, y: -k[b] * y, y0[b], [0.0, 1.0], rtol=1e-4, atol=1e-6)
        assert np.array_equal(sol.y[:, b], alone.y)
    np.testing.assert_allclose(sol.y[1, :, 0], y0[:, 0] * np.exp(-k), rtol=1e-4)


def test_captured_per_sample_array_gets_a_clear_error_once_samples_drop_out():
    mu = np.array([0.1, 8.0])  # captured whole: breaks when only one sample is still integrating
    with pytest.raises(ShapeError, match=r"on the 1 samples still integrating \(of 2\).*`args`"):
        odeflow.solve(lambda t, y: vdp(t, y, mu), np.array([[2.0, 0.0], [2.0, 0.0]]), [0.0, 8.0],
                      batch_axis=0, **TOL)


@pytest.mark.parametrize("method", ["dopri5", "tsit5", "bosh3"])
def test_every_per_sample_method_matches_the_unbatched_solver_bitwise(method):
    rng = np.random.default_rng(1)
    mu = rng.uniform(0.5, 3.0, 3)
    y0 = rng.uniform(-2, 2, (3, 2))
    t = np.linspace(0.0, 4.0, 9)
    sol = solve_batch(vdp, y0, t, 0, args=(mu,), method=method, **TOL)
    for b in range(3):
        alone = odeflow.solve(vdp_one(mu[b]), y0[b], t, method=method, **TOL)
        assert np.array_equal(sol.y[:, b], alone.y)
        assert sol.stats["nfe"][b] == alone.stats["nfe"]


def test_dop853_with_batch_axis_is_refused_not_wrong():
    # old code: accepted, then used dopri5-style error control and a dense output that read K past
    # its 12 stages (DOP853's interpolant has 16): on y'' = -y at rtol 1e-8 the outputs erred by 0.021
    calls = []

    def f(t, y):
        calls.append(1)
        return np.stack([y[:, 1], -y[:, 0]], axis=1)
    y0 = np.array([[1.0, 0.0], [0.5, 0.2]])
    for solve in (lambda: odeflow.solve(f, y0, np.linspace(0, 10, 7), batch_axis=0, method="dop853"),
                  lambda: odeflow.odeint(f, odeflow.Tensor(y0, requires_grad=True), np.array([0.0, 1.0]),
                                         batch_axis=0, method="dop853"),
                  lambda: odeflow.odeint_adjoint(f, odeflow.Tensor(y0, requires_grad=True),
                                                 np.array([0.0, 1.0]), batch_axis=0, method="dop853")):
        with pytest.raises(InputError, match="'dop853'.*solve_ensemble"):
            solve()
    assert not calls
    # what a dop853 user gets instead: the unbatched solver per sample, exact to the tolerance
    t = np.linspace(0, 10, 7)
    for b in range(2):
        y = odeflow.solve(lambda t, y: np.array([y[1], -y[0]]), y0[b], t, method="dop853", rtol=1e-8, atol=1e-10).y
        exact = np.stack([y0[b, 0] * np.cos(t) + y0[b, 1] * np.sin(t),
                          -y0[b, 0] * np.sin(t) + y0[b, 1] * np.cos(t)], axis=1)
        np.testing.assert_allclose(y, exact, atol=1e-7)


def test_event_samples_with_batch_axis_is_refused_not_ignored():
    # old code: accepted and ignored (the per-sample loop has no events)
    with pytest.raises(InputError, match=r"options\['event_samples'\]"):
        odeflow.solve(lambda t, y: -y, np.ones((3, 2)), [0.0, 1.0], batch_axis=0, options={"event_samples": 2})
