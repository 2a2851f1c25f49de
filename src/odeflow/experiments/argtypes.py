"""argparse ``type=`` functions for the numeric flags of ``odeflow train``.

A bad value makes argparse print ``odeflow train NAME: error: argument
--flag: <why>`` and exit with status 2, before any work starts. Each
function raises :class:`argparse.ArgumentTypeError` with the reason.
"""
from __future__ import annotations

import argparse
import math

__all__ = ["SESSION_FLAGS", "run_settings", "positive_int", "nonnegative_int", "positive_float", "nonnegative_float", "finite_float",
           "fraction", "open_fraction", "steer_fraction", "int_list", "choice_list",
           "add_regularisation_arguments", "regularisation"]


# flags that steer a session, not the run: never stored in a checkpoint or compared on --resume
SESSION_FLAGS = frozenset({"out", "resume", "no_progress", "no_figures", "debug", "command", "experiment",
                           "train", "jobs", "checkpoint_every"})


def run_settings(args, exclude=()) -> dict:
    """The command-line settings of a run: every parsed option but the session flags and
    `exclude` (those stored elsewhere, e.g. as fields of a configuration dataclass)."""
    return {k: v for k, v in vars(args).items() if k not in SESSION_FLAGS and k not in exclude}


def _int(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def _float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _checked(parse, ok, requirement, doc):
    """A type function: ``parse(text)``, then refused unless ``ok(value)``."""
    def check(text):
        value = parse(text)
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {requirement}; got {text!r}")
        return value
    check.__doc__ = doc
    return check


positive_int = _checked(_int, lambda v: v >= 1, "a positive integer", "An integer >= 1.")
nonnegative_int = _checked(_int, lambda v: v >= 0, "an integer >= 0", "An integer >= 0.")
finite_float = _checked(_float, lambda v: True, "a finite number", "Any finite float (no inf, no NaN).")
positive_float = _checked(_float, lambda v: v > 0, "a number > 0", "A finite float > 0.")
nonnegative_float = _checked(_float, lambda v: v >= 0, "a number >= 0", "A finite float >= 0.")
fraction = _checked(_float, lambda v: 0 <= v <= 1, "between 0 and 1",
                    "A float in [0, 1] (a probability, a momentum).")
open_fraction = _checked(_float, lambda v: 0 < v <= 1, "> 0 and <= 1", "A float in (0, 1] (a decay factor).")
steer_fraction = _checked(_float, lambda v: 0 <= v < 1, ">= 0 and < 1 (0: off)",
                          "A float in [0, 1): STEER's relative half-width, 0 for off.")


def add_regularisation_arguments(parser, defaults):
    """``--kinetic``, ``--jacobian`` and ``--steer`` (:mod:`odeflow.regularizers`), with
    `defaults` an object holding ``kinetic``, ``jacobian`` and ``steer``."""
    parser.add_argument("--kinetic", type=nonnegative_float, default=defaults.kinetic,
                        help="weight of RNODE's kinetic-energy penalty (default: %(default)s, off)")
    parser.add_argument("--jacobian", type=nonnegative_float, default=defaults.jacobian,
                        help="weight of RNODE's Jacobian Frobenius penalty, Hutchinson's estimate "
                        "(default: %(default)s, off)")
    parser.add_argument("--steer", type=steer_fraction, default=defaults.steer,
                        help="STEER: training solves end at a time drawn uniformly within this "
                        "fraction of the interval around its end (default: %(default)s, off)")


def regularisation(kinetic, jacobian, steer):
    """``(regularizers, steer)`` for the models from the three flags' values (0 means off)."""
    from odeflow.regularizers import jacobian_frobenius, kinetic_energy
    regs = ([kinetic_energy(kinetic)] if kinetic else []) + ([jacobian_frobenius(jacobian)] if jacobian else [])
    return regs, (steer or None)


def int_list(separator, minimum=1, what="integers"):
    """A type for ``"2-64-2"``-style lists of integers >= `minimum`, split at `separator`."""
    def parse(text):
        parts = text.split(separator)
        try:
            values = tuple(int(p) for p in parts)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be {what} separated by {separator!r} (e.g. '2{separator}64{separator}2'); "
                f"got {text!r}") from None
        if any(v < minimum for v in values):
            raise argparse.ArgumentTypeError(f"every entry must be >= {minimum}; got {text!r}")
        return values
    parse.__name__ = what.replace(" ", "_")  # argparse names the type in its messages
    return parse


def choice_list(separator, choices):
    """A type for ``"U1,U2"``-style lists of names among `choices`."""
    def parse(text):
        values = tuple(p.strip() for p in text.split(separator))
        bad = [v for v in values if v not in choices]
        if bad:
            raise argparse.ArgumentTypeError(f"entries must be among {', '.join(choices)}; got "
                                             f"{', '.join(map(repr, bad))}")
        return values
    parse.__name__ = "list"
    return parse
