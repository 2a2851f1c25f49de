"""Time series CSV loader and the shipped hare-lynx record."""
import numpy as np
import pytest

from odeflow.data import load_hare_lynx, load_series_csv
from odeflow.errors import DataFormatError, InputTypeError


def test_hare_lynx():
    s = load_hare_lynx()
    assert s.names == ("year", "hare", "lynx")
    assert s.t.dtype == np.float64 and s.values.shape == (21, 2)
    np.testing.assert_array_equal(s.t, np.arange(1900, 1921))
    np.testing.assert_array_equal(s.values[0], [30.0, 4.0])
    np.testing.assert_array_equal(s.values[-1], [24.7, 8.6])
    np.testing.assert_array_equal(s.column("lynx"), s.values[:, 1])
    assert s.column("year") is s.t
    notes = " ".join(s.comments)
    assert "Hudson's Bay Company" in notes and "MacLulich" in notes  # source kept
    with pytest.raises(KeyError, match="wolf"):
        s.column("wolf")


def write(tmp_path, text, name="series.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_parse_ok(tmp_path):
    path = write(tmp_path, "\ufeff# source: test\n\n t , x ,y\n0, 1.5, -2\n# mid comment\n"
                           "0.5,2e1,3\n\n2, 0, 0\n")
    s = load_series_csv(path)
    assert s.names == ("t", "x", "y") and s.comments == ("source: test", "mid comment")
    np.testing.assert_array_equal(s.t, [0, 0.5, 2])
    np.testing.assert_array_equal(s.values, [[1.5, -2], [20, 3], [0, 0]])
    assert s.source == str(path)
    assert load_series_csv(str(path)).names == s.names


@pytest.mark.parametrize("text, line, fragment", [
    ("t,x\n1,2\n2,3,4\n", 3, "ragged row: 3 fields"),
    ("t,x\n1,2\n2\n", 3, "ragged row: 1 fields"),
    ("# c\nt,x\n1,2\n2,abc\n", 4, "'abc' is not a finite number"),
    ("t,x\n1,2\n2,\n", 3, "'' is not a finite number"),
    ("t,x\n1,nan\n", 2, "'nan' is not a finite number"),
    ("t,x\n1,inf\n", 2, "'inf' is not a finite number"),
    ("t,x\n1,2\n3,4\n2,5\n", 4, "must increase strictly: 2 follows 3"),
    ("t,x\n1,2\n1,3\n", 3, "must increase strictly"),
    ("t\n1\n", 1, "header needs a time column"),
    ("t,,y\n1,2,3\n", 1, "empty column name"),
    ("t,x,x\n1,2,3\n", 1, "repeats a column name"),
])
def test_malformed(tmp_path, text, line, fragment):
    path = write(tmp_path, text)
    with pytest.raises(DataFormatError) as info:
        load_series_csv(path)
    msg = str(info.value)
    assert str(path) in msg and f"line {line}:" in msg and fragment in msg, msg


@pytest.mark.parametrize("text, fragment", [
    ("", "empty: no header"),
    ("# only a comment\n\n", "empty: no header"),
    ("t,x\n", "no data rows"),
])
def test_empty(tmp_path, text, fragment):
    path = write(tmp_path, text)
    with pytest.raises(DataFormatError) as info:
        load_series_csv(path)
    assert str(path) in str(info.value) and fragment in str(info.value)


def test_not_text(tmp_path):
    path = tmp_path / "binary.csv"
    path.write_bytes(b"t,x\n1,\xff\xfe\n")
    with pytest.raises(DataFormatError) as info:
        load_series_csv(path)
    assert str(path) in str(info.value) and "UTF-8" in str(info.value)


def test_bad_path_type():
    with pytest.raises(InputTypeError, match="`path`"):
        load_series_csv(3.5)
