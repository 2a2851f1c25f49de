"""Radau IIA of order 5 (``method="radau"``): the implicit solver for stiff problems.

The 3-stage Radau IIA method (Hairer & Wanner, *Solving ODEs II*, 2nd ed.,
§IV.5, Table 5.6, and §IV.8; their Fortran code RADAU5) is the collocation
method at ``c = ((4 - sqrt 6)/10, (4 + sqrt 6)/10, 1)``. Its stage increments
``Z_i = Y_i - y`` solve the nonlinear system (HW II §IV.8, eq. 8.1)::

    Z = h (A ⊗ I) F(Z),        F(Z)_i = f(t + c_i h, y + Z_i),    y1 = y + Z_3.

**Simplified Newton on the transformed system** (§IV.8, eq. 8.2-8.9). With one
Jacobian ``J ≈ df/dy`` per step, Newton's matrix ``I/h ⊗ A^-1 - I ⊗ J`` is
block-diagonalised by the eigenvectors of ``A^-1`` (``T^-1 A^-1 T`` = one real
eigenvalue ``gamma`` and a complex pair ``alpha ± i beta``): with
``W = (T^-1 ⊗ I) Z`` each iteration solves one real ``n x n`` system with
``gamma/h I - J`` and one complex one with ``(alpha - i beta)/h I - J``
(in :func:`make_radau_loop`). Both are LU-factorised (:mod:`odeflow.solvers.lu`, hand-written,
partial pivoting) and the factors are reused across steps while the step size
stays put and Newton converges fast; ``J`` itself is re-evaluated only when
Newton slows (RADAU5's rule, as in scipy's ``Radau``).

**Error estimate** (§IV.8, eq. 8.19-8.20): the embedded 3rd-order formula,
filtered by ``(gamma/h I - J)^-1`` so that it stays bounded for stiff
components; after a rejected step it is refined by one more evaluation.

**Step control**: Gustafsson's predictive controller (§IV.8, eq. 8.25), with
a safety factor that shrinks with the number of Newton iterations.

**Dense output**: the collocation polynomial itself (cubic through ``y`` and
the three stage values, §IV.8 "dense output"), stored in the same form as the
explicit methods' (``y0 + h * Q @ theta**(1..3)``), so
:meth:`odeflow.Solution.interpolate` is unchanged. It also gives the starting
guess ``Z0`` of the next step's Newton iteration (extrapolation).

**Jacobian**: ``options={"jac": jac}`` with ``jac(t, y) -> (n, n)`` (state
flattened), or forward differences (RADAU5's increments
``sqrt(eps * max(1e-5, |y_j|))``, ``n`` evaluations counted in ``nfe``):
:mod:`odeflow.solvers.radau_jacobian`.

The loop is written once in the subset of Python Numba compiles (like
:mod:`odeflow.solvers.loop`): with an ``@njit`` ``func`` (and an ``@njit``
``jac`` or none) the whole solve — Newton iterations, LU factorisations,
finite-difference Jacobians — runs compiled; otherwise it runs as Python
calling the same jitted kernels.

Cross-checked against scipy's ``Radau`` (same method and controller family):
``tests/test_solver_radau.py``.
"""
from __future__ import annotations

import math
import time
import weakref

import numpy as np

from odeflow.errors import ShapeError
from odeflow.solvers.controller import initial_guess, initial_step, min_step_at, next_attempt
from odeflow.solvers.jit import is_jitted, kernel
from odeflow.solvers.kernels import all_finite, scaled_rms
from odeflow.solvers.loop import BAD_SIZE, MAX_STEPS, NONFINITE, SUCCESS, UNDERFLOW, grow_record
from odeflow.solvers.lu import lu_factor, lu_solve
from odeflow.solvers.radau_jacobian import BAD_JAC, JAC_NONFINITE, JacShape, check_jac, make_jacobian

__all__ = ["C", "A", "MU_REAL", "MU_COMPLEX", "T", "TI", "E", "P", "NEWTON_MAXITER", "make_radau_loop", "run",
           "BAD_JAC", "JAC_NONFINITE"]


_S6 = math.sqrt(6.0)
C = np.array([(4.0 - _S6) / 10.0, (4.0 + _S6) / 10.0, 1.0])
# HW II Table 5.6 (Radau IIA, order 5)
A = np.array([[(88.0 - 7.0 * _S6) / 360.0, (296.0 - 169.0 * _S6) / 1800.0, (-2.0 + 3.0 * _S6) / 225.0],
              [(296.0 + 169.0 * _S6) / 1800.0, (88.0 + 7.0 * _S6) / 360.0, (-2.0 - 3.0 * _S6) / 225.0],
              [(16.0 - _S6) / 36.0, (16.0 + _S6) / 36.0, 1.0 / 9.0]])


def _check_collocation():
    """A is the collocation method at C: sum_j A_ij C_j^(k-1) = C_i^k / k, k = 1..3
    (simplifying assumption C(3), HW II §IV.5), and b = the last row (stiffly accurate)."""
    for k in range(1, 4):
        if not np.allclose(A @ C ** (k - 1), C ** k / k, rtol=0, atol=1e-15):
            raise ValueError(f"radau: A does not satisfy C({k})")


_check_collocation()


def _transformation():
    """``T`` with ``T^-1 A^-1 T = [[gamma, 0, 0], [0, alpha, beta], [0, -beta, alpha]]``
    (HW II §IV.8, eq. 8.7-8.8): columns are the real eigenvector and the real and
    imaginary parts of the complex one (eigenvalue ``alpha + i beta``, ``beta > 0``).
    Returns ``(gamma, alpha - i beta, T, T^-1)``; any scaling of the eigenvectors works."""
    lam, vec = np.linalg.eig(np.linalg.inv(A))
    real = int(np.argmin(np.abs(lam.imag)))
    cplx = int(np.argmax(lam.imag))
    t_real = vec[:, real].real / vec[2, real].real
    v = vec[:, cplx] / vec[2, cplx]  # normalised so that T[2] = (1, 1, 0), as RADAU5's
    T = np.column_stack([t_real, v.real, v.imag])
    return lam[real].real, np.conj(lam[cplx]), T, np.linalg.inv(T)


MU_REAL, MU_COMPLEX, T, TI = _transformation()
# closed forms of the eigenvalues of A^-1 (HW II §IV.8, eq. 8.10): a check of the above
assert abs(MU_REAL - (3.0 + 3.0 ** (2 / 3) - 3.0 ** (1 / 3))) < 1e-13
assert abs(MU_COMPLEX - (3.0 + 0.5 * (3.0 ** (1 / 3) - 3.0 ** (2 / 3))
                         - 0.5j * (3.0 ** (5 / 6) + 3.0 ** (7 / 6)))) < 1e-13
TI_REAL = np.ascontiguousarray(TI[0])
TI_COMPLEX = TI[1] + 1j * TI[2]
# Embedded error estimate: err = (gamma/h I - J)^-1 (f(t, y) + Z^T E / h)  (HW II eq. 8.19-8.20)
E = np.array([-13.0 - 7.0 * _S6, -13.0 + 7.0 * _S6, -1.0]) / 3.0


def _collocation_weights():
    """``P`` (3 x 3): the collocation polynomial ``u(t + x h) = y + sum_i Z_i l_i(x)``
    with ``l_i`` the cubic Lagrange basis on the nodes ``0, c_1, c_2, c_3`` vanishing
    at 0; row ``i`` holds the coefficients of ``x, x^2, x^3`` in ``l_i``."""
    P = np.empty((3, 3))
    for i in range(3):
        poly = np.array([1.0 / C[i], 0.0])          # x / c_i  (highest power first)
        for j in range(3):
            if j != i:
                poly = np.polymul(poly, np.array([1.0, -C[j]]) / (C[i] - C[j]))
        P[i] = poly[::-1][1:]                          # x^1, x^2, x^3
    return P


P = _collocation_weights()
NEWTON_MAXITER = 6   # RADAU5's NIT
MIN_FACTOR = 0.2     # bounds of the step factor (scipy's Radau)
MAX_FACTOR = 10.0
for _arr in (C, A, T, TI, TI_REAL, TI_COMPLEX, E, P):
    _arr.setflags(write=False)


@kernel
def build_matrices(J, h, mu_real, mu_complex, M_real, M_complex):
    """``M_real = mu_real/h I - J`` and ``M_complex = mu_complex/h I - J`` (HW II eq. 8.9)."""
    n = J.shape[0]
    for i in range(n):
        for j in range(n):
            M_real[i, j] = -J[i, j]
            M_complex[i, j] = -J[i, j]
        M_real[i, i] += mu_real / h
        M_complex[i, i] += mu_complex / h


@kernel
def predict_factor(h_abs, h_abs_old, err, err_old):
    """Gustafsson's predictive step factor (HW II §IV.8, eq. 8.25):
    ``err**-1/4 * min(1, (h / h_old) (err_old / err)**1/4)``; the one-step rule
    when there is no previous step (``h_abs_old < 0``) or ``err = 0``."""
    if err == 0.0:
        return MAX_FACTOR
    multiplier = 1.0
    if h_abs_old > 0.0 and err_old > 0.0:
        multiplier = min(1.0, h_abs / h_abs_old * (err_old / err) ** 0.25)
    return multiplier * err ** -0.25


def make_radau_loop(evaluate, jacobian, jitted=False):
    """The Radau IIA loop with ``evaluate`` (see :func:`odeflow.solvers.loop.make_evaluator`)
    and ``jacobian(t, y, f, shape, J) -> (code, n_evaluations)`` closed over
    (``code``: 0 ok, :data:`BAD_JAC`, :data:`JAC_NONFINITE`, or ``BAD_SIZE`` for a
    finite-difference Jacobian whose func returned the wrong size)."""

    def newton(t, y, h, Z0, Z, W, F, dW, dWc, stage, scale, tol, LU_real, piv_real, LU_complex,
               piv_complex, shape, counts):
        """Simplified Newton iterations for the collocation system (HW II §IV.8).

        Starts from ``Z0`` (3, n); on return ``Z`` holds the stage increments.
        Stops when the estimated remaining error ``rate / (1 - rate) * ||dW||``
        is below ``tol`` (converged), or when the contraction ``rate >= 1`` or
        the predicted error after the remaining iterations exceeds ``tol``
        (diverging: the caller refreshes ``J`` or halves ``h``). Returns
        ``(converged, n_iter, rate, ok)`` (``ok`` False: func's output had the
        wrong size); ``counts[0]`` counts evaluations.
        """
        n = y.shape[0]
        mr = MU_REAL / h
        mc = MU_COMPLEX / h
        for i in range(3):
            for k in range(n):
                Z[i, k] = Z0[i, k]
                W[i, k] = TI[i, 0] * Z0[0, k] + TI[i, 1] * Z0[1, k] + TI[i, 2] * Z0[2, k]
        converged = False
        rate = -1.0
        dW_norm_old = -1.0
        n_iter = 0
        for it in range(NEWTON_MAXITER):
            n_iter = it + 1
            for i in range(3):
                for k in range(n):
                    stage[k] = y[k] + Z[i, k]
                if not evaluate(t + C[i] * h, stage, shape, F[i]):
                    return False, n_iter, rate, False
            counts[0] += 3
            if not all_finite(F.reshape(-1)):
                break
            for k in range(n):
                fr = TI_REAL[0] * F[0, k] + TI_REAL[1] * F[1, k] + TI_REAL[2] * F[2, k]
                fc = TI_COMPLEX[0] * F[0, k] + TI_COMPLEX[1] * F[1, k] + TI_COMPLEX[2] * F[2, k]
                dW[0, k] = fr - mr * W[0, k]
                dWc[k] = fc - mc * (W[1, k] + 1j * W[2, k])
            lu_solve(LU_real, piv_real, dW[0])
            lu_solve(LU_complex, piv_complex, dWc)
            acc = 0.0
            for k in range(n):
                dW[1, k] = dWc[k].real
                dW[2, k] = dWc[k].imag
                for i in range(3):
                    r = dW[i, k] / scale[k]
                    acc += r * r
            dW_norm = math.sqrt(acc / (3 * n))
            if dW_norm_old >= 0.0:
                rate = dW_norm / dW_norm_old
            if not math.isfinite(dW_norm):
                break
            if rate >= 0.0 and (rate >= 1.0 or rate ** (NEWTON_MAXITER - it) / (1.0 - rate) * dW_norm > tol):
                break
            for k in range(n):
                for i in range(3):
                    W[i, k] += dW[i, k]
                for i in range(3):
                    Z[i, k] = T[i, 0] * W[0, k] + T[i, 1] * W[1, k] + T[i, 2] * W[2, k]
            if dW_norm == 0.0 or (rate >= 0.0 and rate / (1.0 - rate) * dW_norm < tol):
                converged = True
                break
            dW_norm_old = dW_norm
        return converged, n_iter, rate, True

    if jitted:  # the loop is compiled whole: so must be the iteration it calls
        import numba

        from odeflow.solvers.jit import OPTIONS
        newton = numba.njit(**OPTIONS)(newton)

    def radau_loop(t_out, y0, f0, shape, rtol, atol, first_step, max_step, max_steps, store):
        """Integrate with Radau IIA from ``t_out[0]`` with outputs at ``t_out``.

        Arguments as :func:`odeflow.solvers.loop.adaptive_loop`'s (``y0``
        float64 here). Returns ``(status, ys, rows_done, t, h, y, nfe, n_accepted,
        n_rejected, rec_t, rec_h, rec_y, rec_Q, njev, nlu, n_newton_fail,
        newton_failed_last)``.
        """
        n = y0.shape[0]
        m = t_out.shape[0]
        t0 = t_out[0]
        t_end = t_out[m - 1]
        direction = 1.0 if t_end > t0 else -1.0
        interval = abs(t_end - t0)
        rt = rtol[0]
        for k in range(n):
            rt = min(rt, rtol[k])
        eps = np.finfo(np.float64).eps
        newton_tol = max(10.0 * eps / rt, min(0.03, math.sqrt(rt)))

        ys = np.empty((m, n))
        ys[0] = y0
        cap = 64 if store else 1
        rec_t = np.empty(cap)
        rec_h = np.empty(cap)
        rec_y = np.empty((cap, n))
        rec_Q = np.empty((cap, n, 3))

        y = y0.copy()
        f = f0.copy()
        y_new = np.empty(n)
        f_new = np.empty(n)
        J = np.empty((n, n))
        LU_real = np.empty((n, n))
        LU_complex = np.empty((n, n), np.complex128)
        piv_real = np.empty(n, np.int64)
        piv_complex = np.empty(n, np.int64)
        Z0 = np.zeros((3, n))
        Z = np.zeros((3, n))
        W = np.zeros((3, n))
        F = np.empty((3, n))
        dW = np.empty((3, n))
        dWc = np.empty(n, np.complex128)
        stage = np.empty(n)
        scale = np.empty(n)
        err_vec = np.empty(n)
        ZE = np.empty(n)
        Q = np.zeros((n, 3))      # previous step's collocation polynomial (for Z0)
        y_old = y0.copy()
        counts = np.zeros(1, np.int64)
        counts[0] = 1             # f0

        code, used = jacobian(t0, y, f, shape, J)
        counts[0] += used
        njev = 1
        nlu = 0
        status = SUCCESS if code == 0 else code
        current_jac = True
        lu_valid = False

        if first_step > 0.0:
            h_abs = min(first_step, interval, max_step)
        else:  # HNW I §II.4 with error order 3 (as scipy's Radau)
            d0 = scaled_rms(y0, y0, rtol, atol)
            d1 = scaled_rms(f0, y0, rtol, atol)
            h0 = initial_guess(d0, d1, interval)
            for k in range(n):
                stage[k] = y0[k] + direction * h0 * f0[k]
            if not evaluate(t0 + direction * h0, stage, shape, f_new):
                status = BAD_SIZE
            counts[0] += 1
            for k in range(n):
                stage[k] = f_new[k] - f0[k]
            d2 = scaled_rms(stage, y0, rtol, atol) / h0
            h_abs = initial_step(h0, d1, d2, 3, interval, max_step)
        h_abs_old = -1.0
        err_old = -1.0
        have_poly = False
        t_old = t0
        h_prev = 0.0
        t = t0
        h = 0.0
        j = 1
        n_acc = 0
        n_rej = 0
        n_newton_fail = 0
        newton_failed_last = False
        while status == SUCCESS and direction * (t_end - t) > 0.0:
            min_step = min_step_at(t, direction)
            if h_abs > max_step:
                h_abs = max_step
                h_abs_old = -1.0
                err_old = -1.0
            elif h_abs < min_step:
                h_abs = min_step
                h_abs_old = -1.0
                err_old = -1.0
            rejected = False
            accepted = False
            n_iter = 0
            rate = -1.0
            err = 0.0
            safety = 0.9
            t_new = t
            while not accepted:
                if h_abs < min_step:
                    status = UNDERFLOW
                    break
                if n_acc + n_rej >= max_steps:
                    status = MAX_STEPS
                    break
                t_new, h = next_attempt(t, t_end, h_abs, direction, 1.0)
                h_abs = abs(h)
                # starting guess: the last collocation polynomial, extrapolated (RADAU5's STARTN)
                for i in range(3):
                    if have_poly:
                        dense_eval_cubic(y_old, h_prev, Q, (t + C[i] * h - t_old) / h_prev, stage)
                        for k in range(n):
                            Z0[i, k] = stage[k] - y[k]
                    else:
                        for k in range(n):
                            Z0[i, k] = 0.0
                for k in range(n):
                    scale[k] = atol[k] + abs(y[k]) * rtol[k]
                converged = False
                ok = True
                while not converged:
                    if not lu_valid:
                        build_matrices(J, h, MU_REAL, MU_COMPLEX, LU_real, LU_complex)
                        lu_factor(LU_real, piv_real)
                        lu_factor(LU_complex, piv_complex)
                        nlu += 2
                        lu_valid = True
                    converged, n_iter, rate, ok = newton(
                        t, y, h, Z0, Z, W, F, dW, dWc, stage, scale, newton_tol, LU_real, piv_real,
                        LU_complex, piv_complex, shape, counts)
                    if not ok or converged or current_jac:
                        break
                    code, used = jacobian(t, y, f, shape, J)
                    counts[0] += used
                    njev += 1
                    if code != 0:
                        status = code
                        break
                    current_jac = True
                    lu_valid = False
                if not ok:
                    status = BAD_SIZE
                if status != SUCCESS:
                    break
                if not converged:  # RADAU5: halve the step and refactorise
                    h_abs *= 0.5
                    lu_valid = False
                    n_rej += 1
                    n_newton_fail += 1
                    newton_failed_last = True
                    continue
                newton_failed_last = False
                for k in range(n):
                    y_new[k] = y[k] + Z[2, k]
                    ZE[k] = (Z[0, k] * E[0] + Z[1, k] * E[1] + Z[2, k] * E[2]) / h
                    err_vec[k] = f[k] + ZE[k]
                lu_solve(LU_real, piv_real, err_vec)
                for k in range(n):
                    scale[k] = atol[k] + max(abs(y[k]), abs(y_new[k])) * rtol[k]
                err = _rms_ratio(err_vec, scale)
                safety = 0.9 * (2 * NEWTON_MAXITER + 1) / (2 * NEWTON_MAXITER + n_iter)
                if rejected and err > 1.0:  # HW II eq. 8.20: one more filtering evaluation
                    for k in range(n):
                        stage[k] = y[k] + err_vec[k]
                    if not evaluate(t, stage, shape, f_new):
                        status = BAD_SIZE
                        break
                    counts[0] += 1
                    for k in range(n):
                        err_vec[k] = f_new[k] + ZE[k]
                    lu_solve(LU_real, piv_real, err_vec)
                    err = _rms_ratio(err_vec, scale)
                if not (err <= 1.0):
                    factor = predict_factor(h_abs, h_abs_old, err, err_old) if math.isfinite(err) else 0.0
                    h_abs *= max(MIN_FACTOR, safety * factor)
                    lu_valid = False
                    rejected = True
                    n_rej += 1
                    continue
                accepted = True
            if status != SUCCESS:
                break
            recompute_jac = n_iter > 2 and rate > 1e-3
            factor = min(MAX_FACTOR, safety * predict_factor(h_abs, h_abs_old, err, err_old))
            if not recompute_jac and factor < 1.2:
                factor = 1.0   # keep h: the LU factors stay valid
            else:
                lu_valid = False
            if not evaluate(t_new, y_new, shape, f_new):
                status = BAD_SIZE
                break
            counts[0] += 1
            if not all_finite(f_new):
                status = NONFINITE
                break
            if recompute_jac:
                code, used = jacobian(t_new, y_new, f_new, shape, J)
                counts[0] += used
                njev += 1
                if code != 0:
                    status = code
                    t = t_new
                    y[:] = y_new
                    break
                current_jac = True
            else:
                current_jac = False
            # the step's collocation polynomial: u(t + x h) = y + Z^T P [x, x^2, x^3]
            for k in range(n):
                for q in range(3):
                    Q[k, q] = (Z[0, k] * P[0, q] + Z[1, k] * P[1, q] + Z[2, k] * P[2, q]) / h
            while j < m and direction * (t_out[j] - t_new) <= 0.0:
                if t_out[j] == t_new:
                    ys[j] = y_new
                else:
                    dense_eval_cubic(y, h, Q, (t_out[j] - t) / h, ys[j])
                j += 1
            if store:
                rec_t, rec_h, rec_y, rec_Q = grow_record(rec_t, rec_h, rec_y, rec_Q, n_acc)
                rec_t[n_acc] = t
                rec_h[n_acc] = h
                rec_y[n_acc] = y
                rec_Q[n_acc] = Q
            n_acc += 1
            h_abs_old = h_abs
            err_old = err
            t_old = t
            h_prev = h
            y_old[:] = y
            have_poly = True
            t = t_new
            y[:] = y_new
            f[:] = f_new
            h_abs *= factor
        n_rec = n_acc if store else 0
        return (status, ys, j, t, h, y, counts[0], n_acc, n_rej, rec_t[:n_rec], rec_h[:n_rec],
                rec_y[:n_rec], rec_Q[:n_rec], njev, nlu, n_newton_fail, newton_failed_last)

    return radau_loop


@kernel
def _rms_ratio(x, scale):
    """``sqrt(mean((x / scale)**2))``; NaN if not finite."""
    acc = 0.0
    for k in range(x.shape[0]):
        r = x[k] / scale[k]
        acc += r * r
    return math.sqrt(acc / max(x.shape[0], 1))


@kernel
def dense_eval_cubic(y0, h, Q, x, out):
    """``out = y0 + h * Q @ (x, x^2, x^3)``: the collocation polynomial of a step."""
    for k in range(y0.shape[0]):
        out[k] = y0[k] + h * x * (Q[k, 0] + x * (Q[k, 1] + x * Q[k, 2]))


# per jitted func (and jac): the compiled loop, built on first use
_compiled = weakref.WeakKeyDictionary()


def _loop_for(func, jac, shape):
    """The Radau loop for ``func``/``jac``: compiled whole when ``func`` is ``@njit`` and
    ``jac`` is ``@njit`` or absent (then the finite-difference Jacobian is compiled too);
    plain Python (calling the jitted kernels) otherwise. Returns ``(runner, jitted)``."""
    from odeflow.solvers.integrate import _checked
    from odeflow.solvers.loop import make_evaluator
    jitted = is_jitted(func) and (jac is None or is_jitted(jac))
    if not jitted:
        f = func if is_jitted(func) else _checked(func, shape)
        evaluate = make_evaluator(f, jitted=False)
        return make_radau_loop(evaluate, make_jacobian(evaluate, jac, False, len(shape) == 1)), False
    import numba

    from odeflow.solvers.jit import OPTIONS
    loops = _compiled.setdefault(func, {})
    key = (jac, len(shape) == 1)
    if key not in loops:
        evaluate = make_evaluator(func, jitted=True, flat=key[1])
        loops[key] = numba.njit(**OPTIONS)(make_radau_loop(evaluate, make_jacobian(evaluate, jac, True, key[1]),
                                                            jitted=True))
    return loops[key], True


def run(func, t, y0, f0, shape, rtol, atol, opts, store):
    """Solve with Radau IIA; returns the loop's tuple, the seconds spent compiling,
    and whether the loop ran compiled. ``y0``/``f0`` flat; computed in float64."""
    jac = opts.get("jac")
    y = np.ascontiguousarray(y0, dtype=np.float64)
    f = np.ascontiguousarray(f0, dtype=np.float64)
    if jac is not None:
        check_jac(jac, t[0], y, shape)
    runner, jitted = _loop_for(func, jac, shape)
    args = (t, y, f, shape, rtol, atol, float(opts.get("first_step") or 0.0),
            float(opts.get("max_step") or np.inf), int(opts.get("max_steps") or 100_000), bool(store))
    n_before = len(runner.overloads) if jitted else 0
    start = time.perf_counter()
    try:
        out = runner(*args)
    except JacShape as exc:
        raise ShapeError(f"`options['jac']` must return df/dy of the flattened state, shape "
                         f"({y.size}, {y.size}); during the solve it returned shape {exc.shape}") from None
    seconds = time.perf_counter() - start if jitted and len(runner.overloads) > n_before else 0.0
    return out, seconds, jitted
