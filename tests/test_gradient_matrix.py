"""Every public gradient path x every target x orders 1 and 2, against central differences.

Paths: ``odeint`` (backprop through the solver) and ``odeint_adjoint`` in
backsolve and checkpoint mode, each with the RMS norm and the seminorm, with an
adaptive method (dopri5) and a fixed-step one (rk4; checkpoint refuses
fixed-step methods, checked below). Targets: ``y0``, a parameter matrix and
every output time ``t_i``. Hypothesis draws the state size, the batch shape
and the output grid (2-4 times, forwards or backwards).

The reference is :func:`odeflow.testing.check_grads`: the reverse-mode
directional derivative ``<J^T u, v>`` against the central difference
``<u, f(x + h v) - f(x - h v)> / 2h`` (h = 3e-5 relative, see ``EPS``), and at order 2 the
same test applied to the VJP itself (differentiated through a recorded walk).
Every target is checked to order 2, the output times included (second
derivatives in ``t`` through backprop since the lead's adjoint/times.py;
through the adjoint by the recorded backward pass). Tolerance: ``rtol = 1e-5``
of each comparison (plus check_grads' rounding
allowance). The solves run at rtol = atol = 1e-10 (dopri5) or with steps of
0.01 (rk4), so the gradients of the exact solution that the adjoint returns,
and the discretization effects no path differentiates (fixed-step grids moving
with ``t``), differ from the differences of the computed solution by ~1e-8
relative: three orders of magnitude inside the tolerance.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import odeflow
from odeflow import Tensor
from odeflow.autodiff import ops
from odeflow.errors import InputError
from odeflow.testing import check_grads

PATHS = [
    ("backprop", "rms", "dopri5"), ("backprop", "rms", "rk4"),
    ("backsolve", "rms", "dopri5"), ("backsolve", "seminorm", "dopri5"),
    ("backsolve", "rms", "rk4"), ("backsolve", "seminorm", "rk4"),
    ("checkpoint", "rms", "dopri5"), ("checkpoint", "seminorm", "dopri5"),
]
STEP = 0.01
RTOL = 1e-5
# Finite-difference step, relative. An adaptive solve is a smooth function of its inputs only
# up to ~1e-13 jumps (a step accepted or rejected differently): over check_grads' default 1e-6
# they made a directional derivative of 4.5e-3 wrong by 1.5e-7 (3e-5 relative, a hypothesis
# draw). At 3e-5 that noise is ~5e-9 and the truncation error (h^2/6 times f''') ~3e-10.
EPS = 3e-5


def solution(path, norm, method):
    """``(y0, W, b, t) -> y(t)`` for dy/dt = tanh(y W + b) (1 + t / 10), by `path`."""
    def f(y0, W, b, t):
        def func(s, y):
            return ops.tanh(y @ W + b) * (1.0 + 0.1 * s)
        kw = dict(rtol=1e-10, atol=1e-10, method=method)
        if method == "rk4":
            kw["options"] = {"step_size": STEP}
        if path == "backprop":
            return odeflow.odeint(func, y0, t, **kw)
        back = {"norm": norm, **({"step_size": STEP} if method == "rk4" else {})}
        return odeflow.odeint_adjoint(func, y0, t, adjoint_mode=path, adjoint_options=back, **kw)
    return f


@st.composite
def problems(draw):
    dim = draw(st.integers(1, 3))
    batch = draw(st.sampled_from([(), (2,), (2, 1)]))
    n_t = draw(st.integers(2, 4))
    seed = draw(st.integers(0, 2 ** 16))
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.uniform(0.15, 0.5, size=n_t)) - 0.2
    if draw(st.booleans()):
        t = t[::-1].copy()
    return (rng.normal(size=batch + (dim,)), 0.8 * rng.normal(size=(dim, dim)),
            0.3 * rng.normal(size=dim), t)


@pytest.mark.parametrize("path, norm, method", PATHS)
@settings(max_examples=3, deadline=None)
@given(problem=problems())
def test_every_path_every_target_orders_one_and_two(path, norm, method, problem):
    y0, W, b, t = problem
    f = solution(path, norm, method)
    args = (Tensor(y0), Tensor(W), Tensor(b), Tensor(t))
    # y0, W, b and t, all at once; one random direction pair per argument and order
    result = check_grads(f, *args, order=2, rtol=RTOL, eps=EPS, n_directions=1)
    assert {c.order for c in result.checks} == {1, 2}
    assert {c.argument.split(" (")[0] for c in result.checks} >= {f"argument {i}" for i in range(4)}


def test_checkpoint_refuses_fixed_step_methods():
    with pytest.raises(InputError, match=r"'checkpoint'.*fixed-step method 'rk4'"):
        solution("checkpoint", "rms", "rk4")(Tensor(np.ones(2)), Tensor(np.eye(2)), Tensor(np.zeros(2)),
                                             Tensor([0.0, 1.0]))
