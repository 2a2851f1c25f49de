"""Maximum-likelihood training of a CNF on a 2-D toy distribution (FFJORD's toy setting).

A CNF with concatsquash dynamics is fitted to fresh samples of a toy
distribution each iteration (Adam, cosine-decayed learning rate); the test NLL
in nats on held-out samples uses the exact trace. Iteration ``it`` draws its
batch and its Hutchinson probes from ``default_rng([seed, it])`` and the
learning rate depends on ``it`` and the fixed ``lr_decay_iters`` only, so a
resumed or extended run continues exactly as an uninterrupted one.

References
----------
.. [1] W. Grathwohl et al., "FFJORD", ICLR 2019, §4.1 (toy densities,
   concatsquash, T = 0.5 trained, tolerances 1e-5).
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from odeflow.experiments.cnf_targets import mean_se
from odeflow.experiments.common import one_blas_thread

__all__ = ["MLConfig", "make_ml_model", "model_log_prob", "evaluate_nll", "entropy_8gaussians",
           "fit_ml", "COMMAND"]

COMMAND = "cnf-ml"  # the checkpoints' writer
_HISTORY = ("loss", "nfe_forward", "nfe_backward", "seconds", "eval_iter", "test_nll", "test_nll_se")


@dataclasses.dataclass
class MLConfig:
    """Settings of a maximum-likelihood run (defaults: the full ``odeflow train cnf``)."""
    data: str = "8gaussians"
    sizes: tuple = (2, 64, 64, 64, 2)   #: concatsquash widths
    iters: int = 2000                  #: run length (may grow on resume)
    batch: int = 200
    lr: float = 5e-3                   #: Adam, cosine-decayed to lr / 10 over lr_decay_iters
    lr_decay_iters: int = 2000         #: the schedule's horizon (constant lr / 10 after it)
    trace: str = "hutchinson"          #: for training; evaluation is always exact
    noise: str = "rademacher"
    gradient: str = "adjoint"
    rtol: float = 1e-5
    atol: float = 1e-5
    end_time: float = 0.5
    n_test: int = 5000
    eval_every: int = 100
    seed: int = 0
    kinetic: float = 0.0               #: RNODE weights and STEER (odeflow.regularizers); 0: off
    jacobian: float = 0.0
    steer: float = 0.0


def make_ml_model(config: MLConfig):
    """The CNF of a maximum-likelihood run: concatsquash dynamics, trained ``T``."""
    from odeflow.models.cnf import CNF
    from odeflow.models.cnf_dynamics import ConcatSquashMLP
    from odeflow.experiments.argtypes import regularisation
    dynamics = ConcatSquashMLP(config.sizes, activation="tanh", rng=config.seed)
    regularizers, steer = regularisation(config.kinetic, config.jacobian, config.steer)
    return CNF(dynamics, 2, end_time=config.end_time, trace=config.trace, noise=config.noise,
               gradient=config.gradient, rtol=config.rtol, atol=config.atol, rng=config.seed,
               regularizers=regularizers, steer=steer)


def model_log_prob(model, x, batch=2500, *, progress=False, desc="exact log-density"):
    """``log q(x)`` per point in nats with the exact trace, in chunks, no gradient."""
    from odeflow.autodiff.tensor import no_grad
    from odeflow.experiments.common import progress as bar
    with no_grad():
        return np.concatenate([model.log_prob(x[i: i + batch], trace="exact").data
                               for i in bar(range(0, len(x), batch), desc=desc,
                                            disable=None if progress else True)])


def evaluate_nll(model, x, batch=2500, *, progress=False):
    """Test NLL ``-mean log q(x)`` in nats with the exact trace, and its standard error."""
    return mean_se(-model_log_prob(model, x, batch, progress=progress, desc="test NLL"))


def entropy_8gaussians(n=200_000, rng=0):
    """Monte Carlo ``H(p) = -E_p[log p(x)]`` of ``8gaussians`` in nats, and its standard error."""
    from odeflow.data.toy2d import log_prob_8gaussians, sample_toy2d
    return mean_se(-log_prob_8gaussians(sample_toy2d("8gaussians", n, rng)))


def _save(path, model, optimizer, history, it, config, settings):
    from odeflow.experiments import checkpoint as ckpt
    arrays = {f"model/{k}": v for k, v in model.state_dict().items()}
    arrays.update(ckpt.optimizer_arrays(optimizer))
    arrays.update({f"history/{k}": np.asarray(v, dtype=np.float64) for k, v in history.items()})
    ckpt.save(path, arrays, command=COMMAND, config=_run_config(config, settings), step=it,
              where=f"iteration {it}")


def _run_config(config, settings):
    return {"ml": dataclasses.asdict(config), "settings": dict(settings or {})}


def _restore(path, model, optimizer, config, settings):
    """``(iteration, history)`` of the checkpoint `path`, loaded into `model` and `optimizer`."""
    from odeflow.experiments import checkpoint as ckpt
    arrays, meta = ckpt.load(path, command=COMMAND, required=[f"history/{k}" for k in _HISTORY])
    start = meta["step"]
    ckpt.check_config(path, meta["config"], _run_config(config, settings), run_length=("iters",),
                      done=start)
    model.load_state_dict({k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")})
    ckpt.load_optimizer_arrays(path, optimizer, arrays)
    history = {k: arrays[f"history/{k}"].tolist() for k in _HISTORY}
    # the evaluation at the end of a shorter run is not one of the longer run's: drop it
    keep = [i for i, e in enumerate(history["eval_iter"]) if int(e) % config.eval_every == 0
            or int(e) == config.iters]
    for k in ("eval_iter", "test_nll", "test_nll_se"):
        history[k] = [history[k][i] for i in keep]
    history["eval_iter"] = [int(e) for e in history["eval_iter"]]
    return start, history


def fit_ml(model, config: MLConfig, x_test, *, checkpoint=None, resume=False, progress=True,
           log=print, entropy=None, settings=None):
    """Train `model` by maximum likelihood on fresh samples of ``config.data``.

    Parameters
    ----------
    checkpoint : path, optional
        Written after every evaluation (every ``eval_every`` iterations and at
        the end) by :mod:`odeflow.experiments.checkpoint`.
    resume : bool
        Continue from `checkpoint` (same configuration; ``iters`` may grow).
    settings : dict, optional
        More configuration stored in and checked against the checkpoint.

    Returns
    -------
    dict
        ``loss``, ``nfe_forward``, ``nfe_backward``, ``seconds`` (per iteration),
        ``eval_iter``, ``test_nll``, ``test_nll_se`` (every ``eval_every`` and at the end).

    Raises
    ------
    TrainingError
        The loss, a gradient, a parameter or the test NLL became non-finite
        (the last good checkpoint is kept).
    """
    from odeflow import optim
    from odeflow.data.toy2d import sample_toy2d
    from odeflow.experiments import checkpoint as ckpt
    from odeflow.experiments.common import check_finite, cosine_lr, grad_norm
    from odeflow.experiments.common import progress as bar

    log = log or (lambda line: None)
    optimizer = optim.Adam(model.parameters(), lr=config.lr)
    history = {k: [] for k in _HISTORY}
    start = 0
    if checkpoint is not None and ckpt.begin(checkpoint, resume, log):
        start, history = _restore(checkpoint, model, optimizer, config, settings)
        log(f"resumed from {checkpoint} at iteration {start}")

    def evaluate(it):
        nll, se = evaluate_nll(model, x_test, progress=progress)
        check_finite(nll, "the test NLL", f"iteration {it}")
        history["eval_iter"].append(it)
        history["test_nll"].append(nll)
        history["test_nll_se"].append(se)
        return nll

    with one_blas_thread():
        bar_it = bar(range(start, config.iters), total=config.iters, initial=start,
                     desc=f"CNF {config.data}", disable=None if progress else True)
        for it in bar_it:
            t0 = time.perf_counter()
            optimizer.lr = cosine_lr(it, config.lr_decay_iters, config.lr, config.lr / 10)
            rng = np.random.default_rng([config.seed, it])
            x = sample_toy2d(config.data, config.batch, rng)
            stats = {}
            loss = -model.log_prob(x, rng=rng, stats=stats).mean()
            if "regularization" in stats:  # RNODE's penalties (odeflow.regularizers)
                loss = loss + stats["regularization"].penalty
            check_finite(loss.item(), "the training NLL", f"iteration {it + 1}")
            optimizer.zero_grad()
            loss.backward()
            check_finite(grad_norm(model), "the gradient norm", f"iteration {it + 1}")
            optimizer.step()
            history["loss"].append(loss.item())
            history["nfe_forward"].append(stats["forward"]["nfe"])
            history["nfe_backward"].append(stats.get("backward", {}).get("nfe", 0))
            history["seconds"].append(time.perf_counter() - t0)
            if (it + 1) % config.eval_every == 0 or it + 1 == config.iters:
                nll = evaluate(it + 1)
                if checkpoint is not None:
                    _save(checkpoint, model, optimizer, history, it + 1, config, settings)
                if entropy is not None:
                    log(f"  iteration {it + 1}: test NLL {nll:.4f} nats, NLL - H = {nll - entropy:.4f}")
            bar_it.set_postfix(loss=f"{loss.item():.3f}", nfe=stats["forward"]["nfe"],
                               T=f"{float(model.end_time.data):.2f}")
        if checkpoint is None:
            ckpt.check_finite_arrays(model.state_dict(), f"iteration {config.iters}")
    return history
