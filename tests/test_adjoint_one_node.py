"""The adjoint's shortcut for a func that is one graph node over leaves (a fused nn.MLP):
the same numbers as the general walk, bit for bit (issue 14, overhead removed per evaluation)."""
import numpy as np
import pytest

import odeflow
from odeflow import Tensor, nn
from odeflow.adjoint import interval, params as params_module
from odeflow.autodiff import ops
from odeflow.autodiff.backprop import leaves
from odeflow.errors import GradientError


def gradient(mode, monkeypatch, general, dtype=np.float64):
    if general:  # force the general walk and the general leaf search
        monkeypatch.setattr(interval, "_one_node", lambda *args: None)
        monkeypatch.setattr(params_module, "_leaves", leaves)
    net = nn.MLP((2, 16, 16, 2), activation="tanh", rng=np.random.default_rng(0))
    if dtype != np.float64:
        for p in net.parameters():
            p.data = p.data.astype(dtype)
    y0 = Tensor(np.random.default_rng(1).normal(size=(5, 2)).astype(dtype), requires_grad=True)
    tol = 1e-7 if dtype == np.float64 else 1e-4
    ys = odeflow.odeint_adjoint(lambda t, y: net(y), y0, [0.0, 0.5, 1.0], rtol=tol, atol=tol,
                                adjoint_mode=mode)
    ops.sum(ys ** 2).backward()
    monkeypatch.undo()
    return [ys.data, y0.grad.data] + [p.grad.data for p in net.parameters()]


@pytest.mark.parametrize("mode", ["backsolve", "checkpoint"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_one_node_shortcut_equals_the_general_walk(mode, dtype, monkeypatch):
    fast = gradient(mode, monkeypatch, False, dtype)
    slow = gradient(mode, monkeypatch, True, dtype)
    for a, b in zip(fast, slow):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_one_node_shortcut_still_names_a_leaf_first_met_backwards():
    net = nn.MLP((2, 4, 2), activation="tanh", rng=np.random.default_rng(0))
    late = nn.MLP((2, 4, 2), activation="tanh", rng=np.random.default_rng(1))
    seen = []

    def func(t, y):  # reads `late` only on the backward solve's evaluations
        seen.append(t)
        return late(y) if len(seen) > 40 else net(y)
    ys = odeflow.odeint_adjoint(func, Tensor(np.ones((3, 2))), [0.0, 1.0], rtol=1e-6, atol=1e-6,
                                adjoint_params=None)
    assert len(seen) <= 40
    with pytest.raises(GradientError, match="never during the forward solve"):
        ops.sum(ys).backward()
