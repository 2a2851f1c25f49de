"""The RNN baseline of Table 2: recurrent dynamics driven by the time gaps, in place of an ODE.

Chen et al. (2018, §5) compare the latent ODE with an RNN that receives the
time differences between observations as an extra input. Here the baseline
keeps everything of the latent ODE except the continuous dynamics, so the
comparison isolates them:

* the same recognition network reads ``(x_i, t_i - t_{i-1})`` backwards in
  time (:class:`~odeflow.models.encoders.RecognitionRNN`), its final hidden
  state giving a deterministic initial state ``h_0 = tanh(W h + b)`` at ``t0``;
* a generative RNN steps forwards through the times, reading the gap since
  the previous one (from ``t0``): ``h_k = cell(t_k - t_{k-1}, h_{k-1})``, in
  place of the latent ODE's flow from ``t_{k-1}`` to ``t_k``; like the ODE it
  runs once over the union of a batch's times (:meth:`RNNBaseline.rollout`);
* a decoder MLP maps ``h_k`` to the observation mean at ``t_k``.

It is trained on the observed points with the same Gaussian log-likelihood
and fixed noise std as the latent ODE (so the loss is a scaled squared error);
it has no latent distribution and no KL term. To predict at new times it is
run over those times instead, exactly as the latent ODE is solved at them.
Unlike the ODE, a discrete recurrence depends on how finely the time axis is
cut: stepped over other times than in training, it drifts.

References
----------
.. [1] R. T. Q. Chen, Y. Rubanova, J. Bettencourt, D. Duvenaud, "Neural
   Ordinary Differential Equations", NeurIPS 2018, §5 and Table 2.
.. [2] Y. Rubanova, R. T. Q. Chen, D. Duvenaud, "Latent ODEs for
   irregularly-sampled time series", NeurIPS 2019, §4 (the "RNN-Delta_t" baselines).
"""
from __future__ import annotations


import numpy as np

from odeflow.autodiff import ops
from odeflow.autodiff.tensor import Tensor, no_grad
from odeflow.errors import InputError
from odeflow.models.encoders import CELLS, RecognitionRNN, cell_step, check_batch, check_positive
from odeflow.models.latent_ode import gaussian_log_likelihood, union_times
from odeflow.nn import MLP, GRUCell, Linear, Module, RNNCell, init

__all__ = ["RNNBaseline"]


class RNNBaseline(Module):
    """Encoder RNN + generative RNN over time gaps + decoder MLP (module docstring).

    Parameters
    ----------
    obs_dim : int, default 2
    hidden : int, default 25
        Units of both recurrent cells.
    decoder_hidden : int, default 20
        Width of the decoder MLP ``hidden -> decoder_hidden -> D``.
    cell : {"rnn", "gru"}, default "gru"
        Cell type of both RNNs.
    noise_std : float, default 0.3
        Fixed noise std of the likelihood (data units).
    obs_scale, time_scale : float, default 1.0
        As :class:`~odeflow.models.latent_ode.LatentODE`: data and time units
        per network unit.
    rng : int, numpy.random.Generator or None

    Raises
    ------
    InputError
        Unknown `cell`, non-positive sizes or scales.
    """

    def __init__(self, obs_dim: int = 2, hidden: int = 25, decoder_hidden: int = 20,
                 cell: str = "gru", noise_std: float = 0.3, obs_scale: float = 1.0,
                 time_scale: float = 1.0, rng=None):
        if cell not in CELLS:
            raise InputError(f"`cell` must be one of {CELLS}; got {cell!r}")
        check_positive(noise_std=noise_std, obs_scale=obs_scale, time_scale=time_scale)
        rng = init.as_generator(rng)
        self.encoder = RecognitionRNN(obs_dim, 1, hidden, cell, time_scale, rng=rng, output=False)
        self.init_state = Linear(hidden, hidden, rng=rng)
        self.cell = (GRUCell if cell == "gru" else RNNCell)(1, hidden, rng=rng)
        self.decoder = MLP((hidden, decoder_hidden, obs_dim), activation="relu", rng=rng)
        self.obs_dim, self.hidden, self.cell_type = obs_dim, hidden, cell
        self.noise_std, self.obs_scale, self.time_scale = float(noise_std), float(obs_scale), float(time_scale)

    def initial_state(self, times, values, mask=None, t0=0.0):
        """``h_0`` at ``t0`` from the observations, Tensor of shape (B, hidden)."""
        values = values if isinstance(values, Tensor) else Tensor(np.asarray(values, dtype=np.float64))
        h = self.encoder.hidden_state(times, values * (1.0 / self.obs_scale), mask, t0)
        return ops.tanh(self.init_state(h))

    def rollout(self, h0, times, mask=None, t0=0.0):
        """Observation means at each row's times, Tensor of shape (B, N, D).

        As the latent ODE is solved once on the union of the batch's times, the
        generative RNN steps once through that union (``t0`` first), every row
        reading the same gap ``t_k - t_{k-1}`` at step ``k``; each row's outputs
        are then gathered at its own times. So the RNN meets the same time
        steps in training (a batch of 100 spirals covers the whole grid) as
        when it predicts on the grid.

        Parameters
        ----------
        h0 : Tensor, shape (B, hidden)
            States at ``t0``.
        times : array_like, shape (B, N)
            Times per row (``>= t0``, non-decreasing over `mask`).
        mask : array_like of bool, shape (B, N), optional
            Padding marker (padded entries get some output of their row).
        t0 : float, default 0.0
        """
        times, _, mask, t0 = check_batch(times, np.zeros(np.shape(times) + (1,)), mask, t0)
        t_union, index = union_times(times, mask, t0)
        gaps = np.diff(t_union) / self.time_scale
        h, states = h0, [h0]
        for gap in gaps:
            h = cell_step(self.cell, Tensor(np.full((h.shape[0], 1), gap)), h)
            states.append(h)
        rows = np.broadcast_to(np.arange(times.shape[0])[:, None], index.shape)
        return self.decoder(ops.stack(states, axis=0)[index, rows]) * self.obs_scale

    def loss(self, times, values, mask=None, t0=0.0):
        """Negative Gaussian log-likelihood of the observations, mean over rows (nats).

        Returns
        -------
        loss : Tensor, shape ()
        log_likelihood : ndarray, shape (B,)
        """
        times, values, mask, t0 = check_batch(times, values, mask, t0, self.obs_dim)
        mean = self.rollout(self.initial_state(times, values, mask, t0), times, mask, t0)
        log_lik = gaussian_log_likelihood(values, mean, self.noise_std, mask)
        return ops.mean(-log_lik), log_lik.data.copy()

    def predict(self, times, values, t, mask=None, t0=0.0):
        """Encode observations, then run the generative RNN over the grid `t` (no graph).

        Parameters
        ----------
        times, values, mask, t0
            The observed batch.
        t : array_like, shape (M,)
            Query times, non-decreasing and ``>= t0`` (an RNN cannot step backwards).

        Returns
        -------
        ndarray, shape (B, M, D)

        Raises
        ------
        InputError
            If `t` is not 1-D, non-decreasing and ``>= t0``.
        """
        t = np.asarray(t, dtype=np.float64)
        if t.ndim != 1 or t.size == 0 or np.any(np.diff(t) < 0) or t[0] < t0:
            raise InputError(f"`t` must be 1-D, non-empty, non-decreasing and >= t0 = {t0}; "
                             f"got {t if t.size < 8 else t.shape}")
        with no_grad():
            h0 = self.initial_state(times, values, mask, t0)
            query = np.broadcast_to(t, (h0.shape[0], t.size))
            return self.rollout(h0, query, None, t0).data

    def extra_repr(self):
        return f"obs_dim={self.obs_dim}, hidden={self.hidden}, cell={self.cell_type!r}"
