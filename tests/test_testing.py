"""odeflow.testing.check_grads: passes on correct derivatives, catches wrong first-
and second-order VJPs, reports where, and has a non-raising mode."""
import numpy as np
import pytest

from odeflow.autodiff import Tensor, ops
from odeflow.errors import GradientError, InputError
from odeflow.testing import GradCheckResult, check_grads


def wrong_first_order(x):
    """sin with the VJP of -sin."""
    return ops.make_node(np.sin(x.data), [x], lambda g: [g * -ops.cos(x)])


def wrong_second_order(x):
    """exp whose VJP is right in value but built from a constant, so its own
    derivative (the second derivative of exp) is lost: only order 2 sees it."""
    return ops.make_node(np.exp(x.data), [x], lambda g: [g * Tensor(np.exp(x.data))])


def test_passes_on_correct_derivatives_and_reports():
    rng = np.random.default_rng(0)
    result = check_grads(lambda a, b: ops.tanh(a @ b) * ops.sigmoid(a).sum(),
                         rng.standard_normal((3, 4)), rng.standard_normal((4, 2)), order=3)
    assert isinstance(result, GradCheckResult) and result.ok
    # two directions x (2 args at order 1, 3 at order 2 incl. the cotangent, 4 at order 3)
    assert len(result.checks) == 2 * (2 + 3 + 4)
    assert {c.order for c in result.checks} == {1, 2, 3}
    assert result.max_rel_error < 1e-7
    assert "passed" in str(result) and "direction" in str(result.worst)
    names = {c.argument for c in result.checks}
    assert "cotangent of the order-1 VJP (shape (3, 2))" in names
    assert "cotangent of the order-2 VJP (shape (20,))" in names  # 3*4 + 4*2 gradient entries


def test_first_order_error_raises_with_location():
    with pytest.raises(GradientError, match=r"order 1, argument 0 \(shape \(3,\)\).*reverse mode") as info:
        check_grads(wrong_first_order, np.array([0.1, 0.5, 1.0]))
    assert not info.value.result.ok


def test_second_order_error_is_only_seen_at_order_two():
    x = np.array([0.3, -0.4])
    assert check_grads(wrong_second_order, x, order=1).ok
    with pytest.raises(GradientError, match="order 2, argument 0"):
        check_grads(wrong_second_order, x, order=2)


def test_non_raising_mode_returns_the_failures():
    result = check_grads(wrong_first_order, np.array([0.2, 0.7]), raise_on_failure=False)
    assert not result.ok
    worst = result.worst
    assert worst.order == 1 and not worst.passed and worst.rel_error > 0.1
    assert "FAILED" in str(result)


def test_argnums_and_non_float_arguments_are_passed_through():
    def f(x, axis, w):
        return ops.sum(ops.exp(x) * w, axis=axis)

    x, w = np.array([[0.1, 0.2], [0.3, 0.4]]), np.array([1.0, 2.0])
    result = check_grads(f, x, 1, w)          # default: the float arrays only
    assert {c.argument.split(" (")[0] for c in result.checks if c.order == 1} == {"argument 0", "argument 2"}
    result = check_grads(f, x, 0, w, argnums=2, order=1)
    assert {c.argument for c in result.checks} == {"argument 2 (shape (2,))"}


def test_tensor_and_float32_arguments_are_checked_in_float64():
    x = Tensor(np.array([0.5, 1.5], np.float32), requires_grad=True)
    assert check_grads(lambda x, p: ops.log(x) * x ** p, x, 2.0).ok


def test_input_validation():
    with pytest.raises(InputError, match="`order`"):
        check_grads(ops.exp, np.ones(2), order=0)
    with pytest.raises(InputError, match="no floating-point argument"):
        check_grads(lambda k: Tensor(np.ones(2)) * k, 3)
    with pytest.raises(InputError, match="`argnums` entry 4"):
        check_grads(ops.exp, np.ones(2), argnums=4)


def test_seed_makes_directions_reproducible():
    x = np.array([0.3, 0.9])
    a = check_grads(ops.tanh, x, seed=5)
    b = check_grads(ops.tanh, x, seed=5)
    assert [c.reverse for c in a.checks] == [c.reverse for c in b.checks]
