"""Gradient paths broken on purpose (review of b771c09): each defect's test failed there (the
parameter-gradient tests are guards that the fix keeps what was right)."""
import numpy as np
import pytest

import odeflow
from odeflow import Tensor
from odeflow.autodiff import ops
from odeflow.errors import GradientError

MODES = ["backprop", "backsolve", "checkpoint"]
TOL = dict(rtol=1e-10, atol=1e-12)


def _solve(mode, f, y0, t, **kw):
    if mode == "backprop":
        return odeflow.odeint(f, y0, t, **TOL, **kw)
    return odeflow.odeint_adjoint(f, y0, t, adjoint_mode=mode, **TOL, **kw)


def _switched(jump, t, k, mode):
    """y' = -k(t) y + 0.3 with k switching from k[0] to k[1] at the jump; L = y(t1)^2 + y(t2)."""
    switch = float(np.asarray(jump.data if isinstance(jump, Tensor) else jump)[0])

    def f(s, y):
        return -y * (k[0] if s < switch else k[1]) + 0.3
    ys = _solve(mode, f, Tensor(np.array([1.0])), t, options={"jump_t": jump})
    return ops.sum(ys[1] * ys[1]) + ops.sum(ys[2])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("which", ["t", "jump_t"])
def test_a_jump_at_an_output_time_raises_instead_of_a_wrong_gradient(mode, which):
    # t[1] = jump = 0.6: L has a kink there. Old code: dL/dt[1] = 0 (one-sided -1.71 / -0.27) and
    # dL/djump = 0.195 (one-sided 0.461 / 1.907): neither is a derivative of L
    k = Tensor(np.array([0.5, 1.4]), requires_grad=True)
    t = Tensor(np.array([0.0, 0.6, 1.0]), requires_grad=which == "t")
    jump = Tensor(np.array([0.6]), requires_grad=which == "jump_t")
    loss = _switched(jump, t, k, mode)
    with pytest.raises(GradientError, match=r"t\[1\]"):
        loss.backward()


@pytest.mark.parametrize("mode", MODES)
def test_a_jump_at_an_output_time_keeps_the_parameter_gradients(mode):
    k = Tensor(np.array([0.5, 1.4]), requires_grad=True)
    _switched(np.array([0.6]), np.array([0.0, 0.6, 1.0]), k, mode).backward()
    h, fd = 1e-6, []
    for j in range(2):
        e = np.zeros(2)
        e[j] = h
        with odeflow.no_grad():
            fd.append((_switched(np.array([0.6]), np.array([0.0, 0.6, 1.0]), Tensor(k.data + e), mode).item()
                       - _switched(np.array([0.6]), np.array([0.0, 0.6, 1.0]), Tensor(k.data - e), mode).item())
                      / (2 * h))
    np.testing.assert_allclose(k.grad.data, fd, rtol=1e-6)


@pytest.mark.parametrize("mode", MODES)
def test_a_jump_time_outside_the_interval_gets_a_zero_gradient_not_none(mode):
    k = Tensor(np.array([0.5, 1.4]), requires_grad=True)
    jump = Tensor(np.array([1.5]), requires_grad=True)   # after t[-1] = 1: no effect on L
    _switched(jump, np.array([0.0, 0.6, 1.0]), k, mode).backward()
    assert jump.grad is not None
    np.testing.assert_array_equal(jump.grad.data, [0.0])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("at", [0.0, 1.0])
def test_a_jump_time_at_an_end_of_the_interval_raises(mode, at):
    # a kink: moving the jump out of [t0, t1] changes nothing, moving it in does
    k = Tensor(np.array([0.5, 1.4]), requires_grad=True)
    jump = Tensor(np.array([at]), requires_grad=True)
    loss = _switched(jump, np.array([0.0, 0.6, 1.0]), k, mode)
    with pytest.raises(GradientError, match="end of the interval"):
        loss.backward()


def test_an_empty_batch_through_per_sample_backprop_is_empty_not_a_numpy_error():
    # old: ValueError "zero-size array to reduction operation maximum" from the replay
    k = Tensor(np.array([0.5]), requires_grad=True)
    y0 = Tensor(np.ones((0, 1)), requires_grad=True)
    ys = odeflow.odeint(lambda t, y: -y * k, y0, [0.0, 1.0], batch_axis=0)
    assert ys.shape == (2, 0, 1)
    ops.sum(ys).backward()
    assert y0.grad.shape == (0, 1)


def test_odeint_regularized_checks_t_and_the_batch_by_name():
    from odeflow.errors import InputError, ShapeError
    from odeflow.regularizers import kinetic_energy, odeint_regularized
    k = Tensor(np.array([0.5]), requires_grad=True)

    def f(t, y):
        return -y * k

    with pytest.raises(InputError, match="`t` must be 1-D"):   # old: raw ValueError (truth value)
        odeint_regularized(f, np.ones((2, 1)), np.array([[0.0, 1.0], [0.0, 1.0]]), [kinetic_energy()])
    with pytest.raises(ShapeError, match="no sample"):          # old: a NaN penalty, raw error in backward
        odeint_regularized(f, np.ones((0, 2)), [0.0, 1.0], [kinetic_energy()])


@pytest.mark.parametrize("bad", [dict(t0="a"), dict(t_max="x")])
def test_odeint_event_refuses_non_numeric_times_by_name(bad):
    from odeflow.errors import InputTypeError
    kw = dict(t0=0.0, t_max=5.0)
    kw.update(bad)
    name = next(iter(bad))
    with pytest.raises(InputTypeError, match=f"`{name}`"):    # old: raw ValueError from float()
        odeflow.odeint_event(lambda t, y: -y, Tensor(np.array([1.0])), kw["t0"], lambda t, y: y[0] - 0.5,
                             t_max=kw["t_max"])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("times", [[0.0, 0.0, 0.5, 1.0], [0.0, 0.5, 1.0, 1.0], [1.0, 1.0, 0.2],
                                   [0.0, 0.5, 0.5, 1.0], [0.0, 0.25, 0.25, 1.0]])
def test_jump_t_keeps_every_output_row_with_repeated_times(mode, times):
    # old: a repeat of t[0] or t[-1] was dropped, so the solution had len(t) - 1 rows, the rows
    # after it at the wrong times, with no error (and a repeat at the jump time too)
    k = Tensor(np.array([0.7, -0.4]), requires_grad=True)

    def f(t, y):
        return ops.tanh(y * k[0]) * k[1] + 0.5 * y * (1.0 if t < 0.25 else -1.0)

    def f_arrays(t, y):
        return np.tanh(y * 0.7) * -0.4 + 0.5 * y * (1.0 if t < 0.25 else -1.0)

    y0 = Tensor(np.array([0.3, -0.5]), requires_grad=True)
    ys = _solve(mode, f, y0, np.array(times), options={"jump_t": [0.25]})
    ref = odeflow.solve(f_arrays, y0.data, times, rtol=1e-12, atol=1e-14, options={"jump_t": [0.25]}).y
    assert ys.shape == (len(times), 2)
    np.testing.assert_allclose(ys.data, ref, rtol=1e-8, atol=1e-10)
    ops.sum(ys * ys).backward()
    plain = Tensor(np.array([0.3, -0.5]), requires_grad=True)
    k2 = Tensor(k.data.copy(), requires_grad=True)

    def g(t, y):  # same dynamics, differentiated with a dense set of outputs (no repeats) as reference
        return ops.tanh(y * k2[0]) * k2[1] + 0.5 * y * (1.0 if t < 0.25 else -1.0)

    distinct = np.unique(times)[::1 if times[-1] > times[0] else -1]
    zs = _solve(mode, g, plain, distinct, options={"jump_t": [0.25]})
    rows = [int(np.flatnonzero(distinct == v)[0]) for v in times]
    ops.sum(zs[rows] * zs[rows]).backward()
    np.testing.assert_allclose(k.grad.data, k2.grad.data, rtol=1e-7)
    np.testing.assert_allclose(y0.grad.data, plain.grad.data, rtol=1e-7)


@pytest.mark.parametrize("key, value", [("jump_t", [5.0, 5.01]), ("min_step", 0.3)])
@pytest.mark.parametrize("how", ["solve", "backprop", "adjoint"])
def test_per_sample_stepping_refuses_the_options_it_would_ignore(key, value, how):
    # old: silently ignored. A pulse y' = 10 on [5, 5.01) gave y(10) = 0 instead of 0.1 with
    # jump_t, and min_step = 0.3 let -50 y be integrated with tiny steps instead of raising
    from odeflow.errors import InputError

    def pulse(t, y):
        on = np.all((np.asarray(t) >= 5.0) & (np.asarray(t) < 5.01))
        return y * 0.0 + (10.0 if on else 0.0)

    y0 = np.zeros((2, 1))
    with pytest.raises(InputError, match=key):
        if how == "solve":
            odeflow.solve(pulse, y0, [0.0, 10.0], batch_axis=0, options={key: value})
        else:
            fn = odeflow.odeint if how == "backprop" else odeflow.odeint_adjoint
            fn(pulse, Tensor(y0, requires_grad=True), [0.0, 10.0], batch_axis=0, options={key: value})


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("at", [0.0, 1.0])
def test_a_float_jump_at_an_end_raises_for_a_differentiated_end_time(mode, at):
    # old code: dL/dt[0] (or dL/dt[-1]) from one side of the jump only, with no error; the one-sided
    # derivatives of L w.r.t. that end time differ by the jump of k (checked below)
    k = Tensor(np.array([0.5, 1.4]), requires_grad=True)
    t = Tensor(np.array([0.0, 0.6, 1.0]), requires_grad=True)
    loss = _switched(np.array([at]), t, k, mode)
    with pytest.raises(GradientError, match="end of the interval"):
        loss.backward()

    def moved(end):   # the switch stays at `at`, the end time moves off it by `end`
        times = np.array([0.0, 0.6, 1.0])
        times[0 if at == 0.0 else 2] += end
        with odeflow.no_grad():
            return _switched(np.array([at]), times, Tensor(k.data), mode).item()
    h = 1e-6
    right, left = (moved(h) - moved(0.0)) / h, (moved(0.0) - moved(-h)) / h
    assert abs(right - left) > 0.1


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("form", ["tensor", "list"])
def test_a_jump_time_given_twice_raises_instead_of_a_zero_gradient(mode, form):
    # old code: the first entry got the whole dL/dT, the second a silent 0 (a Tensor jump_t) or None
    # (a list); func shows one discontinuity, so how it splits between the two is not known
    k = Tensor(np.array([0.5, 1.4]), requires_grad=True)
    if form == "tensor":
        jump = Tensor(np.array([0.3, 0.3]), requires_grad=True)
        leaves = [jump]
    else:
        a, b = Tensor(np.float64(0.3), requires_grad=True), Tensor(np.float64(0.3), requires_grad=True)
        jump, leaves = [a, b], [a, b]
    switch = 0.3

    def f(s, y):
        return -y * (k[0] if s < switch else k[1]) + 0.3
    ys = _solve(mode, f, Tensor(np.array([1.0])), np.array([0.0, 0.6, 1.0]), options={"jump_t": jump})
    with pytest.raises(GradientError, match="given twice"):
        ops.sum(ys[2]).backward()
    assert all(leaf.grad is None for leaf in leaves)


@pytest.mark.parametrize("mode", MODES)
def test_a_float_jump_given_twice_keeps_every_gradient(mode):
    # repeats of a jump that nothing differentiates are harmless: the same values and gradients as once
    k = Tensor(np.array([0.5, 1.4]), requires_grad=True)
    _switched(np.array([0.3, 0.3]), np.array([0.0, 0.6, 1.0]), k, mode).backward()
    twice = k.grad.data.copy()
    k.grad = None
    _switched(np.array([0.3]), np.array([0.0, 0.6, 1.0]), k, mode).backward()
    np.testing.assert_allclose(twice, k.grad.data, rtol=1e-12)
