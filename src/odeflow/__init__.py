"""odeflow: neural ordinary differential equations from scratch on NumPy and Numba.

Public names are loaded lazily (PEP 562), so ``import odeflow`` imports no
solver, compiles nothing and stays fast; the first use of ``odeflow.odeint``
imports the solver package (Numba kernels compile on first call, then come from
the on-disk cache).

Layers, imports pointing downwards only::

    models/      ODE-Net, continuous normalizing flows, latent ODE
    regularizers kinetic energy, Jacobian Frobenius norm (RNODE), STEER
    nn/, optim   Module, Linear, MLP, GRUCell; SGD, Adam
    adjoint/     odeint_adjoint, backprop through the solver, odeint_event
    autodiff/    Tensor, VJP rules, grad / vjp
    solvers/     Dormand-Prince and friends on NumPy arrays
    errors       one exception hierarchy
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "odeint": "odeflow.adjoint",
    "solve": "odeflow.solvers.integrate",
    "solve_batch": "odeflow.solvers.batch",
    "solve_ensemble": "odeflow.solvers.ensemble",
    "Solution": "odeflow.solvers.solution",
    "METHODS": "odeflow.solvers.integrate",
    "Tensor": "odeflow.autodiff.tensor",
    "no_grad": "odeflow.autodiff.tensor",
    "grad": "odeflow.autodiff.functional",
    "vjp": "odeflow.autodiff.functional",
    "odeint_adjoint": "odeflow.adjoint",
    "odeint_backprop": "odeflow.adjoint",
    "odeint_event": "odeflow.adjoint",
}
_ERRORS = (
    "OdeflowError", "InputError", "InputTypeError", "ShapeError", "DataFormatError",
    "SolverError", "StepSizeUnderflowError", "MaxStepsExceededError",
    "NonFiniteDerivativeError", "GradientError", "ToleranceWarning", "GradientAccuracyWarning",
    "TrainingError", "ResumeError",
)
for _name in _ERRORS:
    _EXPORTS[_name] = "odeflow.errors"

__all__ = sorted(_EXPORTS)
# subpackages reachable as attributes (odeflow.errors, odeflow.nn...) without importing them first
_SUBMODULES = {"errors", "solvers", "autodiff", "adjoint", "nn", "optim", "models", "data", "testing",
               "problems", "experiments", "regularizers", "blas"}


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"odeflow.{name}")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'odeflow' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
