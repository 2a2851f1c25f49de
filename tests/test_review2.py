"""Gradients found silently wrong or missing by the second review; each test failed on the old code
(the comment on each says what it gave). References are central differences of forward solves."""
import numpy as np
import pytest

import odeflow
from odeflow import Tensor, nn, no_grad
from odeflow.autodiff import ops

TOL = dict(rtol=1e-10, atol=1e-10)
W0 = np.array([[0.2, -0.4], [0.5, 0.1]])
C0 = np.array([0.038, -0.397])
Z0 = np.random.default_rng(0).normal(size=(3, 2))


def _central(loss, c0, h=1e-6):
    """Central differences of the scalar ``loss(c)`` (forward solves, no gradient) at `c0`."""
    out = np.zeros_like(c0)
    for j in range(c0.size):
        e = np.zeros_like(c0)
        e[j] = h
        with no_grad():
            out[j] = (loss(c0 + e) - loss(c0 - e)) / (2 * h)
    return out


class _Conditioned(nn.Module):
    """``tanh(z W + ctx)`` with ``ctx`` a Tensor computed before the solve (an encoder's output)."""

    def __init__(self):
        self.W = nn.Parameter(W0.copy())
        self.ctx = None

    def forward(self, t, z):
        return ops.tanh(z @ self.W + self.ctx)


@pytest.mark.parametrize("mode", ["backsolve", "checkpoint"])
def test_per_sample_adjoint_reaches_the_leaves_behind_a_tensor_computed_before_the_solve(mode):
    # old code: dL/dc = [0.00022, -0.00054] instead of [1.18, -1.31] (the first VJP freed ctx's graph)
    W = Tensor(W0)
    t = np.array([0.0, 0.5, 1.0])

    def loss(c, grad=False):
        ctx = c * 1.0 if grad else Tensor(c)
        f = lambda s, z: ops.tanh(z @ W + ctx)
        if grad:
            y = odeflow.odeint_adjoint(f, Tensor(Z0), t, batch_axis=0, adjoint_mode=mode, **TOL)
        else:
            y = odeflow.odeint(f, Tensor(Z0), t, **TOL)
        return ops.sum(y * y)

    c = Tensor(C0.copy(), requires_grad=True)
    loss(c, grad=True).backward()
    expected = _central(lambda v: float(loss(v).data), C0)
    np.testing.assert_allclose(c.grad.data, expected, rtol=1e-6)


def test_cnf_adjoint_gives_a_context_tensor_of_its_dynamics_its_gradient():
    # old code: c.grad was None (the CNF passed adjoint_params=dynamics.parameters(), so every other
    # Tensor the dynamics read was a constant); backprop gave [0.0213, 0.0116]
    from odeflow.models.cnf import CNF
    dyn = _Conditioned()
    model = CNF(dyn, 2, **TOL)

    def loss(c, grad=False):
        dyn.ctx = c * 1.0 if grad else Tensor(c)
        return ops.sum(model.log_prob(Z0))

    c = Tensor(C0.copy(), requires_grad=True)
    loss(c, grad=True).backward()
    assert c.grad is not None
    expected = _central(lambda v: float(loss(v).data), C0)
    np.testing.assert_allclose(c.grad.data, expected, rtol=1e-6)


@pytest.mark.parametrize("grid", ["union", "per_sample"])
def test_latent_solve_times_adjoint_gives_a_context_tensor_its_gradient(grid):
    # old code: c.grad was None on both grids (adjoint_params=func.parameters() for a Module);
    # backprop gave [2.718, 2.375]
    from odeflow.models.latent_times import solve_times
    dyn = _Conditioned()
    times = np.array([[0.2, 0.5, 0.9], [0.1, 0.4, 1.0], [0.3, 0.6, 0.7]])

    def loss(c, grad=False):
        dyn.ctx = c * 1.0 if grad else Tensor(c)
        zs = solve_times(grid, dyn, Tensor(Z0), times, gradient="adjoint" if grad else "backprop", **TOL)
        return ops.sum(zs * zs)

    c = Tensor(C0.copy(), requires_grad=True)
    loss(c, grad=True).backward()
    assert c.grad is not None
    expected = _central(lambda v: float(loss(v).data), C0)
    np.testing.assert_allclose(c.grad.data, expected, rtol=1e-6)


def test_the_adjoint_does_not_take_a_leaf_func_creates_for_itself_for_a_parameter():
    # old code: odeint_regularized with the Jacobian penalty (RegularizedDynamics takes df/dz against
    # a fresh leaf z at each forward evaluation) found 1 + nfe "parameters": an a_theta channel and a
    # kept array per forward evaluation (O(steps x state) memory in the O(1) adjoint)
    from odeflow.adjoint.params import Recorder
    from odeflow.regularizers import RegularizedDynamics, jacobian_frobenius
    W = Tensor(W0.copy(), requires_grad=True)
    dyn = RegularizedDynamics(lambda s, z: ops.tanh(z @ W), (3, 2), [jacobian_frobenius(probe="exact")], 1.0)
    rec = Recorder(dyn)
    y = np.concatenate([Z0, np.zeros((3, 1))], axis=1)
    for s in (0.0, 0.1, 0.2):
        rec(s, y)
    assert len(rec.params) == 1 and rec.params[0] is W  # old code: 4
    assert rec.steady(rec.params) == [True]


def test_a_per_component_tolerance_means_the_same_in_odeint_regularized_as_in_odeint():
    # old code: atol [1e-12, 1e-3] of shape (n,) was read per *sample* (sample 0 at 1e-12, sample 1 at
    # 1e-3): 56 evaluations where the plain solve, per component, takes 50; the same steps are claimed
    from odeflow.regularizers import kinetic_energy, odeint_regularized
    W = Tensor(W0)
    f = lambda s, z: z @ W
    y0 = np.array([[1.0, 1e-6], [1.0, 1e-6]])
    atol = np.array([1e-12, 1e-3])
    plain, reg = {}, {}
    ys = odeflow.odeint_adjoint(f, Tensor(y0), [0.0, 1.0], rtol=1e-8, atol=atol, stats=plain)
    yr, _ = odeint_regularized(f, Tensor(y0), [0.0, 1.0], [kinetic_energy()], rtol=1e-8, atol=atol, stats=reg)
    assert reg["forward"]["nfe"] == plain["forward"]["nfe"]  # old code: 56 != 50
    np.testing.assert_allclose(yr.data, ys.data, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("call, error, pattern", [
    (lambda: nn.MLP(2), odeflow.InputTypeError, r"`sizes` must be a sequence of layer widths"),
    (lambda: nn.MLP([2.7, 3]), odeflow.InputTypeError, r"`sizes\[0\]` must be an int; got float 2.7"),
    (lambda: nn.MLP([2, 0, 2]), odeflow.InputError, r"`sizes\[1\]` must be >= 1; got 0"),
    (lambda: __import__("odeflow.models.cnf_dynamics").models.cnf_dynamics.ConcatSquashMLP(2),
     odeflow.InputTypeError, r"`sizes` must be a sequence of layer widths"),
])
def test_layer_sizes_are_checked_by_name(call, error, pattern):
    # old code: TypeError "'int' object is not iterable" (MLP(2), ConcatSquashMLP(2)), a width 2.7
    # silently truncated to 2, and a width 0 left to fail inside init
    with pytest.raises(error, match=pattern):
        call()
