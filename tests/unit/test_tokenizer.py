"""The tokenizer (gc_lib.corpus.tokenizer): each cell's top-N genes against an independent numpy reference (property
tests), column-order invariance, genes outside the vocabulary or of the other species, the Parquet shard round
trip, input and construction errors, and Tokenizer.save/load."""
import json

import anndata as ad
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from gc_lib.corpus.shards import write_shard
from gc_lib.corpus.tokenizer import SHARD_SCHEMA, Tokenizer
from gc_lib.corpus.vocab import build_vocabulary

N_SPECIAL = 4
PROPERTY = settings(max_examples=50, deadline=None)


def hid(i):
    return f"ENSG{i:011d}"


def mid(i):
    return f"ENSMUSG{i:011d}"


def make_vocab(human, mouse=()):
    ids = [*human, *mouse]
    return build_vocabulary(pd.DataFrame({"gene_id": ids, "species": ["human"] * len(human) + ["mouse"] * len(mouse),
                                          "symbol": [f"S{g[-6:]}" for g in ids]}))


def make_adata(counts, genes, species="human"):
    counts = np.asarray(counts, dtype=np.float32)
    var = pd.DataFrame({"gene_symbol": [f"S{g[-6:]}" for g in genes]}, index=pd.Index(list(genes)))
    obs = pd.DataFrame({"species": [species] * counts.shape[0]}, index=[f"c{i}" for i in range(counts.shape[0])])
    return ad.AnnData(sp.csr_matrix(counts), obs=obs, var=var)


def expected_cells(counts, col_token, col_median, n_top, library_size):
    """Reference ranking, independent of the kernel: ratio descending, then token id ascending."""
    cells = []
    for row in np.asarray(counts, dtype=np.float64):
        scale = library_size / row.sum() if library_size else 1.0
        use = (col_token >= 0) & (row > 0)
        tokens, ratio = col_token[use], (row[use] * scale / col_median[use]).astype(np.float32)
        order = np.lexsort((tokens, -ratio))[:n_top]
        cells.append((tokens[order], np.log2(1 + ratio[order].astype(np.float64)).astype(np.float32), use.sum()))
    return cells


@st.composite
def cases(draw):
    """A count matrix with ties and genes outside the vocabulary, a vocabulary with mouse genes, medians, n_top."""
    n_cells, n_genes = draw(st.integers(1, 30)), draw(st.integers(1, 40))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    small = rng.integers(1, 4, size=(n_cells, n_genes))      # repeated counts: ties
    large = rng.integers(1, 10_000, size=(n_cells, n_genes))
    counts = np.where(rng.random((n_cells, n_genes)) < draw(st.sampled_from([0.0, 0.5, 1.0])), small, large)
    counts = counts * (rng.random((n_cells, n_genes)) < draw(st.sampled_from([0.2, 0.5, 0.9])))
    counts[counts.sum(axis=1) == 0, rng.integers(n_genes)] = 1  # no empty cells
    numbers = rng.permutation(np.arange(1, n_genes + 1) * 3)     # column order unrelated to token order
    genes = [hid(i) for i in numbers]
    in_vocab = rng.random(n_genes) < draw(st.sampled_from([0.7, 1.0]))
    vocab_human = [g for g, k in zip(genes, in_vocab) if k] + [hid(i) for i in (1, 2, 500)]
    vocab = make_vocab(vocab_human, [mid(i) for i in numbers[:5]])
    equal = draw(st.booleans())  # equal medians (ties) or spread ones
    medians = rng.choice([1.0, 2.0], len(vocab)) if equal else np.exp(rng.uniform(-4, 6, len(vocab)))
    medians[:N_SPECIAL] = np.nan
    sorted_human = sorted(vocab_human)
    col_token = np.array([N_SPECIAL + sorted_human.index(g) if k else -1 for g, k in zip(genes, in_vocab)])
    n_top = draw(st.integers(1, n_genes + 2))
    return counts, genes, vocab, medians, col_token, n_top, draw(st.sampled_from([None, 1e4]))


@PROPERTY
@given(case=cases())
def test_top_genes_match_numpy_reference(case):
    counts, genes, vocab, medians, col_token, n_top, library_size = case
    table = Tokenizer(vocab, medians, n_top=n_top, library_size=library_size).tokenize(make_adata(counts, genes))
    assert table.schema == SHARD_SCHEMA and table.num_rows == len(counts)
    col_median = np.where(col_token >= 0, medians[np.maximum(col_token, 0)], np.nan)
    expected = expected_cells(counts, col_token, col_median, n_top, library_size)
    out = table.to_pydict()
    for r, (ids, values, n_expressed) in enumerate(expected):
        np.testing.assert_array_equal(out["input_ids"][r], ids)
        np.testing.assert_allclose(np.asarray(out["values"][r], dtype=np.float32), values, rtol=1e-6)
        assert out["length"][r] == min(n_expressed, n_top) == len(ids)
    assert out["species"] == [0] * len(counts)
    assert out["row"] == list(range(len(counts)))
    assert out["dataset"] == ["adata"] * len(counts)


@settings(max_examples=30, deadline=None)
@given(case=cases(), seed=st.integers(0, 2**32 - 1))
def test_column_order_does_not_matter(case, seed):
    counts, genes, vocab, medians, _, n_top, library_size = case
    tokenizer = Tokenizer(vocab, medians, n_top=n_top, library_size=library_size)
    adata = make_adata(counts, genes)
    perm = np.random.default_rng(seed).permutation(len(genes))
    assert tokenizer.tokenize(adata[:, perm].copy()).equals(tokenizer.tokenize(adata))


def test_ties_break_by_token_id():
    vocab = make_vocab([hid(i) for i in (1, 2, 3, 4)])
    adata = make_adata([[5, 5, 4, 10]], [hid(4), hid(3), hid(1), hid(2)])  # tokens 7, 6, 4, 5
    medians = np.r_[[np.nan] * 4, 1.0, 2.0, 1.0, 1.0]  # token 5: 10 / 2 ties with 5 / 1
    out = Tokenizer(vocab, medians, n_top=3).tokenize(adata).to_pydict()
    assert out["input_ids"] == [[5, 6, 7]]  # ratio 5 by token id; token 4 (ratio 4) cut
    np.testing.assert_allclose(out["values"][0], np.log2([6.0, 6.0, 6.0]), rtol=1e-6)
    assert Tokenizer(vocab, medians, n_top=2).tokenize(adata).column("input_ids").to_pylist() == [[5, 6]]


@pytest.mark.parametrize("equal_medians", [True, False])
def test_cells_of_thousands_of_genes_with_long_tie_runs_match_the_reference(equal_medians):
    """Cells the size of real ones (the kernel sorts several radix digits), counts of 1–3 over equal medians so that
    runs of hundreds of tied genes arrive out of token order (they are ordered by the long-run path), and n_top
    cutting through a run."""
    rng = np.random.default_rng(11)
    n_genes = 3000
    counts = rng.integers(1, 4, (12, n_genes)) * (rng.random((12, n_genes)) < 0.8)
    counts[:, 0] += 1
    genes = [hid(i) for i in rng.permutation(n_genes) + 1]
    vocab = make_vocab(sorted(genes))
    medians = np.ones(len(vocab)) if equal_medians else np.exp(rng.uniform(-3, 3, len(vocab)))
    medians[:N_SPECIAL] = np.nan
    col_token = vocab.encode(genes)
    col_median = medians[col_token]
    for n_top, library_size in ((2048, None), (777, 1e4)):
        table = Tokenizer(vocab, medians, n_top=n_top, library_size=library_size).tokenize(make_adata(counts, genes))
        out = table.to_pydict()
        for r, (ids, values, _) in enumerate(expected_cells(counts, col_token, col_median, n_top, library_size)):
            np.testing.assert_array_equal(out["input_ids"][r], ids)
            np.testing.assert_array_equal(np.asarray(out["values"][r], dtype=np.float32), values)


def test_genes_outside_the_vocabulary_are_ignored():
    vocab = make_vocab([hid(1), hid(2)])
    tokenizer = Tokenizer(vocab, np.r_[[np.nan] * 4, 1.0, 1.0])
    adata = make_adata([[1, 100, 2], [3, 50, 0]], [hid(1), hid(9), hid(2)])
    out = tokenizer.tokenize(adata)
    assert out.column("input_ids").to_pylist() == [[5, 4], [4]]
    assert out.column("length").to_pylist() == [2, 1]
    assert out.equals(tokenizer.tokenize(adata[:, [0, 2]].copy()))
    assert tokenizer.coverage(adata.var_names, "human") == {"genes": 3, "in_vocabulary": 2}


def test_mouse_data_uses_mouse_tokens_only():
    vocab = make_vocab([hid(1), hid(2), hid(3)], [mid(1), mid(2), mid(3)])  # mouse tokens 7, 8, 9
    tokenizer = Tokenizer(vocab, np.r_[[np.nan] * 4, [1.0] * 6])
    adata = make_adata([[9, 1, 4, 7], [1, 0, 2, 3]], [hid(1), mid(3), mid(1), mid(8)], species="mouse")
    out = tokenizer.tokenize(adata, dataset="m").to_pydict()
    assert out["input_ids"] == [[7, 9], [7]]  # hid(1) (human token 4) and unknown mid(8) ignored
    assert out["species"] == [1, 1] and out["dataset"] == ["m", "m"]
    assert tokenizer.coverage(adata.var_names, "mouse") == {"genes": 4, "in_vocabulary": 2}


def test_dataset_column_comes_from_obs():
    tokenizer = Tokenizer(make_vocab([hid(1)]), np.r_[[np.nan] * 4, 1.0])
    adata = make_adata([[1], [2]], [hid(1)])
    adata.obs["dataset"] = "pbmc"
    assert tokenizer.tokenize(adata).column("dataset").to_pylist() == ["pbmc", "pbmc"]


def test_parquet_round_trip_is_lossless(tmp_path):
    vocab = make_vocab([hid(i) for i in range(1, 7)])
    tokenizer = Tokenizer(vocab, np.r_[[np.nan] * 4, np.linspace(0.3, 7.1, 6)], n_top=4, library_size=1e4)
    rng = np.random.default_rng(7)
    counts = rng.integers(0, 500, size=(12, 8)) * (rng.random((12, 8)) < 0.6)
    counts[:, 7] += 1
    counts[3, :6] = 0  # a cell with no vocabulary gene: an empty list
    genes = [hid(i) for i in (6, 2, 4, 1, 3, 5, 90, 91)]
    col_token, col_median = tokenizer.column_tables(genes, "human")
    keep = np.arange(12) % 5 != 1
    cells = tokenizer.tokenize_rows(sp.csr_matrix(counts), col_token, col_median, keep=keep, row_offset=100)
    assert cells.lengths.tolist().count(0) == 1
    path = write_shard(cells.to_table("mouse", "ds1"), tmp_path / "shards" / "part-0.parquet")
    assert path == tmp_path / "shards" / "part-0.parquet"
    assert [p.name for p in path.parent.iterdir()] == ["part-0.parquet"]  # no temporary left behind
    back = pq.read_table(path)
    assert back.schema == SHARD_SCHEMA
    ids, values = back.column("input_ids").combine_chunks(), back.column("values").combine_chunks()
    np.testing.assert_array_equal(ids.offsets.to_numpy(), cells.offsets)
    np.testing.assert_array_equal(ids.values.to_numpy(), cells.ids)
    np.testing.assert_array_equal(values.values.to_numpy().view(np.uint32), cells.values.view(np.uint32))
    assert back.column("length").to_pylist() == cells.lengths.tolist()
    assert back.column("species").to_pylist() == [1] * int(keep.sum())
    assert back.column("dataset").to_pylist() == ["ds1"] * int(keep.sum())
    assert back.column("row").to_pylist() == (np.flatnonzero(keep) + 100).tolist()


def bad(kind):
    counts, genes, species = np.array([[1.0, 0, 3], [0, 5, 1]]), [hid(1), hid(2), hid(3)], "human"
    if kind == "fraction":
        counts[0, 0] = 1.5
    elif kind == "negative":
        counts[1, 1] = -2
    elif kind == "nan":
        counts[1, 2] = np.nan
    elif kind == "unknown symbols":  # symbols are mapped at the door (test_symbols_in.py); these map to nothing
        genes = ["NOTAGENE1", "NOTAGENE2", "NOTAGENE3"]
    elif kind == "duplicated":
        genes = [hid(1), hid(2), hid(1)]
    elif kind == "species":
        species = "zebrafish"
    elif kind == "empty cell":
        counts[1] = 0
    adata = make_adata(counts, genes, species)
    return adata[:0].copy() if kind == "no cells" else adata


@pytest.mark.parametrize("kind, match", [
    ("fraction", "non-integer"), ("negative", "negative values"), ("nan", "NaN"),
    ("unknown symbols", "no genes found.*none of the 3.*human symbol"),
    ("duplicated", "duplicated genes"), ("species", "unknown species"),
    ("empty cell", "1 empty cells"), ("no cells", "empty AnnData"),
])
def test_bad_input_is_rejected(kind, match):
    tokenizer = Tokenizer(make_vocab([hid(1), hid(2), hid(3)]), np.r_[[np.nan] * 4, 1.0, 1.0, 1.0])
    assert tokenizer.tokenize(bad("none")).num_rows == 2
    with pytest.raises(ValueError, match=match):
        tokenizer.tokenize(bad(kind))


def test_one_species_at_a_time():
    tokenizer = Tokenizer(make_vocab([hid(1)], [mid(1)]), np.r_[[np.nan] * 4, 1.0, 1.0])
    adata = make_adata([[1, 2], [3, 4]], [hid(1), mid(1)])
    adata.obs["species"] = ["human", "mouse"]
    with pytest.raises(ValueError, match="one species at a time"):
        tokenizer.tokenize(adata)


@pytest.mark.parametrize("medians, options, match", [
    (np.r_[[np.nan] * 4, 1.0], {}, r"one entry per token \(6\), got shape \(5,\)"),
    (np.r_[[np.nan] * 4, 1.0, 0.0], {}, "positive, finite median"),
    (np.r_[[np.nan] * 4, 1.0, -2.0], {}, "positive, finite median"),
    (np.r_[[np.nan] * 4, 1.0, np.nan], {}, "positive, finite median"),
    (np.r_[[np.nan] * 4, 1.0, 1.0], {"n_top": 0}, "n_top must be positive"),
    (np.r_[[np.nan] * 4, 1.0, 1.0], {"library_size": 0.0}, "library_size must be positive"),
])
def test_construction_errors(medians, options, match):
    with pytest.raises(ValueError, match=match):
        Tokenizer(make_vocab([hid(1), hid(2)]), medians, **options)


@pytest.fixture
def saved(tmp_path):
    vocab = make_vocab([hid(1), hid(2), hid(3)], [mid(1)])
    tokenizer = Tokenizer(vocab, np.r_[[np.nan] * 4, 0.5, 2.0, 3.25, 7.0], n_top=2, library_size=1e4)
    tokenizer.save(tmp_path, gene_stats=pd.DataFrame({"n_nonzero": [10, 20, 30, 40]}))
    return tokenizer, tmp_path


def test_save_load_round_trip(saved):
    tokenizer, directory = saved
    loaded = Tokenizer.load(directory)
    assert loaded.vocab.hash == tokenizer.vocab.hash
    np.testing.assert_array_equal(loaded.medians, tokenizer.medians)
    assert (loaded.n_top, loaded.library_size) == (2, 1e4)
    adata = make_adata([[5, 1, 2], [0, 4, 4]], [hid(3), hid(1), hid(2)])
    assert loaded.tokenize(adata).equals(tokenizer.tokenize(adata))
    assert pd.read_parquet(directory / "medians.parquet")["n_nonzero"].tolist() == [10, 20, 30, 40]


@pytest.mark.parametrize("name", ["vocab.json", "medians.parquet", "tokenizer.json"])
def test_load_needs_every_file(saved, name):
    _, directory = saved
    (directory / name).unlink()
    with pytest.raises(FileNotFoundError, match=name):
        Tokenizer.load(directory)


def test_load_rejects_another_vocabulary(saved):
    _, directory = saved
    options = json.loads((directory / "tokenizer.json").read_text())
    (directory / "tokenizer.json").write_text(json.dumps(options | {"vocab_hash": "0" * 64}))
    with pytest.raises(ValueError, match="another vocabulary"):
        Tokenizer.load(directory)
