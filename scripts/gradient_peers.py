"""The neural-ODE problem of scripts/bench_gradients.py and its jobs in odeflow, torchdiffeq and diffrax.

One problem: ``dy/dt = MLP(y)`` (``state -> width -> width -> state``, tanh),
a batch of initial states, ``t`` in [0, 1], dopri5 at rtol = atol = 1e-5,
float64, loss ``sum(y(1) * w)``; the gradient is taken with respect to the
MLP's weights. Every library gets the same weights (odeflow's ``nn.MLP``
initialisation, copied), the same ``y0`` and ``w``.

Each ``*_jobs`` function returns ``{mode: (job, count)}`` with ``mode`` in
``forward`` (the solve alone, no gradient), ``backprop`` (differentiate
through the solver: torchdiffeq's ``odeint``, diffrax's
``RecursiveCheckpointAdjoint``) and ``backsolve`` (the adjoint ODE:
torchdiffeq's ``odeint_adjoint``, diffrax's ``BacksolveAdjoint``), plus
odeflow's ``checkpoint``; ``count()`` runs the job once more and returns its
evaluation or step counts. diffrax's jobs are ``jax.jit``-compiled (the
compilation happens in the warm-up call) and wait for the result
(``block_until_ready``).
"""
from __future__ import annotations

import numpy as np

import odeflow
from odeflow import Tensor, nn
from odeflow.autodiff import ops

RTOL = ATOL = 1e-5


class Problem:
    """Weights, ``y0`` and the loss weights ``w`` of one size (arrays, float64)."""

    def __init__(self, batch=256, width=64, state=2):
        self.batch, self.width, self.state = batch, width, state
        self.sizes = (state, width, width, state)
        self.net = nn.MLP(self.sizes, activation="tanh", rng=np.random.default_rng(0))
        self.weights = [p.data.copy() for p in self.net.parameters()]   # W1, b1, W2, b2, W3, b3
        rng = np.random.default_rng(1)
        self.y0 = rng.normal(size=(batch, state))
        self.w = rng.normal(size=(batch, state))

    def label(self):
        return {"batch": self.batch, "width": self.width, "state": self.state}


class _Dynamics(nn.Module):
    def __init__(self, net):
        self.net = net
        self.nfe = 0

    def forward(self, t, y):
        self.nfe += 1
        return self.net(y)


def odeflow_jobs(problem):
    func = _Dynamics(problem.net)
    t = np.array([0.0, 1.0])

    def forward():
        with odeflow.no_grad():
            return odeflow.odeint(func, problem.y0, t, rtol=RTOL, atol=ATOL)

    def gradient(mode):
        func.zero_grad()
        if mode == "backprop":
            ys = odeflow.odeint(func, Tensor(problem.y0), t, rtol=RTOL, atol=ATOL)
        else:
            ys = odeflow.odeint_adjoint(func, Tensor(problem.y0), t, rtol=RTOL, atol=ATOL, adjoint_mode=mode)
        ops.sum(ys[-1] * problem.w).backward()

    def count(job):
        func.nfe = 0
        job()
        return {"nfe": func.nfe}
    jobs = {"forward": forward}
    for mode in ("backprop", "backsolve", "checkpoint"):
        jobs[mode] = lambda mode=mode: gradient(mode)
    return {m: (j, lambda j=j: count(j)) for m, j in jobs.items()}


def torch_jobs(problem):
    """torchdiffeq's jobs and a label, or ``({}, None)`` when it is not installed."""
    try:
        import torch
        import torchdiffeq
    except ImportError:
        return {}, None
    torch.set_default_dtype(torch.float64)
    s, h = problem.state, problem.width

    class F(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(s, h), torch.nn.Tanh(), torch.nn.Linear(h, h),
                                           torch.nn.Tanh(), torch.nn.Linear(h, s))
            with torch.no_grad():
                for p, v in zip(self.net.parameters(), problem.weights):
                    p.copy_(torch.tensor(v))
            self.nfe = 0

        def forward(self, t, y):
            self.nfe += 1
            return self.net(y)
    func = F()
    y0, w, t = torch.tensor(problem.y0), torch.tensor(problem.w), torch.tensor([0.0, 1.0])

    def forward():
        with torch.no_grad():
            return torchdiffeq.odeint(func, y0, t, rtol=RTOL, atol=ATOL, method="dopri5")

    def gradient(solver):
        func.zero_grad()
        ys = solver(func, y0, t, rtol=RTOL, atol=ATOL, method="dopri5")
        (ys[-1] * w).sum().backward()

    def count(job):
        func.nfe = 0
        job()
        return {"nfe": func.nfe}
    jobs = {"forward": forward, "backprop": lambda: gradient(torchdiffeq.odeint),
            "backsolve": lambda: gradient(torchdiffeq.odeint_adjoint)}
    label = (f"torchdiffeq {torchdiffeq.__version__} (torch {torch.__version__}, "
             f"{torch.get_num_threads()} threads)")
    return {m: (j, lambda j=j: count(j)) for m, j in jobs.items()}, label


def diffrax_jobs(problem):
    """diffrax's jitted jobs and a label, or ``({}, None)`` when it is not installed."""
    try:
        import jax
        jax.config.update("jax_enable_x64", True)
        import diffrax
        import jax.numpy as jnp
    except ImportError:
        return {}, None
    params = tuple(jnp.asarray(v) for v in problem.weights)
    y0, w = jnp.asarray(problem.y0), jnp.asarray(problem.w)

    def f(t, y, p):
        W1, b1, W2, b2, W3, b3 = p
        h = jnp.tanh(y @ W1.T + b1)
        h = jnp.tanh(h @ W2.T + b2)
        return h @ W3.T + b3
    term, solver = diffrax.ODETerm(f), diffrax.Dopri5()
    controller = diffrax.PIDController(rtol=RTOL, atol=ATOL)

    def solve(p, adjoint):
        return diffrax.diffeqsolve(term, solver, 0.0, 1.0, None, y0, args=p, stepsize_controller=controller,
                                   saveat=diffrax.SaveAt(t1=True), adjoint=adjoint, max_steps=100_000)

    def loss(p, adjoint):
        return jnp.sum(solve(p, adjoint).ys[-1] * w)
    fwd = jax.jit(lambda p: solve(p, diffrax.RecursiveCheckpointAdjoint()))
    grads = {"backprop": jax.jit(jax.grad(lambda p: loss(p, diffrax.RecursiveCheckpointAdjoint()))),
             "backsolve": jax.jit(jax.grad(lambda p: loss(p, diffrax.BacksolveAdjoint())))}

    def count():
        stats = fwd(params).stats
        return {"n_steps": int(stats["num_steps"]), "n_accepted": int(stats["num_accepted_steps"])}
    jobs = {"forward": (lambda: fwd(params).ys.block_until_ready(), count)}
    for mode, g in grads.items():
        jobs[mode] = (lambda g=g: jax.block_until_ready(g(params)), count)
    label = f"diffrax {diffrax.__version__} (jax {jax.__version__}, jit, CPU)"
    return jobs, label
