"""Continuous normalizing flows: change of variables, traces, gradients, the planar baseline."""
import math

import numpy as np
import pytest
from scipy.linalg import expm

import odeflow
from odeflow import Tensor, nn, no_grad
from odeflow.autodiff import ops
from odeflow.autodiff.tensor import enable_grad
from odeflow.errors import InputError, InputTypeError, MaxStepsExceededError, ShapeError
from odeflow.models.cnf import (CNF, AugmentedDynamics, divergence_exact, divergence_hutchinson,
                                draw_noise, standard_normal_log_prob)
from odeflow.models.cnf_dynamics import ConcatSquashMLP, HyperPlanarDynamics
from odeflow.models.planar import PlanarFlow


@pytest.fixture(autouse=True)
def _one_blas_thread():
    # small GEMMs on a small shared machine: BLAS worker threads only add wake-up latency
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=1, user_api="blas"):
        yield


class LinearDynamics(nn.Module):
    """dz/dt = A z (rows of a batch)."""

    def __init__(self, A):
        self.A = nn.Parameter(A)

    def forward(self, t, z):
        return z @ self.A.T


def _jacobian(f, z, h=1e-6):
    """Central-difference Jacobian of a map R^d -> R^d at one point."""
    d = z.size
    J = np.empty((d, d))
    for j in range(d):
        dz = np.zeros(d)
        dz[j] = h
        J[:, j] = (f(z + dz) - f(z - dz)) / (2 * h)
    return J


# -- the instantaneous change of variables -----------------------------------------------------

@pytest.mark.parametrize("dim", [2, 3])
def test_linear_dynamics_change_log_density_by_minus_trace_times_T(dim):
    # dz/dt = A z: z(T) = expm(A T) z(0) and log p(z(T)) - log p(z(0)) = -tr(A) T for every point
    rng = np.random.default_rng(dim)
    A = rng.normal(size=(dim, dim))
    T = 0.8
    model = CNF(LinearDynamics(A), dim, end_time=T, rtol=1e-10, atol=1e-10)
    z0 = rng.normal(size=(6, dim))
    z_t, delta = model.transform(z0)
    np.testing.assert_allclose(delta.data[-1], -np.trace(A) * T, rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(z_t.data[-1], z0 @ expm(A * T).T, rtol=1e-8, atol=1e-9)
    # and the density of the data: x = expm(A T) z0 has, by the discrete change of variables,
    # log p(x) = log N(expm(-A T) x) - log det expm(A T) = log N(expm(-A T) x) - tr(A) T
    x = rng.normal(size=(6, dim))
    expected = standard_normal_log_prob(x @ expm(-A * T).T) - np.trace(A) * T
    np.testing.assert_allclose(model.log_prob(x).data, expected, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("make", [
    lambda: ConcatSquashMLP((2, 16, 16, 2), rng=3),
    lambda: HyperPlanarDynamics(2, 8, hidden=16, rng=4),
])
def test_density_of_an_untrained_cnf_integrates_to_one(make):
    dynamics = make()
    for p in dynamics.parameters():  # a visibly non-Gaussian density
        p.data *= 1.5
    model = CNF(dynamics, 2, end_time=1.0, rtol=1e-6, atol=1e-8)
    # the trapezoidal rule on a smooth, rapidly decaying density: the quadrature and the mass
    # outside [-6, 6]^2 are far below the 1e-2 tolerance, which is then the flow's own error
    g = np.linspace(-6.0, 6.0, 97)
    pts = np.stack(np.meshgrid(g, g, indexing="ij"), axis=-1).reshape(-1, 2)
    with no_grad():
        density = np.exp(model.log_prob(pts).data)
    mass = density.sum() * (g[1] - g[0]) ** 2
    assert abs(mass - 1.0) < 1e-2, mass
    # and it is not simply the base density
    assert np.max(np.abs(density - np.exp(standard_normal_log_prob(pts)))) > 1e-2


def test_log_prob_of_samples_matches_the_change_of_variables_along_the_forward_solve():
    model = CNF(ConcatSquashMLP((2, 16, 16, 2), rng=5), 2, end_time=2.0, rtol=1e-9, atol=1e-9)
    for p in model.dynamics.parameters():
        p.data *= 2.0
    x, logq = model.sample(50, rng=7, return_log_prob=True)
    z0 = np.random.default_rng(7).standard_normal((50, 2))  # the draws sample() made
    np.testing.assert_allclose(model.log_prob(x).data, logq, rtol=0, atol=1e-7)
    # the reverse solve returns to the base draws
    z_back, _ = model.transform(x, reverse=True)
    np.testing.assert_allclose(z_back.data[-1], z0, atol=1e-7)
    # and log q(x) really moved away from log N(z0)
    assert np.max(np.abs(logq - standard_normal_log_prob(z0))) > 0.1


def test_end_time_can_be_fixed_or_learned():
    dyn = ConcatSquashMLP((2, 4, 2), rng=0)
    fixed = CNF(dyn, 2, end_time=0.3, train_end_time=False)
    assert len(fixed.parameters()) == len(dyn.parameters())
    assert float(fixed.end_time.data) == 0.3
    learned = CNF(dyn, 2, end_time=0.3)
    assert learned.parameters()[-1] is learned.log_end_time
    assert float(learned.end_time.data) == pytest.approx(0.3)
    x = np.array([[1, 0], [0, 2]])  # integers are accepted as floats
    np.testing.assert_allclose(fixed.log_prob(x).data, learned.log_prob(x).data, rtol=1e-12)


# -- traces ---------------------------------------------------------------------------------------

def _field(seed=0):
    dynamics = ConcatSquashMLP((2, 16, 16, 2), rng=seed)
    for p in dynamics.parameters():
        p.data *= 2.0
    return dynamics


def test_exact_trace_matches_the_closed_form_of_the_planar_dynamics():
    dynamics = HyperPlanarDynamics(3, 5, hidden=8, rng=1)
    z = Tensor(np.random.default_rng(2).normal(size=(7, 3)), requires_grad=True)
    with enable_grad():
        f = dynamics(0.3, z)
        div = divergence_exact(f, z, create_graph=False)
    np.testing.assert_allclose(div.data, dynamics.divergence(0.3, z).data, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("noise", ["gaussian", "rademacher"])
def test_hutchinson_estimate_is_unbiased_with_the_predicted_variance(noise):
    # many probes at one point: the mean lies in its confidence interval around tr(J), and the
    # variance is Hutchinson's: 2 |S|_F^2 (Gaussian), 2 (|S|_F^2 - sum S_ii^2) (Rademacher),
    # S = (J + J^T) / 2, with J computed independently by finite differences
    dynamics = _field()
    n = 4000
    z_point = np.array([0.4, -0.7])
    J = _jacobian(lambda z: dynamics(0.2, Tensor(z[None])).data[0], z_point)
    eps = draw_noise((n, 2), noise, np.random.default_rng(11))
    z = Tensor(np.tile(z_point, (n, 1)), requires_grad=True)
    with enable_grad():
        est = divergence_hutchinson(dynamics(0.2, z), z, eps, create_graph=False).data
    se = est.std(ddof=1) / math.sqrt(n)
    assert abs(est.mean() - np.trace(J)) < 4 * se
    S = (J + J.T) / 2
    var = 2 * np.sum(S * S) - (2 * np.sum(np.diag(S) ** 2) if noise == "rademacher" else 0.0)
    assert est.var(ddof=1) == pytest.approx(var, rel=0.15)


@pytest.mark.parametrize("noise", ["gaussian", "rademacher"])
def test_hutchinson_log_prob_is_unbiased_over_a_whole_solve(noise):
    # one data point copied 2000 times: each copy gets its own probe, held fixed along the solve
    model = CNF(_field(1), 2, end_time=1.0, noise=noise, rtol=1e-7, atol=1e-7)
    x = np.tile([[0.5, 1.0]], (2000, 1))
    with no_grad():
        exact = model.log_prob(x[:1], trace="exact").data[0]
        est = model.log_prob(x, trace="hutchinson", rng=np.random.default_rng(3)).data
    se = est.std(ddof=1) / math.sqrt(est.size)
    assert est.std() > 1e-3  # the estimate really is random...
    assert abs(est.mean() - exact) < 4 * se  # ...and centred on the exact value
    with no_grad():  # an int seed is accepted as a Generator of that seed
        seeded = model.log_prob(x[:5], trace="hutchinson", rng=3).data
        generator = model.log_prob(x[:5], trace="hutchinson", rng=np.random.default_rng(3)).data
    assert np.array_equal(seeded, generator)


def test_hutchinson_costs_one_vjp_per_evaluation_and_the_nfe_of_the_exact_trace():
    model = CNF(_field(2), 2, end_time=1.0, rtol=1e-6, atol=1e-6)
    x = np.random.default_rng(0).normal(size=(64, 2)) * 2
    stats = {}
    with no_grad():
        model.log_prob(x, trace="exact", stats=stats)
    nfe_exact, n_steps_exact = stats["forward"]["nfe"], stats["forward"]["n_steps"]
    assert stats["dynamics"].n_vjp == 2 * stats["dynamics"].nfe
    nfes = []
    for seed in range(4):
        for noise in ("gaussian", "rademacher"):
            model.noise = noise
            stats = {}
            with no_grad():
                model.log_prob(x, trace="hutchinson", rng=np.random.default_rng(seed), stats=stats)
            assert stats["dynamics"].n_vjp == stats["dynamics"].nfe
            nfes.append(stats["forward"]["nfe"])
    # the same solve: the step control sees the same z, and the l channel is as smooth as with
    # the exact trace, so at most one extra dopri5 step (6 evaluations)
    assert max(abs(n - nfe_exact) for n in nfes) <= 6, (nfe_exact, nfes)

    # what holding the probe fixed avoids: a fresh probe at every evaluation
    class Redrawn(AugmentedDynamics):
        def forward(self, t, y):
            self.eps = draw_noise(self.eps.shape, "rademacher", rng)
            return super().forward(t, y)

    rng = np.random.default_rng(1)
    func = Redrawn(model.dynamics, 2, "hutchinson", np.ones_like(x))
    y0 = np.concatenate([x, np.zeros((64, 1))], axis=1)
    with pytest.raises(MaxStepsExceededError):  # more than 3 times the steps of the fixed probe
        odeflow.solve(lambda t, y: func(t, Tensor(y)).data, y0, [1.0, 0.0], rtol=1e-6, atol=1e-6,
                      options={"max_steps": 3 * n_steps_exact})


# -- gradients ------------------------------------------------------------------------------------

def _directional_check(loss_fn, params, seed=0, h=1e-5, rtol=1e-5):
    """Reverse-mode d loss along a random direction of all `params` vs central differences."""
    loss = loss_fn()
    for p in params:
        p.grad = None
    loss.backward()
    rng = np.random.default_rng(seed)
    vs = [rng.normal(size=p.shape) for p in params]
    rev = sum(float(np.sum(p.grad.data * v)) for p, v in zip(params, vs))
    values = []
    for sign in (1, -1):
        for p, v in zip(params, vs):
            p.data += sign * h * v
        with no_grad():
            values.append(loss_fn().item())
        for p, v in zip(params, vs):
            p.data -= sign * h * v
    fd = (values[0] - values[1]) / (2 * h)
    assert rev == pytest.approx(fd, rel=rtol, abs=1e-8), (rev, fd)


@pytest.mark.parametrize("trace,gradient,mode", [
    ("exact", "adjoint", "backsolve"),
    ("hutchinson", "adjoint", "backsolve"),
    ("exact", "adjoint", "checkpoint"),
    ("hutchinson", "backprop", None),
])
def test_nll_gradients_match_finite_differences(trace, gradient, mode):
    # the trace term is differentiated a second time inside the adjoint's augmented dynamics;
    # all parameters at once, including the trained end time T
    dynamics = ConcatSquashMLP((2, 8, 2), rng=6)
    model = CNF(dynamics, 2, end_time=0.7, trace=trace, gradient=gradient,
                adjoint_mode=mode or "backsolve", rtol=1e-10, atol=1e-10)
    x = np.random.default_rng(8).normal(size=(5, 2))

    def loss():  # the same Hutchinson probe at every call
        return -ops.mean(model.log_prob(x, rng=np.random.default_rng(9)))

    _directional_check(loss, model.parameters())


def test_density_matching_gradients_of_the_planar_cnf_match_finite_differences():
    # KL(q || p) loss: samples pushed forwards, gradients through x(T) and l(T)
    from odeflow.experiments.cnf import target_log_density
    model = CNF(HyperPlanarDynamics(2, 3, hidden=6, rng=2), 2, end_time=1.0, rtol=1e-10, atol=1e-10)
    z0 = Tensor(np.random.default_rng(1).normal(size=(4, 2)))

    def loss():
        z_t, delta = model.transform(z0)
        return ops.mean(standard_normal_log_prob(z0) + delta[-1] - target_log_density("U1", z_t[-1]))

    _directional_check(loss, model.parameters(), seed=3)


# -- the planar flow ------------------------------------------------------------------------------

@pytest.mark.parametrize("dim", [2, 3])
def test_planar_log_det_matches_the_numerical_jacobian_determinant(dim):
    flow = PlanarFlow(dim, 4, init_scale=1.0, rng=dim)
    flow.u.data[0] = -5.0 * flow.w.data[0] / np.sum(flow.w.data[0] ** 2)  # w^T u = -5: u must be fixed
    rng = np.random.default_rng(0)
    for _ in range(5):
        z = rng.normal(size=dim)
        with no_grad():
            _, log_det = flow(z[None])
            J = _jacobian(lambda v: flow(v[None])[0].data[0], z)
        sign, logabs = np.linalg.slogdet(J)
        assert sign > 0  # orientation preserved: the constraint w^T u_hat > -1 holds
        assert log_det.data[0] == pytest.approx(logabs, abs=1e-7)
    wu = np.sum(flow.w.data * flow.u_hat().data, axis=1)
    assert np.all(wu > -1.0)
    assert wu[0] == pytest.approx(-1.0 + math.log1p(math.exp(-5.0)))  # m(x) = -1 + softplus(x)


def test_planar_sample_log_prob_is_base_minus_log_det():
    flow = PlanarFlow(2, 3, init_scale=0.8, rng=1)
    x, logq = flow.sample(10, rng=4, return_log_prob=True)
    z0 = np.random.default_rng(4).standard_normal((10, 2))
    with no_grad():
        x2, log_det = flow(z0)
    np.testing.assert_allclose(x, x2.data)
    np.testing.assert_allclose(logq, standard_normal_log_prob(z0) - log_det.data)


# -- density-matching targets ---------------------------------------------------------------------

def test_target_energies_on_tensors_match_the_numpy_reference():
    from odeflow.data.toy2d import log_target
    from odeflow.experiments.cnf import ENVELOPE_STD, target_log_density
    z = np.random.default_rng(0).uniform(-4, 4, size=(50, 2))
    for name in ("U1", "U2", "U3"):
        envelope = 0.0 if name == "U1" else -0.5 * (z[:, 0] / ENVELOPE_STD) ** 2
        np.testing.assert_allclose(target_log_density(name, Tensor(z)).data,
                                   log_target(name, z) + envelope, rtol=1e-12, atol=1e-12)


def test_log_normaliser_matches_closed_forms():
    # with the envelope, z2 | z1 is one Gaussian (U2) or a sum of two (U3) of known mass
    from odeflow.experiments.cnf import ENVELOPE_STD, log_normaliser
    envelope = math.log(math.sqrt(2 * math.pi) * ENVELOPE_STD)
    assert log_normaliser("U2") == pytest.approx(math.log(math.sqrt(2 * math.pi) * 0.4) + envelope, abs=1e-4)
    assert log_normaliser("U3") == pytest.approx(math.log(2 * math.sqrt(2 * math.pi) * 0.35) + envelope,
                                                 abs=1e-4)


# -- errors ---------------------------------------------------------------------------------------

def test_bad_inputs_name_the_argument():
    from odeflow.experiments.cnf import target_log_density
    dyn = ConcatSquashMLP((2, 4, 2), rng=0)
    with pytest.raises(InputError, match="`dim`"):
        CNF(dyn, 0)
    with pytest.raises(InputError, match="`end_time`.*-1"):
        CNF(dyn, 2, end_time=-1.0)
    with pytest.raises(InputError, match="`trace`.*'trce'"):
        CNF(dyn, 2, trace="trce")
    with pytest.raises(InputError, match="`noise`"):
        CNF(dyn, 2, noise="uniform")
    with pytest.raises(InputError, match="`gradient`"):
        CNF(dyn, 2, gradient="magic")
    with pytest.raises(InputTypeError, match="`dynamics`"):
        CNF(3.0, 2)
    model = CNF(dyn, 2)
    with pytest.raises(ShapeError, match=r"`x`.*\(4, 3\)"):
        model.log_prob(np.zeros((4, 3)))
    with pytest.raises(InputError, match="`x`.*non-finite"):
        model.log_prob(np.array([[0.0, np.nan]]))
    with pytest.raises(InputError, match="`n`.*0"):
        model.sample(0)
    with pytest.raises(InputTypeError, match="`n`"):
        model.sample(2.5)
    with pytest.raises(InputError, match="`times`"):
        model.transform(np.zeros((1, 2)), times=[0.5, 0.2])
    with pytest.raises(InputError, match="`n_layers`"):
        PlanarFlow(2, 0)
    with pytest.raises(ShapeError, match="`z`"):
        PlanarFlow(2, 2)(np.zeros((3, 5)))
    with pytest.raises(InputError, match="`sizes`"):
        ConcatSquashMLP((2, 8, 3))
    with pytest.raises(InputError, match="`width`"):
        HyperPlanarDynamics(2, 0)
    with pytest.raises(InputError, match="`name`.*U9"):
        target_log_density("U9", Tensor(np.zeros((1, 2))))


def test_interrupted_training_resumes_exactly(tmp_path, monkeypatch):
    import odeflow.data.toy2d as toy2d
    from odeflow.experiments.cnf import MLConfig, fit_ml, make_ml_model
    config = MLConfig(sizes=(2, 8, 2), iters=4, batch=20, n_test=50, eval_every=2)
    x_test = toy2d.sample_toy2d("8gaussians", 50, 0)
    straight = make_ml_model(config)
    fit_ml(straight, config, x_test, progress=False, log=lambda *a: None)

    sample, calls = toy2d.sample_toy2d, []

    def failing(*args):  # the third training batch never comes: an interruption after iteration 2
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return sample(*args)

    monkeypatch.setattr(toy2d, "sample_toy2d", failing)
    ckpt = tmp_path / "ml.npz"
    with pytest.raises(KeyboardInterrupt):
        fit_ml(make_ml_model(config), config, x_test, checkpoint=ckpt, progress=False, log=lambda *a: None)
    monkeypatch.setattr(toy2d, "sample_toy2d", sample)
    resumed = make_ml_model(config)
    history = fit_ml(resumed, config, x_test, checkpoint=ckpt, resume=True, progress=False,
                     log=lambda *a: None)
    assert len(history["loss"]) == 4 and history["eval_iter"] == [2, 4]
    for p, q in zip(straight.parameters(), resumed.parameters()):
        np.testing.assert_allclose(p.data, q.data, rtol=1e-12, atol=1e-14)


def test_demo_quick_runs_and_writes_figures(tmp_path):
    from odeflow.experiments import cnf
    summary = cnf.demo(tmp_path, quick=True)
    assert np.isfinite(summary["ml"]["test_nll"])
    assert summary["traces"]["hutchinson"]["vjp_per_eval"] == 1
    assert summary["traces"]["exact"]["vjp_per_eval"] == 2
    for name in ("ml_density.png", "flow_over_time.png", "ml_training.png", "density_matching.png"):
        assert (tmp_path / name).stat().st_size > 0


@pytest.mark.parametrize("times, error, match", [
    ([0.0, float("nan")], InputError, "`times`"),       # old: "`t` must be finite", naming no argument given
    ([float("nan"), 1.0], InputError, "`times`"),
    ([0.0, float("inf")], InputError, "`times`"),       # refused before too (a guard)
    (["a", "b"], InputTypeError, "`times`"),             # old: a raw NumPy ValueError
])
def test_bad_transform_times_are_refused_naming_times(times, error, match):
    model = CNF(ConcatSquashMLP([2, 8, 2], rng=0), 2, rng=0)
    with pytest.raises(error, match=match):
        model.transform(np.zeros((3, 2)), times=times)
