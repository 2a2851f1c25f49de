"""The one exception hierarchy of odeflow.

Every error odeflow raises on purpose derives from :class:`OdeflowError`, so
``except odeflow.OdeflowError`` catches them all. Input errors also derive from
the built-in exception a Python user would expect (``ValueError`` or
``TypeError``), so existing ``except ValueError`` code keeps working.

Two families:

* input errors, raised *before any work starts*, naming the offending argument
  and its value;
* solver failures, raised *during* a solve, carrying the time ``t`` and step
  size ``h`` where the solver gave up and the partial solution computed so far.
"""
from __future__ import annotations

__all__ = [
    "OdeflowError",
    "InputError",
    "InputTypeError",
    "ShapeError",
    "DataFormatError",
    "SolverError",
    "StepSizeUnderflowError",
    "MaxStepsExceededError",
    "NonFiniteDerivativeError",
    "GradientError",
    "ToleranceWarning",
    "GradientAccuracyWarning",
    "TrainingError",
    "ResumeError",
]


class OdeflowError(Exception):
    """Base class of every exception odeflow raises on purpose."""


class InputError(OdeflowError, ValueError):
    """An argument has a bad value; the message names the argument and the value."""


class InputTypeError(OdeflowError, TypeError):
    """An argument has the wrong type; the message names the argument and the type."""


class ShapeError(InputError):
    """Arrays whose shapes do not fit together; the message shows both shapes."""


class DataFormatError(InputError):
    """A data file is truncated, corrupt or not in the expected format."""


class GradientError(OdeflowError, RuntimeError):
    """A gradient cannot be computed as asked (for example ``backward()`` on a
    non-scalar without an output gradient, or a parameter outside the graph)."""


class SolverError(OdeflowError, RuntimeError):
    """A solve that started but could not finish.

    Attributes
    ----------
    t : float
        Time (in the units of ``t``) at which the solver stopped.
    h : float
        Last step size tried (signed, negative when integrating backwards).
    solution : odeflow.Solution or None
        The partial solution: the output rows completed before the failure
        (never a NaN row), with ``status`` set to the failure code.
    """

    def __init__(self, message: str, *, t: float, h: float, solution=None):
        super().__init__(message)
        self.t = float(t)
        self.h = float(h)
        self.solution = solution


class StepSizeUnderflowError(SolverError):
    """The step size needed to meet the tolerances fell below the floating-point
    resolution of ``t`` (typically a singularity or a very stiff problem)."""


class MaxStepsExceededError(SolverError):
    """More than ``options["max_steps"]`` steps (accepted plus rejected) were needed."""


class NonFiniteDerivativeError(SolverError):
    """``func`` returned inf or NaN and shrinking the step did not cure it."""


class ToleranceWarning(UserWarning):
    """A tolerance was changed to a usable value (for example ``rtol`` raised to
    100 times the machine epsilon of the state's dtype, as scipy does)."""


class GradientAccuracyWarning(UserWarning):
    """A gradient was computed but may be inaccurate beyond the tolerances (for example the
    backsolve adjoint's reconstruction of ``y`` drifted from the forward solution)."""


class TrainingError(OdeflowError, RuntimeError):
    """Training stopped because the loss (or a gradient) became non-finite; the
    last good checkpoint is left untouched."""


class ResumeError(InputError):
    """``--resume`` of a checkpoint written with other settings; the message lists
    every difference (saved -> now)."""
