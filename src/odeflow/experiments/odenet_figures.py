"""The figures of the ODE-Net experiment: accuracy per epoch and the NFE of training.

``nfe.png`` (cf. Chen et al. 2018, Fig. 3c-d): left, the mean NFE per training
step of each epoch, forward and backward, for ODE-Net and RK-Net (the same
solver forward, so their forward curves can coincide: hollow large markers
under small filled ones keep both visible); right, every training step's
backward NFE against its forward NFE, with the least-squares line through the
origin ``backward = r * forward`` of the measured steps (the paper's steps lie
near ``r = 1/2``; the ratio here is printed in the legend).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from odeflow.experiments.odenet_fit import NAMES

__all__ = ["figures", "FIGURES"]

FIGURES = ("accuracy.png", "nfe.png")
_STYLE = {"odenet": dict(marker="o", ms=8, mfc="none", lw=2.0, zorder=2),
          "rknet": dict(marker=".", ms=5, lw=1.0, zorder=3),
          "resnet": dict(marker="s", ms=4, lw=1.0, zorder=2)}


def _accuracy(plt, histories, title):
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for kind, h in histories.items():
        epochs = np.arange(1, len(h["test_acc"]) + 1)
        line, = ax.plot(epochs, 100 * np.asarray(h["test_acc"]), marker="o", ms=3,
                        label=f"{NAMES.get(kind, kind)} test")
        ax.plot(epochs, 100 * np.asarray(h["train_acc"]), ls="--", color=line.get_color(), lw=1,
                label=f"{NAMES.get(kind, kind)} train")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{title}: accuracy per epoch")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return fig


def _nfe(plt, ode):
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    forward_all, backward_all = [], []
    for kind, h in ode.items():
        epochs = np.arange(1, len(h["nfe_forward"]) + 1)
        name = NAMES.get(kind, kind)
        style = _STYLE.get(kind, {})
        line, = ax1.plot(epochs, h["nfe_forward"], label=f"{name} forward", **style)
        if any(h["nfe_backward"]):
            ax1.plot(epochs, h["nfe_backward"], ls="--", color=line.get_color(),
                     label=f"{name} backward (adjoint)", **{k: v for k, v in style.items() if k != "lw"})
        steps = np.asarray(h.get("steps") or [(0, 0)], dtype=float).reshape(-1, 2)
        steps = steps[steps[:, 1] > 0]
        if steps.size:  # NFE are integers: many steps share a point, so the area shows how many
            pairs, counts = np.unique(steps, axis=0, return_counts=True)
            ax2.scatter(pairs[:, 0], pairs[:, 1], s=20 + 300 * counts / counts.max(), alpha=0.5,
                        label=f"{name}: {len(steps)} steps (area ~ count)")
            for (f, b), n in zip(pairs, counts):
                ax2.annotate(str(n), (f, b), textcoords="offset points", xytext=(6, 4), fontsize=7)
            forward_all.append(steps[:, 0])
            backward_all.append(steps[:, 1])
    ax1.set_xlabel("epoch")
    ax1.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax1.set_ylabel("NFE per training step (mean)")
    ax1.set_title("NFE per epoch (cf. Fig. 3d)")
    ax1.legend(fontsize=7)
    ax1.grid(alpha=0.3)
    if forward_all:
        f, b = np.concatenate(forward_all), np.concatenate(backward_all)
        ratio = float(f @ b / (f @ f))
        xs = np.array([0.95 * f.min(), 1.05 * f.max()])
        ax2.plot(xs, ratio * xs, "k:", lw=1, label=f"least squares: backward = {ratio:.2f} x forward")
    ax2.set_xlabel("forward NFE")
    ax2.set_ylabel("backward NFE")
    ax2.set_title("each training step (cf. Fig. 3c)")
    ax2.legend(fontsize=7)
    ax2.grid(alpha=0.3)
    return fig


def figures(out_dir, histories: dict, title: str, *, progress=True) -> list:
    """Draw ``accuracy.png`` and (if any model has an ODE block) ``nfe.png`` in `out_dir`.

    Returns the paths written ([] without matplotlib).
    """
    from odeflow.experiments.common import matplotlib_pyplot, save_figure
    from odeflow.experiments.common import progress as bar
    plt = matplotlib_pyplot()
    if plt is None:
        return []
    ode = {k: h for k, h in histories.items() if any(h["nfe_forward"])}
    jobs = [("accuracy.png", lambda: _accuracy(plt, histories, title))]
    if ode:
        jobs.append(("nfe.png", lambda: _nfe(plt, ode)))
    return [save_figure(draw(), Path(out_dir) / name)
            for name, draw in bar(jobs, desc="figures", disable=None if progress else True)]
