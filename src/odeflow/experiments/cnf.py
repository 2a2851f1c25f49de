"""Continuous normalizing flows on 2-D densities (Chen et al. 2018, §4; FFJORD).

Two experiments, each with a short version in ``odeflow demo`` and the full
one behind ``odeflow train cnf``:

1. **Maximum likelihood** (FFJORD's toy setting): a CNF with concatsquash
   dynamics fitted to samples of a 2-D toy distribution; test NLL in nats on
   held-out samples. For ``8gaussians`` the true density is known
   (:func:`~odeflow.data.toy2d.log_prob_8gaussians`), so the entropy ``H(p)``
   is estimated by Monte Carlo and ``NLL - H = KL(p || q)`` (>= 0) is
   reported: how far the model is from the truth, in nats.
2. **Density matching** (Chen et al. §4.1, Fig. 4): minimise
   ``KL(q || p) = E_q[log q(x) - log p~(x)] + log Z`` over samples of ``q``, for
   the planar NF with ``K`` layers and the planar CNF with ``M = K`` units.
   ``log Z`` is computed by quadrature on a grid, so the table reports the
   KL divergence itself (>= 0, in nats), not only the loss.

Targets for density matching. Of Rezende & Mohamed's energies only ``U1`` is
normalisable on the plane: ``exp(-U2)`` and ``exp(-U3)`` do not decay along
``z1``, so ``KL(q || p)`` has no minimum (``q`` gains entropy by spreading
along ``z1`` for ever) and the loss has no floor. We use ``U1`` as it is, and
``U2``, ``U3`` times a Gaussian envelope ``exp(-z1^2 / (2 * 2^2))`` that keeps
their shape on [-4, 4]^2, where Rezende & Mohamed plot them, and makes them
normalisable: three targets with a true ``log Z``.

Training details: Adam, one BLAS thread (the matrices are small and the
machine is shared), exact trace for every reported NLL, Hutchinson or exact
trace for training (``--trace``), adjoint or backprop gradients
(``--gradient``), atomic ``.npz`` checkpoints (``--resume``), a tqdm bar, and
a :class:`~odeflow.errors.TrainingError` when the loss becomes non-finite.

References
----------
.. [1] R. T. Q. Chen, Y. Rubanova, J. Bettencourt, D. Duvenaud, "Neural Ordinary
   Differential Equations", NeurIPS 2018, §4, Fig. 4-6.
.. [2] W. Grathwohl et al., "FFJORD", ICLR 2019, §4.1 (toy densities, concatsquash,
   T = 0.5 trained, tolerances 1e-5).
.. [3] D. J. Rezende, S. Mohamed, "Variational Inference with Normalizing Flows",
   ICML 2015, Table 1 (the energies U1-U4).
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np

from odeflow.experiments.common import one_blas_thread

__all__ = ["MLConfig", "MatchConfig", "MATCH_TARGETS", "ENVELOPE_STD", "target_log_density",
           "log_normaliser", "entropy_8gaussians", "model_log_prob", "evaluate_nll", "make_ml_model",
           "fit_ml", "fit_matching", "compare_traces", "demo", "add_arguments", "train"]

MATCH_TARGETS = ("U1", "U2", "U3")
ENVELOPE_STD = 2.0  # std of the Gaussian envelope along z1 that makes U2, U3 normalisable
_ENVELOPED = ("U2", "U3")


# -- density-matching targets ---------------------------------------------------------------

def _logaddexp_half_sq(u, v):
    """``log(exp(-u^2/2) + exp(-v^2/2))`` on Tensors (stable, through logsumexp)."""
    from odeflow.autodiff import ops
    return ops.logsumexp(ops.stack([-0.5 * u * u, -0.5 * v * v], axis=-1), axis=-1)


def target_log_density(name, z):
    """Unnormalised log-density ``log p~(z)`` of a density-matching target, on Tensors.

    ``-U(z)`` of Rezende & Mohamed (2015), Table 1, minus ``z1^2 / (2 * 2^2)``
    for ``U2`` and ``U3`` (see the module docstring). Written with odeflow ops
    so that the loss can be differentiated; the NumPy reference is
    :func:`odeflow.data.toy2d.log_target`.

    Parameters
    ----------
    name : {"U1", "U2", "U3"}
    z : Tensor, shape (batch, 2)

    Returns
    -------
    Tensor, shape (batch,), nats (up to the constant ``log Z``)

    Raises
    ------
    InputError
        Unknown `name`.
    """
    from odeflow.autodiff import ops
    from odeflow.errors import InputError
    if name not in MATCH_TARGETS:
        raise InputError(f"`name` must be one of {', '.join(MATCH_TARGETS)}; got {name!r}")
    z1, z2 = z[:, 0], z[:, 1]
    if name == "U1":
        r = ops.sqrt(z1 * z1 + z2 * z2)
        return -0.5 * ((r - 2.0) / 0.4) ** 2 + _logaddexp_half_sq((z1 - 2.0) / 0.6, (z1 + 2.0) / 0.6)
    w1 = ops.sin((0.5 * math.pi) * z1)
    envelope = -0.5 * (z1 / ENVELOPE_STD) ** 2
    if name == "U2":
        return -0.5 * ((z2 - w1) / 0.4) ** 2 + envelope
    w2 = 3.0 * ops.exp(-0.5 * ((z1 - 1.0) / 0.6) ** 2)
    return _logaddexp_half_sq((z2 - w1) / 0.35, (z2 - w1 + w2) / 0.35) + envelope


def _target_log_density_np(name, z):
    from odeflow.data.toy2d import log_target
    z = np.asarray(z, dtype=np.float64)
    out = log_target(name, z)
    if name in _ENVELOPED:
        out = out - 0.5 * (z[..., 0] / ENVELOPE_STD) ** 2
    return out


def log_normaliser(name, half_width=8.0, n=801):
    """``log Z = log of the integral of p~`` by the trapezoidal rule on ``[-w, w]^2``.

    With the defaults (``w = 8``, spacing 0.02) the grid resolves the narrowest
    feature (width 0.35) with 17 points and the mass outside the square is below
    ``1e-4`` of the total for all three targets (envelope: 4 standard deviations).

    Returns
    -------
    float, nats
    """
    g = np.linspace(-half_width, half_width, n)
    zz = np.stack(np.meshgrid(g, g, indexing="ij"), axis=-1)
    logp = _target_log_density_np(name, zz)
    m = logp.max()
    weights = np.ones(n)
    weights[[0, -1]] = 0.5
    h = g[1] - g[0]
    return float(m + np.log(np.einsum("i,j,ij->", weights, weights, np.exp(logp - m)) * h * h))


# -- helpers -------------------------------------------------------------------------------------

def _mean_se(values):
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(values.size))


def _grad_norm(model) -> float:
    return math.sqrt(sum(float(np.sum(p.grad.data ** 2)) for p in model.parameters() if p.grad is not None))


def _optimizer_state(optimizer) -> dict:
    arrays = {}
    for i, state in enumerate(optimizer.state):
        for key, value in state.items():
            arrays[f"opt.{i}.{key}"] = np.asarray(value)
    return arrays


def _load_optimizer_state(optimizer, arrays) -> None:
    for i, state in enumerate(optimizer.state):
        state.clear()
        for key in ("m", "v", "step"):
            if f"opt.{i}.{key}" in arrays:
                value = arrays[f"opt.{i}.{key}"]
                state[key] = int(value) if key == "step" else np.array(value)


# -- maximum likelihood ----------------------------------------------------------------------

@dataclasses.dataclass
class MLConfig:
    """Settings of a maximum-likelihood run (defaults: the full ``odeflow train cnf``)."""
    data: str = "8gaussians"
    sizes: tuple = (2, 64, 64, 64, 2)   #: concatsquash widths
    iters: int = 2000
    batch: int = 200
    lr: float = 5e-3                   #: Adam, cosine-decayed to lr / 10
    trace: str = "hutchinson"          #: for training; evaluation is always exact
    noise: str = "rademacher"
    gradient: str = "adjoint"
    rtol: float = 1e-5
    atol: float = 1e-5
    end_time: float = 0.5
    n_test: int = 5000
    eval_every: int = 100
    seed: int = 0


def make_ml_model(config: MLConfig):
    """The CNF of a maximum-likelihood run: concatsquash dynamics, trained ``T``."""
    from odeflow.models.cnf import CNF
    from odeflow.models.cnf_dynamics import ConcatSquashMLP
    dynamics = ConcatSquashMLP(config.sizes, activation="tanh", rng=config.seed)
    return CNF(dynamics, 2, end_time=config.end_time, trace=config.trace, noise=config.noise,
               gradient=config.gradient, rtol=config.rtol, atol=config.atol, rng=config.seed)


def model_log_prob(model, x, batch=2500):
    """``log q(x)`` per point in nats with the exact trace, in chunks, no gradient."""
    from odeflow.autodiff.tensor import no_grad
    with no_grad():
        return np.concatenate([model.log_prob(x[i: i + batch], trace="exact").data
                               for i in range(0, len(x), batch)])


def evaluate_nll(model, x, batch=2500):
    """Test NLL ``-mean log q(x)`` in nats with the exact trace, and its standard error."""
    return _mean_se(-model_log_prob(model, x, batch))


def entropy_8gaussians(n=200_000, rng=0):
    """Monte Carlo ``H(p) = -E_p[log p(x)]`` of ``8gaussians`` in nats, and its standard error."""
    from odeflow.data.toy2d import log_prob_8gaussians, sample_toy2d
    return _mean_se(-log_prob_8gaussians(sample_toy2d("8gaussians", n, rng)))


def fit_ml(model, config: MLConfig, x_test, *, checkpoint=None, resume=False, progress=True,
           log=print, entropy=None):
    """Train `model` by maximum likelihood on fresh samples of ``config.data``.

    Each iteration draws its batch and its Hutchinson probes from
    ``default_rng([seed, iteration])``, so a resumed run continues exactly.

    Returns
    -------
    dict
        ``loss``, ``nfe_forward``, ``nfe_backward``, ``seconds`` (per iteration),
        ``eval_iter``, ``test_nll``, ``test_nll_se`` (every ``eval_every`` and at the end).

    Raises
    ------
    TrainingError
        The loss became non-finite (the last checkpoint is left as it was).
    """
    from odeflow import optim
    from odeflow.data.toy2d import sample_toy2d
    from odeflow.experiments.common import atomic_savez, check_finite, load_npz
    from odeflow.experiments.common import progress as bar

    optimizer = optim.Adam(model.parameters(), lr=config.lr)
    schedule = optim.CosineAnnealingLR(optimizer, T_max=config.iters, eta_min=config.lr / 10)
    history = {k: [] for k in ("loss", "nfe_forward", "nfe_backward", "seconds",
                               "eval_iter", "test_nll", "test_nll_se")}
    start = 0
    if resume and checkpoint is not None and Path(checkpoint).exists():
        saved = load_npz(checkpoint)
        model.load_state_dict({k[6:]: v for k, v in saved.items() if k.startswith("model.")})
        _load_optimizer_state(optimizer, saved)
        start = int(saved["iteration"])
        for k in history:
            history[k] = saved[f"history.{k}"].tolist()
        for _ in range(start):
            schedule.step()
        log(f"resumed from {checkpoint} at iteration {start}")

    def evaluate(it):
        nll, se = evaluate_nll(model, x_test)
        history["eval_iter"].append(it)
        history["test_nll"].append(nll)
        history["test_nll_se"].append(se)
        return nll

    def save(it):
        if checkpoint is None:
            return
        arrays = {f"model.{k}": v for k, v in model.state_dict().items()}
        arrays.update(_optimizer_state(optimizer))
        arrays.update({f"history.{k}": np.asarray(v, dtype=np.float64) for k, v in history.items()})
        atomic_savez(checkpoint, iteration=np.array(it),
                     config=np.array(json.dumps(dataclasses.asdict(config))), **arrays)

    with one_blas_thread():
        bar_it = bar(range(start, config.iters), total=config.iters, initial=start,
                     desc=f"CNF {config.data}", disable=None if progress else True)
        for it in bar_it:
            t0 = time.perf_counter()
            rng = np.random.default_rng([config.seed, it])
            x = sample_toy2d(config.data, config.batch, rng)
            stats = {}
            loss = -model.log_prob(x, rng=rng, stats=stats).mean()
            if "regularization" in stats:  # RNODE's penalties (odeflow.regularizers)
                loss = loss + stats["regularization"].penalty
            check_finite(loss.item(), "the training NLL", it)
            optimizer.zero_grad()
            loss.backward()
            check_finite(_grad_norm(model), "the gradient norm", it)
            optimizer.step()
            schedule.step()
            history["loss"].append(loss.item())
            history["nfe_forward"].append(stats["forward"]["nfe"])
            history["nfe_backward"].append(stats.get("backward", {}).get("nfe", 0))
            history["seconds"].append(time.perf_counter() - t0)
            last = it + 1 == config.iters
            if (it + 1) % config.eval_every == 0 or last:
                nll = evaluate(it + 1)
                save(it + 1)
                if entropy is not None:
                    log(f"  iteration {it + 1}: test NLL {nll:.4f} nats, NLL - H = {nll - entropy:.4f}")
            if hasattr(bar_it, "set_postfix"):
                bar_it.set_postfix(loss=f"{loss.item():.3f}", nfe=stats["forward"]["nfe"],
                                   T=f"{float(model.end_time.data):.2f}")
    return history


# -- density matching -------------------------------------------------------------------------

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


def _matching_model(kind, k, config: MatchConfig):
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
    from odeflow.experiments.common import check_finite
    from odeflow.experiments.common import progress as bar

    model = _matching_model(kind, k, config)
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
            check_finite(_grad_norm(model), f"the {kind} K={k} gradient norm on {target}", it)
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            if kind == "cnf":
                nfes.append((stats["forward"]["nfe"], stats["backward"]["nfe"]))
        seconds = time.perf_counter() - t0
        rng = np.random.default_rng([config.seed, k, 10 ** 9])
        with no_grad():
            x, logq = _push(model, kind, Tensor(rng.standard_normal((config.n_eval, 2))))
    kl, kl_se = _mean_se(logq.data - _target_log_density_np(target, x.data) + log_normaliser(target))
    last = np.asarray(nfes[-20:], dtype=np.float64).reshape(-1, 2)
    return {"kind": kind, "k": k, "target": target, "loss": float(np.mean(losses[-20:])),
            "kl": kl, "kl_se": kl_se, "seconds": seconds, "iters": iters,
            "nfe_forward": float(last[:, 0].mean()) if nfes else None,
            "nfe_backward": float(last[:, 1].mean()) if nfes else None,
            "losses": losses, "model": model}


# -- exact vs stochastic trace on one training step -----------------------------------------------

def compare_traces(model, x, seed=0, n_draws=20):
    """One training step (forward + adjoint backward) with each trace, on the same batch `x`.

    Returns
    -------
    dict of dict
        Per trace: ``nfe_forward``, ``nfe_backward``, ``vjp_per_eval`` (VJPs spent on
        the trace per evaluation), ``seconds`` (of the step), ``loss``; for
        Hutchinson also ``estimate_bias`` and ``estimate_bias_se`` (mean over
        ``n_draws`` probe draws of the batch-mean log-density estimate minus the
        exact one, nats) and ``point_std`` (std of one point's estimate, nats).
    """
    from odeflow.autodiff.tensor import no_grad
    out = {}
    exact_logq = None
    for trace in ("exact", "hutchinson"):
        model.zero_grad()
        stats = {}
        t0 = time.perf_counter()
        loss = -model.log_prob(x, trace=trace, rng=np.random.default_rng(seed), stats=stats).mean()
        loss.backward()
        seconds = time.perf_counter() - t0
        dyn = stats["dynamics"]
        out[trace] = {"nfe_forward": stats["forward"]["nfe"], "nfe_backward": stats["backward"]["nfe"],
                      "vjp_per_eval": dyn.n_vjp / dyn.nfe, "seconds": seconds, "loss": loss.item()}
        if trace == "exact":
            with no_grad():
                exact_logq = model.log_prob(x, trace="exact").data
    model.zero_grad()
    with no_grad():
        draws = np.stack([model.log_prob(x, trace="hutchinson", rng=np.random.default_rng([seed, i])).data
                          for i in range(n_draws)])
    bias, bias_se = _mean_se(draws.mean(axis=1) - exact_logq.mean())
    out["hutchinson"].update(estimate_bias=bias, estimate_bias_se=bias_se,
                             point_std=float(np.mean(draws.std(axis=0, ddof=1))))
    return out


# -- figures ---------------------------------------------------------------------------------------

def _grid(lim, n):
    g = np.linspace(-lim, lim, n)
    xx, yy = np.meshgrid(g, g, indexing="xy")
    return xx, yy, np.stack([xx.ravel(), yy.ravel()], axis=1)


def _density_at(model, points, fraction):
    """``log p_t`` at ``t = fraction * T`` on `points` (exact trace, no gradient)."""
    from odeflow.autodiff.tensor import no_grad
    from odeflow.models.cnf import standard_normal_log_prob
    if fraction == 0.0:
        return standard_normal_log_prob(points)
    with no_grad():
        z_t, delta = model.transform(points, times=[0.0, fraction], reverse=True, trace="exact")
    return standard_normal_log_prob(z_t.data[-1]) - delta.data[-1]


def _figure_ml(plt, model, data_name, out, n_grid, lim=4.0):
    from odeflow.data.toy2d import sample_toy2d
    from odeflow.experiments.common import save_figure
    xx, yy, pts = _grid(lim, n_grid)
    logq = _density_at(model, pts, 1.0).reshape(xx.shape)
    data = sample_toy2d(data_name, 20000, 99)
    samples = model.sample(5000, 98)
    fig, axes = plt.subplots(1, 3, figsize=(10.5, 3.6))
    rng = [[-lim, lim], [-lim, lim]]
    axes[0].hist2d(data[:, 0], data[:, 1], bins=n_grid, range=rng, cmap="viridis")
    axes[0].set_title(f"data ({data_name})")
    axes[1].pcolormesh(xx, yy, np.exp(logq), cmap="viridis", shading="auto")
    axes[1].set_title("learned density q(x)")
    axes[2].hist2d(samples[:, 0], samples[:, 1], bins=n_grid, range=rng, cmap="viridis")
    axes[2].set_title("samples of q")
    for ax in axes:
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    return save_figure(fig, Path(out) / "ml_density.png")


def _figure_flow(plt, model, out, n_grid, lim=4.0, n_panels=5):
    """The paper's Fig. 6: density and samples from the base (t = 0) to the data (t = T)."""
    from odeflow.experiments.common import save_figure
    xx, yy, pts = _grid(lim, n_grid)
    z0 = np.random.default_rng(97).standard_normal((2000, 2))
    times, z_t, _ = model.trajectory(z0, n_panels)
    fig, axes = plt.subplots(2, n_panels, figsize=(2.3 * n_panels, 4.8))
    for j, s in enumerate(np.linspace(0.0, 1.0, n_panels)):
        logp = _density_at(model, pts, float(s)).reshape(xx.shape)
        axes[0, j].pcolormesh(xx, yy, np.exp(logp), cmap="viridis", shading="auto")
        axes[0, j].set_title(f"t = {times[j]:.2f}")
        axes[1, j].scatter(z_t[j, :, 0], z_t[j, :, 1], s=1, c=z0[:, 0], cmap="coolwarm")
        axes[1, j].set_xlim(-lim, lim)
        axes[1, j].set_ylim(-lim, lim)
        for ax in axes[:, j]:
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("density")
    axes[1, 0].set_ylabel("samples")
    fig.suptitle("base N(0, I) at t = 0 to data at t = T (colour: first base coordinate)")
    return save_figure(fig, Path(out) / "flow_over_time.png")


def _figure_curves(plt, history, entropy, out):
    from odeflow.experiments.common import save_figure
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4))
    it = np.arange(1, len(history["loss"]) + 1)
    ax1.plot(it, history["loss"], lw=0.8, label="training NLL (Hutchinson)")
    ax1.errorbar(history["eval_iter"], history["test_nll"], yerr=history["test_nll_se"], fmt="o-",
                 ms=3, label="test NLL (exact)")
    if entropy is not None:
        ax1.axhline(entropy, color="k", ls="--", lw=0.8, label="entropy H(p) (Monte Carlo)")
    ax1.set_xlabel("iteration")
    ax1.set_ylabel("nats")
    ax1.legend(fontsize=7)
    ax2.plot(it, history["nfe_forward"], lw=0.8, label="forward")
    ax2.plot(it, history["nfe_backward"], lw=0.8, label="backward (adjoint)")
    ax2.set_xlabel("iteration")
    ax2.set_ylabel("NFE")
    ax2.legend(fontsize=7)
    return save_figure(fig, Path(out) / "ml_training.png")


def _figure_matching(plt, results, out, n_grid=80, lim=4.0):
    from odeflow.experiments.common import save_figure
    targets = list(dict.fromkeys(r["target"] for r in results))
    cols = [(r["kind"], r["k"]) for r in results if r["target"] == targets[0]]
    fig, axes = plt.subplots(len(targets), len(cols) + 1, figsize=(2.2 * (len(cols) + 1), 2.3 * len(targets)),
                             squeeze=False)
    xx, yy, pts = _grid(lim, n_grid)
    for i, target in enumerate(targets):
        logp = _target_log_density_np(target, pts).reshape(xx.shape)
        axes[i, 0].pcolormesh(xx, yy, np.exp(logp), cmap="viridis", shading="auto")
        axes[i, 0].set_title(f"target {target}", fontsize=9)
        for j, (kind, k) in enumerate(cols, start=1):
            r = next(r for r in results if r["target"] == target and r["kind"] == kind and r["k"] == k)
            x = r["model"].sample(5000, 96)
            axes[i, j].hist2d(x[:, 0], x[:, 1], bins=n_grid, range=[[-lim, lim], [-lim, lim]], cmap="viridis")
            name = f"NF K={k}" if kind == "nf" else f"CNF M={k}"
            axes[i, j].set_title(f"{name}\nKL {r['kl']:.2f}", fontsize=9)
        for ax in axes[i]:
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
    return save_figure(fig, Path(out) / "density_matching.png")


# -- tables ------------------------------------------------------------------------------------------

def _matching_table(results) -> str:
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


def _matching_row(r) -> dict:
    return {k: v for k, v in r.items() if k not in ("model", "losses")}


# -- demo ----------------------------------------------------------------------------------------------

def _run_ml(config, out, plt, *, n_grid, progress, log=print, checkpoint=None, resume=False,
            figures=True):
    from odeflow.data.toy2d import sample_toy2d
    entropy = entropy_8gaussians()[0] if config.data == "8gaussians" else None
    x_test = sample_toy2d(config.data, config.n_test, np.random.default_rng([config.seed, 10 ** 9]))
    model = make_ml_model(config)
    history = fit_ml(model, config, x_test, checkpoint=checkpoint, resume=resume,
                     progress=progress, log=log, entropy=entropy)
    seconds = float(np.sum(history["seconds"]))  # training steps only (a resumed run: all of them)
    nll, se = history["test_nll"][-1], history["test_nll_se"][-1]
    summary = {"data": config.data, "sizes": list(config.sizes), "iters": config.iters,
               "batch": config.batch, "trace": config.trace, "gradient": config.gradient,
               "test_nll": nll, "test_nll_se": se, "end_time": float(model.end_time.data),
               "nfe_forward_last": float(np.mean(history["nfe_forward"][-10:])),
               "nfe_backward_last": float(np.mean(history["nfe_backward"][-10:])),
               "seconds": seconds, "seconds_per_iter": float(np.median(history["seconds"]))}
    log(f"   {config.iters} iterations of batch {config.batch}, {config.trace} trace, "
        f"{config.gradient} gradients, concatsquash {'-'.join(map(str, config.sizes))}: "
        f"{seconds:.1f} s of training steps ({summary['seconds_per_iter'] * 1e3:.0f} ms per "
        f"iteration, median; NFE forward/backward {summary['nfe_forward_last']:.0f}/"
        f"{summary['nfe_backward_last']:.0f} at the end)")
    log(f"   test NLL on {config.n_test} held-out samples: {nll:.4f} +- {se:.4f} nats (exact trace); "
        f"learned T = {summary['end_time']:.3f}")
    if entropy is not None:
        from odeflow.data.toy2d import log_prob_8gaussians
        # KL(p || q) = E_p[log p - log q] = NLL - H. The paired estimate on the test points
        # cancels most of the sampling noise that NLL and H carry separately.
        kl, kl_se = _mean_se(log_prob_8gaussians(x_test) - model_log_prob(model, x_test))
        summary.update(entropy=entropy, nll_minus_entropy=nll - entropy, kl_paired=kl, kl_paired_se=kl_se)
        log(f"   entropy of 8gaussians (Monte Carlo, 200,000 samples): {entropy:.4f} nats -> "
            f"NLL - H = {nll - entropy:.4f} nats (target <= 0.1); paired on the test points, "
            f"mean(log p - log q) = KL(p || q) = {kl:.4f} +- {kl_se:.4f} nats")
    if plt is not None and figures:
        _figure_ml(plt, model, config.data, out, n_grid)
        _figure_flow(plt, model, out, n_grid)
        _figure_curves(plt, history, entropy, out)
    return model, history, summary


def _run_matching(config, out, plt, *, progress, log=print, done=None, on_result=None):
    results = []
    for target in config.targets:
        for kind in ("nf", "cnf"):
            for k in config.ks:
                key = f"{target}.{kind}.{k}"
                if done is not None and key in done:
                    results.append(done[key])
                    continue
                r = fit_matching(kind, k, target, config, progress=progress)
                results.append(r)
                if on_result is not None:
                    on_result(key, r)
    log(_matching_table(results))
    if plt is not None and all("model" in r for r in results):
        _figure_matching(plt, results, out)
    return results


def demo(out_dir, quick) -> dict:
    """The CNF part of ``odeflow demo``: maximum likelihood, exact vs Hutchinson, density matching."""
    with one_blas_thread():
        return _demo(out_dir, quick)


def _demo(out_dir, quick) -> dict:
    from odeflow.data.toy2d import sample_toy2d
    from odeflow.experiments.common import matplotlib_pyplot, output_dir

    out = output_dir(out_dir)
    plt = matplotlib_pyplot()
    start, cpu_start = time.perf_counter(), time.process_time()
    sections = {}

    def lap(name, t0, c0):
        sections[name] = {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}
        return time.perf_counter(), time.process_time()

    t0, c0 = start, cpu_start
    print("== Continuous normalizing flows on 2-D densities (Chen et al. 2018 §4; FFJORD)\n")
    if quick:
        ml = MLConfig(sizes=(2, 16, 16, 2), iters=4, batch=50, lr=1e-2, n_test=300, eval_every=4)
        match = MatchConfig(targets=("U1",), ks=(2,), iters_nf=30, iters_cnf=2, n_eval=300)
        n_grid = 24
    else:
        ml = MLConfig(sizes=(2, 64, 64, 64, 2), iters=70, batch=200, lr=1e-2, n_test=2000, eval_every=35)
        match = MatchConfig(targets=("U1",), ks=(2, 8), iters_nf=400, iters_cnf=25, n_eval=2000)
        n_grid = 48
    print(f"1. Maximum likelihood on 8gaussians (short run; `odeflow train cnf` runs {MLConfig.iters})")
    model, _, ml_summary = _run_ml(ml, out, plt, n_grid=n_grid, progress=not quick)
    t0, c0 = lap("maximum_likelihood", t0, c0)

    print("\n2. Exact trace vs Hutchinson's estimator: one training step on the same batch")
    x = sample_toy2d("8gaussians", ml.batch, 5)
    traces = compare_traces(model, x, n_draws=4 if quick else 8)
    print(f"   {'trace':12s}{'NFE fwd':>9s}{'NFE bwd':>9s}{'VJPs/eval':>11s}{'step ms':>9s}")
    for name, r in traces.items():
        print(f"   {name:12s}{r['nfe_forward']:>9d}{r['nfe_backward']:>9d}{r['vjp_per_eval']:>11.0f}"
              f"{r['seconds'] * 1e3:>9.0f}")
    h = traces["hutchinson"]
    print(f"   Hutchinson (Rademacher) log-density estimate: batch mean minus exact "
          f"{h['estimate_bias']:+.4f} +- {h['estimate_bias_se']:.4f} nats over probe draws; "
          f"one point's estimate has std {h['point_std']:.3f} nats")
    t0, c0 = lap("traces", t0, c0)

    print(f"\n3. Density matching KL(q || p) in nats (log Z by quadrature), planar NF vs planar CNF, "
          f"target U1 only ({match.iters_nf} NF / {match.iters_cnf} CNF iterations; "
          f"`odeflow train cnf` runs the full grid)")
    results = _run_matching(match, out, plt, progress=not quick)
    lap("density_matching", t0, c0)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    parts = ", ".join(f"{k.replace('_', ' ')} {v['wall_s']:.0f}" for k, v in sections.items())
    print(f"\n   CNF demo: {seconds:.0f} s wall ({parts}), {cpu:.0f} s CPU of this process "
          f"(wall well above CPU means a busy machine); figures in {out}/")
    return {"ml": ml_summary, "traces": traces, "matching": [_matching_row(r) for r in results],
            "seconds": seconds, "cpu_seconds": cpu, "sections": sections}


# -- odeflow train cnf --------------------------------------------------------------------------------

def add_arguments(parser):
    """Arguments of ``odeflow train cnf``."""
    from odeflow.data.toy2d import TOY2D_NAMES
    ml, mt = MLConfig(), MatchConfig()
    parser.add_argument("--task", choices=("ml", "matching", "all"), default="all",
                        help="maximum likelihood, density matching, or both (default: %(default)s)")
    parser.add_argument("--data", choices=TOY2D_NAMES, default=ml.data,
                        help="ML data (default: %(default)s)")
    parser.add_argument("--sizes", default="-".join(map(str, ml.sizes)),
                        help="concatsquash widths (default: %(default)s)")
    parser.add_argument("--iters", type=int, default=ml.iters, help="ML iterations (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=ml.batch, help="ML batch (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=ml.lr,
                        help="ML Adam learning rate, cosine-decayed to a tenth (default: %(default)s)")
    parser.add_argument("--trace", choices=("exact", "hutchinson"), default=ml.trace,
                        help="trace for ML training (default: %(default)s)")
    parser.add_argument("--noise", choices=("gaussian", "rademacher"), default=ml.noise)
    parser.add_argument("--gradient", choices=("adjoint", "backprop"), default=ml.gradient)
    parser.add_argument("--rtol", type=float, default=ml.rtol)
    parser.add_argument("--atol", type=float, default=ml.atol)
    parser.add_argument("--eval-every", type=int, default=ml.eval_every)
    parser.add_argument("--targets", default=",".join(mt.targets),
                        help="density-matching targets (default: %(default)s)")
    parser.add_argument("--ks", default=",".join(map(str, mt.ks)),
                        help="K = M values for density matching (default: %(default)s)")
    parser.add_argument("--iters-nf", type=int, default=mt.iters_nf)
    parser.add_argument("--iters-cnf", type=int, default=mt.iters_cnf)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true",
                        help="continue from the checkpoints in --out (ML iteration, finished matching runs)")


def train(args) -> int:
    """``odeflow train cnf``: the full runs; results in ``<out>/results.json``."""
    from odeflow.errors import InputError
    from odeflow.experiments.common import atomic_savez, load_npz, matplotlib_pyplot, output_dir
    out = output_dir(args.out)
    plt = matplotlib_pyplot()
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if args.resume and results_path.exists() else {}
    if args.task in ("ml", "all"):
        sizes = tuple(int(s) for s in args.sizes.split("-"))
        config = MLConfig(data=args.data, sizes=sizes, iters=args.iters, batch=args.batch, lr=args.lr,
                          trace=args.trace, noise=args.noise, gradient=args.gradient, rtol=args.rtol,
                          atol=args.atol, eval_every=args.eval_every, seed=args.seed)
        print(f"Maximum likelihood on {config.data}")
        _, _, results["ml"] = _run_ml(config, out, plt, n_grid=100, progress=True,
                                      checkpoint=out / "ml_checkpoint.npz", resume=args.resume)
        results_path.write_text(json.dumps(results, indent=2))
    if args.task in ("matching", "all"):
        targets = tuple(t.strip() for t in args.targets.split(","))
        for t in targets:
            if t not in MATCH_TARGETS:
                raise InputError(f"`--targets` entries must be among {', '.join(MATCH_TARGETS)}; got {t!r}")
        config = MatchConfig(targets=targets, ks=tuple(int(k) for k in args.ks.split(",")),
                             iters_nf=args.iters_nf, iters_cnf=args.iters_cnf, seed=args.seed)
        ckpt = out / "matching_checkpoint.npz"
        rows = {r["key"]: r for r in results.get("matching", [])} if args.resume else {}
        saved = load_npz(ckpt) if args.resume and ckpt.exists() else {}
        done = {}
        for key, row in rows.items():  # rebuild finished models from the checkpoint
            model = _matching_model(row["kind"], row["k"], config)
            prefix = key + "/"
            state = {k[len(prefix):]: v for k, v in saved.items() if k.startswith(prefix)}
            if state:
                model.load_state_dict(state)
                done[key] = dict(row, model=model)
        arrays = dict(saved)

        def on_result(key, r):
            arrays.update({f"{key}/{k}": v for k, v in r["model"].state_dict().items()})
            atomic_savez(ckpt, **arrays)
            rows[key] = dict(_matching_row(r), key=key)
            results["matching"] = list(rows.values())
            results_path.write_text(json.dumps(results, indent=2))

        print("Density matching KL(q || p), nats")
        _run_matching(config, out, plt, progress=True, done=done, on_result=on_result)
    print(f"results in {results_path}")
    return 0
