"""Optimizers against updates worked out by hand from the published equations,
on the quadratic f(w) = 0.5 * sum(a * w**2) (gradient a * w), a = [1, 3],
w0 = [1, -2]; schedules; validation.

The expected values below are computed from the equations in the comments
(the references of odeflow.optim), never by running the optimizers.
"""
import math

import numpy as np
import pytest

from odeflow import optim
from odeflow.autodiff import Tensor, ops
from odeflow.errors import InputError, InputTypeError
from odeflow.nn import Parameter

A = np.array([1.0, 3.0])
W0 = np.array([1.0, -2.0])


def run(make_optimizer, steps):
    w = Parameter(W0)
    opt = make_optimizer([w])
    history = []
    for _ in range(steps):
        opt.zero_grad()
        (0.5 * ops.sum(Tensor(A) * w * w)).backward()  # gradient a * w
        opt.step()
        history.append(w.data.copy())
    return history


def test_sgd_plain():
    # w1 = w0 - lr * a*w0 = [1, -2] - 0.1 * [1, -6]
    (w1,) = run(lambda p: optim.SGD(p, lr=0.1), 1)
    np.testing.assert_allclose(w1, [0.9, -1.4])


def test_sgd_weight_decay():
    # d = a*w0 + 0.5*w0 = [1.5, -7];  w1 = w0 - 0.1 * d
    (w1,) = run(lambda p: optim.SGD(p, lr=0.1, weight_decay=0.5), 1)
    np.testing.assert_allclose(w1, [0.85, -1.3])


def test_sgd_momentum():
    # b1 = g1 = [1, -6];                  w1 = [0.9, -1.4]
    # g2 = [0.9, -4.2]; b2 = 0.9*b1 + g2 = [1.8, -9.6];  w2 = w1 - 0.1*b2 = [0.72, -0.44]
    w1, w2 = run(lambda p: optim.SGD(p, lr=0.1, momentum=0.9), 2)
    np.testing.assert_allclose(w1, [0.9, -1.4])
    np.testing.assert_allclose(w2, [0.72, -0.44])


def test_sgd_momentum_with_dampening():
    # b1 = g1 (no dampening on the first step); w1 = [0.9, -1.4]
    # b2 = 0.9*[1, -6] + 0.5*[0.9, -4.2] = [1.35, -7.5];  w2 = [0.765, -0.65]
    _, w2 = run(lambda p: optim.SGD(p, lr=0.1, momentum=0.9, dampening=0.5), 2)
    np.testing.assert_allclose(w2, [0.765, -0.65])


def test_sgd_nesterov():
    # step 1: b1 = [1, -6];  step = g1 + 0.9*b1 = [1.9, -11.4];  w1 = [0.81, -0.86]
    # step 2: g2 = [0.81, -2.58];  b2 = 0.9*b1 + g2 = [1.71, -7.98]
    #         step = g2 + 0.9*b2 = [2.349, -9.762];  w2 = [0.5751, 0.1162]
    w1, w2 = run(lambda p: optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True), 2)
    np.testing.assert_allclose(w1, [0.81, -0.86])
    np.testing.assert_allclose(w2, [0.5751, 0.1162])


def _adam_by_hand(lr, b1, b2, eps, steps, decoupled_decay=0.0):
    """Kingma & Ba (2015), Algorithm 1, written out; AdamW's decay per Loshchilov & Hutter (2019)."""
    w, m, v, out = W0.copy(), np.zeros(2), np.zeros(2), []
    for t in range(1, steps + 1):
        g = A * w
        w = w * (1 - lr * decoupled_decay)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        w = w - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
        out.append(w)
    return out


def test_adam_first_steps():
    w1, w2, w3 = run(lambda p: optim.Adam(p, lr=0.1), 3)
    # step 1: bias-corrected m/sqrt(v) = g/|g|, so every coordinate moves by lr
    np.testing.assert_allclose(w1, [0.9, -1.9], rtol=1e-7)
    # step 2, by hand: g2 = [0.9, -5.7];  m = [0.18, -1.11];  v = [0.001809, 0.068454]
    m_hat = np.array([0.18, -1.11]) / (1 - 0.9**2)
    v_hat = np.array([0.001809, 0.068454]) / (1 - 0.999**2)
    np.testing.assert_allclose(w2, w1 - 0.1 * m_hat / (np.sqrt(v_hat) + 1e-8), rtol=1e-10)
    np.testing.assert_allclose(w3, _adam_by_hand(0.1, 0.9, 0.999, 1e-8, 3)[2], rtol=1e-12)


def test_adam_l2_weight_decay_enters_the_gradient():
    # d = g + 0.1*w0 = [1.1, -6.2]; step 1 moves each coordinate by lr against sign(d)
    (w1,) = run(lambda p: optim.Adam(p, lr=0.1, weight_decay=0.1), 1)
    np.testing.assert_allclose(w1, [0.9, -1.9], rtol=1e-7)


def test_adamw_decoupled_decay():
    # w1 = w0 * (1 - 0.1*0.5) - 0.1 * sign(g1) = [0.95 - 0.1, -1.9 + 0.1]
    w1, w2 = run(lambda p: optim.AdamW(p, lr=0.1, weight_decay=0.5), 2)
    np.testing.assert_allclose(w1, [0.85, -1.8], rtol=1e-7)
    np.testing.assert_allclose(w2, _adam_by_hand(0.1, 0.9, 0.999, 1e-8, 2, decoupled_decay=0.5)[1],
                               rtol=1e-12)


def test_rmsprop_plain_centered_and_momentum():
    # v1 = 0.01 g^2  ->  sqrt(v1) = 0.1 |g|  ->  w1 = w0 - 0.01 * g / (0.1|g|) = w0 - 0.1 sign(g)
    (w1,) = run(lambda p: optim.RMSprop(p, lr=0.01, alpha=0.99), 1)
    np.testing.assert_allclose(w1, [0.9, -1.9], rtol=1e-7)
    # centered: v1 - mean1^2 = 0.01 g^2 - 0.0001 g^2 = 0.0099 g^2
    (w1,) = run(lambda p: optim.RMSprop(p, lr=0.01, alpha=0.99, centered=True), 1)
    np.testing.assert_allclose(w1, W0 - 0.01 / math.sqrt(0.0099) * np.sign(W0), rtol=1e-7)
    # momentum 0.5: b1 = g/(0.1|g|) = 10 sign(g), w1 = w0 - 0.1 sign(g) = [0.9, -1.9]
    # g2 = [0.9, -5.7]; v2 = 0.99*0.01*g1^2 + 0.01*g2^2 = [0.0180, 0.6813]
    # b2 = 0.5*b1 + g2/sqrt(v2) ;  w2 = w1 - 0.01 * b2
    w1, w2 = run(lambda p: optim.RMSprop(p, lr=0.01, momentum=0.5), 2)
    v2 = np.array([0.0099 * 1 + 0.01 * 0.81, 0.0099 * 36 + 0.01 * 32.49])
    b2 = 0.5 * np.array([10.0, -10.0]) + np.array([0.9, -5.7]) / (np.sqrt(v2) + 1e-8)
    np.testing.assert_allclose(w2, np.array([0.9, -1.9]) - 0.01 * b2, rtol=1e-6)


def test_adam_converges_on_the_quadratic():
    history = run(lambda p: optim.Adam(p, lr=0.05), 400)
    assert np.abs(history[-1]).max() < 1e-2


def test_parameters_without_grad_are_skipped_and_float32_kept():
    used = Parameter(np.ones(2, np.float32))
    unused = Parameter(np.ones(2))
    opt = optim.Adam([used, unused], lr=0.1)
    (used * 2.0).sum().backward()
    opt.step()
    assert used.dtype == np.float32
    np.testing.assert_allclose(used.data, 0.9, rtol=1e-6)
    np.testing.assert_array_equal(unused.data, 1.0)
    assert "step" not in opt.state[1]


def test_clip_grad_norm():
    p, q = Parameter(np.zeros(2)), Parameter(np.zeros(1))
    p.grad, q.grad = Tensor(np.array([3.0, 0.0])), Tensor(np.array([4.0]))
    before = p.grad
    assert optim.clip_grad_norm([p, q], 1.0) == pytest.approx(5.0)
    np.testing.assert_allclose(p.grad.data, [0.6, 0.0])
    np.testing.assert_allclose(q.grad.data, [0.8])
    np.testing.assert_array_equal(before.data, [3.0, 0.0])  # replaced, not modified


def test_step_lr():
    opt = optim.SGD([Parameter(np.ones(1))], lr=1.0)
    sched = optim.StepLR(opt, step_size=2, gamma=0.5)
    lrs = []
    for _ in range(5):
        sched.step()
        lrs.append(sched.get_lr())
    assert lrs == [1.0, 0.5, 0.5, 0.25, 0.25]


def test_cosine_annealing():
    opt = optim.Adam([Parameter(np.ones(1))], lr=1.0)
    sched = optim.CosineAnnealingLR(opt, T_max=4, eta_min=0.1)
    lrs = []
    for _ in range(4):
        sched.step()
        lrs.append(opt.lr)
    # eta_min + (1 - eta_min) * (1 + cos(pi * e / 4)) / 2 for e = 1..4
    np.testing.assert_allclose(lrs, [0.1 + 0.9 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(1, 5)])
    assert lrs[1] == pytest.approx(0.55) and lrs[3] == pytest.approx(0.1)


def test_validation_messages_name_the_argument():
    p = [Parameter(np.ones(1))]
    with pytest.raises(InputError, match="`lr`"):
        optim.SGD(p, lr=0.0)
    with pytest.raises(InputError, match="`nesterov=True` needs momentum > 0"):
        optim.SGD(p, lr=0.1, nesterov=True)
    with pytest.raises(InputError, match=r"`betas\[1\]`.*1.0"):
        optim.Adam(p, betas=(0.9, 1.0))
    with pytest.raises(InputError, match="`momentum`"):
        optim.RMSprop(p, momentum=-1.0)
    with pytest.raises(InputError, match="`params` is empty"):
        optim.Adam([])
    with pytest.raises(InputTypeError, match=r"`params\[0\]`.*ndarray"):
        optim.SGD([np.ones(1)], lr=0.1)
    with pytest.raises(InputError, match="`step_size`"):
        optim.StepLR(optim.SGD(p, lr=0.1), step_size=0)
    with pytest.raises(InputError, match="`T_max`"):
        optim.CosineAnnealingLR(optim.SGD(p, lr=0.1), T_max=0)
