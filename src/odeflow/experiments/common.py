"""Plumbing shared by the experiments: checkpoints, progress bars, figures, stopping rules."""
from __future__ import annotations

import contextlib
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from odeflow.errors import InputError, TrainingError

__all__ = ["output_dir", "atomic_savez", "load_npz", "progress", "check_finite", "save_figure",
           "matplotlib_pyplot", "median_seconds", "interleaved_medians", "one_blas_thread"]


def output_dir(path) -> Path:
    """Create (if needed) and return the output folder ``path``."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    return out


def atomic_savez(path, **arrays) -> Path:
    """Write ``arrays`` to the ``.npz`` file ``path`` atomically.

    The data go to a temporary file in the same folder, which then replaces
    ``path`` (``os.replace`` is atomic on POSIX and Windows): an interrupted
    run never leaves a half-written checkpoint behind.
    """
    for name, value in arrays.items():
        if np.asarray(value).dtype.kind == "O":  # would need pickle, which load_npz refuses
            raise InputError(f"`{name}` has dtype object; checkpoints hold numeric arrays only")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        umask = os.umask(0)  # mkstemp makes the file private (0600): give it the usual mode
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_npz(path) -> dict:
    """Load every array of an ``.npz`` file into a dict."""
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def progress(iterable, **kwargs):
    """``tqdm(iterable, **kwargs)`` when tqdm is installed, else the iterable itself."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return iterable
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("leave", False)
    kwargs.setdefault("disable", None)  # no bar when output is not a terminal (logs stay readable)
    return tqdm(iterable, **kwargs)


def check_finite(value, what, step):
    """Raise :class:`~odeflow.errors.TrainingError` if ``value`` is not finite."""
    value = float(value)
    if not math.isfinite(value):
        raise TrainingError(f"{what} became {value} at step {step}; stopping (the last checkpoint "
                            f"is left as it was). Try a smaller learning rate or tighter tolerances.")
    return value


def save_figure(fig, path) -> Path:
    """Save a matplotlib figure as PNG and close it."""
    import matplotlib.pyplot as plt
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def matplotlib_pyplot():
    """pyplot on the non-interactive Agg backend, or None when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def median_seconds(fn, repeats, warmup=True) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls (after one warm-up call).

    The median, not the mean or minimum, because this machine is shared and noisy;
    compare only numbers measured side by side in one run.
    """
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def interleaved_medians(jobs, repeats, *, batch_seconds=0.0, warm_each_turn=False) -> dict:
    """Median seconds per call of every callable in ``jobs`` (name -> fn), timed in
    turn, round after round.

    Interleaving puts every contender under the same load at the same moments,
    so the ratios stay meaningful on a shared, noisy machine. Each job is called
    once first (warm-up, and Numba's cache load). ``warm_each_turn``: one more
    untimed call at the start of every turn, because the previous job left
    other code and data in the caches. A call shorter than ``batch_seconds`` is
    repeated within its turn and the turn's mean taken (timer resolution).
    """
    counts = {}
    for name, fn in jobs.items():
        start = time.perf_counter()
        fn()
        counts[name] = max(1, int(batch_seconds / max(time.perf_counter() - start, 1e-9)))
    samples = {name: [] for name in jobs}
    for _ in range(repeats):
        for name, fn in jobs.items():
            if warm_each_turn:
                fn()
            start = time.perf_counter()
            for _ in range(counts[name]):
                fn()
            samples[name].append((time.perf_counter() - start) / counts[name])
    return {name: float(np.median(x)) for name, x in samples.items()}


@contextlib.contextmanager
def one_blas_thread():
    """Limit BLAS to one thread inside the block (threadpoolctl, installed with scikit-learn).

    The experiments' matrix products are small (a few hundred rows): on a 2-core
    machine shared with other work, BLAS worker threads cost more in wake-ups
    and contention than they save (measured 25-75x slower under load).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn brings it
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield
