"""Continuous normalizing flows on 2-D densities (Chen et al. 2018, §4; FFJORD).

Two experiments, each with a short version in ``odeflow demo`` and the full
one behind ``odeflow train cnf``:

1. **Maximum likelihood** (FFJORD's toy setting): a CNF with concatsquash
   dynamics fitted to samples of a 2-D toy distribution; test NLL in nats on
   held-out samples. For ``8gaussians`` the true density is known
   (:func:`~odeflow.data.toy2d.log_prob_8gaussians`), so the entropy ``H(p)``
   is estimated by Monte Carlo and ``NLL - H = KL(p || q)`` (>= 0) is
   reported: how far the model is from the truth, in nats.
2. **Density matching** (Chen et al. §4.1, Fig. 4): minimise
   ``KL(q || p) = E_q[log q(x) - log p~(x)] + log Z`` over samples of ``q``, for
   the planar NF with ``K`` layers and the planar CNF with ``M = K`` units.
   ``log Z`` is computed by quadrature on a grid, so the table reports the
   KL divergence itself (>= 0, in nats), not only the loss.

Targets for density matching. Of Rezende & Mohamed's energies only ``U1`` is
normalisable on the plane: ``exp(-U2)`` and ``exp(-U3)`` do not decay along
``z1``, so ``KL(q || p)`` has no minimum (``q`` gains entropy by spreading
along ``z1`` for ever) and the loss has no floor. We use ``U1`` as it is, and
``U2``, ``U3`` times a Gaussian envelope ``exp(-z1^2 / (2 * 2^2))`` that keeps
their shape on [-4, 4]^2, where Rezende & Mohamed plot them, and makes them
normalisable: three targets with a true ``log Z``.

Modules: :mod:`~odeflow.experiments.cnf_targets` (the targets and ``log Z``),
:mod:`~odeflow.experiments.cnf_ml` (maximum likelihood, with checkpoints and
``--resume``), :mod:`~odeflow.experiments.cnf_matching`,
:mod:`~odeflow.experiments.cnf_figures`; this module holds the exact-vs-
Hutchinson comparison, the demo and the ``train cnf`` command. Adam, one BLAS
thread (the matrices are small and the machine is shared), exact trace for
every reported NLL.

References
----------
.. [1] R. T. Q. Chen, Y. Rubanova, J. Bettencourt, D. Duvenaud, "Neural Ordinary
   Differential Equations", NeurIPS 2018, §4, Fig. 4-6.
.. [2] W. Grathwohl et al., "FFJORD", ICLR 2019, §4.1 (toy densities, concatsquash,
   T = 0.5 trained, tolerances 1e-5).
.. [3] D. J. Rezende, S. Mohamed, "Variational Inference with Normalizing Flows",
   ICML 2015, Table 1 (the energies U1-U4).
"""
from __future__ import annotations

import dataclasses
import json
import time

import numpy as np

from odeflow.experiments.argtypes import (
    add_regularisation_arguments, choice_list, int_list, nonnegative_int, positive_float, positive_int,
    run_settings)
from odeflow.experiments.cnf_figures import figure_curves, figure_flow, figure_matching, figure_ml
from odeflow.experiments.cnf_matching import (
    MatchConfig, fit_matching, matching_model, matching_row, matching_table)
from odeflow.experiments.cnf_ml import (
    MLConfig, entropy_8gaussians, evaluate_nll, fit_ml, make_ml_model, model_log_prob)
from odeflow.experiments.cnf_targets import (
    ENVELOPE_STD, MATCH_TARGETS, log_normaliser, mean_se, target_log_density)
from odeflow.experiments.common import one_blas_thread
from odeflow.experiments.common import progress as bar

__all__ = ["MLConfig", "MatchConfig", "MATCH_TARGETS", "ENVELOPE_STD", "target_log_density",
           "log_normaliser", "entropy_8gaussians", "model_log_prob", "evaluate_nll", "make_ml_model",
           "fit_ml", "fit_matching", "compare_traces", "demo", "add_arguments", "train"]

MATCHING_COMMAND = "cnf-matching"  # the writer of the density-matching checkpoints


# -- exact vs stochastic trace on one training step -----------------------------------------------

def compare_traces(model, x, seed=0, n_draws=20):
    """One training step (forward + adjoint backward) with each trace, on the same batch `x`.

    Returns
    -------
    dict of dict
        Per trace: ``nfe_forward``, ``nfe_backward``, ``vjp_per_eval`` (VJPs spent on
        the trace per evaluation), ``seconds`` (of the step), ``loss``; for
        Hutchinson also ``estimate_bias`` and ``estimate_bias_se`` (mean over
        ``n_draws`` probe draws of the batch-mean log-density estimate minus the
        exact one, nats) and ``point_std`` (std of one point's estimate, nats).
    """
    from odeflow.autodiff.tensor import no_grad
    out = {}
    exact_logq = None
    for trace in ("exact", "hutchinson"):
        model.zero_grad()
        stats = {}
        t0 = time.perf_counter()
        loss = -model.log_prob(x, trace=trace, rng=np.random.default_rng(seed), stats=stats).mean()
        loss.backward()
        seconds = time.perf_counter() - t0
        dyn = stats["dynamics"]
        out[trace] = {"nfe_forward": stats["forward"]["nfe"], "nfe_backward": stats["backward"]["nfe"],
                      "vjp_per_eval": dyn.n_vjp / dyn.nfe, "seconds": seconds, "loss": loss.item()}
        if trace == "exact":
            with no_grad():
                exact_logq = model.log_prob(x, trace="exact").data
    model.zero_grad()
    with no_grad():
        draws = np.stack([model.log_prob(x, trace="hutchinson", rng=np.random.default_rng([seed, i])).data
                          for i in range(n_draws)])
    bias, bias_se = mean_se(draws.mean(axis=1) - exact_logq.mean())
    out["hutchinson"].update(estimate_bias=bias, estimate_bias_se=bias_se,
                             point_std=float(np.mean(draws.std(axis=0, ddof=1))))
    return out


# -- demo ----------------------------------------------------------------------------------------------

def _run_ml(config, out, plt, *, n_grid, progress, log=print, checkpoint=None, resume=False,
            figures=True, settings=None):
    from odeflow.data.toy2d import sample_toy2d
    entropy = entropy_8gaussians()[0] if config.data == "8gaussians" else None
    x_test = sample_toy2d(config.data, config.n_test, np.random.default_rng([config.seed, 10 ** 9]))
    model = make_ml_model(config)
    history = fit_ml(model, config, x_test, checkpoint=checkpoint, resume=resume,
                     progress=progress, log=log, entropy=entropy, settings=settings)
    seconds = float(np.sum(history["seconds"]))  # training steps only (a resumed run: all of them)
    nll, se = history["test_nll"][-1], history["test_nll_se"][-1]
    summary = {"data": config.data, "sizes": list(config.sizes), "iters": config.iters,
               "batch": config.batch, "trace": config.trace, "gradient": config.gradient,
               "kinetic": config.kinetic, "jacobian": config.jacobian, "steer": config.steer,
               "test_nll": nll, "test_nll_se": se, "end_time": float(model.end_time.data),
               "nfe_forward_last": float(np.mean(history["nfe_forward"][-10:])),
               "nfe_backward_last": float(np.mean(history["nfe_backward"][-10:])),
               "seconds": seconds, "seconds_per_iter": float(np.median(history["seconds"]))}
    log(f"   {config.iters} iterations of batch {config.batch}, {config.trace} trace, "
        f"{config.gradient} gradients, concatsquash {'-'.join(map(str, config.sizes))}: "
        f"{seconds:.1f} s of training steps ({summary['seconds_per_iter'] * 1e3:.0f} ms per "
        f"iteration, median; NFE forward/backward {summary['nfe_forward_last']:.0f}/"
        f"{summary['nfe_backward_last']:.0f} at the end)")
    log(f"   test NLL on {config.n_test} held-out samples: {nll:.4f} +- {se:.4f} nats (exact trace); "
        f"learned T = {summary['end_time']:.3f}")
    if entropy is not None:
        from odeflow.data.toy2d import log_prob_8gaussians
        # KL(p || q) = E_p[log p - log q] = NLL - H. The paired estimate on the test points
        # cancels most of the sampling noise that NLL and H carry separately.
        kl, kl_se = mean_se(log_prob_8gaussians(x_test) - model_log_prob(model, x_test, progress=progress))
        summary.update(entropy=entropy, nll_minus_entropy=nll - entropy, kl_paired=kl, kl_paired_se=kl_se)
        log(f"   entropy of 8gaussians (Monte Carlo, 200,000 samples): {entropy:.4f} nats -> "
            f"NLL - H = {nll - entropy:.4f} nats (target <= 0.1); paired on the test points, "
            f"mean(log p - log q) = KL(p || q) = {kl:.4f} +- {kl_se:.4f} nats")
    if plt is not None and figures:
        jobs = [lambda: figure_ml(plt, model, config.data, out, n_grid),
                lambda: figure_flow(plt, model, out, n_grid),
                lambda: figure_curves(plt, history, entropy, out)]
        for draw in bar(jobs, desc="figures", disable=None if progress else True):
            draw()
    return model, history, summary


def _run_matching(config, out, plt, *, progress, log=print, done=None, on_result=None, figures=True):
    results = []
    for target in config.targets:
        for kind in ("nf", "cnf"):
            for k in config.ks:
                key = f"{target}.{kind}.{k}"
                if done is not None and key in done:
                    results.append(done[key])
                    continue
                r = fit_matching(kind, k, target, config, progress=progress)
                results.append(r)
                if on_result is not None:
                    on_result(key, r)
    log(matching_table(results))
    if plt is not None and figures and all("model" in r for r in results):
        for draw in bar([lambda: figure_matching(plt, results, out)], desc="figures",
                        disable=None if progress else True):
            draw()
    return results


def demo(out_dir, quick) -> dict:
    """The CNF part of ``odeflow demo``: maximum likelihood, exact vs Hutchinson, density matching."""
    with one_blas_thread():
        return _demo(out_dir, quick)


def _demo(out_dir, quick) -> dict:
    from odeflow.data.toy2d import sample_toy2d
    from odeflow.experiments.common import matplotlib_pyplot, output_dir

    out = output_dir(out_dir)
    plt = matplotlib_pyplot()
    start, cpu_start = time.perf_counter(), time.process_time()
    sections = {}

    def lap(name, t0, c0):
        sections[name] = {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}
        return time.perf_counter(), time.process_time()

    t0, c0 = start, cpu_start
    print("== Continuous normalizing flows on 2-D densities (Chen et al. 2018 §4; FFJORD)\n")
    if quick:
        ml = MLConfig(sizes=(2, 16, 16, 2), iters=4, lr_decay_iters=4, batch=50, lr=1e-2, n_test=300,
                      eval_every=4)
        match = MatchConfig(targets=("U1",), ks=(2,), iters_nf=30, iters_cnf=2, n_eval=300)
        n_grid = 24
    else:
        ml = MLConfig(sizes=(2, 64, 64, 64, 2), iters=70, lr_decay_iters=70, batch=200, lr=1e-2,
                      n_test=2000, eval_every=35)
        match = MatchConfig(targets=("U1",), ks=(2, 8), iters_nf=400, iters_cnf=25, n_eval=2000)
        n_grid = 48
    print(f"1. Maximum likelihood on 8gaussians (short run; `odeflow train cnf` runs {MLConfig.iters})")
    model, _, ml_summary = _run_ml(ml, out, plt, n_grid=n_grid, progress=not quick)
    t0, c0 = lap("maximum_likelihood", t0, c0)

    print("\n2. Exact trace vs Hutchinson's estimator: one training step on the same batch")
    x = sample_toy2d("8gaussians", ml.batch, 5)
    traces = compare_traces(model, x, n_draws=4 if quick else 8)
    print(f"   {'trace':12s}{'NFE fwd':>9s}{'NFE bwd':>9s}{'VJPs/eval':>11s}{'step ms':>9s}")
    for name, r in traces.items():
        print(f"   {name:12s}{r['nfe_forward']:>9d}{r['nfe_backward']:>9d}{r['vjp_per_eval']:>11.0f}"
              f"{r['seconds'] * 1e3:>9.0f}")
    h = traces["hutchinson"]
    print(f"   Hutchinson (Rademacher) log-density estimate: batch mean minus exact "
          f"{h['estimate_bias']:+.4f} +- {h['estimate_bias_se']:.4f} nats over probe draws; "
          f"one point's estimate has std {h['point_std']:.3f} nats")
    t0, c0 = lap("traces", t0, c0)

    print(f"\n3. Density matching KL(q || p) in nats (log Z by quadrature), planar NF vs planar CNF, "
          f"target U1 only ({match.iters_nf} NF / {match.iters_cnf} CNF iterations; "
          f"`odeflow train cnf` runs the full grid)")
    results = _run_matching(match, out, plt, progress=not quick)
    lap("density_matching", t0, c0)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    parts = ", ".join(f"{k.replace('_', ' ')} {v['wall_s']:.0f}" for k, v in sections.items())
    print(f"\n   CNF demo: {seconds:.0f} s wall ({parts}), {cpu:.0f} s CPU of this process "
          f"(wall well above CPU means a busy machine); figures in {out}/")
    return {"ml": ml_summary, "traces": traces, "matching": [matching_row(r) for r in results],
            "seconds": seconds, "cpu_seconds": cpu, "sections": sections}


# -- odeflow train cnf --------------------------------------------------------------------------------

def add_arguments(parser):
    """Arguments of ``odeflow train cnf`` (``--out``, ``--resume``, ``--no-figures`` and
    ``--no-progress`` come from :mod:`odeflow.cli`).

    The options named like :class:`MLConfig` / :class:`MatchConfig` fields (dashes
    for underscores) fill those configurations, which the checkpoints store and
    compare on ``--resume``; any other option (but ``--task`` and the session
    flags) is stored with the maximum-likelihood checkpoint as a setting too, so
    a new option needs nothing more to be checked on ``--resume``.
    """
    from odeflow.data.toy2d import TOY2D_NAMES
    ml, mt = MLConfig(), MatchConfig()
    parser.add_argument("--task", choices=("ml", "matching", "all"), default="all",
                        help="maximum likelihood, density matching, or both (default: %(default)s)")
    parser.add_argument("--data", choices=TOY2D_NAMES, default=ml.data,
                        help="ML data (default: %(default)s)")
    parser.add_argument("--sizes", type=int_list("-", what="layer widths"), default=ml.sizes,
                        help="concatsquash widths, e.g. 2-64-64-2 (default: 2-64-64-64-2)")
    parser.add_argument("--iters", type=positive_int, default=ml.iters,
                        help="ML iterations; may grow on --resume (default: %(default)s)")
    parser.add_argument("--batch", type=positive_int, default=ml.batch, help="ML batch (default: %(default)s)")
    parser.add_argument("--lr", type=positive_float, default=ml.lr,
                        help="ML Adam learning rate, cosine-decayed to a tenth (default: %(default)s)")
    parser.add_argument("--lr-decay-iters", type=positive_int, default=ml.lr_decay_iters,
                        help="iterations of the cosine decay, independent of --iters so that a run "
                        "can be extended (default: %(default)s)")
    parser.add_argument("--trace", choices=("exact", "hutchinson"), default=ml.trace,
                        help="trace for ML training (default: %(default)s)")
    parser.add_argument("--noise", choices=("gaussian", "rademacher"), default=ml.noise)
    parser.add_argument("--gradient", choices=("adjoint", "backprop"), default=ml.gradient)
    parser.add_argument("--rtol", type=positive_float, default=ml.rtol)
    parser.add_argument("--atol", type=positive_float, default=ml.atol)
    parser.add_argument("--n-test", type=positive_int, default=ml.n_test,
                        help="held-out samples for the test NLL (default: %(default)s)")
    parser.add_argument("--eval-every", type=positive_int, default=ml.eval_every,
                        help="test NLL and checkpoint every this many iterations (default: %(default)s)")
    parser.add_argument("--targets", type=choice_list(",", MATCH_TARGETS), default=mt.targets,
                        help="density-matching targets (default: U1,U2,U3)")
    parser.add_argument("--ks", type=int_list(",", what="K values"), default=mt.ks,
                        help="K = M values for density matching (default: 2,8,32)")
    parser.add_argument("--iters-nf", type=positive_int, default=mt.iters_nf)
    parser.add_argument("--iters-cnf", type=positive_int, default=mt.iters_cnf)
    parser.add_argument("--seed", type=nonnegative_int, default=0)
    add_regularisation_arguments(parser, ml)


def _config_fields():
    return {f.name for cls in (MLConfig, MatchConfig) for f in dataclasses.fields(cls)}


def _config(cls, args):
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in vars(args).items() if k in names})


def train(args) -> int:
    """``odeflow train cnf``: the full runs; results in ``<out>/results.json``."""
    from odeflow.experiments.checkpoint import jsonable
    from odeflow.experiments.common import matplotlib_pyplot, output_dir
    out = output_dir(args.out)
    plt = None if args.no_figures else matplotlib_pyplot()
    progress = not args.no_progress
    results_path = out / "results.json"
    results = {}  # the other task's results of an earlier call stay
    if results_path.is_file():
        try:
            results = json.loads(results_path.read_text())
        except ValueError:
            print(f"{results_path} is not JSON; it will be replaced", flush=True)
    if args.task in ("ml", "all"):
        config = _config(MLConfig, args)
        print(f"Maximum likelihood on {config.data}; checkpoint {out / 'ml_checkpoint.npz'}", flush=True)
        model, _, results["ml"] = _run_ml(config, out, plt, n_grid=100, progress=progress,
                                          checkpoint=out / "ml_checkpoint.npz", resume=args.resume,
                                          settings=run_settings(args, exclude=_config_fields() | {"task"}))
        if config.data == "8gaussians":  # the trained model: one step with each trace, same batch
            print("Exact trace vs Hutchinson's estimator: one training step of the trained model", flush=True)
            from odeflow.data.toy2d import sample_toy2d
            x = sample_toy2d(config.data, config.batch, np.random.default_rng([config.seed, 7]))
            results["ml"]["traces"] = compare_traces(model, x, seed=config.seed, n_draws=8)
        results_path.write_text(json.dumps(jsonable(results), indent=2))
    if args.task in ("matching", "all"):
        config = _config(MatchConfig, args)
        print("Density matching KL(q || p), nats", flush=True)
        results["matching"] = _train_matching(config, out, plt, progress, args.resume)
        results_path.write_text(json.dumps(jsonable(results), indent=2))
    print(f"results in {results_path}")
    return 0


def _train_matching(config, out, plt, progress, resume):
    """The density-matching grid, one checkpoint after each finished run (resume skips those)."""
    from odeflow.experiments import checkpoint as ckpt
    path = out / "matching_checkpoint.npz"
    arrays, rows = {}, {}
    if ckpt.begin(path, resume):
        arrays, meta = ckpt.load(path, command=MATCHING_COMMAND)
        rows = meta["config"].pop("finished", {})
        ckpt.check_config(path, meta["config"], dataclasses.asdict(config))
        print(f"resumed from {path}: {len(rows)} finished runs", flush=True)
    done = {}
    for key, row in rows.items():  # rebuild the finished models from the checkpoint
        model = matching_model(row["kind"], row["k"], config)
        head = key + "/"
        model.load_state_dict({k[len(head):]: v for k, v in arrays.items() if k.startswith(head)})
        done[key] = dict(row, model=model)

    def on_result(key, r):
        arrays.update({f"{key}/{k}": v for k, v in r["model"].state_dict().items()})
        rows[key] = matching_row(r)
        ckpt.save(path, arrays, command=MATCHING_COMMAND, config=dict(dataclasses.asdict(config),
                  finished=rows), step=len(rows), where=f"the end of run {key}")

    results = _run_matching(config, out, plt, progress=progress, done=done, on_result=on_result,
                            figures=plt is not None)
    return [matching_row(r) for r in results]
