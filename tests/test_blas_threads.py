"""BLAS thread limiting inside solves and walks (odeflow.blas, issue 14): the limit is applied
inside, the user's setting is restored after, nesting sets it once."""
import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import odeflow
from odeflow import Tensor, blas, nn
from odeflow.autodiff import ops
from odeflow.errors import InputError, InputTypeError


@pytest.fixture(autouse=True)
def warm():
    """One solve first: it imports what it loads lazily (scipy's own BLAS among them), which
    the first limited call would otherwise meet only after it had set the limits."""
    odeflow.odeint(lambda t, y: -y, np.ones(2), [0.0, 1.0])


def blas_threads():
    counts = [d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas"]
    assert counts, "no BLAS library found by threadpoolctl"
    return counts


def make_func(seen):
    net = nn.MLP((2, 16, 2), activation="tanh", rng=np.random.default_rng(0))

    def func(t, y):
        if len(seen) < 3:  # threadpool_info is slow: look a few times only
            seen.append(blas_threads())
        return net(y)
    return func, net


@pytest.mark.parametrize("mode", ["array", "backprop", "backsolve", "checkpoint"])
def test_limit_inside_and_user_setting_restored(mode):
    seen = []
    func, net = make_func(seen)
    y0 = np.random.default_rng(1).normal(size=(8, 2))
    with threadpool_limits(2, user_api="blas"):  # the user's setting (2 threads)
        before = blas_threads()
        if mode == "array":
            odeflow.odeint(lambda t, y: func(t, Tensor(y)).data, y0, [0.0, 0.5], rtol=1e-5, atol=1e-5)
        else:
            y = Tensor(y0, requires_grad=True)
            if mode == "backprop":
                ys = odeflow.odeint(func, y, [0.0, 0.5], rtol=1e-5, atol=1e-5)
            else:
                ys = odeflow.odeint_adjoint(func, y, [0.0, 0.5], rtol=1e-5, atol=1e-5, adjoint_mode=mode)
            assert blas_threads() == before  # restored after the forward solve
            assert seen and all(c == [1] * len(c) for c in seen)
            seen.clear()
            # the backward walk: the adjoint's backward solve calls func, backprop's walk a probe
            probe = ops.make_node(np.zeros(1), [ys], lambda g: [(seen.append(blas_threads()), np.zeros(ys.shape))[1]])
            ops.sum(ys[-1] ** 2 + probe).backward()
        after = blas_threads()
    assert before == [2] * len(before)
    assert seen and all(c == [1] * len(c) for c in seen)  # one thread inside
    assert after == before


def test_restored_after_an_error_and_nested_calls_set_once():
    with threadpool_limits(2, user_api="blas"):
        before = blas_threads()
        with pytest.raises(RuntimeError):
            with blas.limited():
                with blas.limited():
                    assert blas_threads() == [1] * len(before)
                assert blas_threads() == [1] * len(before)  # the inner exit does not restore
                raise RuntimeError("boom")
        assert blas_threads() == before


def test_large_states_and_no_limit_leave_blas_alone():
    with threadpool_limits(2, user_api="blas"):
        before = blas_threads()
        with blas.limited(size=blas.large()):
            assert blas_threads() == before
        try:
            blas.set_threads(None)
            with blas.limited():
                assert blas_threads() == before
        finally:
            blas.set_threads(1)
        with blas.limited():
            assert blas_threads() == [1] * len(before)


@pytest.mark.parametrize("bad, exc", [(0, InputError), (1.5, InputTypeError), (True, InputTypeError)])
def test_set_threads_bad_input_named(bad, exc):
    with pytest.raises(exc, match="`n`"):
        blas.set_threads(bad)
    with pytest.raises(exc, match="`large`"):
        blas.set_threads(1, large=bad)
    assert blas.threads() == 1
