"""The graph walk and the functional API: accumulation through shared
subexpressions, retain_graph, freeing, no_grad, create_graph (higher order),
gradients(), vjp/grad (incl. params= and nesting), custom nodes, errors."""
import sys
import threading

import numpy as np
import pytest

import odeflow
from odeflow.autodiff import Tensor, grad, no_grad, ops, vjp
from odeflow.autodiff.backprop import gradients
from odeflow.autodiff.tensor import enable_grad, is_grad_enabled
from odeflow.errors import GradientError, InputError, InputTypeError, ShapeError
from odeflow.testing import check_grads


def test_top_level_exports_live_where_the_package_says():
    assert odeflow.Tensor is Tensor and odeflow.no_grad is no_grad
    assert odeflow.grad is grad and odeflow.vjp is vjp
    assert Tensor.__module__ == "odeflow.autodiff.tensor"
    assert grad.__module__ == vjp.__module__ == "odeflow.autodiff.functional"


def test_diamond_graph_accumulates_both_paths():
    x = Tensor(2.0, requires_grad=True)
    a = x * 3.0           # shared subexpression used twice below
    y = a * a + ops.sin(a)
    y.backward()
    # dy/dx = (2a + cos a) * 3 with a = 6
    np.testing.assert_allclose(x.grad.data, (12 + np.cos(6.0)) * 3)


def test_same_leaf_in_both_operands_and_repeated_backward_accumulates():
    x = Tensor(np.array([1.0, -2.0]), requires_grad=True)
    (x * x + x).sum().backward()
    np.testing.assert_allclose(x.grad.data, 2 * x.data + 1)
    (x * 4.0).sum().backward()  # a second graph: .grad accumulates
    np.testing.assert_allclose(x.grad.data, 2 * x.data + 5)


def test_retain_graph_allows_a_second_walk_and_default_frees():
    x = Tensor(np.array([0.5, 1.5]), requires_grad=True)
    y = ops.tanh(x).sum()
    y.backward(retain_graph=True)
    first = x.grad.data.copy()
    y.backward()
    np.testing.assert_allclose(x.grad.data, 2 * first)
    with pytest.raises(GradientError, match="retain_graph=True"):
        y.backward()


def test_freed_shared_subgraph_is_reported():
    x = Tensor(1.0, requires_grad=True)
    h = ops.exp(x)
    (h * 2.0).backward()
    with pytest.raises(GradientError, match="already freed"):
        (h * 3.0).backward()


def test_grads_are_independent_arrays():
    x, y = Tensor(np.ones(2), requires_grad=True), Tensor(np.ones(2), requires_grad=True)
    (x + y).backward(np.array([1.0, 2.0]))
    x.grad.data[0] = 99.0  # in-place edit of one gradient...
    np.testing.assert_array_equal(y.grad.data, [1.0, 2.0])  # ...leaves the other alone
    assert x.grad.data.flags.writeable and y.grad.data.flags.writeable


def test_no_grad_records_nothing_and_is_thread_local():
    x = Tensor(np.ones(3), requires_grad=True)
    with no_grad():
        y = x * 2.0
        assert not is_grad_enabled()
        with enable_grad():
            z = x * 2.0
        seen = []
        t = threading.Thread(target=lambda: seen.append(is_grad_enabled()))
        t.start()
        t.join()
    assert is_grad_enabled() and seen == [True]
    assert not y.requires_grad and y.is_leaf and z.requires_grad
    with pytest.raises(GradientError, match="does not require grad"):
        y.sum().backward()

    @no_grad()
    def evaluate(t):
        return t * 3.0
    assert not evaluate(x).requires_grad


def test_detach_cuts_the_graph():
    x = Tensor(3.0, requires_grad=True)
    y = x * x.detach()
    y.backward()
    assert x.grad.item() == 3.0


def test_backward_errors_name_the_shapes():
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    y = x * 2.0
    with pytest.raises(GradientError, match=r"shape \(2, 3\)"):
        y.backward()
    with pytest.raises(ShapeError, match=r"`grad` has shape \(3,\).*shape \(2, 3\)"):
        y.backward(np.ones(3))
    with pytest.raises(GradientError, match=r"shape \(2,\) does not require grad"):
        Tensor(np.ones(2)).backward(np.ones(2))


def test_backward_with_explicit_grad_is_a_vjp():
    rng = np.random.default_rng(0)
    a, u = rng.standard_normal((3, 4)), rng.standard_normal(3)
    x = Tensor(rng.standard_normal(4), requires_grad=True)
    (Tensor(a) @ x).backward(u)
    np.testing.assert_allclose(x.grad.data, a.T @ u)


def test_create_graph_gives_second_derivatives():
    x = Tensor(np.array([0.3, -0.7]), requires_grad=True)
    y = (x ** 3 * ops.sin(x)).sum()
    y.backward(create_graph=True)
    g = x.grad
    assert g.requires_grad
    x.grad = None
    g.sum().backward()
    d = x.data
    second = 6 * d * np.sin(d) + 6 * d**2 * np.cos(d) - d**3 * np.sin(d)
    np.testing.assert_allclose(x.grad.data, second)


def test_gradients_does_not_touch_grad_and_handles_interior_inputs():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    h = x * x
    y = (h * 3.0 + x).sum()
    gh, gx = gradients(y, [h, x], retain_graph=True)
    np.testing.assert_allclose(gh.data, [3.0, 3.0])
    np.testing.assert_allclose(gx.data, 6 * x.data + 1)  # path through h is included
    assert x.grad is None
    (gx2,) = gradients([y, h.sum()], x, [None, 2.0])
    np.testing.assert_allclose(gx2.data, 6 * x.data + 1 + 4 * x.data)


def test_gradients_errors_and_allow_unused():
    x, unused = Tensor(1.0, requires_grad=True), Tensor(1.0, requires_grad=True)
    y = x * 2.0
    with pytest.raises(GradientError, match=r"`inputs\[1\]` \(shape \(\)\) is not used"):
        gradients(y, [x, unused], retain_graph=True)
    assert gradients(y, [x, unused], allow_unused=True, retain_graph=True)[1] is None
    with pytest.raises(GradientError, match=r"`inputs\[0\]`.*does not require grad"):
        gradients(y, [Tensor(1.0)])
    with pytest.raises(InputError, match="`grad_outputs` has 2 entries for 1 outputs"):
        gradients(y, x, [1.0, 1.0])
    with pytest.raises(InputTypeError, match="ndarray"):
        gradients(np.ones(2), x)


def test_gradients_create_graph_hessian_vector_product():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((3, 3))
    a = a + a.T
    x = Tensor(rng.standard_normal(3), requires_grad=True)
    v = rng.standard_normal(3)
    f = 0.5 * (x @ (Tensor(a) @ x)) + ops.sum(ops.exp(x))
    (g,) = gradients(f, x, create_graph=True)
    (hv,) = gradients(g, x, v)
    np.testing.assert_allclose(hv.data, a @ v + np.exp(x.data) * v)


def test_deep_graph_beyond_the_recursion_limit():
    x = Tensor(1.0, requires_grad=True)
    y = x
    for _ in range(sys.getrecursionlimit() + 500):
        y = y * 1.0001
    y.backward()
    np.testing.assert_allclose(x.grad.data, 1.0001 ** (sys.getrecursionlimit() + 500))


def test_make_node_custom_op_with_array_vjp():
    calls = []

    def cube(x):
        def vjp_all(g):
            calls.append(1)
            return [3 * x.data ** 2 * g.data]
        return ops.make_node(x.data ** 3, [x], vjp_all)

    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    (cube(x) * 2.0).sum().backward()
    np.testing.assert_allclose(x.grad.data, 6 * x.data ** 2)
    assert calls == [1]
    with no_grad():
        assert not cube(x).requires_grad


def test_custom_vjp_returning_a_wrong_shape_is_caught():
    x = Tensor(np.ones(3), requires_grad=True)
    y = ops.make_node(x.data * 2, [x], lambda g: [np.ones(2)])
    with pytest.raises(GradientError, match=r"shape \(2,\) for a Tensor of shape \(3,\)"):
        y.sum().backward()


# -- operators and NumPy interplay --------------------------------------------------------

def test_reflected_operators_with_scalars_and_arrays():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    arr = np.array([3.0, 4.0])
    for expr, expected in [(2.0 + x, [3, 4]), (2.0 - x, [1, 0]), (2.0 * x, [2, 4]), (2.0 / x, [2, 1]),
                           (2.0 ** x, [2, 4]), (arr * x, [3, 8]), (arr - x, [2, 2]), (arr / x, [3, 2]),
                           (arr @ x, 11.0), (-x, [-1, -2]), (abs(-x), [1, 2]), (+x, [1, 2])]:
        assert isinstance(expr, Tensor)
        np.testing.assert_allclose(expr.data, expected)
    y = (arr * x).sum() + (arr @ x)
    y.backward()
    np.testing.assert_allclose(x.grad.data, 2 * arr)


def test_ufuncs_on_tensors_are_refused_and_comparisons_are_arrays():
    x = Tensor(np.array([1.0, -2.0]))
    with pytest.raises(TypeError):
        np.exp(x)
    assert isinstance(x > 0, np.ndarray) and (x > 0).tolist() == [True, False]
    assert np.asarray(x) is x.data
    assert len(x) == 2 and [t.item() for t in x] == [1.0, -2.0]
    assert hash(x) == object.__hash__(x) and {x: 1}[x] == 1


def test_tensor_methods_match_numpy():
    d = np.arange(6.0).reshape(2, 3) - 2.5
    x = Tensor(d)
    assert x.shape == (2, 3) and x.ndim == 2 and x.size == 6 and x.dtype == np.float64
    np.testing.assert_allclose(x.sum(axis=0).data, d.sum(0))
    np.testing.assert_allclose(x.mean(1, keepdims=True).data, d.mean(1, keepdims=True))
    np.testing.assert_allclose(x.max().data, d.max())
    np.testing.assert_allclose(x.min(0).data, d.min(0))
    np.testing.assert_allclose(x.reshape(3, 2).data, d.reshape(3, 2))
    np.testing.assert_allclose(x.reshape((6,)).data, d.ravel())
    np.testing.assert_allclose(x.transpose().data, d.T)
    np.testing.assert_allclose(x.transpose(1, 0).data, d.T)
    np.testing.assert_allclose(x.flatten().data, d.ravel())
    np.testing.assert_allclose(x.clip(-1, 1).data, np.clip(d, -1, 1))
    np.testing.assert_allclose(x.abs().data, np.abs(d))
    assert x.numpy() is d
    assert "requires_grad=True" in repr(Tensor(1.0, requires_grad=True))
    assert "float32" in repr(Tensor(np.ones(1, np.float32)))


# -- functional API ---------------------------------------------------------------------------

def test_vjp_returns_arrays_and_tuple_per_argument():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((3, 4)), rng.standard_normal(4)
    out, vjp_fn = vjp(lambda a, b: ops.tanh(a @ b), a, b)
    assert isinstance(out, np.ndarray)
    u = rng.standard_normal(3)
    ga, gb = vjp_fn(u)
    s = (1 - np.tanh(a @ b) ** 2) * u
    np.testing.assert_allclose(ga, np.outer(s, b))
    np.testing.assert_allclose(gb, a.T @ s)
    ga2, _ = vjp_fn(2 * u)  # callable again
    np.testing.assert_allclose(ga2, 2 * ga)


def test_vjp_unused_argument_gives_zeros_but_an_unconnected_output_is_refused():
    out, vjp_fn = vjp(lambda x, y: x * 2.0, np.ones(2), np.ones(3))
    gx, gy = vjp_fn(np.ones(2))
    np.testing.assert_array_equal(gy, np.zeros(3))
    # a result connected to no input: a constant, or values re-wrapped: zeros could be a lie
    with pytest.raises(GradientError, match=r"not connected to its inputs"):
        vjp(lambda x: Tensor(np.ones(2)), np.ones(2))


def test_vjp_with_params_captured_in_a_closure():
    rng = np.random.default_rng(3)
    w = Tensor(rng.standard_normal((2, 2)), requires_grad=True)

    def func(y):
        return ops.tanh(y @ w)

    y = rng.standard_normal((5, 2))
    out, vjp_fn = vjp(func, y, params=[w])
    a = rng.standard_normal((5, 2))
    (gy,), (gw,) = vjp_fn(a)
    s = (1 - np.tanh(y @ w.data) ** 2) * a
    np.testing.assert_allclose(gy, s @ w.data.T)
    np.testing.assert_allclose(gw, y.T @ s)
    assert w.grad is None
    with pytest.raises(GradientError, match=r"`params\[0\]`"):
        vjp(func, y, params=[np.ones(2)])


def test_vjp_cotangent_shape_error_and_bad_return():
    _, vjp_fn = vjp(lambda x: x * 2.0, np.ones(3))
    with pytest.raises(ShapeError, match=r"\(2,\).*\(3,\)"):
        vjp_fn(np.ones(2))
    with pytest.raises(InputTypeError, match="str"):
        vjp(lambda x: "nope", np.ones(3))


def test_vjp_inside_a_differentiated_function_is_differentiable():
    # The CNF trace pattern: eps^T (df/dz) eps computed with vjp, then
    # differentiated again with respect to z and the parameters.
    rng = np.random.default_rng(4)
    w = Tensor(rng.standard_normal((3, 3)), requires_grad=True)
    eps = rng.standard_normal(3)

    def f(z):
        return ops.tanh(z @ w)

    def hutchinson(z):
        _, inner = vjp(f, z)
        (g,) = inner(eps)
        return ops.sum(g * eps)

    z = rng.standard_normal(3)
    value, outer = vjp(hutchinson, z, params=[w])
    (gz,), (gw,) = outer(1.0)
    # the whole nested construction, to second order, by finite differences
    check_grads(lambda z, w_: _hutchinson_fd(z, w_, eps), z, w.data, order=2)
    # and the two gradients the adjoint would use, component by component
    h = 1e-6
    for i in range(3):
        dz = np.zeros(3)
        dz[i] = h
        fd = (_hutchinson_fd(z + dz, w.data, eps).item()
              - _hutchinson_fd(z - dz, w.data, eps).item()) / (2 * h)
        np.testing.assert_allclose(gz[i], fd, rtol=1e-6, atol=1e-9)
    dw = rng.standard_normal((3, 3))
    fd = (_hutchinson_fd(z, w.data + h * dw, eps).item()
          - _hutchinson_fd(z, w.data - h * dw, eps).item()) / (2 * h)
    np.testing.assert_allclose(np.sum(gw * dw), fd, rtol=1e-6)


def _hutchinson_fd(z, w, eps):
    def f(z):
        return ops.tanh(z @ w)
    _, inner = vjp(f, z)
    return ops.sum(inner(eps)[0] * eps)


def test_grad_and_nested_grad():
    f = lambda x: ops.sum(ops.sin(x) * x)  # noqa: E731
    x = np.array([0.3, 0.4])
    np.testing.assert_allclose(grad(f)(x), np.cos(x) * x + np.sin(x))
    second = grad(lambda x: ops.sum(grad(f)(x)))(x)
    np.testing.assert_allclose(second, -np.sin(x) * x + 2 * np.cos(x))
    third = grad(lambda x: ops.sum(grad(lambda y: ops.sum(grad(f)(y)))(x)))(x)
    np.testing.assert_allclose(third, -np.cos(x) * x - 3 * np.sin(x))


def test_grad_argnums_and_errors():
    f = lambda x, y, k: ops.sum(x * y) * k  # noqa: E731
    x, y = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    np.testing.assert_allclose(grad(f, 1)(x, y, 2), 2 * x)
    gx, gy = grad(f, (0, 1))(x, y, 2)
    np.testing.assert_allclose(gx, 2 * y)
    with pytest.raises(InputError, match="`argnums` 5"):
        grad(f, 5)(x, y, 2)
    with pytest.raises(GradientError, match=r"shape \(2,\)"):
        grad(lambda x: x * 2.0)(x)


def test_vjp_under_no_grad_still_works():
    with no_grad():
        _, vjp_fn = vjp(lambda x: x * x, np.array([3.0]))
        np.testing.assert_allclose(vjp_fn(np.ones(1))[0], [6.0])


def test_tensor_condition_bounds_and_indices_are_constants():
    x = Tensor(np.array([-1.0, 0.2, 2.0]), requires_grad=True)
    lo = Tensor(-0.5, requires_grad=True)
    y = (ops.where(Tensor(np.array([True, False, True])), x, 0.0) + ops.clip(x, lo, 1.0)
         + x[Tensor([2, 2])].sum())
    y.sum().backward()
    # x[2]: 1 (where) + 0 (clipped at 1.0) + 3 * 2 (the scalar x[2] + x[2], broadcast over 3 entries)
    np.testing.assert_array_equal(x.grad.data, [1.0, 1.0, 7.0])
    assert lo.grad is None
