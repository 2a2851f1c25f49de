"""The fused MLP op (odeflow.nn.fused_mlp): the same values and gradients as the layer-by-layer
engine path to ~1e-12, derivatives against central finite differences to second order (the
recorded VJP), every built-in activation, float32 kept float32, batch shapes, fallbacks, the
scratch pool's rules, the lincomb op, and gradients through ODE solves."""
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import odeflow
from odeflow import nn
from odeflow.autodiff import Tensor, gradients, ops, scratch
from odeflow.errors import InputError, InputTypeError, ShapeError
from odeflow.nn import fused_mlp
from odeflow.testing import check_grads

FAST = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ACTIVATIONS = ["tanh", "relu", "sigmoid", "softplus", "elu", "identity"]


def make(sizes, activation="tanh", dtype=np.float64, rng=0, **kwargs):
    return nn.MLP(sizes, activation=activation, rng=rng, dtype=dtype, **kwargs)


def both_paths(mlp, x, g, create_graph=False):
    """Output and gradients (x first, then the parameters) by the fused and the generic path."""
    results = []
    for fused in (True, False):
        mlp.fused = fused
        xt = Tensor(x, requires_grad=True)
        out = mlp(xt)
        grads = gradients(out, [xt] + mlp.parameters(), g, create_graph=create_graph)
        results.append((out, grads))
    mlp.fused = True
    return results


def assert_close(a, b, rtol=1e-12, atol=1e-13):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_one_node_with_every_parameter_as_parent(activation):
    m = make((3, 5, 4, 2), activation)
    x = Tensor(np.ones((6, 3)), requires_grad=True)
    out = m(x)
    assert out._parents[0] is x and list(out._parents[1:]) == m.parameters()
    m.fused = False
    assert m(x)._parents[0] is not x  # several nodes


@FAST
@given(activation=st.sampled_from(ACTIVATIONS), widths=st.lists(st.integers(1, 7), min_size=2, max_size=4),
       batch=st.lists(st.integers(1, 4), min_size=0, max_size=2).map(tuple),
       bias=st.booleans(), final=st.sampled_from([None, "tanh", "softplus"]), seed=st.integers(0, 2**31))
def test_fused_equals_layer_by_layer(activation, widths, batch, bias, final, seed):
    rng = np.random.default_rng(seed)
    m = make(widths, activation, bias=bias, final_activation=final, rng=seed)
    x = rng.standard_normal(batch + (widths[0],))
    g = rng.standard_normal(batch + (widths[-1],))
    (out_f, grads_f), (out_u, grads_u) = both_paths(m, x, g)
    assert out_f.shape == out_u.shape == batch + (widths[-1],)
    assert_close(out_f.data, out_u.data)
    for a, b in zip(grads_f, grads_u):
        assert a.shape == b.shape
        assert_close(a.data, b.data)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_float32_stays_float32(activation):
    rng = np.random.default_rng(1)
    m = make((3, 16, 2), activation, dtype=np.float32)
    x = rng.standard_normal((5, 3)).astype(np.float32)
    g = rng.standard_normal((5, 2)).astype(np.float32)
    (out_f, grads_f), (out_u, grads_u) = both_paths(m, x, g)
    assert out_f.dtype == np.float32 and all(a.dtype == np.float32 for a in grads_f)
    np.testing.assert_allclose(out_f.data, out_u.data, rtol=1e-6, atol=1e-6)
    for a, b in zip(grads_f, grads_u):
        np.testing.assert_allclose(a.data, b.data, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_derivatives_match_finite_differences_to_second_order(activation):
    # x and every weight as arguments; ELU and ReLU inputs kept away from their kinks by the seed
    m = make((3, 6, 2), activation, rng=3)

    def f(x, w0, b0, w1, b1):
        m.layers[0].weight, m.layers[0].bias, m.layers[-1].weight, m.layers[-1].bias = w0, b0, w1, b1
        return m(x)

    x = np.random.default_rng(4).standard_normal((4, 3))
    params = [p.data.copy() for p in m.parameters()]
    check_grads(f, x, *params, order=2)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_second_derivatives_equal_layer_by_layer(activation):
    rng = np.random.default_rng(5)
    m = make((2, 8, 8, 2), activation, rng=5)
    x = rng.standard_normal((7, 2))
    g = rng.standard_normal((7, 2))
    seconds = []
    for fused in (True, False):
        m.fused = fused
        xt = Tensor(x, requires_grad=True)
        gx, *gp = gradients(m(xt), [xt] + m.parameters(), g, create_graph=True)
        loss = ops.sum(gx * gx) + ops.sum(gp[2] * gp[2])  # a Hutchinson-style use of a VJP
        seconds.append(gradients(loss, [xt] + m.parameters(), allow_unused=True))
    m.fused = True
    for a, b in zip(*seconds):  # the last bias does not enter a VJP: None on both paths
        assert (a is None) == (b is None)
        if a is not None:
            assert_close(a.data, b.data, rtol=1e-11, atol=1e-12)


def test_only_wanted_gradients_and_frozen_layers():
    rng = np.random.default_rng(6)
    m = make((2, 5, 5, 3), rng=6)
    m.layers[0].weight.requires_grad = False
    m.layers[0].bias.requires_grad = False
    x = rng.standard_normal((4, 2))  # a constant: no dx, and nothing below layer 2 is needed
    g = rng.standard_normal((4, 3))
    wanted = [p for p in m.parameters() if p.requires_grad]
    fused = gradients(m(x), wanted, g)
    m.fused = False
    plain = gradients(m(x), wanted, g)
    for a, b in zip(fused, plain):
        assert_close(a.data, b.data)


def test_several_graphs_alive_and_retained_walks_reuse_no_buffer_too_early():
    # scratch arrays go back to the pool only when their node is freed: two live graphs,
    # walked in either order and twice each, keep their own activations
    rng = np.random.default_rng(7)
    m = make((2, 64, 64, 2), rng=7)
    xs = [rng.standard_normal((256, 2)) for _ in range(3)]
    g = rng.standard_normal((256, 2))
    m.fused = False
    expected = [gradients(m(Tensor(x)), m.parameters(), g) for x in xs]
    m.fused = True
    outs = [m(Tensor(x)) for x in xs]
    for i in (2, 0, 1, 0):
        got = gradients(outs[i], m.parameters(), g, retain_graph=True)
        m(Tensor(rng.standard_normal((256, 2))))  # churn the pool in between
        for a, b in zip(got, expected[i]):
            assert_close(a.data, b.data)


def test_fallbacks_give_the_generic_path():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((4, 3))

    class Cube(nn.Module):
        def forward(self, z):
            return z * z * z
    custom = make((3, 4, 2), activation=Cube())
    assert custom._fused_plan() is None
    assert make((3, 4, 2), activation=nn.ELU(alpha=-1.0))._fused_plan() is None
    m = make((3, 4, 2))
    assert fused_mlp.mlp(Tensor(x.astype(np.float32)), m._fused_plan()) is None  # mixed dtypes
    mixed = m(x.astype(np.float32))  # promoted by the engine, as before
    assert mixed.dtype == np.float64
    m.fused = False
    assert_close(mixed.data, m(x.astype(np.float32)).data)
    with pytest.raises(ShapeError, match="last axis 3"):
        make((3, 4, 2))(np.ones((2, 5)))


def test_plain_arrays_and_no_grad():
    m = make((3, 4, 2))
    x = np.random.default_rng(9).standard_normal((5, 3))
    out = m(x)
    assert out.requires_grad  # through the parameters
    with odeflow.no_grad():
        quiet = m(Tensor(x, requires_grad=True))
    assert not quiet.requires_grad
    m.fused = False
    assert_close(out.data, m(x).data)


def test_import_does_not_load_numba():
    code = "import sys, odeflow.nn; assert 'numba' not in sys.modules, 'numba imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_scratch_pool_rules():
    scratch.clear()
    a = scratch.take((128, 64), np.float64)
    scratch.give(a)
    assert scratch.take((128, 64), "float64") is a  # same shape and dtype: reused
    assert scratch.take((128, 64), np.float64) is not a  # taken once only
    small = scratch.take((2, 2), np.float64)
    scratch.give(small)
    assert scratch.take((2, 2), np.float64) is not small  # small arrays are not pooled
    lease = scratch.Lease([a])
    del lease
    assert scratch.take((128, 64), np.float64) is a
    big = np.empty(scratch.MAX_BYTES // 8 + 1)
    scratch.give(big)
    assert scratch.take(big.shape, big.dtype) is not big  # over the cap: dropped
    scratch.clear()


# -- lincomb: one node per Runge-Kutta stage ---------------------------------------------

def test_lincomb_values_gradients_and_errors():
    rng = np.random.default_rng(10)
    y, k1, k2 = (rng.standard_normal((3, 2)) for _ in range(3))
    out = ops.lincomb(y, 0.5, [2.0, 0.0, -1.0], [k1, k1 * 7, k2])
    assert_close(out.data, y + 0.5 * (2.0 * k1 - k2))
    check_grads(lambda y, k1, k2: ops.lincomb(y, 0.3, [2.0, -1.5], [k1, k2]), y, k1, k2, order=2)
    single = ops.lincomb(y.astype(np.float32), 0.1, [3.0], [k1.astype(np.float32)])
    assert single.dtype == np.float32
    with pytest.raises(ShapeError, match="does not match"):
        ops.lincomb(y, 1.0, [1.0], [np.ones(2)])
    with pytest.raises(InputError, match="2 `coeffs` for 1 `terms`"):
        ops.lincomb(y, 1.0, [1.0, 2.0], [k1])
    # a Tensor step or coefficient would silently get no gradient: refused by name
    h = Tensor(np.array(0.5), requires_grad=True)
    with pytest.raises(InputTypeError, match="`scale` must be a real number.*Tensor"):
        ops.lincomb(y, h, [1.0], [k1])
    with pytest.raises(InputTypeError, match=r"`coeffs\[1\]` must be a real number"):
        ops.lincomb(y, 0.5, [1.0, h], [k1, k2])


def test_mlp_with_an_ndarray_weight_takes_the_generic_path():
    # a weight replaced by a plain array is accepted layer by layer; the fused path must step aside
    x = np.random.default_rng(12).standard_normal((2, 3))
    outs = []
    for fused in (True, False):
        m = nn.MLP((3, 5, 2), rng=0, fused=fused)
        m.layers[0].weight = np.ones((5, 3))
        outs.append(m(x).data)
    assert_close(outs[0], outs[1], rtol=0, atol=0)


# -- through ODE solves ------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["backprop", "backsolve", "checkpoint"])
@pytest.mark.parametrize("activation", ["tanh", "softplus"])
def test_ode_gradients_equal_with_and_without_fusion(mode, activation):
    rng = np.random.default_rng(11)
    m = make((2, 16, 16, 2), activation, rng=11)
    y0 = rng.standard_normal((8, 2))
    w = rng.standard_normal((3, 8, 2))
    t = np.array([0.0, 0.4, 1.0])
    results = []
    for fused in (True, False):
        m.fused = fused
        m.zero_grad()
        y = Tensor(y0, requires_grad=True)
        if mode == "backprop":
            ys = odeflow.odeint(lambda s, z: m(z), y, t, rtol=1e-8, atol=1e-8)
        else:
            ys = odeflow.odeint_adjoint(lambda s, z: m(z), y, t, rtol=1e-8, atol=1e-8, adjoint_mode=mode)
        ops.sum(ys * w).backward()
        results.append([ys.data, y.grad.data] + [p.grad.data for p in m.parameters()])
    m.fused = True
    for a, b in zip(*results):
        assert_close(a, b, rtol=1e-10, atol=1e-12)
