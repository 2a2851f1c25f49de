"""Benchmark: coupled stepping (one error norm for the whole batch) vs per-sample stepping.

Prints JSON lines. For each problem, both ways solve the same batch at the same
tolerances; reported per way: ``sample_evaluations`` (evaluations of func
summed over the samples that took part: ``nfe * batch`` when coupled, the sum
of the per-sample ``nfe`` otherwise), batched ``calls`` of func, the median
wall time (interleaved rounds, :func:`odeflow.experiments.common.interleaved_medians`),
the wall time per sample-evaluation, and the worst error against a reference
(scipy ``solve_ivp`` DOP853 at rtol = atol = 1e-12, per sample).

Problems:

* ``vdp_heterogeneous``: Van der Pol, mu drawn uniformly from [0.1, 10], y0 = (2, 0), t in [0, 10];
* ``vdp_homogeneous``: the same with every mu = 1 and y0 varied slightly (equal difficulty);
* ``neural_spirals``: a 2 -> 32 -> 32 -> 2 tanh MLP (random weights, odeflow.nn) from the first
  point of each latent-ODE spiral (odeflow.data.spirals), integrated over each series' own
  irregular observation times (per-sample rows) vs the union of all times (coupled).

Usage: ``PYTHONPATH=src python scripts/bench_batch.py [--batch 64] [--repeats 5]``
"""
from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # must precede the NumPy import: small products, shared machine

import argparse  # noqa: E402
import json  # noqa: E402

import numpy as np  # noqa: E402
from scipy.integrate import solve_ivp  # noqa: E402

import odeflow  # noqa: E402
from odeflow.experiments.common import interleaved_medians  # noqa: E402

RTOL, ATOL = 1e-6, 1e-8


def vdp_batch(mu):
    """Coupled: one system of all samples, y of shape (batch, 2)."""
    def f(t, y):
        x, v = y[:, 0], y[:, 1]
        return np.stack([v, mu * (1.0 - x * x) * v - x], axis=1)
    return f


def vdp_rows(t, y, mu):
    """Per-sample: the active rows and their mu."""
    x, v = y[:, 0], y[:, 1]
    return np.stack([v, mu * (1.0 - x * x) * v - x], axis=1)


def reference(f_one, y0, t_rows):
    """Per-sample reference by scipy DOP853 at 1e-12: shape (m, batch, dim)."""
    out = np.empty((t_rows.shape[1],) + y0.shape)
    for b in range(y0.shape[0]):
        ts = t_rows[b]
        sol = solve_ivp(lambda s, y: f_one(b, s, y), (ts[0], ts[-1]), y0[b], method="DOP853", t_eval=ts,
                        rtol=1e-12, atol=1e-12)
        out[:, b] = sol.y.T
    return out


def compare(name, coupled, per_sample, ref, batch, repeats, index=None):
    """Time both, count evaluations, measure errors; print the JSON lines."""
    sol_c, sol_p = coupled(), per_sample()
    times = interleaved_medians({"coupled": coupled, "per_sample": per_sample}, repeats)
    y_c = sol_c.y if index is None else index(sol_c.y)
    ev_c = int(sol_c.stats["nfe"]) * batch
    ev_p = int(sol_p.stats["sample_evaluations"])
    rows = {
        "coupled": dict(sample_evaluations=ev_c, calls=int(sol_c.stats["nfe"]), seconds=times["coupled"],
                        max_error=float(np.abs(y_c - ref).max())),
        "per_sample": dict(sample_evaluations=ev_p, calls=int(sol_p.stats["n_calls"]),
                           seconds=times["per_sample"], max_error=float(np.abs(sol_p.y - ref).max())),
    }
    for way, row in rows.items():
        row["us_per_sample_evaluation"] = 1e6 * row["seconds"] / row["sample_evaluations"]
        print(json.dumps(dict(problem=name, way=way, batch=batch, rtol=RTOL, atol=ATOL, **row)))
    print(json.dumps(dict(problem=name, way="summary",
                          evaluations_ratio_coupled_over_per_sample=ev_c / ev_p,
                          wall_ratio_coupled_over_per_sample=times["coupled"] / times["per_sample"],
                          per_evaluation_cost_ratio_per_sample_over_coupled=(
                              rows["per_sample"]["us_per_sample_evaluation"]
                              / rows["coupled"]["us_per_sample_evaluation"]))))


def vdp(name, mu, y0, repeats):
    t = np.linspace(0.0, 10.0, 11)
    t_rows = np.broadcast_to(t, (mu.size, t.size))
    ref = reference(lambda b, s, y: vdp_rows(s, y[None], mu[b:b + 1])[0], y0, t_rows)
    compare(name, lambda: odeflow.solve(vdp_batch(mu), y0, t, rtol=RTOL, atol=ATOL, dense_output=False),
            lambda: odeflow.solve_batch(vdp_rows, y0, t, 0, args=(mu,), rtol=RTOL, atol=ATOL),
            ref, mu.size, repeats)


def spirals(batch, repeats, rng):
    from odeflow.autodiff.tensor import Tensor, no_grad
    from odeflow.data.spirals import make_spirals
    from odeflow.nn import MLP

    data = make_spirals(n_spirals=batch, n_obs=30, noise_std=0.0, seed=0)
    idx = data.obs_index[:batch]  # each series' own irregular observation times
    times = data.t[idx]
    times = times - times[:, :1]  # each from its own first observation
    z0 = data.clean[np.arange(batch), idx[:, 0]] / 5.0
    net = MLP((2, 32, 32, 2), activation="tanh", rng=rng)

    def f(t, z):
        with no_grad():
            return net(Tensor(z)).data

    t_rows = times
    t_union = np.unique(times)
    index = np.searchsorted(t_union, times)

    def on_union(y):  # (M, B, 2) -> (m, B, 2) at each row's own times
        return np.stack([y[index[b], b] for b in range(batch)], axis=1)

    ref = reference(lambda b, s, y: f(s, y[None])[0], z0, t_rows)
    compare("neural_spirals", lambda: odeflow.solve(f, z0, t_union, rtol=RTOL, atol=ATOL, dense_output=False),
            lambda: odeflow.solve(f, z0, t_rows, rtol=RTOL, atol=ATOL, batch_axis=0),
            ref, batch, repeats, index=on_union)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    print(json.dumps(dict(load_average=os.getloadavg(), cpus=os.cpu_count(), blas_threads=os.environ.get(
        "OPENBLAS_NUM_THREADS"))))
    mu = rng.uniform(0.1, 10.0, args.batch)
    vdp("vdp_heterogeneous", mu, np.tile([2.0, 0.0], (args.batch, 1)), args.repeats)
    y0 = np.tile([2.0, 0.0], (args.batch, 1)) + rng.uniform(-0.01, 0.01, (args.batch, 2))
    vdp("vdp_homogeneous", np.ones(args.batch), y0, args.repeats)
    spirals(args.batch, args.repeats, rng)
    print(json.dumps(dict(load_average_end=os.getloadavg())))


if __name__ == "__main__":
    main()
