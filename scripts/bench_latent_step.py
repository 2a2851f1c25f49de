"""The cost of one latent-ODE training step: gradient mode (backprop / adjoint) and time grid (union / per sample).

A batch of 100 spirals (latent ODE with the paper's sizes, GRU encoder, the
``odeflow train latent-ode`` settings: dopri5, rtol 1e-3, atol 1e-4), loss and
gradient of one ELBO estimate, untrained weights. Per (grid, gradient): the
median wall time of `--repeats` interleaved steps
(:func:`odeflow.experiments.common.interleaved_medians`), the latent solve's
forward evaluations (``union``: batched calls, each on every series; ``per_sample``:
batched calls and the evaluations summed over the series) and the output times
of the solve. One JSON line per row, then the load; docs/latent_ode.md's table is
rendered from them by ``scripts/update_docs.py``.

    OPENBLAS_NUM_THREADS=1 python scripts/bench_latent_step.py [--n-obs 100] [--repeats 5] > latent_step.jsonl
    python scripts/update_docs.py --bench-latent-step latent_step.jsonl --files docs/latent_ode.md
"""
from __future__ import annotations

import argparse
import json
import os
import platform

import numpy as np

from odeflow.data.spirals import make_spirals
from odeflow.experiments.common import interleaved_medians
from odeflow.experiments.latent_ode_fit import SpiralConfig, build_model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-obs", type=int, default=100)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    print(json.dumps({"load_average": os.getloadavg(), "cpus": os.cpu_count(), "python": platform.python_version(),
                      "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS")}), flush=True)
    data = make_spirals(n_spirals=args.batch, n_obs=args.n_obs, seed=0, test_fraction=0.0)
    times, values = data.t_obs, data.x_obs
    models, counts = {}, {}
    for grid in ("union", "per_sample"):
        for gradient in ("backprop", "adjoint"):
            config = SpiralConfig(n_obs=args.n_obs, gradient=gradient, grid=grid)
            model = build_model(config)

            def step(model=model, key=(grid, gradient)):
                model.zero_grad()
                stats = {}
                model.elbo(times, values, rng=np.random.default_rng(1), stats=stats).loss.backward()
                counts[key] = stats
            models[f"{grid}/{gradient}"] = step
    seconds = interleaved_medians(models, args.repeats)
    for name in models:
        grid, gradient = name.split("/")
        st = counts[(grid, gradient)]
        fwd, bwd = st.get("forward", {}), st.get("backward", {})
        row = {"grid": grid, "gradient": gradient, "n_obs": args.n_obs, "batch": args.batch,
               "seconds": seconds[name], "n_times": st.get("n_times")}
        if grid == "union":
            row.update(nfe_forward=int(fwd.get("nfe", 0)),
                       sample_evaluations_forward=int(fwd.get("nfe", 0)) * args.batch)
            if "nfe" in bwd:
                row["nfe_backward"] = int(bwd["nfe"])
        else:
            row.update(calls_forward=int(fwd.get("n_calls", 0)),
                       sample_evaluations_forward=int(np.sum(fwd.get("nfe", 0))))
            if "nfe" in bwd:
                row["sample_evaluations_backward"] = int(np.sum(bwd["nfe"]))
        print(json.dumps(row), flush=True)
    print(json.dumps({"load_average_end": os.getloadavg()}))


if __name__ == "__main__":
    main()
