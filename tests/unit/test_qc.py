import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

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
