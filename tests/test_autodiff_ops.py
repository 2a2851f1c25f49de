"""Every op: forward equal to NumPy, first- and second-order gradients equal to
central finite differences (odeflow.testing.check_grads), on hypothesis-drawn
shapes with broadcasting and size-1 axes; dtype preservation; error messages."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import odeflow.autodiff as ad
from odeflow.autodiff import Tensor, ops
from odeflow.errors import InputError, InputTypeError, ShapeError
from odeflow.testing import check_grads

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
seeds = st.integers(0, 2**32 - 1)
shapes = st.lists(st.integers(1, 3), min_size=0, max_size=3).map(tuple)


@st.composite
def broadcast_pair(draw):
    """Two shapes that broadcast together: leading axes dropped, some set to 1."""
    full = draw(st.lists(st.integers(1, 3), min_size=0, max_size=3))

    def side():
        lead = draw(st.integers(0, len(full)))
        return tuple(1 if draw(st.booleans()) else n for n in full[lead:])

    return side(), side()


def normal(rng, shape):
    return np.asarray(rng.standard_normal(shape))


def positive(rng, shape):
    return np.asarray(rng.uniform(0.5, 2.0, shape))


def away_from_kinks(rng, shape):
    """|x| >= 0.2 and |x -+ 0.5| >= 0.05: far (relative to the FD step) from
    the kinks of relu, abs, elu'' and clip(-0.5, 0.5)."""
    z = normal(rng, shape)
    x = np.where(z >= 0, 1.0, -1.0) * (0.2 + np.abs(z))
    return np.where(np.abs(np.abs(x) - 0.5) < 0.05, x * 1.3, x)


def distinct(rng, shape):
    """Values at least 0.1 apart: max/min have a unique argmax under perturbation."""
    n = int(np.prod(shape))
    return (rng.permutation(n) * 0.1 + rng.uniform(0, 0.01, n)).reshape(shape)


UNARY = {
    "neg": (ops.neg, np.negative, normal),
    "exp": (ops.exp, np.exp, normal),
    "log": (ops.log, np.log, positive),
    "sqrt": (ops.sqrt, np.sqrt, positive),
    "tanh": (ops.tanh, np.tanh, normal),
    "sigmoid": (ops.sigmoid, lambda x: 1 / (1 + np.exp(-x)), normal),
    "softplus": (ops.softplus, lambda x: np.log1p(np.exp(x)), normal),
    "relu": (ops.relu, lambda x: np.maximum(x, 0), away_from_kinks),
    "elu": (ops.elu, lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))), away_from_kinks),
    "elu_alpha": (lambda x: ops.elu(x, 0.7), lambda x: np.where(x > 0, x, 0.7 * np.expm1(np.minimum(x, 0))),
                  away_from_kinks),
    "sin": (ops.sin, np.sin, normal),
    "cos": (ops.cos, np.cos, normal),
    "abs": (ops.abs, np.abs, away_from_kinks),
    "clip": (lambda x: ops.clip(x, -0.5, 0.5), lambda x: np.clip(x, -0.5, 0.5), away_from_kinks),
    "clip_lo": (lambda x: ops.clip(x, lo=-0.5), lambda x: np.maximum(x, -0.5), away_from_kinks),
    "square": (lambda x: x ** 2, np.square, normal),
    "rpow": (lambda x: 2.0 ** x, lambda x: 2.0 ** x, normal),
    "rsub": (lambda x: 1.0 - x, lambda x: 1.0 - x, normal),
    "rdiv": (lambda x: 1.0 / x, lambda x: 1.0 / x, positive),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@FAST
@given(shape=shapes, seed=seeds)
def test_unary_forward_and_gradients(name, shape, seed):
    op, reference, sample = UNARY[name]
    x = sample(np.random.default_rng(seed), shape)
    np.testing.assert_allclose(op(Tensor(x)).data, reference(x), rtol=1e-12, atol=1e-14)
    check_grads(op, x, order=2)


BINARY = {
    "add": (ops.add, np.add, normal, normal),
    "sub": (ops.sub, np.subtract, normal, normal),
    "mul": (ops.mul, np.multiply, normal, normal),
    "div": (ops.div, np.divide, normal, away_from_kinks),
    "pow": (ops.pow, np.power, positive, normal),
    "operator_mixed": (lambda a, b: (a * b - a / (b * b + 1.0)) ** 2, None, normal, normal),
}


@pytest.mark.parametrize("name", sorted(BINARY))
@FAST
@given(pair=broadcast_pair(), seed=seeds)
def test_binary_broadcasting_forward_and_gradients(name, pair, seed):
    op, reference, sample_a, sample_b = BINARY[name]
    rng = np.random.default_rng(seed)
    a, b = sample_a(rng, pair[0]), sample_b(rng, pair[1])
    out = op(Tensor(a), Tensor(b))
    assert out.shape == np.broadcast_shapes(a.shape, b.shape)
    if reference is not None:
        np.testing.assert_allclose(out.data, reference(a, b), rtol=1e-12)
    check_grads(op, a, b, order=2)


@FAST
@given(pair=broadcast_pair(), seed=seeds)
def test_where_broadcasting(pair, seed):
    rng = np.random.default_rng(seed)
    a, b = normal(rng, pair[0]), normal(rng, pair[1])
    cond = rng.random(pair[1]) > 0.5
    out = ops.where(cond, Tensor(a), Tensor(b))
    np.testing.assert_array_equal(out.data, np.where(cond, a, b))
    check_grads(lambda a, b: ops.where(cond, a, b) * a, a, b, order=2)


@st.composite
def matmul_shapes(draw):
    n, k, m = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    batch_a, batch_b = draw(broadcast_pair())
    a = (k,) if draw(st.integers(0, 3)) == 0 else batch_a + (n, k)
    b = (k,) if draw(st.integers(0, 3)) == 0 else batch_b + (k, m)
    return a, b


@FAST
@given(pair=matmul_shapes(), seed=seeds)
def test_matmul_batched_and_1d(pair, seed):
    rng = np.random.default_rng(seed)
    a, b = normal(rng, pair[0]), normal(rng, pair[1])
    np.testing.assert_allclose((Tensor(a) @ Tensor(b)).data, a @ b, rtol=1e-12)
    check_grads(ops.matmul, a, b, order=2)


@FAST
@given(batch=st.lists(st.integers(1, 3), max_size=2).map(tuple), n_in=st.integers(1, 3),
       n_out=st.integers(1, 3), bias=st.booleans(), seed=seeds)
def test_linear_matches_matmul_plus_bias(batch, n_in, n_out, bias, seed):
    rng = np.random.default_rng(seed)
    x, w, b = normal(rng, batch + (n_in,)), normal(rng, (n_out, n_in)), normal(rng, (n_out,))
    expected = x @ w.T + (b if bias else 0.0)
    if bias:
        np.testing.assert_allclose(ops.linear(x, w, b).data, expected, rtol=1e-12)
        check_grads(ops.linear, x, w, b, order=2)
    else:
        np.testing.assert_allclose(ops.linear(x, w).data, expected, rtol=1e-12)
        check_grads(ops.linear, x, w, order=2)


@st.composite
def shape_and_axis(draw, allow_tuple=True):
    shape = draw(st.lists(st.integers(1, 3), min_size=1, max_size=3).map(tuple))
    choices = [None] + list(range(-len(shape), len(shape)))
    axis = draw(st.sampled_from(choices))
    if allow_tuple and draw(st.booleans()):
        axis = tuple(draw(st.lists(st.integers(0, len(shape) - 1), min_size=1, unique=True)))
    return shape, axis, draw(st.booleans())


REDUCTIONS = {
    "sum": (ops.sum, np.sum, normal),
    "mean": (ops.mean, np.mean, normal),
    "max": (ops.max, np.max, distinct),
    "min": (ops.min, np.min, distinct),
    "logsumexp": (ops.logsumexp, lambda x, axis, keepdims: np.log(np.sum(
        np.exp(x), axis=axis, keepdims=keepdims)), normal),
}


@pytest.mark.parametrize("name", sorted(REDUCTIONS))
@FAST
@given(spec=shape_and_axis(), seed=seeds)
def test_reductions(name, spec, seed):
    shape, axis, keepdims = spec
    op, reference, sample = REDUCTIONS[name]
    x = sample(np.random.default_rng(seed), shape)
    out = op(Tensor(x), axis, keepdims)
    np.testing.assert_allclose(out.data, reference(x, axis=axis, keepdims=keepdims), rtol=1e-12)
    check_grads(lambda x: op(x, axis, keepdims) ** 2, x, order=2)


def test_max_ties_share_the_gradient():
    x = Tensor([1.0, 3.0, 3.0, 2.0], requires_grad=True)
    x.max().backward()
    np.testing.assert_array_equal(x.grad.data, [0, 0.5, 0.5, 0])


def test_logsumexp_softmax_are_stable_for_large_inputs():
    x = np.array([[1000.0, 1000.0, -1000.0], [-1e4, 0.0, 1.0]])
    np.testing.assert_allclose(ops.logsumexp(x, axis=1).data, [1000 + np.log(2), 1 + np.log1p(np.exp(-1))])
    np.testing.assert_allclose(ops.softmax(x, axis=1).data.sum(axis=1), 1.0)
    assert np.isfinite(ops.log_softmax(x, axis=1).data).all()
    assert ops.sigmoid(np.array([-800.0, 800.0])).data.tolist() == [0.0, 1.0]
    np.testing.assert_allclose(ops.softplus(np.array([-800.0, 800.0])).data, [0.0, 800.0])
    # the lower tail keeps full relative precision
    np.testing.assert_allclose(ops.sigmoid(np.array([-40.0])).data, np.exp(-40.0) / (1 + np.exp(-40.0)),
                               rtol=1e-14)


@pytest.mark.parametrize("fn", [ops.softmax, ops.log_softmax])
@FAST
@given(spec=shape_and_axis(allow_tuple=False), seed=seeds)
def test_softmax_family(fn, spec, seed):
    shape, axis, _ = spec
    axis = -1 if axis is None else axis
    x = normal(np.random.default_rng(seed), shape)
    expected = np.exp(x) / np.exp(x).sum(axis=axis, keepdims=True)
    got = fn(Tensor(x), axis).data
    expected = expected if fn is ops.softmax else np.log(expected)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)
    check_grads(lambda x: fn(x, axis) * x, x, order=2)


@FAST
@given(shape=shapes, seed=seeds, data=st.data())
def test_reshape_transpose_swapaxes_expand_dims(shape, seed, data):
    x = normal(np.random.default_rng(seed), shape)
    perm = tuple(data.draw(st.permutations(range(len(shape)))))
    np.testing.assert_array_equal(ops.transpose(x, perm).data, np.transpose(x, perm))
    np.testing.assert_array_equal(Tensor(x).T.data, x.T)
    check_grads(lambda x: ops.transpose(x, perm) * ops.transpose(x, perm), x, order=2)
    check_grads(lambda x: ops.reshape(x, shape[::-1]) ** 2, x, order=2)
    check_grads(lambda x: ops.reshape(x, (-1,)) ** 3, x, order=2)
    axis = data.draw(st.integers(0, len(shape)))
    assert ops.expand_dims(x, axis).shape == np.expand_dims(x, axis).shape
    if len(shape) >= 2:
        np.testing.assert_array_equal(ops.swapaxes(x, 0, -1).data, np.swapaxes(x, 0, -1))
        check_grads(lambda x: ops.swapaxes(x, 0, -1) ** 2, x, order=2)


@FAST
@given(pair=broadcast_pair(), seed=seeds)
def test_broadcast_to(pair, seed):
    small, other = pair
    target = np.broadcast_shapes(small, other)
    x = normal(np.random.default_rng(seed), small)
    np.testing.assert_array_equal(ops.broadcast_to(x, target).data, np.broadcast_to(x, target))
    check_grads(lambda x: ops.broadcast_to(x, target) ** 2, x, order=2)


@FAST
@given(shape=st.lists(st.integers(1, 3), min_size=1, max_size=3).map(tuple), n=st.integers(1, 3),
       seed=seeds, data=st.data())
def test_concatenate_stack_split(shape, n, seed, data):
    rng = np.random.default_rng(seed)
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    parts = []
    for _ in range(n):
        s = list(shape)
        s[axis] = data.draw(st.integers(1, 3))
        parts.append(normal(rng, tuple(s)))
    np.testing.assert_array_equal(ops.concatenate(parts, axis).data, np.concatenate(parts, axis))
    check_grads(lambda *ps: ops.concatenate(ps, axis) ** 2, *parts, order=2)
    same = [normal(rng, shape) for _ in range(n)]
    np.testing.assert_array_equal(ops.stack(same, axis).data, np.stack(same, axis))
    check_grads(lambda *ps: ops.stack(ps, axis) ** 2, *same, order=2)
    whole = np.concatenate(same, axis)
    pieces = ops.split(whole, n, axis)
    for got, want in zip(pieces, np.split(whole, n, axis)):
        np.testing.assert_array_equal(got.data, want)
    def scaled_pieces(w):
        return ops.concatenate([p * (i + 1.0) for i, p in enumerate(ops.split(w, n, axis))], axis)
    check_grads(lambda w: scaled_pieces(w) ** 2, whole, order=2)


def test_split_at_indices():
    x = np.arange(10.0)
    assert [p.shape for p in ops.split(x, [2, 5], 0)] == [(2,), (3,), (5,)]
    check_grads(lambda x: ops.split(x, [2, 5])[1] ** 2, x, order=2)


INDICES = [
    (slice(None, None, 2),),
    (1,),
    (Ellipsis, 0),
    (None, slice(1, 3)),
    (-1, slice(None, None, -1)),
    (np.array([0, 2, 2, 1, 0]),),            # repeated indices: gradients add up
    (np.array([[1, 1], [0, 2]]), slice(None)),
    (np.array([True, False, True]),),
    ([0, 0, 2],),
]


@pytest.mark.parametrize("index", INDICES, ids=[str(i) for i in range(len(INDICES))])
def test_getitem_basic_and_advanced(index):
    x = normal(np.random.default_rng(0), (3, 4))
    expected = x[index[0]] if len(index) == 1 else x[index]
    np.testing.assert_array_equal(Tensor(x)[index if len(index) > 1 else index[0]].data, expected)
    check_grads(lambda x: ops.getitem(x, index) ** 2, x, order=2)


def test_getitem_repeated_indices_accumulate():
    x = Tensor(np.zeros(3), requires_grad=True)
    x[np.array([0, 0, 2, 0])].sum().backward()
    np.testing.assert_array_equal(x.grad.data, [3.0, 0.0, 1.0])


def test_index_add_is_adjoint_of_getitem():
    check_grads(lambda g: ops.index_add(g, np.array([1, 1, 0]), (3, 2)) ** 2,
                normal(np.random.default_rng(1), (3, 2)), order=2)


# -- dtypes ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(UNARY))
def test_float32_stays_float32(name):
    op, _, sample = UNARY[name]
    x = Tensor(sample(np.random.default_rng(3), (4,)).astype(np.float32), requires_grad=True)
    y = op(x)
    assert y.dtype == np.float32, name
    (y * 2.0).sum().backward()
    assert x.grad.dtype == np.float32


def test_float32_through_matmul_reductions_and_functional():
    rng = np.random.default_rng(0)
    a = Tensor(rng.standard_normal((3, 4)).astype(np.float32), requires_grad=True)
    b = Tensor(rng.standard_normal((4,)).astype(np.float32), requires_grad=True)
    loss = ops.logsumexp(ops.softmax(a @ b + 1, axis=0), axis=0) + ops.mean(a) * 3
    assert loss.dtype == np.float32
    loss.backward()
    assert a.grad.dtype == b.grad.dtype == np.float32
    out, vjp_fn = ad.vjp(lambda x: ops.tanh(x) * 2, np.ones(3, np.float32))
    assert out.dtype == vjp_fn(np.ones(3, np.float32))[0].dtype == np.float32


def test_astype_converts_the_gradient_back():
    x = Tensor(np.array([1.5, -2.0]), requires_grad=True)
    y = x.astype(np.float32)
    assert y.dtype == np.float32
    (y * y).sum().backward()
    assert x.grad.dtype == np.float64
    np.testing.assert_allclose(x.grad.data, [3.0, -4.0])
    assert ops.astype(x, np.float64) is x


def test_mixed_dtype_gradient_is_cast_back_to_the_leaf_dtype():
    x = Tensor(np.ones(2, np.float32), requires_grad=True)
    (x * np.ones(2)).sum().backward()   # float32 * float64 array -> float64 (NumPy)
    assert x.grad.dtype == np.float32


def test_constructor_dtypes():
    assert Tensor([1, 2]).dtype == np.int64
    assert Tensor([1, 2], requires_grad=True).dtype == np.float64
    assert Tensor([True], requires_grad=True).dtype == np.float64
    assert Tensor(np.ones(2, np.float32), requires_grad=True).dtype == np.float32
    with pytest.raises(InputTypeError, match="complex128"):
        Tensor(np.ones(2, complex))
    with pytest.raises(InputTypeError, match="`requires_grad=True`.*int32"):
        Tensor([1], requires_grad=True, dtype=np.int32)


# -- error messages ---------------------------------------------------------------------

@pytest.mark.parametrize("op", [ops.add, ops.sub, ops.mul, ops.div, ops.pow])
def test_broadcast_mismatch_names_both_shapes(op):
    with pytest.raises(ShapeError, match=r"\(2, 3\) and \(4,\)"):
        op(Tensor(np.ones((2, 3))), np.ones(4))


def test_shape_errors_name_the_shapes():
    with pytest.raises(ShapeError, match=r"\(2, 3\) and \(4, 5\)"):
        Tensor(np.ones((2, 3))) @ np.ones((4, 5))
    with pytest.raises(ShapeError, match=r"\(\) and \(3,\)"):
        ops.matmul(Tensor(1.0), np.ones(3))
    with pytest.raises(ShapeError, match=r"shape \(2, 3\).*`shape` \(4,\)"):
        Tensor(np.ones((2, 3))).reshape(4)
    with pytest.raises(ShapeError, match=r"\(2, 3\).*`shape` \(4, 3\)"):
        ops.broadcast_to(np.ones((2, 3)), (4, 3))
    with pytest.raises(ShapeError, match=r"\[\(2, 3\), \(2, 4\)\]"):
        ops.concatenate([np.ones((2, 3)), np.ones((2, 4))], axis=0)
    with pytest.raises(ShapeError, match=r"\[\(2,\), \(3,\)\]"):
        ops.stack([np.ones(2), np.ones(3)])
    with pytest.raises(ShapeError, match=r"length 5.*3 equal sections"):
        ops.split(np.ones(5), 3)
    with pytest.raises(ShapeError, match=r"\(2,\), \(3,\), \(4,\)"):
        ops.where(np.ones(2, bool), np.ones(3), np.ones(4))
    with pytest.raises(ShapeError, match=r"`x` of shape \(5, 3\).*`weight` of shape \(2, 4\)"):
        ops.linear(np.ones((5, 3)), np.ones((2, 4)))
    with pytest.raises(ShapeError, match=r"`bias` has shape \(3,\); expected \(2,\)"):
        ops.linear(np.ones((5, 4)), np.ones((2, 4)), np.ones(3))
    with pytest.raises(ShapeError, match=r"shape \(2,\)"):
        Tensor(np.ones(2)).item()


def test_bad_axis_and_axes():
    with pytest.raises(InputError, match="`axis` 2 is out of range.*2 dimensions"):
        ops.sum(np.ones((2, 3)), axis=2)
    with pytest.raises(InputError, match="`axes`"):
        ops.transpose(np.ones((2, 3)), (0, 0))
    with pytest.raises(InputError, match="`tensors` is empty"):
        ops.concatenate([])


def test_non_shape_numpy_errors_are_not_disguised():
    with pytest.raises(ValueError, match="negative integer powers"):
        ops.pow(Tensor(np.array([2])), np.array([-1]))
