"""The experiments behind ``odeflow demo`` and ``odeflow train``.

One module per experiment, each with the same small interface:

``demo(out_dir, quick) -> dict``
    A short run for ``odeflow demo``: prints its results, writes its figures
    under ``out_dir`` and returns a summary (JSON-serialisable).
``add_arguments(parser)`` and ``train(args) -> int`` (optional)
    The full run behind ``odeflow train NAME``.

Plots use matplotlib, progress bars tqdm, argument parsing argparse; the
shared plumbing (atomic checkpoints, progress bars, figures) is in
:mod:`odeflow.experiments.common`.
"""

# run by `odeflow demo` in this order; a module that does not exist yet is skipped
EXPERIMENTS = ("solvers", "odenet", "cnf", "latent_ode")
