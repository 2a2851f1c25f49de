"""Dense LU factorisation with partial pivoting, for the implicit solvers' Newton systems.

Hand-written (the mission's core) and compiled: Radau IIA factorises one real and one
complex ``n x n`` matrix per Jacobian or step-size change (:mod:`odeflow.solvers.radau`).
Reference: G. H. Golub, C. F. Van Loan, *Matrix Computations*, 4th ed., Alg. 3.4.1.
"""
from __future__ import annotations

from odeflow.solvers.jit import kernel

__all__ = ["lu_factor", "lu_solve"]


@kernel
def lu_factor(M, piv):
    """In-place LU factorisation with partial pivoting, ``P M = L U`` (Golub & Van
    Loan, Alg. 3.4.1). ``M`` (n, n) float64 or complex128 is overwritten by ``L``
    (unit diagonal, below) and ``U``; ``piv[k]`` is the row swapped with ``k``.
    Returns False for an exactly singular matrix."""
    n = M.shape[0]
    ok = True
    for k in range(n):
        p = k
        best = abs(M[k, k])
        for i in range(k + 1, n):
            if abs(M[i, k]) > best:
                best = abs(M[i, k])
                p = i
        piv[k] = p
        if best == 0.0:
            ok = False
            continue
        if p != k:
            for j in range(n):
                tmp = M[k, j]
                M[k, j] = M[p, j]
                M[p, j] = tmp
        inv = 1.0 / M[k, k]
        for i in range(k + 1, n):
            M[i, k] *= inv
            f = M[i, k]
            if f != 0.0:
                for j in range(k + 1, n):
                    M[i, j] -= f * M[k, j]
    return ok


@kernel
def lu_solve(LU, piv, b):
    """Solve ``M x = b`` in place (``b`` becomes ``x``) from :func:`lu_factor`'s output."""
    n = LU.shape[0]
    for k in range(n):
        p = piv[k]
        if p != k:
            tmp = b[k]
            b[k] = b[p]
            b[p] = tmp
    for i in range(n):
        acc = b[i]
        for j in range(i):
            acc -= LU[i, j] * b[j]
        b[i] = acc
    for i in range(n - 1, -1, -1):
        acc = b[i]
        for j in range(i + 1, n):
            acc -= LU[i, j] * b[j]
        b[i] = acc / LU[i, i]
