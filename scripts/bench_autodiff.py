"""Benchmark: forward + VJP of an MLP 2 -> 64 -> 64 -> 2 (tanh), batch 256.

Prints one JSON object per line to stdout:

* ``numpy_floor``: hand-written NumPy forward and backward of the same network
  (the least work any engine must do), parameter gradients only;
* ``numpy_floor_dx``: the same plus the gradient with respect to the input
  ``x``, which ``vjp`` also returns (its fair floor);
* ``odeflow_backward``: ``out = mlp(x); out.backward(g)`` (the training path,
  gradients accumulated into ``.grad``);
* ``odeflow_vjp``: ``vjp(mlp, x, params=...)`` then ``vjp_fn(g)`` (the path the
  adjoint method takes; also returns the gradient with respect to ``x``);
* ``torch``: PyTorch on CPU, float64, when importable (otherwise a ``skipped`` line);
* ``summary``: ratios to the floor (``odeflow_vjp`` also to ``numpy_floor_dx``),
  measured in this same run.

Times are medians over `--repeats` rounds, in microseconds. In each round every
candidate runs once, in turn (``timeit.default_timer`` around one call), so a
burst of load from other processes hits all of them alike; ``ratio`` is the
median over rounds of the per-round ratio to the floor.

BLAS is pinned to one thread (``OPENBLAS_NUM_THREADS=1`` etc., unless already
set): on a small shared machine, idle BLAS worker threads add noise of the
order of the whole measurement. The environment that matters for timing is
echoed in the ``summary`` line.

Usage: ``PYTHONPATH=src python scripts/bench_autodiff.py [--repeats 200] [--batch 256]``
"""
from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # must precede the NumPy import

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import timeit  # noqa: E402

import numpy as np  # noqa: E402

from odeflow import nn
from odeflow.autodiff import vjp


def interleaved(candidates: dict, repeats: int) -> dict:
    """Per-round times (s) of each candidate, the candidates run in turn."""
    for fn in candidates.values():  # warm-up
        fn()
    times = {name: [] for name in candidates}
    clock = timeit.default_timer
    for _ in range(repeats):
        for name, fn in candidates.items():
            start = clock()
            fn()
            times[name].append(clock() - start)
    return {name: np.array(t) for name, t in times.items()}


def numpy_forward_backward(x, g, W1, b1, W2, b2, W3, b3, with_dx=False):
    """Hand-written forward and reverse pass: the floor. dL/dx only when asked
    (``backward()`` skips it too, since ``x`` does not require grad)."""
    h1 = np.tanh(x @ W1.T + b1)
    h2 = np.tanh(h1 @ W2.T + b2)
    y = h2 @ W3.T + b3
    gW3, gb3, gh2 = g.T @ h2, g.sum(0), g @ W3
    ga2 = gh2 * (1 - h2 * h2)
    gW2, gb2, gh1 = ga2.T @ h1, ga2.sum(0), ga2 @ W2
    ga1 = gh1 * (1 - h1 * h1)
    gW1, gb1 = ga1.T @ x, ga1.sum(0)
    gx = ga1 @ W1 if with_dx else None
    return y, (gW1, gb1, gW2, gb2, gW3, gb3), gx


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, 2))
    g = rng.standard_normal((args.batch, 2))
    mlp = nn.MLP([2, 64, 64, 2], activation="tanh", rng=1)
    params = mlp.parameters()
    arrays = [p.data for p in params]
    common = {"network": "MLP 2-64-64-2 tanh", "batch": args.batch, "dtype": "float64",
              "repeats": args.repeats}

    def odeflow_backward():
        for p in params:  # what optimizer.zero_grad() does
            p.grad = None
        mlp(x).backward(g)

    def odeflow_vjp():
        _, vjp_fn = vjp(mlp, x, params=params)
        return vjp_fn(g)

    # the three paths must compute the same gradients
    odeflow_backward()
    _, floor_grads, floor_dx = numpy_forward_backward(x, g, *arrays, with_dx=True)
    for p, ref in zip(params, floor_grads):
        np.testing.assert_allclose(p.grad.data, ref, rtol=1e-12, atol=1e-12)
    (vjp_dx,), vjp_grads = odeflow_vjp()
    np.testing.assert_allclose(vjp_dx, floor_dx, rtol=1e-12, atol=1e-12)
    for got, ref in zip(vjp_grads, floor_grads):
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)

    candidates = {
        "numpy_floor": lambda: numpy_forward_backward(x, g, *arrays),
        "numpy_floor_dx": lambda: numpy_forward_backward(x, g, *arrays, with_dx=True),
        "odeflow_backward": odeflow_backward,
        "odeflow_vjp": odeflow_vjp,
    }
    try:
        import torch
    except ImportError:
        torch = None
        print(json.dumps({"name": "torch", "skipped": "torch is not installed"}))
    if torch is not None:
        torch.set_num_threads(1)
        tx, tg = torch.from_numpy(x), torch.from_numpy(g)
        tparams = [torch.tensor(a, requires_grad=True) for a in arrays]

        def torch_forward_backward():
            W1, b1, W2, b2, W3, b3 = tparams
            h = torch.tanh(tx @ W1.T + b1)
            h = torch.tanh(h @ W2.T + b2)
            return torch.autograd.grad(h @ W3.T + b3, tparams, tg)

        candidates["torch"] = torch_forward_backward
    times = interleaved(candidates, args.repeats)
    floor = times["numpy_floor"]
    ratios = {}
    for name, t in times.items():
        ratios[name] = float(np.median(t / floor))
        print(json.dumps({"name": name, "median_us": round(float(np.median(t)) * 1e6, 1),
                          "p10_us": round(float(np.percentile(t, 10)) * 1e6, 1),
                          "ratio_to_numpy_floor": round(ratios[name], 3), **common}))
    env = {k: os.environ[k] for k in sorted(os.environ)
           if k.startswith(("OPENBLAS", "OMP_NUM", "MKL_NUM", "MALLOC_"))}
    vjp_vs_dx = float(np.median(times["odeflow_vjp"] / times["numpy_floor_dx"]))
    print(json.dumps({"name": "summary", "python": platform.python_version(),
                      "numpy": np.__version__, "environment": env, "target_ratio": 1.5,
                      **{f"ratio_{k}": round(v, 3) for k, v in ratios.items()
                         if not k.startswith("numpy_floor")},
                      "ratio_odeflow_vjp_to_numpy_floor_dx": round(vjp_vs_dx, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
