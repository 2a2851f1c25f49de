"""MNIST IDX reader/writer/loader: round trips and every corrupt-file error."""
import gzip
import struct

import numpy as np
import pytest

from odeflow.data import load_mnist, read_idx, write_idx
from odeflow.data.idx import MNIST_FILES
from odeflow.errors import DataFormatError, InputError


def idx_bytes(array, dtype_byte=0x08):
    """Independent IDX encoder (header by hand) for the reader tests."""
    array = np.asarray(array, dtype=np.uint8)
    head = bytes([0, 0, dtype_byte, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return head + array.tobytes()


@pytest.fixture
def images():
    return np.random.default_rng(0).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)


@pytest.mark.parametrize("name", ["img-idx3-ubyte", "img-idx3-ubyte.gz"])
def test_round_trip(tmp_path, images, name):
    path = write_idx(tmp_path / name, images)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    back = read_idx(path, ndim=3)
    assert back.dtype == np.uint8 and back.shape == (5, 28, 28)
    np.testing.assert_array_equal(back, images)
    back[0, 0, 0] = 1  # the result is writable


def test_writer_matches_independent_encoder(tmp_path, images):
    write_idx(tmp_path / "a", images)
    assert (tmp_path / "a").read_bytes() == idx_bytes(images)
    labels = np.array([3, 1, 4, 1, 5], dtype=np.int64)  # any integer dtype in range
    write_idx(tmp_path / "l", labels)
    assert (tmp_path / "l").read_bytes()[:8] == bytes([0, 0, 8, 1, 0, 0, 0, 5])
    np.testing.assert_array_equal(read_idx(tmp_path / "l", ndim=1), labels)


def test_gzip_detected_by_magic_not_extension(tmp_path, images):
    write_idx(tmp_path / "compressed.idx", images, compress=True)
    write_idx(tmp_path / "plain.gz", images, compress=False)
    np.testing.assert_array_equal(read_idx(tmp_path / "compressed.idx"), images)
    np.testing.assert_array_equal(read_idx(tmp_path / "plain.gz"), images)


def _raises(path, *fragments, ndim=None):
    with pytest.raises(DataFormatError) as info:
        read_idx(path, ndim=ndim)
    msg = str(info.value)
    assert str(path) in msg
    for fragment in fragments:
        assert fragment in msg, msg
    return msg


def test_truncated_data(tmp_path, images):
    path = tmp_path / "short"
    path.write_bytes(idx_bytes(images)[:-10])
    _raises(path, "truncated", "3920", "3910")


def test_truncated_header(tmp_path):
    path = tmp_path / "tiny"
    path.write_bytes(b"\x00\x00")
    _raises(path, "truncated", "header")
    path.write_bytes(bytes([0, 0, 8, 3, 0, 0, 0, 5]))  # 3 dims declared, 1 given
    _raises(path, "truncated", "header")


def test_extra_bytes(tmp_path, images):
    path = tmp_path / "long"
    path.write_bytes(idx_bytes(images) + b"\x00\x07\x07")
    _raises(path, "3 extra bytes")


def test_bad_magic(tmp_path, images):
    path = tmp_path / "magic"
    path.write_bytes(b"\x01" + idx_bytes(images)[1:])
    _raises(path, "bad magic number 0x01000803")
    path.write_bytes(b"PK\x03\x04" + bytes(20))  # some other format entirely
    _raises(path, "bad magic")


def test_wrong_dtype_byte(tmp_path, images):
    path = tmp_path / "floats"
    path.write_bytes(idx_bytes(images, dtype_byte=0x0D))
    _raises(path, "0x0D", "unsigned byte")


def test_wrong_kind_of_file(tmp_path):
    path = tmp_path / "labels"
    write_idx(path, np.arange(10))
    _raises(path, "0x00000801", "0x00000803", ndim=3)


def test_zero_dimensions(tmp_path):
    path = tmp_path / "zero"
    path.write_bytes(bytes([0, 0, 8, 0]))
    _raises(path, "0 dimensions")


def test_corrupt_gzip(tmp_path, images):
    full = gzip.compress(idx_bytes(images))
    path = tmp_path / "cut.gz"
    path.write_bytes(full[: len(full) // 2])
    _raises(path, "gzip")
    bad = bytearray(full)
    bad[len(bad) // 2] ^= 0xFF  # flip bits inside the deflate stream
    path.write_bytes(bytes(bad))
    _raises(path, "gzip")


def test_gzip_holding_truncated_idx(tmp_path, images):
    path = tmp_path / "inner.gz"
    path.write_bytes(gzip.compress(idx_bytes(images)[:-1]))
    _raises(path, "(gzip)", "truncated")


def test_missing_file_is_oserror(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope")


def test_writer_rejects_bad_arrays(tmp_path):
    for bad in (np.array([0.5, 1.0]), np.array([-1, 3]), np.array([256]), np.array(["a"]),
                np.array([np.nan])):
        with pytest.raises(InputError, match="`array`"):
            write_idx(tmp_path / "x", bad)
    with pytest.raises(InputError, match="`array`"):
        write_idx(tmp_path / "x", np.uint8(3))  # 0-d


# --- load_mnist on a tiny fake MNIST folder -------------------------------------------

def make_mnist(folder, n_train=6, n_test=4, gz=("train_images", "test_labels")):
    rng = np.random.default_rng(1)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28)),
        "train_labels": rng.integers(0, 10, n_train),
        "test_images": rng.integers(0, 256, (n_test, 28, 28)),
        "test_labels": rng.integers(0, 10, n_test),
    }
    for key, arr in arrays.items():
        write_idx(folder / (MNIST_FILES[key] + (".gz" if key in gz else "")), arr)
    return arrays


def test_load_mnist(tmp_path):
    arrays = make_mnist(tmp_path)
    data = load_mnist(tmp_path)
    assert data.x_train.shape == (6, 1, 28, 28) and data.x_test.shape == (4, 1, 28, 28)
    assert data.x_train.dtype == np.float64
    assert data.y_train.dtype == np.int64 and data.y_test.dtype == np.int64
    np.testing.assert_array_equal(data.y_train, arrays["train_labels"])
    raw = arrays["train_images"] / 255.0
    mean, std = raw.mean(), raw.std()
    assert data.mean == pytest.approx(mean) and data.std == pytest.approx(std)
    np.testing.assert_allclose(data.x_train[:, 0], (raw - mean) / std)
    np.testing.assert_allclose(data.x_test[:, 0], (arrays["test_images"] / 255.0 - mean) / std)
    assert abs(data.x_train.mean()) < 1e-12 and data.x_train.std() == pytest.approx(1.0)
    np.testing.assert_allclose(data.normalize(arrays["test_images"]), data.x_test[:, 0])

    plain = load_mnist(str(tmp_path), standardize=False, dtype=np.float32)
    assert plain.x_train.dtype == np.float32 and (plain.mean, plain.std) == (0.0, 1.0)
    np.testing.assert_allclose(plain.x_train[:, 0], raw, rtol=1e-6)


def test_load_mnist_missing_file(tmp_path):
    make_mnist(tmp_path)
    (tmp_path / MNIST_FILES["test_images"]).unlink()
    with pytest.raises(InputError) as info:
        load_mnist(tmp_path)
    assert str(tmp_path) in str(info.value) and "t10k-images-idx3-ubyte" in str(info.value)
    with pytest.raises(InputError, match="`path`"):
        load_mnist(tmp_path / MNIST_FILES["train_labels"])  # a file, not a folder


def test_load_mnist_inconsistent_files(tmp_path):
    make_mnist(tmp_path)
    labels = tmp_path / MNIST_FILES["train_labels"]
    write_idx(labels, np.zeros(5))  # 5 labels for 6 images
    with pytest.raises(DataFormatError) as info:
        load_mnist(tmp_path)
    assert str(labels) in str(info.value) and "5 labels" in str(info.value)

    write_idx(labels, [0, 1, 2, 3, 4, 12])
    with pytest.raises(DataFormatError, match="label 12 at position 5"):
        load_mnist(tmp_path)

    write_idx(labels, np.zeros(6))
    small = tmp_path / (MNIST_FILES["test_images"])
    write_idx(small, np.zeros((4, 8, 8)))
    with pytest.raises(DataFormatError) as info:
        load_mnist(tmp_path)
    assert str(small) in str(info.value) and "28x28" in str(info.value)


def test_load_mnist_reports_corrupt_member(tmp_path):
    make_mnist(tmp_path)
    target = tmp_path / (MNIST_FILES["train_images"] + ".gz")
    target.write_bytes(target.read_bytes()[:40])
    with pytest.raises(DataFormatError) as info:
        load_mnist(tmp_path)
    assert str(target) in str(info.value)
