"""Gene symbols in: AnnData with symbols as var_names (as scanpy writes it) or in a symbol column goes through the
contract's door (to_contract, read_h5ad, iter_h5ad_chunks, Tokenizer.tokenize), mapped through the real HGNC/MGI
tables of the offline bundle (fetched into data/raw on first use, as in test_genes.py)."""
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from gc_lib.corpus.tokenizer import Tokenizer
from gc_lib.corpus.vocab import build_vocabulary
from gc_lib.inputs.atlas import iter_h5ad_chunks, read_h5ad
from gc_lib.inputs.contract import check_counts_adata, is_entrez_gene_id
from gc_lib.inputs.conversion import map_genes, to_contract

TP53, GAPDH, A2ML1 = "ENSG00000141510", "ENSG00000111640", "ENSG00000166535"
# approved, approved, alias of TP53 (summed into it), previous symbol of A2ML1, ambiguous previous symbol, made up
SYMBOLS = ["TP53", "GAPDH", "p53", "CPAMD9", "AK3L1", "NOTAGENE1"]
COUNTS = np.array([[1, 2, 3, 4, 5, 6],
                   [0, 7, 1, 0, 2, 9],
                   [4, 0, 0, 1, 0, 3]], dtype=np.float32)
MAPPING = {"source": "var_names", "symbols": 6, "approved": 2, "previous": 1, "alias": 1, "ambiguous": 1,
           "unknown": 1, "mapped": 4, "mapped_fraction": 4 / 6}


def scanpy_style(counts=COUNTS, symbols=SYMBOLS) -> ad.AnnData:
    """What a scanpy user has: counts in X, gene symbols as var_names, nothing else in var."""
    obs = pd.DataFrame({"cell_type": ["T", "B", "T"][:len(counts)]}, index=[f"c{i}" for i in range(len(counts))])
    return ad.AnnData(sp.csr_matrix(counts), obs=obs, var=pd.DataFrame(index=list(symbols)))


def expected_counts(counts=COUNTS) -> np.ndarray:
    """Columns TP53 (+ its alias p53), GAPDH, A2ML1; the ambiguous and unknown symbols dropped."""
    return np.c_[counts[:, 0] + counts[:, 2], counts[:, 1], counts[:, 3]]


def test_scanpy_style_anndata_goes_through_to_contract_with_no_extra_argument():
    with pytest.warns(UserWarning, match=r"only 4 of 6 gene symbols in var_names \(67%\).*ambiguous 1, unknown 1"):
        out = to_contract(scanpy_style(), species="human")
    check_counts_adata(out)
    assert list(out.var_names) == [TP53, GAPDH, A2ML1]
    assert list(out.var["gene_symbol"]) == ["TP53", "GAPDH", "CPAMD9"]  # the symbol as given, first of a sum
    np.testing.assert_array_equal(out.X.toarray(), expected_counts())
    info = out.uns["gc_lib"]
    assert info["symbol_mapping"] == MAPPING
    assert info["gene_id_source"] == "symbols in var_names" and info["symbol_source"] == "var_names"
    assert (info["dropped_genes"], info["summed_duplicate_genes"]) == (2, 1)
    assert list(out.obs["cell_type"]) == ["T", "B", "T"] and set(out.obs["species"]) == {"human"}


def test_no_warning_when_most_symbols_map():
    symbols = ["TP53", "GAPDH", "ACTB", "CD3E", "NOTAGENE1"]  # 4 of 5 = 80 %: not under the threshold
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = to_contract(scanpy_style(COUNTS[:, :5], symbols), species="human")
    assert out.n_vars == 4 and out.uns["gc_lib"]["symbol_mapping"]["mapped_fraction"] == 0.8


def test_input_is_not_modified_and_mouse_symbols_use_mgi():
    adata = scanpy_style(COUNTS[:, :3], ["Trp53", "Gapdh", "p53"])
    before = adata.var.copy(), adata.X.toarray().copy()
    out = to_contract(adata, species="mouse")
    assert list(out.var_names) == ["ENSMUSG00000059552", "ENSMUSG00000057666"]
    np.testing.assert_array_equal(out.X.toarray(), np.c_[COUNTS[:, 0] + COUNTS[:, 2], COUNTS[:, 1]])
    pd.testing.assert_frame_equal(adata.var, before[0])
    np.testing.assert_array_equal(adata.X.toarray(), before[1])


@pytest.mark.parametrize("column", ["gene_symbol", "feature_name", "gene_symbols"])
@pytest.mark.parametrize("names", [[f"GeneID:{i}" for i in (7157, 2597, 1, 2, 3, 4)],
                                   [str(i) for i in range(6)]])
def test_entrez_or_integer_var_names_fall_back_to_a_symbol_column(column, names):
    adata = scanpy_style()
    adata.var = pd.DataFrame({column: SYMBOLS}, index=names)
    with pytest.warns(UserWarning, match=f"in var\\['{column}'\\]"):
        out = to_contract(adata, species="human")
    assert list(out.var_names) == [TP53, GAPDH, A2ML1] and list(out.var["gene_symbol"]) == ["TP53", "GAPDH", "CPAMD9"]
    assert column == "gene_symbol" or column not in out.var  # the source column is not left beside gene_symbol
    np.testing.assert_array_equal(out.X.toarray(), expected_counts())
    assert out.uns["gc_lib"]["symbol_mapping"] == {**MAPPING, "source": f"var[{column!r}]"}


def test_an_id_column_of_entrez_ids_does_not_stop_the_symbols():
    adata = scanpy_style()
    adata.var["gene_ids"] = [f"GeneID:{i}" for i in range(6)]
    with pytest.warns(UserWarning):
        out = to_contract(adata, species="human")
    assert list(out.var_names) == [TP53, GAPDH, A2ML1]
    assert "gene_ids" in out.var  # an unused column is carried over as it is


def test_entrez_pattern():
    assert is_entrez_gene_id(["GeneID:7157", "7157", " 42 ", "TP53", "ENSG00000141510", "GeneID:"]).tolist() == \
        [True, True, True, False, False, False]


def test_nothing_to_map_names_what_was_tried():
    adata = scanpy_style()
    adata.var = pd.DataFrame(index=[f"GeneID:{i}" for i in range(6)])
    with pytest.raises(ValueError, match=r"no genes found. Tried Ensembl IDs: var_names are not Ensembl gene IDs .*"
                                         r"Entrez.*none of the ID columns.*Tried gene symbols: var has none of the "
                                         r"symbol columns.*gene_id_column=.*symbol_column="):
        to_contract(adata, species="human")


def test_symbols_of_the_wrong_species_are_refused():
    with pytest.raises(ValueError, match=r"none of the 3 in var_names \(e.g. \['Trp53'.*human symbol.*unknown 3.*"
                                         r"species='human' right"):
        to_contract(scanpy_style(COUNTS[:, :3], ["Trp53", "Gapdh", "Actb"]), species="human")


def test_read_h5ad_and_chunks_map_symbols_like_to_contract(tmp_path):
    path = tmp_path / "scanpy.h5ad"
    scanpy_style().write_h5ad(path)
    with pytest.warns(UserWarning, match="only 4 of 6"):
        memory = read_h5ad(path, species="human")
    with pytest.warns(UserWarning, match="only 4 of 6"):
        backed = read_h5ad(path, species="human", backed=True)
    with pytest.warns(UserWarning, match="only 4 of 6"):
        chunks = list(iter_h5ad_chunks(path, species="human", chunk_size=2))
    for got in (memory, backed, ad.concat(chunks)):
        assert list(got.var_names) == [TP53, GAPDH, A2ML1]
        np.testing.assert_array_equal(got.X.toarray(), expected_counts())
    for info in (memory.uns["gc_lib"], backed.uns["gc_lib"], chunks[0].uns["gc_lib"], chunks[1].uns["gc_lib"]):
        assert info["symbol_mapping"] == MAPPING
    assert [c.uns["gc_lib"]["rows"] for c in chunks] == [[0, 2], [2, 3]]


def test_map_genes_keeps_every_cell_in_order():
    counts = COUNTS.copy()
    counts[1, :4] = 0  # cell 1 has counts only in the dropped genes
    with pytest.warns(UserWarning):
        out = map_genes(scanpy_style(counts), species="human")
    assert list(out.obs_names) == ["c0", "c1", "c2"] and set(out.obs["species"]) == {"human"}
    np.testing.assert_array_equal(out.X.toarray(), expected_counts(counts))
    assert out.uns["gc_lib"]["symbol_mapping"]["mapped"] == 4


@pytest.fixture()
def tokenizer():
    genes = pd.DataFrame({"gene_id": [TP53, GAPDH, A2ML1], "species": "human", "symbol": ["TP53", "GAPDH", "A2ML1"]})
    return Tokenizer(build_vocabulary(genes), np.r_[[np.nan] * 4, 1.0, 2.0, 3.0])


def test_tokenizer_maps_symbols_as_the_contract_does(tokenizer):
    with pytest.warns(UserWarning, match="only 4 of 6"):
        from_symbols = tokenizer.tokenize(scanpy_style(), species="human", dataset="d")
        contract = to_contract(scanpy_style(), species="human")
    assert from_symbols.equals(tokenizer.tokenize(contract, dataset="d"))
    assert from_symbols.column("length").to_pylist() == [3, 2, 2]


def test_tokenizer_skips_cells_emptied_by_dropped_genes_and_keeps_source_rows(tokenizer):
    counts = COUNTS.copy()
    counts[1, :4] = 0
    adata = scanpy_style(counts)
    adata.obs["species"] = "human"  # species from obs
    with pytest.warns(UserWarning):
        out = tokenizer.tokenize(adata)
    assert out.column("row").to_pylist() == [0, 2]


def test_tokenizer_needs_a_species_for_symbols(tokenizer):
    with pytest.raises(ValueError, match="obs\\['species'\\] is missing: set it or pass species="):
        tokenizer.tokenize(scanpy_style())
    adata = scanpy_style()
    adata.obs["species"] = "human"
    with pytest.raises(ValueError, match="species='mouse' but obs\\['species'\\] is 'human'"):
        tokenizer.tokenize(adata, species="mouse")
