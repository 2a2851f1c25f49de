"""The experiments behind ``odeflow demo`` and ``odeflow train``.

One entry module per experiment (``solvers``, ``odenet``, ``cnf``,
``latent_ode``), each with the same small interface:

``demo(out_dir, quick) -> dict``
    A short run for ``odeflow demo``: prints its results, writes its figures
    under ``out_dir`` and returns a summary (JSON-serialisable).
``add_arguments(parser)`` and ``train(args) -> int`` (optional)
    The full run behind ``odeflow train NAME``.

Each entry module keeps only the demo and the command; its training loop,
scores and figures live in ``NAME_fit`` / ``NAME_ml`` / ``NAME_matching`` /
``NAME_memory`` and ``NAME_figures`` next to it. Shared plumbing:
:mod:`~odeflow.experiments.checkpoint` (the one checkpoint format, write rule
and resume rule of the three training commands),
:mod:`~odeflow.experiments.argtypes` (argparse types of the numeric flags),
:mod:`~odeflow.experiments.common` (progress, figures, schedules, timing).
Plots use matplotlib, progress bars tqdm, argument parsing argparse.
"""

# run by `odeflow demo` in this order; a module that does not exist yet is skipped
EXPERIMENTS = ("solvers", "odenet", "cnf", "latent_ode")
