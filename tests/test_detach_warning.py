"""A func that reads a Tensor requiring grad as a number or array (float(W), W.item(), np.asarray(W),
np.array(W); NumPy ufuncs and reductions such as np.sin(W), np.sum(W) already raise a TypeError) cuts that use from the graph; the solvers' gradient paths warn instead of silently
returning a gradient without it (found by the adversarial review: W.grad was None, no message)."""
import warnings

import numpy as np
import pytest

import odeflow
from odeflow import Tensor
from odeflow.autodiff import ops
from odeflow.errors import GradientAccuracyWarning
from odeflow.nn import MLP

READS = {
    "float": lambda W: float(W),
    "item": lambda W: W.item(),
    "asarray": lambda W: np.asarray(W),
    "array": lambda W: np.array(W),
}
SOLVERS = {
    "backprop": lambda f, y0, t: odeflow.odeint(f, y0, t),
    "adjoint": lambda f, y0, t: odeflow.odeint_adjoint(f, y0, t),
    "per-sample backprop": lambda f, y0, t: odeflow.odeint(f, y0, t, batch_axis=0),
    "per-sample adjoint": lambda f, y0, t: odeflow.odeint_adjoint(f, y0, t, batch_axis=0),
}


@pytest.mark.parametrize("solver", SOLVERS, ids=list(SOLVERS))
@pytest.mark.parametrize("read", READS, ids=list(READS))
def test_a_tensor_read_as_a_number_inside_func_is_reported(read, solver):
    W = Tensor(np.array(0.7), requires_grad=True)
    f = lambda t, y: -y * READS[read](W)  # noqa: E731  (the gradient w.r.t. W is lost)
    with pytest.warns(GradientAccuracyWarning, match=r"shape \(\).*cut from the graph"):
        out = SOLVERS[solver](f, Tensor(np.ones((2, 1)), requires_grad=True), np.array([0.0, 1.0]))
        ops.sum(out).backward()


@pytest.mark.parametrize("solver", SOLVERS, ids=list(SOLVERS))
def test_ops_and_data_are_not_reported(solver):
    net = MLP((1, 4, 1), activation="tanh", rng=0)
    W = Tensor(np.array(0.7), requires_grad=True)
    f = lambda t, y: net(y) * W - y * float(W.data)  # noqa: E731  (.data: a constant on purpose)
    with warnings.catch_warnings():
        warnings.simplefilter("error", GradientAccuracyWarning)
        out = SOLVERS[solver](f, Tensor(np.ones((2, 1)), requires_grad=True), np.array([0.0, 1.0]))
        ops.sum(out).backward()
    assert W.grad is not None
