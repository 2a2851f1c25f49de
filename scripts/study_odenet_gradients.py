"""Which gradient of an ODE block is closer to the truth: backprop through dopri5 or the adjoint?

A tiny ODE-Net block (``ODEFunc(4)``, input of shape (2, 4, 4, 4), float64,
``L = sum(w * h(1))``): the derivative of ``L`` along one random unit direction
``v`` of the parameters, by backprop through the solver and by the adjoint
(backsolve), each at rtol = atol in {1e-5, 1e-7, 1e-9}, against the central
difference of dopri5 solves at rtol = atol = 1e-12 (step 1e-5 along ``v``).
One JSON line per (mode, rtol) and one for the reference; docs/odenet.md's
table is rendered from them by ``scripts/update_docs.py``. No timing.

    python scripts/study_odenet_gradients.py > odenet_gradients.jsonl
    python scripts/update_docs.py --study-odenet-gradients odenet_gradients.jsonl --files docs/odenet.md
"""
from __future__ import annotations

import json

import numpy as np

import odeflow
from odeflow.autodiff import ops
from odeflow.autodiff.tensor import Tensor, no_grad
from odeflow.models.odenet import ODEFunc
from odeflow.nn import parameters_to_vector, vector_to_parameters


def main():
    rng = np.random.default_rng(0)
    func = ODEFunc(4, rng=1)
    x = rng.standard_normal((2, 4, 4, 4))
    w = rng.standard_normal((2, 4, 4, 4))
    params = func.parameters()
    theta = parameters_to_vector(params)
    v = rng.standard_normal(theta.size)
    v /= np.linalg.norm(v)
    t = np.array([0.0, 1.0])

    def loss_at(vec, tol):
        vector_to_parameters(vec, params)
        with no_grad():
            h1 = odeflow.odeint(lambda s, h: func(s, h), Tensor(x), t, rtol=tol, atol=tol)[-1]
        vector_to_parameters(theta, params)
        return float(np.sum(w * h1.data))

    eps = 1e-5
    reference = (loss_at(theta + eps * v, 1e-12) - loss_at(theta - eps * v, 1e-12)) / (2 * eps)
    print(json.dumps({"reference": "central differences", "rtol": 1e-12, "step": eps,
                      "directional_derivative": reference}))
    for mode, solver in (("backprop", odeflow.odeint_backprop), ("adjoint", odeflow.odeint_adjoint)):
        for tol in (1e-5, 1e-7, 1e-9):
            func.zero_grad()
            h1 = solver(lambda s, h: func(s, h), Tensor(x), t, rtol=tol, atol=tol)[-1]
            ops.sum(h1 * w).backward()
            d = float(parameters_to_vector([p.grad for p in params]) @ v)
            print(json.dumps({"mode": mode, "rtol": tol, "directional_derivative": d,
                              "relative_error": abs(d / reference - 1)}), flush=True)


if __name__ == "__main__":
    main()
