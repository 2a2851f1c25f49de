"""The latent ODE's two ways to solve a batch of irregular series (odeflow.models.latent_times)."""
import numpy as np
import pytest

from odeflow.autodiff.tensor import Tensor
from odeflow.data.spirals import make_spirals
from odeflow.errors import InputError
from odeflow.models.latent_ode import LatentDynamics, LatentODE
from odeflow.models.latent_times import per_sample_times, solve_on_union, solve_per_sample
from odeflow.nn import parameters_to_vector, vector_to_parameters

TIGHT = {"rtol": 1e-11, "atol": 1e-12}


def _batch(seed=4, B=4, N=5):
    rng = np.random.default_rng(seed)
    times = np.sort(rng.uniform(0.0, 2.0, size=(B, N)), axis=1)
    times[:, 0] = [0.0, 0.3, 0.1, 0.05][:B]  # one row observed at t0 itself
    mask = np.ones((B, N), dtype=bool)
    mask[1, 3:] = False  # a shorter row, padded
    times[1, 3:] = 0.0   # padding holds junk times
    return rng, times, mask


def test_per_sample_grid_pads_each_row_with_its_last_time():
    _, times, mask = _batch()
    grid, index = per_sample_times(times, mask, 0.0)
    assert grid.shape == (4, 6)  # t0 then 5 observations (row 0 observes t0 itself: 5 distinct, padded)
    for b in range(4):
        assert grid[b, 0] == 0.0 and np.all(np.diff(grid[b]) >= 0)
        np.testing.assert_array_equal(grid[b, index[b][mask[b]]], times[b][mask[b]])
    assert grid[1, 4] == grid[1, 3] == times[1, 2]  # row 1: t0 + 3 observations, padded by repeats


@pytest.mark.parametrize("gradient", ["backprop", "adjoint"])
def test_per_sample_equals_the_union_solve_and_each_row_alone(gradient):
    func = LatentDynamics(latent_dim=3, hidden=8, rng=1)
    rng, times, mask = _batch()
    weights = rng.normal(size=(4, 5, 3)) * mask[..., None]
    z0v = rng.normal(size=(4, 3))
    results = {}
    for name, solver in (("union", solve_on_union), ("per_sample", solve_per_sample)):
        func.zero_grad()
        z0 = Tensor(z0v, requires_grad=True)
        stats = {}
        out = solver(func, z0, times, mask, 0.0, gradient=gradient, stats=stats, **TIGHT)
        assert out.shape == (4, 5, 3)
        (out * weights).sum().backward()
        results[name] = (out.data * mask[..., None], z0.grad.data.copy(),
                         parameters_to_vector([p.grad for p in func.parameters()]), stats)
    u, p = results["union"], results["per_sample"]
    np.testing.assert_allclose(p[0], u[0], rtol=1e-8, atol=1e-10)
    # two discrete solutions with different steps: their gradients agree to about the tolerance
    np.testing.assert_allclose(p[1], u[1], rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(p[2], u[2], rtol=1e-5, atol=1e-6 * np.abs(u[2]).max())
    # per sample: the short row stops at its last observation
    nfe = p[3]["forward"]["nfe"]
    assert nfe.shape == (4,) and nfe[1] < nfe.max()
    # a row alone gives its row of the batch to rounding, not bitwise: the MLP's BLAS products of 1 row
    # and of 4 rows round differently in the last bits, and in the adjoint's backward solves such a
    # difference may flip a step decision (then the gradients differ by about the tolerance)
    for b in range(4):
        func.zero_grad()
        z0_b = Tensor(z0v[b:b + 1], requires_grad=True)
        alone = solve_per_sample(func, z0_b, times[b:b + 1], mask[b:b + 1], 0.0, gradient=gradient, **TIGHT)
        (alone * weights[b:b + 1]).sum().backward()
        np.testing.assert_allclose(alone.data[0] * mask[b][:, None], p[0][b], rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(z0_b.grad.data[0], p[1][b], rtol=1e-7, atol=1e-10)


def _model(grid, **kw):
    return LatentODE(obs_dim=2, latent_dim=2, hidden=4, encoder_hidden=3, decoder_hidden=3, encoder="gru",
                     noise_std=0.5, obs_scale=2.0, rtol=1e-10, atol=1e-10, rng=7, grid=grid, **kw)


@pytest.mark.parametrize("gradient", ["backprop", "adjoint"])
def test_per_sample_elbo_gradient_matches_central_differences(gradient):
    data = make_spirals(n_spirals=6, n_obs=30, seed=3)
    times, values = data.t_obs[:3, :8], data.x_obs[:3, :8]
    model = _model("per_sample", gradient=gradient)
    params = model.parameters()
    model.zero_grad()
    model.elbo(times, values, rng=5).loss.backward()
    grad = parameters_to_vector([p.grad for p in params])
    theta = parameters_to_vector(params)
    rng, h = np.random.default_rng(11), 1e-5
    for _ in range(2):
        v = rng.standard_normal(theta.size)
        v /= np.linalg.norm(v)
        vector_to_parameters(theta + h * v, params)
        up = model.elbo(times, values, rng=5).loss.item()
        vector_to_parameters(theta - h * v, params)
        down = model.elbo(times, values, rng=5).loss.item()
        vector_to_parameters(theta, params)
        assert grad @ v == pytest.approx((up - down) / (2 * h), rel=1e-5, abs=1e-7)


def test_the_model_loss_is_the_same_on_both_grids_and_a_bad_grid_is_named():
    data = make_spirals(n_spirals=6, n_obs=30, seed=3)
    times, values = data.t_obs[:4, :10], data.x_obs[:4, :10]
    losses = [_model(g).elbo(times, values, rng=5).loss.item() for g in ("union", "per_sample")]
    assert losses[1] == pytest.approx(losses[0], rel=1e-8)
    with pytest.raises(InputError, match="`grid`"):
        _model("shared")


def test_a_per_sample_spirals_run_trains_and_its_grid_is_part_of_the_resume_rule(tmp_path):
    from odeflow.errors import DataFormatError, InputError as _InputError
    from odeflow.experiments import latent_ode as exp
    cfg = exp.SpiralConfig(n_obs=10, n_spirals=20, iterations=2, batch_size=4, grid="per_sample")
    assert exp.build_model(cfg).grid == "per_sample"
    ckpt = tmp_path / "run.npz"
    _, _, result = exp.fit_spirals(cfg, quiet=True, checkpoint=ckpt)
    assert result["complete"] is True and np.isfinite(result["final_loss_per_obs"]) and np.isfinite(result["test_rmse"])
    other = exp.SpiralConfig(n_obs=10, n_spirals=20, iterations=2, batch_size=4, grid="union")
    with pytest.raises((DataFormatError, _InputError), match="grid"):  # resuming on the other grid is refused
        exp.fit_spirals(other, quiet=True, checkpoint=ckpt, resume=True)
