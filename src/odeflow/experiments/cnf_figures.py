"""The figures of the CNF experiment: learned density, flow over time (Chen et al.
2018, Fig. 6), training curves, and the density-matching grid (Fig. 4)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from odeflow.experiments.cnf_targets import target_log_density_np

__all__ = ["figure_ml", "figure_flow", "figure_curves", "figure_matching"]


def _grid(lim, n):
    g = np.linspace(-lim, lim, n)
    xx, yy = np.meshgrid(g, g, indexing="xy")
    return xx, yy, np.stack([xx.ravel(), yy.ravel()], axis=1)


def _density_at(model, points, fraction):
    """``log p_t`` at ``t = fraction * T`` on `points` (exact trace, no gradient)."""
    from odeflow.autodiff.tensor import no_grad
    from odeflow.models.cnf import standard_normal_log_prob
    if fraction == 0.0:
        return standard_normal_log_prob(points)
    with no_grad():
        z_t, delta = model.transform(points, times=[0.0, fraction], reverse=True, trace="exact")
    return standard_normal_log_prob(z_t.data[-1]) - delta.data[-1]


def figure_ml(plt, model, data_name, out, n_grid, lim=4.0):
    from odeflow.data.toy2d import sample_toy2d
    from odeflow.experiments.common import save_figure
    xx, yy, pts = _grid(lim, n_grid)
    logq = _density_at(model, pts, 1.0).reshape(xx.shape)
    data = sample_toy2d(data_name, 20000, 99)
    samples = model.sample(5000, 98)
    fig, axes = plt.subplots(1, 3, figsize=(10.5, 3.6))
    rng = [[-lim, lim], [-lim, lim]]
    axes[0].hist2d(data[:, 0], data[:, 1], bins=n_grid, range=rng, cmap="viridis")
    axes[0].set_title(f"data ({data_name})")
    axes[1].pcolormesh(xx, yy, np.exp(logq), cmap="viridis", shading="auto")
    axes[1].set_title("learned density q(x)")
    axes[2].hist2d(samples[:, 0], samples[:, 1], bins=n_grid, range=rng, cmap="viridis")
    axes[2].set_title("samples of q")
    for ax in axes:
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    return save_figure(fig, Path(out) / "ml_density.png")


def figure_flow(plt, model, out, n_grid, lim=4.0, n_panels=5):
    """The paper's Fig. 6: density and samples from the base (t = 0) to the data (t = T)."""
    from odeflow.experiments.common import save_figure
    xx, yy, pts = _grid(lim, n_grid)
    z0 = np.random.default_rng(97).standard_normal((2000, 2))
    times, z_t, _ = model.trajectory(z0, n_panels)
    fig, axes = plt.subplots(2, n_panels, figsize=(2.3 * n_panels, 4.8))
    for j, s in enumerate(np.linspace(0.0, 1.0, n_panels)):
        logp = _density_at(model, pts, float(s)).reshape(xx.shape)
        axes[0, j].pcolormesh(xx, yy, np.exp(logp), cmap="viridis", shading="auto")
        axes[0, j].set_title(f"t = {times[j]:.2f}")
        axes[1, j].scatter(z_t[j, :, 0], z_t[j, :, 1], s=1, c=z0[:, 0], cmap="coolwarm")
        axes[1, j].set_xlim(-lim, lim)
        axes[1, j].set_ylim(-lim, lim)
        for ax in axes[:, j]:
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("density")
    axes[1, 0].set_ylabel("samples")
    fig.suptitle("base N(0, I) at t = 0 to data at t = T (colour: first base coordinate)")
    return save_figure(fig, Path(out) / "flow_over_time.png")


def figure_curves(plt, history, entropy, out):
    from odeflow.experiments.common import save_figure
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4))
    it = np.arange(1, len(history["loss"]) + 1)
    ax1.plot(it, history["loss"], lw=0.8, label="training NLL (Hutchinson)")
    ax1.errorbar(history["eval_iter"], history["test_nll"], yerr=history["test_nll_se"], fmt="o-",
                 ms=3, label="test NLL (exact)")
    if entropy is not None:
        ax1.axhline(entropy, color="k", ls="--", lw=0.8, label="entropy H(p) (Monte Carlo)")
    ax1.set_xlabel("iteration")
    ax1.set_ylabel("nats")
    ax1.legend(fontsize=7)
    ax2.plot(it, history["nfe_forward"], lw=0.8, label="forward")
    ax2.plot(it, history["nfe_backward"], lw=0.8, label="backward (adjoint)")
    ax2.set_xlabel("iteration")
    ax2.set_ylabel("NFE")
    ax2.legend(fontsize=7)
    return save_figure(fig, Path(out) / "ml_training.png")


def figure_matching(plt, results, out, n_grid=80, lim=4.0):
    from odeflow.experiments.common import save_figure
    targets = list(dict.fromkeys(r["target"] for r in results))
    cols = [(r["kind"], r["k"]) for r in results if r["target"] == targets[0]]
    fig, axes = plt.subplots(len(targets), len(cols) + 1, figsize=(2.2 * (len(cols) + 1), 2.3 * len(targets)),
                             squeeze=False)
    xx, yy, pts = _grid(lim, n_grid)
    for i, target in enumerate(targets):
        logp = target_log_density_np(target, pts).reshape(xx.shape)
        axes[i, 0].pcolormesh(xx, yy, np.exp(logp), cmap="viridis", shading="auto")
        axes[i, 0].set_title(f"target {target}", fontsize=9)
        for j, (kind, k) in enumerate(cols, start=1):
            r = next(r for r in results if r["target"] == target and r["kind"] == kind and r["k"] == k)
            x = r["model"].sample(5000, 96)
            axes[i, j].hist2d(x[:, 0], x[:, 1], bins=n_grid, range=[[-lim, lim], [-lim, lim]], cmap="viridis")
            name = f"NF K={k}" if kind == "nf" else f"CNF M={k}"
            axes[i, j].set_title(f"{name}\nKL {r['kl']:.2f}", fontsize=9)
        for ax in axes[i]:
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
    return save_figure(fig, Path(out) / "density_matching.png")
