"""describe_store reads only var's index and gene_symbol column: the same gene IDs and symbols as anndata's whole
var, from .h5ad and .zarr, with categorical and missing symbols, extra columns, and no gene_symbol column."""
import anndata as ad
import numpy as np
import pandas as pd
import pytest
from synthetic import HUMAN, count_cells

from gc_lib.corpus._count_store import describe_store


def _write(adata: ad.AnnData, path) -> str:
    if str(path).endswith(".zarr"):
        adata.write_zarr(path)
    else:
        adata.write_h5ad(path)
    return path


@pytest.mark.parametrize("suffix", [".h5ad", ".zarr"])
@pytest.mark.parametrize("symbols", ["strings", "categorical_with_missing", "absent"])
def test_gene_ids_and_symbols_match_anndata(tmp_path, suffix, symbols):
    adata = count_cells(12, HUMAN, "human", seed=0)
    adata.var["ensembl_id"] = adata.var_names.str.lower()        # a column describe_store does not need
    adata.var["n_cells"] = np.arange(adata.n_vars)
    if symbols == "categorical_with_missing":
        adata.var["gene_symbol"] = pd.Categorical(["A", None, "B", "A"] * (adata.n_vars // 4))
    elif symbols == "absent":
        del adata.var["gene_symbol"]
    adata.obs["dataset"] = "d1"
    path = _write(adata, tmp_path / f"x{suffix}")
    info = describe_store(path)
    var = (ad.read_zarr(path) if suffix == ".zarr" else ad.read_h5ad(path)).var
    assert list(info.gene_ids) == list(var.index.astype(str)) == HUMAN
    expected = var["gene_symbol"].astype(str).to_list() if symbols != "absent" else [""] * len(HUMAN)
    assert list(info.symbols) == expected
    if symbols == "categorical_with_missing":
        assert info.symbols[1] == "nan" and info.symbols[2] == "B"
    assert (info.dataset, info.species, info.n_cells, info.counts_location) == ("d1", "human", 12, "X")


def test_a_var_index_of_other_ids_is_refused(tmp_path):
    adata = count_cells(5, HUMAN, "human", seed=1)
    adata.var_names = [f"gene{i}" for i in range(adata.n_vars)]
    with pytest.raises(ValueError, match="not Ensembl gene IDs"):
        describe_store(_write(adata, tmp_path / "x.h5ad"))
