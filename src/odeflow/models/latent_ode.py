"""The latent ODE: a VAE whose latent state follows a neural ODE (Chen et al. 2018, §5).

Generative model, for one trajectory observed at times ``t_1..t_N >= t0``::

    z0 ~ p(z0) = N(0, I)                                   (L-dimensional)
    z(t) = z0 + integral_{t0}^{t} f(z(s)) ds               (f: MLP L -> 20 -> 20 -> L, ELU)
    x_i ~ N(decoder(z(t_i)), sigma^2 I)                    (decoder: MLP L -> 20 -> D; sigma fixed)

Inference: a recognition network (:mod:`odeflow.models.encoders`) reads
``(x_i, t_i - t_{i-1})`` backwards in time and gives
``q(z0 | x) = N(mean, diag(exp(logvar)))``. Training maximises the evidence
lower bound (Kingma & Welling 2014, eq. 3; Chen et al. 2018, Appendix D)::

    ELBO = E_q[ sum_i log N(x_i | decoder(z(t_i)), sigma^2 I) ] - KL(q(z0|x) || N(0, I))

with one reparameterised sample ``z0 = mean + exp(logvar / 2) * eps``,
``eps ~ N(0, I)`` (Kingma & Welling 2014, §2.4), so the gradient of the
estimate flows through ``mean`` and ``logvar``. Both terms are in nats per
trajectory; the loss is the negative ELBO averaged over the batch.

Batches with different observation times per trajectory are solved **once**,
in one of two ways (:mod:`odeflow.models.latent_times`, ``grid=``): by default
over the sorted union of all the batch's times (the ODE is autonomous and the
rows do not interact, so one batched solve serves every row) with each row's
states then gathered at its own times (:func:`solve_on_union`); or with
``grid="per_sample"`` each row on its own times with its own step control
(``batch_axis=0``), so a row's result does not depend on its batch-mates.

Gradients through the solve: ``gradient="backprop"`` differentiates the
solver's own operations (exact for the computed solution; memory grows with
the steps) and ``"adjoint"`` solves the adjoint ODE backwards (O(1) memory,
one backward solve per output interval); see :mod:`odeflow.adjoint`.

References
----------
.. [1] R. T. Q. Chen, Y. Rubanova, J. Bettencourt, D. Duvenaud, "Neural
   Ordinary Differential Equations", NeurIPS 2018, §5, Fig. 6 and Appendix D.
.. [2] Y. Rubanova, R. T. Q. Chen, D. Duvenaud, "Latent ODEs for
   irregularly-sampled time series", NeurIPS 2019, §3.
.. [3] D. P. Kingma, M. Welling, "Auto-encoding variational Bayes", ICLR 2014,
   eq. 3 (the ELBO), §2.4 (reparameterisation) and Appendix B (the Gaussian KL).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from odeflow.adjoint.common import array_func
from odeflow.autodiff import ops
from odeflow.autodiff.tensor import Tensor, no_grad
from odeflow.errors import InputError, ShapeError
from odeflow.models.encoders import CELLS, ODERNNEncoder, RecognitionRNN, check_batch, check_positive
from odeflow.models.latent_times import GRADIENTS, GRIDS, solve_on_union, solve_times, union_times
from odeflow.nn import MLP, Module, init

__all__ = ["gaussian_log_likelihood", "kl_normal", "reparameterize", "union_times",
           "solve_on_union", "LatentDynamics", "LatentODE", "ELBO", "GRADIENTS", "GRIDS"]

_LOG_2PI = math.log(2.0 * math.pi)


def _tensor(x):
    """`x` as a Tensor (arrays and numbers become float64 constants)."""
    return x if isinstance(x, Tensor) else Tensor(np.asarray(x, dtype=np.float64))


# -- the objective, piece by piece ------------------------------------------------------

def gaussian_log_likelihood(x, mean, std, mask=None):
    """``log N(x | mean, std^2)`` summed over every axis but the first (nats).

    Per element: ``-(log(2 pi) + 2 log(std) + ((x - mean) / std)^2) / 2``.

    Parameters
    ----------
    x : array_like or Tensor, shape (B, ...)
        Observations.
    mean : Tensor or array_like, shape (B, ...)
        Predicted means (same shape as `x`).
    std : float
        Noise standard deviation, > 0 (fixed, not learned).
    mask : array_like of bool, optional
        Broadcastable against `x` after appending axes on the right (e.g.
        ``(B, N)`` for ``x`` of shape ``(B, N, D)``): only elements where it is
        True count.

    Returns
    -------
    Tensor, shape (B,)
        One log-likelihood per row.

    Raises
    ------
    InputError
        If `std` is not a finite number > 0.
    ShapeError
        If `x` and `mean` differ in shape.
    """
    if isinstance(std, bool) or not isinstance(std, numbers.Real) or not (0 < std < math.inf):
        raise InputError(f"`std` must be a finite number > 0; got {std!r}")
    x, mean = _tensor(x), _tensor(mean)
    if x.shape != mean.shape:
        raise ShapeError(f"`x` and `mean` must have one shape; got {x.shape} and {mean.shape}")
    z = (x - mean) * (1.0 / std)
    per_element = -0.5 * (z * z) - (0.5 * _LOG_2PI + math.log(std))
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        mask = mask.reshape(mask.shape + (1,) * (x.ndim - mask.ndim))
        per_element = ops.where(mask, per_element, 0.0)
    return ops.sum(per_element.reshape(x.shape[0], -1), axis=1)


def kl_normal(mean_q, logvar_q, mean_p=0.0, logvar_p=0.0):
    """``KL(N(mean_q, diag e^logvar_q) || N(mean_p, diag e^logvar_p))`` per row, in nats.

    Closed form (Kingma & Welling 2014, Appendix B, for ``p = N(0, I)``)::

        KL = sum_j (logvar_p - logvar_q + (e^logvar_q + (mean_q - mean_p)^2) / e^logvar_p - 1) / 2

    Parameters
    ----------
    mean_q, logvar_q : Tensor or array_like, shape (B, L)
    mean_p, logvar_p : Tensor, array_like or float, broadcastable to (B, L); default 0
        (the standard normal prior).

    Returns
    -------
    Tensor, shape (B,)
        ``>= 0``; zero exactly when the two Gaussians are equal.
    """
    mean_q, logvar_q, logvar_p = _tensor(mean_q), _tensor(logvar_q), _tensor(logvar_p)
    diff = mean_q - mean_p
    per_dim = 0.5 * (ops.exp(logvar_q - logvar_p) + diff * diff * ops.exp(ops.neg(logvar_p))
                     - 1.0 - (logvar_q - logvar_p))
    return ops.sum(per_dim, axis=-1)


def reparameterize(mean, logvar, rng):
    """A sample ``mean + exp(logvar / 2) * eps`` of ``N(mean, diag e^logvar)``, ``eps ~ N(0, I)``.

    Parameters
    ----------
    mean, logvar : Tensor, shape (B, L)
    rng : numpy.random.Generator or int or None
        Source of ``eps``; ``None`` returns `mean` itself (the posterior mean).

    Returns
    -------
    Tensor, shape (B, L)
        Differentiable in `mean` and `logvar` (Kingma & Welling 2014, §2.4).
    """
    if rng is None:
        return mean
    eps = init.as_generator(rng).standard_normal(mean.shape)
    return mean + ops.exp(0.5 * logvar) * eps


# -- one solve for a batch with different observation times ----------------------------------

# -- the model -----------------------------------------------------------------------------------

class LatentDynamics(Module):
    """``dz/dt = f(z)``: an autonomous MLP ``L -> hidden -> hidden -> L`` with ELU.

    Parameters
    ----------
    latent_dim : int, default 4
    hidden : int, default 20
    rng : int, numpy.random.Generator or None

    Attributes
    ----------
    net : MLP
    nfe : int
        Evaluations so far (reset it by assignment).
    """

    def __init__(self, latent_dim: int = 4, hidden: int = 20, rng=None):
        self.net = MLP((latent_dim, hidden, hidden, latent_dim), activation="elu", rng=rng)
        self.nfe = 0

    def forward(self, t, z):
        """``f(z)``; `t` (float) is ignored: the dynamics are time-invariant."""
        self.nfe += 1
        return self.net(z)


@dataclass
class ELBO:
    """One Monte Carlo estimate of the evidence lower bound of a batch.

    Attributes
    ----------
    loss : Tensor, shape ()
        ``-mean_b ELBO_b``: what training minimises (nats per trajectory).
    log_likelihood : ndarray, shape (B,)
        ``sum_i log N(x_i | decoder(z(t_i)), sigma^2 I)`` per trajectory (nats).
    kl : ndarray, shape (B,)
        ``KL(q(z0|x) || N(0, I))`` per trajectory (nats).
    n_observed : int
        Observations (rows x times, padding excluded) in the batch.
    """

    loss: Tensor
    log_likelihood: np.ndarray
    kl: np.ndarray
    n_observed: int

    @property
    def elbo(self) -> float:
        """The batch mean of the ELBO (nats per trajectory)."""
        return float(np.mean(self.log_likelihood - self.kl))


class LatentODE(Module):
    """Latent ODE for irregularly-sampled time series (Chen et al. 2018, §5).

    Parameters
    ----------
    obs_dim : int, default 2
        ``D``, features per observation.
    latent_dim : int, default 4
        ``L``.
    hidden : int, default 20
        Width of the dynamics MLP ``L -> hidden -> hidden -> L`` (ELU).
    encoder_hidden : int, default 25
        Units of the recognition RNN.
    decoder_hidden : int, default 20
        Width of the decoder MLP ``L -> decoder_hidden -> D``.
    encoder : {"rnn", "gru", "odernn"}, default "rnn"
        Recognition network: an RNN or GRU reading ``(x_i, gap_i)`` backwards
        in time (:class:`~odeflow.models.encoders.RecognitionRNN`), or the
        ODE-RNN of Rubanova et al. 2019 (GRU cell;
        :class:`~odeflow.models.encoders.ODERNNEncoder`).
    decoder_activation : str, default "relu"
    noise_std : float, default 0.3
        ``sigma``, the fixed observation noise of the likelihood (data units).
    obs_scale : float, default 1.0
        Data units per network unit: the encoder reads ``x / obs_scale`` and
        the decoder's output is multiplied by it (keeps the networks' inputs
        and outputs of order one for data of large range).
    time_scale : float, default 1.0
        Time units per encoder unit: the gaps enter the encoder divided by it.
    gradient : {"backprop", "adjoint"}, default "backprop"
    grid : {"union", "per_sample"}, default "union"
        How a batch's different observation times are solved
        (:mod:`odeflow.models.latent_times`): over their union with one step
        control, or each row on its own times with its own step control.
    rtol, atol : float, default 1e-3, 1e-4
    method : str, default "dopri5"
    options : dict, optional
        Settings of the latent solve (:func:`odeflow.odeint`). Loose tolerances
        are enough for training: the data noise is far larger than the solver
        error.
    rng : int, numpy.random.Generator or None
        Initial weights.

    Raises
    ------
    InputError
        Unknown `encoder`, `gradient` or `grid`, non-positive sizes or scales.
    """

    ENCODERS = CELLS + ("odernn",)

    def __init__(self, obs_dim: int = 2, latent_dim: int = 4, hidden: int = 20,
                 encoder_hidden: int = 25, decoder_hidden: int = 20, encoder: str = "rnn",
                 decoder_activation: str = "relu", noise_std: float = 0.3, obs_scale: float = 1.0,
                 time_scale: float = 1.0, gradient: str = "backprop", rtol: float = 1e-3,
                 atol: float = 1e-4, method: str = "dopri5", options=None, rng=None, grid: str = "union"):
        if encoder not in self.ENCODERS:
            raise InputError(f"`encoder` must be one of {self.ENCODERS}; got {encoder!r}")
        if gradient not in GRADIENTS:
            raise InputError(f"`gradient` must be one of {GRADIENTS}; got {gradient!r}")
        if grid not in GRIDS:
            raise InputError(f"`grid` must be one of {GRIDS}; got {grid!r}")
        check_positive(noise_std=noise_std, obs_scale=obs_scale, time_scale=time_scale)
        rng = init.as_generator(rng)
        if encoder == "odernn":
            self.encoder = ODERNNEncoder(obs_dim, latent_dim, encoder_hidden, "gru", time_scale, rng=rng)
        else:
            self.encoder = RecognitionRNN(obs_dim, latent_dim, encoder_hidden, encoder, time_scale, rng=rng)
        self.dynamics = LatentDynamics(latent_dim, hidden, rng=rng)
        self.decoder = MLP((latent_dim, decoder_hidden, obs_dim), activation=decoder_activation, rng=rng)
        self.obs_dim, self.latent_dim = obs_dim, latent_dim
        self.encoder_type, self.noise_std = encoder, float(noise_std)
        self.obs_scale, self.time_scale = float(obs_scale), float(time_scale)
        self.gradient, self.rtol, self.atol, self.method = gradient, rtol, atol, method
        self.options = dict(options) if options else None
        self.grid = grid

    # -- the pieces -------------------------------------------------------------------------
    def encode(self, times, values, mask=None, t0=0.0):
        """``(mean, logvar)`` of ``q(z0 | x)``, each a Tensor of shape (B, L).

        Arguments as :func:`~odeflow.models.encoders.check_batch` (values in data units).
        """
        return self.encoder(times, _tensor(values) * (1.0 / self.obs_scale), mask, t0)

    def decode(self, z):
        """Means of the observations, ``(..., L) -> (..., D)``, in data units."""
        return self.decoder(z) * self.obs_scale

    def latent_at(self, z0, times, mask=None, t0=0.0, stats=None):
        """``z(times)`` for each row (:func:`~odeflow.models.latent_times.solve_times`), shape (B, N, L)."""
        return solve_times(self.grid, self.dynamics, z0, times, mask, t0, gradient=self.gradient,
                              rtol=self.rtol, atol=self.atol, method=self.method,
                              options=self.options, stats=stats)

    # -- the objective ------------------------------------------------------------------------
    def elbo(self, times, values, mask=None, t0=0.0, rng=None, kl_weight=1.0, stats=None) -> ELBO:
        """A one-sample estimate of the ELBO of a batch (module docstring).

        Parameters
        ----------
        times : array_like, shape (B, N)
            Observation times (``>= t0``, non-decreasing over observed entries).
        values : array_like, shape (B, N, D)
            Observations (data units).
        mask : array_like of bool, shape (B, N), optional
            True at real observations (default all).
        t0 : float, default 0.0
            Time of ``z0``.
        rng : numpy.random.Generator, int or None
            Draws ``eps`` of the reparameterised sample; ``None`` uses the
            posterior mean (a deterministic, biased estimate: for evaluation).
        kl_weight : float, default 1.0
            Multiplies the KL term in ``loss`` (1 is the ELBO; smaller values
            early in training are "KL annealing"). ``log_likelihood`` and
            ``kl`` are reported unweighted.
        stats : dict, optional
            Receives the solver statistics (:func:`solve_on_union`).

        Returns
        -------
        ELBO
            ``loss`` is differentiable in every parameter.

        Raises
        ------
        ShapeError, InputError
            Bad batch (see ``check_batch``).
        """
        times, values, mask, t0 = check_batch(times, values, mask, t0, self.obs_dim)
        mean, logvar = self.encode(times, values, mask, t0)
        z0 = reparameterize(mean, logvar, rng)
        x_mean = self.decode(self.latent_at(z0, times, mask, t0, stats))
        log_lik = gaussian_log_likelihood(values, x_mean, self.noise_std, mask)
        kl = kl_normal(mean, logvar)
        loss = ops.mean(kl_weight * kl - log_lik)
        return ELBO(loss, log_lik.data.copy(), kl.data.copy(), int(mask.sum()))

    # -- predictions ---------------------------------------------------------------------------
    def posterior(self, times, values, mask=None, t0=0.0):
        """``(mean, logvar)`` of ``q(z0 | x)`` as ndarrays (no graph)."""
        with no_grad():
            mean, logvar = self.encode(times, values, mask, t0)
        return mean.data, logvar.data

    def trajectory(self, z0, t, t0=0.0, rtol=None, atol=None):
        """Decoded trajectories from initial states, on a common time grid (no graph).

        Parameters
        ----------
        z0 : array_like, shape (B, L)
            Latent states at ``t0``.
        t : array_like, shape (M,)
            Strictly increasing times; those below ``t0`` are reached by
            integrating backwards (extrapolation into the past).
        t0 : float, default 0.0
        rtol, atol : float, optional
            Default to the model's.

        Returns
        -------
        ndarray, shape (B, M, D)
            Means of the observations (data units).

        Raises
        ------
        InputError
            If `t` is not 1-D and strictly increasing.
        """
        from odeflow.solvers.integrate import odeint as odeint_arrays
        z0 = np.asarray(z0, dtype=np.float64)
        t = np.asarray(t, dtype=np.float64)
        if t.ndim != 1 or t.size == 0 or np.any(np.diff(t) <= 0):
            raise InputError(f"`t` must be 1-D, non-empty and strictly increasing; got shape {t.shape}")
        rtol = self.rtol if rtol is None else rtol
        atol = self.atol if atol is None else atol
        f = array_func(self.dynamics)
        zs = np.empty((t.size,) + z0.shape)
        for part, forwards in ((t >= t0, True), (t < t0, False)):
            if not part.any():
                continue
            ts = t[part] if forwards else t[part][::-1]  # ordered away from t0
            starts_at_t0 = ts[0] == t0
            grid = ts if starts_at_t0 else np.concatenate([[t0], ts])
            sol = z0[None] if grid.size == 1 else odeint_arrays(
                f, z0, grid, rtol=rtol, atol=atol, method=self.method, options=self.options)
            sol = sol if starts_at_t0 else sol[1:]
            zs[part] = sol if forwards else sol[::-1]
        with no_grad():
            x = self.decode(Tensor(zs)).data  # (M, B, D)
        return np.swapaxes(x, 0, 1)

    def predict(self, times, values, t, mask=None, t0=0.0, rng=None):
        """Encode observations and decode trajectories on the grid `t` (no graph).

        Parameters
        ----------
        times, values, mask, t0
            The observed batch (as :meth:`elbo`).
        t : array_like, shape (M,)
            Query times, strictly increasing (may go below ``t0`` or beyond the
            last observation: extrapolation).
        rng : numpy.random.Generator, int or None
            ``None``: decode the posterior mean of ``z0``; otherwise one sample.

        Returns
        -------
        ndarray, shape (B, M, D)
        """
        mean, logvar = self.posterior(times, values, mask, t0)
        z0 = mean if rng is None else reparameterize(Tensor(mean), Tensor(logvar), rng).data
        return self.trajectory(z0, t, t0)

    def extra_repr(self):
        return (f"obs_dim={self.obs_dim}, latent_dim={self.latent_dim}, encoder={self.encoder_type!r}, "
                f"noise_std={self.noise_std}, gradient={self.gradient!r}, grid={self.grid!r}")
