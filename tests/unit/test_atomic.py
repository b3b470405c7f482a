import pandas as pd
import pytest

from gc_lib.core.atomic import atomic_path, write_json, write_parquet


def test_failed_write_leaves_no_file(tmp_path):
    dest = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert not dest.exists() and list(tmp_path.iterdir()) == []


def test_failed_directory_write_keeps_the_old_one(tmp_path):
    dest = tmp_path / "store"
    dest.mkdir()
    (dest / "old").write_text("complete")
    with pytest.raises(RuntimeError):
        with atomic_path(dest, is_dir=True) as tmp:
            (tmp / "new").write_text("partial")
            raise RuntimeError
    assert [p.name for p in dest.iterdir()] == ["old"]
    assert [p.name for p in tmp_path.iterdir()] == ["store"]


def test_json_and_parquet_round_trip(tmp_path):
    write_json({"a": 1}, tmp_path / "m.json")
    assert (tmp_path / "m.json").read_text().strip() == '{\n  "a": 1\n}'
    df = pd.DataFrame({"gene": ["ENSG1", "ENSG2"], "n": [1, 2]})
    write_parquet(df, tmp_path / "t.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "t.parquet"), df)
