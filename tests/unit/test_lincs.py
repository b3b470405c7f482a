"""gc_lib.inputs.lincs: GCTX reading and LINCS Level-5 signatures into the dose contract, on tiny files of the real
release's shape (GSE92742 / GSE70138: a .gctx in CMap's HDF5 layout, sig_info, pert_info and gene_info TSVs).

Gene mapping uses the bundle's org.Hs.eg.db and HGNC table (those tests are skipped when they are not in data/raw).
"""
import h5py
import numpy as np
import pandas as pd
import pytest

from gc_lib.inputs import lincs
from gc_lib.inputs.lincs import LINCS_VALUE_KIND, load_lincs_level5, parse_dose_um, parse_time_h, read_gctx

# rows of the GCTX: Entrez IDs. 5720 (PSME1) is not a landmark; 999999999 is not in gene_info
GENES = [("7157", "TP53", 1), ("2597", "GAPDH", 1), ("60", "ACTB", 1), ("4609", "MYC", 1), ("1956", "EGFR", 1),
         ("5720", "PSME1", 0)]
ROW_IDS = [g[0] for g in GENES] + ["999999999"]
ENSEMBL = ["ENSG00000141510", "ENSG00000111640", "ENSG00000075624", "ENSG00000136997", "ENSG00000146648"]
# GSE92742 sig_info: numeric pert_dose with its unit, and the text pert_idose beside it
SIGNATURES = [  # sig_id, pert_id, pert_iname, pert_type, cell_id, pert_dose, unit, pert_idose, pert_time
    ("CPC001_A375_24H:BRD-K1:10", "BRD-K1", "vorinostat", "trt_cp", "A375", "10", "µM", "10 µM", "24"),
    ("CPC001_A375_24H:BRD-K1:0.37", "BRD-K1", "vorinostat", "trt_cp", "A375", "0.37", "µM", "370 nM", "24"),
    ("CPC002_MCF7_6H:BRD-K2:1.11", "BRD-K2", "drugnosmiles", "trt_cp", "MCF7", "1.11", "µM", "1.11 µM", "6"),
    ("CPC003_A375_24H:BRD-K3:3.33", "BRD-K3", "notintable", "trt_cp", "A375", "3.33", "µM", "3.33 µM", "24"),
    ("CPC001_A375_24H:DMSO:-666", "DMSO", "DMSO", "ctl_vehicle", "A375", "0.1", "%", "0.1 %", "24"),
    ("KDA001_A375_96H:TRCN1:-666", "TRCN1", "TP53", "trt_sh", "A375", "-666", "-666", "-666", "96"),
    ("CPC009_A375_24H:BRD-K1:1.11", "BRD-K1", "vorinostat", "trt_cp", "A375", "1.11", "µM", "1.11 µM", "24"),
]
IN_GCTX = [s[0] for s in SIGNATURES[:6]]  # the last signature of sig_info has no column in the GCTX


def matrix() -> np.ndarray:
    """Signatures × genes (as stored: one HDF5 row per signature), every value distinct."""
    return (np.arange(len(IN_GCTX) * len(ROW_IDS), dtype=np.float32).reshape(len(IN_GCTX), len(ROW_IDS)) / 10 - 2)


def write_gctx(path, values=None, col_ids=IN_GCTX):
    values = matrix() if values is None else values
    with h5py.File(path, "w") as f:
        f.attrs["version"] = "GCTX1.0"
        f.create_dataset("/0/DATA/0/matrix", data=values, chunks=(1, values.shape[1]))
        f.create_dataset("/0/META/ROW/id", data=np.array(ROW_IDS, dtype="S"))
        f.create_dataset("/0/META/ROW/pr_gene_symbol", data=np.array([g[1] for g in GENES] + ["-666"], dtype="S"))
        f.create_dataset("/0/META/COL/id", data=np.array(col_ids, dtype="S"))
        f.create_dataset("/0/META/COL/distil_nsample", data=np.array([3, 4, 3, -666, 8, 2][:len(col_ids)]))
    return path


def write_tables(tmp_path, *, sig_rows=SIGNATURES, sig_columns=None, smiles_column="canonical_smiles"):
    columns = sig_columns or ["sig_id", "pert_id", "pert_iname", "pert_type", "cell_id", "pert_dose",
                              "pert_dose_unit", "pert_idose", "pert_time"]
    sig = pd.DataFrame(sig_rows, columns=["sig_id", "pert_id", "pert_iname", "pert_type", "cell_id", "pert_dose",
                                          "pert_dose_unit", "pert_idose", "pert_time"])
    sig["pert_time_unit"] = "h"
    sig["pert_itime"] = sig["pert_time"] + " h"
    sig[[c for c in columns if c in sig.columns]].to_csv(tmp_path / "sig_info.txt", sep="\t", index=False)
    pd.DataFrame({"pert_id": ["BRD-K1", "BRD-K2", "DMSO", "BRD-K1"],
                  smiles_column: ["ONC(=O)CCCCCCC(=O)Nc1ccccc1", "-666", "CS(C)=O", "C"],
                  "pert_iname": ["vorinostat", "drugnosmiles", "DMSO", "vorinostat"]}).to_csv(
        tmp_path / "pert_info.txt", sep="\t", index=False)
    pd.DataFrame({"pr_gene_id": [g[0] for g in GENES], "pr_gene_symbol": [g[1] for g in GENES],
                  "pr_gene_title": "title", "pr_is_lm": [g[2] for g in GENES], "pr_is_bing": 1}).to_csv(
        tmp_path / "gene_info.txt", sep="\t", index=False)
    return tmp_path / "sig_info.txt", tmp_path / "pert_info.txt", tmp_path / "gene_info.txt"


@pytest.fixture()
def release(tmp_path):
    gctx = write_gctx(tmp_path / "level5_modz_n6x7.gctx")
    return (gctx, *write_tables(tmp_path))


# --- GCTX ---------------------------------------------------------------------------------------------------------

def test_read_gctx_whole_file(tmp_path):
    adata = read_gctx(write_gctx(tmp_path / "x.gctx"))
    assert adata.shape == (6, 7) and adata.X.dtype == np.float32
    np.testing.assert_array_equal(adata.X, matrix())
    assert list(adata.obs_names) == IN_GCTX and list(adata.var_names) == ROW_IDS
    assert adata.var.loc["7157", "pr_gene_symbol"] == "TP53" and pd.isna(adata.var.loc["999999999", "pr_gene_symbol"])
    assert adata.obs["distil_nsample"].dtype == float and np.isnan(adata.obs["distil_nsample"].iloc[3])  # -666


@pytest.mark.parametrize("block", [1, 2, 1024])
def test_subset_reads_equal_the_full_read(tmp_path, monkeypatch, block):
    monkeypatch.setattr(lincs, "_READ_BLOCK", block)  # blocks of 1, 2 and all: slices and fancy indexing
    path = write_gctx(tmp_path / "x.gctx")
    full = read_gctx(path)
    cids, rids = [IN_GCTX[4], IN_GCTX[0], IN_GCTX[5], IN_GCTX[2]], ["1956", "7157", "60"]
    part = read_gctx(path, cids=cids, rids=rids)
    assert list(part.obs_names) == cids and list(part.var_names) == rids  # in the order asked for
    np.testing.assert_array_equal(part.X, full[cids, rids].X)
    np.testing.assert_array_equal(read_gctx(path, cids=cids).X, full[cids].X)
    np.testing.assert_array_equal(read_gctx(path, rids=rids).X, full[:, rids].X)


def test_gctx_errors_name_the_problem(tmp_path):
    path = write_gctx(tmp_path / "x.gctx")
    with pytest.raises(ValueError, match=r"1 column IDs are not in the file, e.g. \['nope'\]"):
        read_gctx(path, cids=[IN_GCTX[0], "nope"])
    with pytest.raises(ValueError, match=r"duplicated row IDs requested: \['60'\]"):
        read_gctx(path, rids=["60", "60"])
    wrong = write_gctx(tmp_path / "wrong.gctx", values=matrix().T.copy())
    with pytest.raises(ValueError, match=r"has shape \(7, 6\), expected \(columns, rows\) = \(6, 7\)"):
        read_gctx(wrong)
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f.create_dataset("matrix", data=matrix())
    with pytest.raises(ValueError, match="not a GCTX file: no /0/META/ROW/id dataset"):
        read_gctx(tmp_path / "plain.h5")


# --- units --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "unit", "um"), [
    ("10.0 um", "", 10.0), ("10 uM", "", 10.0), ("10 µM", "", 10.0), ("10 μM", "", 10.0), ("500 nM", "", 0.5),
    ("1 mM", "", 1000.0), ("10", "µM", 10.0), ("3.33", "um", 3.33), ("1e-6 M", "", 1.0)])
def test_parse_dose_um(text, unit, um):
    assert parse_dose_um(text, unit) == pytest.approx(um)


def test_parse_missing_and_bad_values():
    assert np.isnan(parse_dose_um("-666")) and np.isnan(parse_dose_um("")) and np.isnan(parse_time_h("-666"))
    assert parse_time_h("24 h") == 24.0 and parse_time_h("6", "h") == 6.0 and parse_time_h("2 d") == 48.0
    with pytest.raises(ValueError, match=r"dose '1 ng/mL': unknown unit 'ng/mL'"):
        parse_dose_um("1 ng/mL")
    with pytest.raises(ValueError, match=r"dose '-1 uM' is negative"):
        parse_dose_um("-1 uM")
    with pytest.raises(ValueError, match=r"dose 'ten uM' is not a number with a unit"):
        parse_dose_um("ten uM")


# --- Level 5 ------------------------------------------------------------------------------------------------------

def test_level5_compounds_landmarks_and_dose_contract(release, tmp_path):
    adata = load_lincs_level5(*release)
    assert list(adata.obs_names) == IN_GCTX[:4] and adata.shape == (4, 5)  # trt_cp in the GCTX × 5 landmarks
    assert list(adata.var_names) == ENSEMBL and list(adata.var["gene_symbol"][:2]) == ["TP53", "GAPDH"]
    obs = adata.obs
    assert list(obs["drug"]) == ["vorinostat", "vorinostat", "drugnosmiles", "notintable"]
    np.testing.assert_allclose(obs["dose"], [10.0, 0.37, 1.11, 3.33])
    np.testing.assert_allclose(obs["time_h"], [24, 24, 6, 24])
    assert list(obs["cell_line"]) == ["A375", "A375", "MCF7", "A375"] and (obs["species"] == "human").all()
    assert obs["smiles"].iloc[0] == "ONC(=O)CCCCCCC(=O)Nc1ccccc1"  # the first row of a duplicated pert_id
    assert obs["smiles"].iloc[2:].isna().all()  # "-666" in the table, and a compound missing from it
    assert list(obs["pert_id"][:1]) == ["BRD-K1"] and "pert_idose" in obs and "distil_nsample" in obs
    # values are the GCTX's, unchanged, for the landmark rows
    np.testing.assert_array_equal(adata.X, matrix()[:4, :5])
    info = adata.uns["gc_lib"]
    assert info["value_kind"] == LINCS_VALUE_KIND and "moderated z-scores" in info["value_kind"]
    sig = info["signatures"]
    assert (sig["selected"], sig["not_in_gctx"], sig["sampled"], sig["missing_smiles"]) == (5, 1, 4, 2)
    assert sig["missing_smiles_drugs"] == ["drugnosmiles", "notintable"]
    assert sig["dose_from"] == "pert_dose (pert_dose_unit)" and sig["missing_dose"] == 0
    assert info["gene_mapping"]["mapped"] == 5 and info["gene_mapping"]["by_entrez"] == 5
    adata.write_h5ad(tmp_path / "out.h5ad")  # the result is writable


def test_level5_controls_cell_lines_all_genes_and_sampling(release):
    with_controls = load_lincs_level5(*release, pert_type=["trt_cp", "ctl_vehicle"], cell_lines=["A375"])
    control = with_controls.obs.loc["CPC001_A375_24H:DMSO:-666"]
    assert control["drug"] == "control" and control["dose"] == 0.0 and control["pert_iname"] == "DMSO"
    assert set(with_controls.obs["cell_line"]) == {"A375"} and with_controls.n_obs == 4
    every_gene = load_lincs_level5(*release, landmark_only=False)
    assert every_gene.n_vars == 6 and "ENSG00000092010" in every_gene.var_names  # PSME1, not a landmark
    sample = load_lincs_level5(*release, max_signatures=2, seed=3)
    again = load_lincs_level5(*release, max_signatures=2, seed=3)
    assert sample.n_obs == 2 and list(sample.obs_names) == list(again.obs_names)
    full = load_lincs_level5(*release)
    assert list(sample.obs_names) == [s for s in full.obs_names if s in set(sample.obs_names)]  # file order
    np.testing.assert_array_equal(sample.X, full[sample.obs_names].X)


def test_level5_gse70138_text_doses_and_smiles_column(tmp_path):
    rows = [r[:7] + (idose,) + r[8:] for r, idose in zip(SIGNATURES, ["10.0 um", "370 nM", "1.11 uM", "3.33 um",
                                                                       "0.1 %", "-666", "1 um"])]
    tables = write_tables(tmp_path, sig_rows=rows, smiles_column="smiles", sig_columns=[
        "sig_id", "pert_id", "pert_iname", "pert_type", "cell_id", "pert_idose", "pert_itime"])
    adata = load_lincs_level5(write_gctx(tmp_path / "x.gctx"), *tables)
    np.testing.assert_allclose(adata.obs["dose"], [10.0, 0.37, 1.11, 3.33])
    np.testing.assert_allclose(adata.obs["time_h"], [24, 24, 6, 24])
    assert adata.obs["smiles"].iloc[0] == "ONC(=O)CCCCCCC(=O)Nc1ccccc1"
    assert adata.uns["gc_lib"]["signatures"]["dose_from"] == "pert_idose"


def test_level5_errors_name_the_table_and_column(release, tmp_path):
    gctx, sig_info, pert_info, gene_info = release
    table = pd.read_csv(sig_info, sep="\t", dtype=str)
    table.drop(columns=["cell_id"]).to_csv(tmp_path / "no_cell.txt", sep="\t", index=False)
    with pytest.raises(ValueError, match=r"sig_info .*no column 'cell_id' \(needed: .*columns found: \['sig_id'"):
        load_lincs_level5(gctx, tmp_path / "no_cell.txt", pert_info, gene_info)
    table.drop(columns=["pert_dose", "pert_idose"]).to_csv(tmp_path / "no_dose.txt", sep="\t", index=False)
    with pytest.raises(ValueError, match=r"no dose column: needs 'pert_dose' .* or 'pert_idose'"):
        load_lincs_level5(gctx, tmp_path / "no_dose.txt", pert_info, gene_info)
    table.assign(pert_dose_unit=table["pert_dose_unit"].str.replace("µM", "ng/uL")).to_csv(
        tmp_path / "bad_unit.txt", sep="\t", index=False)
    with pytest.raises(ValueError, match=r"signature 'CPC001_A375_24H:BRD-K1:10': dose '10': unknown unit 'ng/uL'"):
        load_lincs_level5(gctx, tmp_path / "bad_unit.txt", pert_info, gene_info)
    no_smiles = pd.read_csv(pert_info, sep="\t").drop(columns=["canonical_smiles"])
    no_smiles.to_csv(tmp_path / "no_smiles.txt", sep="\t", index=False)
    with pytest.raises(ValueError, match=r"compound table .*no SMILES column: needs 'canonical_smiles' or 'smiles'"):
        load_lincs_level5(gctx, sig_info, tmp_path / "no_smiles.txt", gene_info)
    with pytest.raises(ValueError, match=r"cell lines \['HELA'\] not found \(cell_id has e.g. \['A375', 'MCF7'\]\)"):
        load_lincs_level5(gctx, sig_info, pert_info, gene_info, cell_lines=["A375", "HELA"])
    with pytest.raises(ValueError, match=r"no signature with pert_type in \['trt_lig'\] \(pert_types found: "):
        load_lincs_level5(gctx, sig_info, pert_info, gene_info, pert_type="trt_lig")
    pd.read_csv(gene_info, sep="\t").drop(columns=["pr_is_lm"]).to_csv(tmp_path / "g.txt", sep="\t", index=False)
    with pytest.raises(ValueError, match=r"gene_info .*no column 'pr_is_lm'"):
        load_lincs_level5(gctx, sig_info, pert_info, tmp_path / "g.txt")
