"""Plumbing shared by the experiments: checkpoints, progress bars, figures, stopping rules."""
from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from odeflow.errors import TrainingError
from odeflow.experiments.checkpoint import atomic_savez, load_npz  # noqa: F401 (re-exported)

__all__ = ["output_dir", "atomic_savez", "load_npz", "progress", "check_finite", "save_figure",
           "matplotlib_pyplot", "median_seconds", "interleaved_medians", "one_blas_thread"]


def output_dir(path) -> Path:
    """Create (if needed) and return the output folder ``path``."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    return out


def progress(iterable, *, desc="", total=None, initial=0, disable=None, log=None, **kwargs):
    """Progress of a phase: a tqdm bar on a terminal, periodic log lines otherwise.

    Parameters
    ----------
    iterable : iterable
    desc : str
        What the phase is (``"CNF 8gaussians"``, ``"figures"``).
    total, initial : int, optional
        Steps in all and steps already done (a resumed run).
    disable : bool or None
        True: nothing. None (default): a bar when standard error is a
        terminal and tqdm is installed, else one line ``desc: i/total, s``
        every ``ODEFLOW_PROGRESS_SECONDS`` seconds (default 10) via `log`.
    log : callable, optional
        Receives the lines (default: print to standard error).
    **kwargs
        Passed to tqdm.
    """
    if disable is True:
        return _Quiet(iterable)
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable) + initial
    if _terminal():
        try:
            from tqdm.auto import tqdm
        except ImportError:
            pass
        else:
            kwargs.setdefault("dynamic_ncols", True)
            kwargs.setdefault("leave", False)
            return tqdm(iterable, desc=desc, total=total, initial=initial, **kwargs)
    every = float(os.environ.get("ODEFLOW_PROGRESS_SECONDS", "10"))
    return _LogLines(iterable, desc, total, initial, every, log)


def _terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class _Quiet:
    """An iterable with tqdm's ``set_postfix`` doing nothing."""

    def __init__(self, iterable):
        self._iterable = iterable

    def __iter__(self):
        return iter(self._iterable)

    def set_postfix(self, *args, **kwargs):
        pass


class _LogLines(_Quiet):
    """A progress line every `every` seconds (logs and pipes: no bar).

    Lines come after a step when `every` seconds have passed since the last
    line, and from a watcher thread (at most once a second) while one step
    takes longer than that: a slow figure or evaluation is never silent.
    """

    def __init__(self, iterable, desc, total, initial, every, log):
        super().__init__(iterable)
        self.desc, self.total, self.initial, self.every = desc, total, initial, every
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.postfix = ""

    def set_postfix(self, ordered_dict=None, **kwargs):
        items = dict(ordered_dict or {}, **kwargs)
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def __iter__(self):
        import threading
        start = time.perf_counter()
        state = {"done": self.initial, "last": start}
        lock, stop = threading.Lock(), threading.Event()

        def line(now):
            with lock:
                state["last"] = now
                of = f"/{self.total}" if self.total else ""
                extra = f" ({self.postfix})" if self.postfix else ""
                self.log(f"  {self.desc}: {state['done']}{of} after {now - start:.0f} s{extra}")

        def watch():
            while not stop.wait(max(self.every, 1.0)):
                now = time.perf_counter()
                if now - state["last"] >= max(self.every, 1.0):
                    line(now)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            for item in self._iterable:
                yield item
                state["done"] += 1
                now = time.perf_counter()
                if now - state["last"] >= self.every:
                    line(now)
        finally:
            stop.set()


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


def grad_norm(model) -> float:
    """Euclidean norm of all parameter gradients of `model` (0 for none)."""
    return math.sqrt(sum(float(np.vdot(p.grad.data, p.grad.data)) for p in model.parameters()
                         if p.grad is not None))


def cosine_lr(step: int, horizon: int, lr: float, lr_final: float) -> float:
    """Cosine decay from `lr` (step 0) to `lr_final` (step `horizon`), constant after.

    The schedule depends on the step and the fixed `horizon` only, never on how
    long the run is: an extended run learns at the rates of a fresh longer one.
    (Loshchilov & Hutter, "SGDR", ICLR 2017, eq. 5 without restarts.)
    """
    return lr_final + (lr - lr_final) * 0.5 * (1.0 + math.cos(math.pi * min(step, horizon) / horizon))
