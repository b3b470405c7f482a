"""gc_lib.inputs.atlas: .h5ad files (local, by URL, chunked) and a CELLxGENE Census stand-in, into the contract.

Every fixture is a small AnnData written under tmp_path; downloads go through a throw-away http.server on
127.0.0.1; the Census is a tiny SOMA collection on disk with the Census layout. No network is used.
"""
import functools
import http.server
import sys
import threading

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from synthetic import write_census

from gc_lib.inputs.atlas import census_query, iter_h5ad_chunks, open_census, read_h5ad, sample_census
from gc_lib.inputs.contract import check_counts_adata
from gc_lib.inputs.fetch import FetchError, sha256_file

N_CELLS = 23
# gene 0..7: ordinary; gene 8 has no ID; gene 9 repeats gene 3's ID (a second version) and is summed into it
GENE_IDS = [f"ENSG{i:011d}.{i % 3 + 1}" for i in range(8)] + ["", "ENSG00000000003.7"]
SYMBOLS = [f"GENE{i}" for i in range(10)]


def counts_matrix(n_cells=N_CELLS, n_genes=10, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    counts = rng.poisson(0.7, size=(n_cells, n_genes)).astype(np.float32)
    counts[:, 0] += 1  # no cell is empty, even after gene 8 is dropped
    return counts


def make_adata(counts=None, **obs_extra) -> ad.AnnData:
    counts = counts_matrix() if counts is None else counts
    obs = pd.DataFrame({"cell_type": pd.Categorical(["T", "B"] * (len(counts) // 2) + ["T"] * (len(counts) % 2)),
                        **obs_extra}, index=[f"cell{i}" for i in range(len(counts))])
    var = pd.DataFrame({"gene_ids": GENE_IDS[:counts.shape[1]]}, index=SYMBOLS[:counts.shape[1]])
    return ad.AnnData(X=sp.csr_matrix(counts), obs=obs, var=var)


def expected_counts(counts: np.ndarray) -> np.ndarray:
    """Genes 0..7 in order, with gene 9 summed into gene 3 and gene 8 (no ID) dropped."""
    out = counts[:, :8].copy()
    out[:, 3] += counts[:, 9]
    return out


def lognorm(counts: np.ndarray) -> np.ndarray:
    return np.log1p(counts / counts.sum(1, keepdims=True) * 1e4).astype(np.float32)


@pytest.fixture()
def counts_h5ad(tmp_path):
    counts = counts_matrix()
    path = tmp_path / "pbmc_tiny.h5ad"
    make_adata(counts).write_h5ad(path)
    return path, counts


# --------------------------------------------------------------------------------------------
# read_h5ad
# --------------------------------------------------------------------------------------------

def test_read_counts_maps_ids_sums_duplicates_and_drops_unmapped(counts_h5ad):
    path, counts = counts_h5ad
    adata = read_h5ad(path, species="human")
    assert list(adata.var_names) == [f"ENSG{i:011d}" for i in range(8)]  # version suffixes stripped
    assert list(adata.var["gene_symbol"]) == SYMBOLS[:8]
    assert sp.isspmatrix_csr(adata.X) and adata.X.dtype == np.float32
    np.testing.assert_array_equal(adata.X.toarray(), expected_counts(counts))
    assert list(adata.obs_names) == [f"cell{i}" for i in range(N_CELLS)]
    assert set(adata.obs["species"]) == {"human"} and set(adata.obs["dataset"]) == {"pbmc_tiny"}
    assert list(adata.obs["cell_type"][:2]) == ["T", "B"]
    info = adata.uns["gc_lib"]
    assert info["counts_source"] == "X" and info["gene_id_source"] == "var['gene_ids']"
    assert info["symbol_source"] == "var_names"
    assert (info["dropped_genes"], info["summed_duplicate_genes"], info["dropped_cells"]) == (1, 1, 0)
    assert not adata.layers and "gene_ids" not in adata.var
    check_counts_adata(adata)


def test_backed_read_equals_in_memory_read(counts_h5ad):
    path, _ = counts_h5ad
    a = read_h5ad(path, species="human", dataset="d1")
    b = read_h5ad(path, species="human", dataset="d1", backed=True)
    assert (a.X != b.X).nnz == 0 and a.X.shape == b.X.shape
    pd.testing.assert_frame_equal(a.obs, b.obs)
    pd.testing.assert_frame_equal(a.var, b.var)
    assert a.uns["gc_lib"] == b.uns["gc_lib"]


def test_explicit_columns_and_ensembl_var_names(tmp_path):
    counts = counts_matrix(n_genes=8)
    adata = make_adata(counts)
    adata.var = pd.DataFrame({"feature_name": SYMBOLS[:8], "ensembl": [g.split(".")[0] for g in GENE_IDS[:8]]},
                             index=GENE_IDS[:8])
    path = tmp_path / "ens.h5ad"
    adata.write_h5ad(path)
    auto = read_h5ad(path, species="human")  # var_names already Ensembl; symbols found in feature_name
    assert list(auto.var["gene_symbol"]) == SYMBOLS[:8] and auto.uns["gc_lib"]["gene_id_source"] == "var_names"
    explicit = read_h5ad(path, species="human", gene_id_column="ensembl", symbol_column="feature_name")
    assert list(explicit.var_names) == list(auto.var_names)
    np.testing.assert_array_equal(explicit.X.toarray(), counts)
    with pytest.raises(ValueError, match="gene_id_column='nope'"):
        read_h5ad(path, species="human", gene_id_column="nope")


def test_lognormalised_file_raises_and_writes_nothing(tmp_path):
    adata = make_adata()
    adata.X = sp.csr_matrix(lognorm(counts_matrix()))
    path = tmp_path / "lognorm.h5ad"
    adata.write_h5ad(path)
    before, digest = sorted(tmp_path.rglob("*")), sha256_file(path)
    with pytest.raises(ValueError, match=r"lognorm.h5ad.*X is not raw counts.*log-normalised"):
        read_h5ad(path, species="human", cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match="log-normalised"):
        list(iter_h5ad_chunks(path, species="human", chunk_size=5))
    assert sorted(tmp_path.rglob("*")) == before and sha256_file(path) == digest


@pytest.mark.parametrize("raw_has_ids", [True, False])
def test_counts_in_raw_are_used(tmp_path, raw_has_ids):
    counts = counts_matrix()
    full = make_adata(counts)
    adata = full[:, :6].copy()  # X: log-normalised values of a gene subset, as after HVG selection
    adata.X = sp.csr_matrix(lognorm(counts)[:, :6])
    raw_var = full.var if raw_has_ids else pd.DataFrame(index=SYMBOLS)
    adata.raw = ad.AnnData(X=sp.csr_matrix(counts), obs=full.obs, var=raw_var)
    path = tmp_path / "raw.h5ad"
    adata.write_h5ad(path)
    for backed in (False, True):
        got = read_h5ad(path, species="human", backed=backed)
        assert got.uns["gc_lib"]["counts_source"] == "raw.X"
        if raw_has_ids:  # every raw gene is mapped, as from a plain counts file
            np.testing.assert_array_equal(got.X.toarray(), expected_counts(counts))
            assert got.uns["gc_lib"]["dropped_genes"] == 1
        else:  # IDs come from var, which covers raw genes 0..5 only; genes 6..9 have none and are dropped
            assert list(got.var_names) == [f"ENSG{i:011d}" for i in range(6)]
            np.testing.assert_array_equal(got.X.toarray(), counts[:, :6])
            assert got.uns["gc_lib"]["dropped_genes"] == 4


def test_counts_layer_auto_and_explicit(tmp_path):
    counts = counts_matrix()
    adata = make_adata(counts)
    adata.layers["counts"] = adata.X.copy()
    adata.layers["spliced"] = sp.csr_matrix(counts * 2)
    adata.X = sp.csr_matrix(lognorm(counts))
    path = tmp_path / "layers.h5ad"
    adata.write_h5ad(path)
    auto = read_h5ad(path, species="human")
    assert auto.uns["gc_lib"]["counts_source"] == "layers['counts']"
    np.testing.assert_array_equal(auto.X.toarray(), expected_counts(counts))
    spliced = read_h5ad(path, species="human", counts_layer="spliced", backed=True)
    np.testing.assert_array_equal(spliced.X.toarray(), expected_counts(counts * 2))
    with pytest.raises(ValueError, match=r"counts_layer='unspliced' not found"):
        read_h5ad(path, species="human", counts_layer="unspliced")


def test_gene_problems_are_named(tmp_path, counts_h5ad):
    path, _ = counts_h5ad
    with pytest.raises(ValueError, match=r"no mouse Ensembl gene IDs.*species='mouse'"):
        read_h5ad(path, species="mouse")
    with pytest.raises(ValueError, match="species must be one of"):
        read_h5ad(path, species="zebrafish")
    adata = make_adata()
    adata.var = pd.DataFrame(index=[f"NOTAGENE{i}" for i in range(10)])  # symbols-like names no table knows
    adata.write_h5ad(tmp_path / "symbols_only.h5ad")
    with pytest.raises(ValueError, match=r"no genes found. Tried Ensembl IDs: var_names are not Ensembl gene IDs.*"
                                         r"Tried gene symbols: none of the 10 in var_names.*unknown 10.*"
                                         r"gene_id_column="):
        read_h5ad(tmp_path / "symbols_only.h5ad", species="human")


def test_missing_file_and_local_checksum(tmp_path, counts_h5ad):
    with pytest.raises(FileNotFoundError, match="nowhere.h5ad"):
        read_h5ad(tmp_path / "nowhere.h5ad", species="human")
    path, _ = counts_h5ad
    assert read_h5ad(path, species="human", sha256=sha256_file(path)).uns["gc_lib"]["sha256"] == sha256_file(path)
    with pytest.raises(FetchError, match="expected 000"):
        read_h5ad(path, species="human", sha256="0" * 64)


def test_empty_cells_are_dropped_and_counted(tmp_path):
    counts = counts_matrix()
    counts[[2, 5]] = 0
    make_adata(counts).write_h5ad(tmp_path / "empty.h5ad")
    got = read_h5ad(tmp_path / "empty.h5ad", species="human")
    assert got.n_obs == N_CELLS - 2 and "cell2" not in got.obs_names and got.uns["gc_lib"]["dropped_cells"] == 2


# --------------------------------------------------------------------------------------------
# Downloads
# --------------------------------------------------------------------------------------------

class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture()
def http_root(tmp_path):
    """Serve tmp_path/www on 127.0.0.1 (random port) for the test; shut down afterwards."""
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=root))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_download_verifies_caches_and_reuses(tmp_path, http_root):
    root, base = http_root
    counts = counts_matrix()
    make_adata(counts).write_h5ad(root / "remote.h5ad")
    digest, cache = sha256_file(root / "remote.h5ad"), tmp_path / "cache"
    got = read_h5ad(f"{base}/remote.h5ad", species="human", sha256=digest, cache_dir=cache)
    np.testing.assert_array_equal(got.X.toarray(), expected_counts(counts))
    assert got.uns["gc_lib"]["source"] == f"{base}/remote.h5ad" and got.uns["gc_lib"]["sha256"] == digest
    assert set(got.obs["dataset"]) == {"remote"}
    assert [p.name for p in cache.iterdir()] == ["remote.h5ad"] and sha256_file(cache / "remote.h5ad") == digest
    (root / "remote.h5ad").unlink()  # idempotent: the verified cached copy is reused, the server is not asked
    again = read_h5ad(f"{base}/remote.h5ad", species="human", sha256=digest, cache_dir=cache)
    assert (again.X != got.X).nnz == 0
    with pytest.raises(FetchError, match="could not download"):
        read_h5ad(f"{base}/absent.h5ad", species="human", cache_dir=cache)
    assert [p.name for p in cache.iterdir()] == ["remote.h5ad"]


def test_download_checksum_mismatch_leaves_nothing(tmp_path, http_root):
    root, base = http_root
    make_adata().write_h5ad(root / "remote.h5ad")
    cache = tmp_path / "cache"
    with pytest.raises(FetchError, match="checksum mismatch"):
        read_h5ad(f"{base}/remote.h5ad", species="human", sha256="0" * 64, cache_dir=cache)
    assert not cache.exists() or list(cache.iterdir()) == []


def test_file_url(tmp_path, counts_h5ad):
    path, counts = counts_h5ad
    got = read_h5ad(path.as_uri(), species="human", cache_dir=tmp_path / "cache")
    assert (tmp_path / "cache" / path.name).is_file()
    np.testing.assert_array_equal(got.X.toarray(), expected_counts(counts))


# --------------------------------------------------------------------------------------------
# Chunked reading
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("storage", ["csr", "csc", "dense"])
def test_chunks_reproduce_the_whole_file(tmp_path, storage):
    counts = counts_matrix(seed=1)
    counts[[4, 11, 12]] = 0  # empty cells, one inside each of two chunks
    adata = make_adata(counts)
    adata.X = {"csr": sp.csr_matrix, "csc": sp.csc_matrix, "dense": np.asarray}[storage](counts)
    adata.obsm["X_pca"] = np.ones((N_CELLS, 3))  # not carried over
    path = tmp_path / "big.h5ad"
    adata.write_h5ad(path)
    whole = read_h5ad(path, species="human")
    chunks = list(iter_h5ad_chunks(path, species="human", chunk_size=5))
    assert [c.uns["gc_lib"]["rows"] for c in chunks] == [[0, 5], [5, 10], [10, 15], [15, 20], [20, 23]]
    assert [c.n_obs for c in chunks] == [4, 5, 3, 5, 3]
    assert sum(c.uns["gc_lib"]["dropped_cells"] for c in chunks) == whole.uns["gc_lib"]["dropped_cells"] == 3
    joined = ad.concat(chunks, merge="same")
    assert (joined.X != whole.X).nnz == 0 and joined.X.dtype == np.float32
    pd.testing.assert_frame_equal(joined.obs, whole.obs)
    pd.testing.assert_frame_equal(joined.var, whole.var)
    assert all(not c.obsm for c in chunks)


def test_chunk_of_only_empty_cells_is_skipped(tmp_path):
    counts = counts_matrix()
    counts[:5] = 0
    make_adata(counts).write_h5ad(tmp_path / "f.h5ad")
    chunks = list(iter_h5ad_chunks(tmp_path / "f.h5ad", species="human", chunk_size=5))
    assert [c.uns["gc_lib"]["rows"][0] for c in chunks] == [5, 10, 15, 20]
    with pytest.raises(ValueError, match="chunk_size must be positive"):
        next(iter_h5ad_chunks(tmp_path / "f.h5ad", species="human", chunk_size=0))


# --------------------------------------------------------------------------------------------
# CELLxGENE Census (a local SOMA collection with the Census layout)
# --------------------------------------------------------------------------------------------

def test_open_census_without_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "cellxgene_census", None)
    with pytest.raises(ImportError, match=r"pip install 'gc_lib\[census\]'"):
        open_census(uri="/nowhere")


CENSUS_CELLS = 40
CENSUS_GENES = [f"ENSG{i:011d}" for i in range(6)]


@pytest.fixture(scope="module")
def census_uri(tmp_path_factory):
    """root Collection → census_data Collection → Experiment homo_sapiens (ms RNA, X raw) + census_info."""
    pytest.importorskip("cellxgene_census")
    pytest.importorskip("tiledbsoma")

    counts = counts_matrix(CENSUS_CELLS, len(CENSUS_GENES), seed=2)
    counts[7, 1:] = 0  # a cell with counts only in gene 0
    obs = pd.DataFrame({
        "cell_type": ["T cell", "B cell", "monocyte", "NK cell"] * 10,
        "tissue": ["blood"] * 30 + ["lung"] * 10,
        "assay": "10x 3' v3",
        "dataset_id": ["ds-a"] * 20 + ["ds-b"] * 20,
        "donor_id": "donor1",
        "is_primary_data": [True, True, True, False] * 10,
    }, index=[f"c{i}" for i in range(CENSUS_CELLS)])
    var = pd.DataFrame({"feature_id": CENSUS_GENES, "feature_name": [f"G{i}" for i in range(6)],
                        "feature_length": np.arange(6) * 100}, index=CENSUS_GENES)
    root = str(tmp_path_factory.mktemp("census") / "soma")
    write_census(root, counts, obs, var)
    return root, counts, obs


def test_census_query_filters_chunks_and_meets_contract(census_uri):
    root, counts, obs = census_uri
    with open_census(uri=root) as census:
        chunks = list(census_query(census, "Homo sapiens", obs_value_filter="tissue == 'blood'", chunk_size=8))
    want = np.flatnonzero(obs["is_primary_data"].to_numpy() & (obs["tissue"] == "blood").to_numpy())
    assert len(want) == 23 and [c.n_obs for c in chunks] == [8, 8, 7]
    joined = ad.concat(chunks, merge="same")
    assert list(joined.obs_names) == [str(i) for i in want]
    np.testing.assert_array_equal(joined.X.toarray(), counts[want])
    assert list(joined.var_names) == CENSUS_GENES and list(joined.var["gene_symbol"]) == [f"G{i}" for i in range(6)]
    assert set(joined.obs["species"]) == {"human"} and joined.obs["is_primary_data"].all()
    assert list(joined.obs["dataset"]) == list(obs["dataset_id"].iloc[want])
    assert list(joined.obs["cell_type"]) == list(obs["cell_type"].iloc[want])
    assert chunks[0].uns["gc_lib"]["obs_value_filter"] == "(is_primary_data == True) and (tissue == 'blood')"
    for chunk in chunks:
        check_counts_adata(chunk)
        assert sp.isspmatrix_csr(chunk.X) and chunk.X.dtype == np.float32


def test_sample_census_is_a_reproducible_random_subset(census_uri):
    root, counts, obs = census_uri
    blood = np.flatnonzero(obs["is_primary_data"].to_numpy() & (obs["tissue"] == "blood").to_numpy())
    with open_census(uri=root) as census:
        first = sample_census(census, "human", max_cells=10, seed=3, obs_value_filter="tissue == 'blood'",
                              chunk_size=4)
        again = sample_census(census, "human", max_cells=10, seed=3, obs_value_filter="tissue == 'blood'")
        with pytest.raises(ValueError, match="no human cell"):
            sample_census(census, "human", max_cells=5, obs_value_filter="tissue == 'nowhere'")
    picked = first.obs_names.astype(int).to_numpy()
    assert first.n_obs == 10 and set(picked) <= set(blood) and list(picked) == sorted(picked)
    assert list(again.obs_names) == list(first.obs_names)
    np.testing.assert_array_equal(first.X.toarray(), counts[picked])
    assert first.uns["gc_lib"]["n_matching_cells"] == len(blood) == 23
    check_counts_adata(first)


def test_census_primary_only_gene_filter_and_errors(census_uri):
    root, counts, obs = census_uri
    with open_census(uri=root) as census:
        every = list(census_query(census, "homo_sapiens", primary_only=False, chunk_size=100))
        assert sum(c.n_obs for c in every) == CENSUS_CELLS
        # a gene filter can leave cells empty: they are dropped and counted
        genes = list(census_query(census, "human", var_value_filter="feature_id in ['ENSG00000000002', "
                                                                    "'ENSG00000000005']", chunk_size=100))
        primary = np.flatnonzero(obs["is_primary_data"].to_numpy())
        keep = primary[counts[primary][:, [2, 5]].sum(1) > 0]
        assert list(genes[0].var_names) == ["ENSG00000000002", "ENSG00000000005"]
        np.testing.assert_array_equal(genes[0].X.toarray(), counts[keep][:, [2, 5]])
        assert genes[0].uns["gc_lib"]["dropped_cells"] == len(primary) - len(keep) > 0
        with pytest.raises(ValueError, match="unknown organism"):
            next(census_query(census, "zebrafish"))
        with pytest.raises(ValueError, match=r"\['sex'\] are not in the Census obs"):
            next(census_query(census, "human", obs_columns=("cell_type", "sex")))
