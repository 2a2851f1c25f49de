"""Do RNODE's penalties and STEER cut the solver's work? Train with and without, same recipe.

Runs, per seed, the existing recipes of ``odeflow train cnf`` (8gaussians maximum
likelihood: concatsquash 2-64-64-64-2, Hutchinson trace, adjoint, rtol = atol = 1e-5,
Adam 5e-3 cosine to 5e-4, batch 200, 2000 iterations) and of the demo's ODE-Net on
the bundled digits (6 epochs, batch 16, SGD), once plain and once regularised, and
prints one JSON line per run: final test NLL / accuracy, forward NFE per solve at
the end of training (mean over the last 10 % of steps), training wall time, and
the NFE history (for the figure). ``scripts/update_docs.py --study-regularisation`` turns
the lines into the table of ``docs/regularisation.md``; ``figure`` draws its figure.

Usage::

    OPENBLAS_NUM_THREADS=1 python scripts/study_regularisation.py cnf --seeds 0 1 --out cnf.jsonl
    OPENBLAS_NUM_THREADS=1 python scripts/study_regularisation.py odenet --seeds 0 1 2 --out odenet.jsonl
    python scripts/study_regularisation.py figure cnf.jsonl odenet.jsonl --png docs/regularisation_nfe.png
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

from odeflow.experiments.argtypes import regularisation


def run_cnf(seed, kinetic, jacobian, steer, iters, fixed_end_time=False):
    from odeflow.experiments.cnf_ml import MLConfig, evaluate_nll, fit_ml
    from odeflow.data.toy2d import sample_toy2d
    from odeflow.models.cnf import CNF
    from odeflow.models.cnf_dynamics import ConcatSquashMLP
    config = MLConfig(iters=iters, seed=seed, eval_every=iters)
    dynamics = ConcatSquashMLP(config.sizes, activation="tanh", rng=seed)
    model = CNF(dynamics, 2, end_time=config.end_time, train_end_time=not fixed_end_time,
                trace=config.trace, noise=config.noise,
                gradient=config.gradient, rtol=config.rtol, atol=config.atol, rng=seed,
                regularizers=regularisation(kinetic, jacobian, 0.0)[0], steer=steer)
    x_test = sample_toy2d(config.data, config.n_test, np.random.default_rng(10_000 + seed))
    start = time.perf_counter()
    history = fit_ml(model, config, x_test, progress=False, log=lambda *a: None)
    wall = time.perf_counter() - start
    nll, se = evaluate_nll(model, x_test)
    tail = max(1, iters // 10)
    return {"model": "cnf", "seed": seed, "iters": iters, "test_nll": nll, "test_nll_se": se,
            "nfe_forward_end": float(np.mean(history["nfe_forward"][-tail:])),
            "nfe_backward_end": float(np.mean(history["nfe_backward"][-tail:])),
            "train_seconds": wall, "end_time": float(model.end_time.data),
            "nfe_forward_history": [int(v) for v in history["nfe_forward"]]}


def run_odenet(seed, kinetic, jacobian, steer, epochs, fixed_end_time=False):
    if fixed_end_time:
        raise SystemExit("--fixed-end-time applies to the CNF only (the ODE block's T is fixed)")
    from odeflow.experiments.odenet import _DEMO
    from odeflow.experiments.odenet_fit import TrainConfig, fit, load_images
    from odeflow.models.odenet import build_classifier, default_width
    data = load_images("digits", dtype=np.float32)
    size = data.x_train.shape[-1]
    model = build_classifier("odenet", size, default_width(size), dtype=np.float32, rng=seed,
                             regularizers=regularisation(kinetic, jacobian, 0.0)[0], steer=steer)
    config = TrainConfig(**dict(_DEMO, epochs=epochs, seed=seed))
    start = time.perf_counter()
    history = fit(model, data, config, progress=False, log=None)
    wall = time.perf_counter() - start
    steps = [f for f, _ in history["steps"]]
    tail = max(1, len(steps) // 10)
    return {"model": "odenet", "seed": seed, "epochs": epochs, "test_acc": history["test_acc"][-1],
            "test_errors": int(round((1 - history["test_acc"][-1]) * len(data.y_test))),
            "nfe_forward_end": float(np.mean(steps[-tail:])),
            "nfe_backward_end": float(np.mean([b for _, b in history["steps"]][-tail:])),
            "nfe_test_end": history["nfe_test"][-1], "train_seconds": wall,
            "nfe_forward_history": [int(v) for v in steps]}


def figure(paths, out):
    """NFE per training step against the step, every run of the JSON lines in `paths` (Fig. 3-style)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [json.loads(line) for p in paths for line in open(p) if line.startswith("{")]
    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 5.6), squeeze=False)
    for ax, model in zip(axes[0], models):
        arms = {}
        for r in rows:
            if r["model"] == model:
                parts = [(f"kinetic {r['kinetic']:g}" if r["kinetic"] else ""),
                         (f"Jacobian {r['jacobian']:g}" if r["jacobian"] else ""),
                         (f"STEER {r['steer']:g}" if r.get("steer") else ""),
                         ("T fixed" if r.get("fixed_end_time") else "")]
                label = ", ".join(p for p in parts if p) or "plain"
                arms.setdefault(label, []).append(np.asarray(r["nfe_forward_history"], dtype=float))
        for label, runs in arms.items():
            n = min(len(h) for h in runs)
            mean = np.mean([h[:n] for h in runs], axis=0)
            window = max(1, n // 50)  # a running mean, so the curves do not hide each other's steps
            smooth = np.convolve(mean, np.ones(window) / window, mode="valid")
            ax.plot(np.arange(smooth.size) + window, smooth, label=f"{label} ({len(runs)} seeds)")
        ax.set_xlabel("training step")
        ax.set_ylabel("NFE of the forward solve (mean over seeds)")
        ax.set_title({"cnf": "CNF, 8gaussians", "odenet": "ODE-Net, 8x8 digits"}.get(model, model))
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)  # below: no curve hidden
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def main(argv=None):
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "figure":  # figure RESULTS.jsonl... --png OUT
        paths, out = argv[1:argv.index("--png")], argv[argv.index("--png") + 1]
        figure(paths, out)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=("cnf", "odenet"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--kinetic", type=float, default=0.01, help="weight of the regularised runs")
    parser.add_argument("--jacobian", type=float, default=0.01, help="weight of the regularised runs")
    parser.add_argument("--steer", type=float, default=None, help="STEER half-width (relative)")
    parser.add_argument("--length", type=int, help="iterations (cnf, default 2000) or epochs (odenet, 6)")
    parser.add_argument("--fixed-end-time", action="store_true",
                        help="cnf: the regularised arm keeps T fixed at its initial 0.5 (RNODE's setting)")
    parser.add_argument("--only", choices=("plain", "regularised"), help="run only one arm")
    parser.add_argument("--out", help="append the JSON lines to this file too")
    args = parser.parse_args(argv)
    run = run_cnf if args.model == "cnf" else run_odenet
    length = args.length or (2000 if args.model == "cnf" else 6)
    arms = [("plain", 0.0, 0.0, None), ("regularised", args.kinetic, args.jacobian, args.steer)]
    for seed in args.seeds:
        for arm, kinetic, jacobian, steer in arms:  # the arms in turns: both see the same load
            if args.only and arm != args.only:
                continue
            fixed = args.fixed_end_time and arm == "regularised"
            row = run(seed, kinetic, jacobian, steer, length, fixed)
            row.update(arm=arm, kinetic=kinetic, jacobian=jacobian, steer=steer, fixed_end_time=fixed,
                       load=os.getloadavg()[0], blas_threads=os.environ.get("OPENBLAS_NUM_THREADS"),
                       python=platform.python_version())
            line = json.dumps(row)
            print(line, flush=True)
            if args.out:
                with open(args.out, "a") as fh:
                    fh.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
