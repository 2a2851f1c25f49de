"""Gradient checking: reverse-mode VJPs against central finite differences.

:func:`check_grads` is meant for users' own functions (a custom op, a model's
loss, an ODE right-hand side) as much as for odeflow's tests.

References
----------
.. [1] D. Maclaurin, D. Duvenaud, M. Johnson, HIPS autograd,
   https://github.com/HIPS/autograd (``test_util.py``: checking a VJP along
   random directions, and checking the VJP itself for second order).
.. [2] A. Griewank, A. Walther, "Evaluating Derivatives", 2nd ed., SIAM, 2008,
   §3.3 (the identity ``<u, J v> = <J^T u, v>``).
.. [3] J. Nocedal, S. J. Wright, "Numerical Optimization", 2nd ed., Springer,
   2006, §8.1 (choice of the finite-difference step).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from odeflow.autodiff import ops
from odeflow.autodiff.functional import vjp
from odeflow.autodiff.tensor import Tensor, no_grad
from odeflow.errors import GradientError, InputError

__all__ = ["check_grads", "GradCheck", "GradCheckResult"]

_EPS64 = np.finfo(np.float64).eps


@dataclass
class GradCheck:
    """One comparison ``<J^T u, v>`` (reverse mode) vs ``<u, J v>`` (finite differences)."""
    order: int          #: 1 for the gradient, 2 for the gradient of the VJP, ...
    argument: str       #: what was perturbed, e.g. "argument 1 (shape (3,))" or, from
    #: order 2 on, "cotangent of the order-1 VJP (shape (3,))"
    direction: int      #: index of the random direction pair (u, v)
    reverse: float      #: reverse-mode directional derivative
    finite_diff: float  #: central-difference directional derivative
    rel_error: float    #: |reverse - finite_diff| / max(|reverse|, |finite_diff|)
    tolerance: float    #: the absolute difference allowed for this comparison
    passed: bool

    def __str__(self):
        return (f"order {self.order}, {self.argument}, direction {self.direction}: "
                f"reverse mode {self.reverse:.10e}, finite differences {self.finite_diff:.10e}, "
                f"relative error {self.rel_error:.2e}")


@dataclass
class GradCheckResult:
    """Everything :func:`check_grads` compared; inspect it when not raising.

    Attributes
    ----------
    ok : bool
        True when every comparison passed.
    max_rel_error : float
        Worst relative error over all comparisons.
    worst : GradCheck or None
        The comparison nearest to (or furthest beyond) its tolerance.
    checks : list of GradCheck
    """
    checks: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def max_rel_error(self) -> float:
        return max((c.rel_error for c in self.checks), default=0.0)

    @property
    def worst(self):
        return max(self.checks, default=None,
                   key=lambda c: abs(c.reverse - c.finite_diff) / c.tolerance)

    def __str__(self):
        status = "passed" if self.ok else "FAILED"
        return (f"check_grads {status}: {len(self.checks)} comparisons, worst relative error "
                f"{self.max_rel_error:.2e}; worst case: {self.worst}")


def check_grads(f, *args, order: int = 2, argnums=None, eps: float = 1e-6, rtol: float = 1e-5,
                atol: float = 1e-9, n_directions: int = 2, seed=0,
                raise_on_failure: bool = True) -> GradCheckResult:
    """Compare reverse-mode derivatives of `f` with central finite differences, up to `order`.

    For random unit vectors ``u`` (output space) and ``v`` (one argument's
    space), the reverse-mode value ``<vjp(u), v>`` must equal the central
    difference ``<u, f(x + h v) - f(x - h v)> / (2 h)``. For ``order >= 2``
    the same test is applied to the function ``(x, u) -> vjp_f(x)(u)``
    (differentiated by ``backward(create_graph=True)``), which checks every
    second derivative contracted with random directions, and so on.

    Parameters
    ----------
    f : callable
        ``f(*args) -> Tensor`` (any shape) built from odeflow ops.
    *args : array_like, Tensor or float
        Point of evaluation. Checked arguments are converted to float64.
    order : int, default 2
        Highest derivative order to check.
    argnums : int or sequence of int, optional
        Arguments to check; default: every floating array, Tensor and float.
        Other arguments are passed unchanged.
    eps : float, default 1e-6
        Relative step: ``h = eps * max(1, max|x|)``. The error of a central
        difference is about ``h**2 |f'''| / 6`` (truncation) plus
        ``machine_eps |f| / h`` (rounding); their sum is smallest near
        ``h ~ (3 machine_eps)**(1/3) ~ 1e-5`` times the scale of ``x``.
        ``1e-6`` leans towards truncation error (which is ``~1e-12`` relative
        for smooth functions) because at order 2 the differenced function is
        itself a computed VJP. Kinks closer than ``h`` to `x` (relu, abs, max)
        make any step fail: evaluate away from them.
    rtol, atol : float
        A comparison passes when ``|rev - fd| <= atol + rtol * max(|rev|, |fd|)
        + noise``, where ``noise = 10 machine_eps sum|u||f| / h`` estimates
        the rounding error of the difference itself. The defaults leave a
        margin of about 1e4 over the errors of smooth float64 functions.
    n_directions : int, default 2
        Random direction pairs per argument and order.
    seed : int or numpy.random.Generator, default 0
        Seed of the random directions (checks are reproducible).
    raise_on_failure : bool, default True
        Raise on failure; when False, return the result for inspection.

    Returns
    -------
    GradCheckResult
        Every comparison, the worst relative error and where it occurred.

    Raises
    ------
    GradientError
        A comparison failed (and `raise_on_failure`); the message names the
        order, argument, direction and both values. The result is attached
        as ``error.result``.
    InputError
        `order` < 1, no argument to check, or `argnums` out of range.

    Examples
    --------
    >>> from odeflow.autodiff import ops
    >>> check_grads(lambda x: ops.tanh(x) ** 2, np.array([0.3, -1.2])).ok
    True
    """
    if order < 1:
        raise InputError(f"`order` must be at least 1; got {order}")
    if argnums is None:
        nums = [i for i, a in enumerate(args) if _is_float(a)]
    else:
        nums = [argnums] if isinstance(argnums, (int, np.integer)) else list(argnums)
    if not nums:
        raise InputError("no floating-point argument to check; pass `argnums`")
    for i in nums:
        if not -len(args) <= i < len(args):
            raise InputError(f"`argnums` entry {i} is out of range for {len(args)} arguments")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    xs = [np.array(args[i].data if isinstance(args[i], Tensor) else args[i], dtype=np.float64)
          for i in nums]
    names = [f"argument {i} (shape {x.shape})" for i, x in zip(nums, xs)]

    def f_of_checked(*checked):
        full = list(args)
        for i, value in zip(nums, checked):
            full[i] = value
        return f(*full)

    result = GradCheckResult()
    _check(f_of_checked, xs, names, 1, order, rng, dict(eps=eps, rtol=rtol, atol=atol,
                                                          n_directions=n_directions), result)
    if raise_on_failure and not result.ok:
        worst = result.worst
        error = GradientError(
            f"check_grads: reverse mode and finite differences disagree at {worst}; "
            f"allowed difference {worst.tolerance:.2e} (rtol={rtol}, atol={atol}, eps={eps})")
        error.result = result
        raise error
    return result


def _is_float(a) -> bool:
    if isinstance(a, Tensor):
        return a.dtype.kind == "f"
    return isinstance(a, (float, np.floating)) or (isinstance(a, np.ndarray) and a.dtype.kind == "f")


def _unit(rng, shape) -> np.ndarray:
    v = rng.standard_normal(shape)
    return v / max(np.linalg.norm(v), 1e-300)


def _check(func, xs, names, level, order, rng, opts, result):
    out, vjp_fn = vjp(func, *xs)
    out = np.asarray(out, dtype=np.float64)

    def value(*points):
        with no_grad():
            y = func(*[Tensor(p) for p in points])
        return np.asarray(y.data if isinstance(y, Tensor) else y, dtype=np.float64)

    for direction in range(opts["n_directions"]):
        u = _unit(rng, out.shape)
        grads = vjp_fn(u)
        for i, (x, name) in enumerate(zip(xs, names)):
            v = _unit(rng, x.shape)
            h = opts["eps"] * max(1.0, float(np.max(np.abs(x), initial=0.0)))
            plus = value(*xs[:i], x + h * v, *xs[i + 1:])
            minus = value(*xs[:i], x - h * v, *xs[i + 1:])
            fd = float(np.sum(u * (plus - minus)) / (2 * h))
            rev = float(np.sum(np.asarray(grads[i]) * v))
            noise = 10 * _EPS64 * float(np.sum(np.abs(u) * (np.abs(plus) + np.abs(minus)))) / (2 * h)
            scale = max(abs(rev), abs(fd))
            tol = float(opts["atol"] + opts["rtol"] * scale + noise)
            diff = abs(rev - fd)
            result.checks.append(GradCheck(
                order=level, argument=name, direction=direction, reverse=rev, finite_diff=fd,
                rel_error=diff / scale if scale > 0 else 0.0, tolerance=tol,
                passed=bool(diff <= tol)))
    if level < order:
        # Differentiate the VJP itself, as a function of (x..., u): its own VJP
        # is computed by backward(create_graph=True) inside the nested vjp.
        def vjp_of(*xs_and_u):
            *xs_t, u_t = xs_and_u
            _, inner = vjp(func, *xs_t)
            return ops.concatenate([ops.reshape(g, (-1,)) for g in inner(u_t)])

        cotangent = f"cotangent of the order-{level} VJP (shape {out.shape})"
        _check(vjp_of, xs + [_unit(rng, out.shape)], names + [cotangent],
               level + 1, order, rng, opts, result)
