"""argparse ``type=`` functions for the numeric flags of ``odeflow train``.

A bad value makes argparse print ``odeflow train NAME: error: argument
--flag: <why>`` and exit with status 2, before any work starts. Each
function raises :class:`argparse.ArgumentTypeError` with the reason.
"""
from __future__ import annotations

import argparse
import math

__all__ = ["positive_int", "nonnegative_int", "positive_float", "nonnegative_float", "finite_float",
           "fraction", "open_fraction", "int_list", "choice_list"]


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


def positive_int(text):
    """An integer >= 1."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {text!r}")
    return value


def nonnegative_int(text):
    """An integer >= 0."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0; got {text!r}")
    return value


def finite_float(text):
    """Any finite float (no inf, no NaN)."""
    return _float(text)


def positive_float(text):
    """A finite float > 0."""
    value = _float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0; got {text!r}")
    return value


def nonnegative_float(text):
    """A finite float >= 0."""
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0; got {text!r}")
    return value


def fraction(text):
    """A float in [0, 1] (a probability, a momentum)."""
    value = _float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1; got {text!r}")
    return value


def open_fraction(text):
    """A float in (0, 1] (a decay factor)."""
    value = _float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be > 0 and <= 1; got {text!r}")
    return value


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
