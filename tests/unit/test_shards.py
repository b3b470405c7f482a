"""Shard files (gc_lib.corpus.shards): Parquet and Arrow IPC hold the same cells in the same groups, the pretraining
loader reads either alike, bad names and codecs are refused, and shard digests keep old corpora's identity."""
import hashlib
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gc_lib.corpus import shards as shard_files
from gc_lib.corpus.shards import Shard, read_shard, shard_digest, write_shard
from gc_lib.corpus.tokenizer import SHARD_SCHEMA, TokenizedCells
from gc_lib.model.data_loader import PretrainDataset
from gc_lib.model.pretrain import corpus_hash


def cells_table(n_cells: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 30, n_cells).astype(np.int32)
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int32)
    cells = TokenizedCells(rng.integers(4, 60, offsets[-1]).astype(np.int32),
                           rng.random(offsets[-1]).astype(np.float32), offsets, np.arange(n_cells) * 3)
    return cells.to_table("mouse", "ds")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """The same 600 cells as a Parquet and as an Arrow IPC shard."""
    table = cells_table(2 * shard_files.ROW_GROUP_CELLS + 88)
    folder = tmp_path_factory.mktemp("shards")
    return table, {fmt: write_shard(table, folder / f"part-0.{fmt}") for fmt in ("parquet", "arrow")}


def test_both_formats_hold_the_same_cells_in_the_same_groups(shards):
    table, paths = shards
    for path in paths.values():
        shard = Shard(path)
        assert shard.num_groups == 3
        groups = [shard.read_group(g) for g in range(3)]
        assert [g.num_rows for g in groups] == [shard_files.ROW_GROUP_CELLS, shard_files.ROW_GROUP_CELLS, 88]
        assert pa.concat_tables(groups).equals(table)
        assert shard.read().schema == SHARD_SCHEMA and read_shard(path).equals(table)
        assert shard.read_group(1, ["row", "length"]).column_names == ["row", "length"]
        batches = list(shard.iter_batches(100, ["input_ids", "row"]))
        assert max(b.num_rows for b in batches) == 100 and sum(b.num_rows for b in batches) == 600
        assert pa.Table.from_batches(batches).equals(table.select(["input_ids", "row"]))
    groups = pq.ParquetFile(paths["parquet"]).metadata.row_group(0)
    with_statistics = {groups.column(i).path_in_schema: groups.column(i).is_stats_set for i in range(6)}
    assert with_statistics == {"input_ids.list.element": False, "values.list.element": False, "length": True,
                               "species": True, "dataset": True, "row": True}  # the scalar columns' only


def test_the_loader_reads_either_format_alike(shards):
    _, paths = shards
    options = {"batch_size": 32, "eval_fraction": 0.2, "max_genes": 20, "seed": 4}
    reads = {}
    for fmt, path in paths.items():
        reads[fmt] = [[(c["row"], c["input_ids"].tolist(), c["values"].tolist()) for c in batch.cells]
                      for batch in PretrainDataset([path], **options)]
    assert reads["parquet"] == reads["arrow"] and sum(map(len, reads["arrow"])) > 400


def test_names_and_codecs_are_checked(tmp_path):
    assert shard_files.shard_format("a/b-0000.arrow") == "arrow" and shard_files.shard_format("x.parquet") == "parquet"
    with pytest.raises(ValueError, match="not a shard file"):
        shard_files.shard_format(tmp_path / "cells.csv")
    with pytest.raises(ValueError, match="Arrow IPC shards take compression"):
        write_shard(cells_table(5), tmp_path / "x.arrow", compression="snappy")
    assert not list(tmp_path.iterdir())  # nothing written
    compressed = write_shard(cells_table(300), tmp_path / "z.arrow", compression="zstd")
    assert read_shard(compressed).equals(cells_table(300))


def test_digests_and_old_manifests_keep_their_identity(shards, tmp_path):
    _, paths = shards
    digest = shard_digest(paths["arrow"])
    assert len(digest) == 32 and digest == shard_digest(paths["arrow"]) != shard_digest(paths["parquet"])
    assert shard_files.manifest_digest({"file": "a", "xxh3_128": digest}) == f"xxh3_128:{digest}"
    # a corpus written before xxh3 (sha256 per shard) keeps the hash its runs were keyed on
    old = {"vocabulary": {"hash": "v1"}, "shards": [{"file": "a.parquet", "sha256": "ab" * 32}]}
    (tmp_path / "manifest.json").write_text(json.dumps(old))
    payload = {"vocabulary": "v1", "shards": [["a.parquet", "ab" * 32]]}
    assert corpus_hash(tmp_path) == hashlib.sha256(json.dumps(payload, separators=(",", ":")).encode()).hexdigest()


@pytest.mark.parametrize("name, compression", [("a.parquet", "none"), ("b.parquet", "zstd"), ("c.arrow", "none"),
                                               ("d.arrow", "lz4")])
def test_the_digest_taken_while_writing_is_the_finished_files(tmp_path, name, compression):
    with shard_files.shard_writer(tmp_path / name, SHARD_SCHEMA, compression=compression) as shard:
        for seed in range(3):  # appended in pieces, as the tokenising task does
            shard.write(cells_table(300, seed))
        assert shard.digest is None  # not before the file is finished
    assert shard.digest == shard_digest(tmp_path / name)
    assert read_shard(tmp_path / name).num_rows == 900
