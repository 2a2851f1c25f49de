"""Recognition networks for irregularly-sampled series: read the observations backwards in time.

A recognition network (the "encoder" of a VAE) maps a trajectory observed at
irregular times to the mean and log-variance of the approximate posterior
``q(z0 | x_1..x_N) = N(mean, diag(exp(logvar)))`` of the latent state at the
reference time ``t0`` (Chen et al. 2018, §5). It reads the observations from
the last to the first, so that its final hidden state sits closest to ``t0``.

Irregular sampling enters through the **time gaps**. With the observation
times ``t_0 <= t_1 <= ... <= t_{N-1}`` of one trajectory and ``t_{-1} := t0``,
step ``i`` (taken for ``i = N-1, ..., 0``) reads the vector ``(x_i, g_i)`` with
``g_i = t_i - t_{i-1} >= 0``: the observation and how far back in time the
next step (or ``t0``, after the last step) lies. Two update rules:

``RecognitionRNN`` (cell ``"rnn"`` or ``"gru"``)
    ``h <- cell((x_i, g_i), h)``, the time gap being one more input
    (Chen et al. 2018, §5, "RNN encoder").
``ODERNNEncoder``
    Between observations the hidden state follows its own ODE ``dh/dt =
    f_h(h)``, integrated backwards over the gap, then the cell reads the
    observation (Rubanova, Chen & Duvenaud 2019, "ODE-RNN", Algorithm 1; here
    run backwards in time, as their latent-ODE encoder).

Batches: ``times`` and ``values`` hold one row per trajectory; a boolean
``mask`` marks the real entries of rows padded to a common length. A padded
step leaves the hidden state unchanged (``where(mask, new, old)``), so rows
of any lengths run together as one batch, with no per-trajectory Python loop.

References
----------
.. [1] R. T. Q. Chen, Y. Rubanova, J. Bettencourt, D. Duvenaud, "Neural
   Ordinary Differential Equations", NeurIPS 2018, §5 and Appendix D.
.. [2] Y. Rubanova, R. T. Q. Chen, D. Duvenaud, "Latent ODEs for
   irregularly-sampled time series", NeurIPS 2019, §3 and Algorithm 1.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from odeflow.autodiff import ops
from odeflow.autodiff.tensor import Tensor
from odeflow.errors import InputError, InputTypeError, ShapeError
from odeflow.nn import MLP, GRUCell, Linear, Module, RNNCell, init

__all__ = ["check_batch", "time_gaps", "cell_step", "RecognitionRNN", "ODERNNEncoder", "CELLS"]

CELLS = ("rnn", "gru")


def _sigmoid(a):
    return 0.5 * (1.0 + np.tanh(0.5 * a))  # no overflow for large |a|


def _affine(x, w, b):
    return x @ w.T if b is None else x @ w.T + b


def cell_step(cell, x, h):
    """One step of a tanh :class:`~odeflow.nn.RNNCell` or a :class:`~odeflow.nn.GRUCell` as ONE graph node.

    Same values as ``cell(x, h)``, but the step is a single node whose VJP is
    written out by hand (below) instead of the ~25 nodes of the composed
    GRU: a recognition network takes 100 sequential steps per batch, and the
    graph walk over them was most of a training step's time. The gradient is
    first order only (no ``create_graph``). Other cells fall back to ``cell(x, h)``.

    Parameters
    ----------
    cell : RNNCell or GRUCell
    x : Tensor, shape (B, input_size)
    h : Tensor, shape (B, hidden_size)

    Returns
    -------
    Tensor, shape (B, hidden_size)

    Notes
    -----
    GRU (PyTorch's form, :class:`~odeflow.nn.GRUCell`), with ``a_* = gi_* + gh_*``
    the gate pre-activations and ``dh' = g``::

        dn = g (1 - z),   dz = g (h - n),   dh (direct) = g z
        da_n = dn (1 - n^2);  d(gi_n) = da_n;  d(gh_n) = da_n r;  dr = da_n gh_n
        da_z = dz z (1 - z);  da_r = dr r (1 - r)

    then the affine maps ``gi = x W_ih^T + b_ih``, ``gh = h W_hh^T + b_hh`` pass
    ``d(gi)``, ``d(gh)`` on to ``x``, ``h`` and the weights as any linear layer.
    """
    from odeflow.autodiff.ops import make_node

    gru = isinstance(cell, GRUCell)
    if not gru and (type(cell) is not RNNCell or cell.nonlinearity != "tanh"):
        return cell(x, h)
    x, h = (v if isinstance(v, Tensor) else Tensor(np.asarray(v, dtype=np.float64)) for v in (x, h))
    w_ih, w_hh, b_ih, b_hh = cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh
    biased = b_ih is not None
    gi = _affine(x.data, w_ih.data, b_ih.data if biased else None)
    gh = _affine(h.data, w_hh.data, b_hh.data if biased else None)
    if gru:
        n_h = cell.hidden_size
        r = _sigmoid(gi[:, :n_h] + gh[:, :n_h])
        z = _sigmoid(gi[:, n_h:2 * n_h] + gh[:, n_h:2 * n_h])
        n = np.tanh(gi[:, 2 * n_h:] + r * gh[:, 2 * n_h:])
        out = (1.0 - z) * n + z * h.data
    else:
        out = np.tanh(gi + gh)
    parents = [x, h, w_ih, w_hh] + ([b_ih, b_hh] if biased else [])

    def vjp(g):
        g = g.data
        if gru:
            da_n = g * (1.0 - z) * (1.0 - n * n)
            dr = da_n * gh[:, 2 * n_h:]
            d_gi = np.concatenate([dr * r * (1.0 - r), g * (h.data - n) * z * (1.0 - z), da_n], axis=1)
            d_gh = np.concatenate([d_gi[:, :2 * n_h], da_n * r], axis=1)
            dh_direct = g * z
        else:
            d_gi = d_gh = g * (1.0 - out * out)
            dh_direct = 0.0
        grads = [d_gi @ w_ih.data if x.requires_grad else None,
                 d_gh @ w_hh.data + dh_direct if h.requires_grad else None,
                 d_gi.T @ x.data, d_gh.T @ h.data]
        return grads + ([d_gi.sum(axis=0), d_gh.sum(axis=0)] if biased else [])

    return make_node(out, parents, vjp)


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise InputError(f"`{name}` must be a positive int; got {value!r}")
    return int(value)


def check_positive(**values):
    """Each keyword argument must be a finite real number > 0 (bools refused); InputError names it."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < math.inf:
            raise InputError(f"`{name}` must be a finite number > 0; got {value!r}")


def check_batch(times, values, mask=None, t0=0.0, obs_dim=None):
    """Validate a batch of irregularly-observed trajectories and put it in canonical form.

    Parameters
    ----------
    times : array_like, shape (B, N)
        Observation times of each trajectory (units of the model's time),
        non-decreasing along each row over the entries where `mask` holds.
    values : array_like or Tensor, shape (B, N, D)
        The observations.
    mask : array_like of bool, shape (B, N), optional
        True at real observations; default all True. Entries where it is
        False are padding: their times and values are ignored.
    t0 : float, default 0.0
        Reference time of the latent initial state; every observed time must
        be ``>= t0``.
    obs_dim : int, optional
        Required ``D``.

    Returns
    -------
    times : ndarray, shape (B, N), float64
        Padding entries replaced by the last real time of their row (or ``t0``).
    values : Tensor, shape (B, N, D)
    mask : ndarray, shape (B, N), bool
    t0 : float

    Raises
    ------
    ShapeError
        If the shapes do not fit together (or ``D != obs_dim``).
    InputError
        If a time is not finite, an observed time is below ``t0``, or the
        observed times of a row decrease; the message names the row.
    InputTypeError
        If `mask` is not a bool array.
    """
    times = np.asarray(times, dtype=np.float64)
    values = values if isinstance(values, Tensor) else Tensor(np.asarray(values, dtype=np.float64))
    if times.ndim != 2:
        raise ShapeError(f"`times` must have shape (B, N); got shape {times.shape}")
    if values.ndim != 3 or values.shape[:2] != times.shape:
        raise ShapeError(f"`values` must have shape (B, N, D) with (B, N) = `times`.shape "
                         f"{times.shape}; got shape {values.shape}")
    if obs_dim is not None and values.shape[2] != obs_dim:
        raise ShapeError(f"`values` must have {obs_dim} features (last axis); got shape {values.shape}")
    if mask is None:
        mask = np.ones(times.shape, dtype=bool)
    else:
        mask = np.asarray(mask)
        if mask.dtype != bool:
            raise InputTypeError(f"`mask` must be a bool array; got dtype {mask.dtype}")
        if mask.shape != times.shape:
            raise ShapeError(f"`mask` must have the shape of `times` {times.shape}; got {mask.shape}")
    if isinstance(t0, bool) or not isinstance(t0, numbers.Real) or not np.isfinite(t0):
        raise InputError(f"`t0` must be a finite number; got {t0!r}")
    t0 = float(t0)
    if not np.all(np.isfinite(times[mask])):
        row = int(np.argwhere(mask & ~np.isfinite(times))[0, 0])
        raise InputError(f"`times` must be finite; row {row} has {times[row][mask[row]]}")
    below = mask & (times < t0)
    if below.any():
        row, col = np.argwhere(below)[0]
        raise InputError(f"`times` must be >= t0 = {t0}; times[{row}, {col}] = {times[row, col]}")
    # the last real time up to each entry (t0 before the first); padding takes it over
    filled = np.maximum(np.maximum.accumulate(np.where(mask, times, -np.inf), axis=1), t0)
    before = np.concatenate([np.full((times.shape[0], 1), t0), filled[:, :-1]], axis=1)
    decreasing = mask & (times < before)
    if decreasing.any():
        row = int(np.argwhere(decreasing)[0, 0])
        raise InputError(f"`times` must not decrease along a row (over the observed entries); "
                         f"row {row}: {times[row][mask[row]]}")
    return filled, values, mask, t0


def time_gaps(times, mask, t0):
    """The gap ``g_i = t_i - t_{i-1}`` read with each observation (``t_{-1} = t0``).

    Parameters
    ----------
    times : ndarray, shape (B, N), float64
        Canonical times from :func:`check_batch` (padding repeats the last real time).
    mask : ndarray, shape (B, N), bool
    t0 : float

    Returns
    -------
    ndarray, shape (B, N), float64
        ``>= 0``; 0 at padding entries.
    """
    previous = np.concatenate([np.full((times.shape[0], 1), t0), times[:, :-1]], axis=1)
    return np.where(mask, times - previous, 0.0)


class RecognitionRNN(Module):
    """RNN or GRU over ``(x_i, g_i)`` run backwards in time -> ``(mean, logvar)`` of ``q(z0)``.

    Parameters
    ----------
    obs_dim : int
        ``D``, features per observation.
    latent_dim : int
        ``L``, size of ``z0``.
    hidden : int, default 25
        Hidden units of the cell (the paper's encoder: a tanh RNN of 25 units).
    cell : {"rnn", "gru"}, default "rnn"
    gap_scale : float, default 1.0
        Gaps enter the cell as ``g_i / gap_scale`` (keep the input of order one).
    rng : int, numpy.random.Generator or None
        Initial weights (PyTorch's schemes, :mod:`odeflow.nn.init`).
    output : bool, default True
        Build the read-out layer ``out``; without it only :meth:`hidden_state`
        works (for models with a read-out of their own).

    Attributes
    ----------
    cell : RNNCell or GRUCell, input ``D + 1``, hidden ``hidden``
    out : Linear, ``hidden -> 2 L`` (the mean, then the log-variance), or None.

    Raises
    ------
    InputError
        A size is not a positive int, `cell` is unknown or `gap_scale <= 0`.
    """

    def __init__(self, obs_dim: int, latent_dim: int, hidden: int = 25, cell: str = "rnn",
                 gap_scale: float = 1.0, rng=None, output: bool = True):
        obs_dim, latent_dim = _positive_int(obs_dim, "obs_dim"), _positive_int(latent_dim, "latent_dim")
        hidden = _positive_int(hidden, "hidden")
        if cell not in CELLS:
            raise InputError(f"`cell` must be one of {CELLS}; got {cell!r}")
        if not float(gap_scale) > 0:
            raise InputError(f"`gap_scale` must be > 0; got {gap_scale!r}")
        rng = init.as_generator(rng)
        self.obs_dim, self.latent_dim, self.hidden = obs_dim, latent_dim, hidden
        self.cell_type, self.gap_scale = cell, float(gap_scale)
        cls = GRUCell if cell == "gru" else RNNCell
        self.cell = cls(obs_dim + 1, hidden, rng=rng)
        # without `output`, only hidden_state() is used (by a model with its own read-out)
        self.out = Linear(hidden, 2 * latent_dim, rng=rng) if output else None

    def _between(self, h, gap):
        """How ``h`` changes over a gap before the next read (nothing for a plain RNN)."""
        return h

    def hidden_state(self, times, values, mask=None, t0=0.0):
        """The final hidden state, at ``t0``, after reading every row backwards.

        Parameters and errors as :meth:`forward`; returns a Tensor of shape
        ``(B, hidden)``.
        """
        times, values, mask, t0 = check_batch(times, values, mask, t0, self.obs_dim)
        gaps = time_gaps(times, mask, t0)
        scaled = Tensor(gaps[..., None] / self.gap_scale)
        inputs = ops.concatenate([values, scaled], axis=-1)  # (B, N, D + 1)
        h = Tensor(np.zeros((times.shape[0], self.hidden)))
        for i in range(times.shape[1] - 1, -1, -1):
            new = cell_step(self.cell, inputs[:, i], h)
            new = self._between(new, gaps[:, i])  # carry h from t_i back to t_{i-1}
            h = new if mask[:, i].all() else ops.where(mask[:, i, None], new, h)
        return h

    def forward(self, times, values, mask=None, t0=0.0):
        """Encode a batch.

        Parameters
        ----------
        times : array_like, shape (B, N)
        values : array_like or Tensor, shape (B, N, D)
        mask : array_like of bool, shape (B, N), optional
        t0 : float, default 0.0
            See :func:`check_batch`.

        Returns
        -------
        mean, logvar : Tensor, shape (B, L)
            Parameters of ``q(z0) = N(mean, diag(exp(logvar)))``.

        Raises
        ------
        ShapeError, InputError
            As :func:`check_batch`.
        """
        out = self.out(self.hidden_state(times, values, mask, t0))
        return out[:, : self.latent_dim], out[:, self.latent_dim:]

    def extra_repr(self):
        return f"obs_dim={self.obs_dim}, latent_dim={self.latent_dim}, cell={self.cell_type!r}"


class _HiddenDynamics(Module):
    """``dh/ds = -gap * f_h(h)``: the ODE-RNN hidden flow on the unit interval ``s in [0, 1]``.

    Rescaling time by each row's own gap turns gaps of different lengths into
    one solve over ``[0, 1]`` for the whole batch; the minus sign runs the
    flow backwards in time (from ``t_i`` to ``t_{i-1}``).
    """

    def __init__(self, net):
        self.net = net
        self.gap = None  # Tensor (B, 1), set before each solve

    def forward(self, s, h):
        return -self.gap * self.net(h)


class ODERNNEncoder(RecognitionRNN):
    """ODE-RNN recognition network (Rubanova et al. 2019), run backwards in time.

    After the cell reads ``(x_i, g_i)`` the hidden state is carried back over
    the gap ``g_i`` by ``dh/dt = f_h(h)`` (an MLP ``hidden -> ode_hidden ->
    hidden``, tanh), solved for the whole batch at once on the rescaled
    interval ``[0, 1]`` (see :class:`_HiddenDynamics`), with gradients by
    backpropagation through the solver.

    Parameters
    ----------
    obs_dim, latent_dim, hidden, cell, gap_scale, rng
        As :class:`RecognitionRNN`.
    ode_hidden : int, default 25
        Width of the hidden-dynamics MLP.
    method : str, default "rk4"
        Solver of the hidden flow; a fixed-step method with ``n_steps`` steps
        per gap (the flows are short and smooth; an adaptive method may be
        given with ``rtol``/``atol``).
    n_steps : int, default 2
    rtol, atol : float, default 1e-3, 1e-4
        Used by adaptive methods only.

    References
    ----------
    .. [1] Y. Rubanova, R. T. Q. Chen, D. Duvenaud, "Latent ODEs for
       irregularly-sampled time series", NeurIPS 2019, Algorithm 1.
    """

    def __init__(self, obs_dim: int, latent_dim: int, hidden: int = 25, cell: str = "gru",
                 gap_scale: float = 1.0, ode_hidden: int = 25, method: str = "rk4",
                 n_steps: int = 2, rtol: float = 1e-3, atol: float = 1e-4, rng=None):
        rng = init.as_generator(rng)
        super().__init__(obs_dim, latent_dim, hidden, cell, gap_scale, rng)
        self.dynamics = _HiddenDynamics(MLP((hidden, _positive_int(ode_hidden, "ode_hidden"), hidden),
                                            activation="tanh", rng=rng))
        self.method, self.n_steps = method, _positive_int(n_steps, "n_steps")
        self.rtol, self.atol = rtol, atol

    def _between(self, h, gap):
        from odeflow.adjoint import odeint  # models sit above the adjoint layer
        if not np.any(gap > 0):
            return h
        self.dynamics.gap = Tensor((gap / self.gap_scale)[:, None])
        fixed = self.method in ("euler", "midpoint", "rk4")
        options = {"step_size": 1.0 / self.n_steps} if fixed else None
        return odeint(self.dynamics, h, np.array([0.0, 1.0]), rtol=self.rtol, atol=self.atol,
                      method=self.method, options=options)[-1]
