"""Optimizers (SGD, Adam, AdamW, RMSprop) and learning-rate schedules.

Each optimizer reads ``p.grad`` of its parameters and updates ``p.data`` in
place (outside any graph); parameters whose ``.grad`` is None are skipped.
The update rules are PyTorch's, which the docstrings write out; they match the
cited papers up to the placement of ``eps`` and of weight decay.

References
----------
.. [1] I. Sutskever, J. Martens, G. Dahl, G. Hinton, "On the importance of
   initialization and momentum in deep learning", ICML 2013, eqs. 1-4
   (momentum and Nesterov momentum).
.. [2] D. P. Kingma, J. Ba, "Adam: a method for stochastic optimization",
   ICLR 2015, Algorithm 1.
.. [3] I. Loshchilov, F. Hutter, "Decoupled weight decay regularization",
   ICLR 2019, Algorithm 2 (AdamW).
.. [4] T. Tieleman, G. Hinton, Lecture 6.5 "RMSprop", COURSERA: Neural
   Networks for Machine Learning, 2012.
.. [5] I. Loshchilov, F. Hutter, "SGDR: stochastic gradient descent with warm
   restarts", ICLR 2017, eq. 5 (cosine annealing).
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from odeflow.autodiff.tensor import Tensor, _wrap
from odeflow.errors import InputError, InputTypeError

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "LRScheduler", "StepLR",
           "CosineAnnealingLR", "clip_grad_norm"]


def _check(name: str, value: float, low: float = 0.0, high: float = math.inf, open_low=False):
    if (isinstance(value, (bool, np.bool_)) or np.ndim(value) != 0
            or np.asarray(value).dtype.kind not in "fiu"):  # a string, None, a list: named here
        raise InputTypeError(f"`{name}` must be a real number; got {value!r}")
    bad = value <= low if open_low else value < low
    if bad or value >= high and high != math.inf or not math.isfinite(value):
        raise InputError(f"`{name}` must be in {'(' if open_low else '['}{low}, {high}); got {value}")


def _positive_int(value) -> bool:
    """An int >= 1 (NumPy ints too; not a bool, not a float such as 2.5, which int() would cut)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1


class Optimizer:
    """Base class: holds the parameters, the learning rate and per-parameter state.

    Subclasses implement ``_update(w, g, state)``, changing ``w`` in place.

    Parameters
    ----------
    params : iterable of Tensor
        Leaves requiring grad (typically ``module.parameters()``).
    lr : float
        Learning rate, > 0. Schedules change ``optimizer.lr``.

    Raises
    ------
    InputError
        `params` is empty or lists a Tensor twice, or `lr` is not positive.
    InputTypeError
        An entry of `params` is not a Tensor.
    """

    def __init__(self, params, lr: float):
        self.params = list(params)
        if not self.params:
            raise InputError("`params` is empty: nothing to optimize")
        first = {}
        for i, p in enumerate(self.params):
            if not isinstance(p, Tensor):
                raise InputTypeError(f"`params[{i}]` must be a Tensor; got {type(p).__name__}")
            if first.setdefault(id(p), i) != i:  # it would be updated once per entry
                raise InputError(f"`params[{i}]` is the same Tensor as `params[{first[id(p)]}]`; "
                                 f"list each parameter once")
        _check("lr", lr, open_low=True)
        self.lr = float(lr)
        self.state = [{} for _ in self.params]

    def zero_grad(self):
        """Set every parameter's ``.grad`` to None."""
        for p in self.params:
            p.grad = None

    def step(self):
        """Apply one update to every parameter that has a gradient."""
        for p, state in zip(self.params, self.state):
            if p.grad is not None:
                g = p.grad.data if isinstance(p.grad, Tensor) else np.asarray(p.grad)
                state["step"] = state.get("step", 0) + 1
                self._update(p.data, g, state)

    def _update(self, w, g, state):
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov momentum and weight decay.

    With ``d = g + weight_decay * w``::

        b = d                                        (first step)
        b = momentum * b + (1 - dampening) * d       (later steps)
        w = w - lr * (d + momentum * b)    if nesterov
        w = w - lr * b                     otherwise (b = d when momentum = 0)

    Raises
    ------
    InputError
        Negative hyperparameters, or `nesterov` without momentum or with dampening.
    """

    def __init__(self, params, lr: float, momentum: float = 0.0, dampening: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0):
        super().__init__(params, lr)
        _check("momentum", momentum)
        _check("dampening", dampening)
        _check("weight_decay", weight_decay)
        if nesterov and (momentum == 0 or dampening != 0):
            raise InputError(f"`nesterov=True` needs momentum > 0 and dampening = 0; got "
                             f"momentum={momentum}, dampening={dampening}")
        self.momentum, self.dampening = momentum, dampening
        self.nesterov, self.weight_decay = nesterov, weight_decay

    def _update(self, w, g, state):
        d = g + self.weight_decay * w if self.weight_decay else g
        if self.momentum:
            if "buf" not in state:
                state["buf"] = np.array(d, copy=True)
            else:
                state["buf"] = self.momentum * state["buf"] + (1 - self.dampening) * d
            d = d + self.momentum * state["buf"] if self.nesterov else state["buf"]
        w -= self.lr * d


class Adam(Optimizer):
    """Adam, with optional L2 weight decay added to the gradient.

    With ``d = g + weight_decay * w`` and step count ``t``::

        m = beta1 * m + (1 - beta1) * d
        v = beta2 * v + (1 - beta2) * d**2
        w = w - lr * (m / (1 - beta1**t)) / (sqrt(v / (1 - beta2**t)) + eps)

    Raises
    ------
    InputError
        `betas` outside ``[0, 1)``, negative `eps` or `weight_decay`.
    """

    _decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        super().__init__(params, lr)
        if np.ndim(betas) != 1 or len(betas) != 2:
            raise InputTypeError(f"`betas` must be a pair (beta1, beta2); got {betas!r}")
        _check("betas[0]", betas[0], 0.0, 1.0)
        _check("betas[1]", betas[1], 0.0, 1.0)
        _check("eps", eps)
        _check("weight_decay", weight_decay)
        self.betas, self.eps, self.weight_decay = (float(betas[0]), float(betas[1])), eps, weight_decay

    def _update(self, w, g, state):
        beta1, beta2 = self.betas
        if self.weight_decay:
            if self._decoupled:
                w *= 1 - self.lr * self.weight_decay
            else:
                g = g + self.weight_decay * w
        if "m" not in state:
            state["m"], state["v"] = np.zeros_like(w), np.zeros_like(w)
        m, v, t = state["m"], state["v"], state["step"]
        m *= beta1
        m += (1 - beta1) * g
        v *= beta2
        v += (1 - beta2) * g * g
        w -= self.lr * (m / (1 - beta1 ** t)) / (np.sqrt(v / (1 - beta2 ** t)) + self.eps)


class AdamW(Adam):
    """Adam with decoupled weight decay: before the Adam step (with ``d = g``),
    ``w = w * (1 - lr * weight_decay)``. The default decay is 0.01."""

    _decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2):
        super().__init__(params, lr, betas, eps, weight_decay)


class RMSprop(Optimizer):
    """RMSprop, optionally centered and with momentum.

    With ``d = g + weight_decay * w``::

        v = alpha * v + (1 - alpha) * d**2
        s = sqrt(v - mean_d**2) + eps, with mean_d = alpha * mean_d + (1 - alpha) * d   if centered
        s = sqrt(v) + eps                                                                 otherwise
        b = momentum * b + d / s;  w = w - lr * b     if momentum > 0  (b starts at 0)
        w = w - lr * d / s                            otherwise
    """

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False):
        super().__init__(params, lr)
        _check("alpha", alpha, 0.0, 1.0)
        _check("eps", eps)
        _check("weight_decay", weight_decay)
        _check("momentum", momentum)
        self.alpha, self.eps, self.weight_decay = alpha, eps, weight_decay
        self.momentum, self.centered = momentum, centered

    def _update(self, w, g, state):
        d = g + self.weight_decay * w if self.weight_decay else g
        if "v" not in state:
            state["v"] = np.zeros_like(w)
            state["mean"] = np.zeros_like(w)
            state["buf"] = np.zeros_like(w)
        a = self.alpha
        state["v"] = a * state["v"] + (1 - a) * d * d
        if self.centered:
            state["mean"] = a * state["mean"] + (1 - a) * d
            s = np.sqrt(state["v"] - state["mean"] ** 2) + self.eps
        else:
            s = np.sqrt(state["v"]) + self.eps
        if self.momentum:
            state["buf"] = self.momentum * state["buf"] + d / s
            w -= self.lr * state["buf"]
        else:
            w -= self.lr * d / s


def clip_grad_norm(params, max_norm: float) -> float:
    """Scale all gradients together so that their joint 2-norm is at most `max_norm`.

    Returns the norm before clipping. Gradients are replaced, not modified in
    place.

    Raises
    ------
    InputError
        `max_norm` is negative or NaN.
    """
    if not max_norm >= 0:  # a negative one would flip the gradients' sign, NaN skip clipping
        raise InputError(f"`max_norm` must be >= 0 (inf: no clipping); got {max_norm}")
    params = [p for p in params if p.grad is not None]
    total = math.sqrt(sum(float(np.sum(np.square(p.grad.data))) for p in params))
    if total > max_norm:
        scale = max_norm / (total + 1e-12)
        for p in params:
            p.grad = _wrap(p.grad.data * np.asarray(scale, p.grad.dtype))
    return total


class LRScheduler:
    """Base class: ``step()`` once per epoch sets ``optimizer.lr = lr_at(epoch)``."""

    def __init__(self, optimizer: Optimizer):
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.epoch = 0

    def lr_at(self, epoch: int) -> float:
        raise NotImplementedError

    def step(self):
        """Advance one epoch and set the optimizer's learning rate."""
        self.epoch += 1
        self.optimizer.lr = self.lr_at(self.epoch)

    def get_lr(self) -> float:
        """The optimizer's current learning rate."""
        return self.optimizer.lr


class StepLR(LRScheduler):
    """``lr = base_lr * gamma ** (epoch // step_size)``."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1):
        super().__init__(optimizer)
        if not _positive_int(step_size):
            raise InputError(f"`step_size` must be a positive integer; got {step_size}")
        _check("gamma", gamma, open_low=True)
        self.step_size, self.gamma = int(step_size), gamma

    def lr_at(self, epoch):
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class CosineAnnealingLR(LRScheduler):
    """``lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2``
    (SGDR's schedule without restarts; it rises again after `T_max` epochs)."""

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0):
        super().__init__(optimizer)
        if not _positive_int(T_max):
            raise InputError(f"`T_max` must be a positive integer; got {T_max}")
        _check("eta_min", eta_min)
        self.T_max, self.eta_min = int(T_max), eta_min

    def lr_at(self, epoch):
        return self.eta_min + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * epoch / self.T_max)) / 2
