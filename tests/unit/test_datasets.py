"""Bundle loaders: real files (fetched on first use, cached in data/raw) and the count rebuild."""
import numpy as np
import pytest
import scipy.sparse as sp

from gc_lib.inputs import datasets
from gc_lib.inputs.contract import check_counts_adata


def test_rebuild_recovers_integer_counts_exactly():
    rng = np.random.default_rng(0)
    counts = sp.random(50, 80, density=0.2, random_state=1, data_rvs=lambda n: rng.integers(1, 300, n)).tocsr()
    counts = counts[np.asarray(counts.sum(1)).ravel() > 0]
    totals = np.asarray(counts.sum(1)).ravel() * 1.7  # as when genes were subset after normalising
    lognorm = counts.multiply(1e4 / totals[:, None]).tocsr()
    lognorm.data = np.log1p(lognorm.data).astype(np.float32)
    rebuilt, deviation = datasets.rebuild_counts_from_lognorm(lognorm, totals)
    np.testing.assert_array_equal(rebuilt.toarray(), counts.toarray())
    assert deviation < 0.05


def test_rebuild_refuses_values_that_are_not_lognormalised_counts():
    x = sp.csr_matrix(np.array([[0.3, 0.0, 1.1], [0.5, 0.2, 0.0]], dtype=np.float32))
    with pytest.raises(ValueError, match="not log1p"):
        datasets.rebuild_counts_from_lognorm(x, np.array([1e4, 1e4]))  # expm1(0.3) = 0.35: no integer


def test_pbmc68k_counts_are_integers_within_rounding():
    adata = datasets.load_dataset("pbmc68k_reduced")
    check_counts_adata(adata)
    assert adata.n_obs == 700 and adata.obs["cell_type"].nunique() == 10
    assert 0 < adata.uns["gc_lib"]["rebuild_max_deviation"] < datasets.MAX_REBUILD_DEVIATION
    assert adata.X.data.min() >= 1 and np.array_equal(adata.X.data, np.rint(adata.X.data))
    mapping = adata.uns["gc_lib"]["symbol_mapping"]  # symbols as var_names, mapped by to_contract
    assert mapping["source"] == "var_names" and mapping["symbols"] == 765
    assert mapping["mapped"] == 765 - mapping["ambiguous"] - mapping["unknown"] > 0.95 * 765
    assert adata.n_vars == mapping["mapped"] - adata.uns["gc_lib"]["summed_duplicate_genes"]
    assert adata.var.loc["ENSG00000090382", "gene_symbol"] == "LYZ"


def test_mouse_subset_keeps_shipped_ids_and_drops_the_empty_cell():
    adata = datasets.load_dataset("mouse_10k_subset")
    assert adata.shape == (9_999, 1_000) and adata.uns["gc_lib"]["dropped_cells"] == 1
    assert adata.var_names.str.startswith("ENSMUSG").all() and (adata.obs["species"] == "mouse").all()
    assert adata.uns["gc_lib"]["symbol_mapping"] == {}  # IDs shipped: no symbol mapped
    small = datasets.load_dataset("mouse_10k_subset", max_cells=100, seed=1)
    assert small.n_obs == 100 and set(small.obs_names) <= set(adata.obs_names)


def test_fpkm_lung_is_flagged_and_refused_as_counts():
    lung = datasets.load_fpkm_lung()
    assert lung.uns["gc_lib"]["value_kind"] == "FPKM" and lung.shape == (185, 218)
    assert lung.obs["time"].value_counts().to_dict() == {"E18.5": 68, "Adult": 46, "E14.5": 44, "E16.5": 27}
    with pytest.raises(ValueError, match="not raw counts"):
        check_counts_adata(lung)
    assert "monocle_lung" not in datasets.BUNDLE


def test_unknown_dataset():
    with pytest.raises(KeyError, match="no bundle dataset"):
        datasets.load_dataset("pbmc3k")
