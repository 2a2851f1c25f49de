"""Defects found by the fourth review (each test fails on the code before its fix)."""
import numpy as np
import pytest

from odeflow import optim
from odeflow.autodiff.tensor import Tensor
from odeflow.errors import InputError


def test_optimizer_refuses_a_parameter_listed_twice():
    # the old code updated it once per entry: SGD(lr=0.1) moved w by 0.2 for a unit gradient
    w = Tensor(np.zeros(3), requires_grad=True)
    with pytest.raises(InputError, match=r"params\[1\]"):
        optim.SGD([w, w], lr=0.1)
    with pytest.raises(InputError, match=r"params\[2\]"):
        optim.Adam([w, Tensor(np.zeros(2), requires_grad=True), w])


@pytest.mark.parametrize("max_norm", [-1.0, -0.0 - 1e-300, float("nan")])
def test_clip_grad_norm_refuses_a_bad_max_norm(max_norm):
    # the old code gave gradients of the opposite sign for max_norm=-1 ([3,3,3,3] -> [-.5]*4)
    # and left them unclipped for NaN
    w = Tensor(np.zeros(4), requires_grad=True)
    w.grad = Tensor(np.full(4, 3.0))
    with pytest.raises(InputError, match="max_norm"):
        optim.clip_grad_norm([w], max_norm)
    np.testing.assert_array_equal(w.grad.data, np.full(4, 3.0))


def test_clip_grad_norm_still_clips():
    w = Tensor(np.zeros(4), requires_grad=True)
    w.grad = Tensor(np.full(4, 3.0))
    assert optim.clip_grad_norm([w], 1.5) == pytest.approx(6.0)
    np.testing.assert_allclose(w.grad.data, np.full(4, 0.75), rtol=1e-10)


def test_clip_grad_norm_inf_does_not_clip():
    w = Tensor(np.zeros(4), requires_grad=True)
    w.grad = Tensor(np.full(4, 3.0))
    assert optim.clip_grad_norm([w], float("inf")) == pytest.approx(6.0)
    np.testing.assert_array_equal(w.grad.data, np.full(4, 3.0))


@pytest.mark.parametrize("bad", [2.5, True, 0, -1, "3"])
def test_schedulers_refuse_a_non_integer_period(bad):
    # the old code took step_size=2.5 and T_max=2.5 as 2 (int() cut them), True as 1, and
    # "3" raised a TypeError from the comparison instead of naming the argument
    opt = optim.SGD([Tensor(np.zeros(1), requires_grad=True)], lr=1.0)
    with pytest.raises(InputError, match="step_size"):
        optim.StepLR(opt, bad)
    with pytest.raises(InputError, match="T_max"):
        optim.CosineAnnealingLR(opt, bad)


def test_schedulers_accept_numpy_ints():
    opt = optim.SGD([Tensor(np.zeros(1), requires_grad=True)], lr=1.0)
    s = optim.StepLR(opt, np.int64(2), gamma=0.5)
    lrs = []
    for _ in range(4):
        s.step()
        lrs.append(opt.lr)
    assert lrs == [1.0, 0.5, 0.5, 0.25]
