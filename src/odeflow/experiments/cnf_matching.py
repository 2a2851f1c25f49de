"""Density matching (Chen et al. 2018, §4.1, Fig. 4): planar NF vs planar CNF.

Minimise ``KL(q || p) = E_q[log q(x) - log p~(x)] + log Z`` over samples of
``q``, for the planar NF with ``K`` layers and the planar CNF with ``M = K``
units; ``log Z`` by quadrature, so the table reports the KL divergence itself.
Each run is short and whole: ``train cnf --resume`` skips the finished ones.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from odeflow.experiments.cnf_targets import (
    MATCH_TARGETS, log_normaliser, mean_se, target_log_density, target_log_density_np)
from odeflow.experiments.common import one_blas_thread

__all__ = ["MatchConfig", "matching_model", "fit_matching", "matching_table", "matching_row"]


@dataclasses.dataclass
class MatchConfig:
    """Settings of the density-matching grid (defaults: the full ``odeflow train cnf``)."""
    targets: tuple = MATCH_TARGETS
    ks: tuple = (2, 8, 32)
    iters_nf: int = 5000
    iters_cnf: int = 2000
    batch: int = 200
    lr_nf: float = 1e-2
    lr_cnf: float = 1e-2
    hyper_hidden: int = 32
    end_time: float = 1.0
    rtol: float = 1e-5
    atol: float = 1e-5
    n_eval: int = 5000
    seed: int = 0


def matching_model(kind, k, config: MatchConfig):
    from odeflow.models.cnf import CNF
    from odeflow.models.cnf_dynamics import HyperPlanarDynamics
    from odeflow.models.planar import PlanarFlow
    if kind == "nf":
        return PlanarFlow(2, k, rng=config.seed)
    return CNF(HyperPlanarDynamics(2, k, hidden=config.hyper_hidden, rng=config.seed), 2,
               end_time=config.end_time, trace="exact", rtol=config.rtol, atol=config.atol,
               rng=config.seed)


def _push(model, kind, z0, stats=None):
    """Samples ``x`` of ``q`` and ``log q(x)`` from base draws ``z0`` (differentiable)."""
    from odeflow.models.cnf import standard_normal_log_prob
    base = standard_normal_log_prob(z0)
    if kind == "nf":
        x, log_det = model(z0)
        return x, base - log_det
    z_t, delta = model.transform(z0, stats=stats)
    return z_t[-1], base + delta[-1]


def fit_matching(kind, k, target, config: MatchConfig, *, progress=True):
    """Minimise ``E_q[log q - log p~]`` for one model and target; estimate ``KL(q || p)``.

    Parameters
    ----------
    kind : {"nf", "cnf"}
        Planar NF with ``k`` layers, or planar CNF with ``M = k`` units.
    k : int
    target : {"U1", "U2", "U3"}
    config : MatchConfig

    Returns
    -------
    dict
        ``loss`` (final training losses, mean of the last 20 iterations),
        ``kl``, ``kl_se`` (``KL(q || p)`` in nats on ``n_eval`` fresh samples,
        with ``log Z`` by quadrature), ``seconds``, ``nfe`` (mean forward
        NFE of the last iterations, CNF only) and the trained ``model``.
    """
    from odeflow import optim
    from odeflow.autodiff import ops
    from odeflow.autodiff.tensor import Tensor, no_grad
    from odeflow.experiments.common import check_finite, grad_norm
    from odeflow.experiments.common import progress as bar

    model = matching_model(kind, k, config)
    iters = config.iters_nf if kind == "nf" else config.iters_cnf
    lr = config.lr_nf if kind == "nf" else config.lr_cnf
    optimizer = optim.Adam(model.parameters(), lr=lr)
    schedule = optim.CosineAnnealingLR(optimizer, T_max=iters, eta_min=lr / 10)
    losses, nfes = [], []
    t0 = time.perf_counter()
    with one_blas_thread():
        for it in bar(range(iters), desc=f"{kind.upper()} K={k} {target}",
                      disable=None if progress else True):
            rng = np.random.default_rng([config.seed, k, it])
            z0 = Tensor(rng.standard_normal((config.batch, 2)))
            stats = {}
            x, logq = _push(model, kind, z0, stats)
            loss = ops.mean(logq - target_log_density(target, x))
            check_finite(loss.item(), f"the {kind} K={k} loss on {target}", it)
            optimizer.zero_grad()
            loss.backward()
            check_finite(grad_norm(model), f"the {kind} K={k} gradient norm on {target}", it)
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            if kind == "cnf":
                nfes.append((stats["forward"]["nfe"], stats["backward"]["nfe"]))
        seconds = time.perf_counter() - t0
        rng = np.random.default_rng([config.seed, k, 10 ** 9])
        with no_grad():
            x, logq = _push(model, kind, Tensor(rng.standard_normal((config.n_eval, 2))))
    kl, kl_se = mean_se(logq.data - target_log_density_np(target, x.data) + log_normaliser(target))
    last = np.asarray(nfes[-20:], dtype=np.float64).reshape(-1, 2)
    return {"kind": kind, "k": k, "target": target, "loss": float(np.mean(losses[-20:])),
            "kl": kl, "kl_se": kl_se, "seconds": seconds, "iters": iters,
            "nfe_forward": float(last[:, 0].mean()) if nfes else None,
            "nfe_backward": float(last[:, 1].mean()) if nfes else None,
            "losses": losses, "model": model}


def matching_table(results) -> str:
    targets = list(dict.fromkeys(r["target"] for r in results))
    ks = sorted({r["k"] for r in results})
    head = f"   {'':12s}" + "".join(f"{t:>22s}" for t in targets)
    lines = [head, "   " + "-" * (len(head) - 3)]
    for kind in ("nf", "cnf"):
        for k in ks:
            label = f"NF K={k}" if kind == "nf" else f"CNF M={k}"
            cells = []
            for t in targets:
                r = next((r for r in results if r["target"] == t and r["kind"] == kind and r["k"] == k), None)
                cells.append(f"{r['kl']:8.3f} +- {r['kl_se']:.3f}" if r else "")
            lines.append(f"   {label:12s}" + "".join(f"{c:>22s}" for c in cells))
    return "\n".join(lines)


def matching_row(r) -> dict:
    return {k: v for k, v in r.items() if k not in ("model", "losses")}
