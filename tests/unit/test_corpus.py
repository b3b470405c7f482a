"""The corpus builder on small local files: QC, medians, vocabulary, shards, resume, parallel workers, bad input."""
import json
import threading

import anndata as ad
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp

from gc_lib.corpus import _passes as corpus_tasks
from gc_lib.corpus.builder import CorpusConfig, GeneAnnotation, build_corpus, read_corpus, shard_paths, tokenize_files
from gc_lib.corpus.qc import QCConfig
from gc_lib.corpus.shards import shard_digest
from gc_lib.corpus.tokenizer import Tokenizer, rank_rows

HUMAN = [f"ENSG{i:011d}" for i in range(1, 41)]
MOUSE = [f"ENSMUSG{i:011d}" for i in range(1, 31)]
ANNOTATION = GeneAnnotation(
    biotype=pd.Series("protein_coding", index=HUMAN + MOUSE),
    orthologs=pd.DataFrame({"mouse_id": MOUSE[:20], "human_id": HUMAN[:20], "homology_type": "one2one"}))
CONFIG = CorpusConfig(n_top=16, chunk_size=25)


def counts(n_cells, n_genes, seed):
    rng = np.random.default_rng(seed)
    dense = rng.poisson(rng.gamma(0.6, 2.0, n_genes), size=(n_cells, n_genes)).astype(np.float32)
    dense[:, 0] += 1  # no empty cells
    return dense


def write(path, matrix, genes, species, symbols=None):
    var = pd.DataFrame({"gene_symbol": symbols or [f"g{i}" for i in range(len(genes))]}, index=genes)
    obs = pd.DataFrame({"species": species, "dataset": path.stem}, index=[f"c{i}" for i in range(matrix.shape[0])])
    ad.AnnData(sp.csr_matrix(matrix), obs=obs, var=var).write_h5ad(path)
    return path


@pytest.fixture
def inputs(tmp_path):
    human = counts(60, len(HUMAN), 0)
    human[3] *= 40                      # a total-counts outlier
    human[7, :] = 0
    human[7, :4] = 1                    # only 4 expressed genes: fails "> 6 genes"
    mito_symbols = ["MT-CO1"] + [f"h{i}" for i in range(1, len(HUMAN))]
    mouse = counts(45, len(MOUSE), 1)
    return [write(tmp_path / "human_a.h5ad", human, HUMAN, "human", mito_symbols),
            write(tmp_path / "mouse_b.h5ad", mouse, MOUSE, "mouse")]


def build(inputs, out, **kw):
    return build_corpus(inputs, out, config=kw.pop("config", CONFIG), annotation=ANNOTATION, n_workers=1,
                        progress=False, **kw)


def test_qc_medians_vocabulary_and_tokens_match_direct_computation(inputs, tmp_path):
    manifest = build(inputs, tmp_path / "corpus")
    qc = {row["dataset"]: row for row in manifest["qc"]}
    assert qc["human_a"]["cells_in"] == 60 and qc["human_a"]["fail_min_genes"] == 1
    assert qc["human_a"]["fail_total_counts"] >= 1
    keep = pd.read_parquet(tmp_path / "corpus" / "qc" / "human_a.parquet")["keep"].to_numpy()
    assert not keep[3] and not keep[7]
    # medians: numpy over the kept cells' non-zero counts, per gene
    human = ad.read_h5ad(inputs[0]).X.toarray()[keep]
    tokenizer = Tokenizer.load(tmp_path / "corpus")
    tokens = tokenizer.vocab.encode(HUMAN)
    for j in range(len(HUMAN)):
        nonzero = human[:, j][human[:, j] > 0]
        if nonzero.size:
            assert tokenizer.medians[tokens[j]] == np.median(nonzero)
        else:
            assert tokens[j] == -1  # never expressed in a kept cell: not in the vocabulary
    # human and mouse genes are separate tokens; mouse tokens carry their human ortholog
    genes = tokenizer.vocab.genes
    assert set(genes["species"]) == {"human", "mouse"}
    by_id = genes.set_index("gene_id")
    present = [i for i, g in enumerate(MOUSE) if g in by_id.index]
    assert len(present) > 20
    assert [by_id.at[MOUSE[i], "human_ortholog"] for i in present] == [HUMAN[i] if i < 20 else None for i in present]
    # the shards hold exactly what the inference path gives for the kept cells, joined by row
    corpus = read_corpus(tmp_path / "corpus")
    stored = corpus[corpus["dataset"] == "human_a"].set_index("row")
    assert list(stored.index) == list(np.flatnonzero(keep))
    again = tokenizer.tokenize(ad.read_h5ad(inputs[0])).to_pandas().set_index("row")
    for row in stored.index:
        assert np.array_equal(stored.at[row, "input_ids"], again.at[row, "input_ids"])
        assert np.array_equal(stored.at[row, "values"], again.at[row, "values"])
    assert manifest["cells"] == len(corpus) and manifest["vocabulary"]["hash"] == tokenizer.vocab.hash
    assert all(len(s["sha256"]) == 64 for s in manifest["sources"])
    assert all(len(s["xxh3_128"]) == 32 for s in manifest["shards"])


@pytest.mark.parametrize("n_workers", [1, 2])
def test_medians_leave_out_every_cell_qc_drops(inputs, tmp_path, n_workers):
    # QC and the medians' histogram share one read; the cells QC drops are taken out afterwards. A gene-count rule
    # that drops about half the human cells (in runs and alone) makes every such cell matter
    human = ad.read_h5ad(inputs[0]).X.toarray()
    config = CorpusConfig(n_top=16, chunk_size=25, qc=QCConfig(min_genes=int(np.median((human > 0).sum(axis=1)))))
    build_corpus(inputs, tmp_path / "corpus", config=config, annotation=ANNOTATION, n_workers=n_workers,
                 progress=False)
    keep = pd.read_parquet(tmp_path / "corpus" / "qc" / "human_a.parquet")["keep"].to_numpy()
    assert 0.3 < (~keep).mean() < 0.7
    tokenizer = Tokenizer.load(tmp_path / "corpus")
    tokens = tokenizer.vocab.encode(HUMAN)
    differs = 0
    for j in range(len(HUMAN)):
        kept, every = human[keep, j], human[:, j]
        if (kept > 0).any():
            assert tokenizer.medians[tokens[j]] == np.median(kept[kept > 0])
            differs += np.median(kept[kept > 0]) != np.median(every[every > 0])
    assert differs >= 5  # the dropped cells would have moved these medians


def test_two_worker_processes_give_identical_shards(inputs, tmp_path):
    one = build(inputs, tmp_path / "one")
    two = build_corpus(inputs, tmp_path / "two", config=CONFIG, annotation=ANNOTATION, n_workers=2, progress=False)
    assert [s["xxh3_128"] for s in one["shards"]] == [s["xxh3_128"] for s in two["shards"]]
    assert len(one["shards"]) == 5  # 60 + 45 cells in chunks of 25


# threads=3 over 5 shards: three tasks at once, one thread each; threads=4 over 2 shards (one per input): two tasks at
# once, each pipelining its pieces over two threads (_schedule.task_threads)
@pytest.mark.parametrize(("threads", "chunk_size"), [(1, 25), (3, 25), (4, 100)])
def test_shards_written_piece_by_piece_hold_the_same_cells(inputs, tmp_path, monkeypatch, threads, chunk_size):
    config = CorpusConfig(n_top=16, chunk_size=chunk_size)
    whole = build(inputs, tmp_path / "whole", config=config)  # each chunk in one piece
    monkeypatch.setattr(corpus_tasks, "PIECE_CELLS", 7)  # read, ranked and appended 7 cells at a time
    pieces = build(inputs, tmp_path / "pieces", config=CorpusConfig(n_top=16, chunk_size=chunk_size, threads=threads))
    assert [(s["cells"], s["tokens"]) for s in pieces["shards"]] == [(s["cells"], s["tokens"]) for s in whole["shards"]]
    pd.testing.assert_frame_equal(read_corpus(tmp_path / "pieces"), read_corpus(tmp_path / "whole"))
    # the digest taken while writing is the finished file's
    assert [s["xxh3_128"] for s in pieces["shards"]] == [shard_digest(p) for p in shard_paths(tmp_path / "pieces")]


@pytest.mark.parametrize("threads", [1, 3])
def test_a_failing_piece_stops_the_task_and_leaves_no_shard(inputs, tmp_path, monkeypatch, threads):
    monkeypatch.setattr(corpus_tasks, "PIECE_CELLS", 7)

    def rank_or_fail(counts, *args, row_offset, **kwargs):
        if row_offset == 14:  # the third of the chunk's four pieces
            raise RuntimeError("piece failed")
        return rank_rows(counts, *args, row_offset=row_offset, **kwargs)

    monkeypatch.setattr(corpus_tasks, "rank_rows", rank_or_fail)
    options = {"n_top": 16, "library_size": None, "n_tokens": 44, "species": "human", "dataset": "h",
               "compression": "none", "threads": threads}
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(RuntimeError, match="piece failed"):
        corpus_tasks.tokenize_task(str(inputs[0]), 0, 25, np.ones(25, bool), np.arange(4, 44, dtype=np.int32),
                                   np.ones(40), options, str(out / "h-0.parquet"))
    assert not list(out.iterdir())  # no shard, no temporary


def test_threads_of_one_process_write_shards_at_once(inputs, tmp_path, monkeypatch):
    build(inputs, tmp_path / "corpus")
    tokenizer = Tokenizer.load(tmp_path / "corpus")
    both_running = threading.Barrier(2, timeout=20)  # broken (an error) unless two tasks run at the same time
    tokenize_task = corpus_tasks.tokenize_task

    def meet_then_tokenize(*args):
        both_running.wait()
        return tokenize_task(*args)

    monkeypatch.setattr(corpus_tasks, "tokenize_task", meet_then_tokenize)
    manifest = tokenize_files([inputs[0]], tmp_path / "new", tokenizer, chunk_size=30, threads=2, n_workers=1,
                              progress=False)
    assert [s["cells"] for s in manifest["shards"]] == [30, 30]


def test_threads_and_arrow_shards_give_the_same_cells(inputs, tmp_path):
    parquet = build(inputs, tmp_path / "parquet")
    threaded = build(inputs, tmp_path / "threads", config=CorpusConfig(n_top=16, chunk_size=25, threads=3))
    assert [s["xxh3_128"] for s in threaded["shards"]] == [s["xxh3_128"] for s in parquet["shards"]]
    arrow = build(inputs, tmp_path / "arrow", config=CorpusConfig(n_top=16, chunk_size=25, shard_format="arrow"))
    assert [p.suffix for p in shard_paths(tmp_path / "arrow")] == [".arrow"] * len(parquet["shards"])
    assert arrow["tokens"] == parquet["tokens"]
    pd.testing.assert_frame_equal(read_corpus(tmp_path / "arrow"), read_corpus(tmp_path / "parquet"))
    with pytest.raises(ValueError, match="unknown shard format 'csv'"):
        CorpusConfig(shard_format="csv")
    with pytest.raises(ValueError, match="Arrow IPC shards take compression"):
        CorpusConfig(shard_format="arrow", compression="snappy")
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        CorpusConfig(threads=0)


def test_interrupted_build_resumes_and_rebuilds_only_what_is_missing(inputs, tmp_path):
    out = tmp_path / "corpus"
    first = build(inputs, out)
    shards = shard_paths(out)
    kept_mtime = shards[0].stat().st_mtime_ns
    (out / "manifest.json").unlink()        # as if killed before the end ...
    shards[-1].unlink()                     # ... with one shard unwritten
    debris = out / "shards" / ".human_a-0000000050.parquet.k3j9.tmp"   # and a half-written temporary
    debris.mkdir()
    (debris / "human_a-0000000050.parquet").write_bytes(b"partial")
    second = build(inputs, out)
    assert shards[0].stat().st_mtime_ns == kept_mtime
    assert [s["xxh3_128"] for s in second["shards"]] == [s["xxh3_128"] for s in first["shards"]]
    assert not debris.exists()
    # a finished corpus is returned as it is
    assert build(inputs, out)["created"] == second["created"]


def test_other_parameters_refuse_to_mix_unless_forced(inputs, tmp_path):
    out = tmp_path / "corpus"
    build(inputs, out)
    other = CorpusConfig(n_top=8, chunk_size=25)
    with pytest.raises(ValueError, match="other inputs or parameters"):
        build(inputs, out, config=other)
    rebuilt = build(inputs, out, config=other, force=True)
    assert rebuilt["parameters"]["n_top"] == 8
    lengths = pq.read_table(shard_paths(out)[0], columns=["length"])["length"].to_numpy()
    assert lengths.max() == 8


def test_library_size_option_changes_values(inputs, tmp_path):
    plain = build(inputs, tmp_path / "plain")
    scaled = build(inputs, tmp_path / "scaled", config=CorpusConfig(n_top=16, chunk_size=25, library_size=1e4))
    assert plain["parameters"]["library_size"] is None and scaled["parameters"]["library_size"] == 1e4
    a, b = read_corpus(tmp_path / "plain"), read_corpus(tmp_path / "scaled")
    assert not all(np.array_equal(x, y) for x, y in zip(a["values"], b["values"]))


def test_tokenize_files_for_inference(inputs, tmp_path):
    build(inputs, tmp_path / "corpus")
    tokenizer = Tokenizer.load(tmp_path / "corpus")
    manifest = tokenize_files([inputs[1]], tmp_path / "new", tokenizer, chunk_size=20, n_workers=1, progress=False)
    assert manifest["cells"] == 45 and manifest["vocabulary_hash"] == tokenizer.vocab.hash
    with pytest.raises(ValueError, match="not empty"):
        tokenize_files([inputs[1]], tmp_path / "new", tokenizer, n_workers=1, progress=False)


def _bad(tmp_path, kind):
    matrix = counts(10, len(HUMAN), 3)
    genes, species = list(HUMAN), "human"
    if kind == "non-integer":
        matrix[2, 1] = 0.5
    elif kind == "negative":
        matrix[2, 1] = -1
    elif kind == "NaN":
        matrix[2, 1] = np.nan
    elif kind == "empty cell":
        matrix[4] = 0
    elif kind == "no gene IDs":
        genes = [f"GENE{i}" for i in range(len(HUMAN))]
    elif kind == "duplicated genes":
        genes[5] = genes[4]
    elif kind == "unknown species":
        species = "zebrafish"
    path = tmp_path / "bad.h5ad"
    if kind == "empty file":
        path.write_bytes(b"")
        return path
    if kind == "no cells":
        matrix = matrix[:0]
    return write(path, matrix, genes, species)


@pytest.mark.parametrize("kind, message", [
    ("non-integer", "non-negative integer counts"), ("negative", "non-negative integer counts"),
    ("NaN", "non-negative integer counts"), ("empty cell", "empty cells"), ("no gene IDs", "not Ensembl gene IDs"),
    ("duplicated genes", "duplicated genes"), ("unknown species", "obs\\['species'\\]"),
    ("empty file", "empty file"), ("no cells", "no cells"),
])
def test_bad_input_is_named_and_leaves_no_output(tmp_path, kind, message):
    bad = _bad(tmp_path, kind)
    with pytest.raises(ValueError, match=message):
        build([bad], tmp_path / "corpus")
    assert not (tmp_path / "corpus").exists()


def test_bad_input_never_replaces_a_finished_corpus(inputs, tmp_path):
    out = tmp_path / "corpus"
    before = json.loads(json.dumps(build(inputs, out)))
    with pytest.raises(ValueError):
        build([_bad(tmp_path, "NaN")], out, force=True)
    assert json.loads((out / "manifest.json").read_text()) == before


def test_zarr_input_gives_the_same_corpus_as_h5ad(inputs, tmp_path, monkeypatch):
    zarr_path = tmp_path / "zarr" / "human_a.zarr"
    ad.read_h5ad(inputs[0]).write_zarr(zarr_path)
    from_h5ad = build([inputs[0]], tmp_path / "a")
    from_zarr = build([zarr_path], tmp_path / "b")
    assert [s["xxh3_128"] for s in from_h5ad["shards"]] == [s["xxh3_128"] for s in from_zarr["shards"]]
    monkeypatch.setattr(corpus_tasks, "PIECE_CELLS", 7)  # pieces of 7 cells (row groups of 7: other files) ...
    one = build([inputs[0]], tmp_path / "c")
    threaded = build([zarr_path], tmp_path / "d", config=CorpusConfig(n_top=16, chunk_size=25, threads=3))
    assert [s["xxh3_128"] for s in threaded["shards"]] == [s["xxh3_128"] for s in one["shards"]]  # ... read in threads


# --- extra genes: tokens that no kept cell expresses ------------------------------------------------------

NEW_HUMAN, NEW_MOUSE = "ENSG00000000100", "ENSMUSG00000000100"  # in no input


def extra_table(rows):
    return pd.DataFrame(rows, columns=["gene_id", "species", "symbol"])


@pytest.fixture
def silent_gene_inputs(tmp_path, inputs):
    """The human input with its last gene never counted (so in the file but expressed by no cell), and the mouse one."""
    human = counts(60, len(HUMAN), 0)
    human[:, -1] = 0
    return [write(tmp_path / "human_z.h5ad", human, HUMAN, "human"), inputs[1]]


def test_extra_genes_become_tokens_with_the_species_median_of_medians(silent_gene_inputs, tmp_path):
    plain = build(silent_gene_inputs, tmp_path / "plain")
    extra = extra_table([(NEW_HUMAN + ".3", "human", "NEWH"), (HUMAN[-1], "human", "SILENT"),
                         (HUMAN[0], "human", "RENAMED"), (NEW_MOUSE, "mouse", None)])
    manifest = build(silent_gene_inputs, tmp_path / "extra", extra_genes=extra)
    before, after = Tokenizer.load(tmp_path / "plain"), Tokenizer.load(tmp_path / "extra")
    assert plain["extra_genes"] is None and before.vocab.encode([NEW_HUMAN, HUMAN[-1], NEW_MOUSE]).tolist() == [-1] * 3
    # the rule: each species' median of its expressed genes' medians (the plain build's gene tokens)
    genes = before.vocab.genes
    rule = {s: float(np.median(before.medians[genes.index[genes["species"] == s]])) for s in ("human", "mouse")}
    tokens = after.vocab.encode([NEW_HUMAN, HUMAN[-1], NEW_MOUSE])
    assert (tokens >= 0).all()
    assert after.medians[tokens].tolist() == [rule["human"], rule["human"], rule["mouse"]]
    assert after.vocab.decode(tokens) == ["NEWH", "SILENT", NEW_MOUSE]  # a missing symbol falls back to the ID
    # an expressed gene is not added again: one token, its measured median and the input's symbol
    assert len(after.vocab) == len(before.vocab) + 3 and after.vocab.genes["gene_id"].is_unique
    first = after.vocab.encode(HUMAN[:1])[0]
    assert after.medians[first] == before.medians[before.vocab.encode(HUMAN[:1])[0]]
    assert after.vocab.decode([first]) == ["g0"]
    # reports: per species counts and n_nonzero 0; medians.parquet flags the extra tokens
    per_species = manifest["extra_genes"]["per_species"]
    assert per_species["human"] == {"given": 3, "already_expressed": 1, "added": 2, "left_out": 0,
                                    "median": rule["human"], "n_nonzero": 0}
    assert per_species["mouse"] == {"given": 1, "already_expressed": 0, "added": 1, "left_out": 0,
                                    "median": rule["mouse"], "n_nonzero": 0}
    assert manifest["medians_by_rule"] == 3 and manifest["vocabulary"]["tokens"] == len(after.vocab)
    stats = pd.read_parquet(tmp_path / "extra" / "medians.parquet").set_index("gene_id")
    assert stats.loc[[NEW_HUMAN, HUMAN[-1], NEW_MOUSE], "n_nonzero"].tolist() == [0, 0, 0]
    assert stats["extra"].sum() == 3 and stats.loc[[NEW_HUMAN, HUMAN[-1], NEW_MOUSE], "extra"].all()
    report = pd.read_parquet(tmp_path / "extra" / "genes_report.parquet").set_index("dataset")
    dropped_before = {r["dataset"]: r["dropped_not_expressed"] for r in plain["genes"]}["human_z"]
    assert report.loc["human_z", "extra_not_expressed"] == 1
    assert report.loc["human_z", "dropped_not_expressed"] == dropped_before - 1
    # the cells hold the same genes; an inserted extra gene is tokenised like any other
    decode = [lambda ids, t=t: t.vocab.decode(ids, symbols=False) for t in (before, after)]
    a, b = read_corpus(tmp_path / "plain"), read_corpus(tmp_path / "extra")
    assert [decode[0](x) for x in a["input_ids"]] == [decode[1](x) for x in b["input_ids"]]
    cell = ad.read_h5ad(silent_gene_inputs[0])[:1].copy()
    dense = cell.X.toarray()
    dense[0, -1] = 1000  # insert the silent gene
    cell.X = sp.csr_matrix(dense)
    inserted = after.tokenize(cell).to_pandas()
    assert after.vocab.encode([HUMAN[-1]])[0] == inserted.at[0, "input_ids"][0]  # top gene: 1000 counts, mid median


def test_extra_genes_enter_the_build_key(inputs, tmp_path):
    out = tmp_path / "corpus"
    build(inputs, out)
    assert "extra_genes" not in json.loads((out / "build.json").read_text())
    extra = extra_table([(NEW_HUMAN, "human", "NEWH"), (NEW_MOUSE, "mouse", "Newm")])
    with pytest.raises(ValueError, match="other inputs or parameters"):
        build(inputs, out, extra_genes=extra)
    first = build(inputs, out, extra_genes=extra, force=True)
    assert json.loads((out / "build.json").read_text())["extra_genes"]["genes"] == 2
    assert build(inputs, out, extra_genes=extra.iloc[::-1])["created"] == first["created"]  # row order: same key
    with pytest.raises(ValueError, match="other inputs or parameters"):
        build(inputs, out, extra_genes=extra.iloc[:1])


def test_extra_genes_of_a_species_without_cells_are_left_out(inputs, tmp_path):
    extra = extra_table([(NEW_HUMAN, "human", "NEWH"), (NEW_MOUSE, "mouse", "Newm")])
    manifest = build(inputs[:1], tmp_path / "corpus", extra_genes=extra)
    assert manifest["extra_genes"]["per_species"]["mouse"] == {
        "given": 1, "already_expressed": 0, "added": 0, "left_out": 1, "median": None, "n_nonzero": 0}
    assert manifest["extra_genes"]["per_species"]["human"]["added"] == 1
    tokens = Tokenizer.load(tmp_path / "corpus").vocab.encode([NEW_HUMAN, NEW_MOUSE])
    assert tokens[0] >= 0 and tokens[1] == -1


@pytest.mark.parametrize("extra, message", [
    (pd.DataFrame({"gene_id": [NEW_HUMAN], "species": ["human"]}), "lacks columns \\['symbol'\\]"),
    (extra_table([(NEW_HUMAN, "zebrafish", "x")]), "unknown species"),
    (extra_table([(NEW_MOUSE, "human", "x")]), "not Ensembl gene IDs of their species"),
    (extra_table([("NR5A1", "human", "NR5A1")]), "not Ensembl gene IDs of their species"),
    ([NEW_HUMAN], "must be a DataFrame"),
])
def test_bad_extra_genes_are_named_and_leave_no_output(inputs, tmp_path, extra, message):
    with pytest.raises(ValueError, match=message):
        build(inputs, tmp_path / "corpus", extra_genes=extra)
    assert not (tmp_path / "corpus").exists()
