"""The ``odeflow`` command: ``odeflow demo`` (the main job) and ``odeflow train NAME``.

Argument parsing is argparse's. Each experiment is a module of
:mod:`odeflow.experiments` (see its docstring for the interface); ``demo``
runs their short versions in turn and writes ``summary.json`` with every
number it printed.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
import time
from pathlib import Path

from odeflow.experiments import EXPERIMENTS

__all__ = ["main"]


def _available():
    """The experiment modules that exist, in demo order."""
    names = []
    for name in EXPERIMENTS:
        if importlib.util.find_spec(f"odeflow.experiments.{name}") is not None:
            names.append(name)
    return names


def _parser():
    parser = argparse.ArgumentParser(prog="odeflow", description="Neural ODEs from scratch on NumPy and Numba.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the main demonstration (a few minutes on 2 cores)")
    demo.add_argument("--quick", action="store_true", help="a seconds-long version (used by the tests)")
    demo.add_argument("--out", default="odeflow-out", help="folder for figures and results (default: %(default)s)")
    demo.add_argument("--only", choices=_available(), action="append",
                      help="run only this experiment (repeatable)")
    train = sub.add_parser("train", help="train one model in full")
    models = train.add_subparsers(dest="model", required=True)
    for name in _available():
        module = importlib.import_module(f"odeflow.experiments.{name}")
        if hasattr(module, "add_arguments"):
            p = models.add_parser(name.replace("_", "-"), help=(module.__doc__ or "").strip().splitlines()[0])
            p.add_argument("--out", default=f"odeflow-out/{name}", help="output folder (default: %(default)s)")
            module.add_arguments(p)
            p.set_defaults(train=module.train)
    return parser


def _demo(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {}
    start = time.perf_counter()
    for name in args.only or _available():
        module = importlib.import_module(f"odeflow.experiments.{name}")
        t0 = time.perf_counter()
        summary[name] = module.demo(out / name, args.quick)
        summary[name + "_seconds"] = time.perf_counter() - t0
        print()
    summary["total_seconds"] = time.perf_counter() - start
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    print(f"odeflow demo finished in {summary['total_seconds']:.0f} s; results and figures in {out.resolve()}/")
    return 0


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "demo":
        return _demo(args)
    return args.train(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
