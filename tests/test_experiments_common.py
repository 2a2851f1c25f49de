"""The shared plumbing of the experiments: atomic checkpoints and the non-finite stop."""
import numpy as np
import pytest

from odeflow.errors import InputError, TrainingError
from odeflow.experiments.common import atomic_savez, check_finite, interleaved_medians, load_npz


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


def test_interleaved_medians_times_every_job_in_turns():
    order = []
    jobs = {"a": lambda: order.append("a"), "b": lambda: order.append("b")}
    medians = interleaved_medians(jobs, 3)
    assert set(medians) == {"a", "b"} and all(m >= 0.0 for m in medians.values())
    assert order == ["a", "b"] * 4  # one warm-up call each, then three rounds in turn
    order.clear()
    interleaved_medians({"a": jobs["a"]}, 2, warm_each_turn=True)
    assert order == ["a"] * 5  # warm-up, then an untimed and a timed call per turn
    order.clear()
    interleaved_medians({"a": jobs["a"]}, 2, batch_seconds=1.0)  # a call far shorter than 1 s
    assert len(order) > 100  # is repeated within each turn
