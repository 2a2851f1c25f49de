"""Small real time series from CSV, strictly parsed; the hare-lynx record ships with odeflow.

File format read by :func:`load_series_csv`::

    # any number of comment lines starting with '#' (anywhere; kept as the source notes)
    time,name1,name2,...          <- header: at least two non-empty, distinct names
    1900,30.0,4.0                 <- rows: as many fields as the header, all finite numbers
    ...

The first column is the time and must be strictly increasing. Blank lines are
ignored; fields are stripped of surrounding spaces.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from odeflow.errors import DataFormatError, InputTypeError

__all__ = ["Series", "load_series_csv", "load_hare_lynx", "parse_series_csv"]


@dataclass(frozen=True)
class Series:
    """A multivariate time series with named columns.

    Attributes
    ----------
    t : ndarray, shape (n,), float64
        Times (first CSV column), strictly increasing, in the file's units.
    values : ndarray, shape (n, k), float64
        The other columns.
    names : tuple of str, length k + 1
        Column names, time first.
    comments : tuple of str
        The comment lines without the leading '#' (the source citation).
    source : str
        The file (or package resource) the series was read from.
    """

    t: np.ndarray
    values: np.ndarray
    names: tuple[str, ...]
    comments: tuple[str, ...]
    source: str

    def column(self, name: str) -> np.ndarray:
        """One column by name (the time column included), shape (n,), float64."""
        if name not in self.names:
            raise KeyError(f"{name!r}: columns are {', '.join(self.names)}")
        i = self.names.index(name)
        return self.t if i == 0 else self.values[:, i - 1]


def parse_series_csv(text: str, source: str = "<string>") -> Series:
    """Parse the text of a series CSV (format in the module docstring).

    Parameters
    ----------
    text : str
        The whole file content.
    source : str, default "<string>"
        Name used in error messages and stored in :attr:`Series.source`.

    Returns
    -------
    Series

    Raises
    ------
    DataFormatError
        Naming ``source``, the 1-based line number and the problem: no header, a
        header with fewer than two or empty or repeated names, no data rows, a row
        with a different number of fields than the header (ragged), a field that is
        not a finite number, or a time not greater than the previous one.
    """
    comments: list[str] = []
    header: list[str] | None = None
    rows: list[list[float]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            comments.append(stripped[1:].strip())
            continue
        fields = [f.strip() for f in stripped.split(",")]
        where = f"{source}, line {lineno}"
        if header is None:
            if len(fields) < 2:
                raise DataFormatError(f"{where}: header needs a time column and at least one "
                                      f"value column; got {stripped!r}")
            if any(not f for f in fields):
                raise DataFormatError(f"{where}: header has an empty column name: {stripped!r}")
            if len(set(fields)) != len(fields):
                raise DataFormatError(f"{where}: header repeats a column name: {stripped!r}")
            header = fields
            continue
        if len(fields) != len(header):
            raise DataFormatError(f"{where}: ragged row: {len(fields)} fields, the header has "
                                  f"{len(header)}")
        row = []
        for name, field in zip(header, fields):
            try:
                value = float(field)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise DataFormatError(f"{where}: column {name!r}: {field!r} is not a finite number")
            row.append(value)
        if rows and not row[0] > rows[-1][0]:
            raise DataFormatError(f"{where}: time column {header[0]!r} must increase strictly: "
                                  f"{row[0]:g} follows {rows[-1][0]:g}")
        rows.append(row)
    if header is None:
        raise DataFormatError(f"{source}: empty: no header line (only comments or blank lines)")
    if not rows:
        raise DataFormatError(f"{source}: no data rows after the header")
    data = np.array(rows, dtype=np.float64)
    return Series(t=data[:, 0].copy(), values=data[:, 1:].copy(), names=tuple(header),
                  comments=tuple(comments), source=source)


def load_series_csv(path) -> Series:
    """Read a time series CSV file (format in the module docstring).

    Parameters
    ----------
    path : str or os.PathLike
        The file, UTF-8 text (a byte-order mark is accepted).

    Returns
    -------
    Series

    Raises
    ------
    DataFormatError
        If the file is not UTF-8 text or is malformed (see :func:`parse_series_csv`);
        the message names the file and, for malformed content, the line number.
    InputTypeError
        If ``path`` is not a str or path-like.
    OSError
        If the file cannot be read (for example it does not exist).
    """
    try:
        path = Path(os.fspath(path))
    except TypeError as exc:
        raise InputTypeError(f"`path` must be a str or os.PathLike; got {type(path).__name__}") from exc
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    return parse_series_csv(text, str(path))


def load_hare_lynx() -> Series:
    """Hudson's Bay Company snowshoe hare and Canada lynx pelt records, 1900-1920.

    Shipped with odeflow as ``odeflow/data/hare_lynx.csv``; its comment lines give
    the source. The classic predator-prey record (21 yearly points).

    Returns
    -------
    Series
        ``t`` the year (1900.0 .. 1920.0), ``values`` shape (21, 2), columns
        ``("hare", "lynx")`` in thousands of pelts, ``names = ("year", "hare", "lynx")``.

    References
    ----------
    .. [1] D. A. MacLulich, "Fluctuations in the numbers of the varying hare (Lepus
       americanus)", University of Toronto Studies, Biological Series 43 (1937).
    .. [2] E. P. Odum, Fundamentals of Ecology (1953).
    """
    resource = resources.files("odeflow.data").joinpath("hare_lynx.csv")
    return parse_series_csv(resource.read_text(encoding="utf-8-sig"), "odeflow/data/hare_lynx.csv")
