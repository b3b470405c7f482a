import os
import stat

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


def test_the_writer_creates_the_temporary_file_under_the_real_name(tmp_path):
    """No file is made in advance for the writer to truncate (ext4 flushes a truncated file on close)."""
    dest = tmp_path / "shard.arrow"
    with atomic_path(dest) as tmp:
        assert tmp.name == dest.name and tmp.parent.parent == tmp_path and not tmp.exists()
        tmp.write_bytes(b"data")
    assert dest.read_bytes() == b"data" and list(tmp_path.iterdir()) == [dest]


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


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_and_directories_get_the_umask_permissions(tmp_path, umask):
    """mkstemp/mkdtemp make private temporaries (0600/0700); the published names must not inherit that."""
    from gc_lib.core.atomic import current_umask

    old = os.umask(umask)
    try:
        assert current_umask() == umask
        write_json({"a": 1}, tmp_path / "m.json")
        write_parquet(pd.DataFrame({"n": [1]}), tmp_path / "t.parquet")
        with atomic_path(tmp_path / "store", is_dir=True) as tmp:
            (tmp / "inner").write_text("x")
    finally:
        os.umask(old)
    for name in ("m.json", "t.parquet", "store/inner"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask, name
    assert stat.S_IMODE((tmp_path / "store").stat().st_mode) == 0o777 & ~umask
