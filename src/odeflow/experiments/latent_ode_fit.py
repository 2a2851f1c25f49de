"""Latent ODE experiment, the fitting: configurations, the training loop with its
checkpoints, the spirals fit and its scores, and the hare-lynx fit.

See :mod:`odeflow.experiments.latent_ode` for the experiment and the scores'
definitions (Chen et al. 2018, §5).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["SpiralConfig", "HareLynxConfig", "PAPER_TABLE2", "train_loop", "spiral_data", "build_model",
           "spiral_rmse", "extrapolation_target", "extrapolation_rmse", "fit_spirals", "fit_hare_lynx"]

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
    lr_final: float = 0.001              # cosine decay from lr to lr_final ...
    lr_decay_iterations: int = 2500      # ... over this many iterations (then constant)
    rtol: float = 1e-3
    atol: float = 1e-4
    gradient: str = "backprop"
    grid: str = "union"                  # the latent solve: union of a batch's times, or per sample
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
    lr_decay_iterations: int = 600
    latent_dim: int = 2                  # a planar flow: enough for a cycle, and stable (docs)
    log_counts: bool = True              # model log(count) (else the counts), standardised
    cycle_years: float = 10.0            # period of the "one cycle ago" baseline forecast
    seed: int = 0


# -- the training loop and its checkpoints -------------------------------------------------------

COMMAND = "latent-ode"  # the checkpoints' writer


def _checkpoint(path, model, optimizer, iteration, history, config, seconds):
    from odeflow.experiments import checkpoint as ckpt
    arrays = {f"param/{k}": v for k, v in model.state_dict().items()}
    arrays.update(ckpt.optimizer_arrays(optimizer))
    arrays["history"] = np.asarray(history, dtype=np.float64).reshape(-1, 3)
    arrays["seconds"] = np.asarray(seconds)  # training time so far, over all sessions
    ckpt.save(path, arrays, command=COMMAND, config={"type": type(config).__name__, **asdict(config)},
              step=iteration, where=f"iteration {iteration}")


def _restore(path, model, optimizer, config):
    """Load a checkpoint written by :func:`train_loop`; returns (iteration, history, seconds)."""
    from odeflow.experiments import checkpoint as ckpt
    data, meta = ckpt.load(path, command=COMMAND, required=("history", "seconds"))
    done = meta["step"]
    ckpt.check_config(path, meta["config"], {"type": type(config).__name__, **asdict(config)},
                      run_length=("iterations",), done=done)
    model.load_state_dict({k[len("param/"):]: v for k, v in data.items() if k.startswith("param/")})
    ckpt.load_optimizer_arrays(path, optimizer, data)
    return done, [tuple(row) for row in data["history"].tolist()], float(data["seconds"])


def train_loop(model, loss_fn, config, *, checkpoint=None, resume=False, desc="train",
               checkpoint_every=100, quiet=False, time_limit=None, position=None, log=print):
    """Adam with a cosine learning-rate decay; ``loss_fn(iteration) -> (loss, report)``.

    ``report`` is a float logged with the loss. Each iteration's randomness
    comes from ``loss_fn`` (seeded by the iteration number) and the learning
    rate from the iteration and ``config.lr_decay_iterations``, so a resumed or
    extended run continues exactly as an uninterrupted one would. With
    ``time_limit`` (seconds) the run checkpoints and stops once that much
    training time has passed (resume it later). Returns the history
    ``[(iteration, loss, report), ...]``, the training seconds (summed over
    resumed sessions) and whether all ``config.iterations`` are done.

    Raises
    ------
    TrainingError
        The loss, a gradient or a parameter became non-finite (the last good
        checkpoint is kept).
    """
    from odeflow.experiments import checkpoint as ckpt
    from odeflow.experiments.common import check_finite, cosine_lr, grad_norm, progress
    from odeflow.optim import Adam

    optimizer = Adam(model.parameters(), lr=config.lr)
    start, history, seconds = 0, [], 0.0
    if checkpoint is not None and ckpt.begin(checkpoint, resume, log):
        start, history, seconds = _restore(checkpoint, model, optimizer, config)
        if log:
            log(f"resumed from {checkpoint} at iteration {start}")
    session = 0.0  # training seconds of this call (for time_limit)
    bar = progress(range(start, config.iterations), desc=desc, initial=start, total=config.iterations,
                   disable=True if quiet else None, leave=False, position=position)
    for it in bar:
        t_start = time.perf_counter()
        optimizer.lr = cosine_lr(it, config.lr_decay_iterations, config.lr, config.lr_final)
        loss, report = loss_fn(it)
        value = check_finite(loss.item(), "the training loss", f"iteration {it + 1}")
        optimizer.zero_grad()
        loss.backward()
        check_finite(grad_norm(model), "the gradient norm", f"iteration {it + 1}")
        optimizer.step()
        step_seconds = time.perf_counter() - t_start
        seconds, session = seconds + step_seconds, session + step_seconds
        history.append((it, value, float(report)))
        if it % 10 == 0:
            bar.set_postfix(loss=f"{value:.1f}", lr=f"{optimizer.lr:.4f}")
        done = it + 1
        stop = time_limit is not None and session >= time_limit
        if checkpoint is not None and (done % checkpoint_every == 0 or done == config.iterations or stop):
            _checkpoint(checkpoint, model, optimizer, done, history, config, seconds)
        if stop:
            break
    if checkpoint is None:
        ckpt.check_finite_arrays(model.state_dict(), f"iteration {len(history)}")
    complete = bool(history) and bool(history[-1][0] + 1 >= config.iterations)  # a Python bool (JSON)
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
                     atol=config.atol, rng=config.seed, grid=config.grid)


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
                time_limit=None, position=None, checkpoint_every=100):
    """Train one model on the spirals of ``config`` and score it; returns ``(model, data, result)``.

    ``checkpoint``: written every ``checkpoint_every`` iterations and at the end; ``resume`` continues from it (same settings required);
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
    history, seconds, complete = train_loop(model, loss_fn, config, checkpoint=checkpoint,
                                            resume=resume, desc=desc, quiet=quiet, time_limit=time_limit,
                                            position=position, checkpoint_every=checkpoint_every)
    test = data.test
    if not quiet:  # one solve per score, no finer progress to show
        print(f"  {desc}: scoring on the {len(test)} held-out spirals", flush=True)
    result = {"model": config.model, "n_obs": config.n_obs, "noise_std": config.noise_std,
              "iterations": len(history), "complete": complete, "train_seconds": seconds,
              "test_rmse": spiral_rmse(model, test),
              "final_loss_per_obs": float(np.mean([h[2] for h in history[-20:]])) if history else None}
    result["extrapolation_rmse_50"], result["extrapolation_n_spirals"] = extrapolation_rmse(model, test)
    return model, data, result


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

    _, seconds, _ = train_loop(model, loss_fn, config, checkpoint=checkpoint, resume=resume,
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
