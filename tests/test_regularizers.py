"""RNODE's kinetic energy and Jacobian Frobenius penalties, STEER's random end time (issue 17).

Expected values are closed forms for linear fields (independent of the solver)
and central finite differences for the gradients.
"""
import numpy as np
import pytest

import odeflow
from odeflow import Tensor
from odeflow.autodiff import ops
from odeflow.errors import InputError, InputTypeError
from odeflow.models.cnf import CNF
from odeflow.models.cnf_dynamics import ConcatSquashMLP
from odeflow.models.odenet import ODEBlock
from odeflow.regularizers import (
    jacobian_frobenius, kinetic_energy, odeint_regularized, steer_end_time)
from odeflow.testing import check_grads

MODES = [dict(gradient="backprop"), dict(gradient="adjoint", adjoint_mode="backsolve"),
         dict(gradient="adjoint", adjoint_mode="checkpoint"),
         dict(gradient="adjoint", adjoint_mode="backsolve", adjoint_options={"norm": "seminorm"})]
MODE_IDS = ["backprop", "backsolve", "checkpoint", "seminorm"]
TIGHT = dict(rtol=1e-10, atol=1e-10)


def _linear(A):
    A = Tensor(A)
    return lambda t, z: z @ A.T  # dz/dt = A z per row


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_kinetic_energy_of_a_linear_field_in_closed_form(mode):
    """f = diag(lam) z: int_0^T |f|^2 dt = sum_i lam_i^2 z0_i^2 (e^{2 lam_i T} - 1) / (2 lam_i);
    and a rotation: |f|^2 = w^2 |z0|^2 at all times."""
    lam, T = np.array([-0.5, 0.3]), 1.5
    z0 = np.array([[1.0, 2.0], [0.5, -1.0]])
    times = np.array([0.0, 0.7, T])
    ys, reg = odeint_regularized(_linear(np.diag(lam)), z0, times, [kinetic_energy(2.0)], **mode, **TIGHT)
    exact = np.sum(lam ** 2 * z0[None] ** 2 * (np.exp(2 * lam * times[:, None, None]) - 1) / (2 * lam),
                   axis=2)
    np.testing.assert_allclose(reg.values["kinetic_energy"].data, exact, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(reg.penalty.data, 2.0 * exact[-1].mean(), rtol=1e-8)
    w = 1.7
    _, reg = odeint_regularized(_linear(np.array([[0.0, -w], [w, 0.0]])), z0, [T, 0.0],
                                [kinetic_energy()], **mode, **TIGHT)  # backwards: still grows
    np.testing.assert_allclose(reg.values["kinetic_energy"].data[-1], w ** 2 * np.sum(z0 ** 2, 1) * T,
                               rtol=1e-8)


def test_frobenius_exact_and_unbiased_for_a_linear_field():
    """||df/dz||_F^2 = ||A||_F^2 everywhere: exactly with probe="exact", and as the mean of
    Hutchinson's estimates over many probes (one per sample) within 4 standard errors."""
    A = np.array([[0.3, -1.2, 0.5], [0.8, 0.1, -0.4], [0.0, 0.9, -0.7]])
    T, frob = 0.8, np.sum(A ** 2)
    z0 = np.ones((4, 3))
    _, reg = odeint_regularized(_linear(A), z0, [0.0, T], [jacobian_frobenius(probe="exact")],
                                gradient="backprop", **TIGHT)
    np.testing.assert_allclose(reg.values["jacobian_frobenius"].data[-1], T * frob, rtol=1e-10)
    z0 = np.random.default_rng(1).standard_normal((4000, 3))
    for probe in ("rademacher", "gaussian"):
        _, reg = odeint_regularized(_linear(A), z0, [0.0, T], [jacobian_frobenius(probe=probe)],
                                    gradient="backprop", rng=2, rtol=1e-6, atol=1e-6)
        est = reg.values["jacobian_frobenius"].data[-1] / T
        sem = est.std() / np.sqrt(est.size)
        assert abs(est.mean() - frob) < 4 * sem, (probe, est.mean(), frob, sem)


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_regularised_and_plain_solves_give_the_same_state_and_steps(mode):
    rng = np.random.default_rng(0)
    W1, W2 = Tensor(rng.standard_normal((2, 8))), Tensor(rng.standard_normal((8, 2)) * 0.5)
    func = lambda t, z: ops.tanh(z @ W1) @ W2
    z0 = rng.standard_normal((5, 2))
    t = [0.0, 0.5, 1.0]
    plain_stats, reg_stats = {}, {}
    if mode["gradient"] == "backprop":
        plain = odeflow.odeint(func, Tensor(z0), t, rtol=1e-6, atol=1e-6)
    else:
        plain = odeflow.odeint_adjoint(func, Tensor(z0), t, rtol=1e-6, atol=1e-6, stats=plain_stats,
                                       adjoint_mode=mode["adjoint_mode"])
    ys, _ = odeint_regularized(func, z0, t, [kinetic_energy(), jacobian_frobenius()], rtol=1e-6, atol=1e-6,
                               stats=reg_stats, **mode)
    np.testing.assert_allclose(ys.data, plain.data, rtol=1e-13, atol=1e-14)
    if plain_stats:
        assert reg_stats["forward"]["nfe"] == plain_stats["forward"]["nfe"]


def _mlp_loss(mode, regs):
    def loss(z0, W1, W2):
        func = lambda t, z: ops.tanh(z @ W1) @ W2
        ys, reg = odeint_regularized(func, z0, [0.0, 0.9], regs, rng=3, rtol=1e-8, atol=1e-8,
                                     **mode)
        return ops.sum(ys[-1] ** 2) + reg.penalty
    return loss


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_gradients_of_a_regularised_loss_match_finite_differences(mode):
    rng = np.random.default_rng(4)
    args = (rng.standard_normal((2, 2)), rng.standard_normal((2, 3)), rng.standard_normal((3, 2)) * 0.5)
    regs = [kinetic_energy(0.3), jacobian_frobenius(0.2)]
    result = check_grads(_mlp_loss(mode, regs), *args, order=2, eps=1e-5, rtol=1e-5, atol=1e-8,
                         n_directions=1)
    assert result.ok


def test_cnf_regularizers_leave_the_density_unchanged_and_train():
    dyn = ConcatSquashMLP((2, 8, 2), rng=0)
    x = np.random.default_rng(5).standard_normal((6, 2))
    plain = CNF(dyn, 2, trace="exact", rtol=1e-8, atol=1e-8)
    reg = CNF(dyn, 2, trace="exact", rtol=1e-8, atol=1e-8,
              regularizers=[kinetic_energy(0.1), jacobian_frobenius(0.1)])
    stats = {}
    lp_reg = reg.log_prob(x, stats=stats)
    np.testing.assert_allclose(lp_reg.data, plain.log_prob(x).data, rtol=1e-12, atol=1e-12)
    values = stats["regularization"].values
    assert values["kinetic_energy"].shape == (2, 6) and np.all(values["jacobian_frobenius"].data[-1] > 0)
    # the exact trace's rows give ||J||_F^2 exactly: the same as odeint_regularized's exact probe
    T = float(reg.end_time.data)
    _, ref = odeint_regularized(lambda t, z: dyn(t, z), x, [T, 0.0],
                                [kinetic_energy(0.1), jacobian_frobenius(0.1, probe="exact")],
                                gradient="backprop", rtol=1e-8, atol=1e-8)
    for name in values:
        np.testing.assert_allclose(values[name].data, ref.values[name].data, rtol=1e-6, atol=1e-9)
    loss = -ops.mean(lp_reg) + stats["regularization"].penalty
    loss.backward()
    assert all(p.grad is not None and np.all(np.isfinite(p.grad.data)) for p in dyn.parameters())


def test_cnf_hutchinson_frobenius_shares_the_trace_probe():
    dyn = ConcatSquashMLP((2, 8, 2), rng=1)
    cnf = CNF(dyn, 2, trace="hutchinson", regularizers=[jacobian_frobenius()], rng=0)
    stats = {}
    cnf.log_prob(np.ones((3, 2)), stats=stats)
    assert stats["dynamics"].n_vjp == stats["dynamics"].nfe  # one VJP per evaluation for both


def test_steer_end_times_and_the_blocks_that_use_them():
    rng = np.random.default_rng(0)
    ends = [steer_end_time(0.0, 2.0, 0.25, rng) for _ in range(400)]
    assert 1.5 <= min(ends) < 1.55 and 2.45 < max(ends) <= 2.5
    seen = []
    block = ODEBlock(lambda t, h: seen.append(t) or -h, rtol=1e-6, atol=1e-6, steer=0.5, rng=0,
                     gradient="backprop")
    h = Tensor(np.ones((2, 3)), requires_grad=True)
    out = block(h)
    t_end = max(seen)
    assert 0.5 <= t_end <= 1.5 and t_end != 1.0
    np.testing.assert_allclose(out.data, np.exp(-t_end), rtol=1e-5)
    with odeflow.no_grad():  # evaluation: the nominal end time
        np.testing.assert_allclose(block(h).data, np.exp(-1.0), rtol=1e-5)


def test_odeblock_regularization_only_while_training():
    W = Tensor(np.array([[-0.5, 0.2], [0.1, -0.3]]), requires_grad=True)
    block = ODEBlock(lambda t, h: h @ W, rtol=1e-8, atol=1e-8, regularizers=[kinetic_energy(1.0)])
    h = Tensor(np.array([[1.0, 2.0]]))
    out = block(h)
    plain = odeflow.odeint_adjoint(lambda t, h: h @ W, h, [0.0, 1.0], rtol=1e-8, atol=1e-8)[-1]
    np.testing.assert_allclose(out.data, plain.data, rtol=1e-12)
    (ops.sum(out) + block.regularization.penalty).backward()
    assert W.grad is not None
    with odeflow.no_grad():
        block(h)
    assert block.regularization is not None  # kept from the training call, not overwritten


@pytest.mark.parametrize("call, error, pattern", [
    (lambda: kinetic_energy(-1.0), InputError, r"`weight` must be a finite number >= 0; got -1\.0"),
    (lambda: jacobian_frobenius(1.0, probe="normal"), InputError, r"`probe` must be one of .*'normal'"),
    (lambda: odeint_regularized(lambda t, z: z, np.ones((1, 2)), [0, 1], "kinetic"), InputTypeError,
     r"`regularizers\[0\]` must be made by kinetic_energy"),
    (lambda: odeint_regularized(lambda t, z: z, np.ones((1, 2)), [0, 1], [kinetic_energy()] * 2),
     InputError, r"lists a regularizer twice"),
    (lambda: odeint_regularized(lambda t, z: z, np.ones((1, 2)), [0, 1], []), InputError, r"is empty"),
    (lambda: odeint_regularized(lambda t, z: z, np.ones((1, 2)), [0, 1], [kinetic_energy()],
                                gradient="reverse"), InputError, r"`gradient` must be .*'reverse'"),
    (lambda: CNF(ConcatSquashMLP((2, 4, 2)), 2, steer=1.5), InputError, r"`steer` must be a number in \(0, 1\).*1\.5"),
    (lambda: ODEBlock(lambda t, h: h, steer=0.0), InputError, r"`steer` must be a number in \(0, 1\)"),
    (lambda: ODEBlock(lambda t, h: h, regularizers=[1.0]), InputTypeError, r"`regularizers\[0\]`"),
])
def test_bad_regularizer_arguments_are_refused_by_name(call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()
