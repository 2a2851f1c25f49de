"""The shared plumbing of the experiments: atomic checkpoints and the non-finite stop."""
import numpy as np
import pytest

from odeflow.errors import InputError, TrainingError
from odeflow.experiments.common import atomic_savez, check_finite, load_npz


def test_atomic_savez_round_trip_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "ckpt" / "model.npz"
    atomic_savez(path, w=np.arange(3.0), epoch=np.array(2))
    atomic_savez(path, w=np.arange(4.0), epoch=np.array(3))  # replaces, never appends
    data = load_npz(path)
    np.testing.assert_array_equal(data["w"], np.arange(4.0))
    assert int(data["epoch"]) == 3
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.npz"]


def test_atomic_savez_failure_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    atomic_savez(path, w=np.ones(2))

    def interrupted(f, **arrays):
        f.write(b"half a checkpoint")
        raise OSError("disk full")
    monkeypatch.setattr(np, "savez", interrupted)
    with pytest.raises(OSError, match="disk full"):
        atomic_savez(path, w=np.zeros(2))
    monkeypatch.undo()
    np.testing.assert_array_equal(load_npz(path)["w"], np.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]


def test_atomic_savez_refuses_object_arrays(tmp_path):
    with pytest.raises(InputError, match=r"`w` has dtype object"):
        atomic_savez(tmp_path / "m.npz", w=np.array([object()], dtype=object))


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_check_finite_stops_on_non_finite_values(value):
    with pytest.raises(TrainingError, match=r"loss became (nan|inf|-inf) at step 7"):
        check_finite(value, "loss", 7)
    assert check_finite(1.5, "loss", 7) == 1.5
