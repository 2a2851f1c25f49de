"""Peak memory of one gradient step of an image classifier, each in a fresh process.

:mod:`tracemalloc` follows one forward + backward step after an untraced
warm-up step; NumPy reports its buffers to tracemalloc, so the peak counts every
array the step holds at once (Chen et al. 2018, §3: the adjoint's O(1) memory
in the depth of the ODE block).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from odeflow.experiments.odenet_fit import cross_entropy

__all__ = ["step_memory"]


def _memory_probe(spec: dict) -> dict:
    """Peak traced memory of one gradient step (run inside a fresh process).

    One untraced step first (imports, Numba's kernel cache, first-call
    allocations), then :mod:`tracemalloc` follows a second identical step:
    forward, loss, backward. NumPy reports its array buffers to tracemalloc, so
    the peak counts every array the step creates and holds at once (the graph's
    saved activations, the solver's stages); the parameters and the batch exist
    before tracing starts and are not counted.
    """
    import tracemalloc

    from odeflow.autodiff import Tensor
    from odeflow.models.odenet import build_classifier
    with np.load(spec["arrays"]) as npz:
        arrays = {k: npz[k] for k in npz.files}
    dtype = np.dtype(spec["dtype"])
    model = build_classifier(spec["kind"], spec["image_size"], spec["width"], dtype=dtype,
                             **spec.get("block", {}))
    state = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
    if state:
        model.load_state_dict(state)
    x, y = arrays["x"].astype(dtype), arrays["y"]

    def step():
        model.zero_grad()
        loss = cross_entropy(model(Tensor(x)), y)
        loss.backward()

    step()
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    step()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    block = model.ode_block
    return {"peak_bytes": int(peak - before),
            "nfe_forward": block.nfe_forward if block else 0,
            "nfe_backward": block.nfe_backward if block else 0,
            "n_steps": int(block.stats["forward"].get("n_steps", 0)) if block else 0}


def step_memory(kind, image_size, width, x, y, *, state=None, dtype=np.float32, block=None,
                fresh_process: bool = True) -> dict:
    """Peak memory of one gradient step of a classifier, measured in a fresh Python process.

    Parameters
    ----------
    kind, image_size, width
        As :func:`odeflow.models.odenet.build_classifier`.
    x : ndarray, shape (N, 1, H, W)
    y : ndarray of int, shape (N,)
    state : dict of ndarray, optional
        Parameters to load (e.g. a trained model's ``state_dict()``); default:
        the initial weights.
    dtype : dtype, default float32
    block : dict, optional
        Extra keyword arguments of the ODE block (``method``, ``rtol``, ``options``...).
    fresh_process : bool, default True
        False measures in this process (quicker; used by ``demo --quick``).

    Returns
    -------
    dict
        ``peak_bytes`` (tracemalloc peak above the start of the step),
        ``nfe_forward``, ``nfe_backward``, ``n_steps`` of that step.

    Raises
    ------
    RuntimeError
        The child process failed; its standard error is included.
    """
    import odeflow
    with tempfile.TemporaryDirectory() as tmp:
        arrays = Path(tmp) / "probe.npz"
        np.savez(arrays, x=x, y=y, **{f"model/{k}": v for k, v in (state or {}).items()})
        spec = {"kind": kind, "image_size": int(image_size), "width": int(width),
                "dtype": np.dtype(dtype).name, "arrays": str(arrays), "block": block or {}}
        if not fresh_process:
            return _memory_probe(spec)
        env = dict(os.environ)
        root = str(Path(odeflow.__file__).resolve().parents[1])
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(var, "1")
        code = ("import json, sys; from odeflow.experiments.odenet_memory import _memory_probe; "
                "print(json.dumps(_memory_probe(json.loads(sys.argv[1]))))")
        proc = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], capture_output=True,
                              text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"memory probe for {kind!r} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
