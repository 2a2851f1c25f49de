"""The checkpoint rules shared by the training commands (odeflow.experiments.checkpoint), the
NFE figure of the ODE-Net demo, and the docs-table script."""
import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from odeflow.errors import DataFormatError, ResumeError, TrainingError
from odeflow.experiments import checkpoint as ckpt
from odeflow.experiments.common import atomic_savez, load_npz

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("problem, make", [
    ("empty", lambda p: p.write_bytes(b"")),
    ("text", lambda p: p.write_text("epoch = 3\n")),
    ("truncated", lambda p: (np.savez(p, w=np.arange(1000.0)), p.write_bytes(p.read_bytes()[:300]))),
    ("folder", lambda p: p.mkdir()),
    ("missing", lambda p: None),
])
def test_bad_files_raise_data_format_error_naming_the_path(tmp_path, problem, make):
    path = tmp_path / "model.npz"
    make(path)
    with pytest.raises(DataFormatError, match=f"checkpoint '{path}'") as info:
        load_npz(path)
    assert "pickled" not in str(info.value)  # the misleading NumPy message of a text file


def test_the_write_is_synced_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1])
    atomic_savez(tmp_path / "model.npz", w=np.ones(3))
    assert events[:2] == ["fsync", "replace"]


def test_stale_temporaries_are_removed_and_others_kept(tmp_path):
    path = tmp_path / "ckpt.npz"
    stale = tmp_path / ".ckpt.npz.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    other = tmp_path / ".unrelated.tmp"
    other.write_text("")
    lines = []
    assert ckpt.begin(path, resume=True, log=lines.append) is False
    assert not stale.exists() and other.exists()
    assert lines == [f"removed {stale}, the temporary file of an interrupted checkpoint write",
                     f"--resume: no checkpoint at {path}; starting fresh"]


def test_non_finite_arrays_are_never_written(tmp_path):
    path = tmp_path / "ckpt.npz"
    ckpt.save(path, {"w": np.ones(2)}, command="t", config={}, step=1, where="epoch 1")
    before = path.read_bytes()
    with pytest.raises(TrainingError, match="`history/loss` became non-finite at epoch 2"):
        ckpt.save(path, {"w": np.ones(2), "history/loss": np.array([1.0, np.nan])}, command="t",
                  config={}, step=2, where="epoch 2")
    assert path.read_bytes() == before
    with pytest.raises(DataFormatError, match="written by `t`, not `u`"):
        ckpt.load(path, command="u")


def test_config_differences_are_listed_and_only_the_run_length_may_grow(tmp_path):
    saved = {"train": {"epochs": 2, "lr": 0.1, "optimizer": "sgd"}, "model": {"width": 4}}
    ckpt.check_config("c.npz", saved, {**saved, "train": {**saved["train"], "epochs": 5}},
                      run_length=("epochs",), done=2)
    with pytest.raises(ResumeError) as info:
        ckpt.check_config("c.npz", saved, {"train": {"epochs": 1, "lr": 0.2, "optimizer": "adam"},
                                           "model": {"width": 4}}, run_length=("epochs",), done=2)
    message = str(info.value)
    assert "train.lr: 0.1 -> 0.2" in message and "train.optimizer: 'sgd' -> 'adam'" in message
    assert "train.epochs: 1 is below the 2 already done" in message and "width" not in message


def test_optimizer_type_is_part_of_the_checkpoint(tmp_path):
    from odeflow import optim
    from odeflow.nn.module import Parameter
    p = Parameter(np.ones(2))
    arrays = ckpt.optimizer_arrays(optim.SGD([p], lr=0.1, momentum=0.9))
    with pytest.raises(DataFormatError, match="state of a SGD optimizer, not Adam"):
        ckpt.load_optimizer_arrays("c.npz", optim.Adam([p], lr=0.1), arrays)


def test_nfe_figure_shows_both_forward_curves_and_a_reference_line_through_the_points(monkeypatch):
    from odeflow.experiments import odenet_figures
    from odeflow.experiments.common import matplotlib_pyplot
    plt = matplotlib_pyplot()
    h = {"nfe_forward": [26.0, 26.0], "nfe_backward": [20.0, 21.0], "test_acc": [0.5, 0.6],
         "train_acc": [0.5, 0.6], "steps": [(26, 20), (26, 21), (32, 25)]}
    rk = dict(h, nfe_backward=[0.0, 0.0], steps=[(26, 0), (26, 0)])
    fig = odenet_figures._nfe(plt, {"odenet": h, "rknet": rk})
    left, right = fig.axes
    ode_f, ode_b, rk_f = left.lines
    np.testing.assert_array_equal(ode_f.get_ydata(), rk_f.get_ydata())  # the same curve twice...
    assert ode_f.get_markersize() > 1.5 * rk_f.get_markersize() and ode_f.get_zorder() < rk_f.get_zorder()
    (ref,) = right.lines  # ...and the reference line passes through the measured steps
    x, y = np.asarray(ref.get_xdata()), np.asarray(ref.get_ydata())
    slope = (y[1] - y[0]) / (x[1] - x[0])
    f, b = np.array([26.0, 26.0, 32.0]), np.array([20.0, 21.0, 25.0])
    assert np.max(np.abs(slope * f - b)) < 1.0
    plt.close(fig)


def _update_docs():
    spec = importlib.util.spec_from_file_location("update_docs", ROOT / "scripts" / "update_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_script_rewrites_generated_blocks_only_and_keeps_those_without_source():
    docs = _update_docs()
    text = ("intro 1.23\n<!-- generated: solvers-speed -->\nold\n<!-- end generated -->\n"
            "<!-- generated: cnf-ml -->\nkept\n<!-- end generated -->\n")
    rows = [{"problem": "lorenz", "rtol": 1e-3, "solver": "scipy RK45", "median_s": 2e-3, "nfe": 158},
            {"problem": "lorenz", "rtol": 1e-3, "solver": "odeflow dopri5 (njit func)", "median_s": 5e-5,
             "nfe": 152}]
    report = []
    new = docs.rewrite(text, {"bench-solvers": rows, "train-cnf": None}, report)
    assert new.startswith("intro 1.23\n") and "\nkept\n" in new and "\nold\n" not in new
    # columns: in place (i), njit (i), njit (pi), ...: only the pi row is in this source
    assert "| lorenz | 1e-03 | - | - | 0.050 (152) |" in new and "| 40x |" in new
    assert report == ["  solvers-speed: updated", "  cnf-ml: no docs/results/train_cnf.json (kept as it is)"]


def test_docs_script_keeps_the_indentation_of_a_table_in_a_list_and_gives_ranges_over_runs():
    docs = _update_docs()
    text = "- Speed:\n\n  <!-- generated: gradients-speed -->\n  old\n  <!-- end generated -->\n"
    runs = [[{"section": "run", "threads": "one", "load_average_1_5_15_min": [load, 1.0, 1.0],
              "date_utc": "2026-12-02 00:00"},
             {"section": "peers", "batch": 256, "width": 64, "state": 2, "mode": "backsolve", "threads": "one",
              "odeflow_s": f, "odeflow_cpu_s": f / 2, "torchdiffeq_s": 3 * f, "torchdiffeq_cpu_s": 1.5 * f,
              "torchdiffeq_over_odeflow": r, "torchdiffeq_over_odeflow_cpu": r,
              "counts": {"odeflow": {"nfe": 40}, "torchdiffeq": {"nfe": 40}}, "peers": {"torchdiffeq": "td"}}]
            for f, r, load in ((0.004, 2.5, 3.0), (0.005, 2.6, 4.0))]
    new = docs.rewrite(text, {"bench-gradients": runs}, [])
    lines = new.splitlines()
    assert lines[2] == "  <!-- generated: gradients-speed -->" and lines[-1] == "  <!-- end generated -->"
    assert lines[5] == ("  | adjoint (backsolve) | 4.0-5.0 ms / 2.0-2.5 ms (nfe 40) | 12.0-15.0 ms / 6.0-7.5 ms "
                        "(nfe 40) | **2.50-2.60x** / 2.50-2.60x | — | — |")
    assert "load average 3.0 at the start; 2026-12-02 00:00 UTC, load average 4.0" in lines[-2]


def test_docs_script_counts_the_pairs_the_cnf_wins_from_the_results():
    docs = _update_docs()
    cell = dict(kl_se=0.01, seconds=10.0)
    results = [dict(cell, target=t, kind=kind, k=k, kl=kl, nfe_forward=None if kind == "nf" else 50.0)
               for t, k, nf, cnf in (("U1", 2, 0.9, 0.7), ("U1", 8, 0.69, 0.02), ("U2", 2, 0.05, 0.1))
               for kind, kl in (("nf", nf), ("cnf", cnf))]
    text = docs.render_cnf_matching({"matching": results})
    assert "| CNF M=8 | 0.020 +- 0.010 |  |" in text
    assert "The CNF is lower in 2 of the 3 pairs; not in `U2` at `K = M = 2` (NF 0.050, CNF 0.100)." in text
    assert "NF 10-10 s, CNF 10-10 s (final NFE forward 50-50); 1 min of cell time in all." in text
    assert docs.render_cnf_matching({"ml": {}}) is None   # a run of --task ml only: the table is kept
