"""The ``odeflow`` command's arguments and errors: argparse's one-line refusals (exit 2),
odeflow's own errors as one line (exit 1), ``--version``, ``--no-figures``, progress lines,
and the resume rule (other settings refused, ``--resume`` without a checkpoint says so)."""
import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest

from odeflow.cli import main

TINY_ODENET = ["train", "odenet", "--model", "resnet", "--width", "4", "--epochs", "1",
               "--batch-size", "512", "--no-progress"]
TINY_CNF = ["train", "cnf", "--task", "ml", "--sizes", "2-4-2", "--iters", "2", "--batch", "10",
            "--eval-every", "1", "--n-test", "20", "--lr-decay-iters", "2", "--no-progress"]


def run(*argv, env=None, timeout=60):
    """The real command in a fresh interpreter."""
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "odeflow.cli", *argv], capture_output=True, text=True,
                          timeout=timeout, env=full_env)


BAD_ARGUMENTS = [
    (["train", "odenet", "--epochs", "0"], "--epochs"),
    (["train", "odenet", "--batch-size", "0"], "--batch-size"),
    (["train", "odenet", "--batch-size", "-5"], "--batch-size"),
    (["train", "odenet", "--augment", "-1"], "--augment"),
    (["train", "odenet", "--lr", "nan"], "--lr"),
    (["train", "odenet", "--momentum", "1.5"], "--momentum"),
    (["train", "cnf", "--eval-every", "0"], "--eval-every"),
    (["train", "cnf", "--sizes", "2-x-2"], "--sizes"),
    (["train", "cnf", "--iters", "ten"], "--iters"),
    (["train", "cnf", "--targets", "U9"], "--targets"),
    (["train", "latent-ode", "--iterations", "0"], "--iterations"),
    (["train", "latent-ode", "--jobs", "0"], "--jobs"),
    (["train", "latent-ode", "--n-obs", "-3"], "--n-obs"),
    (["train", "latent-ode", "--grid", "shared"], "--grid"),
]


@pytest.mark.parametrize("argv, flag", BAD_ARGUMENTS, ids=[" ".join(a[1:]) for a, _ in BAD_ARGUMENTS])
def test_bad_argument_exits_2_with_one_line_naming_the_flag(argv, flag, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith(f"odeflow train {argv[1]}: error: argument {flag}"), lines
    assert "Traceback" not in "\n".join(lines)


def test_unwritable_out_is_a_bad_argument(tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "odenet", "--out", str(a_file / "sub")])
    assert exit_info.value.code == 2
    assert "argument --out" in capsys.readouterr().err


def test_real_command_bad_argument_and_version():
    proc = run("train", "odenet", "--epochs", "0")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("odeflow train odenet: error: argument --epochs")
    assert "Traceback" not in proc.stderr
    proc = run("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("odeflow 0.")


def test_odeflow_error_is_one_line_with_exit_1_and_debug_shows_the_traceback(tmp_path, capsys):
    argv = ["train", "odenet", "--data", "mnist-idx", "--out", str(tmp_path)]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("odeflow: error: dataset 'mnist-idx' needs `path`")
    from odeflow.errors import InputError
    with pytest.raises(InputError):
        main(argv + ["--debug"])


def test_no_figures_and_progress_lines_off_a_terminal(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ODEFLOW_PROGRESS_SECONDS", "0")
    argv = [a for a in TINY_CNF if a != "--no-progress"] + ["--out", str(tmp_path), "--no-figures"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "CNF 8gaussians: 2/2" in err and "test NLL: 1/1" in err  # training and evaluation
    assert not list(tmp_path.glob("*.png"))
    assert main(argv[:-1] + ["--resume"]) == 0  # the figures only
    assert "figures: 3/3" in capsys.readouterr().err
    assert len(list(tmp_path.glob("*.png"))) == 3


def test_resume_with_other_settings_is_refused_listing_them(tmp_path, capsys):
    out = ["--out", str(tmp_path)]
    assert main(TINY_ODENET + out) == 0
    capsys.readouterr()
    assert main(TINY_ODENET + out + ["--resume", "--optimizer", "adam", "--lr", "0.5"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "other settings" in err[0]
    assert "train.optimizer: 'sgd' -> 'adam'" in err[0] and "train.lr: 0.1 -> 0.5" in err[0]
    assert main(TINY_ODENET + out + ["--resume", "--width", "8"]) == 1  # a model setting
    assert "settings.width: 4 -> 8" in capsys.readouterr().err
    # a CNF checkpoint of one data set does not resume on another
    assert main(TINY_CNF + out) == 0
    capsys.readouterr()
    assert main(TINY_CNF + out + ["--resume", "--data", "moons"]) == 1
    assert "ml.data: '8gaussians' -> 'moons'" in capsys.readouterr().err
    # shortening is refused; growing is allowed
    assert main(TINY_CNF[:7] + ["1"] + TINY_CNF[8:] + out + ["--resume"]) == 1
    assert "below the 2 already done" in capsys.readouterr().err


def test_resume_without_a_checkpoint_says_it_starts_fresh(tmp_path, capsys):
    assert main(TINY_ODENET + ["--out", str(tmp_path), "--resume"]) == 0
    assert f"no checkpoint at {tmp_path / 'checkpoint.npz'}; starting fresh" in capsys.readouterr().out


@pytest.mark.parametrize("content", [b"", b"not a checkpoint\n", b"PK\x03\x04truncated", "folder"])
def test_bad_checkpoint_file_is_one_line_naming_the_path(tmp_path, capsys, content):
    path = tmp_path / "checkpoint.npz"
    if content == "folder":
        path.mkdir()
    else:
        path.write_bytes(content)
    assert main(TINY_ODENET + ["--out", str(tmp_path), "--resume"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"odeflow: error: checkpoint '{path}'")


def test_nan_learning_rate_never_writes_a_non_finite_checkpoint(tmp_path):
    """One step per epoch; the second epoch's learning rate is NaN (gamma = NaN after epoch 1), its
    step makes every weight NaN and the epoch's test loss NaN."""
    from odeflow.errors import TrainingError
    from odeflow.experiments import odenet as exp
    from odeflow.experiments.common import load_npz
    from odeflow.models.odenet import build_classifier
    data = exp.load_images("digits", dtype=np.float32)
    data = dataclasses.replace(data, x_train=data.x_train[:32], y_train=data.y_train[:32],
                               x_test=data.x_test[:16], y_test=data.y_test[:16])
    ckpt = tmp_path / "checkpoint.npz"
    config = exp.TrainConfig(epochs=1, batch_size=32, lr=0.05, gamma=float("nan"), milestones=(1,))
    exp.fit(build_classifier("resnet", 8, 4, rng=0), data, config, checkpoint=ckpt, progress=False, log=None)
    good = ckpt.read_bytes()
    poisoned = dataclasses.replace(config, epochs=2)
    with pytest.raises(TrainingError, match="epoch 2"):
        exp.fit(build_classifier("resnet", 8, 4, rng=0), data, poisoned, checkpoint=ckpt, resume=True,
                progress=False, log=None)
    for name, value in load_npz(ckpt).items():
        assert value.dtype.kind not in "fc" or np.all(np.isfinite(value)), name
    assert ckpt.read_bytes() == good


def test_latent_ode_nan_learning_rate_never_writes_a_non_finite_checkpoint(tmp_path):
    from odeflow.errors import TrainingError
    from odeflow.experiments import latent_ode as exp
    from odeflow.experiments.common import load_npz
    cfg = exp.SpiralConfig(n_obs=10, n_spirals=20, iterations=3, batch_size=4, lr_final=float("nan"))
    ckpt = tmp_path / "run.npz"
    with pytest.raises(TrainingError, match="iteration 1"):  # the step made the weights NaN
        exp.fit_spirals(cfg, quiet=True, checkpoint=ckpt, time_limit=0.0)  # a checkpoint after 1 step
    if ckpt.exists():
        for name, value in load_npz(ckpt).items():
            assert value.dtype.kind not in "fc" or np.all(np.isfinite(value)), name


def test_latent_ode_resume_of_a_finished_run_is_json_serialisable(tmp_path):
    import json

    from odeflow.experiments import latent_ode as exp
    cfg = exp.SpiralConfig(n_obs=10, n_spirals=20, iterations=2, batch_size=4)
    ckpt = tmp_path / "run.npz"
    exp.fit_spirals(cfg, quiet=True, checkpoint=ckpt)
    _, _, result = exp.fit_spirals(cfg, quiet=True, checkpoint=ckpt, resume=True)
    assert result["complete"] is True
    json.dumps(result)
