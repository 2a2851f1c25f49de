"""Public entry points: :func:`odeint` and :func:`solve`.

They check the arguments, flatten the state, pick the loop (adaptive or fixed
step) and the way to run it (compiled whole for an ``@njit`` ``func``, plain
Python otherwise), and turn the loop's status into a :class:`Solution` or an
exception of :mod:`odeflow.errors`.
"""
from __future__ import annotations

import time

import numpy as np

from odeflow.blas import limit_blas
from odeflow.errors import (
    InputError, InputTypeError, MaxStepsExceededError, NonFiniteDerivativeError, ShapeError,
    SolverError, StepSizeUnderflowError)
from odeflow.solvers import events as _events
from odeflow.solvers import loop as _loop
from odeflow.solvers.controller import CONTROLLERS
from odeflow.solvers.jit import is_jitted
from odeflow.solvers.kernels import all_finite
from odeflow.solvers.solution import Solution
from odeflow.solvers.stiffness import explain
from odeflow.solvers.tableau import TABLEAUX
from odeflow.solvers.jumps import jumps_inside
from odeflow.solvers.validate import (
    as_state, as_times, as_tolerance, check_options, check_step_resolution, derivative_array, distinct_times)

__all__ = ["odeint", "solve", "METHODS", "method_kind"]

METHODS = tuple(TABLEAUX) + ("radau",)  # radau: implicit, see odeflow.solvers.radau
DEFAULT_MAX_STEPS = 100_000  # Hairer's NMAX

STATUS = {
    _loop.SUCCESS: ("success", None),
    _loop.UNDERFLOW: ("step_size_underflow", StepSizeUnderflowError),
    _loop.MAX_STEPS: ("max_steps_exceeded", MaxStepsExceededError),
    _loop.NONFINITE: ("nonfinite_derivative", NonFiniteDerivativeError),
    _loop.EVENT: ("event", None),
    _loop.MIN_STEP: ("step_size_underflow", StepSizeUnderflowError),
}

_LOOPS = {"adaptive": _loop.adaptive_loop, "fixed": _loop.fixed_loop}


def _run(kind, func, fargs, inplace, args, shape, events=(), jitted=None):
    """Run the ``kind`` loop as Python, or compiled whole when ``func`` and every
    event function are jitted (:mod:`odeflow.solvers.compiled`).

    Returns the loop's tuple and the seconds spent compiling (0.0 if none).
    """
    if jitted is None:
        jitted = is_jitted(func)
    if not (jitted and (not events or _events.is_compiled(events))):
        step = (_events.make_event_step(_events.make_event_function(events, jitted=False), jitted=False)
                if events else _events.no_event_step)
        f = func if inplace else _checked(func, shape)
        loop = _loop.variant(_LOOPS[kind], _loop.python_evaluator(inplace), step)
        return loop(f, fargs, *args), 0.0
    from odeflow.solvers.compiled import run_compiled
    try:
        return run_compiled(kind, func, fargs, inplace, args, tuple(events), flat=len(shape) == 1)
    except SystemError as exc:  # Ctrl-C during the nopython loop trips Numba's boxing of the result
        if _caused_by(exc, KeyboardInterrupt):
            raise KeyboardInterrupt from None
        raise


def _caused_by(exc, kind) -> bool:
    while exc is not None and not isinstance(exc, kind):
        exc = exc.__cause__ or exc.__context__
    return exc is not None


def _checked(func, shape):
    """``func`` whose every output is checked: real numbers, the shape of ``y0``.

    Only for Python functions (a check costs about a microsecond); the first
    evaluation is checked separately, before the loop, by :func:`first_derivative`.
    """
    def checked(t, y, *fargs):
        out = np.asarray(func(t, y, *fargs))
        if out.dtype.kind not in "biuf":
            raise InputTypeError(f"`func` must return real numbers; at t = {float(t)!r} it returned "
                                 f"dtype {out.dtype}")
        if out.shape != shape:
            raise ShapeError(f"`func` must return dy/dt with the shape of `y0` {shape}; at "
                             f"t = {float(t)!r} it returned shape {out.shape}")
        return out
    return checked


def first_derivative(func, t0, y0, shape, fargs=(), inplace=False):
    """``func(t0, y0, *fargs)`` flattened, with its shape checked against ``y0``; with
    ``inplace``, ``func(t0, y0, dydt, *fargs)`` writing ``dydt`` (NaN where it writes nothing,
    so an entry left unwritten is a non-finite derivative, not garbage)."""
    if inplace:
        f0 = np.full(y0.size, np.nan, y0.dtype)
        func(t0, y0.reshape(shape), f0.reshape(shape), *fargs)
        return f0
    f0 = derivative_array(func(t0, y0.reshape(shape), *fargs)).astype(y0.dtype, copy=False)
    if f0.shape != shape:
        raise ShapeError(f"`func` must return dy/dt with the shape of `y0` {shape}; "
                         f"func(t0, y0) returned shape {f0.shape}")
    return np.ascontiguousarray(f0).reshape(-1)


def method_kind(method):
    """The options family of a (valid) method: 'adaptive', 'fixed' or 'radau'."""
    if method == "radau":
        return "radau"
    return "adaptive" if TABLEAUX[method].adaptive else "fixed"


def prepare(func, y0, t, rtol, atol, method, options, args=(), inplace=False):
    """Check every argument (before any evaluation); return ``(tableau, y0, t, rtol, atol, options)``
    with ``y0`` an ndarray copy, ``t`` float64 and the tolerances flat float64 arrays."""
    if not callable(func):
        raise InputTypeError(f"`func` must be callable as func(t, y); got {type(func).__name__}")
    check_args(args)
    if not isinstance(inplace, (bool, np.bool_)):
        raise InputTypeError(f"`inplace` must be True or False; got {inplace!r}")
    if not isinstance(method, str) or method not in METHODS:
        raise InputError(f"`method` must be one of {', '.join(METHODS)}; got {method!r}")
    tab = TABLEAUX.get(method)  # None for radau (implicit)
    y0 = as_state(y0)
    if is_jitted(func) and not func._can_compile:  # explicit signatures only
        from odeflow.solvers.compiled import check_signature, func_argtypes
        check_signature(func, func_argtypes(y0, args, inplace), y0, inplace)
    t = as_times(t)
    opts = check_options(options, method_kind(method), method)
    check_step_resolution(opts, t[0])
    eps = np.finfo(y0.dtype).eps
    rtol = as_tolerance(rtol, "rtol", y0.shape, y0.dtype,
                        minimum=100 * eps if tab is None or tab.adaptive else None)
    atol = as_tolerance(atol, "atol", y0.shape, y0.dtype)
    return tab, y0, t, rtol, atol, opts


def solve(func, y0, t, *, rtol=1e-7, atol=1e-9, method="dopri5", options=None, dense_output=True,
          batch_axis=None, events=None, args=(), inplace=False):
    """Solve ``dy/dt = func(t, y, *args)``, ``y(t[0]) = y0``, and keep the dense interpolant.

    Parameters
    ----------
    func : callable ``func(t, y, *args) -> dy/dt``, or with ``inplace`` ``func(t, y, dydt, *args)``
        ``t`` a float, ``y`` an ndarray of ``y0``'s shape and dtype; returns an
        array of the same shape (or, in place, writes it into ``dydt``, an
        ndarray of that shape and dtype, and returns nothing). A Numba
        ``@njit`` function makes the whole solve run compiled, compiled once
        per argument types and cached on disk (see :mod:`odeflow.solvers.compiled`;
        ``stats["compile_seconds"]`` reports the time a solve spent compiling).
    y0 : array_like, any shape (e.g. ``(batch, dim)``)
        Initial state. float64 and float32 are kept; integers become float64.
    t : array_like of float, shape (m,)
        Output times, non-decreasing or non-increasing (backwards
        integration); ``t[0]`` is the initial time. A repeated time gives the
        same row again at no cost.
    rtol, atol : float or array_like broadcastable to ``y0.shape``
        Relative and absolute tolerances (adaptive methods): a step is accepted
        when the RMS norm of ``err / (atol + rtol*max(|y0|, |y1|))`` is <= 1.
        ``rtol`` below 100 times the machine epsilon of the state dtype is
        raised to it with a :class:`~odeflow.errors.ToleranceWarning`.
    method : {'dopri5', 'bosh3', 'tsit5', 'dop853', 'euler', 'midpoint', 'rk4', 'radau'}
        ``dopri5``: Dormand & Prince (1980) 5(4) with the classic embedded
        estimate (as Hairer's DOPRI5 and scipy's RK45). ``bosh3``: Bogacki &
        Shampine (1989) 3(2). ``tsit5``: Tsitouras (2011) 5(4). ``dop853``:
        Hairer's DOP853, order 8 (as scipy's DOP853). ``euler``, ``midpoint``,
        ``rk4``: fixed step. ``radau``: Radau IIA of order 5, implicit, for
        stiff problems (:mod:`odeflow.solvers.radau`; state computed in float64).
    options : dict, optional
        Adaptive methods: ``first_step`` (default: HNW §II.4 algorithm),
        ``max_step`` (default inf), ``max_steps`` (accepted + rejected, default
        100000), ``controller`` (``"pi"``, Hairer's DOPRI5, default; or ``"i"``,
        scipy's RK45 rule), ``min_step`` (a smaller step wanted by the
        controller raises StepSizeUnderflowError; default none). Fixed-step
        methods: ``step_size`` (default: step from one output time to the
        next; outputs always land on nodes), ``max_steps``. Every explicit
        method: ``jump_t`` (times where ``func`` jumps: steps end there and
        ``func`` is evaluated on each side, see :mod:`odeflow.solvers.jumps`),
        ``event_samples`` (sub-intervals per step searched for sign changes
        of the event functions, default 4; 1 looks at the step ends only).
        ``radau``: ``first_step``, ``max_step``, ``max_steps`` and ``jac``
        (``jac(t, y) -> df/dy``, shape ``(n, n)`` for the flattened state;
        default: finite differences). An option of another method raises
        InputError naming the option and the method.
    dense_output : bool, default True
        Keep every accepted step's interpolation polynomial (memory grows with
        the number of steps) for :meth:`Solution.interpolate`,
        :attr:`Solution.t_steps` and :attr:`Solution.y_steps`. With False the
        memory stays independent of the number of steps and those raise.
    batch_axis : int, optional
        Per-sample stepping: each sample along this axis of ``y0`` gets its own
        step size, error norm and ``stats``; ``t`` may then be ``(batch, m)``
        (one row per sample) and ``func`` gets ``t`` of shape ``(batch,)``. See
        :mod:`odeflow.solvers.batch` (no dense output in this mode).
    events : callable or list of callables ``g(t, y) -> float``, optional
        Event functions (scipy's ``solve_ivp`` meaning and attributes
        ``terminal``, ``direction``): zeros of ``g`` along the solution are
        located on each accepted step's interpolant, with no extra evaluation
        of ``func`` (see :mod:`odeflow.solvers.events`). Found in
        :attr:`Solution.t_events` and :attr:`Solution.y_events`. A terminal
        event ends the solve there: ``status == "event"``, and only the output
        times up to the event are returned. With an ``@njit`` ``func`` and
        ``@njit`` event functions the events are located inside the compiled
        loop. Event functions get the same ``args``: ``g(t, y, *args)``.
    args : tuple, default ()
        Extra arguments of ``func`` and the event functions (scipy's
        ``solve_ivp(args=...)`` and diffrax's ``args`` meaning): a parameter
        sweep passes new values without rebuilding a closure, and an ``@njit``
        ``func`` is compiled once for all values of the same types.
    inplace : bool, default False
        ``func`` writes ``dy/dt`` into its third argument instead of returning
        it (``func(t, y, dydt, *args)``, as Numba-compiled right-hand sides of
        the Fortran codes do): no array is allocated per evaluation. Every entry
        of ``dydt`` must be written.

    Returns
    -------
    Solution
        ``.t``, ``.y`` (shape ``(m, *y0.shape)``), ``.stats`` (``nfe``, ``n_steps``,
        ``n_accepted``, ``n_rejected``; ``stiff_at`` for the adaptive explicit
        methods: where Hairer's stiffness test fired, or None; ``njev``, ``nlu``,
        ``n_newton_failures`` for radau), ``.status``,
        ``.message``, ``.interpolate(t_new)``.

    Raises
    ------
    InputTypeError, InputError, ShapeError
        Bad arguments (before any evaluation of ``func``; among them ``args``
        not a tuple, or an ``@njit`` ``func`` whose explicit signature does not
        take ``y0``'s dtype and ndim), or ``func`` returning
        the wrong shape at the first evaluation; an event function that raises
        or returns a non-scalar or non-finite value (named by index and name).
    StepSizeUnderflowError, MaxStepsExceededError, NonFiniteDerivativeError
        The solve started but could not finish; the exception carries ``t``,
        ``h`` and the partial ``solution``.

    References
    ----------
    .. [1] J. R. Dormand, P. J. Prince, "A family of embedded Runge-Kutta
           formulae", J. Comput. Appl. Math. 6(1), 1980.
    .. [2] E. Hairer, S. P. Nørsett, G. Wanner, "Solving Ordinary Differential
           Equations I", 2nd ed., Springer 1993, §II.4-II.6 and §IV.2.
    """
    if batch_axis is not None:
        if events is not None:
            raise InputError("`events` cannot be combined with `batch_axis` (per-sample stepping); "
                             "solve the samples separately, or without batch_axis")
        from odeflow.solvers.batch import solve_batch
        return solve_batch(bound(func, args, inplace), y0, t, batch_axis, rtol=rtol, atol=atol, method=method,
                           options=options)
    return _solve(func, y0, t, rtol, atol, method, options, store=bool(dense_output), events=events,
                  args=args, inplace=inplace)


def odeint(func, y0, t, *, rtol=1e-7, atol=1e-9, method="dopri5", options=None, batch_axis=None,
           events=None, args=(), inplace=False):
    """Solve ``dy/dt = func(t, y, *args)`` and return ``y`` at the times ``t``.

    Same arguments and errors as :func:`solve`; returns only the array of shape
    ``(len(t), *y0.shape)`` (torchdiffeq's convention) and keeps no step record.
    ``events`` is refused (InputError): ``odeint`` could neither report the
    events nor return fewer rows after a terminal one; use :func:`solve`
    (``events=``) or :func:`odeflow.odeint_event`.
    """
    refuse_events(events)
    if batch_axis is not None:
        return solve(func, y0, t, rtol=rtol, atol=atol, method=method, options=options,
                     batch_axis=batch_axis, args=args, inplace=inplace).y
    return _solve(func, y0, t, rtol, atol, method, options, store=False, args=args, inplace=inplace).y


def check_args(args, name="args"):
    """``args`` must be a tuple (``func(t, y, *args)``): InputTypeError naming it otherwise
    (a bare value such as ``args=(k)`` is the usual slip)."""
    if not isinstance(args, tuple):
        raise InputTypeError(f"`{name}` must be a tuple of extra arguments, func(t, y, *{name}); got "
                             f"{type(args).__name__} {args!r:.80}" + (" (write (k,) for one argument)"
                                                                      if not isinstance(args, list) else ""))


def bound(func, args, inplace):
    """``func`` as an out-of-place ``f(t, y)`` with ``args`` bound (a Python closure), for the
    code paths that call ``func`` from Python only (per-sample stepping, radau)."""
    if not args and not inplace:
        return func
    if not inplace:
        def f(t, y):
            return func(t, y, *args)
    else:
        def f(t, y):
            out = np.full(np.shape(y), np.nan, np.asarray(y).dtype)
            func(t, y, out, *args)
            return out
    return f


def refuse_events(events):
    """``odeint`` takes no events: the InputError that says where to go instead."""
    if events is not None:
        raise InputError("`events`: odeint returns only y at the times t, so it can neither report "
                         "events nor stop at a terminal one; use odeflow.solve(..., events=...) "
                         "(t_events, y_events) or odeflow.odeint_event (the event time and state, "
                         "differentiable)")


@limit_blas  # BLAS at one thread inside the solve of a Python func (odeflow.blas)
def _solve(func, y0, t, rtol, atol, method, options, store, events=None, args=(), inplace=False):
    tab, y0, t, rtol, atol, opts = prepare(func, y0, t, rtol, atol, method, options, args, inplace)
    u, index = distinct_times(t)
    if index is None:
        return _solve_distinct(func, tab, y0, t, rtol, atol, method, opts, store, events, args, inplace)
    try:  # repeated times: solve on the distinct ones, then copy rows
        return expand_rows(_solve_distinct(func, tab, y0, u, rtol, atol, method, opts, store, events, args,
                                           inplace), t, index)
    except SolverError as exc:
        if exc.solution is not None:
            expand_rows(exc.solution, t, index)
        raise


def expand_rows(sol, t, index):
    """``sol`` (solved on the distinct times) with a row for every entry of ``t``
    (``t == u[index]``); on a partial solution, the entries reached. In place."""
    keep = index < sol.t.size  # index is non-decreasing: a prefix
    sol.t, sol.y = t[keep].copy(), sol.y[index[keep]]
    return sol


def _solve_distinct(func, tab, y0, t, rtol, atol, method, opts, store, events, fargs=(), inplace=False):
    ev_fns, ev_terminal, ev_direction = _events.as_events(events)
    if tab is None and ev_fns:
        raise InputError("`events` are not supported by method='radau' yet; use an explicit method "
                         "(dopri5, tsit5, dop853...) with events")
    shape = y0.shape
    flat = y0.reshape(-1)  # y0 is a fresh contiguous copy: a view
    stats = {"nfe": 0, "n_steps": 0, "n_accepted": 0, "n_rejected": 0}
    no_events = _events.split_events(ev_fns, np.empty(0), np.empty(0, np.int64),
                                     np.empty((0, flat.size), y0.dtype), shape) if events is not None else None
    if t.size == 1:
        return Solution(t.copy(), y0[None].copy(), stats, "success", "nothing to integrate: len(t) == 1",
                        method=method, t_span=(t[0], t[0]), events=no_events,
                        record=("dense", np.empty(0), np.empty(0), np.empty((0, flat.size)),
                                np.empty((0, flat.size, 1)), flat))
    max_steps = int(opts.get("max_steps") or DEFAULT_MAX_STEPS)
    jumps = jumps_inside(opts.get("jump_t"), t[0], t[-1])
    if tab is not None and not tab.adaptive:
        grid, is_output, is_jump = fixed_grid(t, opts.get("step_size"), max_steps, method, jumps)
    if flat.size == 0:  # nothing to integrate: every row is the empty state
        return Solution(t.copy(), np.empty((t.size,) + shape, y0.dtype), stats, "success",
                        "empty state: nothing to integrate", method=method, t_span=(t[0], t[-1]),
                        events=no_events,
                        record=("nodes", t.copy(), np.empty((t.size, 0), y0.dtype)))
    jitted = is_jitted(func)
    n_compiled = len(func.overloads) if jitted else 0
    start = time.perf_counter()
    f0 = first_derivative(func, t[0], flat, shape, fargs, inplace)
    seconds_f0 = time.perf_counter() - start if jitted and len(func.overloads) > n_compiled else 0.0
    if not all_finite(f0):
        sol = Solution(t[:1].copy(), y0[None].copy(), dict(stats, nfe=1), "nonfinite_derivative",
                       "func(t0, y0) is not finite", method=method, t_span=(t[0], t[0]),
                       record=("nodes", t[:1].copy(), flat[None].copy()))
        raise NonFiniteDerivativeError(
            f"{method}: func(t0, y0) returned non-finite values at t = {float(t[0])!r}; nothing can be "
            f"integrated from there", t=t[0], h=0.0, solution=sol)
    ev = (ev_terminal, ev_direction, _events.initial_values(ev_fns, t[0], flat, shape, fargs),
          int(opts.get("event_samples") or _events.SAMPLES_PER_STEP))
    if tab is None:
        stats, record, hint, out, seconds = _radau_stats(_radau_func(func, fargs, inplace), t, flat, f0, shape,
                                                         rtol, atol, opts, store)
        status, ys, rows, t_stop, h, y_stop = out[:6]
        ys, y_stop = ys.astype(y0.dtype, copy=False), y_stop.astype(y0.dtype, copy=False)
        ev_t, ev_k, ev_y, ev_code = np.empty(0), np.empty(0, np.int64), np.empty((0, flat.size)), _loop.NO_EVENT
    elif tab.adaptive:
        beta, stretch = CONTROLLERS[opts.get("controller") or "pi"]
        max_step = float(opts.get("max_step") or np.inf)
        args = (t, flat, f0, shape, rtol, atol, tab.A_arr, tab.b_arr, tab.b_err_arr, tab.c_arr,
                tab.P_arr, tab.error_order, float(opts.get("first_step") or 0.0), max_step,
                max_steps, beta, stretch, store, tab.b_err3_arr, tab.n_extra, tab.stiff_bound,
                ev, jumps, float(opts.get("min_step") or 0.0))
        out, seconds = _run("adaptive", func, fargs, inplace, args, shape, ev_fns, jitted)
        status, ys, rows, t_stop, h, y_stop, nfe, n_acc, n_rej, rec_t, rec_h, rec_y, rec_Q = out[:13]
        stiff_at = None if np.isnan(out[13]) else float(out[13])
        ev_t, ev_k, ev_y, ev_code = out[15:]
        stats = {"nfe": nfe, "n_steps": n_acc + n_rej, "n_accepted": n_acc, "n_rejected": n_rej,
                 "stiff_at": stiff_at}
        hint = explain(stiff_at, out[14], y_stop, shape, tab.stiff_bound,
                       status in (_loop.MAX_STEPS, _loop.UNDERFLOW))
        record = ("dense", rec_t, rec_h, rec_y, rec_Q, y_stop) if store else None
    else:
        args = (grid, is_output, is_jump, flat, f0, shape, tab.A_arr, tab.b_arr, tab.c_arr, store, ev)
        out, seconds = _run("fixed", func, fargs, inplace, args, shape, ev_fns, jitted)
        status, ys, rows, t_stop, h, nfe, n_steps, rec_y, ev_t, ev_k, ev_y, ev_code = out
        stats = {"nfe": nfe, "n_steps": n_steps, "n_accepted": n_steps, "n_rejected": 0}
        hint = ""
        record = ("nodes", grid[: n_steps + 1], rec_y[: n_steps + 1]) if store else None
        if store and status == _loop.EVENT:  # the last node is the event, inside the last step
            record = ("nodes", np.append(grid[:n_steps], t_stop), np.concatenate([rec_y[:n_steps], ev_y[-1:]]))
    if seconds or seconds_f0:
        stats["compile_seconds"] = seconds + seconds_f0
    if status == _loop.BAD_SIZE:  # only a jitted func gets here: Python ones are checked per call
        raise ShapeError(f"`func` must return dy/dt with the shape of `y0` {shape}; in the step "
                         f"starting at t = {float(t_stop)!r} it returned an array of a different size")
    if status == _loop.EVENT_NONFINITE:  # only jitted event functions get here
        k = -ev_code - 2
        raise InputError(f"event function {_events.event_name(ev_fns[k], k)} returned a non-finite "
                         f"value in the step starting at t = {float(t_stop)!r}; it must be finite")
    name, error = STATUS[status]
    ys = ys[:rows].reshape((rows,) + shape)
    if status == _loop.EVENT:
        message = (f"terminal event {_events.event_name(ev_fns[ev_code], ev_code)} occurred at "
                   f"t = {float(t_stop)!r}")
    else:
        message = "reached the end of the interval" if error is None else failure_message(
            status, method, t_stop, h, stats, opts) + hint
    sol = Solution(t[:rows].copy(), ys, stats, name, message, method=method,
                   t_span=(t[0], t_stop if (error or status == _loop.EVENT) else t[-1]), record=record,
                   events=(_events.split_events(ev_fns, ev_t, ev_k, ev_y, shape) if events is not None
                           else None))
    if error is not None:
        raise error(message, t=t_stop, h=h, solution=sol)
    return sol


def _radau_func(func, fargs, inplace):
    """``func`` for :mod:`odeflow.solvers.radau`, which calls ``func(t, y)``: ``args`` bound and
    an in-place ``func`` wrapped; for an ``@njit`` ``func`` the wrapper is jitted too, so radau
    still runs compiled (compiled again for new ``args`` values: radau's loop closes over ``func``)."""
    if not fargs and not inplace:
        return func
    if not is_jitted(func):
        return bound(func, fargs, inplace)
    import numba

    from odeflow.solvers.jit import OPTIONS
    key = (func, fargs, inplace)
    wrapped = _radau_wrapped.get(key) if _hashable(fargs) else None
    if wrapped is None:
        if inplace:
            def wrapped(t, y):
                out = np.empty_like(y)
                func(t, y, out, *fargs)
                return out
        else:
            def wrapped(t, y):
                return func(t, y, *fargs)
        wrapped = numba.njit(**OPTIONS)(wrapped)
        if _hashable(fargs):
            _radau_wrapped[key] = wrapped
    return wrapped


_radau_wrapped = {}


def _hashable(value):
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _radau_stats(func, t, flat, f0, shape, rtol, atol, opts, store):
    """Run :mod:`odeflow.solvers.radau`; statistics (with scipy's ``njev``, ``nlu``),
    the step record and the extra sentences of a failure message."""
    from odeflow.solvers import radau
    out, seconds, _ = radau.run(func, t, flat, f0, shape, rtol, atol, opts, store)
    status, ys, rows, t_stop, h, y_stop, nfe, n_acc, n_rej, rec_t, rec_h, rec_y, rec_Q = out[:13]
    njev, nlu, n_fail, newton_last = out[13:]
    stats = {"nfe": int(nfe), "n_steps": n_acc + n_rej, "n_accepted": n_acc, "n_rejected": n_rej,
             "njev": int(njev), "nlu": int(nlu), "n_newton_failures": int(n_fail)}
    where = f"at t = {float(t_stop)!r}"
    if status == radau.BAD_JAC:
        raise ShapeError(f"`options['jac']` must return df/dy of shape ({flat.size}, {flat.size}); {where} "
                         f"it returned an array of another shape")
    if status == radau.JAC_NONFINITE:
        sol = Solution(t[:rows].copy(), ys[:rows].reshape((rows,) + shape), stats, "nonfinite_derivative",
                       "", method="radau", t_span=(t[0], t_stop))
        source = "`options['jac']`" if opts.get("jac") is not None else "the finite-difference Jacobian of func"
        raise NonFiniteDerivativeError(f"radau: {source} returned non-finite values {where}", t=t_stop, h=h,
                                       solution=sol)
    hint = ""
    if status == _loop.UNDERFLOW and newton_last:
        hint = (" Newton's iteration did not converge even at the smallest step, with a fresh Jacobian: "
                "check `options['jac']`, or the problem is singular there.")
    record = ("dense", rec_t, rec_h, rec_y.astype(flat.dtype, copy=False), rec_Q.astype(flat.dtype, copy=False),
              y_stop.astype(flat.dtype, copy=False)) if store else None
    return stats, record, hint, out, seconds


def fixed_grid(t, step_size, max_steps, method, jumps=None):
    """Nodes of a fixed-step solve, which of them are outputs and which are jumps.

    The output times plus, when ``step_size`` is given, a uniform grid from
    ``t[0]`` in the direction of ``t``; a uniform node within 1e-6 steps of an
    output time is dropped (no sliver steps from rounding). The jump times
    ``jumps`` (inside the interval, see :mod:`odeflow.solvers.jumps`) are nodes
    too, like output times. The number of steps is checked against
    ``max_steps`` before anything is allocated.
    """
    if jumps is not None and jumps.size:
        nodes = np.union1d(t, jumps)
        grid, _, _ = fixed_grid(nodes if t[-1] > t[0] else nodes[::-1], step_size, max_steps, method)
        return grid, np.isin(grid, t), np.isin(grid, jumps)
    if step_size is None:
        n_steps = t.size - 1
    else:
        n = np.ceil(abs(t[-1] - t[0]) / step_size * (1 - 1e-12))
        n_steps = n + t.size - 2 if np.isfinite(n) else np.inf
    if n_steps > max_steps:
        raise MaxStepsExceededError(
            f"method {method!r} needs about {n_steps:.0f} steps for `t` with step_size "
            f"{step_size!r}, more than options['max_steps'] = {max_steps}", t=t[0],
            h=float(step_size if step_size is not None else t[1] - t[0]))
    if step_size is None:
        return t.copy(), np.ones(t.size, dtype=np.bool_), np.zeros(t.size, dtype=np.bool_)
    direction = 1.0 if t[-1] > t[0] else -1.0
    uniform = t[0] + direction * step_size * np.arange(int(n) + 1)
    uniform = uniform[direction * (uniform - t[-1]) < 0]
    ts = np.sort(t)
    k = np.clip(np.searchsorted(ts, uniform), 1, ts.size - 1)
    near = np.minimum(np.abs(uniform - ts[k - 1]), np.abs(uniform - ts[k])) < 1e-6 * step_size
    grid = np.union1d(uniform[~near], t)
    if direction < 0:
        # a copy, not the reversed view: the compiled loop's entry point (odeflow.solvers.compiled)
        # takes C-contiguous arrays without checking, and would read a view past its end
        grid = grid[::-1].copy()
    return grid, np.isin(grid, t), np.zeros(grid.size, dtype=np.bool_)


def failure_message(status, method, t, h, stats, opts):
    where = f"at t = {float(t)!r} with step size h = {float(h)!r} after {stats['n_steps']} steps ({stats['nfe']} evaluations)"
    if status == _loop.UNDERFLOW:
        return (f"{method}: step size underflow {where}: the tolerances cannot be met with a step "
                f"that still changes t (a singularity or a very stiff problem?)")
    if status == _loop.MIN_STEP:
        return (f"{method}: the step size needed at t = {float(t)!r} is below options['min_step'] = "
                f"{opts.get('min_step')!r} (last step tried h = {float(h)!r}, after {stats['n_steps']} "
                f"steps, {stats['nfe']} evaluations)")
    if status == _loop.MAX_STEPS:
        return (f"{method}: more than options['max_steps'] = {opts.get('max_steps') or DEFAULT_MAX_STEPS} "
                f"steps needed; stopped {where}")
    if method in TABLEAUX and not TABLEAUX[method].adaptive:
        return f"{method}: the state became non-finite (inf or NaN); stopped {where}"
    return (f"{method}: non-finite values (inf or NaN) in func's output or the state that shrinking "
            f"the step could not avoid; stopped {where}")
