"""scikit-learn's bundled 8x8 handwritten digits, as image arrays for the ODE-Net.

Also home of what every image loader of :mod:`odeflow.data` shares: the
:class:`ImageData` container, the seeded stratified split and the documented
normalisation (:func:`standardize_images`).

Normalisation, the same for every image loader
----------------------------------------------
1. Divide the raw pixel values by their full scale (16 for the 8x8 digits,
   255 for MNIST), giving values in [0, 1].
2. Standardise with one scalar mean and one scalar standard deviation (the
   population std, ``ddof=0``) computed over *all pixels of the training split
   only*, so no test information leaks into training:
   ``x = (raw / scale - mean) / std``.

The training pixels then have mean 0 and std 1; ``mean`` and ``std`` are kept in
:class:`ImageData` so new images can be normalised the same way. (For the full
MNIST training set this gives the familiar 0.1307 / 0.3081.)
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import numpy as np

from odeflow.errors import DataFormatError, InputError, InputTypeError

__all__ = ["ImageData", "load_digits", "stratified_split", "standardize_images"]


@dataclass(frozen=True, repr=False)
class ImageData:
    """A train/test split of labelled single-channel images, normalised.

    Attributes
    ----------
    x_train : ndarray, shape (n_train, 1, height, width), float
        Normalised training images (channel axis second, as conv layers expect).
    y_train : ndarray, shape (n_train,), int64
        Class labels in ``0 .. n_classes - 1``.
    x_test : ndarray, shape (n_test, 1, height, width), float
        Test images, normalised with the *training* ``mean`` and ``std``.
    y_test : ndarray, shape (n_test,), int64
        Test labels.
    scale : float
        Full scale of the raw pixels (16 for the 8x8 digits, 255 for MNIST).
    mean, std : float
        Mean and std of the ``raw / scale`` training pixels that were removed
        (0 and 1 when the loader was asked not to standardise).
    name : str
        Where the images came from.
    train_index, test_index : ndarray of int64 or None
        Rows of the source array that went into each split (None when the source
        comes with its own split, as the MNIST IDX files do).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    scale: float
    mean: float
    std: float
    name: str
    train_index: np.ndarray | None = field(default=None)
    test_index: np.ndarray | None = field(default=None)

    @property
    def n_classes(self) -> int:
        """Number of classes (largest label + 1)."""
        return int(max(self.y_train.max(initial=-1), self.y_test.max(initial=-1))) + 1

    def normalize(self, raw) -> np.ndarray:
        """Apply this dataset's normalisation to raw images (same scale as the source).

        Parameters
        ----------
        raw : array_like, shape (..., height, width)
            Raw pixel values (0..16 for digits, 0..255 for MNIST).

        Returns
        -------
        ndarray, same shape, dtype of ``x_train``
        """
        x = np.asarray(raw, dtype=np.float64) / self.scale
        return ((x - self.mean) / self.std).astype(self.x_train.dtype, copy=False)

    def __repr__(self) -> str:  # arrays are large: show shapes only
        return (f"ImageData(name={self.name!r}, x_train={self.x_train.shape} {self.x_train.dtype}, "
                f"x_test={self.x_test.shape}, n_classes={self.n_classes}, "
                f"mean={self.mean:.4f}, std={self.std:.4f})")


def _as_rng(seed, name="seed") -> np.random.Generator:
    try:
        return np.random.default_rng(seed)
    except (TypeError, ValueError) as exc:
        raise InputTypeError(
            f"`{name}` must be a non-negative int, None or a numpy Generator; got {seed!r}") from exc


def _check_dtype(dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise InputTypeError(f"`dtype` must be a floating dtype; got {dtype!r}") from exc
    if dt.kind != "f":
        raise InputTypeError(f"`dtype` must be a floating dtype (float32 or float64); got {dt}")
    return dt


def stratified_split(labels, n_test: int, seed=0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified train/test split: each class keeps its share in both parts.

    Class ``c`` with ``n_c`` of the ``n`` samples gets ``n_c * n_test / n`` test
    samples, rounded by the largest-remainder method so the test part has exactly
    ``n_test`` rows; which samples go to test is a seeded random choice per class.

    Parameters
    ----------
    labels : array_like, shape (n,)
        Class label of each sample (any hashable-by-value numpy dtype).
    n_test : int
        Number of test samples, ``1 <= n_test <= n - 1``.
    seed : int, None or numpy.random.Generator, default 0
        Randomness of the split; the same seed gives the same split.

    Returns
    -------
    train_index, test_index : ndarray of int64
        Disjoint row indices covering ``0 .. n - 1``, each in a seeded random order
        (not grouped by class).

    Raises
    ------
    InputError
        If ``labels`` is not 1-D with at least 2 entries, or ``n_test`` is out of range.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size < 2:
        raise InputError(f"`labels` must be 1-D with at least 2 entries; got shape {labels.shape}")
    n = labels.size
    if isinstance(n_test, bool) or not isinstance(n_test, numbers.Integral) or not 1 <= n_test <= n - 1:
        raise InputError(f"`n_test` must be an int in [1, {n - 1}]; got {n_test!r}")
    rng = _as_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * (n_test / n)
    per_class = np.floor(quota).astype(np.int64)
    # largest remainders get the leftover test slots, so the total is exact
    leftover = int(n_test - per_class.sum())
    per_class[np.argsort(-(quota - per_class), kind="stable")[:leftover]] += 1
    train_parts, test_parts = [], []
    for c, k in zip(classes, per_class):
        idx = rng.permutation(np.flatnonzero(labels == c))
        test_parts.append(idx[:k])
        train_parts.append(idx[k:])
    train = rng.permutation(np.concatenate(train_parts)).astype(np.int64)
    test = rng.permutation(np.concatenate(test_parts)).astype(np.int64)
    return train, test


def standardize_images(raw_train, raw_test, scale: float, *, standardize: bool = True,
                       dtype=np.float64):
    """Scale raw pixels to [0, 1], then standardise with training-split statistics.

    Parameters
    ----------
    raw_train : array_like, shape (n_train, height, width)
        Raw training pixels in ``[0, scale]``.
    raw_test : array_like, shape (n_test, height, width)
        Raw test pixels in ``[0, scale]``.
    scale : float
        Full scale of the raw pixels (16 for the 8x8 digits, 255 for MNIST).
    standardize : bool, default True
        If False, stop after dividing by ``scale`` (then ``mean = 0``, ``std = 1``).
    dtype : floating dtype, default float64
        dtype of the returned images; statistics are computed in float64.

    Returns
    -------
    x_train : ndarray, shape (n_train, 1, height, width), ``dtype``
    x_test : ndarray, shape (n_test, 1, height, width), ``dtype``
    mean, std : float
        Statistics of the ``raw_train / scale`` pixels (population std).
    """
    dt = _check_dtype(dtype)
    # in-place arithmetic: full MNIST in float64 is 376 MB, avoid extra copies
    x_train = np.array(raw_train, dtype=np.float64)[:, None]
    x_test = np.array(raw_test, dtype=np.float64)[:, None]
    x_train /= scale
    x_test /= scale
    mean, std = 0.0, 1.0
    if standardize:
        mean, std = float(x_train.mean()), float(x_train.std())
        if not std > 0:
            raise DataFormatError("training images are constant (pixel std is 0): cannot standardise")
        for x in (x_train, x_test):
            x -= mean
            x /= std
    return x_train.astype(dt, copy=False), x_test.astype(dt, copy=False), mean, std


def load_digits(*, test_fraction: float = 0.2, seed=0, standardize: bool = True,
                dtype=np.float64) -> ImageData:
    """The 1,797 real 8x8 handwritten digits bundled with scikit-learn, split and normalised.

    The images ship inside scikit-learn (UCI "optical recognition of handwritten
    digits", 16 grey levels), so nothing is downloaded. Normalisation: divide by 16,
    then subtract the training-pixel mean and divide by the training-pixel std (see
    the module docstring).

    Parameters
    ----------
    test_fraction : float, default 0.2
        Share of the images held out for testing, in (0, 1); the split is
        stratified by class (:func:`stratified_split`) with
        ``n_test = round(test_fraction * 1797)`` (359 by default).
    seed : int, None or numpy.random.Generator, default 0
        Seed of the split; the same seed gives the same split.
    standardize : bool, default True
        If False, images are only divided by 16 (values in [0, 1]).
    dtype : floating dtype, default float64
        dtype of the images.

    Returns
    -------
    ImageData
        ``x_train`` shape (n_train, 1, 8, 8), ``x_test`` shape (n_test, 1, 8, 8),
        labels int64 in 0..9, ``scale = 16``.

    Raises
    ------
    InputError
        If scikit-learn is not installed (install ``odeflow[examples]``), or
        ``test_fraction`` is not in (0, 1) or leaves an empty split.
    InputTypeError
        If ``seed`` or ``dtype`` has the wrong type.

    References
    ----------
    .. [1] E. Alpaydin, C. Kaynak, "Optical Recognition of Handwritten Digits",
       UCI Machine Learning Repository (1998); ``sklearn.datasets.load_digits``.
    .. [2] Chen et al., "Neural Ordinary Differential Equations", NeurIPS 2018, §3.
    """
    if not isinstance(test_fraction, numbers.Real) or not 0.0 < test_fraction < 1.0:
        raise InputError(f"`test_fraction` must be a number in (0, 1); got {test_fraction!r}")
    _check_dtype(dtype)
    rng = _as_rng(seed)
    try:
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError as exc:
        raise InputError(
            "load_digits() needs scikit-learn, which ships the 8x8 digits; install it with "
            "`pip install odeflow[examples]` (or `pip install scikit-learn`)") from exc
    bunch = _sk_load_digits()
    images = np.asarray(bunch.images, dtype=np.float64)
    labels = np.asarray(bunch.target, dtype=np.int64)
    n = labels.size
    n_test = int(round(test_fraction * n))
    if not 1 <= n_test <= n - 1:
        raise InputError(f"`test_fraction` = {test_fraction!r} leaves an empty split of {n} images")
    train, test = stratified_split(labels, n_test, rng)
    x_train, x_test, mean, std = standardize_images(
        images[train], images[test], 16.0, standardize=standardize, dtype=dtype)
    return ImageData(x_train, labels[train], x_test, labels[test], 16.0, mean, std,
                     "sklearn digits 8x8", train, test)
