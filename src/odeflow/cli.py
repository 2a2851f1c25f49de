"""The ``odeflow`` command: ``odeflow demo`` (the main job) and helpers.

Argument parsing is argparse's; each sub-command lives in its own module under
:mod:`odeflow.demos` and is imported only when run, so ``odeflow --help`` is fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys

__all__ = ["main"]


def _parser():
    parser = argparse.ArgumentParser(prog="odeflow", description="Neural ODEs from scratch on NumPy and Numba.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the main demonstration and print its results")
    demo.add_argument("--quick", action="store_true", help="a few seconds' version (used by the tests)")
    demo.add_argument("--out", default="odeflow-out", help="folder for figures and results (default: %(default)s)")
    return parser


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    module = importlib.import_module(f"odeflow.demos.{args.command}")
    return module.run(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
