"""Gradients through the per-sample solve: odeint(Tensor y0, batch_axis=...) (odeflow.adjoint.batch_backprop)."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import odeflow
from odeflow import Tensor
from odeflow.adjoint.batch_backprop import odeint_batch_backprop
from odeflow.autodiff import ops
from odeflow.errors import GradientError, InputTypeError
from odeflow.nn import MLP
from odeflow.solvers.batch import solve_batch
from odeflow.testing import check_grads

TIGHT = dict(rtol=1e-10, atol=1e-10)


def vdp(t, y, mu):
    x, v = y[:, 0], y[:, 1]
    return ops.stack([v, mu * (1.0 - x * x) * v - x], axis=1)


def vdp_np(t, y, mu):
    x, v = y[:, 0], y[:, 1]
    return np.stack([v, mu * (1.0 - x * x) * v - x], axis=1)


def _case(seed, B=3, m=4, span=2.0):
    rng = np.random.default_rng(seed)
    mu = rng.uniform(0.1, 3.0, B)
    y0 = rng.uniform(-2.0, 2.0, (B, 2))
    t = np.sort(rng.uniform(0.0, span, (B, m)), axis=1)
    return mu, y0, t, rng


def test_values_are_the_array_solve_and_gradients_match_finite_differences():
    mu, y0, t, rng = _case(0, B=2, span=1.0)
    y0t, mut = Tensor(y0, requires_grad=True), Tensor(mu, requires_grad=True)
    stats = {}
    out = odeint_batch_backprop(vdp, y0t, t, 0, args=(mut,), stats=stats, **TIGHT)
    ref = solve_batch(vdp_np, y0, t, 0, args=(mu,), **TIGHT)
    assert np.array_equal(out.data, ref.y)
    assert np.array_equal(stats["forward"]["nfe"], ref.stats["nfe"])
    w = rng.normal(size=out.shape)
    ops.sum(out * w).backward()

    def loss(y0v, muv):  # forward solves at 1e-13: their noise / eps stays below 1e-7
        return float(np.sum(w * solve_batch(vdp_np, y0v, t, 0, args=(muv,), rtol=1e-13, atol=1e-13).y))

    eps = 1e-5
    for x, g, name in ((y0, y0t.grad.data, "y0"), (mu, mut.grad.data, "mu")):
        fd = np.zeros_like(x)
        for idx in np.ndindex(x.shape):
            up, down = x.copy(), x.copy()
            up[idx] += eps
            down[idx] -= eps
            args = (up, mu) if name == "y0" else (y0, up)
            args_d = (down, mu) if name == "y0" else (y0, down)
            fd[idx] = (loss(*args) - loss(*args_d)) / (2 * eps)
        assert np.abs(g - fd).max() <= 1e-6 * np.abs(fd).max(), name


def test_first_and_second_order_by_check_grads():
    mu, y0, t, _ = _case(1, B=2, m=3, span=0.5)
    res = check_grads(lambda y, m: odeint_batch_backprop(vdp, y, t, 0, args=(m,), rtol=1e-9, atol=1e-9),
                      y0, mu, order=2, rtol=1e-4, n_directions=1)
    assert res.ok and {c.order for c in res.checks} == {1, 2}


@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 10_000), B=st.integers(1, 4), data=st.data())
def test_property_a_sample_gradient_is_bitwise_the_same_alone_or_in_any_batch(seed, B, data):
    pos = data.draw(st.integers(0, B - 1))
    mu, y0, t, rng = _case(seed, B=B, span=1.0)
    w = rng.normal(size=(t.shape[1], 2))

    def grads(sl):
        y0t, mut = Tensor(y0[sl], requires_grad=True), Tensor(mu[sl], requires_grad=True)
        out = odeint_batch_backprop(vdp, y0t, t[sl], 0, args=(mut,), rtol=1e-6, atol=1e-8)
        k = pos - sl.start
        ops.sum(out[:, k] * w).backward()
        return out.data[:, k], y0t.grad.data[k], mut.grad.data[k]

    for a, b in zip(grads(slice(0, B)), grads(slice(pos, pos + 1))):
        assert np.array_equal(a, b)


def test_shared_parameters_batch_axis_one_and_the_odeint_entry_point():
    # an MLP (shared weights) on a batch along axis 1: y of shape (dim, batch)
    net = MLP((2, 6, 2), activation="tanh", rng=np.random.default_rng(3))
    y0 = np.random.default_rng(4).normal(size=(2, 3))
    t = [0.0, 0.4, 1.0]
    out = odeflow.odeint(lambda s, y: ops.transpose(net(ops.transpose(y)), (1, 0)), Tensor(y0), t,
                         batch_axis=1, **TIGHT)
    assert out.shape == (3, 2, 3)
    ops.sum(out * out).backward()
    batch_grads = [p.grad.data.copy() for p in net.parameters()]
    total = [np.zeros_like(g) for g in batch_grads]
    for b in range(3):  # the batch gradient of shared weights = the sum over samples solved alone
        net.zero_grad()
        alone = odeflow.odeint(lambda s, y: net(y), Tensor(y0[:, b]), t, **TIGHT)
        np.testing.assert_allclose(alone.data, out.data[:, :, b], rtol=1e-12, atol=1e-14)
        ops.sum(alone * alone).backward()
        total = [g + p.grad.data for g, p in zip(total, net.parameters())]
    for g, ref in zip(batch_grads, total):
        np.testing.assert_allclose(g, ref, rtol=1e-7, atol=1e-12)


def test_refused_inputs():
    y0 = Tensor(np.ones((2, 1)), requires_grad=True)
    with pytest.raises(GradientError, match="with respect to `t`"):
        odeflow.odeint(lambda s, y: -y, y0, Tensor([0.0, 1.0], requires_grad=True), batch_axis=0)
    with pytest.raises(GradientError, match="returned a ndarray"):
        odeflow.odeint(lambda s, y: -y.data, y0, [0.0, 1.0], batch_axis=0)
    import numba
    with pytest.raises(InputTypeError, match="Numba-jitted"):
        odeflow.odeint(numba.njit(lambda s, y: -y), y0, [0.0, 1.0], batch_axis=0)


def test_latent_ode_per_sample_times_against_the_union_of_times():
    from odeflow.models.latent_ode import LatentDynamics
    from odeflow.models.latent_times import solve_on_union, solve_per_sample

    rng = np.random.default_rng(7)
    dyn = LatentDynamics(latent_dim=3, hidden=8, rng=rng)
    times = np.sort(rng.uniform(0.0, 1.5, (4, 5)), axis=1)
    times[1, 3:] = times[1, 2]  # a repeated time
    mask = np.ones(times.shape, bool)
    mask[2, 3:] = False  # padding
    z0v = rng.normal(size=(4, 3))
    w = rng.normal(size=(4, 5, 3)) * mask[..., None]
    results = []
    for solver in (solve_on_union, solve_per_sample):
        dyn.zero_grad()
        z0 = Tensor(z0v, requires_grad=True)
        zs = solver(dyn, z0, times, mask, 0.0, rtol=1e-10, atol=1e-10)
        ops.sum(zs * w).backward()
        results.append((zs.data * mask[..., None], z0.grad.data, [p.grad.data.copy() for p in dyn.parameters()]))
    (za, ga, pa), (zb, gb, pb) = results
    ref = np.zeros_like(za)  # each observation by the plain solver at 1e-13, independently
    for b, i in zip(*np.nonzero(mask)):
        ref[b, i] = z0v[b] if times[b, i] == 0.0 else odeflow.odeint(
            lambda s, y: dyn(s, Tensor(y)).data, z0v[b], [0.0, times[b, i]], rtol=1e-13, atol=1e-13)[-1]
    # both within their global error (~5e-9 at tolerance 1e-10) of the reference and of each other
    np.testing.assert_allclose(zb, ref, rtol=0, atol=2e-8)
    np.testing.assert_allclose(za, ref, rtol=0, atol=2e-8)
    # gradients of two different discrete solutions: each ~1e-6 from the exact one at this tolerance
    # (backprop does not differentiate the step sizes), so they agree to that, not to 1e-9
    np.testing.assert_allclose(gb, ga, rtol=1e-5, atol=1e-6)
    for x, y in zip(pb, pa):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)
