"""The ``odeflow`` command: ``odeflow demo`` (the main job) and ``odeflow train NAME``.

Argument parsing is argparse's: every numeric flag has a checking ``type``
(:mod:`odeflow.experiments.argtypes`), so a bad value ends with argparse's
one-line message naming the flag and exit status 2. Each experiment is a
module of :mod:`odeflow.experiments` (see its docstring for the interface);
``demo`` runs their short versions in turn and writes ``summary.json`` with
every number it printed.

Exit status: 0 done; 1 an odeflow error (one line ``odeflow: error: ...``;
``--debug`` or ``ODEFLOW_DEBUG=1`` shows the traceback); 2 bad arguments;
130 interrupted by SIGINT (Ctrl-C), 143 by SIGTERM, after one line saying
where the last checkpoint is and how to resume.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import shlex
import signal
import sys
import time
from pathlib import Path

from odeflow.experiments import EXPERIMENTS

__all__ = ["main", "Interrupted", "output_folder"]

DEBUG_ENV = "ODEFLOW_DEBUG"


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; ``signum`` says which."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("odeflow")
    except Exception:  # pragma: no cover - running from a source tree without metadata
        return "unknown"


def output_folder(text):
    """argparse type of ``--out``: a folder that exists and is writable, or can be created."""
    path = Path(text)
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise argparse.ArgumentTypeError(f"{str(probe)!r} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot write in {str(probe)!r} (permission denied)")
    return text


def _available():
    """The experiment modules that exist, in demo order."""
    return [name for name in EXPERIMENTS if importlib.util.find_spec(f"odeflow.experiments.{name}")]


def _parser():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true",
                        help=f"show the full traceback of an error (or set {DEBUG_ENV}=1)")
    parser = argparse.ArgumentParser(prog="odeflow", description="Neural ODEs from scratch on NumPy and Numba.",
                                     parents=[common])
    parser.add_argument("--version", action="version", version=f"odeflow {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the main demonstration (a few minutes on 2 cores)",
                          parents=[common])
    demo.add_argument("--quick", action="store_true", help="a seconds-long version (used by the tests)")
    demo.add_argument("--out", type=output_folder, default="odeflow-out",
                      help="folder for figures and results (default: %(default)s)")
    demo.add_argument("--only", choices=_available(), action="append",
                      help="run only this experiment (repeatable)")
    train = sub.add_parser("train", help="train one model in full", parents=[common])
    models = train.add_subparsers(dest="experiment", required=True)
    for name in _available():
        module = importlib.import_module(f"odeflow.experiments.{name}")
        if hasattr(module, "add_arguments"):
            p = models.add_parser(name.replace("_", "-"), parents=[common],
                                  help=(module.__doc__ or "").strip().splitlines()[0])
            p.add_argument("--out", type=output_folder, default=f"odeflow-out/{name}",
                           help="output folder (default: %(default)s)")
            p.add_argument("--resume", action="store_true",
                           help="continue from the checkpoints in --out (same settings; the run "
                                "length may grow)")
            p.add_argument("--no-figures", action="store_true", help="skip the figures")
            p.add_argument("--no-progress", action="store_true",
                           help="no progress bars or progress lines")
            module.add_arguments(p)
            p.set_defaults(train=module.train)
    return parser


def _demo(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"run": _run_info()}
    start = time.perf_counter()
    for name in args.only or _available():
        module = importlib.import_module(f"odeflow.experiments.{name}")
        t0 = time.perf_counter()
        summary[name] = module.demo(out / name, args.quick)
        summary[name + "_seconds"] = time.perf_counter() - t0
        print()
    summary["total_seconds"] = time.perf_counter() - start
    summary["run"]["load_average_at_end"] = _run_info()["load_average_1_5_15_min"]
    from odeflow.experiments.checkpoint import jsonable
    (out / "summary.json").write_text(json.dumps(jsonable(summary), indent=2))
    print(f"odeflow demo finished in {summary['total_seconds']:.0f} s; results and figures in {out.resolve()}/")
    return 0


def _run_info() -> dict:
    """When and where the demo ran (its numbers depend on the machine and its load)."""
    import datetime
    import platform
    try:
        load = list(os.getloadavg())
    except OSError:  # pragma: no cover - not on every platform
        load = None
    return {"date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
            "odeflow": _version(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "load_average_1_5_15_min": load}


def _raise_interrupted(signum, frame):
    raise Interrupted(signum)


def _resume_hint(args, argv) -> str:
    """Where the last checkpoint is and the command that continues the run."""
    if args.command != "train":
        return "the demo keeps no checkpoints; run it again to start over"
    from odeflow.experiments import checkpoint
    out = Path(args.out)
    last = checkpoint.LAST_SAVED.get("path")
    if last is not None:
        last = f"{last} ({checkpoint.LAST_SAVED['where']})"
    else:  # written by worker processes, or in an earlier session
        files = sorted(out.glob("*.npz"), key=lambda p: p.stat().st_mtime) if out.is_dir() else []
        last = (None if not files else files[0] if len(files) == 1
                else f"{files[-1]} (newest of the {len(files)} in {out})")
    words = ["odeflow"] + list(argv)
    if "--resume" not in words:
        words.append("--resume")
    command = " ".join(shlex.quote(w) for w in words)
    if last is None:
        return f"no checkpoint was written yet; `{command}` starts the run again"
    return f"last checkpoint {last}; continue with `{command}`"


def main(argv=None) -> int:
    """Run the ``odeflow`` command with `argv` (default ``sys.argv[1:]``); returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    debug = args.debug or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    from odeflow.errors import OdeflowError
    from odeflow.experiments.checkpoint import LAST_SAVED
    LAST_SAVED.clear()
    previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    previous_int = signal.getsignal(signal.SIGINT)
    try:
        if args.command == "demo":
            return _demo(args)
        return args.train(args)
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the message short
        print(f"\nodeflow: interrupted by {signal.Signals(signum).name}; {_resume_hint(args, argv)}",
              file=sys.stderr, flush=True)
        if debug:
            raise
        return 128 + int(signum)
    except OdeflowError as exc:
        if debug:
            raise
        message = " ".join(str(exc).split())  # one line, whatever the exception's layout
        print(f"odeflow: error: {message}", file=sys.stderr, flush=True)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
