"""The discrete planar normalizing flow of Rezende & Mohamed (2015): the CNF's baseline.

Each of ``K`` layers maps ``z -> z + u_hat tanh(w^T z + b)``. By the matrix
determinant lemma its Jacobian ``I + u_hat psi^T``, ``psi = (1 - tanh^2(w^T z + b)) w``,
has determinant ``1 + u_hat^T psi``, so the density after the layer is::

    log q(z') = log q(z) - log |1 + u_hat^T psi(z)|

The layer is invertible exactly when ``w^T u_hat >= -1`` (Rezende & Mohamed,
Appendix A.1). The free parameter ``u`` is mapped to one that satisfies it::

    u_hat = u + (m(w^T u) - w^T u) w / |w|^2,    m(x) = -1 + softplus(x)

so ``w^T u_hat = m(w^T u) > -1`` and ``1 + u_hat^T psi > 0`` everywhere (no
absolute value is needed). There is no closed-form inverse, so the planar flow
serves density matching (KL(q || p) with samples of ``q``), not maximum
likelihood.

References
----------
.. [1] D. J. Rezende, S. Mohamed, "Variational Inference with Normalizing Flows",
   ICML 2015, §4.1 (eq. 10-12) and Appendix A.1.
.. [2] R. T. Q. Chen et al., "Neural Ordinary Differential Equations", NeurIPS 2018,
   §4.1 and Fig. 4 (planar NF with K layers vs planar CNF with M units).
"""
from __future__ import annotations

import numpy as np

from odeflow.autodiff import ops
from odeflow.autodiff.tensor import Tensor, no_grad
from odeflow.errors import ShapeError
from odeflow.models.cnf import standard_normal_log_prob
from odeflow.models.cnf_dynamics import positive_int
from odeflow.nn import Module, Parameter, init

__all__ = ["PlanarFlow"]


class PlanarFlow(Module):
    """``K`` planar layers applied to base samples ``z0 ~ N(0, I)``.

    Parameters
    ----------
    dim : int
        Dimension ``d``.
    n_layers : int
        ``K``.
    init_scale : float, default 0.1
        Standard deviation of the initial ``u``, ``w`` and ``b`` (near identity).
    rng : int, numpy.random.Generator or None
    dtype : dtype, default float64

    Attributes
    ----------
    u, w : Parameter, shape (K, d)
        ``u`` is unconstrained; the layers use :meth:`u_hat`.
    b : Parameter, shape (K,)
    """

    def __init__(self, dim: int, n_layers: int, init_scale: float = 0.1, rng=None,
                 dtype=np.float64):
        self.dim = positive_int(dim, "dim")
        self.n_layers = positive_int(n_layers, "n_layers")
        rng = init.as_generator(rng)
        shape = (self.n_layers, self.dim)
        self.u = Parameter((init_scale * rng.standard_normal(shape)).astype(dtype))
        self.w = Parameter((init_scale * rng.standard_normal(shape)).astype(dtype))
        self.b = Parameter((init_scale * rng.standard_normal(self.n_layers)).astype(dtype))

    def u_hat(self):
        """The constrained ``u_hat``, shape (K, d), with ``w_k^T u_hat_k > -1`` for every k."""
        wu = ops.sum(self.w * self.u, axis=1, keepdims=True)             # (K, 1)
        m = ops.softplus(wu) - 1.0
        w_sq = ops.sum(self.w * self.w, axis=1, keepdims=True)
        return self.u + (m - wu) * self.w / w_sq

    def forward(self, z):
        """Push `z` through the K layers.

        Parameters
        ----------
        z : Tensor or array_like, shape (batch, d)

        Returns
        -------
        x : Tensor, shape (batch, d)
        log_det : Tensor, shape (batch,)
            ``sum_k log |det dz_k / dz_{k-1}|`` in nats, so ``log q(x) = log q(z) - log_det``.

        Raises
        ------
        ShapeError
            `z` is not of shape ``(batch, d)``.
        """
        if not isinstance(z, Tensor):
            z = Tensor(np.asarray(z, dtype=self.u.dtype))
        if z.ndim != 2 or z.shape[1] != self.dim:
            raise ShapeError(f"`z` must have shape (batch, {self.dim}); got {z.shape}")
        u_hat = self.u_hat()
        log_det = None
        for k in range(self.n_layers):
            w_k, u_k = self.w[k], u_hat[k]
            h = ops.tanh(z @ w_k + self.b[k])                              # (batch,)
            # det(I + u psi^T) = 1 + psi^T u = 1 + (1 - h^2) w^T u  (> 0 by the constraint)
            term = ops.log(1.0 + (1.0 - h * h) * ops.sum(w_k * u_k))
            log_det = term if log_det is None else log_det + term
            z = z + ops.reshape(h, (-1, 1)) * u_k
        return z, log_det

    def sample(self, n, rng=None, *, return_log_prob=False):
        """Draw `n` points of ``q`` (no gradient).

        Parameters
        ----------
        n : int
            >= 1.
        rng : int or numpy.random.Generator, optional
        return_log_prob : bool, default False
            Also return ``log q(x)``, shape (n,), nats.

        Returns
        -------
        x : ndarray, shape (n, d)
        """
        n = positive_int(n, "n")
        rng = np.random.default_rng(rng)
        z0 = rng.standard_normal((n, self.dim))
        with no_grad():
            x, log_det = self.forward(z0)
        if return_log_prob:
            return x.data, standard_normal_log_prob(z0) - log_det.data
        return x.data

    def extra_repr(self):
        return f"dim={self.dim}, n_layers={self.n_layers}"
