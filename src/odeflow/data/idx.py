"""MNIST from the standard IDX files (raw or gzip-compressed), strictly validated.

IDX layout (LeCun et al., http://yann.lecun.com/exdb/mnist/), all integers big-endian::

    bytes 0-1   0x00 0x00
    byte  2     data type: 0x08 = unsigned byte (the only type MNIST uses)
    byte  3     number of dimensions d (3 for images, 1 for labels)
    4 * d       the d dimension sizes, uint32 each
    rest        prod(sizes) data bytes, row-major (C order), nothing after

So the magic number is 0x00000803 for image files and 0x00000801 for label files.
A file is recognised as gzip by its first two bytes (0x1f 0x8b), not by its name.
"""
from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from odeflow.data.digits import ImageData, standardize_images, _check_dtype
from odeflow.errors import DataFormatError, InputError, InputTypeError

__all__ = ["read_idx", "write_idx", "load_mnist", "MNIST_FILES", "IMAGE_MAGIC", "LABEL_MAGIC"]

IMAGE_MAGIC = 0x00000803
LABEL_MAGIC = 0x00000801
_UBYTE = 0x08
_GZIP_MAGIC = b"\x1f\x8b"
_KIND = {3: "image", 1: "label"}

# the four standard file names (each may also carry a .gz suffix)
MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def _as_path(path, name="path") -> Path:
    try:
        return Path(os.fspath(path))
    except TypeError as exc:
        raise InputTypeError(f"`{name}` must be a str or os.PathLike; got {type(path).__name__}") from exc


def read_idx(path, *, ndim: int | None = None) -> np.ndarray:
    """Read one IDX file of unsigned bytes (raw or gzip) and check it byte for byte.

    Parameters
    ----------
    path : str or os.PathLike
        The file. Gzip compression is detected from the first two bytes.
    ndim : int, optional
        Required number of dimensions (3 for MNIST images, 1 for labels); the magic
        number must then be 0x00000803 or 0x00000801 respectively.

    Returns
    -------
    ndarray of uint8, shape given by the header
        A writable array, e.g. (n, 28, 28) for MNIST images, (n,) for labels.

    Raises
    ------
    DataFormatError
        Naming the file and the problem, if the gzip stream is corrupt, the header is
        truncated, the first two bytes are not zero, the type byte is not 0x08, the
        number of dimensions is 0 or differs from ``ndim``, or the data length is
        not exactly the product of the dimensions (truncated, or extra bytes).
    OSError
        If the file cannot be read (for example it does not exist).
    """
    path = _as_path(path)
    raw = path.read_bytes()
    where = str(path)
    if raw[:2] == _GZIP_MAGIC:
        where += " (gzip)"
        try:
            data = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataFormatError(f"{where}: corrupt or truncated gzip stream ({exc})") from exc
    else:
        data = raw
    if len(data) < 4:
        raise DataFormatError(f"{where}: truncated IDX header: {len(data)} bytes, need at least 4")
    magic = int.from_bytes(data[:4], "big")
    if data[0] != 0 or data[1] != 0:
        raise DataFormatError(
            f"{where}: bad magic number 0x{magic:08X}: an IDX file starts with two zero bytes "
            f"(MNIST images 0x{IMAGE_MAGIC:08X}, labels 0x{LABEL_MAGIC:08X})")
    if data[2] != _UBYTE:
        raise DataFormatError(
            f"{where}: unsupported IDX data type byte 0x{data[2]:02X} (magic 0x{magic:08X}); "
            f"only 0x08, unsigned byte, is supported (as in MNIST)")
    nd = data[3]
    if nd == 0:
        raise DataFormatError(f"{where}: magic 0x{magic:08X} declares 0 dimensions")
    if ndim is not None and nd != ndim:
        want = 0x0800 | ndim
        kind = _KIND.get(ndim, f"{ndim}-D")
        raise DataFormatError(
            f"{where}: magic number 0x{magic:08X} declares {nd} dimensions; "
            f"an MNIST {kind} file has magic 0x{want:08X} ({ndim} dimensions)")
    header = 4 + 4 * nd
    if len(data) < header:
        raise DataFormatError(
            f"{where}: truncated IDX header: {len(data)} bytes, the {nd} dimension sizes need {header}")
    dims = struct.unpack(f">{nd}I", data[4:header])
    expected = math.prod(dims)
    found = len(data) - header
    if found < expected:
        raise DataFormatError(
            f"{where}: truncated: dimensions {dims} need {expected} data bytes, found {found}")
    if found > expected:
        raise DataFormatError(
            f"{where}: {found - expected} extra bytes after the {expected} data bytes "
            f"of dimensions {dims}")
    return np.frombuffer(data, dtype=np.uint8, count=expected, offset=header).reshape(dims).copy()


def write_idx(path, array, *, compress: bool | None = None) -> Path:
    """Write an array of unsigned bytes as an IDX file (a helper for tests and users).

    Parameters
    ----------
    path : str or os.PathLike
        Destination; an existing file is overwritten.
    array : array_like of integers in [0, 255], 1 to 255 dimensions
        The data, e.g. shape (n, 28, 28) for images, (n,) for labels.
    compress : bool, optional
        Gzip the file. Default: compress when ``path`` ends in ``.gz``.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    InputError
        If ``array`` has non-integer values, values outside [0, 255], 0 or more than
        255 dimensions.
    """
    path = _as_path(path)
    arr = np.asarray(array)
    if arr.dtype != np.uint8:
        if arr.dtype.kind not in "iuf" or arr.size and (
                not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr))
                or arr.min() < 0 or arr.max() > 255):
            raise InputError(
                f"`array` must hold integers in [0, 255] (IDX type 0x08); got dtype {arr.dtype}")
        arr = arr.astype(np.uint8)
    if not 1 <= arr.ndim <= 255:
        raise InputError(f"`array` must have 1 to 255 dimensions; got shape {arr.shape}")
    body = bytes([0, 0, _UBYTE, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    body += np.ascontiguousarray(arr).tobytes()
    if compress is None:
        compress = path.name.endswith(".gz")
    path.write_bytes(gzip.compress(body) if compress else body)
    return path


def _find(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):  # the uncompressed file wins if both exist
        candidate = folder / name
        if candidate.is_file():
            return candidate
    raise InputError(f"`path` = {str(folder)!r} has no file {stem!r} or {stem + '.gz'!r}; "
                     f"MNIST needs the four files {', '.join(MNIST_FILES.values())} (each may end in .gz)")


def _read_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(images_path, ndim=3)
    labels = read_idx(labels_path, ndim=1)
    if images.shape[1:] != (28, 28):
        raise DataFormatError(f"{images_path}: MNIST images are 28x28; the header says "
                              f"{images.shape[1]}x{images.shape[2]}")
    if images.shape[0] == 0:
        raise DataFormatError(f"{images_path}: holds 0 images")
    if labels.shape[0] != images.shape[0]:
        raise DataFormatError(f"{labels_path}: {labels.shape[0]} labels for the "
                              f"{images.shape[0]} images of {images_path}")
    if labels.max() > 9:
        bad = int(np.flatnonzero(labels > 9)[0])
        raise DataFormatError(f"{labels_path}: label {int(labels[bad])} at position {bad} "
                              f"is not a digit 0..9")
    return images, labels.astype(np.int64)


def load_mnist(path, *, standardize: bool = True, dtype=np.float64) -> ImageData:
    """MNIST from a folder holding the four standard IDX files (raw or .gz).

    Normalisation: divide by 255, then subtract the training-pixel mean and divide
    by the training-pixel std (0.1307 and 0.3081 for the full MNIST training set;
    see :mod:`odeflow.data.digits`). The split is MNIST's own (60,000 / 10,000).

    Parameters
    ----------
    path : str or os.PathLike
        Folder with ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
        ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each possibly
        ending in ``.gz`` (if both forms exist, the uncompressed one is read).
    standardize : bool, default True
        If False, images are only divided by 255 (values in [0, 1]).
    dtype : floating dtype, default float64
        dtype of the images (float32 halves the 440 MB of the float64 arrays).

    Returns
    -------
    ImageData
        ``x_train`` shape (n_train, 1, 28, 28), ``x_test`` shape (n_test, 1, 28, 28),
        labels int64 in 0..9, ``scale = 255``.

    Raises
    ------
    InputError
        If ``path`` is not a folder or one of the four files is missing.
    DataFormatError
        Naming the file, if a file is corrupt or truncated (:func:`read_idx`), the
        images are not 28x28, a label file's length differs from its image file's,
        or a label is not in 0..9.

    References
    ----------
    .. [1] Y. LeCun, C. Cortes, C. J. C. Burges, "The MNIST database of handwritten
       digits", http://yann.lecun.com/exdb/mnist/ (file format section).
    """
    folder = _as_path(path)
    _check_dtype(dtype)
    if not folder.is_dir():
        raise InputError(f"`path` must be a folder holding the MNIST IDX files; got {str(folder)!r}")
    files = {key: _find(folder, stem) for key, stem in MNIST_FILES.items()}
    x_train, y_train = _read_pair(files["train_images"], files["train_labels"])
    x_test, y_test = _read_pair(files["test_images"], files["test_labels"])
    x_train, x_test, mean, std = standardize_images(
        x_train, x_test, 255.0, standardize=standardize, dtype=dtype)
    return ImageData(x_train, y_train, x_test, y_test, 255.0, mean, std, f"MNIST IDX {folder}")
