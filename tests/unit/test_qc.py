import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from gc_lib.corpus._kernels import cell_metrics
from gc_lib.corpus.qc import cell_qc_metrics


def make(symbols, species):
    counts = sp.csr_matrix(np.array([[4, 0, 1, 5], [0, 2, 0, 0], [1, 1, 1, 1]], dtype=np.float32))
    var = pd.DataFrame({"gene_symbol": symbols}, index=[f"ENSG{i:011d}" for i in range(4)])
    return ad.AnnData(counts, obs=pd.DataFrame({"species": [species] * 3}, index=list("abc")), var=var)


def test_totals_genes_and_mito_fraction():
    qc = cell_qc_metrics(make(["MT-ND1", "CD3E", "MT-CO1", "LYZ"], "human"))
    assert qc["total_counts"].tolist() == [10, 2, 4] and qc["n_genes"].tolist() == [3, 1, 4]
    np.testing.assert_allclose(qc["mito_fraction"], [0.5, 0.0, 0.5])


def test_mouse_prefix_and_no_mito_genes():
    mouse = cell_qc_metrics(make(["mt-Nd1", "Cd3e", "Lyz2", "Actb"], "mouse"))
    np.testing.assert_allclose(mouse["mito_fraction"], [0.4, 0.0, 0.25])
    assert cell_qc_metrics(make(["A", "B", "C", "D"], "human"))["mito_fraction"].isna().all()


def test_builder_metrics_kernel_matches_numpy():
    # the corpus builder's compiled per-cell metrics (two values per step): rows of odd and even length, empty rows,
    # explicit zeros, rare mitochondrial columns, large counts
    rng = np.random.default_rng(3)
    dense = rng.poisson(rng.gamma(0.5, 3.0, 300), size=(80, 300)).astype(np.float32) * rng.integers(1, 900, (80, 1))
    dense[5] = 0
    counts = sp.csr_matrix(dense)
    counts.data[rng.integers(counts.nnz, size=50)] = 0  # stored zeros are not expressed
    is_mito, is_counted = rng.random(300) < 0.03, rng.random(300) < 0.8
    total, mito, n_counted = cell_metrics(counts.data, counts.indices, counts.indptr.astype(np.int64), is_mito,
                                          is_counted)
    values = counts.toarray()
    assert np.array_equal(total, values.sum(axis=1))
    assert np.array_equal(mito, values[:, is_mito].sum(axis=1)) and mito.any()
    assert np.array_equal(n_counted, (values[:, is_counted] > 0).sum(axis=1))
    assert {np.diff(counts.indptr)[r] % 2 for r in range(80)} == {0, 1}
