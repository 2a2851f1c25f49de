"""Events: zeros of ``g(t, y)`` along the solution, located on each step's interpolant.

An *event function* ``g(t, y) -> float`` has an event where ``g`` reaches zero
along the solution ``y(t)`` (scipy's ``solve_ivp(events=...)`` meaning). Its
scipy-style attributes are read as they are:

``terminal``   ``False``/``0`` (record only), ``True``/``1`` (stop at the first
               occurrence) or an int ``k`` (stop at the ``k``-th);
``direction``  ``+1`` only zeros reached from below (``g`` going up), ``-1``
               only from above, ``0`` (default) both.

How an event is found (no extra evaluation of ``func``): after every accepted
step ``[t, t + h]`` the step's own continuous extension ``u(theta)`` (HNW
§II.6; linear between the nodes for fixed-step methods) is sampled at
``theta = 1/S, 2/S, ..., 1`` (``S = options["event_samples"]``, default
``SAMPLES_PER_STEP = 4``; 1 looks at the step ends only, as scipy and diffrax
do, and costs least), ``g`` is evaluated at
each sample, and every sub-interval over which ``g`` changes sign (or ends
exactly on a zero) is a bracket. Each bracket is refined by the
Anderson–Björck variant of regula falsi (a superlinear, always-bracketing
secant method; Anderson & Björck 1973, BIT 13; Dowell & Jarratt 1971, BIT 11
for the Illinois idea) on ``t -> g(t, u(t))`` until the bracket is a few
units in the last place of ``t`` wide. So several roots in one step are found
as long as they are at least ``h / S`` apart; a root closer to its neighbour
than that (a double crossing inside one sub-interval) is invisible, as for
any method that samples.

Counting rules: an event is ``g`` *reaching* zero from a non-zero value. A
zero exactly on a sample or step boundary is counted once, in the step that
ends there (the next sub-interval starts at zero and is not a crossing). A
zero at ``t0`` is not an event, nor is ``g`` leaving zero (scipy's ``solve_ivp`` differs
here: it reports a zero at ``t0`` when ``g`` then moves away in the allowed direction).

The step routine is written in the subset of Python that Numba compiles, like
:mod:`odeflow.solvers.loop`, and runs inside that loop: plain Python for
Python event functions, compiled into the whole-solve loop when ``func`` and
every event function are ``@njit``.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from odeflow.errors import InputError, InputTypeError, OdeflowError
from odeflow.solvers.jit import is_jitted, kernel
from odeflow.solvers.kernels import dense_eval_scratch

__all__ = ["SAMPLES_PER_STEP", "as_events", "event_name", "make_event_function", "make_event_step", "grown",
           "no_event_step", "initial_values"]

SAMPLES_PER_STEP = 4   # S: sub-intervals per step in which sign changes are looked for
_EPS = 2.0 ** -52       # float64 machine epsilon (times are float64)
_MAX_ITER = 200        # refinement iterations (typically < 12; bisection bounds it at ~60)

# codes returned by an event step: NONE, or k >= 0 (terminal event k stopped the solve),
# or -(k + 2) (event function k returned a non-finite value)
NONE = -1
CROSSING = -2 ** 62   # internal to a step: some event function changes sign (never returned)


def event_name(fn, k):
    """``events[k] (name)`` for messages."""
    return f"events[{k}] ({getattr(fn, '__name__', type(fn).__name__)})"


def as_events(events):
    """Check ``events`` before any work: ``(functions, terminal, direction)``.

    ``terminal`` is int64 of shape (E,) (0: never stop), ``direction`` float64
    of shape (E,). Raises InputTypeError for a non-callable, InputError for a
    ``direction`` outside {-1, 0, 1} or a negative or non-integer ``terminal``.
    """
    if events is None:
        fns = []
    elif callable(events):
        fns = [events]
    elif isinstance(events, (list, tuple)):
        fns = list(events)
    else:
        raise InputTypeError(f"`events` must be a callable g(t, y) or a list of them; got "
                             f"{type(events).__name__}")
    terminal = np.zeros(len(fns), dtype=np.int64)
    direction = np.zeros(len(fns))
    for k, fn in enumerate(fns):
        if not callable(fn):
            raise InputTypeError(f"`events[{k}]` must be callable as g(t, y); got {type(fn).__name__}")
        term = getattr(fn, "terminal", False)
        if isinstance(term, (bool, np.bool_)):
            term = int(term)
        elif not isinstance(term, numbers.Integral) or term < 0 or term > np.iinfo(np.int64).max:
            raise InputError(f"{event_name(fn, k)}: `terminal` must be a bool or a non-negative "
                             f"integer (stop after that many events); got {term!r}")
        terminal[k] = int(term)
        d = getattr(fn, "direction", 0)
        if isinstance(d, (bool, np.bool_)) or not isinstance(d, numbers.Real) or d not in (-1, 0, 1):
            raise InputError(f"{event_name(fn, k)}: `direction` must be -1, 0 or 1; got {d!r}")
        direction[k] = float(d)
    return fns, terminal, direction


def _checked(fn, k):
    """``fn`` returning a finite float, or an InputError naming the event."""
    def g(t, y, *fargs):
        try:
            value = fn(t, y, *fargs)
        except OdeflowError:
            raise
        except Exception as exc:
            raise InputError(f"event function {event_name(fn, k)} raised {type(exc).__name__} at "
                             f"t = {float(t)!r}: {exc}") from exc
        if np.ndim(value) != 0:
            raise InputError(f"event function {event_name(fn, k)} must return a scalar; at "
                             f"t = {float(t)!r} it returned shape {np.shape(value)}")
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise InputTypeError(f"event function {event_name(fn, k)} must return a real number; "
                                 f"returned {type(value).__name__}") from None
        if not math.isfinite(value):
            raise InputError(f"event function {event_name(fn, k)} returned {value!r} at "
                             f"t = {float(t)!r}; it must be finite")
        return value
    return g


def initial_values(fns, t0, y0, shape, fargs=()):
    """``g_k(t0, y0, *fargs)`` for every event, each checked (scalar, finite): float64 (E,)."""
    return np.array([_checked(fn, k)(t0, y0.reshape(shape).copy(), *fargs) for k, fn in enumerate(fns)],
                    dtype=np.float64)


def make_event_function(fns, jitted, flat=False):
    """``g_one(k, t, y, shape, fargs) -> float``: event function ``k`` at the flat state ``y``,
    called as ``g_k(t, y, *fargs)`` (the solve's ``args``).

    Python: each function checked (see :func:`initial_values`), on a copy of
    ``y`` (the sampling buffer is reused). Jitted (every ``fns[k]`` an ``@njit``
    function): a chain of inlined closures, one per event, so Numba compiles
    the calls as constants; non-finite values are caught by the step routine.
    """
    if not jitted:
        checked = [_checked(fn, k) for k, fn in enumerate(fns)]

        def g_one(k, t, y, shape, fargs):
            return checked[k](t, y.reshape(shape).copy(), *fargs)
        return g_one

    import numba  # only here: `import odeflow` must not import numba

    from odeflow.solvers.jit import OPTIONS

    g_one = None
    for k, fn in enumerate(fns):
        g_one = _link(fn, k, g_one, flat, numba, OPTIONS)
    if g_one is None:
        g_one = numba.njit(inline="always", **OPTIONS)(_zero)
    return g_one


def _zero(k, t, y, shape, fargs):
    return 0.0


def _link(fn, idx, rest, flat, numba, options):
    """One link of the jitted chain: event ``idx`` here, the others in ``rest``."""
    if rest is None:
        if flat:
            def g(k, t, y, shape, fargs):
                return float(fn(t, y, *fargs))
        else:
            def g(k, t, y, shape, fargs):
                return float(fn(t, y.reshape(shape), *fargs))
    elif flat:
        def g(k, t, y, shape, fargs):
            if k == idx:
                return float(fn(t, y, *fargs))
            return rest(k, t, y, shape, fargs)
    else:
        def g(k, t, y, shape, fargs):
            if k == idx:
                return float(fn(t, y.reshape(shape), *fargs))
            return rest(k, t, y, shape, fargs)
    return numba.njit(inline="always", **options)(g)


@kernel(inline=True)
def no_event_step(t, h, t_new, y, K, P, y_end, shape, ev, counts, g_left, g_right,
                  roots, work, w, ev_t, ev_k, ev_y, n_found, fargs):
    """The event step when there are no events (the loop then never calls it)."""
    return n_found, NONE


def make_event_step(g_one, jitted):
    """The per-step event routine with ``g_one`` (from :func:`make_event_function`) closed over;
    ``jitted``: compile its helpers for inlining into the compiled loop."""
    if jitted:
        import numba

        from odeflow.solvers.jit import OPTIONS
        inline = numba.njit(inline="always", **OPTIONS)
        call = numba.njit(**OPTIONS)   # refinement: rare, kept out of the loop's code
    else:
        def inline(fn):
            return fn
        call = inline

    @inline
    def state_at(tq, t, h, t_new, y, K, P, y_end, work, w):
        """The interpolated state at time ``tq`` of the step (``y_end`` at its end)."""
        if tq == t_new:
            return y_end
        dense_eval_scratch(y, h, K, P, (tq - t) / h, w, work)
        return work

    @call
    def refine(k, a, ga, b, gb, t, h, t_new, y, K, P, y_end, shape, work, w, fargs):
        """Root of ``g_k`` in the bracket ``[a, b]`` (``ga``, ``gb`` of opposite signs).

        Anderson–Björck regula falsi: ``c`` is the secant point of the bracket;
        when the same end is kept twice its value is scaled by ``m = 1 - g_c/g_b``
        (0.5 if ``m <= 0``) so the kept end cannot stall the iteration. A
        bisection replaces a secant step that fails to halve the bracket twice
        in a row. Stops when the bracket is 4 ulp of ``t`` wide or ``g = 0``.
        """
        eps = _EPS
        slow = 0
        width = abs(b - a)
        for _ in range(_MAX_ITER):
            tol = 4.0 * eps * max(abs(a), abs(b))
            if abs(b - a) <= tol:
                break
            if slow >= 2:
                c = 0.5 * (a + b)
                slow = 0
            else:
                c = (a * gb - b * ga) / (gb - ga)
            if not (min(a, b) < c < max(a, b)):
                c = 0.5 * (a + b)
                if c == a or c == b:
                    break
            gc = g_one(k, c, state_at(c, t, h, t_new, y, K, P, y_end, work, w), shape, fargs)
            if not math.isfinite(gc):
                return np.nan
            if gc == 0.0:
                return c
            if (gc > 0.0) != (gb > 0.0):   # root between c and b: b becomes the kept end a
                a, ga = b, gb
            else:                           # a kept again: shrink its value
                m = 1.0 - gc / gb
                ga *= m if m > 0.0 else 0.5
            b, gb = c, gc
            new_width = abs(b - a)
            slow = slow + 1 if new_width > 0.5 * width else 0
            width = new_width
        return b

    @inline
    def crosses(ga, gb, d):
        """``g`` reaches zero from a non-zero ``ga`` to ``gb`` in a direction ``d`` allows."""
        return (ga != 0.0 and (gb == 0.0 or (gb > 0.0) != (ga > 0.0))
                and (d == 0.0 or d == (1.0 if ga < 0.0 else -1.0)))

    @inline
    def signs(t_b, state, shape, ev, g_left, g_right, fargs):
        """``g_right[k] = g_k(t_b, state)`` for every event; returns ``NONE`` when no
        event function changes sign (as its ``direction`` allows) since ``g_left``,
        ``CROSSING`` when one does, ``-(k + 2)`` when ``g_k`` is not finite."""
        terminal, direction = ev[0], ev[1]
        code = NONE
        for k in range(terminal.shape[0]):
            gb = g_one(k, t_b, state, shape, fargs)
            if not math.isfinite(gb):
                return -(k + 2)
            g_right[k] = gb
            if crosses(g_left[k], gb, direction[k]):
                code = CROSSING
        return code

    @call
    def locate(t_a, t_b, t, h, t_new, y, K, P, y_end, shape, ev, counts, g_left, g_right,
               roots, work, w, ev_t, ev_k, ev_y, n_found, fargs):
        """Refine and record, in time order, the events of the sub-interval ``[t_a, t_b]``
        (``g`` at its ends in ``g_left``, ``g_right``; at least one crosses). Out of the
        per-step code: it runs only where an event is. Returns ``(n_found, code)`` as
        :func:`event_step`."""
        terminal, direction = ev[0], ev[1]
        n_ev = terminal.shape[0]
        sign = 1.0 if h > 0.0 else -1.0
        for k in range(n_ev):
            roots[k] = np.nan
            ga, gb = g_left[k], g_right[k]
            if crosses(ga, gb, direction[k]):
                root = t_b if gb == 0.0 else refine(k, t_a, ga, t_b, gb, t, h, t_new, y, K, P,
                                                    y_end, shape, work, w, fargs)
                if not math.isfinite(root):
                    return n_found, -(k + 2)
                roots[k] = root
        while True:  # record this sub-interval's events in time order
            first = -1
            for k in range(n_ev):
                if math.isfinite(roots[k]) and (first < 0 or sign * (roots[k] - roots[first]) < 0.0):
                    first = k
            if first < 0:
                break
            tr = roots[first]
            roots[first] = np.nan
            ev_t[n_found] = tr
            ev_k[n_found] = first
            if tr == t_new:
                ev_y[n_found] = y_end
            else:
                dense_eval_scratch(y, h, K, P, (tr - t) / h, w, ev_y[n_found])
            n_found += 1
            counts[first] += 1
            if terminal[first] > 0 and counts[first] >= terminal[first]:
                return n_found, first
        return n_found, NONE

    @call
    def event_step(t, h, t_new, y, K, P, y_end, shape, ev, counts, g_left, g_right,
                   roots, work, w, ev_t, ev_k, ev_y, n_found, fargs):
        """Find, record and count the events of the accepted step ``[t, t_new]``.

        ``y`` (n,), ``K``, ``P``: the step's start and interpolation data (as
        :func:`~odeflow.solvers.kernels.dense_eval`); ``ev`` the tuple ``(terminal (E,),
        direction (E,), g0 (E,), samples)`` of :func:`as_events`; ``y_end`` the state at
        ``t_new``. ``g_left`` (E,) holds ``g`` at ``t`` on entry and at the end
        of the step on return; ``g_right``, ``roots`` (E,), ``work`` (n,) and ``w`` (s,)
        are scratch. Events are appended in time order to ``ev_t`` (times),
        ``ev_k`` (event index) and ``ev_y`` (states).

        The record must have room for ``samples * E`` more events (see
        :func:`grown`: at most one per event and sub-interval).

        Returns ``(n_found, code)``: ``code`` is ``NONE``,
        ``k >= 0`` when terminal event ``k`` stopped the solve (its time and
        state are the last record), or ``-(k + 2)`` when ``g_k`` was not finite.

        Every event function is evaluated at a sample before any is refined
        (:func:`locate`, out of line: it runs only where an event is), because the
        refinement reuses ``work``, which holds an interior sample's state.
        """
        samples = ev[3]
        n_ev = g_left.shape[0]
        t_a = t
        for sub in range(1, samples + 1):
            if sub == samples:
                t_b = t_new
                code = signs(t_b, y_end, shape, ev, g_left, g_right, fargs)
            else:
                t_b = t + (sub / samples) * h
                dense_eval_scratch(y, h, K, P, (t_b - t) / h, w, work)
                code = signs(t_b, work, shape, ev, g_left, g_right, fargs)
            if code == CROSSING:
                n_found, code = locate(t_a, t_b, t, h, t_new, y, K, P, y_end, shape, ev, counts, g_left,
                                       g_right, roots, work, w, ev_t, ev_k, ev_y, n_found, fargs)
            if code != NONE:
                return n_found, code
            for k in range(n_ev):
                g_left[k] = g_right[k]
            t_a = t_b
        return n_found, NONE

    return event_step


@kernel
def grown(ev_t, ev_k, ev_y, need):
    """The event record with room for at least ``need`` events (at least twice as much)."""
    cap = max(2 * ev_t.shape[0], need)
    new_t = np.empty(cap)
    new_k = np.empty(cap, dtype=np.int64)
    new_y = np.empty((cap, ev_y.shape[1]), ev_y.dtype)
    new_t[: ev_t.shape[0]] = ev_t
    new_k[: ev_t.shape[0]] = ev_k
    new_y[: ev_t.shape[0]] = ev_y
    return new_t, new_k, new_y


def split_events(fns, ev_t, ev_k, ev_y, shape):
    """``t_events``, ``y_events``: one array per event function (scipy's shapes
    ``(count,)`` and ``(count, *shape)``)."""
    t_events, y_events = [], []
    for k in range(len(fns)):
        mask = ev_k == k
        t_events.append(ev_t[mask].copy())
        y_events.append(ev_y[mask].reshape((-1,) + tuple(shape)).copy())
    return t_events, y_events


def is_compiled(fns):
    """True when every event function is ``@njit`` (they can run inside the compiled loop)."""
    return all(is_jitted(fn) for fn in fns)
