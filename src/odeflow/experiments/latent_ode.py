"""Latent ODE on irregularly-sampled spirals (Chen et al. 2018, §5, Table 2, Fig. 8) and hare-lynx.

Three parts:

1. **Table 2.** For ``n_obs`` in 30 / 50 / 100 irregular observations per
   spiral, a latent ODE and the RNN baseline (recurrent dynamics driven by the
   time gaps, :mod:`odeflow.models.rnn_baseline`) are trained on 800 spirals
   and scored on the 200 held-out ones by the *predictive RMSE*:

       RMSE = sqrt( mean over test spirals s, all 100 window times t_k and both
                    coordinates c of (xhat_s(t_k)_c - x_s(t_k)_c)^2 )

   where ``x_s`` is the **noise-free** spiral and ``xhat_s`` the model's
   prediction from the ``n_obs`` noisy observations of ``s`` alone (latent
   ODE: decoded from the posterior mean of ``z0``). The 100 times include the
   ``100 - n_obs`` unobserved ones (interpolation). Data: the public protocol
   of :func:`odeflow.data.spirals.make_spirals` with noise std 0.3.
2. **Fig. 8.** Observations, reconstruction and extrapolation (past and
   future) of test spirals; the extrapolation RMSE over the 50 grid points
   after the window, for the test spirals whose true curve extends that far.
3. **Hare-lynx.** A latent ODE fitted to the log pelt counts of 1900-1914
   (trained on random stretches of those years), then extrapolated to
   1915-1920; RMSE in thousands of pelts against the record, next to two
   naive forecasts: the last observed value, and the value one ~10-year cycle
   earlier (1905-1910, which the model has seen).

``odeflow train latent-ode`` runs the full version (with a progress bar,
atomic checkpoints and ``--resume``); ``odeflow demo`` a short one.

BLAS runs on one thread here (threadpoolctl, installed with scikit-learn):
the matrices are tiny (a batch of 100 x 25 units) and on the small shared
machine a second OpenBLAS thread made a training step of batch 400 four to
five times slower in our measurements.

References
----------
.. [1] R. T. Q. Chen, Y. Rubanova, J. Bettencourt, D. Duvenaud, "Neural
   Ordinary Differential Equations", NeurIPS 2018, §5, Table 2, Fig. 8.
.. [2] D. A. MacLulich (1937), via :func:`odeflow.data.series.load_hare_lynx`.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from odeflow.experiments.common import one_blas_thread

__all__ = ["demo", "add_arguments", "train", "SpiralConfig", "HareLynxConfig", "PAPER_TABLE2",
           "spiral_rmse", "fit_spirals", "fit_hare_lynx"]

PAPER_TABLE2 = {30: 0.1642, 50: 0.1502, 100: 0.1346}  # latent ODE, Chen et al. 2018, Table 2


# -- configuration -----------------------------------------------------------------------------

@dataclass
class SpiralConfig:
    """Settings of one spirals run (data, model, optimisation)."""
    n_obs: int = 100
    noise_std: float = 0.3
    n_spirals: int = 1000
    model: str = "latent_ode"            # or "rnn"
    encoder: str = "gru"                 # latent ODE recognition network: rnn, gru, odernn
    obs_scale: float = 5.0               # data units per network unit (spirals span about +-15)
    time_scale: float = 0.1              # time units per encoder unit (gaps enter divided by it)
    iterations: int = 2500
    batch_size: int = 100
    lr: float = 0.02
    lr_final: float = 0.001              # cosine decay from lr to lr_final over the iterations
    rtol: float = 1e-3
    atol: float = 1e-4
    gradient: str = "backprop"
    seed: int = 0
    data_seed: int = 0


@dataclass
class HareLynxConfig:
    """Settings of the hare-lynx fit."""
    train_until: float = 1914.0          # fit on years <= this; extrapolate the rest
    years_per_unit: float = 5.0          # model time unit, in years
    noise_std: float = 0.15              # in standardised log counts
    min_window: int = 6                  # shortest training stretch, in yearly points
    iterations: int = 600
    batch_size: int = 16
    lr: float = 0.01
    lr_final: float = 0.001
    latent_dim: int = 2                  # a planar flow: enough for a cycle, and stable (docs)
    log_counts: bool = True              # model log(count) (else the counts), standardised
    cycle_years: float = 10.0            # period of the "one cycle ago" baseline forecast
    seed: int = 0


# -- training plumbing (checkpoints, schedule, progress) -----------------------------------------

def _lr_at(it, total, lr, lr_final):
    """Cosine decay from ``lr`` (iteration 0) to ``lr_final`` (iteration ``total``)."""
    return lr_final + (lr - lr_final) * 0.5 * (1.0 + math.cos(math.pi * min(it, total) / total))


def _checkpoint_arrays(model, optimizer, iteration, history, config, seconds):
    arrays = {f"param/{k}": v for k, v in model.state_dict().items()}
    for i, state in enumerate(optimizer.state):
        for key, value in state.items():
            arrays[f"adam/{i}/{key}"] = np.asarray(value)
    arrays["iteration"] = np.asarray(iteration)
    arrays["history"] = np.asarray(history, dtype=np.float64).reshape(-1, 3)
    arrays["config"] = np.asarray(json.dumps(asdict(config)))
    arrays["seconds"] = np.asarray(seconds)  # training time so far, over all sessions
    return arrays


def _restore(path, model, optimizer, config):
    """Load a checkpoint written by :func:`_train`; returns (iteration, history, seconds)."""
    from odeflow.errors import InputError
    from odeflow.experiments.common import load_npz
    data = load_npz(path)
    saved = json.loads(str(data["config"]))
    if saved != json.loads(json.dumps(asdict(config))):
        diff = {k: (saved.get(k), v) for k, v in asdict(config).items() if saved.get(k) != v}
        raise InputError(f"--resume: checkpoint {path} was written with other settings "
                         f"(saved, now): {diff}; use another --out or drop --resume")
    model.load_state_dict({k[len("param/"):]: v for k, v in data.items() if k.startswith("param/")})
    for i, state in enumerate(optimizer.state):
        for key in ("m", "v", "step"):
            name = f"adam/{i}/{key}"
            if name in data:
                state[key] = data[name].copy() if key != "step" else int(data[name])
    return int(data["iteration"]), [tuple(row) for row in data["history"]], float(data.get("seconds", 0.0))


def _train(model, loss_fn, config, *, checkpoint=None, resume=False, desc="train",
           checkpoint_every=100, quiet=False, time_limit=None, position=None):
    """Adam with a cosine learning-rate decay; ``loss_fn(iteration) -> (loss, report)``.

    ``report`` is a float logged with the loss. Each iteration's randomness
    comes from ``loss_fn`` (seeded by the iteration number), so a resumed run
    continues exactly as an uninterrupted one would. With ``time_limit``
    (seconds) the run checkpoints and stops once that much training time has
    passed (resume it later). Returns the history ``[(iteration, loss,
    report), ...]``, the training seconds (summed over resumed sessions) and
    whether all ``config.iterations`` are done.
    """
    from odeflow.experiments.common import atomic_savez, check_finite, progress
    from odeflow.optim import Adam

    optimizer = Adam(model.parameters(), lr=config.lr)
    start, history, seconds = 0, [], 0.0
    if resume and checkpoint is not None and Path(checkpoint).exists():
        start, history, seconds = _restore(checkpoint, model, optimizer, config)
    session = 0.0  # training seconds of this call (for time_limit)
    bar = progress(range(start, config.iterations), desc=desc, initial=start, total=config.iterations,
                   disable=quiet or None, leave=False, position=position)
    for it in bar:
        t_start = time.perf_counter()
        optimizer.lr = _lr_at(it, config.iterations, config.lr, config.lr_final)
        loss, report = loss_fn(it)
        value = check_finite(loss.item(), "the training loss", it)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step_seconds = time.perf_counter() - t_start
        seconds, session = seconds + step_seconds, session + step_seconds
        history.append((it, value, float(report)))
        if hasattr(bar, "set_postfix") and it % 10 == 0:
            bar.set_postfix(loss=f"{value:.1f}", lr=f"{optimizer.lr:.4f}")
        done = it + 1
        stop = time_limit is not None and session >= time_limit
        if checkpoint is not None and (done % checkpoint_every == 0 or done == config.iterations or stop):
            atomic_savez(checkpoint, **_checkpoint_arrays(model, optimizer, done, history, config,
                                                          seconds))
        if stop:
            break
    complete = bool(history) and history[-1][0] + 1 >= config.iterations
    return history, seconds, complete


# -- spirals -------------------------------------------------------------------------------------

def spiral_data(config: SpiralConfig):
    """The spirals of a config (:func:`odeflow.data.spirals.make_spirals`, 80/20 split)."""
    from odeflow.data.spirals import make_spirals
    return make_spirals(n_spirals=config.n_spirals, n_obs=config.n_obs, noise_std=config.noise_std,
                        seed=config.data_seed)


def build_model(config: SpiralConfig):
    """The latent ODE (paper sizes: latent 4, dynamics 4-20-20-4 ELU, decoder 4-20-2,
    encoder 25 units) or the RNN baseline of a config."""
    if config.model == "rnn":
        from odeflow.models.rnn_baseline import RNNBaseline
        return RNNBaseline(obs_dim=2, hidden=25, cell="gru", noise_std=config.noise_std,
                           obs_scale=config.obs_scale, time_scale=config.time_scale, rng=config.seed)
    from odeflow.models.latent_ode import LatentODE
    return LatentODE(obs_dim=2, latent_dim=4, hidden=20, encoder_hidden=25, decoder_hidden=20,
                     encoder=config.encoder, noise_std=config.noise_std, obs_scale=config.obs_scale,
                     time_scale=config.time_scale, gradient=config.gradient, rtol=config.rtol,
                     atol=config.atol, rng=config.seed)


def spiral_rmse(model, data, t=None, target=None):
    """Predictive RMSE of a model on spirals (module docstring for the definition).

    Parameters
    ----------
    model : LatentODE or RNNBaseline
    data : SpiralData
        Usually ``.test``; each spiral is predicted from its own observations.
    t : ndarray, shape (M,), optional
        Query times; default ``data.t`` (the 100 window times).
    target : ndarray, shape (n, M, 2), optional
        True values at ``t``; default ``data.clean``.

    Returns
    -------
    float
        ``sqrt(mean((prediction - target)^2))`` over spirals, times and coordinates.
    """
    t = data.t if t is None else t
    target = data.clean if target is None else target
    prediction = model.predict(data.t_obs, data.x_obs, t)
    return float(np.sqrt(np.mean((prediction - target) ** 2)))


def extrapolation_target(data, n_ahead=50):
    """Times and true values of the ``n_ahead`` grid points after each window.

    Returns ``(t, target, keep)``: ``t`` shape (n_ahead,), ``target`` shape
    (k, n_ahead, 2) for the ``k`` spirals whose true curve extends that far
    (``keep``, a bool mask over ``data``).
    """
    n_points, n_total = data.t.size, data.t_full.size
    keep = data.start_index + n_points + n_ahead <= n_total
    t = data.t_full[n_points: n_points + n_ahead] - data.t_full[0]
    idx = data.start_index[keep, None] + n_points + np.arange(n_ahead)
    target = data.paths[data.clockwise[keep].astype(np.intp)[:, None], idx]
    return t, target, keep


def extrapolation_rmse(model, data, n_ahead=50):
    """RMSE over the ``n_ahead`` grid points after the window (true curve, noise-free).

    The models run over the window's grid and on past its end (an RNN must
    step through the same gaps as in training, not jump to the future in one
    gap); only the points after the window are scored, for the spirals whose
    true curve extends that far. Returns ``(rmse, number of spirals)``.
    """
    t_ahead, target, keep = extrapolation_target(data, n_ahead)
    sub = data.subset(keep)
    prediction = model.predict(sub.t_obs, sub.x_obs, np.concatenate([sub.t, t_ahead]))
    return float(np.sqrt(np.mean((prediction[:, sub.t.size:] - target) ** 2))), int(keep.sum())


def fit_spirals(config: SpiralConfig, *, checkpoint=None, resume=False, quiet=False, data=None,
                time_limit=None, position=None):
    """Train one model on the spirals of ``config`` and score it; returns ``(model, data, result)``.

    ``checkpoint``: ``.npz`` path written atomically every 100 iterations and at
    the end; ``resume`` continues from it (same settings required);
    ``time_limit``: seconds of training after which this call checkpoints and
    stops (``result["complete"]`` tells); ``data``: the spirals, if already made;
    ``position``: the progress bar's line (parallel runs).
    """
    data = spiral_data(config) if data is None else data
    train_set = data.train
    model = build_model(config)
    n_train = len(train_set)

    def loss_fn(it):
        rng = np.random.default_rng([config.seed, it])
        idx = rng.choice(n_train, size=min(config.batch_size, n_train), replace=False)
        times, values = train_set.t_obs[idx], train_set.x_obs[idx]
        if config.model == "rnn":
            loss, log_lik = model.loss(times, values)
            return loss, -np.mean(log_lik) / config.n_obs
        result = model.elbo(times, values, rng=rng)
        return result.loss, -result.elbo / config.n_obs

    desc = f"{config.model} n_obs={config.n_obs}"
    history, seconds, complete = _train(model, loss_fn, config, checkpoint=checkpoint,
                                        resume=resume, desc=desc, quiet=quiet, time_limit=time_limit,
                                        position=position)
    test = data.test
    result = {"model": config.model, "n_obs": config.n_obs, "noise_std": config.noise_std,
              "iterations": len(history), "complete": complete, "train_seconds": seconds,
              "test_rmse": spiral_rmse(model, test),
              "final_loss_per_obs": float(np.mean([h[2] for h in history[-20:]])) if history else None}
    result["extrapolation_rmse_50"], result["extrapolation_n_spirals"] = extrapolation_rmse(model, test)
    return model, data, result


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


# -- hare-lynx -----------------------------------------------------------------------------------

def fit_hare_lynx(config: HareLynxConfig, *, checkpoint=None, resume=False, quiet=False):
    """Fit a latent ODE to the hare-lynx years up to ``train_until`` and extrapolate the rest.

    The model sees ``log(count)`` standardised by the training years' mean and
    std, and time in units of ``years_per_unit`` years. Each training row is a
    random stretch of at least ``min_window`` consecutive training years,
    re-timed to start at ``t0 = 0`` (rows padded to one length with a mask):
    the autonomous dynamics must then carry every phase of the cycle, not one
    path from 1900. The extrapolation encodes all training years (``t0`` =
    the first year) and decodes the posterior mean of ``z0``.

    Returns
    -------
    model, series, result : LatentODE, Series, dict
        ``result`` has the per-species RMSE (thousands of pelts) of the
        extrapolated years, of the naive last-value forecast, and the
        predictions.
    """
    from odeflow.data.series import load_hare_lynx
    from odeflow.models.latent_ode import LatentODE

    series = load_hare_lynx()
    train_mask = series.t <= config.train_until
    if train_mask.sum() < 3 or train_mask.all():
        from odeflow.errors import InputError
        raise InputError(f"`train_until` must leave at least 3 training years and 1 test year; got "
                         f"{config.train_until}")
    forward, inverse = (np.log, np.exp) if config.log_counts else (np.asarray, np.asarray)
    logs = forward(series.values)
    mu, sd = logs[train_mask].mean(axis=0), logs[train_mask].std(axis=0)
    x = (logs - mu) / sd
    t = (series.t - series.t[0]) / config.years_per_unit
    t_train, x_train = t[train_mask], x[train_mask]
    n = t_train.size
    model = LatentODE(obs_dim=2, latent_dim=config.latent_dim, hidden=20, encoder_hidden=25,
                      decoder_hidden=20, encoder="gru", noise_std=config.noise_std,
                      rng=config.seed)
    w_min = min(n, config.min_window)

    def loss_fn(it):
        rng = np.random.default_rng([config.seed, it])
        # each row: a random stretch of >= w_min consecutive years, re-timed to start at 0
        length = rng.integers(w_min, n + 1, size=config.batch_size)
        start = rng.integers(0, n - length + 1)
        idx = np.minimum(start[:, None] + np.arange(n), n - 1)
        mask = np.arange(n) < length[:, None]  # padding after each stretch
        times = np.where(mask, t_train[idx] - t_train[start][:, None], 0.0)
        result = model.elbo(times, x_train[idx], mask=mask, t0=0.0, rng=rng)
        return result.loss, -np.sum(result.log_likelihood - result.kl) / mask.sum()

    _, seconds, _ = _train(model, loss_fn, config, checkpoint=checkpoint, resume=resume,
                                 desc="hare-lynx", quiet=quiet)
    t_dense = np.linspace(0.0, t[-1], 200)
    pred_std = model.predict(t_train[None], x_train[None], t, t0=0.0)[0]
    dense_std = model.predict(t_train[None], x_train[None], t_dense, t0=0.0)[0]
    pred = inverse(pred_std * sd + mu)
    test_mask = ~train_mask
    err = pred[test_mask] - series.values[test_mask]
    naive = series.values[train_mask][-1] - series.values[test_mask]
    # the record's ~10-year cycle: the same phase one cycle earlier (needs the years 10 before)
    lagged = np.interp(series.t[test_mask] - config.cycle_years, series.t, series.values[:, 0]), \
        np.interp(series.t[test_mask] - config.cycle_years, series.t, series.values[:, 1])
    cycle = np.stack(lagged, axis=1) - series.values[test_mask]
    result = {
        "train_years": [float(series.t[train_mask][0]), float(series.t[train_mask][-1])],
        "test_years": [float(series.t[test_mask][0]), float(series.t[test_mask][-1])],
        "train_seconds": seconds,
        "extrapolation_rmse": {name: float(np.sqrt(np.mean(err[:, j] ** 2)))
                               for j, name in enumerate(series.names[1:])},
        "naive_last_value_rmse": {name: float(np.sqrt(np.mean(naive[:, j] ** 2)))
                                  for j, name in enumerate(series.names[1:])},
        "naive_one_cycle_ago_rmse": {name: float(np.sqrt(np.mean(cycle[:, j] ** 2)))
                                     for j, name in enumerate(series.names[1:])},
        "fit_rmse": {name: float(np.sqrt(np.mean((pred[train_mask, j] - series.values[train_mask, j]) ** 2)))
                     for j, name in enumerate(series.names[1:])},
        "prediction": pred.tolist(),
    }
    dense = {"year": series.t[0] + t_dense * config.years_per_unit, "values": inverse(dense_std * sd + mu)}
    return model, series, result, dense


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


# -- demo and train ------------------------------------------------------------------------------

def _print_table(rows):
    print(f"   {'n_obs':>6s}{'latent ODE':>12s}{'RNN':>9s}{'paper (latent ODE)':>20s}"
          f"{'extrapolation (ODE/RNN)':>26s}{'train s (ODE/RNN)':>20s}")
    for n_obs in sorted({r["n_obs"] for r in rows}):
        ode = next((r for r in rows if r["n_obs"] == n_obs and r["model"] == "latent_ode"), None)
        rnn = next((r for r in rows if r["n_obs"] == n_obs and r["model"] == "rnn"), None)

        def show(r, key, fmt):
            return format(r[key], fmt) if r else "-"
        paper = PAPER_TABLE2.get(n_obs)
        print(f"   {n_obs:>6d}{show(ode, 'test_rmse', '.4f'):>12s}{show(rnn, 'test_rmse', '.4f'):>9s}"
              f"{format(paper, '.4f') if paper else '-':>20s}"
              f"{show(ode, 'extrapolation_rmse_50', '.3f') + ' / ' + show(rnn, 'extrapolation_rmse_50', '.3f'):>26s}"
              f"{show(ode, 'train_seconds', '.0f') + ' / ' + show(rnn, 'train_seconds', '.0f'):>20s}")


def _print_hare_lynx(result):
    years = result["test_years"]
    print(f"   held-out years {years[0]:.0f}-{years[1]:.0f}: RMSE (thousands of pelts)")
    for name in result["extrapolation_rmse"]:
        print(f"     {name:6s} latent ODE {result['extrapolation_rmse'][name]:6.2f}   "
              f"last value {result['naive_last_value_rmse'][name]:6.2f}   "
              f"value 10 years before {result['naive_one_cycle_ago_rmse'][name]:6.2f}   "
              f"(fit years: {result['fit_rmse'][name]:.2f})")
    print("     (on a ~10-year cycle, 'value 10 years before' is a strong baseline; with 15 fitted years the"
          "\n      latent ODE beats 'last value' but not it: docs/latent_ode.md §7)")


def demo(out_dir, quick) -> dict:
    """Short run: the latent ODE on spirals with 30 observations (Fig. 8) and hare-lynx."""
    with one_blas_thread():
        return _demo(out_dir, quick)


def _demo(out_dir, quick) -> dict:
    from odeflow.experiments.common import output_dir
    out_dir = output_dir(out_dir)
    print("== Latent ODE on irregularly-sampled spirals (Chen et al. 2018, §5)\n")
    n_obs = 30
    if quick:
        ode_cfg = SpiralConfig(n_obs=n_obs, n_spirals=120, iterations=3, batch_size=16)
        hl_cfg = HareLynxConfig(iterations=3, batch_size=4)
    else:  # about 20 s + 10 s of training on an idle 2-core machine (docs/latent_ode.md)
        ode_cfg = SpiralConfig(n_obs=n_obs, iterations=500)
        hl_cfg = HareLynxConfig(iterations=300)
    print(f"1. {ode_cfg.n_spirals} spirals, {n_obs} irregular observations each, noise std "
          f"{ode_cfg.noise_std}; a short run of {ode_cfg.iterations} iterations (the full Table 2, "
          f"with the RNN baseline: `odeflow train latent-ode`, about 10 minutes)")
    model, data, ode = fit_spirals(ode_cfg, quiet=quick)
    print(f"   predictive RMSE on the {len(data.test)} held-out spirals (all 100 window times, vs the "
          f"noise-free curve): {ode['test_rmse']:.4f}   (paper, trained fully: "
          f"{PAPER_TABLE2[n_obs]:.4f}); {ode['train_seconds']:.0f} s of training")
    print(f"   extrapolation RMSE, 50 points past the window ({ode['extrapolation_n_spirals']} spirals): "
          f"{ode['extrapolation_rmse_50']:.3f}\n")
    figures = [plot_spirals(model, data, out_dir / "spirals.png",
                            title=f"Latent ODE, {n_obs} observations, {ode_cfg.iterations} iterations")]
    print("2. hare-lynx: fit 1900-1914, extrapolate 1915-1920")
    _, series, hl, dense = fit_hare_lynx(hl_cfg, quiet=quick)
    _print_hare_lynx(hl)
    figures.append(plot_hare_lynx(series, dense, hl_cfg, out_dir / "hare_lynx.png"))
    hl.pop("prediction")
    return {"spirals": ode, "hare_lynx": hl, "figures": [str(f) for f in figures if f is not None]}


def add_arguments(parser):
    """Options of ``odeflow train latent-ode``."""
    d = SpiralConfig()
    parser.add_argument("--n-obs", type=int, nargs="+", default=[30, 50, 100],
                        help="observations per spiral, one run each (default: %(default)s)")
    parser.add_argument("--models", nargs="+", choices=("latent_ode", "rnn"), default=["latent_ode", "rnn"])
    parser.add_argument("--iterations", type=int, default=d.iterations, help="latent ODE (default: %(default)s)")
    parser.add_argument("--rnn-iterations", type=int, default=2000, help="RNN baseline (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--noise-std", type=float, default=d.noise_std)
    parser.add_argument("--encoder", choices=("rnn", "gru", "odernn"), default=d.encoder)
    parser.add_argument("--time-scale", type=float, default=d.time_scale,
                        help="time units per encoder unit (default: %(default)s)")
    parser.add_argument("--gradient", choices=("backprop", "adjoint"), default=d.gradient)
    parser.add_argument("--rtol", type=float, default=d.rtol)
    parser.add_argument("--atol", type=float, default=d.atol)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--hare-lynx-iterations", type=int, default=HareLynxConfig().iterations,
                        help="0 skips the hare-lynx part")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="runs trained in parallel processes (default: %(default)s)")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoints in --out")


def train(args) -> int:
    """``odeflow train latent-ode``: Table 2, Fig. 8 and hare-lynx; writes results.json."""
    with one_blas_thread():
        return _train_all(args)


_SLOT = {"position": None}  # this worker's progress-bar line (set by _init_worker)


def _init_worker(counter):
    with counter.get_lock():
        _SLOT["position"] = counter.value
        counter.value += 1


def _fit_job(config, checkpoint, resume):
    """One Table-2 run in a worker process: ``(config, result, state_dict)``."""
    with one_blas_thread():
        model, _, result = fit_spirals(config, checkpoint=checkpoint, resume=resume,
                                       position=_SLOT["position"])
    return config, result, model.state_dict()


def _report(result):
    print(f"{result['model']:10s} n_obs={result['n_obs']:3d}  test RMSE {result['test_rmse']:.4f}  "
          f"({result['iterations']} iterations, {result['train_seconds']:.0f} s)", flush=True)


def _train_all(args) -> int:
    import concurrent.futures
    import multiprocessing

    from odeflow.experiments.common import output_dir
    out = output_dir(args.out)
    start = time.perf_counter()
    configs = [SpiralConfig(n_obs=n_obs, model=name, noise_std=args.noise_std, encoder=args.encoder,
                            iterations=args.iterations if name == "latent_ode" else args.rnn_iterations,
                            batch_size=args.batch_size, lr=args.lr, gradient=args.gradient,
                            time_scale=args.time_scale, rtol=args.rtol, atol=args.atol, seed=args.seed)
               for n_obs in args.n_obs for name in args.models]
    # longest first (ODE runs, many observations), so that parallel workers finish together
    order = sorted(configs, key=lambda c: (c.model != "latent_ode", -c.n_obs))
    jobs = [(c, out / f"{c.model}_nobs{c.n_obs}.npz", args.resume) for c in order]
    done = []
    if args.jobs > 1 and len(jobs) > 1:
        context = multiprocessing.get_context("spawn")
        counter = context.Value("i", 0)
        with concurrent.futures.ProcessPoolExecutor(min(args.jobs, len(jobs)), mp_context=context,
                                                    initializer=_init_worker,
                                                    initargs=(counter,)) as pool:
            futures = [pool.submit(_fit_job, *job) for job in jobs]
            for future in concurrent.futures.as_completed(futures):
                done.append(future.result())
                _report(done[-1][1])
    else:
        for job in jobs:
            done.append(_fit_job(*job))
            _report(done[-1][1])
    rows = []
    for config in configs:  # the table in the order asked for; figures from the saved weights
        _, result, state = next(d for d in done if d[0] == config)
        rows.append(result)
        if config.model == "latent_ode":
            model = build_model(config).load_state_dict(state)
            plot_spirals(model, spiral_data(config), out / f"spirals_nobs{config.n_obs}.png",
                         title=f"Latent ODE, {config.n_obs} observations per spiral")
    summary = {"table2": rows, "paper_table2_latent_ode": PAPER_TABLE2}
    print("\nTable 2: predictive RMSE on the held-out spirals (noise std "
          f"{args.noise_std}; definition in `odeflow.experiments.latent_ode`); extrapolation: RMSE "
          "over the 50 points after the window")
    _print_table(rows)
    if args.hare_lynx_iterations > 0:
        cfg = HareLynxConfig(iterations=args.hare_lynx_iterations, seed=args.seed)
        _, series, hl, dense = fit_hare_lynx(cfg, checkpoint=out / "hare_lynx.npz", resume=args.resume)
        plot_hare_lynx(series, dense, cfg, out / "hare_lynx.png")
        print("\nHare-lynx")
        _print_hare_lynx(hl)
        summary["hare_lynx"] = hl
    summary["total_seconds"] = time.perf_counter() - start
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    print(f"\nresults in {out.resolve()}/results.json ({summary['total_seconds']:.0f} s)")
    return 0
