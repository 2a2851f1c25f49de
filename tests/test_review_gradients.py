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
