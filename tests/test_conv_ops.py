"""conv2d, group_norm and pooling: forward against independent NumPy/scipy references,
first- and second-order gradients against finite differences (check_grads), on
hypothesis-drawn shapes; the im2col/col2im adjoint identity; the layers built on them."""
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scipy.signal import correlate

import odeflow.autodiff as ad
import odeflow.nn as nn
from odeflow.autodiff import Tensor
from odeflow.errors import InputError, ShapeError
from odeflow.testing import check_grads

FAST = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
seeds = st.integers(0, 2**32 - 1)


@st.composite
def conv_case(draw):
    """Image, kernel, stride and padding such that the window fits."""
    n, c, o = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    assume(h + 2 * ph >= kh and w + 2 * pw >= kw)
    return (n, c, h, w), (o, c, kh, kw), (sh, sw), (ph, pw)


def conv_reference(x, w, b, stride, padding):
    """Cross-correlation by scipy, one (sample, out channel, in channel) at a time."""
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    full = np.array([[sum(correlate(xp[i, c], w[o, c], mode="valid") for c in range(x.shape[1]))
                      + (0.0 if b is None else b[o])
                      for o in range(w.shape[0])] for i in range(x.shape[0])])
    return full[:, :, ::stride[0], ::stride[1]]


@FAST
@given(case=conv_case(), seed=seeds, bias=st.booleans())
def test_conv2d_forward_matches_scipy(case, seed, bias):
    xs, ws, stride, padding = case
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    b = rng.standard_normal(ws[0]) if bias else None
    y = ad.conv2d(x, w, b, stride, padding)
    ref = conv_reference(x, w, b, stride, padding)
    assert y.shape == ref.shape
    np.testing.assert_allclose(y.data, ref, rtol=1e-12, atol=1e-12)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=conv_case(), seed=seeds)
def test_conv2d_gradients_first_and_second_order(case, seed):
    xs, ws, stride, padding = case
    rng = np.random.default_rng(seed)
    x, w, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])
    check_grads(lambda x, w, b: ad.conv2d(x, w, b, stride, padding), x, w, b, order=2, seed=seed)


@FAST
@given(case=conv_case(), seed=seeds)
def test_im2col_and_col2im_are_adjoint(case, seed):
    # <im2col(x), c> = <x, col2im(c)> for all x, c: the identity that makes each the other's VJP
    xs, ws, stride, padding = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(xs)
    cols = ad.im2col(x, ws[2:], stride, padding)
    c = rng.standard_normal(cols.shape)
    back = ad.col2im(c, xs, ws[2:], stride, padding)
    assert back.shape == xs
    np.testing.assert_allclose(np.vdot(cols.data, c), np.vdot(x, back.data), rtol=1e-12)


def test_im2col_layout_is_documented_one():
    x = np.arange(2 * 3 * 5 * 4, dtype=float).reshape(2, 3, 5, 4)
    cols = ad.im2col(x, (2, 3), (2, 1), (1, 0)).data
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (0, 0)))
    n, i, j, p, q, c = 1, 2, 1, 1, 2, 2
    assert cols[n, i, j, p, q, c] == xp[n, c, i * 2 + p, j * 1 + q]


def test_col2im_second_order_and_conv2d_third_order_in_x():
    rng = np.random.default_rng(3)
    c = rng.standard_normal((1, 2, 2, 2, 2, 2))
    check_grads(lambda c: ad.col2im(c, (1, 2, 3, 3), 2, 1, 0), c, order=2)
    w = rng.standard_normal((2, 2, 2, 2))
    # conv is linear in x: derivatives of every order must still agree
    check_grads(lambda x: ad.conv2d(x, w, None, 1, 1) ** 2, rng.standard_normal((1, 2, 3, 3)), order=3)


def test_conv2d_keeps_float32():
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((2, 3, 5, 5)).astype(np.float32), requires_grad=True)
    w = Tensor(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), requires_grad=True)
    y = ad.conv2d(x, w, None, 1, 1)
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32 and w.grad.dtype == np.float32


def test_conv2d_errors_name_shapes_and_arguments():
    x, w = np.zeros((2, 3, 5, 5)), np.zeros((4, 2, 3, 3))
    with pytest.raises(ShapeError, match=r"\(2, 3, 5, 5\).*\(4, 2, 3, 3\)"):
        ad.conv2d(x, w)
    with pytest.raises(ShapeError, match="does not fit"):
        ad.conv2d(np.zeros((1, 2, 2, 2)), np.zeros((1, 2, 3, 3)))
    with pytest.raises(InputError, match="`stride`"):
        ad.conv2d(np.zeros((1, 2, 4, 4)), np.zeros((1, 2, 3, 3)), stride=0)
    with pytest.raises(InputError, match="`padding`"):
        ad.conv2d(np.zeros((1, 2, 4, 4)), np.zeros((1, 2, 3, 3)), padding=-1)
    with pytest.raises(ShapeError, match="`bias`"):
        ad.conv2d(np.zeros((1, 2, 4, 4)), np.zeros((3, 2, 3, 3)), np.zeros(2))
    with pytest.raises(ShapeError, match=r"\(2, 4, 4\).*\(N, 2, H, W\)"):
        ad.conv2d(np.zeros((2, 4, 4)), np.zeros((3, 2, 3, 3)))


# -- group norm --------------------------------------------------------------------------

def group_norm_reference(x, groups, gamma, beta, eps):
    """Loop over samples and groups with np.mean / np.var."""
    n, c = x.shape[:2]
    out = np.empty_like(x)
    size = c // groups
    for i in range(n):
        for g in range(groups):
            block = x[i, g * size:(g + 1) * size]
            out[i, g * size:(g + 1) * size] = (block - block.mean()) / np.sqrt(block.var() + eps)
    shape = (1, c) + (1,) * (x.ndim - 2)
    return out * gamma.reshape(shape) + beta.reshape(shape)


@st.composite
def norm_case(draw):
    groups = draw(st.integers(1, 3))
    per_group = draw(st.integers(1, 3))
    spatial = tuple(draw(st.lists(st.integers(1, 3), min_size=0, max_size=2)))
    n = draw(st.integers(1, 3))
    # M = per_group * prod(spatial) >= 2 keeps the variance away from 0 (FD-friendly)
    assume(per_group * int(np.prod(spatial)) >= 2)
    return (n, groups * per_group) + spatial, groups


@FAST
@given(case=norm_case(), seed=seeds)
def test_group_norm_forward_matches_reference(case, seed):
    shape, groups = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 3 + 1
    gamma, beta = rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
    y = ad.group_norm(x, groups, gamma, beta, eps=1e-5)
    np.testing.assert_allclose(y.data, group_norm_reference(x, groups, gamma, beta, 1e-5),
                               rtol=1e-10, atol=1e-12)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=norm_case(), seed=seeds)
def test_group_norm_gradients_first_and_second_order(case, seed):
    shape, groups = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    gamma, beta = rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
    check_grads(lambda x, g, b: ad.group_norm(x, groups, g, b), x, gamma, beta, order=2, seed=seed)


def test_group_norm_third_order_without_affine():
    x = np.random.default_rng(1).standard_normal((2, 4, 3))
    check_grads(lambda x: ad.group_norm(x, 2), x, order=3)


def test_group_norm_is_instance_and_layer_norm_at_the_extremes():
    x = np.random.default_rng(2).standard_normal((2, 4, 3, 3))
    inst = ad.group_norm(x, 4).data
    layer = ad.group_norm(x, 1).data
    np.testing.assert_allclose(inst.mean(axis=(2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(inst.var(axis=(2, 3)), 1, rtol=1e-3)  # var / (var + eps)
    np.testing.assert_allclose(layer.mean(axis=(1, 2, 3)), 0, atol=1e-12)


def test_group_norm_float32_and_errors():
    x = Tensor(np.random.default_rng(0).standard_normal((2, 4, 3, 3)).astype(np.float32),
               requires_grad=True)
    y = ad.group_norm(x, 2)
    assert y.dtype == np.float32
    (y * y).sum().backward()
    assert x.grad.dtype == np.float32
    with pytest.raises(InputError, match="`num_groups`.*4 channels.*3"):
        ad.group_norm(np.zeros((2, 4, 3)), 3)
    with pytest.raises(ShapeError, match="`weight`"):
        ad.group_norm(np.zeros((2, 4, 3)), 2, np.ones(3))
    with pytest.raises(InputError, match="`eps`"):
        ad.group_norm(np.zeros((2, 4, 3)), 2, eps=0.0)


# -- pooling -------------------------------------------------------------------------------

def avg_pool_reference(x, k, s, p):
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    oh, ow = (xp.shape[2] - k) // s + 1, (xp.shape[3] - k) // s + 1
    out = np.empty(x.shape[:2] + (oh, ow))
    for i in range(oh):
        for j in range(ow):
            out[:, :, i, j] = xp[:, :, i * s:i * s + k, j * s:j * s + k].mean(axis=(2, 3))
    return out


@FAST
@given(k=st.integers(1, 3), s=st.integers(1, 3), p=st.integers(0, 1), h=st.integers(3, 6), seed=seeds)
def test_avg_pool2d_forward_and_gradients(k, s, p, h, seed):
    assume(p <= k // 2 or k > 1)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 2, h, h + 1))
    np.testing.assert_allclose(ad.avg_pool2d(x, k, s, p).data, avg_pool_reference(x, k, s, p),
                               rtol=1e-12, atol=1e-14)
    check_grads(lambda x: ad.avg_pool2d(x, k, s, p), x, order=2, seed=seed)


def test_global_avg_pool2d():
    x = np.random.default_rng(4).standard_normal((3, 2, 4, 5))
    np.testing.assert_allclose(ad.global_avg_pool2d(x).data, x.mean(axis=(2, 3)), rtol=1e-12)
    check_grads(lambda x: ad.global_avg_pool2d(x) ** 2, x, order=2)
    with pytest.raises(ShapeError):
        ad.global_avg_pool2d(np.zeros((3, 2, 4)))


# -- layers ----------------------------------------------------------------------------------

def test_conv2d_module_shapes_init_and_forward():
    conv = nn.Conv2d(3, 5, 3, stride=2, padding=1, rng=0)
    assert conv.weight.shape == (5, 3, 3, 3) and conv.bias.shape == (5,)
    bound = 1 / np.sqrt(3 * 9)  # PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert np.abs(conv.weight.data).max() <= bound and np.abs(conv.bias.data).max() <= bound
    x = np.random.default_rng(1).standard_normal((2, 3, 7, 7))
    y = conv(Tensor(x))
    assert y.shape == (2, 5, 4, 4)
    np.testing.assert_allclose(y.data, conv_reference(x, conv.weight.data, conv.bias.data, (2, 2), (1, 1)),
                               rtol=1e-12, atol=1e-12)
    with pytest.raises(ShapeError, match=r"\(N, 3, H, W\)"):
        conv(np.zeros((2, 4, 7, 7)))


def test_concat_conv2d_sees_time_as_a_channel():
    layer = nn.ConcatConv2d(2, 3, rng=0)
    assert layer.weight.shape == (3, 3, 3, 3)  # one extra input channel for t
    x = np.random.default_rng(2).standard_normal((2, 2, 4, 4))
    t = 0.7
    with_t = np.concatenate([np.full((2, 1, 4, 4), t), x], axis=1)
    ref = conv_reference(with_t, layer.weight.data, layer.bias.data, (1, 1), (1, 1))
    np.testing.assert_allclose(layer(t, Tensor(x)).data, ref, rtol=1e-12, atol=1e-12)
    # the time enters: two times give two outputs
    assert not np.allclose(layer(0.0, Tensor(x)).data, layer(1.0, Tensor(x)).data)


def test_group_norm_module_and_pooling_modules():
    gn = nn.GroupNorm(2, 4)
    assert np.all(gn.weight.data == 1) and np.all(gn.bias.data == 0)
    x = np.random.default_rng(5).standard_normal((2, 4, 3, 3))
    np.testing.assert_allclose(gn(Tensor(x)).data, group_norm_reference(x, 2, np.ones(4), np.zeros(4), 1e-5),
                               rtol=1e-10)
    with pytest.raises(InputError):
        nn.GroupNorm(3, 4)
    with pytest.raises(ShapeError):
        gn(np.zeros((2, 3, 3, 3)))
    np.testing.assert_allclose(nn.AvgPool2d(2)(Tensor(x[:, :, :2, :2])).data, x[:, :, :2, :2].mean(axis=(2, 3),
                               keepdims=True), rtol=1e-12)
    assert nn.GlobalAvgPool2d()(Tensor(x)).shape == (2, 4)
