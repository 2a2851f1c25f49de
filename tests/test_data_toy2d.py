"""FFJORD 2-D samplers, the exact 8gaussians density, Rezende & Mohamed targets."""
import numpy as np
import pytest
from scipy import stats

from odeflow.data import TARGET_NAMES, TOY2D_NAMES, log_prob_8gaussians, log_target, sample_toy2d
from odeflow.data.toy2d import EIGHT_GAUSSIANS_RADIUS, EIGHT_GAUSSIANS_STD
from odeflow.errors import InputError, InputTypeError, ShapeError


def test_names():
    assert set(TOY2D_NAMES) == {"8gaussians", "pinwheel", "checkerboard", "2spirals", "moons",
                                "circles", "rings", "swissroll"}


@pytest.mark.parametrize("name", TOY2D_NAMES)
def test_sampler_shape_and_determinism(name):
    x = sample_toy2d(name, 1001, np.random.default_rng(5))
    assert x.shape == (1001, 2) and x.dtype == np.float64 and np.all(np.isfinite(x))
    assert np.abs(x).max() < 10
    np.testing.assert_array_equal(x, sample_toy2d(name, 1001, np.random.default_rng(5)))
    assert not np.array_equal(x, sample_toy2d(name, 1001, np.random.default_rng(6)))
    assert sample_toy2d(name, 7, 0).shape == (7, 2)  # exactly n, even when not divisible


def test_sampler_errors():
    with pytest.raises(InputError) as info:
        sample_toy2d("9gaussians", 10, 0)
    msg = str(info.value)
    assert "`name`" in msg and "9gaussians" in msg and all(n in msg for n in TOY2D_NAMES)
    with pytest.raises(InputError, match="`n`"):
        sample_toy2d("moons", 0, 0)
    with pytest.raises(InputTypeError, match="`n`"):
        sample_toy2d("moons", 2.5, 0)
    with pytest.raises(InputTypeError, match="`rng`"):
        sample_toy2d("moons", 5, "seed")


def test_checkerboard_occupies_the_black_squares():
    x = sample_toy2d("checkerboard", 5000, 1)
    assert np.all(np.abs(x) <= 4)
    cells = np.floor(x / 2).astype(int)  # 2x2 cells of a 4x4 board
    assert np.all((cells[:, 0] + cells[:, 1]) % 2 == 0)
    assert len({tuple(c) for c in cells}) == 8


def test_rings_and_circles_radii():
    r = np.hypot(*sample_toy2d("rings", 4000, 2).T)
    nearest = np.argmin(np.abs(r[:, None] - 3 * np.array([1, 0.75, 0.5, 0.25])), axis=1)
    assert np.all(np.bincount(nearest, minlength=4) == 1000)  # noise 0.08 << spacing 0.75
    r = np.hypot(*sample_toy2d("circles", 4000, 2).T)
    assert abs(np.sum(r > 2.25) - 2000) <= 20  # noise 3 * 0.08 vs gap 1.5: few cross


def test_8gaussians_density_normalises():
    h = 0.02
    g = np.arange(-6, 6 + h / 2, h)
    xx, yy = np.meshgrid(g, g)
    p = np.exp(log_prob_8gaussians(np.stack([xx, yy], -1)))
    assert p.shape == xx.shape
    assert p.sum() * h * h == pytest.approx(1.0, abs=1e-3)


def test_8gaussians_density_matches_scipy_mixture():
    z = np.random.default_rng(0).uniform(-4, 4, size=(200, 2))
    s = 0.5 / 1.414
    centers = [(4 / 1.414) * np.array([np.cos(a), np.sin(a)]) for a in np.arange(8) * np.pi / 4]
    pdf = sum(stats.multivariate_normal(c, s * s * np.eye(2)).pdf(z) for c in centers) / 8
    np.testing.assert_allclose(log_prob_8gaussians(z), np.log(pdf), rtol=1e-10)
    assert (EIGHT_GAUSSIANS_RADIUS, EIGHT_GAUSSIANS_STD) == (4 / 1.414, s)
    assert np.isfinite(log_prob_8gaussians([1e3, -1e3]))  # far tail: no underflow to -inf


def test_8gaussians_samples_follow_the_density():
    x = sample_toy2d("8gaussians", 40000, 3)
    var = EIGHT_GAUSSIANS_STD ** 2 + EIGHT_GAUSSIANS_RADIUS ** 2 / 2  # per axis
    np.testing.assert_allclose(np.cov(x.T), var * np.eye(2), atol=0.06)
    # Monte Carlo entropy ~ log 8 + log(2 pi e s^2) for well separated components
    entropy = -log_prob_8gaussians(x).mean()
    assert entropy == pytest.approx(np.log(8) + np.log(2 * np.pi * np.e * EIGHT_GAUSSIANS_STD ** 2),
                                    abs=0.02)


def naive_energy(name, z1, z2):
    """Rezende & Mohamed (2015) Table 1, written directly (fine for moderate z)."""
    w1 = np.sin(2 * np.pi * z1 / 4)
    w2 = 3 * np.exp(-0.5 * ((z1 - 1) / 0.6) ** 2)
    w3 = 3 / (1 + np.exp(-(z1 - 1) / 0.3))
    if name == "U1":
        return (0.5 * ((np.sqrt(z1 ** 2 + z2 ** 2) - 2) / 0.4) ** 2
                - np.log(np.exp(-0.5 * ((z1 - 2) / 0.6) ** 2) + np.exp(-0.5 * ((z1 + 2) / 0.6) ** 2)))
    if name == "U2":
        return 0.5 * ((z2 - w1) / 0.4) ** 2
    if name == "U3":
        return -np.log(np.exp(-0.5 * ((z2 - w1) / 0.35) ** 2)
                       + np.exp(-0.5 * ((z2 - w1 + w2) / 0.35) ** 2))
    return -np.log(np.exp(-0.5 * ((z2 - w1) / 0.4) ** 2) + np.exp(-0.5 * ((z2 - w1 + w3) / 0.35) ** 2))


@pytest.mark.parametrize("name", TARGET_NAMES)
def test_log_target_formulas(name):
    z = np.random.default_rng(1).uniform(-2.5, 2.5, size=(300, 2))
    np.testing.assert_allclose(log_target(name, z), -naive_energy(name, z[:, 0], z[:, 1]),
                               rtol=1e-10, atol=1e-10)
    grid = np.zeros((3, 4, 2))
    assert log_target(name, grid).shape == (3, 4)
    far = log_target(name, [[-400.0, 300.0], [400.0, -300.0]])  # no overflow warnings
    assert far.shape == (2,) and np.all(np.isfinite(far))


def test_log_target_known_values():
    # U1 is a ring of radius 2 with lobes at z1 = +-2: at (2, 0) the energy is ~0
    assert log_target("U1", [2.0, 0.0]) == pytest.approx(0.0, abs=1e-9)
    assert log_target("U2", [1.0, 1.0]) == pytest.approx(0.0)  # z2 = w1(1) = sin(pi/2)


def test_log_target_errors():
    with pytest.raises(InputError) as info:
        log_target("U5", np.zeros(2))
    assert "`name`" in str(info.value) and all(n in str(info.value) for n in TARGET_NAMES)
    with pytest.raises(ShapeError, match="`z`"):
        log_target("U1", np.zeros((4, 3)))
    with pytest.raises(ShapeError, match="`x`"):
        log_prob_8gaussians(np.zeros(3))
