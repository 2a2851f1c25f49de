"""Latent ODE (Chen et al. 2018, §5): objective pieces, gradients, batching, training, experiment."""
import math

import numpy as np

import odeflow
import pytest
from scipy import integrate, stats

from odeflow.adjoint import odeint, odeint_backprop
from odeflow.autodiff.tensor import Tensor
from odeflow.data.series import load_series_csv
from odeflow.data.spirals import make_spirals
from odeflow.errors import DataFormatError, InputError, ShapeError
from odeflow.models.encoders import RecognitionRNN, cell_step, check_batch, time_gaps
from odeflow.models.latent_ode import (
    LatentDynamics,
    LatentODE,
    gaussian_log_likelihood,
    kl_normal,
    reparameterize,
    solve_on_union,
    union_times,
)
from odeflow.models.rnn_baseline import RNNBaseline
from odeflow.nn import GRUCell, RNNCell, parameters_to_vector, vector_to_parameters
from odeflow.optim import Adam


@pytest.fixture(scope="module")
def spirals():
    return make_spirals(n_spirals=24, n_obs=30, seed=3)


def tiny_model(**kwargs):
    """Small enough for finite differences; rk4 on the output grid is a smooth map of the weights."""
    kw = {"obs_dim": 2, "latent_dim": 2, "hidden": 4, "encoder_hidden": 3, "decoder_hidden": 3,
          "encoder": "gru", "noise_std": 0.5, "obs_scale": 2.0, "method": "rk4", "rng": 7}
    kw.update(kwargs)
    return LatentODE(**kw)


# -- data as the model sees it --------------------------------------------------------------

def test_batch_shapes_and_determinism(spirals):
    times, values = spirals.t_obs[:5], spirals.x_obs[:5]
    t, v, mask, t0 = check_batch(times, values)
    assert t.shape == (5, 30) and t.dtype == np.float64 and v.shape == (5, 30, 2)
    assert mask.all() and t0 == 0.0
    gaps = time_gaps(t, mask, t0)
    np.testing.assert_allclose(np.cumsum(gaps, axis=1), times)  # gaps add back up to the times
    assert (gaps >= 0).all()
    # same seeds: same model, same sample, same ELBO; another sample seed: another ELBO
    a = tiny_model().elbo(times, values, rng=1)
    b = tiny_model().elbo(times, values, rng=1)
    c = tiny_model().elbo(times, values, rng=2)
    assert a.log_likelihood.shape == (5,) and a.kl.shape == (5,) and a.n_observed == 150
    np.testing.assert_array_equal(a.log_likelihood, b.log_likelihood)
    assert a.loss.item() == b.loss.item() != c.loss.item()
    assert a.loss.item() == pytest.approx(-np.mean(a.log_likelihood - a.kl))


def test_padding_and_union_times():
    times = np.array([[0.5, 1.0, 0.0], [0.2, 0.5, 2.0]])
    mask = np.array([[True, True, False], [True, True, True]])
    t, _, mask, t0 = check_batch(times, np.zeros((2, 3, 1)), mask, t0=0.0)
    np.testing.assert_array_equal(t[0], [0.5, 1.0, 1.0])  # padding repeats the last real time
    np.testing.assert_array_equal(time_gaps(t, mask, t0), [[0.5, 0.5, 0.0], [0.2, 0.3, 1.5]])
    t_union, index = union_times(t, mask, t0)
    np.testing.assert_array_equal(t_union, [0.0, 0.2, 0.5, 1.0, 2.0])
    np.testing.assert_array_equal(t_union[index][mask], t[mask])


@pytest.mark.parametrize("times, mask, fragment", [
    ([[0.5, 0.2]], None, "must not decrease along a row"),
    ([[-0.1, 0.2]], None, "must be >= t0"),
    ([[0.1, np.nan]], None, "must be finite"),
    ([[0.1, 0.2]], [[True]], "`mask` must have the shape"),
])
def test_bad_batches_are_named(times, mask, fragment):
    with pytest.raises((InputError, ShapeError), match=fragment):
        check_batch(np.array(times), np.zeros((1, 2, 2)), None if mask is None else np.array(mask))


def test_bad_settings_are_named():
    with pytest.raises(InputError, match="`encoder`.*'lstm'"):
        LatentODE(encoder="lstm")
    with pytest.raises(InputError, match="`noise_std`.*-1"):
        LatentODE(noise_std=-1.0)
    with pytest.raises(InputError, match="`gradient`"):
        LatentODE(gradient="magic")
    with pytest.raises(InputError, match="`std`"):
        gaussian_log_likelihood(np.zeros((1, 2)), np.zeros((1, 2)), 0.0)


def test_csv_loader_rejects_a_malformed_series(tmp_path):
    path = tmp_path / "hare_lynx_truncated.csv"
    path.write_text("# truncated copy\nyear,hare,lynx\n1900,30.0,4.0\n1901,47.2\n")
    with pytest.raises(DataFormatError, match=r"line 4: ragged row: 2 fields, the header has 3"):
        load_series_csv(path)


# -- the ELBO, piece by piece, against independent formulas -----------------------------------

def test_gaussian_log_likelihood_matches_scipy():
    rng = np.random.default_rng(0)
    x, mean = rng.normal(size=(3, 4, 2)), rng.normal(size=(3, 4, 2))
    mask = rng.random((3, 4)) < 0.6
    got = gaussian_log_likelihood(x, Tensor(mean), 0.7, mask).data
    per_element = stats.norm.logpdf(x, loc=mean, scale=0.7)
    expected = [per_element[b][mask[b]].sum() for b in range(3)]
    np.testing.assert_allclose(got, expected, rtol=1e-13)
    full = gaussian_log_likelihood(x, mean, 0.7).data
    np.testing.assert_allclose(full, per_element.sum(axis=(1, 2)), rtol=1e-13)


def test_kl_matches_numerical_integration():
    mean_q, logvar_q = np.array([[0.3, -1.2]]), np.array([[-0.5, 0.8]])
    mean_p, logvar_p = np.array([[0.1, 0.4]]), np.array([[0.2, -0.3]])

    def kl_1d(mq, lq, mp, lp):  # integral of q log(q / p), by quadrature
        q = stats.norm(mq, math.exp(lq / 2))
        p = stats.norm(mp, math.exp(lp / 2))
        return integrate.quad(lambda z: q.pdf(z) * (q.logpdf(z) - p.logpdf(z)), -30, 30,
                              epsabs=1e-13, epsrel=1e-12)[0]

    expected = sum(kl_1d(mean_q[0, j], logvar_q[0, j], mean_p[0, j], logvar_p[0, j]) for j in range(2))
    got = kl_normal(mean_q, logvar_q, mean_p, logvar_p).data
    np.testing.assert_allclose(got, [expected], rtol=1e-9)
    to_prior = sum(kl_1d(mean_q[0, j], logvar_q[0, j], 0.0, 0.0) for j in range(2))
    np.testing.assert_allclose(kl_normal(mean_q, logvar_q).data, [to_prior], rtol=1e-9)
    assert kl_normal(mean_p, logvar_p, mean_p, logvar_p).data == pytest.approx([0.0], abs=1e-15)


def test_reparameterized_sample_has_the_posterior_moments():
    mean, logvar = Tensor(np.array([[1.5, -2.0]])), Tensor(np.array([[0.4, -1.0]]))
    draws = np.stack([reparameterize(mean, logvar, np.random.default_rng(i)).data[0]
                      for i in range(4000)])
    np.testing.assert_allclose(draws.mean(axis=0), mean.data[0], atol=4 * np.exp(0.2) / 63)
    np.testing.assert_allclose(draws.var(axis=0), np.exp(logvar.data[0]), rtol=0.1)
    assert reparameterize(mean, logvar, None) is mean  # no rng: the posterior mean


# -- gradients -------------------------------------------------------------------------------------

def _directional_check(model, loss_of_model, n_directions=3, h=1e-5):
    """<grad, v> against the central difference of the loss along random directions v."""
    params = model.parameters()
    model.zero_grad()
    loss_of_model().backward()
    grad = parameters_to_vector([p.grad for p in params])
    theta = parameters_to_vector(params)
    rng = np.random.default_rng(11)
    for _ in range(n_directions):
        v = rng.standard_normal(theta.size)
        v /= np.linalg.norm(v)
        vector_to_parameters(theta + h * v, params)
        up = loss_of_model().item()
        vector_to_parameters(theta - h * v, params)
        down = loss_of_model().item()
        vector_to_parameters(theta, params)
        fd = (up - down) / (2 * h)
        assert grad @ v == pytest.approx(fd, rel=1e-6, abs=1e-8)


@pytest.mark.parametrize("encoder", ["rnn", "gru", "odernn"])
def test_elbo_gradient_matches_finite_differences(spirals, encoder):
    model = tiny_model(encoder=encoder)
    times, values = spirals.t_obs[:3, :8], spirals.x_obs[:3, :8]
    _directional_check(model, lambda: model.elbo(times, values, rng=5).loss)


def test_adjoint_and_backprop_gradients_agree(spirals):
    times, values = spirals.t_obs[:3, :8], spirals.x_obs[:3, :8]
    grads = []
    for gradient in ("backprop", "adjoint"):
        model = tiny_model(method="dopri5", rtol=1e-12, atol=1e-14, gradient=gradient)
        model.elbo(times, values, rng=5).loss.backward()
        grads.append(parameters_to_vector([p.grad for p in model.parameters()]))
    # both converge to the true gradient as the tolerances shrink (5e-4 apart at 1e-10)
    np.testing.assert_allclose(grads[1], grads[0], rtol=2e-5, atol=1e-8 * np.abs(grads[0]).max())


@pytest.mark.parametrize("cell", [GRUCell(3, 5, rng=1), GRUCell(3, 5, bias=False, rng=2),
                                  RNNCell(3, 5, rng=3)], ids=["gru", "gru-nobias", "rnn"])
def test_fused_cell_step_equals_the_composed_cell(cell):
    rng = np.random.default_rng(0)
    x = Tensor(rng.normal(size=(4, 3)), requires_grad=True)
    h = Tensor(rng.normal(size=(4, 5)), requires_grad=True)
    g = rng.normal(size=(4, 5))
    results = []
    for step in (lambda: cell(x, h), lambda: cell_step(cell, x, h)):
        cell.zero_grad()
        x.grad = h.grad = None
        y = step()
        (y * g).sum().backward()
        results.append([y.data, x.grad.data, h.grad.data] + [p.grad.data for p in cell.parameters()])
    for fused, composed in zip(results[1], results[0]):
        np.testing.assert_allclose(fused, composed, rtol=1e-12, atol=1e-14)


def test_rnn_baseline_gradient_matches_finite_differences(spirals):
    model = RNNBaseline(hidden=3, decoder_hidden=3, noise_std=0.5, obs_scale=2.0, rng=2)
    times, values = spirals.t_obs[:3, :8], spirals.x_obs[:3, :8]
    _directional_check(model, lambda: model.loss(times, values)[0])


# -- one batched solve ------------------------------------------------------------------------------

def test_union_solve_equals_solving_each_trajectory_alone():
    func = LatentDynamics(latent_dim=3, hidden=8, rng=1)
    rng = np.random.default_rng(4)
    z0 = Tensor(rng.normal(size=(4, 3)), requires_grad=True)
    times = np.sort(rng.uniform(0.0, 2.0, size=(4, 5)), axis=1)
    mask = np.ones((4, 5), dtype=bool)
    mask[1, 3:] = False  # a shorter row, padded
    tol = {"rtol": 1e-11, "atol": 1e-12}
    together = solve_on_union(func, z0, times, mask, 0.0, **tol)
    assert together.shape == (4, 5, 3)
    weights = rng.normal(size=(4, 5, 3)) * mask[..., None]
    (together * weights).sum().backward()
    for b in range(4):
        z0_b = Tensor(z0.data[b:b + 1], requires_grad=True)
        t_b = np.concatenate([[0.0], times[b][mask[b]]])
        alone = odeint(func, z0_b, t_b, **tol)[1:, 0]  # (n_b, 3)
        np.testing.assert_allclose(together.data[b][mask[b]], alone.data, rtol=1e-8, atol=1e-10)
        (alone * weights[b][mask[b]]).sum().backward()
        # the gradients of two discrete solutions with different steps: equal to about the tolerance
        np.testing.assert_allclose(z0.grad.data[b], z0_b.grad.data[0], rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("method, options", [("dopri5", None), ("bosh3", None),
                                             ("rk4", {"step_size": 0.3})])
def test_many_outputs_per_step_equal_the_array_solvers_dense_output(method, options):
    # odeint_backprop forms all outputs inside a step as one product y + h W K; the array
    # solver evaluates the same continuous extension one output at a time
    func = LatentDynamics(latent_dim=2, hidden=6, rng=3)
    rng = np.random.default_rng(0)
    z0 = rng.normal(size=(5, 2))
    t = np.concatenate([[0.0], np.sort(rng.uniform(0.0, 3.0, 30))])
    args = {"rtol": 1e-4, "atol": 1e-6, "method": method, "options": options}
    y = odeint_backprop(func, Tensor(z0, requires_grad=True), t, **args)
    ref = odeflow.solve(lambda s, z: func(s, Tensor(z)).data, z0, t, **args)
    np.testing.assert_allclose(y.data, ref.y, rtol=1e-12, atol=1e-12)


# -- training and prediction -------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["latent_ode", "rnn"])
def test_one_training_step_lowers_the_loss(spirals, kind):
    times, values = spirals.t_obs[:8], spirals.x_obs[:8]
    if kind == "latent_ode":
        model = LatentODE(obs_scale=5.0, rng=0)
        loss = lambda: model.elbo(times, values, rng=9).loss  # same eps before and after
    else:
        model = RNNBaseline(obs_scale=5.0, rng=0)
        loss = lambda: model.loss(times, values)[0]
    before = loss()
    opt = Adam(model.parameters(), lr=1e-3)
    before.backward()
    opt.step()
    assert loss().item() < before.item()


def test_predictions_run_forwards_and_backwards_in_time(spirals):
    model = LatentODE(obs_scale=5.0, rtol=1e-9, atol=1e-10, rng=0)
    test = spirals.subset(slice(0, 3))
    t = np.array([-1.0, -0.5, 0.0, 0.7, 2.0])
    pred = model.predict(test.t_obs, test.x_obs, t)
    assert pred.shape == (3, 5, 2) and np.isfinite(pred).all()
    mean, _ = model.posterior(test.t_obs, test.x_obs)
    # at t0 the prediction is the decoded posterior mean; later times match the Tensor solve
    np.testing.assert_allclose(pred[:, 2], model.decode(Tensor(mean)).data, rtol=1e-12)
    later = model.decode(odeint(model.dynamics, Tensor(mean), np.array([0.0, 0.7, 2.0]),
                                rtol=1e-9, atol=1e-10)).data
    np.testing.assert_allclose(pred[:, 3:], np.swapaxes(later[1:], 0, 1), rtol=1e-6, atol=1e-8)
    # the past: the same as integrating backwards from t0, in the order of `t`
    earlier = model.decode(odeint(model.dynamics, Tensor(mean), np.array([0.0, -0.5, -1.0]),
                                  rtol=1e-9, atol=1e-10)).data
    np.testing.assert_allclose(pred[:, 0], earlier[2], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(pred[:, 1], earlier[1], rtol=1e-6, atol=1e-8)
    rnn = RNNBaseline(rng=0)
    assert rnn.predict(test.t_obs, test.x_obs, spirals.t).shape == (3, spirals.t.size, 2)
    with pytest.raises(InputError, match="`t`"):
        rnn.predict(test.t_obs, test.x_obs, t)  # an RNN cannot run backwards


def test_recognition_network_reads_the_time_gaps(spirals):
    enc = RecognitionRNN(obs_dim=2, latent_dim=4, hidden=5, cell="rnn", rng=0)
    times, values = spirals.t_obs[:2], spirals.x_obs[:2]
    mean, logvar = enc(times, values)
    assert mean.shape == logvar.shape == (2, 4)
    shifted, _ = enc(times + 0.1, values)  # the same values, observed later
    assert not np.allclose(mean.data, shifted.data)


def test_experiment_quick_demo_and_resume(tmp_path):
    from odeflow.experiments import latent_ode as exp
    summary = exp.demo(tmp_path / "demo", quick=True)
    assert summary["spirals"]["model"] == "latent_ode" and np.isfinite(summary["spirals"]["test_rmse"])
    assert set(summary["hare_lynx"]["extrapolation_rmse"]) == {"hare", "lynx"}
    assert (tmp_path / "demo" / "spirals.png").exists() and (tmp_path / "demo" / "hare_lynx.png").exists()
    # a run stopped early (time limit) and resumed ends where an uninterrupted run ends
    cfg = exp.SpiralConfig(n_obs=10, n_spirals=20, iterations=4, batch_size=4)
    data = exp.spiral_data(cfg)
    straight, _, done = exp.fit_spirals(cfg, quiet=True, data=data)
    ckpt = tmp_path / "ckpt.npz"
    _, _, part = exp.fit_spirals(cfg, quiet=True, data=data, checkpoint=ckpt, time_limit=0.0)
    assert part["iterations"] == 1 and not part["complete"] and done["complete"]
    resumed, _, rest = exp.fit_spirals(cfg, quiet=True, data=data, checkpoint=ckpt, resume=True)
    assert rest["complete"] and rest["iterations"] == 4
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=name)
    with pytest.raises(InputError, match="other settings"):
        exp.fit_spirals(exp.SpiralConfig(**{**cfg.__dict__, "lr": 0.5}), quiet=True, data=data,
                        checkpoint=ckpt, resume=True)
