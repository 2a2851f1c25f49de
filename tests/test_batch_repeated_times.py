"""Per-sample times with repeated entries (zero-length intervals), values and gradients in closed form.

dy/dt = -y, y0 = 1 per sample: y(t) = exp(-t). Rows with a repeated start, a repeated end, a
sample whose whole row is one time, beside samples with real intervals. On the old code a
zero-span sample's outputs were uninitialised memory, backprop raised a RuntimeError for a
repeated start, and the per-sample adjoint gave a wrong gradient for a repeated end.
"""
import numpy as np
import pytest

import odeflow
from odeflow import Tensor
from odeflow.autodiff import ops
from odeflow.solvers.batch import solve_batch

ROWS = [
    [[1.0, 1.0], [3.0, 2.0]],                 # zero span beside a backward row
    [[1.0, 1.0], [1.0, 1.0]],                 # every row zero span
    [[0.0, 0.0, 1.0], [0.0, 1.0, 1.0]],       # repeated start, repeated end
    [[0.0, 0.0, 0.0], [0.0, 0.0, 3.0], [0.0, 2.0, 3.0]],
]


def _closed_form(rows):
    t = np.asarray(rows)
    return np.exp(-(t - t[:, :1]))  # (B, m): y at each output, starting from 1 at t[b, 0]


@pytest.mark.parametrize("rows", ROWS)
def test_values_of_rows_with_repeated_times(rows):
    sol = solve_batch(lambda s, y: -y, np.ones((len(rows), 1)), np.array(rows), 0, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sol.y[:, :, 0].T, _closed_form(rows), rtol=1e-10)


@pytest.mark.parametrize("solver", [odeflow.odeint, odeflow.odeint_adjoint], ids=["backprop", "adjoint"])
@pytest.mark.parametrize("rows", ROWS)
def test_gradients_of_rows_with_repeated_times(rows, solver):
    t = np.array(rows)
    w = np.random.default_rng(len(rows)).normal(size=t.shape)
    y0 = Tensor(np.ones((len(rows), 1)), requires_grad=True)
    out = solver(lambda s, y: -y, y0, t, batch_axis=0, rtol=1e-12, atol=1e-12)
    ops.sum(out * w.T[:, :, None]).backward()
    # d/dy0 of sum_j w_j y0 exp(-(t_j - t_0)) = sum_j w_j exp(-(t_j - t_0))
    np.testing.assert_allclose(y0.grad.data[:, 0], np.sum(w * _closed_form(rows), axis=1), rtol=1e-9)
