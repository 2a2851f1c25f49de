"""ODE-Net training epochs: odeflow against the torchdiffeq loop of ``../shared/bench/torch_odenet.py``.

Both train the same classifier (``odeflow train odenet``'s defaults on the
bundled 8x8 digits: width 32, float32, dopri5 at rtol = atol = --tol, adjoint
gradients, SGD lr 0.1 momentum 0.9, the same initial weights and the same
batch order, epoch e shuffled by ``default_rng([seed, e])``), one BLAS / torch
thread each. odeflow runs the code path of ``odeflow train odenet``
(:func:`odeflow.experiments.odenet_fit.fit` inside ``one_blas_thread``), with
the learning-rate drops of torch_odenet.py (after ``ceil(0.5 E)`` and
``ceil(0.75 E)`` of ``E`` epochs) so both see the same schedule.

Every repeat runs each library in a fresh process for ``--epochs`` epochs,
the two in turn (odeflow first on even repeats, torchdiffeq first on odd), so
both meet the same load; a row is the median over repeats of one epoch's
training seconds (the evaluation after the epoch is not timed) and of its
mean NFE per step. The torchdiffeq rows are skipped when torch_odenet.py or
torch is not there. One JSON line per row, then one ratio row per (batch,
epoch): ``speedup = torchdiffeq seconds / odeflow seconds`` (above 1: odeflow
is faster), with the 1-minute load average before and after.

Run: ``PYTHONPATH=src OPENBLAS_NUM_THREADS=1 python scripts/bench_odenet.py
[--batch-sizes 128 16] [--epochs 1] [--repeats 3] [--json docs/results/bench_odenet.jsonl]``.
torch_odenet.py loads the digits through odeflow, which needs scikit-learn in
the interpreter that runs it (``--torch-python``, default this one).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
# ../shared/bench next to the checkout (or next to the folder of worktrees holding it)
CANDIDATES = [HERE.parent.parent / "shared" / "bench" / "torch_odenet.py",
              HERE.parent.parent.parent / "shared" / "bench" / "torch_odenet.py"]


def odeflow_worker(batch_size: int, epochs: int, tol: float, seed: int) -> None:
    """Train odeflow's ODE-Net for `epochs` epochs; print one JSON line per epoch."""
    from odeflow.experiments.common import one_blas_thread
    from odeflow.experiments.odenet_fit import TrainConfig, fit, load_images
    from odeflow.models.odenet import build_classifier
    data = load_images("digits", seed=seed, dtype=np.float32)
    model = build_classifier("odenet", data.x_train.shape[-1], None, dtype=np.float32, rng=seed,
                             method="dopri5", rtol=tol, atol=tol)
    milestones = tuple(int(math.ceil(m * epochs)) for m in (0.5, 0.75))
    config = TrainConfig(epochs=epochs, batch_size=batch_size, milestones=milestones, seed=seed)
    with one_blas_thread():
        history = fit(model, data, config, progress=False, log=None)
    for e in range(epochs):
        print(json.dumps({"library": "odeflow", "epoch": e + 1, "seconds": history["seconds"][e],
                          "nfe_forward_mean": history["nfe_forward"][e],
                          "nfe_backward_mean": history["nfe_backward"][e],
                          "test_acc": history["test_acc"][e], "batch_size": batch_size}), flush=True)


def _run(cmd, env) -> list:
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def _torch_script(given):
    for path in ([Path(given)] if given else CANDIDATES):
        if path.exists():
            return path
    return None


def _torch_available(python, script) -> bool:
    if script is None:
        return False
    probe = subprocess.run([python, "-c", "import torch, torchdiffeq"], capture_output=True)
    return probe.returncode == 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 16])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tol", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--torch-python", default=sys.executable)
    parser.add_argument("--torch-script", help="torch_odenet.py (default: ../shared/bench/)")
    parser.add_argument("--json", help="also write the rows to this JSON-lines file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        odeflow_worker(args.batch_size, args.epochs, args.tol, args.seed)
        return
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    script = _torch_script(args.torch_script)
    with_torch = _torch_available(args.torch_python, script)
    rows = []
    load_before = os.getloadavg()[0]
    for batch in args.batch_sizes:
        jobs = {"odeflow": [sys.executable, str(Path(__file__).resolve()), "--worker",
                            "--batch-size", str(batch), "--epochs", str(args.epochs),
                            "--tol", str(args.tol), "--seed", str(args.seed)]}
        if with_torch:
            jobs["torchdiffeq"] = [args.torch_python, str(script), "--epochs", str(args.epochs),
                                   "--batch-size", str(batch), "--threads", "1", "--tol", str(args.tol),
                                   "--seed", str(args.seed)]
        samples = {name: [] for name in jobs}
        for r in range(args.repeats):
            order = list(jobs) if r % 2 == 0 else list(jobs)[::-1]
            for name in order:
                samples[name].append(_run(jobs[name], env))
        medians = {}
        for name, runs in samples.items():
            for e in range(args.epochs):
                epoch_rows = [run[e] for run in runs]
                seconds = [row["seconds"] for row in epoch_rows]
                row = {"bench": "odenet_epoch", "library": name, "batch_size": batch, "epoch": e + 1,
                       "seconds_median": float(np.median(seconds)), "seconds": seconds,
                       "nfe_forward": float(np.median([x["nfe_forward_mean"] for x in epoch_rows])),
                       "nfe_backward": float(np.median([x["nfe_backward_mean"] for x in epoch_rows])),
                       "test_acc": float(np.median([x["test_acc"] for x in epoch_rows])),
                       "repeats": args.repeats, "threads": 1, "tol": args.tol}
                medians[name, e] = row["seconds_median"]
                rows.append(row)
                print(json.dumps(row), flush=True)
        if with_torch:
            for e in range(args.epochs):
                row = {"bench": "odenet_ratio", "batch_size": batch, "epoch": e + 1,
                       "speedup": medians["torchdiffeq", e] / medians["odeflow", e]}
                rows.append(row)
                print(json.dumps(row), flush=True)
    load = {"bench": "odenet_load", "load_1min_before": load_before,
            "load_1min_after": os.getloadavg()[0], "torch": with_torch}
    rows.append(load)
    print(json.dumps(load), flush=True)
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))


if __name__ == "__main__":
    main()
