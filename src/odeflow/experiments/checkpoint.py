"""Checkpoints of the training commands: one file format, one write rule, one resume rule.

A checkpoint is an ``.npz`` file of numeric arrays (never pickled objects)
plus one array ``meta`` holding JSON text: the command that wrote it, the full
configuration of the run, and the number of finished steps (epochs or
iterations). The three training commands share the rules below.

Writing (:func:`save`)
    Every floating-point array (model, optimizer state, evaluation history)
    is checked first: a non-finite value raises
    :class:`~odeflow.errors.TrainingError` naming the step, and the previous
    checkpoint stays as it was. The data go to a temporary file in the same
    folder, are flushed to disk (``fsync``), and then replace the old file
    (``os.replace``, atomic on POSIX and Windows); the folder is synced too,
    so the rename survives a power cut.
Starting (:func:`begin`)
    Temporary files left by a killed write are removed. ``--resume`` without a
    checkpoint says so and starts fresh.
Reading (:func:`load`)
    A file that is not a checkpoint (empty, truncated, a folder, a text file,
    missing arrays) raises :class:`~odeflow.errors.DataFormatError` naming the
    path and what is wrong.
Resuming (:func:`check_config`)
    The saved configuration must equal the current one, except the run
    length (``epochs``, ``iters``, ``iterations``...), which may grow: a
    schedule that depends only on the step number (never on the run length)
    makes the extended run continue exactly as a fresh longer run would.
    Any other difference is refused with the list of differences
    (:class:`~odeflow.errors.ResumeError`).
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from odeflow.errors import DataFormatError, InputError, ResumeError, TrainingError

__all__ = ["FORMAT", "atomic_savez", "load_npz", "save", "load", "begin", "remove_stale_temporaries",
           "check_config", "check_finite_arrays", "optimizer_arrays", "load_optimizer_arrays",
           "jsonable"]

FORMAT = "odeflow-checkpoint-1"
LAST_SAVED: dict = {}  #: ``path`` and ``where`` of the last checkpoint this process wrote
_TMP_SUFFIX = ".tmp"


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}."


def atomic_savez(path, **arrays) -> Path:
    """Write ``arrays`` to the ``.npz`` file ``path`` atomically and durably.

    Temporary file in the same folder, ``fsync``, ``os.replace``, ``fsync`` of
    the folder: an interrupted run leaves either the old file or the new one,
    plus at worst a temporary file that :func:`remove_stale_temporaries` deletes.

    Raises
    ------
    InputError
        An array of dtype object (it would need pickle, which :func:`load_npz` refuses).
    """
    for name, value in arrays.items():
        if np.asarray(value).dtype.kind == "O":
            raise InputError(f"`{name}` has dtype object; checkpoints hold numeric arrays only")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temporary_prefix(path), suffix=_TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)  # mkstemp makes the file private (0600): give it the usual mode
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)
    return path


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows cannot open a folder
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on folders
        pass
    finally:
        os.close(fd)


def remove_stale_temporaries(path) -> list:
    """Delete the temporary files a killed :func:`atomic_savez` of ``path`` left behind.

    Returns the paths removed. Only files named like this module's temporaries
    of ``path`` (``.<name>.XXXX.tmp`` in the same folder) are touched.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    removed = []
    for p in path.parent.glob(_temporary_prefix(path) + "*" + _TMP_SUFFIX):
        p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def load_npz(path) -> dict:
    """Every array of the ``.npz`` file ``path``, as a dict.

    Raises
    ------
    DataFormatError
        The file is missing, empty, a folder, truncated, or not an ``.npz``
        file of numeric arrays; the message names the path and the problem.
    """
    path = Path(path)
    if path.is_dir():
        raise DataFormatError(f"checkpoint {str(path)!r} is a folder, not a file")
    if not path.exists():
        raise DataFormatError(f"checkpoint {str(path)!r} does not exist")
    size = path.stat().st_size
    if size == 0:
        raise DataFormatError(f"checkpoint {str(path)!r} is empty (0 bytes)")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04":
        raise DataFormatError(f"checkpoint {str(path)!r} is not an .npz file (it does not start "
                              f"with the zip signature; {size} bytes)")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as exc:
        raise DataFormatError(f"checkpoint {str(path)!r} is truncated or corrupt "
                              f"({type(exc).__name__}: {exc})") from None


def check_finite_arrays(arrays: dict, step) -> None:
    """Raise :class:`~odeflow.errors.TrainingError` if any float array holds inf or NaN."""
    for name, value in arrays.items():
        value = np.asarray(value)
        if value.dtype.kind in "fc" and not np.all(np.isfinite(value)):
            raise TrainingError(f"`{name}` became non-finite at {step}; nothing was saved (the last "
                                f"good checkpoint is kept). Try a smaller learning rate or tighter "
                                f"tolerances.")


def jsonable(value):
    """``value`` with NumPy scalars and arrays, tuples and paths turned into JSON types."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def save(path, arrays: dict, *, command: str, config: dict, step: int, where: str) -> Path:
    """Check and write one checkpoint.

    Parameters
    ----------
    path : path of the ``.npz`` file
    arrays : dict of str -> ndarray
        Model parameters, optimizer state, history (numeric only).
    command : str
        The writer (``"odenet"``, ``"cnf-ml"``...); a checkpoint of another
        command is refused on reading.
    config : dict
        The full configuration of the run (JSON-serialisable after :func:`jsonable`).
    step : int
        Finished steps (epochs or iterations).
    where : str
        The step in words, for the error message (``"epoch 3"``).

    Raises
    ------
    TrainingError
        A floating-point array holds inf or NaN; nothing is written.
    """
    check_finite_arrays(arrays, where)
    meta = {"format": FORMAT, "command": command, "step": int(step), "config": jsonable(config)}
    path = atomic_savez(path, meta=np.asarray(json.dumps(meta)), **arrays)
    LAST_SAVED.update(path=path, where=where)
    return path


def load(path, *, command: str, required=()) -> tuple:
    """Read a checkpoint written by :func:`save`: ``(arrays, meta)``.

    Raises
    ------
    DataFormatError
        Not a checkpoint (see :func:`load_npz`), no or unreadable ``meta``,
        written by another command, or one of the `required` arrays missing.
    """
    arrays = load_npz(path)
    if "meta" not in arrays:
        raise DataFormatError(f"checkpoint {str(path)!r} has no `meta` entry: not written by odeflow "
                              f"train (or by an older version)")
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except ValueError as exc:
        raise DataFormatError(f"checkpoint {str(path)!r}: its `meta` entry is not JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DataFormatError(f"checkpoint {str(path)!r}: unknown format "
                              f"{meta.get('format') if isinstance(meta, dict) else meta!r}")
    if meta.get("command") != command:
        raise DataFormatError(f"checkpoint {str(path)!r} was written by `{meta.get('command')}`, "
                              f"not `{command}`")
    missing = [k for k in required if k not in arrays]
    if missing:
        raise DataFormatError(f"checkpoint {str(path)!r} lacks the arrays {missing}")
    return arrays, meta


def _flatten(config, prefix=""):
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def check_config(path, saved: dict, current: dict, *, run_length=(), done: int | None = None) -> None:
    """Refuse to resume the checkpoint `path` under settings other than its own.

    Parameters
    ----------
    saved, current : dict
        The stored and the current configuration (nested dicts allowed).
    run_length : collection of str
        Keys (last component of a dotted name) that may grow on resume.
    done : int, optional
        Finished steps of the checkpoint: a run length below it is refused.

    Raises
    ------
    ResumeError
        Listing every differing setting as ``name: saved -> now``.
    """
    saved, current = _flatten(jsonable(saved)), _flatten(jsonable(current))
    diffs, shorter = [], []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key, "<unset>"), current.get(key, "<unset>")
        if a == b or _both_nan(a, b):
            continue
        if key.rsplit(".", 1)[-1] in run_length and isinstance(b, int) and isinstance(a, int):
            if done is not None and b < done:
                shorter.append(f"{key}: {b} is below the {done} already done")
            continue
        diffs.append(f"{key}: {a!r} -> {b!r}")
    if diffs or shorter:
        raise ResumeError(f"--resume: checkpoint {str(path)!r} was written with other settings "
                          f"(saved -> now): {'; '.join(diffs + shorter)}. Only the run length "
                          f"({', '.join(sorted(run_length)) or 'none'}) may change, and only grow; "
                          f"use another --out or drop --resume")


def _both_nan(a, b):
    return isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)


def begin(path, resume: bool, log=print) -> bool:
    """Start a run that checkpoints to `path`; True when it should resume from it.

    Removes stale temporary files of `path`; logs that the run starts fresh
    when `resume` finds no checkpoint, and that an existing one will be
    replaced when not resuming.
    """
    path = Path(path)
    for p in remove_stale_temporaries(path):
        if log:
            log(f"removed {p}, the temporary file of an interrupted checkpoint write")
    if not resume:
        if path.exists() and log:
            log(f"a checkpoint exists at {path}; starting over without it (--resume continues it)")
        return False
    if not path.exists():
        if log:
            log(f"--resume: no checkpoint at {path}; starting fresh")
        return False
    return True


def optimizer_arrays(optimizer, prefix="optim") -> dict:
    """The state of an :mod:`odeflow.optim` optimizer as ``{prefix/i/key: array}``,
    with ``prefix/type`` naming the optimizer class (checked by :func:`load_optimizer_arrays`)."""
    arrays = {f"{prefix}/type": np.asarray(type(optimizer).__name__)}
    for i, state in enumerate(optimizer.state):
        for key, value in state.items():
            arrays[f"{prefix}/{i}/{key}"] = np.asarray(value)
    return arrays


def load_optimizer_arrays(path, optimizer, arrays, prefix="optim") -> None:
    """Restore :func:`optimizer_arrays`'s state into `optimizer`.

    Raises
    ------
    DataFormatError
        The stored optimizer is of another type, or a parameter's state is missing.
    """
    kind = str(arrays.get(f"{prefix}/type", ""))
    if kind != type(optimizer).__name__:
        raise DataFormatError(f"checkpoint {str(path)!r} holds the state of a {kind or 'unknown'} "
                              f"optimizer, not {type(optimizer).__name__}")
    for i, state in enumerate(optimizer.state):
        state.clear()
        head = f"{prefix}/{i}/"
        for key, value in arrays.items():
            if key.startswith(head):
                name = key[len(head):]
                state[name] = int(value) if name == "step" else np.array(value)
