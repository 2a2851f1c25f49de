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


def test_conv_refuses_a_float_stride_by_name():
    # the old code raised TypeError: 'float' object is not iterable
    from odeflow.autodiff.conv import conv2d
    with pytest.raises(InputError, match="stride"):
        conv2d(np.zeros((1, 2, 4, 5)), np.zeros((3, 2, 3, 3)), stride=1.5)
    with pytest.raises(InputError, match="padding"):
        conv2d(np.zeros((1, 2, 4, 5)), np.zeros((3, 2, 3, 3)), padding=0.5)


@pytest.mark.parametrize("t", [float("nan"), float("inf"), np.array([1.0, 2.0]), "0.5", True])
def test_concat_conv2d_refuses_a_bad_time(t):
    # the old code gave all-NaN outputs for t = nan and a TypeError for an array
    from odeflow.autodiff.conv import concat_conv2d
    with pytest.raises(InputError, match="`t`"):
        concat_conv2d(t, np.ones((1, 2, 4, 5)), np.ones((3, 3, 3, 3)))


def test_concat_conv2d_accepts_scalars_and_0d_tensors():
    from odeflow.autodiff.conv import concat_conv2d, conv2d
    x, w = np.ones((1, 2, 4, 5)), np.random.default_rng(0).standard_normal((3, 3, 3, 3))
    ref = conv2d(np.concatenate([np.full((1, 1, 4, 5), 0.5), x], axis=1), w, padding=1).data
    for t in (0.5, np.float32(0.5), np.array(0.5), Tensor(np.array(0.5))):
        np.testing.assert_allclose(concat_conv2d(t, x, w, padding=1).data, ref, rtol=1e-12, atol=1e-12)
    assert np.allclose(concat_conv2d(1, x, w).data, concat_conv2d(1.0, x, w).data)


def test_group_norm_refuses_an_infinite_eps():
    # the old code returned all zeros (r = 1/sqrt(inf) = 0)
    from odeflow.autodiff.norm import group_norm
    from odeflow.nn.conv import GroupNorm
    with pytest.raises(InputError, match="eps"):
        group_norm(np.random.default_rng(0).standard_normal((1, 2, 3, 3)), 2, eps=float("inf"))
    with pytest.raises(InputError, match="eps"):
        GroupNorm(1, 2, eps=float("inf"))


@pytest.mark.parametrize("kw", [dict(lr="0.1"), dict(lr=None), dict(lr=True), dict(lr=0.1, eps="1e-8"),
                                dict(lr=0.1, betas=0.9), dict(lr=0.1, betas=(0.9,)),
                                dict(lr=0.1, betas=(0.9, 0.99, 0.5)), dict(lr=0.1, weight_decay=[0.1])])
def test_adam_refuses_non_numbers_by_name(kw):
    # the old code raised a bare TypeError or IndexError (or took lr=True as 1.0)
    from odeflow.errors import InputTypeError
    name = [k for k in kw if k != "lr"][0] if len(kw) > 1 else "lr"
    with pytest.raises(InputTypeError, match=name):
        optim.Adam([Tensor(np.zeros(2), requires_grad=True)], **kw)


def test_hyperparameters_accept_numpy_scalars():
    w = Tensor(np.zeros(2), requires_grad=True)
    opt = optim.Adam([w], lr=np.float32(0.5), betas=np.array([0.9, 0.99]), eps=np.array(1e-8))
    w.grad = Tensor(np.ones(2))
    opt.step()
    np.testing.assert_allclose(w.data, -0.5 * np.ones(2), rtol=1e-6)
    optim.SGD([w], lr=np.int64(1), momentum=np.float64(0.5))
