"""Latent-ODE spirals: protocol, noise statistics, irregular subsets, determinism."""
import numpy as np
import pytest

from odeflow.data import irregular_indices, make_spirals
from odeflow.errors import InputError, InputTypeError


@pytest.fixture(scope="module")
def data():
    return make_spirals()  # the default protocol: 1000 spirals, noise 0.3, seed 0


def reference_curve(t, clockwise, t_max=6 * np.pi, b=0.3):
    """The two base curves written out independently (a = 0)."""
    if clockwise:
        theta = t_max + 1 - t
        r = 50 * b / theta
        return np.stack([r * np.cos(theta) - 5, r * np.sin(theta)], -1)
    r = b * t
    return np.stack([r * np.cos(t) + 5, r * np.sin(t)], -1)


def test_shapes_and_dtypes(data):
    n = 1000
    assert len(data) == n
    assert data.t.shape == (100,) and data.t.dtype == np.float64
    assert data.clean.shape == data.noisy.shape == (n, 100, 2)
    assert data.obs_index.shape == (n, 100) and data.obs_index.dtype == np.int64
    assert data.obs_mask.shape == (n, 100) and data.obs_mask.dtype == bool
    assert data.t_full.shape == (500,) and data.paths.shape == (2, 500, 2)
    assert data.full.shape == (n, 500, 2)
    assert data.noise_std == 0.3


def test_protocol(data):
    t_full = np.linspace(0, 6 * np.pi, 500)
    np.testing.assert_allclose(data.t_full, t_full)
    np.testing.assert_allclose(data.t, t_full[:100])  # windows re-timed to start at 0
    assert data.clockwise.sum() == 500  # exactly half
    assert data.start_index.min() >= 100 and data.start_index.max() < 400
    assert data.start_index.min() < 110 and data.start_index.max() > 390  # whole range used
    for i in (0, 1, 2, 500, 999):
        cw, s = bool(data.clockwise[i]), data.start_index[i]
        np.testing.assert_allclose(data.clean[i], reference_curve(t_full[s:s + 100], cw),
                                   atol=1e-12)
        np.testing.assert_allclose(data.full[i], reference_curve(t_full, cw), atol=1e-12)


def test_noise_statistics(data):
    residual = data.noisy - data.clean  # 200,000 draws: std error of the std ~ 5e-4
    assert abs(residual.mean()) < 0.003
    assert residual.std() == pytest.approx(0.3, abs=0.003)
    quiet = make_spirals(n_spirals=200, noise_std=0.1, seed=3)
    assert (quiet.noisy - quiet.clean).std() == pytest.approx(0.1, abs=0.003)
    clean = make_spirals(n_spirals=10, noise_std=0.0)
    np.testing.assert_array_equal(clean.noisy, clean.clean)


def test_determinism():
    a, b = make_spirals(n_spirals=50, seed=7), make_spirals(n_spirals=50, seed=7)
    for name in ("noisy", "obs_index", "start_index", "clockwise", "is_test"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    c = make_spirals(n_spirals=50, seed=8)
    assert not np.array_equal(a.noisy, c.noisy)
    assert not np.array_equal(a.start_index, c.start_index)


@pytest.mark.parametrize("n_obs", [30, 50, 100])
def test_irregular_observations(n_obs):
    d = make_spirals(n_spirals=300, n_obs=n_obs, seed=1)
    idx = d.obs_index
    assert idx.shape == (300, n_obs)
    assert idx.min() >= 0 and idx.max() < 100
    assert np.all(np.diff(idx, axis=1) > 0)  # sorted, distinct
    assert np.all(d.obs_mask.sum(axis=1) == n_obs)
    assert np.all(np.take_along_axis(d.obs_mask, idx, axis=1))
    np.testing.assert_array_equal(d.t_obs, d.t[idx])
    np.testing.assert_array_equal(d.x_obs[5], d.noisy[5][idx[5]])
    if n_obs < 100:
        assert len({tuple(row) for row in idx}) == 300  # each trajectory its own subset


def test_changing_n_obs_keeps_trajectories():
    a = make_spirals(n_spirals=100, n_obs=30, seed=4)
    b = make_spirals(n_spirals=100, n_obs=50, seed=4, test_fraction=0.5)
    np.testing.assert_array_equal(a.noisy, b.noisy)
    np.testing.assert_array_equal(a.start_index, b.start_index)


def test_irregular_indices_uniform():
    idx = irregular_indices(4000, 10, 3, np.random.default_rng(0))
    freq = np.bincount(idx.ravel(), minlength=10) / 4000  # each position: 0.3
    assert np.all(np.abs(freq - 0.3) < 0.03)


def test_split(data):
    assert data.is_test.sum() == 200
    train, test = data.train, data.test
    assert len(train) == 800 and len(test) == 200
    assert not train.is_test.any() and test.is_test.all()
    np.testing.assert_array_equal(test.noisy, data.noisy[data.is_test])
    assert train.t is data.t
    assert len(make_spirals(n_spirals=20, test_fraction=0.0).test) == 0


@pytest.mark.parametrize("kwargs, name, exc", [
    ({"n_obs": 101}, "n_obs", InputError),
    ({"n_obs": 0}, "n_obs", InputError),
    ({"n_total": 200}, "n_total", InputError),
    ({"n_spirals": 0}, "n_spirals", InputError),
    ({"n_spirals": 10.0}, "n_spirals", InputTypeError),
    ({"noise_std": -0.1}, "noise_std", InputError),
    ({"noise_std": float("nan")}, "noise_std", InputError),
    ({"t_max": 0.0}, "t_max", InputError),
    ({"test_fraction": 1.0}, "test_fraction", InputError),
    ({"seed": "a"}, "seed", InputTypeError),
    ({"seed": -1}, "seed", InputTypeError),
])
def test_errors(kwargs, name, exc):
    with pytest.raises(exc, match=f"`{name}`"):
        make_spirals(**kwargs)
