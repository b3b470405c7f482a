"""The AnnData contract: each kind of bad input gets a ValueError that names the problem."""
import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from gc_lib.inputs.contract import check_counts_adata, is_ensembl_gene_id, is_species_gene_id

HUMAN = [f"ENSG{i:011d}" for i in range(1, 6)]
MOUSE = [f"ENSMUSG{i:011d}" for i in range(1, 6)]


def make(counts=None, genes=HUMAN, species="human", symbols=True, sparse=True):
    counts = np.array([[1, 0, 3, 0, 2], [0, 5, 0, 1, 0], [2, 2, 0, 0, 7]], dtype=np.float32) \
        if counts is None else counts
    var = pd.DataFrame(index=pd.Index(genes))
    if symbols:
        var["gene_symbol"] = [f"G{i}" for i in range(len(genes))]
    obs = pd.DataFrame({"species": [species] * counts.shape[0]}, index=[f"c{i}" for i in range(counts.shape[0])])
    return ad.AnnData(sp.csr_matrix(counts) if sparse else counts, obs=obs, var=var)


@pytest.mark.parametrize("sparse", [True, False])
def test_valid_counts_pass(sparse):
    check_counts_adata(make(sparse=sparse))
    check_counts_adata(make(genes=MOUSE, species="mouse"))


def test_counts_layer_takes_precedence():
    adata = make()
    adata.layers["counts"] = adata.X.copy()
    adata.X = np.log1p(adata.X.toarray())
    check_counts_adata(adata)


def test_log_normalised_values_are_rejected():
    adata = make()
    adata.X = sp.csr_matrix(np.log1p(adata.X.toarray()))
    with pytest.raises(ValueError, match="not raw counts.*log-normalised"):
        check_counts_adata(adata)


def test_symbols_as_var_names_are_rejected():
    with pytest.raises(ValueError, match="not Ensembl gene IDs.*to_contract.*maps gene symbols"):
        check_counts_adata(make(genes=["CD3E", "MS4A1", "LYZ", "NKG7", "GNLY"]))


def test_some_bad_ids_are_counted():
    with pytest.raises(ValueError, match="1 of 5 var_names"):
        check_counts_adata(make(genes=HUMAN[:4] + ["LYZ"]))


@pytest.mark.parametrize("bad, match", [
    (-1.0, "negative"),
    (np.nan, "NaN"),
])
def test_negative_and_nan(bad, match):
    counts = np.array([[1, 0, 3, 0, 2], [0, 5, 0, 1, 0], [2, 2, 0, 0, bad]], dtype=np.float32)
    with pytest.raises(ValueError, match=match):
        check_counts_adata(make(counts))


def test_duplicated_genes():
    with pytest.raises(ValueError, match="duplicated genes"):
        check_counts_adata(make(genes=HUMAN[:4] + HUMAN[:1]))


def test_unknown_species_and_missing_species():
    with pytest.raises(ValueError, match="unknown species"):
        check_counts_adata(make(species="zebrafish"))
    adata = make()
    del adata.obs["species"]
    with pytest.raises(ValueError, match="obs\\['species'\\] is missing"):
        check_counts_adata(adata)


def test_species_must_match_gene_ids():
    with pytest.raises(ValueError, match="labelled 'mouse'"):
        check_counts_adata(make(species="mouse"))


def test_empty_cells_and_empty_anndata():
    counts = np.array([[1, 0, 3, 0, 2], [0, 0, 0, 0, 0], [2, 2, 0, 0, 7]], dtype=np.float32)
    with pytest.raises(ValueError, match="1 empty cells"):
        check_counts_adata(make(counts))
    with pytest.raises(ValueError, match="empty AnnData"):
        check_counts_adata(make()[:0])


def test_missing_symbols():
    with pytest.raises(ValueError, match="gene_symbol"):
        check_counts_adata(make(symbols=False))


def test_the_check_changes_nothing():
    adata = make()
    before = adata.X.toarray().copy(), adata.obs.copy(), adata.var.copy()
    check_counts_adata(adata)
    np.testing.assert_array_equal(adata.X.toarray(), before[0])
    pd.testing.assert_frame_equal(adata.obs, before[1])


def test_ensembl_pattern():
    assert is_ensembl_gene_id(["ENSG00000141510", "ENSMUSG00000059552.7", "TP53", "ENSG123"]).tolist() == \
        [True, True, False, False]
    names = ["ENSG00000141510", "ENSG00000141510.5", "ENSMUSG00000059552", "ENSG0000014151", "ENSG00000141510x"]
    assert is_species_gene_id(names, "human").tolist() == [True, True, False, False, False]
    assert is_species_gene_id(names, "mouse").tolist() == [False, False, True, False, False]
    with pytest.raises(ValueError, match="unknown species 'yeast'"):
        is_species_gene_id(names, "yeast")


def test_ensembl_pattern_edge_cases():
    """The whole name must match, in ASCII digits; any value is tested as its str; a name UTF-8 cannot hold (a lone
    surrogate) takes the Python path and gets the same answer."""
    names = ["ENSG00000141510\n", "ENSG0000014151\u0661", " ENSG00000141510", "ENSG00000141510.", None, 7,
             "ENSG00000141510\udc80", "ENSG00000141510.2"]
    assert is_ensembl_gene_id(names).tolist() == [False] * 7 + [True]
    surrogate_and_good = ["ENSG00000141510\udc80", "ENSMUSG00000059552"]
    assert is_species_gene_id(surrogate_and_good, "mouse").tolist() == [False, True]
    assert is_ensembl_gene_id([]).dtype == bool and is_ensembl_gene_id(np.array([], dtype=object)).size == 0


def test_two_versions_of_one_gene_are_duplicates():
    genes = ["ENSG00000000001.1", "ENSG00000000001.2"] + HUMAN[1:4]
    with pytest.raises(ValueError, match="duplicated genes"):
        check_counts_adata(make(genes=genes))
