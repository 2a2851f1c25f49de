"""The repository's promises: two README commands, CI runs the second verbatim, the demo runs."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands():
    return re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text())


def test_readme_starts_with_exactly_two_commands():
    commands = _readme_commands()
    assert len(commands) == 2
    assert "odeflow demo" in commands[0] and "pytest" in commands[1]


def test_ci_runs_the_readme_test_command_verbatim():
    assert _readme_commands()[1] in (ROOT / ".ci" / "run").read_text().splitlines()


def test_demo_quick_runs_end_to_end(tmp_path, capsys):
    from odeflow.cli import main
    assert main(["demo", "--quick", "--only", "solvers", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"accepted steps\s+217\s+217", out)
    assert (tmp_path / "summary.json").exists() and (tmp_path / "solvers" / "arenstorf.png").exists()


def test_readme_python_examples_run():
    source = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.+?)```", source, re.S)
    assert len(blocks) >= 2
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


def test_subpackages_are_reachable_as_attributes():
    import odeflow
    assert odeflow.errors.InputError is odeflow.InputError
    assert hasattr(odeflow.nn, "MLP")
