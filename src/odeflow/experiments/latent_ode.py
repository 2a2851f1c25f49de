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

``odeflow train latent-ode`` runs the full version (with progress, checkpoints
and ``--resume``, runs in parallel worker processes with ``--jobs``);
``odeflow demo`` a short one. Modules: :mod:`~odeflow.experiments.latent_ode_fit`
(configurations, the training loop with its checkpoints, the three fits and
their scores), :mod:`~odeflow.experiments.latent_ode_figures`; this module holds
the demo and the ``train latent-ode`` command.

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
import os
import signal
import time

from odeflow.experiments.argtypes import nonnegative_int, positive_float, positive_int
from odeflow.experiments.common import one_blas_thread
from odeflow.experiments.latent_ode_figures import plot_hare_lynx, plot_spirals
from odeflow.experiments.latent_ode_fit import (  # noqa: F401 (the experiment's public names)
    PAPER_TABLE2, HareLynxConfig, SpiralConfig, build_model, extrapolation_rmse, fit_hare_lynx,
    fit_spirals, spiral_data, spiral_rmse, train_loop)

__all__ = ["demo", "add_arguments", "train", "SpiralConfig", "HareLynxConfig", "PAPER_TABLE2",
           "spiral_rmse", "fit_spirals", "fit_hare_lynx"]


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
        ode_cfg = SpiralConfig(n_obs=n_obs, n_spirals=120, iterations=3, lr_decay_iterations=3, batch_size=16)
        hl_cfg = HareLynxConfig(iterations=3, lr_decay_iterations=3, batch_size=4)
    else:  # about 20 s + 10 s of training on an idle 2-core machine (docs/latent_ode.md)
        ode_cfg = SpiralConfig(n_obs=n_obs, iterations=500, lr_decay_iterations=500)
        hl_cfg = HareLynxConfig(iterations=300, lr_decay_iterations=300)
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
    """Options of ``odeflow train latent-ode`` (``--out``, ``--resume``, ``--no-figures``,
    ``--no-progress`` come from :mod:`odeflow.cli`). Each run's checkpoint stores its
    whole :class:`SpiralConfig` / :class:`HareLynxConfig`; ``--iterations``,
    ``--rnn-iterations`` and ``--hare-lynx-iterations`` may grow on ``--resume``."""
    d, h = SpiralConfig(), HareLynxConfig()
    parser.add_argument("--n-obs", type=positive_int, nargs="+", default=[30, 50, 100],
                        help="observations per spiral, one run each (default: %(default)s)")
    parser.add_argument("--models", nargs="+", choices=("latent_ode", "rnn"), default=["latent_ode", "rnn"])
    parser.add_argument("--n-spirals", type=positive_int, default=d.n_spirals,
                        help="spirals made, 80%% for training (default: %(default)s)")
    parser.add_argument("--iterations", type=positive_int, default=d.iterations,
                        help="latent ODE (default: %(default)s)")
    parser.add_argument("--rnn-iterations", type=positive_int, default=2000,
                        help="RNN baseline (default: %(default)s)")
    parser.add_argument("--lr-decay-iterations", type=positive_int, default=d.lr_decay_iterations,
                        help="iterations of the latent ODE's cosine decay, independent of "
                        "--iterations so that runs can be extended (default: %(default)s)")
    parser.add_argument("--rnn-lr-decay-iterations", type=positive_int, default=2000,
                        help="the same for the RNN baseline (default: %(default)s)")
    parser.add_argument("--batch-size", type=positive_int, default=d.batch_size)
    parser.add_argument("--lr", type=positive_float, default=d.lr)
    parser.add_argument("--noise-std", type=positive_float, default=d.noise_std)
    parser.add_argument("--encoder", choices=("rnn", "gru", "odernn"), default=d.encoder)
    parser.add_argument("--time-scale", type=positive_float, default=d.time_scale,
                        help="time units per encoder unit (default: %(default)s)")
    parser.add_argument("--gradient", choices=("backprop", "adjoint"), default=d.gradient)
    parser.add_argument("--grid", choices=("union", "per_sample"), default=d.grid,
                        help="latent solve over the union of a batch's times, or each series on its own "
                             "times with its own step control (default: %(default)s)")
    parser.add_argument("--rtol", type=positive_float, default=d.rtol)
    parser.add_argument("--atol", type=positive_float, default=d.atol)
    parser.add_argument("--seed", type=nonnegative_int, default=d.seed)
    parser.add_argument("--hare-lynx-iterations", type=nonnegative_int, default=h.iterations,
                        help="0 skips the hare-lynx part (default: %(default)s)")
    parser.add_argument("--hare-lynx-lr-decay-iterations", type=positive_int, default=h.lr_decay_iterations)
    parser.add_argument("--checkpoint-every", type=positive_int, default=100,
                        help="iterations between checkpoints of a run (default: %(default)s)")
    parser.add_argument("--jobs", type=positive_int, default=min(2, os.cpu_count() or 1),
                        help="runs trained in parallel processes (default: %(default)s)")


def train(args) -> int:
    """``odeflow train latent-ode``: Table 2, Fig. 8 and hare-lynx; writes results.json."""
    with one_blas_thread():
        return _train_all(args)


_SLOT = {"position": None, "quiet": False}  # this worker's progress-bar line (set by _init_worker)


def _init_worker(counter, quiet):
    # the parent alone handles Ctrl-C (it ends the workers); a worker dies on SIGTERM
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with counter.get_lock():
        _SLOT["position"] = counter.value
        counter.value += 1
    _SLOT["quiet"] = quiet


def _fit_job(job):
    """One Table-2 run (in a worker process or not): ``(config, result, state_dict)``."""
    config, checkpoint, resume, every = job
    with one_blas_thread():
        model, _, result = fit_spirals(config, checkpoint=checkpoint, resume=resume, checkpoint_every=every,
                                       position=_SLOT["position"], quiet=_SLOT["quiet"])
    return config, result, model.state_dict()


def _report(result):
    print(f"{result['model']:10s} n_obs={result['n_obs']:3d}  test RMSE {result['test_rmse']:.4f}  "
          f"({result['iterations']} iterations, {result['train_seconds']:.0f} s)", flush=True)


def _run_jobs(jobs, n_workers, quiet):
    """Run the jobs, in `n_workers` spawned processes when more than one.

    Interrupted (Ctrl-C, SIGTERM) or failed, the parent terminates the workers
    (SIGTERM) and waits for them, so that no process is left behind; the
    checkpoints they wrote stay (a write cut short leaves a temporary file,
    removed on the next start).
    """
    import multiprocessing
    done = []
    if n_workers <= 1 or len(jobs) <= 1:
        _SLOT["quiet"] = quiet
        for job in jobs:
            done.append(_fit_job(job))
            _report(done[-1][1])
        return done
    context = multiprocessing.get_context("spawn")
    counter = context.Value("i", 0)
    pool = context.Pool(min(n_workers, len(jobs)), initializer=_init_worker, initargs=(counter, quiet))
    try:
        for item in pool.imap_unordered(_fit_job, jobs):
            done.append(item)
            _report(item[1])
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()
    return done


def _train_all(args) -> int:
    from odeflow.experiments.checkpoint import jsonable
    from odeflow.experiments.common import output_dir
    out = output_dir(args.out)
    start = time.perf_counter()
    quiet = args.no_progress
    configs = [SpiralConfig(n_obs=n_obs, model=name, noise_std=args.noise_std, encoder=args.encoder,
                            n_spirals=args.n_spirals,
                            iterations=args.iterations if name == "latent_ode" else args.rnn_iterations,
                            lr_decay_iterations=(args.lr_decay_iterations if name == "latent_ode"
                                                 else args.rnn_lr_decay_iterations),
                            batch_size=args.batch_size, lr=args.lr, gradient=args.gradient, grid=args.grid,
                            time_scale=args.time_scale, rtol=args.rtol, atol=args.atol, seed=args.seed)
               for n_obs in args.n_obs for name in args.models]
    # longest first (ODE runs, many observations), so that parallel workers finish together
    order = sorted(configs, key=lambda c: (c.model != "latent_ode", -c.n_obs))
    jobs = [(c, out / f"{c.model}_nobs{c.n_obs}.npz", args.resume, args.checkpoint_every) for c in order]
    done = _run_jobs(jobs, args.jobs, quiet)
    rows = []
    for config in configs:  # the table in the order asked for; figures from the saved weights
        _, result, state = next(d for d in done if d[0] == config)
        rows.append(result)
        if config.model == "latent_ode" and not args.no_figures:
            model = build_model(config).load_state_dict(state)
            print(f"figure spirals_nobs{config.n_obs}.png", flush=True)
            plot_spirals(model, spiral_data(config), out / f"spirals_nobs{config.n_obs}.png",
                         title=f"Latent ODE, {config.n_obs} observations per spiral")
    summary = {"table2": rows, "paper_table2_latent_ode": PAPER_TABLE2}
    print("\nTable 2: predictive RMSE on the held-out spirals (noise std "
          f"{args.noise_std}; definition in `odeflow.experiments.latent_ode`); extrapolation: RMSE "
          "over the 50 points after the window")
    _print_table(rows)
    if args.hare_lynx_iterations > 0:
        cfg = HareLynxConfig(iterations=args.hare_lynx_iterations,
                             lr_decay_iterations=args.hare_lynx_lr_decay_iterations, seed=args.seed)
        _, series, hl, dense = fit_hare_lynx(cfg, checkpoint=out / "hare_lynx.npz", resume=args.resume,
                                             quiet=quiet)
        if not args.no_figures:
            plot_hare_lynx(series, dense, cfg, out / "hare_lynx.png")
        print("\nHare-lynx")
        _print_hare_lynx(hl)
        summary["hare_lynx"] = hl
    summary["total_seconds"] = time.perf_counter() - start
    (out / "results.json").write_text(json.dumps(jsonable(summary), indent=2))
    print(f"\nresults in {out.resolve()}/results.json ({summary['total_seconds']:.0f} s)")
    return 0
