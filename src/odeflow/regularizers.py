"""Regularised neural ODEs: penalties on how hard the dynamics are to integrate.

A neural ODE that fits its data with wildly curving trajectories or a stiff
vector field costs many solver steps, and the cost tends to grow during
training (Chen et al. 2018, Fig. 3). Finlay et al. (2020, "How to train your
neural ODE", RNODE, eq. 4-6) penalise two integrals along every trajectory::

    kinetic energy      E(T) = int_0^T ||f(t, z(t))||^2 dt
    Jacobian Frobenius  F(T) = int_0^T ||df/dz (t, z(t))||_F^2 dt

Small kinetic energy favours straight trajectories travelled at constant
speed (optimal transport paths); a small Jacobian keeps neighbouring
trajectories from diverging and the field from being stiff. Both are easy for
an adaptive solver. The Frobenius norm is estimated, like the continuous
normalizing flow's trace, by a probe ``eps`` with ``E[eps eps^T] = I``
(Hutchinson 1989): ``E ||eps^T J||^2 = tr(J^T J) = ||J||_F^2``, one
vector-Jacobian product per evaluation, the probe drawn once per solve.

Both integrals ride along as extra channels of the *same* solve (no extra
solve), one per sample: ``d r/dt = rate(t, z)`` with ``r(t_0) = 0``, integrated
over the solve's direction (``r`` grows when ``t`` decreases, too). The
channels never feed back into the dynamics, so they are left out of the
step-size control (as Kidger et al. 2021 leave out the adjoint's parameter
channels): a regularised solve takes the steps of the plain one, and its state
is the plain one's (up to rounding of the error norm).

STEER (Ghosh, Behl, Dupont, Torr & Namboodiri 2020, "STEER: Simple Temporal
Regularization For Neural ODEs", §3) instead draws the end time of each
training solve uniformly around its nominal value: :func:`steer_end_time`.

Use :func:`odeint_regularized` with any ``func``, or the models' own options
(:class:`odeflow.models.cnf.CNF` and :class:`odeflow.models.odenet.ODEBlock`
take ``regularizers=`` and ``steer=``).
"""
from __future__ import annotations

import dataclasses
import math
import numbers

import numpy as np

from odeflow.adjoint import ADJOINT_MODES, odeint_adjoint, odeint_backprop
from odeflow.autodiff import ops
from odeflow.autodiff.backprop import gradients
from odeflow.autodiff.tensor import Tensor, enable_grad, is_grad_enabled, no_grad
from odeflow.errors import InputError, InputTypeError, ShapeError
from odeflow.nn import Module
from odeflow.solvers.validate import as_times

__all__ = ["Regularizer", "kinetic_energy", "jacobian_frobenius", "Regularization",
           "RegularizedDynamics", "odeint_regularized", "steer_end_time", "PROBES",
           "check_regularizers", "penalty_tolerances", "collect"]

PROBES = ("rademacher", "gaussian", "exact")


@dataclasses.dataclass(frozen=True)
class Regularizer:
    """One penalty: which integral, its weight in the loss, and (Frobenius) the probe.

    Attributes
    ----------
    name : {"kinetic_energy", "jacobian_frobenius"}
    weight : float
        Multiplies the batch mean of the integral at the last output time in
        :attr:`Regularization.penalty`.
    probe : {"rademacher", "gaussian", "exact"}
        Frobenius only: Hutchinson's probe distribution, or ``"exact"`` (one
        VJP per state component: ``||J||_F^2`` itself, for small states).
    """
    name: str
    weight: float
    probe: str = "rademacher"

    @property
    def needs_vjp(self) -> bool:
        return self.name == "jacobian_frobenius"


def _weight(weight):
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not (
            0.0 <= float(weight) < math.inf):
        raise InputError(f"`weight` must be a finite number >= 0; got {weight!r}")
    return float(weight)


def kinetic_energy(weight=1.0) -> Regularizer:
    """``weight * mean_batch int ||f(t, z)||^2 dt`` (RNODE, Finlay et al. 2020, eq. 5).

    Raises
    ------
    InputError
        `weight` negative or not finite.
    """
    return Regularizer("kinetic_energy", _weight(weight))


def jacobian_frobenius(weight=1.0, probe="rademacher") -> Regularizer:
    """``weight * mean_batch int ||df/dz||_F^2 dt``, by Hutchinson's estimator (RNODE eq. 6).

    Parameters
    ----------
    weight : float, >= 0
    probe : {"rademacher", "gaussian", "exact"}, default "rademacher"
        Rademacher probes have the smaller variance; ``"exact"`` sums
        ``||e_i^T J||^2`` over the unit vectors (state size VJPs per evaluation).

    Raises
    ------
    InputError
        Bad `weight` or `probe`.
    """
    if probe not in PROBES:
        raise InputError(f"`probe` must be one of {', '.join(map(repr, PROBES))}; got {probe!r}")
    return Regularizer("jacobian_frobenius", _weight(weight), probe)


def check_regularizers(regularizers, name="regularizers"):
    """`regularizers` as a tuple of :class:`Regularizer`, each name at most once."""
    if regularizers is None:
        return ()
    if isinstance(regularizers, Regularizer):
        regularizers = (regularizers,)
    try:
        regs = tuple(regularizers)
    except TypeError:
        raise InputTypeError(f"`{name}` must be a sequence of regularizers (kinetic_energy(...), "
                             f"jacobian_frobenius(...)); got {type(regularizers).__name__}") from None
    for i, r in enumerate(regs):
        if not isinstance(r, Regularizer):
            raise InputTypeError(f"`{name}[{i}]` must be made by kinetic_energy(...) or "
                                 f"jacobian_frobenius(...); got {type(r).__name__}")
    names = [r.name for r in regs]
    if len(set(names)) != len(names):
        raise InputError(f"`{name}` lists a regularizer twice: {names}")
    return regs


def draw_probe(shape, probe, rng):
    """Probe vectors ``eps`` (float64, `shape`) with ``E[eps eps^T] = I``: Rademacher
    signs or ``N(0, I)`` draws from the Generator `rng`; None for ``probe="exact"``."""
    if probe == "exact":
        return None
    if probe == "gaussian":
        return rng.standard_normal(shape)
    return rng.integers(0, 2, size=shape).astype(np.float64) * 2.0 - 1.0


def rates(regularizers, f, vjps):
    """Per-sample integrands, one Tensor ``(batch,)`` per regularizer.

    Parameters
    ----------
    f : Tensor, shape (batch, n)
        ``f(t, z)`` flattened per sample.
    vjps : list of Tensor, shape (batch, n) each
        ``eps^T df/dz`` (one probe) or the rows ``e_i^T df/dz`` (exact); only
        read by the Frobenius regularizer.
    """
    out = []
    for r in regularizers:
        if r.name == "kinetic_energy":
            out.append(ops.sum(f * f, axis=1))
        else:
            total = None
            for g in vjps:
                term = ops.sum(g * g, axis=1)
                total = term if total is None else total + term
            out.append(total)
    return out


def probe_vjps(f, z, eps, create_graph):
    """``eps^T df/dz`` as a one-element list, or every row ``e_i^T df/dz`` when `eps` is None.

    Rows of the batch are independent, so one VJP with ``e_i`` in every row
    gives row ``i`` of every sample's Jacobian at once.
    """
    if eps is not None:
        cotangents = [eps.astype(z.dtype, copy=False)]
    else:
        cotangents = []
        for i in range(z.shape[1]):
            e = np.zeros(z.shape, dtype=z.dtype)
            e[:, i] = 1.0
            cotangents.append(e)
    out = []
    for c in cotangents:
        (g,) = gradients(f, [z], grad_outputs=c, create_graph=create_graph, retain_graph=True,
                         allow_unused=True)
        out.append(Tensor(np.zeros(z.shape, dtype=z.dtype)) if g is None else g)
    return out


class RegularizedDynamics(Module):
    """``d[z, r_1..r_k]/dt = [f(t, z), s rate_1, ..., s rate_k]`` per sample.

    Layout of the state ``y``, shape ``(batch, n + k)``: ``y[:, :n]`` is ``z``
    flattened per sample (``n = prod(shape[1:])``), ``y[:, n + j]`` is the
    ``j``-th regularizer's integral so far; ``s = +1`` or ``-1`` is the
    direction of the solve, so that ``r`` grows either way.

    Parameters
    ----------
    dynamics : callable ``dynamics(t, z)``
        ``z`` of shape `shape` (batch first), returning ``dz/dt`` of that shape.
    shape : tuple of int
        The state's shape ``(batch, ...)``.
    regularizers : sequence of Regularizer
    direction : {+1, -1}
    eps : ndarray, shape (batch, n), optional
        The Frobenius probe, fixed for the life of this object (one solve and
        its backward pass); None for the exact norm or without Frobenius.

    Attributes
    ----------
    nfe : int
        Evaluations so far (forward and backward solves alike).
    """

    def __init__(self, dynamics, shape, regularizers, direction, eps=None):
        self.dynamics = dynamics
        self.shape = tuple(shape)
        self.batch, self.n = self.shape[0], math.prod(self.shape[1:])
        self.regularizers = tuple(regularizers)
        self.direction = float(direction)
        self.eps = eps
        self.nfe = 0

    def forward(self, t, y):
        """The augmented right-hand side at time `t` for `y` of shape ``(batch, n + k)``."""
        n = self.n
        create_graph = is_grad_enabled()  # does the caller differentiate this evaluation?
        needs_vjp = any(r.needs_vjp for r in self.regularizers)
        with enable_grad() if (needs_vjp or create_graph) else no_grad():
            z = y[:, :n]
            if needs_vjp and not z.requires_grad:  # a forward solve: a leaf to differentiate against
                z = Tensor(z.data, requires_grad=True)
            f = self.dynamics(t, ops.reshape(z, self.shape))
            f = ops.reshape(f if isinstance(f, Tensor) else Tensor(f), (self.batch, n))
            vjps = probe_vjps(f, z, self.eps, create_graph) if needs_vjp else []
            channels = rates(self.regularizers, f, vjps)
        self.nfe += 1
        if not create_graph:
            return Tensor(np.concatenate([f.data] + [self.direction * c.data[:, None] for c in channels],
                                         axis=1))
        return ops.concatenate([f] + [self.direction * ops.reshape(c, (-1, 1)) for c in channels], axis=1)


@dataclasses.dataclass
class Regularization:
    """What the regularizers measured along one solve.

    Attributes
    ----------
    values : dict of str to Tensor, shape (len(t), batch)
        Per regularizer, the integral from ``t[0]`` to each output time, per sample.
    penalty : Tensor, shape ()
        ``sum_j weight_j * mean_batch values_j[-1]``: add it to the loss.
    """
    values: dict
    penalty: Tensor


def penalty_tolerances(rtol, atol, shape, k):
    """Per-channel tolerances ``(batch, n + k)`` leaving the ``k`` penalty channels out of
    the error norm while the RMS over the ``n`` state channels is unchanged.

    `shape` is the state's shape: ``(batch, ...)`` with ``n`` values per sample, or a 1-D
    state (one sample). A tolerance is broadcast against it as :func:`odeflow.odeint`
    broadcasts it against ``y0`` (a per-component tolerance applies to every sample).
    The penalty channels get a scale so large their error ratio is ~0; the
    others a scale shrunk by ``sqrt(n / (n + k))``, so that the RMS over all
    ``n + k`` channels equals the RMS over the state's ``n``.
    """
    batch = shape[0] if len(shape) > 1 else 1
    n = math.prod(shape) // batch if batch else 0
    shrink = math.sqrt(n / (n + k))

    def spread(tol, name):
        tol = np.asarray(tol, dtype=np.float64)
        try:
            state = np.broadcast_to(tol, shape).reshape(batch, n)
        except ValueError:
            raise ShapeError(f"`{name}` of shape {tol.shape} does not broadcast to the state "
                             f"({batch} samples of {n} values)") from None
        return np.concatenate([state * shrink, np.full((batch, k), 1e300)], axis=1)
    return spread(rtol, "rtol"), spread(atol, "atol")


def odeint_regularized(func, y0, t, regularizers, *, gradient="adjoint", rtol=1e-7, atol=1e-9,
                       method="dopri5", options=None, adjoint_mode="backsolve", adjoint_options=None,
                       rng=None, stats=None):
    """Solve ``dz/dt = func(t, z)`` and integrate the regularizers along, in the same solve.

    Parameters
    ----------
    func : callable ``func(t, z)`` on Tensors
    y0 : Tensor or array_like, shape (batch, ...)
        Axis 0 is the batch (a 1-D `y0` is one sample).
    t : array_like or Tensor, shape (m,)
        Output times (as :func:`odeflow.odeint`).
    regularizers : sequence of Regularizer
        From :func:`kinetic_energy` and :func:`jacobian_frobenius`.
    gradient : {"adjoint", "backprop"}, default "adjoint"
        :func:`odeflow.odeint_adjoint` (with `adjoint_mode`, `adjoint_options`)
        or backpropagation through the solver.
    rtol, atol : float or array_like broadcastable to y0's shape
        Tolerances of the state, as for :func:`odeflow.odeint`; the penalty
        channels are left out of the error norm (module docstring).
    method, options
        As :func:`odeflow.odeint`.
    rng : int or numpy.random.Generator, optional
        Source of the Frobenius probe (drawn once per call).
    stats : dict, optional
        Filled as by the solver chosen.

    Returns
    -------
    ys : Tensor, shape (m, *y0.shape)
        The solution, as the unregularised solve would give it.
    Regularization
        The integrals per sample and the weighted penalty.

    Raises
    ------
    InputError, InputTypeError
        Bad `regularizers`, `gradient` or `adjoint_mode`; the solver's own checks.
    """
    regs = check_regularizers(regularizers)
    if not regs:
        raise InputError("`regularizers` is empty: use odeflow.odeint / odeint_adjoint")
    if gradient not in ("adjoint", "backprop"):
        raise InputError(f"`gradient` must be 'adjoint' or 'backprop'; got {gradient!r}")
    if adjoint_mode not in ADJOINT_MODES:
        raise InputError(f"`adjoint_mode` must be one of {ADJOINT_MODES}; got {adjoint_mode!r}")
    y0 = y0 if isinstance(y0, Tensor) else Tensor(np.asarray(y0, dtype=np.float64))
    shape = y0.shape if y0.ndim >= 2 else (1,) + tuple(y0.shape)
    batch, n, k = shape[0], math.prod(shape[1:]), len(regs)
    if batch == 0:  # the penalty is a mean over the samples
        raise ShapeError(f"`y0` of shape {tuple(y0.shape)} has no sample along axis 0")
    t_values = as_times(t.data if isinstance(t, Tensor) else t)  # checked here: its direction is used
    direction = -1.0 if t_values.size > 1 and t_values[-1] < t_values[0] else 1.0
    probe = next((r.probe for r in regs if r.needs_vjp), "exact")
    if not (rng is None or isinstance(rng, (numbers.Integral, np.random.Generator))) or isinstance(rng, bool):
        raise InputTypeError(f"`rng` must be an int seed, a numpy.random.Generator or None; got "
                             f"{type(rng).__name__}")
    eps = draw_probe((batch, n), probe, np.random.default_rng(rng))
    aug = RegularizedDynamics(lambda s, z: func(s, ops.reshape(z, y0.shape)), shape, regs, direction, eps)
    z0 = ops.concatenate([ops.reshape(y0, (batch, n)), Tensor(np.zeros((batch, k), dtype=y0.dtype))], axis=1)
    rtol_z, atol_z = penalty_tolerances(rtol, atol, tuple(y0.shape), k)
    kwargs = dict(rtol=rtol_z, atol=atol_z, method=method, options=options, stats=stats)
    if gradient == "backprop":
        zs = odeint_backprop(aug, z0, t, **kwargs)
    else:
        zs = odeint_adjoint(aug, z0, t, adjoint_mode=adjoint_mode, adjoint_options=adjoint_options,
                            **kwargs)
    ys = ops.reshape(zs[:, :, :n], (zs.shape[0],) + tuple(y0.shape))
    return ys, collect(regs, zs[:, :, n:])


def collect(regularizers, channels):
    """The :class:`Regularization` of integrated penalty channels.

    Parameters
    ----------
    regularizers : sequence of Regularizer
    channels : Tensor, shape (m, batch, k)
        The ``k = len(regularizers)`` channels at the ``m`` output times.
    """
    values = {r.name: channels[:, :, j] for j, r in enumerate(regularizers)}
    penalty = None
    for r in regularizers:
        term = r.weight * ops.mean(values[r.name][-1])
        penalty = term if penalty is None else penalty + term
    return Regularization(values, penalty)


def steer_end_time(t0, t1, b, rng):
    """STEER's random end time: uniform on ``[t1 - b (t1 - t0), t1 + b (t1 - t0)]``.

    Ghosh et al. (2020, §3) draw ``T ~ U(T - b, T + b)`` for each training
    batch; here `b` is relative to the interval's length, so it applies to any
    interval and to a learned ``T``. Evaluation uses the nominal `t1`.

    Parameters
    ----------
    t0, t1 : float or Tensor
        Nominal interval (``t1`` may be a Tensor: its gradient flows through).
    b : float, 0 < b < 1
    rng : numpy.random.Generator

    Returns
    -------
    float or Tensor
        ``t1 + u (t1 - t0)``, ``u ~ U(-b, b)``.

    Raises
    ------
    InputError
        `b` outside (0, 1).
    """
    check_steer(b)
    u = float(rng.uniform(-b, b))
    return t1 + u * (t1 - t0)


def check_steer(b, name="steer"):
    """`b` as a float in (0, 1), or None."""
    if b is None:
        return None
    if isinstance(b, bool) or not isinstance(b, numbers.Real) or not (0.0 < float(b) < 1.0):
        raise InputError(f"`{name}` must be a number in (0, 1) (half-width of the end time's "
                         f"range, relative to the interval); got {b!r}")
    return float(b)
