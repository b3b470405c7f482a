"""The GEARS-format loader on small files of the shape GEARS publishes (perturb_processed.h5ad)."""
import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from test_sciplex import ENSEMBL

from gc_lib.inputs.gears_data import condition_genes, load_gears_dataset

SYMBOLS = ["TP53", "GAPDH", "ACTB", "MYC", "EGFR", "NOTAGENE1"]
CONDITIONS = ["ctrl"] * 4 + ["TP53+ctrl"] * 3 + ["ctrl+MYC"] * 3 + ["TP53+MYC"] * 2


def write_gears(path, *, var_index=None, conditions=CONDITIONS, obs_drop=(), values=None):
    rng = np.random.default_rng(0)
    X = values if values is not None else np.log1p(rng.poisson(3, (len(conditions), len(SYMBOLS)))).astype(np.float32)
    obs = pd.DataFrame({"condition": conditions, "cell_type": "K562", "control": [int(c == "ctrl") for c in conditions],
                        "dose_val": "1", "condition_name": [f"K562_{c}_1" for c in conditions]},
                       index=[f"cell{i}" for i in range(len(conditions))]).drop(columns=list(obs_drop))
    var = pd.DataFrame({"gene_name": SYMBOLS}, index=var_index or SYMBOLS)
    ad.AnnData(sp.csr_matrix(X), obs=obs, var=var).write_h5ad(path)
    return path, X


def test_condition_genes_parses_gears_conditions():
    assert condition_genes("ctrl") == () and condition_genes("ctrl+A") == ("A",)
    assert condition_genes("A+B") == ("A", "B")
    for bad in ("A", "A+B+C", "+A", "ctrl+ctrl+A"):
        with pytest.raises(ValueError, match="GEARS's format"):
            condition_genes(bad)


def test_symbols_become_ensembl_ids_and_gene_names_stay(tmp_path):
    path, X = write_gears(tmp_path / "perturb_processed.h5ad")
    adata = load_gears_dataset(path)
    assert list(adata.var_names) == [ENSEMBL[s] for s in SYMBOLS[:5]]               # the unknown symbol dropped
    assert list(adata.var["gene_name"]) == SYMBOLS[:5]
    np.testing.assert_allclose(adata.X.toarray(), X[:, :5])
    info = adata.uns["gc_lib"]
    assert info["conditions"] == {"conditions": 4, "singles": 2, "doubles": 1, "perturbed_genes_not_measured": 0}
    assert info["gene_mapping"]["kept"] == 5 and (adata.obs["species"] == "human").all()


def test_ensembl_var_names_are_kept(tmp_path):
    ids = [ENSEMBL[s] for s in SYMBOLS[:5]] + ["ENSG00000000005"]
    path, _ = write_gears(tmp_path / "perturb_processed.h5ad", var_index=ids)
    adata = load_gears_dataset(path)
    assert list(adata.var_names) == ids and list(adata.var["gene_name"]) == SYMBOLS


def test_bad_files_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"obs lacks \['cell_type'\]"):
        load_gears_dataset(write_gears(tmp_path / "a.h5ad", obs_drop=("cell_type",))[0])
    with pytest.raises(ValueError, match="no control cells"):
        load_gears_dataset(write_gears(tmp_path / "b.h5ad", conditions=["TP53+ctrl"] * 12)[0])
    with pytest.raises(ValueError, match="GEARS's format"):
        load_gears_dataset(write_gears(tmp_path / "c.h5ad", conditions=["ctrl"] * 11 + ["TP53"])[0])
    negative = -np.ones((len(CONDITIONS), len(SYMBOLS)), dtype=np.float32)
    with pytest.raises(ValueError, match="non-negative log-normalised"):
        load_gears_dataset(write_gears(tmp_path / "d.h5ad", values=negative)[0])
    with pytest.raises(FileNotFoundError):
        load_gears_dataset(tmp_path / "missing.h5ad")
