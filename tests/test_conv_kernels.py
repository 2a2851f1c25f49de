"""The jitted convolution and group-norm kernels against the NumPy formulation they replaced.

``reference_*`` below are the previous (NumPy, composite-op) implementations,
kept here as the independent reference: values and gradients must agree to
1e-12 in float64, on shapes that exercise padding wider than the window,
strides and the stride-1 transposed-convolution gradient path. The new time-
channel convolution is checked against concatenate + conv2d, and by central
finite differences to second order.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view

import odeflow.autodiff as ad
from odeflow.autodiff import Tensor, ops
from odeflow.autodiff.backprop import gradients
from odeflow.autodiff.conv import concat_conv2d
from odeflow.errors import InputError, ShapeError
from odeflow.testing import check_grads

FAST = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TOL = 1e-12


def reference_im2col(x, k, s, p):
    """Pad, channels last, gather every window (the NumPy im2col)."""
    n, c, h, w = x.shape
    padded = np.zeros((n, h + 2 * p[0], w + 2 * p[1], c))
    padded[:, p[0]:p[0] + h, p[1]:p[1] + w, :] = x.transpose(0, 2, 3, 1)
    oh, ow = (h + 2 * p[0] - k[0]) // s[0] + 1, (w + 2 * p[1] - k[1]) // s[1] + 1
    windows = sliding_window_view(padded, k, axis=(1, 2))[:, ::s[0], ::s[1]][:, :oh, :ow]
    return np.ascontiguousarray(windows.transpose(0, 1, 2, 4, 5, 3))


def reference_col2im(cols, shape, k, s, p):
    """One strided add per kernel offset (the NumPy col2im)."""
    n, c, h, w = shape
    oh, ow = cols.shape[1:3]
    out = np.zeros((n, h + 2 * p[0], w + 2 * p[1], c))
    for i in range(k[0]):
        for j in range(k[1]):
            out[:, i:i + s[0] * oh:s[0], j:j + s[1] * ow:s[1], :] += cols[:, :, :, i, j, :]
    return out[:, p[0]:p[0] + h, p[1]:p[1] + w, :].transpose(0, 3, 1, 2)


def reference_conv2d(x, w, b, s, p):
    """im2col + linear from engine ops (the composite conv2d): values and gradients."""
    n, o = x.shape[0], w.shape[0]
    cols = Tensor(reference_im2col(x.data, w.shape[2:], s, p))
    oh, ow = cols.shape[1:3]
    cols = ops.make_node(cols.data, (x,), lambda g: [reference_col2im(g.data, x.shape, w.shape[2:], s, p)])
    flat = ops.reshape(cols, (n * oh * ow, -1))
    w2d = ops.reshape(ops.transpose(w, (0, 2, 3, 1)), (o, -1))
    y = ops.linear(flat, w2d, b)
    return ops.transpose(ops.reshape(y, (n, oh, ow, o)), (0, 3, 1, 2))


def reference_group_norm(x, groups, weight, bias, eps=1e-5):
    """Standardise by engine ops over (N, G, M), then the affine map (the composite form)."""
    n, c = x.shape[:2]
    xg = ops.reshape(x, (n, groups, -1))
    centred = xg - ops.mean(xg, axis=-1, keepdims=True)
    var = ops.mean(centred * centred, axis=-1, keepdims=True)
    y = ops.reshape(centred / ops.sqrt(var + eps), x.shape)
    shape = (1, c) + (1,) * (x.ndim - 2)
    if weight is not None:
        y = y * ops.reshape(weight, shape)
    if bias is not None:
        y = y + ops.reshape(bias, shape)
    return y


@st.composite
def conv_case(draw):
    """Batch, channels, window, stride and padding (padding up to 2, also wider than the window)."""
    n, c, o = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 3))
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    s = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    p = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    h = draw(st.integers(max(1, k[0] - 2 * p[0]), 7))
    w = draw(st.integers(max(1, k[1] - 2 * p[1]), 7))
    return (n, c, h, w), (o, c) + k, s, p, draw(st.integers(0, 2**32 - 1))


def _leaves(rng, *shapes):
    return [Tensor(rng.standard_normal(shape), requires_grad=True) for shape in shapes]


@FAST
@given(conv_case())
def test_im2col_and_col2im_equal_the_numpy_formulation(case):
    shape, wshape, s, p, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    cols = ad.im2col(x, wshape[2:], s, p).data
    np.testing.assert_array_equal(cols, reference_im2col(x, wshape[2:], s, p))
    g = rng.standard_normal(cols.shape)
    np.testing.assert_allclose(ad.col2im(g, shape, wshape[2:], s, p).data,
                               reference_col2im(g, shape, wshape[2:], s, p), rtol=0, atol=TOL)


@FAST
@given(conv_case(), st.booleans())
def test_conv2d_values_and_gradients_equal_the_composite_form(case, with_bias):
    shape, wshape, s, p, seed = case
    rng = np.random.default_rng(seed)
    x, w, b = _leaves(rng, shape, wshape, wshape[:1])
    b = b if with_bias else None
    y, y_ref = ad.conv2d(x, w, b, s, p), reference_conv2d(x, w, b, s, p)
    np.testing.assert_allclose(y.data, y_ref.data, rtol=0, atol=TOL)
    g = rng.standard_normal(y.shape)
    wrt = [x, w] + ([b] if with_bias else [])
    for got, want in zip(gradients(y, wrt, grad_outputs=g), gradients(y_ref, wrt, grad_outputs=g)):
        np.testing.assert_allclose(got.data, want.data, rtol=0, atol=TOL)


@FAST
@given(conv_case())
def test_concat_conv2d_equals_concatenate_then_conv2d(case):
    shape, wshape, s, p, seed = case
    rng = np.random.default_rng(seed)
    t = float(rng.uniform(-2, 2))
    x, w, b = _leaves(rng, shape, (wshape[0], wshape[1] + 1) + wshape[2:], wshape[:1])
    y = concat_conv2d(t, x, w, b, s, p)
    time = Tensor(np.full((shape[0], 1) + shape[2:], t))
    y_ref = reference_conv2d(ops.concatenate([time, x], axis=1), w, b, s, p)
    np.testing.assert_allclose(y.data, y_ref.data, rtol=0, atol=TOL)
    g = rng.standard_normal(y.shape)
    for got, want in zip(gradients(y, [x, w, b], grad_outputs=g),
                         gradients(y_ref, [x, w, b], grad_outputs=g)):
        np.testing.assert_allclose(got.data, want.data, rtol=0, atol=TOL)


@pytest.mark.parametrize("s, p", [((1, 1), (1, 1)), ((2, 1), (0, 2)), ((1, 1), (3, 0))])
def test_concat_conv2d_gradients_first_and_second_order(s, p):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 2, 4, 3))
    w = rng.standard_normal((3, 3, 3, 2))
    b = rng.standard_normal(3)
    check_grads(lambda x, w, b: concat_conv2d(0.4, x, w, b, s, p), x, w, b, order=2)


def test_conv2d_first_layer_gradient_skips_the_images():
    # images that need no gradient: only the weight's and bias's are formed
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 1, 5, 5))
    w, b = _leaves(rng, (3, 1, 3, 3), (3,))
    y = ad.conv2d(x, w, b, 1, 1)
    dw, db = gradients(y, [w, b], grad_outputs=np.ones(y.shape))
    ref = reference_conv2d(Tensor(x), w, b, (1, 1), (1, 1))
    dw_ref, db_ref = gradients(ref, [w, b], grad_outputs=np.ones(y.shape))
    np.testing.assert_allclose(dw.data, dw_ref.data, rtol=0, atol=TOL)
    np.testing.assert_allclose(db.data, db_ref.data, rtol=0, atol=TOL)


def test_concat_conv2d_names_the_channel_mismatch():
    with pytest.raises(ShapeError, match=r"needs x of shape \(N, 2, H, W\)"):
        concat_conv2d(0.0, np.zeros((1, 3, 4, 4)), np.zeros((2, 3, 3, 3)))


@st.composite
def norm_case(draw):
    n, groups, per = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    spatial = tuple(draw(st.lists(st.integers(1, 4), min_size=0, max_size=2)))
    return (n, groups * per) + spatial, groups, draw(st.booleans()), draw(st.integers(0, 2**32 - 1))


@FAST
@given(norm_case())
def test_group_norm_values_and_gradients_equal_the_composite_form(case):
    shape, groups, affine, seed = case
    rng = np.random.default_rng(seed)
    x, w, b = _leaves(rng, shape, shape[1:2], shape[1:2])
    x = Tensor(x.data * 3.0 + 1.5, requires_grad=True)
    w, b = (w, b) if affine else (None, None)
    y, y_ref = ad.group_norm(x, groups, w, b), reference_group_norm(x, groups, w, b)
    np.testing.assert_allclose(y.data, y_ref.data, rtol=0, atol=TOL)
    g = rng.standard_normal(shape)
    wrt = [x] + ([w, b] if affine else [])
    for got, want in zip(gradients(y, wrt, grad_outputs=g), gradients(y_ref, wrt, grad_outputs=g)):
        np.testing.assert_allclose(got.data, want.data, rtol=0, atol=TOL)


def test_group_norm_reads_a_channels_last_convolution_output():
    # conv2d returns a transposed channels-last buffer; the kernel reads it in place
    rng = np.random.default_rng(1)
    y = ad.conv2d(rng.standard_normal((3, 2, 5, 5)), rng.standard_normal((4, 2, 3, 3)), None, 1, 1)
    assert not y.data.flags.c_contiguous
    got = ad.group_norm(y, 2).data
    want = reference_group_norm(Tensor(np.ascontiguousarray(y.data)), 2, None, None).data
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL)
    # and the gradients through it, with the affine map
    x, w, gamma, beta = _leaves(rng, (3, 2, 5, 5), (4, 2, 3, 3), (4,), (4,))
    out = ad.group_norm(ad.conv2d(x, w, None, 1, 1), 2, gamma, beta)
    ref = reference_group_norm(reference_conv2d(x, w, None, (1, 1), (1, 1)), 2, gamma, beta)
    np.testing.assert_allclose(out.data, ref.data, rtol=0, atol=TOL)
    g = rng.standard_normal(out.shape)
    for a, b in zip(gradients(out, [x, w, gamma, beta], grad_outputs=g),
                    gradients(ref, [x, w, gamma, beta], grad_outputs=g)):
        np.testing.assert_allclose(a.data, b.data, rtol=0, atol=TOL)


def test_group_norm_float32_stays_float32_and_close_to_float64():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 6, 3, 3))
    w, b = rng.standard_normal(6), rng.standard_normal(6)
    y32 = ad.group_norm(x.astype(np.float32), 3, w.astype(np.float32), b.astype(np.float32))
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32.data, ad.group_norm(x, 3, w, b).data, rtol=0, atol=1e-5)


def test_group_norm_second_order_through_the_affine_map():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 4, 3))
    w, b = rng.standard_normal(4), rng.standard_normal(4)
    check_grads(lambda x, w, b: ad.group_norm(x, 2, w, b) ** 2, x, w, b, order=2)


@pytest.mark.parametrize("chunk_bytes", [1, 2000])
@pytest.mark.parametrize("s, p", [((1, 1), (1, 1)), ((2, 2), (1, 0))])
def test_conv2d_in_chunks_of_images_equals_one_product(monkeypatch, chunk_bytes, s, p):
    # 1 byte: one image per chunk; 2000: a few images per chunk, the last one shorter
    import odeflow.autodiff.conv as conv_module
    rng = np.random.default_rng(5)
    x, w, b = _leaves(rng, (7, 3, 5, 6), (4, 4, 3, 3), (4,))
    y_ref = reference_conv2d(ops.concatenate([Tensor(np.full((7, 1, 5, 6), 0.25)), x], axis=1),
                             w, b, s, p)
    monkeypatch.setattr(conv_module, "CHUNK_BYTES", chunk_bytes)
    y = concat_conv2d(0.25, x, w, b, s, p)
    np.testing.assert_allclose(y.data, y_ref.data, rtol=0, atol=TOL)
    g = rng.standard_normal(y.shape)
    for got, want in zip(gradients(y, [x, w, b], grad_outputs=g),
                         gradients(y_ref, [x, w, b], grad_outputs=g)):
        np.testing.assert_allclose(got.data, want.data, rtol=0, atol=TOL)


def test_remembered_geometry_still_rejects_a_bool_window():
    x = np.zeros((1, 1, 4, 4))
    ad.im2col(x, 1)  # remembers (shape, 1, 1, 0)
    with pytest.raises(InputError, match="kernel_size"):
        ad.im2col(x, True)
    with pytest.raises(InputError, match="kernel_size"):
        ad.im2col(x, [True, 1])  # a list: checked without the cache


@pytest.mark.parametrize("k, s, p, h", [(2, None, 0, 4), (2, None, 0, 5), ((2, 3), None, 0, 7),
                                        (2, 1, 0, 4), (3, 2, 1, 6)])
def test_avg_pool2d_equals_the_mean_of_the_patches(k, s, p, h):
    rng = np.random.default_rng(6)
    x = Tensor(rng.standard_normal((2, 3, h, h + 1)), requires_grad=True)
    y = ad.avg_pool2d(x, k, s, p)
    cols = reference_im2col(x.data, (k, k) if isinstance(k, int) else k,
                            (s or k, s or k) if isinstance(s or k, int) else (s or k), (p, p))
    np.testing.assert_allclose(y.data, cols.mean(axis=(3, 4)).transpose(0, 3, 1, 2), rtol=0, atol=TOL)
    check_grads(lambda x: ad.avg_pool2d(x, k, s, p) ** 2, x.data, order=2)


@pytest.mark.parametrize("affine", [True, False])
def test_group_norm_with_relu_equals_relu_of_group_norm(affine):
    rng = np.random.default_rng(7)
    x, w, b = _leaves(rng, (3, 4, 3, 3), (4,), (4,))
    w, b = (w, b) if affine else (None, None)
    y = ad.group_norm(x, 2, w, b, relu=True)
    y_ref = ops.relu(reference_group_norm(x, 2, w, b))
    np.testing.assert_allclose(y.data, y_ref.data, rtol=0, atol=TOL)
    g = rng.standard_normal(y.shape)
    wrt = [x] + ([w, b] if affine else [])
    for got, want in zip(gradients(y, wrt, grad_outputs=g), gradients(y_ref, wrt, grad_outputs=g)):
        np.testing.assert_allclose(got.data, want.data, rtol=0, atol=TOL)
    # second order, the points kept away from the kink (check_grads steps ~1e-6)
    x0 = rng.standard_normal((2, 4, 3))
    assert np.abs(ad.group_norm(x0, 2).data).min() > 1e-3
    check_grads(lambda x: ad.group_norm(x, 2, relu=True) ** 2, x0, order=2)
