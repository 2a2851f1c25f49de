"""Ensembles: many independent solves of one jitted ODE, on every core or on a Dask cluster.

:func:`solve_ensemble` integrates ``dy/dt = func(t, y, *args_i)``, ``y(t_0) =
y0s[i]`` for every member ``i`` (a parameter sweep, a Monte Carlo set of
initial conditions). Each member is an ordinary solve by the compiled adaptive
loop of :mod:`odeflow.solvers.loop` with its own step sizes: the members never
share an error norm, so a member's result does not depend on the others
(nor on how members are split into chunks, threads or machines).

How it runs
-----------
* ``@njit`` ``func`` (the fast path): one compiled chunk runner loops over a
  range of members in nopython mode with the GIL released (Numba ``nogil``);
  ``workers`` threads each run chunks, so all cores work at once. The runner
  takes ``func`` as a Numba first-class function, so it is compiled once per
  argument types and cached on disk (:mod:`odeflow.solvers.compiled`): a new
  process or Dask worker only compiles ``func`` itself, reported with the
  cache load in ``stats["compile_seconds"]``.
* A plain Python ``func``: a documented slower fallback, members solved one
  after another by :func:`odeflow.solve` in the calling thread (no
  parallelism: the GIL is held).
* ``client=`` a ``dask.distributed.Client``: members are split into chunks,
  each chunk is one task (``client.map``) that runs the local path above on a
  worker; results are gathered in member order, identical to the local run.
  Dask is an optional dependency (``pip install odeflow[dask]``).

Failures stay per member: a member that blows up (step size underflow, too
many steps, non-finite values, a ``func`` returning the wrong size) gets its
status and message; the others are unaffected, and nothing is raised.
"""
from __future__ import annotations

import math
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numba
import numba.extending
import numpy as np

from odeflow.errors import InputError, InputTypeError, ShapeError, SolverError
from odeflow.solvers import loop as _loop
from odeflow.solvers import events as _events
from odeflow.solvers.jumps import jumps_inside
from odeflow.solvers.controller import CONTROLLERS
from odeflow.solvers.jit import is_jitted
from odeflow.solvers.kernels import all_finite
from odeflow.solvers.loop import adaptive_kernel as _adaptive, evaluate as _evaluate
from odeflow.solvers.validate import as_state

__all__ = ["solve_ensemble", "EnsembleSolution", "MAX_ARGS"]

MAX_ARGS = 4  # per-member arguments func(t, y, a_1, ..., a_k) the compiled path supports

_runners = {}  # argument types -> the explicit-signature dispatcher of _run_chunk


class EnsembleSolution:
    """Stacked results of :func:`solve_ensemble`.

    Attributes
    ----------
    t : ndarray, float64, shape (m,)
    y : ndarray, shape (members, m, *state shape)
        ``y[i, k]`` is member ``i`` at ``t[k]``. Rows a failed member did not
        reach are NaN (its ``status`` says why and ``rows[i]`` how many it completed).
    status : ndarray of str, shape (members,)
        ``"success"``, ``"step_size_underflow"``, ``"max_steps_exceeded"``,
        ``"nonfinite_derivative"`` or ``"bad_output_size"``.
    messages : list of str, one per member
    rows : ndarray, int64, shape (members,), output rows completed
    stats : dict
        Per-member int64 arrays ``nfe``, ``n_accepted``, ``n_rejected``; and
        ``compile_seconds``, ``wall_seconds``, ``workers``, ``chunks``.
    """

    def __init__(self, t, y, status, messages, rows, stats):
        self.t, self.y, self.status, self.messages, self.rows, self.stats = t, y, status, messages, rows, stats

    @property
    def success(self):
        """ndarray of bool, shape (members,): which members reached the end."""
        return self.status == "success"

    def __repr__(self):
        return (f"EnsembleSolution(members={self.y.shape[0]}, y.shape={self.y.shape}, "
                f"failed={int((~self.success).sum())})")


_NAMES = {_loop.SUCCESS: "success", _loop.UNDERFLOW: "step_size_underflow",
          _loop.MAX_STEPS: "max_steps_exceeded", _loop.NONFINITE: "nonfinite_derivative",
          _loop.BAD_SIZE: "bad_output_size"}


def _no_events(t0, n, shape):
    """The adaptive loop's ``ev`` argument for a solve without event functions."""
    fns, terminal, direction = _events.as_events(None)
    return terminal, direction, _events.initial_values(fns, t0, np.zeros(n), shape), _events.SAMPLES_PER_STEP


def _member(args, i):
    """``(args[0][i], ..., args[k-1][i])``: member ``i``'s arguments (compiled only)."""
    raise NotImplementedError


@numba.extending.overload(_member, inline="always")
def _member_compiled(args, i):
    k = len(args)  # one implementation per arity: Numba needs the tuple written out
    if k == 0:
        return lambda args, i: ()
    if k == 1:
        return lambda args, i: (args[0][i],)
    if k == 2:
        return lambda args, i: (args[0][i], args[1][i])
    if k == 3:
        return lambda args, i: (args[0][i], args[1][i], args[2][i])
    return lambda args, i: (args[0][i], args[1][i], args[2][i], args[3][i])


def _run_chunk(func, lo, hi, t_out, Y0, shape, args, rtol, atol, A, b, b_err, c, P, error_order, first_step,
               max_step, max_steps, beta, stretch, b_err3, n_extra, stiff_bound, ev, jumps, min_step,
               ys, status, rows, nfe, n_acc, n_rej, t_stop, h_stop):
    """Members ``lo..hi-1``, each an ordinary compiled solve (compiled by :func:`_chunk_runner`)."""
    n = Y0.shape[1]
    for i in range(lo, hi):
        y0 = Y0[i].copy()
        f0 = np.empty(n, Y0.dtype)
        fargs = _member(args, i)
        nfe[i] = 1
        t_stop[i] = t_out[0]
        if not _evaluate(func, fargs, t_out[0], y0, shape, f0):
            status[i] = _loop.BAD_SIZE
            continue
        if not all_finite(f0):
            status[i] = _loop.NONFINITE
            continue
        out = _adaptive(func, fargs, t_out, y0, f0, shape, rtol, atol, A, b, b_err, c, P, error_order,
                        first_step, max_step, max_steps, beta, stretch, False, b_err3, n_extra, stiff_bound,
                        ev, jumps, min_step)
        status[i] = out[0]
        rows[i] = out[2]
        ys[i, : out[2]] = out[1][: out[2]]
        t_stop[i] = out[3]
        h_stop[i] = out[4]
        nfe[i] = out[6]
        n_acc[i] = out[7]
        n_rej[i] = out[8]


def _chunk_runner(func, args, shape, fixed):
    """``runner(lo, hi)`` running :func:`_run_chunk` compiled, with ``func`` a first-class function
    argument: compiled once per argument types and cached on disk (see
    :mod:`odeflow.solvers.compiled`), so a Dask worker or a new process only compiles ``func``.
    Returns the runner and the seconds spent compiling or loading."""
    from odeflow.solvers.compiled import function_type
    from odeflow.solvers.jit import OPTIONS

    start = time.perf_counter()
    n_before = len(func.overloads)
    y_type = numba.types.Array(numba.from_dtype(fixed[1].dtype), len(shape), "C")
    ftype, pointer = function_type(func, (numba.types.float64, y_type) + tuple(numba.typeof(a[0]) for a in args))
    sig = (ftype, numba.types.int64, numba.types.int64) + tuple(numba.typeof(x) for x in fixed)
    disp = _runners.get(sig)
    fresh = disp is None
    if fresh:
        disp = _runners[sig] = numba.njit([sig], cache=True, **OPTIONS)(_run_chunk)
    seconds = time.perf_counter() - start if fresh or len(func.overloads) > n_before else 0.0

    def runner(lo, hi):
        disp(pointer, lo, hi, *fixed)
    return runner, seconds


def _check(func, y0s, t, args, method, rtol, atol, options, workers):
    """Every argument check, before any work; returns the prepared pieces."""
    from odeflow.solvers.integrate import prepare

    if not callable(func):
        raise InputTypeError(f"`func` must be callable as func(t, y, *args); got {type(func).__name__}")
    Y0 = as_state(y0s, "y0s")
    if Y0.ndim < 2:
        raise ShapeError(f"`y0s` must have shape (members, *state shape) with a state of at least one "
                         f"axis; got shape {Y0.shape}")
    members = Y0.shape[0]
    if args is None:
        args = ()
    if not isinstance(args, tuple):
        raise InputTypeError(f"`args` must be a tuple of per-member arrays or None; got {type(args).__name__}")
    if len(args) > MAX_ARGS:
        raise InputError(f"`args` may hold at most {MAX_ARGS} arrays; got {len(args)} (stack them)")
    checked = []
    for k, a in enumerate(args):
        arr = as_state(a, f"args[{k}]")
        if arr.ndim == 0 or arr.shape[0] != members:
            raise ShapeError(f"`args[{k}]` of shape {arr.shape} must have a leading axis of length "
                             f"{members} (one entry per member, as `y0s` of shape {Y0.shape})")
        checked.append(np.ascontiguousarray(arr, dtype=np.float64))
    tab, _, t_arr, rtol_f, atol_f, opts = prepare(func, Y0[0] if members else np.zeros(Y0.shape[1:], Y0.dtype),
                                                  t, rtol, atol, method, options)
    if tab is None or not tab.adaptive:
        raise InputError(f"`solve_ensemble` runs explicit adaptive methods (dopri5, bosh3, tsit5, "
                         f"dop853); got {method!r}")
    if t_arr.size > 1 and np.any(t_arr[1:] == t_arr[:-1]):
        i = int(np.argmax(t_arr[1:] == t_arr[:-1])) + 1
        raise InputError(f"`t` must not repeat a time for solve_ensemble; t[{i}] = {float(t_arr[i])!r} "
                         f"repeats t[{i - 1}] (drop the repeat and copy the row afterwards)")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, (int, np.integer))
                                or workers < 1):
        raise InputError(f"`workers` must be a positive int or None; got {workers!r}")
    return tab, Y0, tuple(checked), t_arr, rtol_f, atol_f, opts


def solve_ensemble(func, y0s, t, *, args=None, rtol=1e-7, atol=1e-9, method="dopri5", options=None,
                   workers=None, chunk_size=None, client=None):
    """Solve ``dy/dt = func(t, y, *args_i)`` from ``y0s[i]`` for every member ``i``.

    Parameters
    ----------
    func : ``@numba.njit`` function ``func(t, y, a_1, ..., a_k) -> dy/dt``
        ``t`` a float, ``y`` of the state shape, ``a_j`` member ``i``'s entry
        ``args[j][i]`` (a float for 1-D ``args[j]``, a row for 2-D). A plain
        Python function also works, members then run one after another
        (the slower fallback; see the module docstring).
    y0s : array_like, shape (members, *state shape)
    t : array_like of float, shape (m,), strictly monotone (no repeated time); shared by all members.
    args : tuple of up to 4 arrays, each with leading axis of length ``members``, optional
    rtol, atol : float or array_like broadcastable to the state shape
    method : {'dopri5', 'bosh3'}
    options : dict, optional, as :func:`odeflow.solve` (``first_step``, ``max_step``,
        ``max_steps``, ``controller``), applied to every member.
    workers : int, optional
        Threads on this machine (default: the CPUs this process may use).
    chunk_size : int, optional
        Members per chunk (per thread task, or per Dask task). Default: the
        members split into 16 chunks per thread, or 4 per Dask worker (a
        balance between scheduling cost and uneven member difficulty: with 4
        per thread, the last chunks of a sweep whose members grow harder left
        a core idle; 10 000 Lorenz members, rho 10-40, went from 1.69x to
        1.78x over one thread on 2 cores).
    client : dask.distributed.Client, optional
        Run the chunks as tasks on this cluster (each worker runs the local path
        with one thread per chunk).

    Returns
    -------
    EnsembleSolution

    Raises
    ------
    InputTypeError, InputError, ShapeError
        Before any work: bad ``func``, ``y0s``, ``t``, tolerances, options;
        ``args`` whose leading size is not the number of members; a fixed-step method.
    """
    tab, Y0, args, t_arr, rtol_f, atol_f, opts = _check(func, y0s, t, args, method, rtol, atol, options,
                                                        workers)
    members = Y0.shape[0]
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    n_workers = workers
    if client is not None:
        if not (hasattr(client, "map") and hasattr(client, "scheduler_info")):
            raise InputTypeError(f"`client` must be a dask.distributed.Client; got {type(client).__name__}")
        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    if chunk_size is None:
        per_worker = 4 if client is not None else 16  # a Dask task costs ~ms to schedule, a thread's chunk us
        chunk_size = max(1, math.ceil(members / (per_worker * n_workers)))
    elif isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise InputError(f"`chunk_size` must be a positive int or None; got {chunk_size!r}")
    bounds = [(lo, min(lo + chunk_size, members)) for lo in range(0, members, chunk_size)]
    start = time.perf_counter()
    if client is not None:
        parts = _run_dask(client, func, Y0, args, t, rtol, atol, method, options, bounds)
    else:
        parts = [_run_local(func, Y0, args, tab, method, t_arr, rtol_f, atol_f, opts, bounds, workers)]
    out = _merge(parts, t_arr, Y0, method, opts)
    out.stats.update(wall_seconds=time.perf_counter() - start, workers=n_workers, chunks=len(bounds))
    return out


def _run_local(func, Y0, args, tab, method, t_arr, rtol_f, atol_f, opts, bounds, workers):
    """Every chunk of ``bounds`` on this machine; a dict of per-member arrays."""
    members, shape = Y0.shape[0], Y0.shape[1:]
    n = math.prod(shape)
    m = t_arr.size
    res = {"ys": np.full((members, m, n), np.nan, Y0.dtype), "status": np.zeros(members, np.int64),
           "rows": np.ones(members, np.int64), "nfe": np.zeros(members, np.int64),
           "n_acc": np.zeros(members, np.int64), "n_rej": np.zeros(members, np.int64),
           "t_stop": np.full(members, t_arr[0]), "h_stop": np.zeros(members), "compile_seconds": 0.0,
           "messages": {}}
    if members == 0:
        return res
    res["ys"][:, 0] = Y0.reshape(members, n)
    if m == 1 or n == 0:
        res["ys"][:] = Y0.reshape(members, 1, n)
        res["rows"][:] = m
        return res
    if not is_jitted(func):
        _run_python(func, Y0, args, t_arr, rtol_f, atol_f, method, opts, res)
        return res
    beta, stretch = CONTROLLERS[opts.get("controller") or "pi"]
    from odeflow.solvers.integrate import DEFAULT_MAX_STEPS
    fixed = (t_arr, np.ascontiguousarray(Y0.reshape(members, n)), shape, args, rtol_f, atol_f, tab.A_arr,
             tab.b_arr, tab.b_err_arr, tab.c_arr, tab.P_arr, tab.error_order,
             float(opts.get("first_step") or 0.0), float(opts.get("max_step") or np.inf),
             int(opts.get("max_steps") or DEFAULT_MAX_STEPS), beta, stretch, tab.b_err3_arr, tab.n_extra,
             tab.stiff_bound, _no_events(t_arr[0], n, shape), jumps_inside(opts.get("jump_t"), t_arr[0], t_arr[-1]),
             float(opts.get("min_step") or 0.0), res["ys"], res["status"],
             res["rows"], res["nfe"], res["n_acc"], res["n_rej"], res["t_stop"], res["h_stop"])
    runner, res["compile_seconds"] = _chunk_runner(func, args, shape, fixed)
    todo = bounds
    if workers == 1 or len(todo) == 1:
        for lo, hi in todo:
            runner(lo, hi)
    else:  # the runner releases the GIL: these threads run on all cores at once
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(lambda b: runner(b[0], b[1]), todo))
    return res


def _run_python(func, Y0, args, t_arr, rtol_f, atol_f, method, opts, res):
    """The fallback for a Python ``func``: :func:`odeflow.solve` member by member."""
    from odeflow.solvers.integrate import solve

    shape = Y0.shape[1:]
    for i in range(Y0.shape[0]):
        a_i = tuple(a[i] for a in args)
        try:
            sol = solve(lambda s, y: func(s, y, *a_i), Y0[i], t_arr, rtol=rtol_f.reshape(shape),
                        atol=atol_f.reshape(shape), method=method,
                        options=opts or None, dense_output=False)
            code = _loop.SUCCESS
        except SolverError as exc:
            sol = exc.solution
            code = {v: k for k, v in _NAMES.items()}[sol.status]
            res["t_stop"][i], res["h_stop"][i] = exc.t, exc.h
            res["messages"][i] = str(exc)
        except ShapeError as exc:
            res["status"][i] = _loop.BAD_SIZE
            res["messages"][i] = str(exc)
            continue
        rows = sol.y.shape[0]
        res["ys"][i, :rows] = sol.y.reshape(rows, -1)
        res["status"][i], res["rows"][i] = code, rows
        res["nfe"][i], res["n_acc"][i], res["n_rej"][i] = (sol.stats["nfe"], sol.stats["n_accepted"],
                                                         sol.stats["n_rejected"])


def _merge(parts, t_arr, Y0, method, opts):
    """One EnsembleSolution from the per-chunk results, with a message per member."""
    from odeflow.solvers.integrate import failure_message

    def cat(key):
        return np.concatenate([p[key] for p in parts]) if len(parts) > 1 else parts[0][key]

    members, shape = Y0.shape[0], Y0.shape[1:]
    ys, status, rows = cat("ys"), cat("status"), cat("rows")
    nfe, n_acc, n_rej, t_stop, h_stop = cat("nfe"), cat("n_acc"), cat("n_rej"), cat("t_stop"), cat("h_stop")
    given, offset = {}, 0
    for p in parts:
        given.update({offset + i: msg for i, msg in p["messages"].items()})
        offset += p["status"].size
    messages = []
    for i in range(members):
        code = int(status[i])
        if i in given:
            messages.append(given[i])
        elif code == _loop.SUCCESS:
            messages.append("reached the end of the interval")
        elif code == _loop.BAD_SIZE:
            messages.append(f"`func` must return dy/dt with the state shape {shape}; it returned an array "
                            f"of a different size at t = {float(t_stop[i])!r}")
        elif code == _loop.NONFINITE and n_acc[i] + n_rej[i] == 0 and nfe[i] == 1:
            messages.append(f"{method}: func(t0, y0) returned non-finite values at t = {float(t_arr[0])!r}; "
                            f"nothing can be integrated from there")
        else:
            messages.append(failure_message(code, method, t_stop[i], h_stop[i],
                                            {"nfe": int(nfe[i]), "n_steps": int(n_acc[i] + n_rej[i])}, opts))
    names = np.array([_NAMES[int(c)] for c in status], dtype="<U20")
    stats = {"nfe": nfe, "n_accepted": n_acc, "n_rejected": n_rej,
             "compile_seconds": max(p["compile_seconds"] for p in parts)}
    return EnsembleSolution(t_arr.copy(), ys.reshape((members, t_arr.size) + shape), names, messages,
                            rows, stats)


def _remote_chunk(func, Y0, args, t, rtol, atol, method, options):
    """One Dask task: the local path on one chunk of members (one thread: the worker's
    own threads run the other tasks)."""
    tab, Y0, args, t_arr, rtol_f, atol_f, opts = _check(func, Y0, t, args, method, rtol, atol, options, 1)
    return _run_local(func, Y0, args, tab, method, t_arr, rtol_f, atol_f, opts, [(0, Y0.shape[0])], 1)


def _run_dask(client, func, Y0, args, t, rtol, atol, method, options, bounds):
    """Each chunk one task on ``client``'s cluster (``client.map``), gathered in member order."""
    try:
        import distributed  # noqa: F401  (the optional extra)
    except ImportError:  # pragma: no cover - depends on the installation
        raise InputError("`client` needs dask.distributed: pip install 'odeflow[dask]'") from None
    futures = client.map(_remote_chunk, [func] * len(bounds), [Y0[lo:hi] for lo, hi in bounds],
                         [tuple(a[lo:hi] for a in args) for lo, hi in bounds], t=t, rtol=rtol, atol=atol,
                         method=method, options=options, pure=False)
    return client.gather(futures)
