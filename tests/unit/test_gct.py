"""The GCT 1.3 reader on a hand-written file, and on the real L1000 plate of the offline mirror when it is there."""
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gc_lib.core import paths
from gc_lib.inputs.gct import L1000_VALUE_KIND, l1000_to_contract, read_gct

#: 3 genes × 4 wells, 3 row- and 3 column-metadata fields; -666 and an empty cell as missing values.
FIXTURE = "\n".join([
    "#1.3",
    "3\t4\t3\t3",
    "id\tpr_gene_id\tpr_gene_symbol\tpr_is_lmark\tw1\tw2\tw3\tw4",
    "pert_iname\tna\tna\tna\tDMSO\tdrugA\tdrugA\tdrugB",
    "pert_dose\tna\tna\tna\t-666\t0.04\t10\t1.11",
    "pert_time\tna\tna\tna\t24\t24\t24\t24",
    "p1\t5720\tPSME1\t1\t11.5\t11.25\t-666\t10",
    "p2\t-666\tCISD1\t1\t8.5\t8.0\t7.75\t8.25",
    "p3\t7416\t\t0\t9\t9.5\t9.25\t9.125",
]) + "\n"
# the team's offline mirror: GC_LIB_MIRROR when set (make and .ci/run set it), else ../shared/mirror
MIRROR_PLATE = Path(os.environ.get("GC_LIB_MIRROR") or paths.ROOT.parent / "shared" / "mirror") / "l1000" / \
    "test_l1000.gct"


@pytest.fixture()
def gct(tmp_path) -> Path:
    path = tmp_path / "toy.gct"
    path.write_text(FIXTURE)
    return path


def test_read_gct_shapes_types_and_missing_values(gct):
    adata = read_gct(gct)
    assert adata.shape == (4, 3) and adata.X.dtype == np.float32
    assert list(adata.obs_names) == ["w1", "w2", "w3", "w4"] and list(adata.var_names) == ["p1", "p2", "p3"]
    # X is the matrix transposed: row p1, column w2 → X[w2, p1]
    assert adata.X[1, 0] == 11.25 and adata.X[3, 2] == 9.125 and np.isnan(adata.X[2, 0])
    obs, var = adata.obs, adata.var
    assert obs["pert_dose"].dtype == float and np.isnan(obs.loc["w1", "pert_dose"])
    assert obs.loc["w3", "pert_dose"] == 10.0 and obs["pert_time"].dtype == np.int64
    assert isinstance(obs["pert_iname"].dtype, pd.CategoricalDtype) and obs.loc["w4", "pert_iname"] == "drugB"
    assert var["pr_gene_id"].dtype == float and np.isnan(var.loc["p2", "pr_gene_id"])  # -666: missing
    assert pd.isna(var.loc["p3", "pr_gene_symbol"]) and var["pr_is_lmark"].dtype == np.int64
    assert adata.uns["gc_lib"]["format"] == "GCT 1.3"


@pytest.mark.parametrize(("edit", "message"), [
    (lambda t: t.replace("#1.3", "#1.2", 1), r"not a GCT 1\.3 file: line 1 is '#1\.2'"),
    (lambda t: t.replace("3\t4\t3\t3", "3\t4\t3", 1), "line 2 must hold 4 counts"),
    (lambda t: t.replace("\tw4\n", "\n", 1), r"the header \(line 3\) has 7 fields, expected"),
    (lambda t: t.replace("p3\t7416\t\t0\t9\t9.5\t9.25\t9.125\n", ""),
     r"5 rows after the header, expected n_col_meta \+ n_rows = 3 \+ 3 = 6"),
    (lambda t: t.replace("\t7.75\t", "\t", 1), "line 8 has 7 fields, expected 8"),
    (lambda t: t.replace("\t7.75\t", "\tlow\t", 1), r"line 8: value 'low' of column 'w3' is not a number"),
    (lambda t: t.replace("\tw4\n", "\tw3\n", 1), r"duplicated column IDs: \['w3'\]"),
])
def test_malformed_gct_raises_naming_the_problem(gct, edit, message):
    gct.write_text(edit(FIXTURE))
    with pytest.raises(ValueError, match=message):
        read_gct(gct)


def _have_annotation() -> bool:
    from gc_lib.inputs.sources import SOURCES

    return all(SOURCES[s].local_path.exists() for s in ("org_hs_eg_db", "hgnc_genes"))


@pytest.mark.skipif(not MIRROR_PLATE.exists(), reason=f"no offline mirror copy at {MIRROR_PLATE}")
def test_real_l1000_plate_reads_and_maps(tmp_path):
    adata = read_gct(MIRROR_PLATE)
    assert adata.shape == (377, 978) and not np.isnan(adata.X).any()
    obs = adata.obs
    assert {"pert_dose", "pert_iname", "pert_id", "pert_type"} <= set(obs.columns)
    assert obs["pert_dose"].dtype == float and (obs["pert_type"] == "ctl_vehicle").sum() == 26
    treated = obs[obs["pert_type"] != "ctl_vehicle"]
    assert treated["pert_iname"].nunique() == 59 and sorted(treated["pert_dose"].unique()) == [
        0.04, 0.12, 0.37, 1.11, 3.33, 10.0]
    if not _have_annotation():
        pytest.skip("org.Hs.eg.db / HGNC table not in data/raw (fetch them with gc_lib.inputs.sources.fetch)")
    mapped, report = l1000_to_contract(adata)
    print(f"L1000 plate: {report['mapped']} of {report['genes']} genes mapped ({report['by_entrez']} by Entrez, "
          f"{report['by_symbol']} by symbol), dropped {report['dropped']}")
    assert report["mapped"] >= 950 and mapped.n_vars == report["mapped"] == report["genes"] - report["dropped"]
    assert mapped.var_names.str.fullmatch(r"ENSG\d{11}").all() and mapped.var_names.is_unique
    assert mapped.var.loc[mapped.var["probe_id"] == "200814_at", "gene_symbol"].item() == "PSME1"
    assert (mapped.obs["species"] == "human").all() and mapped.uns["gc_lib"]["value_kind"] == L1000_VALUE_KIND
    # values are carried over untouched (log2 expression, not counts)
    column = list(adata.var_names).index("200814_at")
    np.testing.assert_array_equal(mapped.X[:, list(mapped.var["probe_id"]).index("200814_at")], adata.X[:, column])
    mapped.write_h5ad(tmp_path / "plate.h5ad")  # metadata with missing values is writable


def test_mapping_by_entrez_then_symbol_reports_what_is_dropped(tmp_path, monkeypatch):
    """Entrez first (alternate-locus IDs ignored, several HGNC IDs: left to the symbol), then symbols; unmapped
    genes and later duplicates of an Ensembl ID are dropped and named in the report."""
    import sqlite3

    from anndata import AnnData

    from gc_lib.inputs import gct

    db = tmp_path / "orgdb.sqlite"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE genes (_id INTEGER PRIMARY KEY, gene_id TEXT)")
        con.execute("CREATE TABLE ensembl (_id INTEGER, ensembl_id TEXT)")
        con.executemany("INSERT INTO genes VALUES (?, ?)", [(1, "5720"), (2, "7416"), (3, "1111")])
        con.executemany("INSERT INTO ensembl VALUES (?, ?)", [
            (1, "ENSG00000092010"), (1, "ENSG00000999999"),  # the second: an alternate locus, not in HGNC
            (2, "ENSG00000213585"), (2, "ENSG00000000001"),  # two HGNC genes: ambiguous, left to the symbol
            (3, "ENSG00000092010")])                         # same gene as Entrez 5720: a duplicate
    hgnc = ["ENSG00000092010", "ENSG00000213585", "ENSG00000000001", "ENSG00000122873"]
    monkeypatch.setattr(gct, "gene_table", lambda species: pd.DataFrame({"ensembl_id": hgnc}))
    known = {"CISD1": "ENSG00000122873", "VDAC1": "ENSG00000213585"}

    def fake_symbols(symbols, species):
        ids = pd.Series([known.get(s) for s in symbols], index=pd.Index(symbols), dtype=object)
        return ids, {"symbols": len(symbols), "approved": int(ids.notna().sum()), "unknown": int(ids.isna().sum())}
    monkeypatch.setattr(gct, "map_symbols_to_ensembl", fake_symbols)
    var = pd.DataFrame({"pr_gene_id": [5720, np.nan, 7416, np.nan, 1111],
                        "pr_gene_symbol": ["PSME1", "CISD1", "VDAC1", "NOTAGENE", "PSME1B"]},
                       index=[f"probe{i}" for i in range(5)])
    adata = AnnData(np.arange(10, dtype=np.float32).reshape(2, 5), var=var)
    mapped, report = gct.l1000_to_contract(adata, orgdb_path=db)
    assert list(mapped.var_names) == ["ENSG00000092010", "ENSG00000122873", "ENSG00000213585"]
    assert list(mapped.var["gene_symbol"]) == ["PSME1", "CISD1", "VDAC1"]
    assert list(mapped.var["id_source"]) == ["entrez", "symbol", "symbol"]
    assert (report["by_entrez"], report["by_symbol"], report["mapped"], report["dropped"]) == (2, 2, 3, 2)
    assert report["unmapped"] == ["NOTAGENE"] and report["duplicates"] == ["PSME1B"]
    np.testing.assert_array_equal(mapped.X, adata.X[:, [0, 1, 2]])
    assert "species" not in adata.obs and "pr_gene_symbol" in adata.var  # the input is not modified
    with pytest.raises(ValueError, match="no column 'entrez'"):
        gct.l1000_to_contract(adata, entrez_column="entrez", orgdb_path=db)
