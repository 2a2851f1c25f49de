"""Continuous normalizing flows: densities through an ODE, by the instantaneous change of variables.

For ``dz/dt = f(z(t), t)`` the log-density along a trajectory obeys (Chen et
al. 2018, Theorem 1; FFJORD eq. 4)::

    d log p(z(t)) / dt = -tr( df/dz (z(t), t) )

so one ODE solve of the augmented state ``[z, l]`` with ``dl/dt = -tr(df/dz)``
carries a point and its log-density change together:
``log p(z(t_b)) - log p(z(t_a)) = l(t_b) - l(t_a)``, in either direction of
time. With the base ``N(0, I)`` at ``t = 0`` and the data at ``t = T``:

* ``log_prob(x)``: solve from ``T`` back to ``0`` starting at ``[x, 0]``;
  ``log p(x) = log N(z(0)) - l(0)``.
* ``sample(n)``: draw ``z(0) ~ N(0, I)`` and solve forwards to ``T``;
  ``log p(x) = log N(z(0)) + l(T)``.

The trace is computed either exactly, with one vector-Jacobian product per
dimension (``e_i^T (df/dz) e_i`` for each unit vector), or by Hutchinson's
estimator ``eps^T (df/dz) eps`` (one product; ``E[eps eps^T] = I`` makes it
unbiased), with ``eps`` drawn once per solve and held fixed while the solver
runs (FFJORD §3.1, eq. 7): a fresh draw at every evaluation would make the
right-hand side discontinuous in time, and the step-size control would chase
the noise.

Gradients come from :func:`odeflow.odeint_adjoint` (the adjoint method; its
augmented dynamics differentiate the trace term a second time, which the
engine's ``create_graph`` supports) or from backpropagation through the
solver (:func:`odeflow.odeint_backprop`).

References
----------
.. [1] R. T. Q. Chen, Y. Rubanova, J. Bettencourt, D. Duvenaud, "Neural Ordinary
   Differential Equations", NeurIPS 2018, §4 (Theorem 1, eq. 8-10) and
   Appendix A (proof of Theorem 1).
.. [2] W. Grathwohl, R. T. Q. Chen, J. Bettencourt, I. Sutskever, D. Duvenaud,
   "FFJORD: Free-form Continuous Dynamics for Scalable Reversible Generative
   Models", ICLR 2019, eq. 4 (the augmented ODE) and eq. 7 (the estimator).
.. [3] M. F. Hutchinson, "A stochastic estimator of the trace of the influence
   matrix for Laplacian smoothing splines", Communications in Statistics --
   Simulation and Computation 18(3), 1989.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from odeflow.adjoint import ADJOINT_MODES, odeint_adjoint, odeint_backprop
from odeflow.autodiff import ops
from odeflow.autodiff.tensor import Tensor, enable_grad, is_grad_enabled, no_grad
from odeflow.errors import InputError, InputTypeError, ShapeError
from odeflow.models.cnf_dynamics import positive_int
from odeflow.nn import Module, Parameter
from odeflow.regularizers import (
    check_regularizers, check_steer, collect, draw_probe, penalty_tolerances, probe_vjps, rates,
    steer_end_time)

__all__ = ["CNF", "TRACES", "NOISES", "GRADIENTS", "AugmentedDynamics", "divergence_exact",
           "divergence_hutchinson", "draw_noise", "standard_normal_log_prob"]

TRACES = ("exact", "hutchinson")
NOISES = ("gaussian", "rademacher")
GRADIENTS = ("adjoint", "backprop")


def _choice(value, options, name):
    if value not in options:
        raise InputError(f"`{name}` must be one of {', '.join(map(repr, options))}; got {value!r}")
    return value


def standard_normal_log_prob(z):
    """``log N(z; 0, I)`` per row, in nats.

    Parameters
    ----------
    z : Tensor or ndarray, shape (batch, d)

    Returns
    -------
    Tensor or ndarray (as `z`), shape (batch,)
        ``-|z|^2 / 2 - (d / 2) log(2 pi)``.
    """
    d = z.shape[-1]
    if isinstance(z, Tensor):
        return -0.5 * ops.sum(z * z, axis=-1) - 0.5 * d * math.log(2 * math.pi)
    return -0.5 * np.sum(z * z, axis=-1) - 0.5 * d * math.log(2 * math.pi)


def draw_noise(shape, kind, rng):
    """Probe vectors for Hutchinson's estimator: ``E[eps eps^T] = I``.

    Parameters
    ----------
    shape : tuple of int
        ``(batch, d)``: one probe per data point.
    kind : {"gaussian", "rademacher"}
        ``N(0, I)``, or independent signs ``+-1`` with probability 1/2 (lower
        variance: ``Var = 2 sum_{i != j} A_ij^2`` against ``2 |A|_F^2``
        for a symmetric ``A``, Hutchinson 1989).
    rng : numpy.random.Generator

    Returns
    -------
    ndarray, float64, `shape`
    """
    return draw_probe(shape, _choice(kind, NOISES, "noise"), rng)


def divergence_exact(f, z, create_graph):
    """``tr(df/dz)`` per row, exactly: ``sum_i e_i^T (df/dz) e_i``, one VJP per dimension.

    Parameters
    ----------
    f : Tensor, shape (batch, d)
        Output of the dynamics, computed from `z` with recording on.
    z : Tensor, shape (batch, d)
        Input (leaf or intermediate) requiring grad.
    create_graph : bool
        Keep the result differentiable (needed when the trace is itself
        differentiated: the adjoint's augmented dynamics, backprop through the
        solver).

    Returns
    -------
    Tensor, shape (batch,)

    Notes
    -----
    Rows are independent (each output row depends only on its own input row),
    so one VJP with the cotangent ``e_i`` in every row gives the ``i``-th
    diagonal entry of all ``batch`` Jacobians at once.
    """
    return trace_from_vjps(probe_vjps(f, z, None, create_graph), None)


def divergence_hutchinson(f, z, eps, create_graph):
    """Hutchinson's estimate ``eps^T (df/dz) eps`` per row: one VJP in all.

    Parameters
    ----------
    f, z, create_graph
        As :func:`divergence_exact`.
    eps : ndarray, shape (batch, d)
        Probe vectors with ``E[eps eps^T] = I`` (:func:`draw_noise`).

    Returns
    -------
    Tensor, shape (batch,)
        Unbiased for ``tr(df/dz)`` over the draws of `eps`.
    """
    return trace_from_vjps(probe_vjps(f, z, eps, create_graph), eps)


def trace_from_vjps(vjps, eps):
    """``tr(df/dz)`` per row from :func:`odeflow.regularizers.probe_vjps`: the diagonal of
    the rows ``e_i^T J`` (`eps` None), or Hutchinson's ``(eps^T J) eps``."""
    if eps is not None:
        return ops.sum(vjps[0] * eps, axis=1)
    total = None
    for i, g in enumerate(vjps):
        total = g[:, i] if total is None else total + g[:, i]
    return total


class AugmentedDynamics(Module):
    """The right-hand side of the augmented ODE ``d[z, l]/dt = [f(t, z), -tr(df/dz)]``.

    Layout of the state ``y``, shape ``(batch, d + 1 + k)``: ``y[:, :d]`` is ``z``,
    ``y[:, d]`` is ``l`` (the accumulated log-density change, nats), and
    ``y[:, d + 1 + j]`` the integral of the ``j``-th regularizer
    (:mod:`odeflow.regularizers`), when there are any.

    Parameters
    ----------
    dynamics : Module
        ``dynamics(t, z) -> dz/dt``, ``z`` of shape ``(batch, d)``.
    dim : int
        ``d``.
    trace : {"exact", "hutchinson"}
    eps : ndarray, shape (batch, d), optional
        The probe vectors, fixed for the life of this object (one solve and
        its backward pass). Required for ``trace="hutchinson"``.
    regularizers : sequence of Regularizer, optional
        Extra channels (kinetic energy, Jacobian Frobenius norm). The
        Frobenius norm uses the trace's VJPs: ``||eps^T J||^2`` with
        Hutchinson's probe, or ``sum_i ||e_i^T J||^2 = ||J||_F^2`` exactly
        with the exact trace, so it costs no extra VJP.
    direction : {+1, -1}
        The solve's direction of time, so that the regularizer integrals grow.

    Attributes
    ----------
    nfe : int
        Evaluations so far (forward and backward solves alike).
    n_vjp : int
        Vector-Jacobian products spent on the trace so far.

    Notes
    -----
    Works in every context the solvers call it in: under ``no_grad`` (the
    forward solve; the trace still needs a small graph, built and dropped here),
    and with recording on (the adjoint's VJP, the backprop replay), where the
    trace is built with ``create_graph=True`` so that it can be differentiated
    with respect to ``z`` and the parameters.
    """

    def __init__(self, dynamics, dim, trace, eps=None, regularizers=(), direction=1.0):
        self.dynamics = dynamics
        self.dim = dim
        self.trace = _choice(trace, TRACES, "trace")
        if trace == "hutchinson" and eps is None:
            raise InputError("`eps` is required for trace='hutchinson'")
        self.eps = eps
        self.regularizers = check_regularizers(regularizers)
        self.direction = float(direction)
        self.nfe = 0
        self.n_vjp = 0

    def forward(self, t, y):
        """``[f(t, z), -tr(df/dz)]`` for the state `y` of shape ``(batch, d + 1)`` at time `t` (float)."""
        d = self.dim
        create_graph = is_grad_enabled()  # does the caller differentiate this evaluation?
        with enable_grad():
            z = y[:, :d]
            if not z.requires_grad:  # forward solve: a fresh leaf to differentiate against
                z = Tensor(z.data, requires_grad=True)
            f = self.dynamics(t, z)
            eps = self.eps if self.trace == "hutchinson" else None
            vjps = probe_vjps(f, z, eps, create_graph)  # shared by the trace and the Frobenius norm
            div = trace_from_vjps(vjps, eps)
            channels = [self.direction * c for c in rates(self.regularizers, f, vjps)]
            self.n_vjp += len(vjps)
        self.nfe += 1
        if not create_graph:
            return Tensor(np.concatenate([f.data, -div.data[:, None]] + [c.data[:, None] for c in channels],
                                         axis=1))
        return ops.concatenate([f, -ops.reshape(div, (-1, 1))] + [ops.reshape(c, (-1, 1)) for c in channels],
                               axis=1)


class CNF(Module):
    """A continuous normalizing flow from ``N(0, I)`` at ``t = 0`` to the data at ``t = T``.

    Parameters
    ----------
    dynamics : Module
        ``dynamics(t, z) -> dz/dt`` for ``z`` of shape ``(batch, dim)`` and ``t``
        a float (see :mod:`odeflow.models.cnf_dynamics`).
    dim : int
        Data dimension ``d``.
    end_time : float, default 0.5
        ``T > 0`` (FFJORD's default for the 2-D toys).
    train_end_time : bool, default True
        Learn ``T`` (stored as ``log_end_time``, so it stays positive).
    trace : {"exact", "hutchinson"}, default "exact"
        How ``tr(df/dz)`` is computed during training (evaluation may override).
    noise : {"gaussian", "rademacher"}, default "rademacher"
        Hutchinson's probe distribution.
    gradient : {"adjoint", "backprop"}, default "adjoint"
        Adjoint method (O(1) memory in the steps) or backpropagation through
        the solver's operations.
    rtol, atol : float, default 1e-5
        Solver tolerances (FFJORD's for the toys); the adjoint solve uses the same.
    method : str, default "dopri5"
    adjoint_mode : {"backsolve", "checkpoint"}, default "backsolve"
    adjoint_options : dict, optional
        E.g. ``{"norm": "seminorm"}``.
    rng : int or numpy.random.Generator, optional
        Default source of Hutchinson's probes, of :meth:`sample`'s base draws
        and of STEER's end times.
    regularizers : sequence of Regularizer, optional
        :func:`odeflow.regularizers.kinetic_energy` and/or
        :func:`~odeflow.regularizers.jacobian_frobenius` (RNODE): integrated
        along every solve as extra channels, left out of the step-size control;
        their weighted penalty is put in ``stats["regularization"]`` by
        :meth:`transform` and :meth:`log_prob`, for the training loss. The
        Frobenius norm shares the trace's VJPs (its own `probe` is not used).
    steer : float in (0, 1), optional
        STEER (Ghosh et al. 2020): while recording gradients, each solve ends
        at a time drawn uniformly in ``[(1 - steer) T, (1 + steer) T]``
        (:func:`odeflow.regularizers.steer_end_time`), from the same generator
        as that solve's probes; evaluation uses ``T``.

    Attributes
    ----------
    dynamics : Module
    log_end_time : Parameter, shape () (only with ``train_end_time``)

    Raises
    ------
    InputError
        A bad `dim`, `end_time`, `trace`, `noise`, `gradient`, `adjoint_mode`,
        `regularizers` or `steer` (the message names it and its value).
    InputTypeError
        `dynamics` is not callable.
    """

    def __init__(self, dynamics, dim=2, *, end_time=0.5, train_end_time=True, trace="exact",
                 noise="rademacher", gradient="adjoint", rtol=1e-5, atol=1e-5, method="dopri5",
                 adjoint_mode="backsolve", adjoint_options=None, rng=None, regularizers=None,
                 steer=None):
        if not callable(dynamics):
            raise InputTypeError(f"`dynamics` must be callable as dynamics(t, z); got "
                                 f"{type(dynamics).__name__}")
        self.dynamics = dynamics
        self.dim = positive_int(dim, "dim")
        if not isinstance(end_time, numbers.Real) or not (0.0 < float(end_time) < math.inf):
            raise InputError(f"`end_time` must be a positive finite number; got {end_time!r}")
        if train_end_time:
            self.log_end_time = Parameter(np.array(math.log(float(end_time))))
        else:
            self.log_end_time = None
            self._fixed_end_time = float(end_time)
        self.trace = _choice(trace, TRACES, "trace")
        self.noise = _choice(noise, NOISES, "noise")
        self.gradient = _choice(gradient, GRADIENTS, "gradient")
        self.adjoint_mode = _choice(adjoint_mode, ADJOINT_MODES, "adjoint_mode")
        self.rtol, self.atol, self.method = rtol, atol, method
        self.adjoint_options = adjoint_options
        self.rng = np.random.default_rng(rng)
        self.regularizers = check_regularizers(regularizers)
        self.steer = check_steer(steer)

    # -- time ----------------------------------------------------------------------
    @property
    def end_time(self):
        """``T`` as a Tensor of shape () (differentiable when trained)."""
        if self.log_end_time is None:
            return Tensor(np.array(self._fixed_end_time))
        return ops.exp(self.log_end_time)

    # -- the solve -------------------------------------------------------------------
    def _check_points(self, x, name):
        data = x.data if isinstance(x, Tensor) else np.asarray(x)
        if data.dtype.kind in "iub":
            data = data.astype(np.float64)
            x = data
        if data.ndim != 2 or data.shape[1] != self.dim or data.shape[0] < 1:
            raise ShapeError(f"`{name}` must have shape (batch, {self.dim}) with batch >= 1; "
                             f"got {data.shape}")
        if data.dtype.kind != "f" or not np.all(np.isfinite(data)):
            raise InputError(f"`{name}` must hold finite floats; got dtype {data.dtype}"
                             + ("" if data.dtype.kind != "f" else " with non-finite entries"))
        return x if isinstance(x, Tensor) else Tensor(data)

    def transform(self, z, *, reverse=False, times=None, trace=None, rng=None, stats=None):
        """Carry points and their log-density change through the flow.

        Parameters
        ----------
        z : Tensor or array_like, shape (batch, dim)
            Starting points: base points at ``t = 0``, or data at ``t = T`` when
            `reverse`.
        reverse : bool, default False
            Integrate from ``T`` to ``0`` (data to base) instead of ``0`` to ``T``.
        times : array_like of float in [0, 1], optional
            Output times as increasing fractions of ``T``, default ``[0, 1]``;
            the solve starts at the first (at the last when `reverse`, going
            backwards), so ``times=[0, s], reverse=True`` maps points at
            ``s T`` to the base.
        trace : {"exact", "hutchinson"}, optional
            Overrides the model's `trace` for this solve.
        rng : int or numpy.random.Generator, optional
            Source of the Hutchinson probes (drawn once, here); default the model's.
        stats : dict, optional
            Filled with ``"forward"`` (the forward solve's ``nfe``, ``n_steps``...),
            ``"dynamics"`` (this solve's :class:`AugmentedDynamics`, whose
            counters ``nfe`` and ``n_vjp`` also count the backward solve once it
            has run), with the adjoint ``"backward"`` after ``backward()``, and
            with `regularizers` ``"regularization"``
            (:class:`odeflow.regularizers.Regularization`: per-sample integrals
            from the start of this solve to each output time, and the penalty).

        Returns
        -------
        z_t : Tensor, shape (len(times), batch, dim)
            The points at each output time (``z_t[-1]`` is the end point).
        delta_logp : Tensor, shape (len(times), batch)
            ``log p(z(t_k)) - log p(z(t_start))`` in nats (``delta_logp[0] = 0``).

        Raises
        ------
        ShapeError
            `z` is not of shape ``(batch, dim)``.
        InputError
            `z` has non-finite entries; bad `times` or `trace`.
        """
        z = self._check_points(z, "z")
        trace = self.trace if trace is None else _choice(trace, TRACES, "trace")
        if times is None:
            fractions = np.array([0.0, 1.0])
        else:
            try:
                fractions = np.asarray(times, dtype=np.float64)
            except (TypeError, ValueError):
                raise InputTypeError(f"`times` must be numbers (fractions of T); got {times!r}") from None
            if (fractions.ndim != 1 or fractions.size < 2 or not np.all(np.isfinite(fractions))
                    or fractions[0] < 0.0
                    or fractions[-1] > 1.0 or np.any(np.diff(fractions) <= 0)):
                raise InputError(f"`times` must be at least two increasing fractions of T in "
                                 f"[0, 1]; got {np.asarray(times).tolist()}")
        if reverse:
            fractions = fractions[::-1].copy()
        rng = self.rng if rng is None else np.random.default_rng(rng)  # a Generator passes through
        batch, k = z.shape[0], len(self.regularizers)
        eps = draw_noise((batch, self.dim), self.noise, rng) if trace == "hutchinson" else None
        func = AugmentedDynamics(self.dynamics, self.dim, trace, eps, self.regularizers,
                                 direction=-1.0 if reverse else 1.0)
        # layout of the ODE state: [ z (dim) | l (1) | regularizers (k) ], all zero but z at the start
        y0 = ops.concatenate([z, Tensor(np.zeros((batch, 1 + k), dtype=z.dtype))], axis=1)
        end = self.end_time
        if self.steer is not None and is_grad_enabled():
            end = steer_end_time(0.0, end, self.steer, rng)
        t = end * Tensor(fractions)
        rtol, atol = self.rtol, self.atol
        if k:  # the penalty channels stay out of the step-size control
            rtol, atol = penalty_tolerances(rtol, atol, (batch, self.dim + 1), k)
        kwargs = dict(rtol=rtol, atol=atol, method=self.method)
        if stats is None:
            stats = {}
        stats["dynamics"] = func
        if self.gradient == "backprop" and is_grad_enabled():
            ys = odeint_backprop(func, y0, t, stats=stats, **kwargs)
        else:
            # the parameters are found by watching the forward solve, as backprop's graph reaches
            # them: a Tensor the dynamics reads that is not one of its parameters (a conditioning
            # context from an encoder) gets its gradient too; `adjoint_params=dynamics.parameters()`
            # made it a constant, its gradient silently None
            ys = odeint_adjoint(func, y0, t, adjoint_mode=self.adjoint_mode,
                                adjoint_options=self.adjoint_options, stats=stats, **kwargs)
        if k:
            stats["regularization"] = collect(self.regularizers, ys[:, :, self.dim + 1:])
        return ys[:, :, : self.dim], ys[:, :, self.dim]

    # -- densities and samples -----------------------------------------------------
    def log_prob(self, x, *, trace=None, rng=None, stats=None):
        """``log p(x)`` in nats, by the instantaneous change of variables.

        Solves from the data at ``t = T`` back to the base at ``t = 0``::

            log p(x) = log N(z(0); 0, I) - l(0),   l(T) = 0,  dl/dt = -tr(df/dz)

        Parameters
        ----------
        x : Tensor or array_like, shape (batch, dim)
        trace, rng, stats
            As :meth:`transform` (``trace="exact"`` for evaluation).

        Returns
        -------
        Tensor, shape (batch,)
            Differentiable with respect to the parameters (and `x` if it
            requires grad). With Hutchinson's trace it is an unbiased estimate
            of ``log p(x)`` (the estimate of ``l`` is; see the module docstring).

        Raises
        ------
        ShapeError, InputError
            As :meth:`transform`, naming `x`.
        """
        x = self._check_points(x, "x")
        z_t, delta = self.transform(x, reverse=True, trace=trace, rng=rng, stats=stats)
        # delta[-1] = log p(z(0)) - log p(x) (this solve runs from T back to 0)
        return standard_normal_log_prob(z_t[-1]) - delta[-1]

    def sample(self, n, rng=None, *, return_log_prob=False, trace="exact"):
        """Draw `n` points: base samples pushed from ``t = 0`` to ``T`` (no gradient).

        Parameters
        ----------
        n : int
            Number of samples, >= 1.
        rng : int or numpy.random.Generator, optional
            Source of the base draws; default the model's.
        return_log_prob : bool, default False
            Also return ``log p(x)`` computed along the same forward solve.
        trace : {"exact", "hutchinson"}, default "exact"

        Returns
        -------
        x : ndarray, shape (n, dim)
        log_prob : ndarray, shape (n,), nats (when `return_log_prob`)

        Raises
        ------
        InputError, InputTypeError
            `n` is not a positive int (the message names `n`).
        """
        n = positive_int(n, "n")
        rng = self.rng if rng is None else np.random.default_rng(rng)
        z0 = rng.standard_normal((n, self.dim))
        with no_grad():
            z_t, delta = self.transform(z0, trace=trace, rng=rng)
        x = z_t.data[-1]
        if return_log_prob:
            return x, standard_normal_log_prob(z0) + delta.data[-1]
        return x

    def trajectory(self, z0, n_times=9):
        """Points at ``n_times`` evenly spaced times from ``0`` to ``T`` (no gradient).

        Parameters
        ----------
        z0 : array_like, shape (batch, dim)
            Base points at ``t = 0``.
        n_times : int, default 9

        Returns
        -------
        times : ndarray, shape (n_times,)
            The times, in the units of ``T``.
        z_t : ndarray, shape (n_times, batch, dim)
        delta_logp : ndarray, shape (n_times, batch)
            ``log p_t(z(t)) - log N(z0)``, nats.
        """
        n_times = positive_int(n_times, "n_times")
        if n_times < 2:
            raise InputError(f"`n_times` must be >= 2; got {n_times}")
        fractions = np.linspace(0.0, 1.0, n_times)
        with no_grad():
            z_t, delta = self.transform(z0, times=fractions, trace="exact")
            end = float(self.end_time.data)
        return fractions * end, z_t.data, delta.data

    def extra_repr(self):
        return (f"dim={self.dim}, trace={self.trace!r}, gradient={self.gradient!r}, "
                f"rtol={self.rtol}, atol={self.atol}")
