"""The Baron et al. 2016 pancreas loaders: a tiny file shaped like CAME's (symbols as var_names, float32 CSR UMI
counts, the label columns) goes through load_dataset into the contract with its labels; symbols are mapped through
the real HGNC/MGI tables of the offline bundle (fetched into data/raw on first use, as in test_genes.py)."""
import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from gc_lib.inputs import datasets
from gc_lib.inputs.contract import check_counts_adata

INS, GCG, A2ML1, HLA_A = "ENSG00000254647", "ENSG00000115263", "ENSG00000166535", "ENSG00000206503"
# approved × 5, CPAMD9 = previous symbol of A2ML1, HLA-A as R writes it, one unknown symbol (dropped)
HUMAN_SYMBOLS = ["INS", "GCG", "SST", "PPY", "KRT19", "CPAMD9", "HLA.A", "NOTAGENE1"]
# approved × 5, Nkx2-2 as R writes it, Gt(ROSA)26Sor as R writes it (not an MGI symbol with an Ensembl ID: dropped)
MOUSE_SYMBOLS = ["Ins1", "Ins2", "Gcg", "Sst", "Ppy", "Nkx2.2", "Krt19", "Gt.ROSA.26Sor"]
COUNTS = np.array([[9, 0, 1, 0, 0, 2, 1, 5],    # beta
                   [0, 7, 0, 0, 1, 0, 0, 0],    # alpha
                   [1, 0, 0, 0, 6, 0, 2, 0],    # ductal
                   [0, 0, 0, 0, 0, 0, 0, 3]],   # only the unknown gene: empty after mapping, dropped
                  dtype=np.float32)
LABELS = {"cell_ontology_class": ["type B pancreatic cell", "pancreatic A cell", "pancreatic ductal cell",
                                  "pancreatic ductal cell"],
          "cell_ontology_id": ["CL:0000169", "CL:0000171", "CL:0002079", "CL:0002079"],
          "cell_type1": ["beta", "alpha", "ductal", "ductal"]}


def came_like(path, species: str, counts=COUNTS):
    """Write an .h5ad shaped like CAME's raw-Baron_*.h5ad: categorical obs, no var columns, float32 CSR X."""
    prefix = "human" if species == "human" else "mouse"
    obs = pd.DataFrame({**LABELS, "donor": [f"{prefix}1", f"{prefix}1", f"{prefix}2", f"{prefix}2"],
                        "library": "lib1", "organ": "Pancreas", "platform": "inDrop",
                        "dataset_name": f"Baron_{prefix}"},
                       index=[f"{prefix}1_lib1.final_cell_{i:04d}" for i in range(4)]).astype("category")
    symbols = HUMAN_SYMBOLS if species == "human" else MOUSE_SYMBOLS
    ad.AnnData(sp.csr_matrix(counts), obs=obs, var=pd.DataFrame(index=symbols)).write_h5ad(path)
    return path


@pytest.fixture()
def baron_file(tmp_path, monkeypatch):
    """Point the loaders' fetch at a tiny CAME-like file per species; returns the writer for other contents."""
    files = {}

    def write(species, counts=COUNTS):
        files[f"baron_{species}"] = came_like(tmp_path / f"raw-Baron_{species}.h5ad", species, counts)

    monkeypatch.setattr(datasets, "fetch", lambda name: files[name])
    write("human")
    write("mouse")
    return write


def test_human_file_enters_the_contract_with_labels_and_donors(baron_file):
    adata = datasets.load_dataset("baron_human")
    check_counts_adata(adata)
    assert adata.X.dtype == np.float32 and sp.isspmatrix_csr(adata.X)
    assert list(adata.var_names[:2]) == [INS, GCG] and adata.var.loc[A2ML1, "gene_symbol"] == "CPAMD9"
    assert adata.var.loc[HLA_A, "gene_symbol"] == "HLA-A" and adata.uns["gc_lib"]["symbols_restored"] == 1
    assert adata.n_obs == 3 and adata.uns["gc_lib"]["dropped_cells"] == 1  # the cell of the unknown gene only
    assert list(adata.obs["cell_type"]) == LABELS["cell_ontology_class"][:3]
    assert list(adata.obs["cell_type_ontology_id"]) == LABELS["cell_ontology_id"][:3]
    assert list(adata.obs["cell_type_short"]) == ["beta", "alpha", "ductal"]
    assert list(adata.obs["donor"]) == ["human1", "human1", "human2"]
    assert set(adata.obs["species"]) == {"human"} and set(adata.obs["dataset"]) == {"baron_human"}
    assert "library" not in adata.obs  # only the label columns are carried
    np.testing.assert_array_equal(adata.X.toarray(), COUNTS[:3, :7])


def test_symbol_mapping_is_recorded_per_species(baron_file):
    human = datasets.load_dataset("baron_human").uns["gc_lib"]
    assert human["symbol_mapping"] == {"source": "var_names", "symbols": 8, "approved": 6, "previous": 1,
                                       "alias": 0, "ambiguous": 0, "unknown": 1, "mapped": 7,
                                       "mapped_fraction": 7 / 8}
    assert human["dropped_genes"] == 1 and human["gene_id_source"] == "symbols in var_names"
    mouse = datasets.load_dataset("baron_mouse")
    check_counts_adata(mouse)
    assert mouse.var_names.str.startswith("ENSMUSG").all() and mouse.n_vars == 7
    assert mouse.uns["gc_lib"]["symbol_mapping"]["approved"] == 7 and mouse.uns["gc_lib"]["symbols_restored"] == 1
    assert "Nkx2-2" in set(mouse.var["gene_symbol"])
    assert set(mouse.obs["species"]) == {"mouse"} and list(mouse.obs["donor"]) == ["mouse1", "mouse1", "mouse2"]


def test_subsample_keeps_labels_and_drops_unused_categories(baron_file):
    small = datasets.load_dataset("baron_human", max_cells=1, seed=0)
    assert small.n_obs == 1
    assert len(small.obs["cell_type"].cat.categories) == 1 and len(small.obs["donor"].cat.categories) == 1


def test_r_mangled_symbols_are_restored_only_to_known_symbols():
    restored, n = datasets.restore_r_symbols(["HLA.DRA", "KRT19", "Tex19.1", "Gt.ROSA.26Sor", "HLA.B", "HLA-B"],
                                             "human")
    # HLA-B is already there (its dotted twin stays); Tex19.1 / Gt.ROSA.26Sor have no known hyphenated form
    assert list(restored) == ["HLA-DRA", "KRT19", "Tex19.1", "Gt.ROSA.26Sor", "HLA.B", "HLA-B"] and n == 1
    kept, n = datasets.restore_r_symbols(["Tex19.1", "Nkx6.1"], "mouse")
    assert list(kept) == ["Tex19.1", "Nkx6-1"] and n == 1  # MGI's own dotted symbol is kept


def test_non_integer_counts_are_refused(baron_file):
    baron_file("human", COUNTS * 0.5)  # as if normalised: 4.5, 3.5 …
    with pytest.raises(ValueError, match=r"raw-Baron_human\.h5ad \(X\) is not raw UMI counts: \d+ non-integer"):
        datasets.load_dataset("baron_human")


def test_missing_label_column_is_named(tmp_path):
    path = came_like(tmp_path / "x.h5ad", "human")
    src = ad.read_h5ad(path)
    del src.obs["donor"]
    src.write_h5ad(path)
    with pytest.raises(ValueError, match=r"obs lacks \['donor'\]"):
        datasets.read_baron(path, "human")


def test_both_are_in_the_corpus_bundle():
    assert datasets.BUNDLE["baron_human"].species == "human" and datasets.BUNDLE["baron_mouse"].species == "mouse"
    assert datasets.BUNDLE["baron_human"].gene_id_column is None  # symbols, mapped at the door


def test_real_files_cells_per_type_and_donor():
    """The real CAME files (fetched on first use): sizes, label sets and donors as published."""
    human, mouse = datasets.load_dataset("baron_human"), datasets.load_dataset("baron_mouse")
    assert human.n_obs == 2_142 and mouse.n_obs == 1_886
    assert human.obs["cell_type"].nunique() == 13 and mouse.obs["cell_type"].nunique() == 12
    assert human.obs["cell_type"].value_counts()["type B pancreatic cell"] == 623
    assert "pancreatic acinar cell" in set(human.obs["cell_type"]) - set(mouse.obs["cell_type"])
    assert sorted(human.obs["donor"].unique()) == ["human1", "human2", "human3", "human4"]
    assert sorted(mouse.obs["donor"].unique()) == ["mouse1", "mouse2"]
    assert {"HLA-DRA", "HLA-A"} <= set(human.var["gene_symbol"]) and "Nkx6-1" in set(mouse.var["gene_symbol"])
    for adata, symbols in ((human, 20_125), (mouse, 14_877)):
        mapping = adata.uns["gc_lib"]["symbol_mapping"]
        assert mapping["symbols"] == symbols and mapping["mapped_fraction"] > 0.98
        assert adata.uns["gc_lib"]["symbols_restored"] > 70  # R's '.' for '-' undone
        assert adata.n_vars == mapping["mapped"] - adata.uns["gc_lib"]["summed_duplicate_genes"]
