"""The figures of the latent-ODE experiment: test spirals (Chen et al. 2018, Fig. 8) and hare-lynx."""
from __future__ import annotations

import numpy as np

__all__ = ["plot_spirals", "plot_hare_lynx"]


def plot_spirals(model, data, path, n_show=6, title=""):
    """Fig. 8 style: observations, reconstruction, extrapolation and truth of test spirals."""
    from odeflow.experiments.common import matplotlib_pyplot, save_figure
    plt = matplotlib_pyplot()
    if plt is None:
        return None
    test = data.test
    pick = np.concatenate([np.flatnonzero(test.clockwise)[: n_show // 2],
                           np.flatnonzero(~test.clockwise)[: n_show - n_show // 2]])
    sub = test.subset(pick)
    span = sub.t[-1]
    t_past = np.linspace(-0.5 * span, 0.0, 60)[:-1]
    t_future = np.linspace(span, 1.5 * span, 60)[1:]
    t_all = np.concatenate([t_past, sub.t, t_future])
    pred = model.predict(sub.t_obs, sub.x_obs, t_all)
    n_past = t_past.size
    fig, axes = plt.subplots(2, (n_show + 1) // 2, figsize=(3.2 * ((n_show + 1) // 2), 6.4))
    for ax, s in zip(axes.ravel(), range(len(sub))):
        full = sub.full[s]
        ax.plot(full[:, 0], full[:, 1], color="0.85", lw=1, label="true curve")
        ax.plot(sub.clean[s, :, 0], sub.clean[s, :, 1], color="0.4", lw=1, label="true window")
        ax.plot(sub.x_obs[s, :, 0], sub.x_obs[s, :, 1], ".", color="tab:blue", ms=3, label="observations")
        ax.plot(pred[s, n_past:n_past + sub.t.size, 0], pred[s, n_past:n_past + sub.t.size, 1],
                color="tab:red", lw=1.5, label="reconstruction")
        ax.plot(pred[s, n_past + sub.t.size - 1:, 0], pred[s, n_past + sub.t.size - 1:, 1],
                "--", color="tab:red", lw=1.2, label="extrapolation (future)")
        ax.plot(pred[s, :n_past + 1, 0], pred[s, :n_past + 1, 1], ":", color="tab:purple", lw=1.2,
                label="extrapolation (past)")
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_xticks([])
        ax.set_yticks([])
    axes.ravel()[0].legend(fontsize=6, loc="best")
    fig.suptitle(title or "Latent ODE on held-out spirals")
    return save_figure(fig, path)


def plot_hare_lynx(series, dense, config, path):
    """The record, the fit and the extrapolation of both species."""
    from odeflow.experiments.common import matplotlib_pyplot, save_figure
    plt = matplotlib_pyplot()
    if plt is None:
        return None
    train = series.t <= config.train_until
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for j, (name, color) in enumerate(zip(series.names[1:], ("tab:blue", "tab:orange"))):
        ax.plot(series.t[train], series.values[train, j], "o", color=color, ms=4, label=f"{name} (fit)")
        ax.plot(series.t[~train], series.values[~train, j], "x", color=color, ms=6,
                label=f"{name} (held out)")
        fit = dense["year"] <= config.train_until
        ax.plot(dense["year"][fit], dense["values"][fit, j], "-", color=color, lw=1.2)
        ax.plot(dense["year"][~fit], dense["values"][~fit, j], "--", color=color, lw=1.2)
    ax.axvline(config.train_until + 0.5, color="0.6", lw=0.8)
    ax.xaxis.set_major_locator(plt.MultipleLocator(5))
    ax.xaxis.set_major_formatter(plt.FormatStrFormatter("%d"))
    ax.set_xlabel("year")
    ax.set_ylabel("pelts (thousands)")
    ax.set_title("Hudson's Bay Company hare and lynx: latent ODE fit (solid) and extrapolation (dashed)")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7, ncol=2)
    return save_figure(fig, path)
