"""The one entry point to notebook 08's data: the offline plate, and the full profile's sci-Plex3 / LINCS files
(fixtures of their shape from the loaders' own tests), each with the keys the benchmark needs."""
import numpy as np
import pytest
from test_gct import MIRROR_PLATE
from test_lincs import write_gctx, write_tables
from test_sciplex import write_sciplex

from gc_lib.inputs.dose_data import CONTRACT_KEYS, load_dose_data


def test_unknown_kind_and_missing_files_are_named():
    with pytest.raises(ValueError, match="unknown drug-response data 'cmap'"):
        load_dose_data("cmap")
    with pytest.raises(ValueError, match="sciplex3 needs its files"):
        load_dose_data("sciplex3")


@pytest.mark.skipif(not MIRROR_PLATE.exists(), reason=f"no offline mirror copy at {MIRROR_PLATE}")
def test_the_plate_with_its_keys(monkeypatch):
    monkeypatch.setenv("GC_LIB_MIRROR", str(MIRROR_PLATE.parents[1]))     # the mirror's copy, never the web
    adata, keys, name = load_dose_data("l1000_plate")
    assert adata.shape == (377, 978) and "real data" in name
    assert (adata.obs[keys["drug_key"]] == keys["control_value"]).sum() == 26
    assert adata.obs.loc[adata.obs[keys["drug_key"]] != "DMSO", keys["dose_key"]].between(0.04, 10).all()


def test_sciplex3_one_cell_line_dense(tmp_path):
    path, _, lognorm = write_sciplex(tmp_path / "sciplex3.h5ad")
    adata, keys, name = load_dose_data("sciplex3", {"path": path})
    assert keys == CONTRACT_KEYS and set(adata.obs["cell_line"]) == {"A549"}        # the first, by name
    assert isinstance(adata.X, np.ndarray) and adata.n_obs == 4 and "sci-Plex3 A549" in name
    k562, _, _ = load_dose_data("sciplex3", {"path": path, "cell_line": "K562"})
    assert set(k562.obs["cell_line"]) == {"K562"}
    with pytest.raises(ValueError, match=r"no cell line 'HeLa'; the data holds \['A549', 'K562', 'MCF7'\]"):
        load_dose_data("sciplex3", {"path": path, "cell_line": "HeLa"})


def test_lincs_level5_keeps_controls_and_drops_treated_without_dose(tmp_path):
    gctx = write_gctx(tmp_path / "level5.gctx")
    sig_info, compounds, genes = write_tables(tmp_path)
    files = {"gctx_path": gctx, "sig_info_path": sig_info, "compound_info_path": compounds, "gene_info_path": genes,
             "cell_line": "A375"}
    adata, keys, name = load_dose_data("lincs_level5", files)
    drugs = adata.obs[keys["drug_key"]].astype(str)
    assert set(adata.obs["cell_line"]) == {"A375"} and (drugs == "control").sum() == 1
    assert np.isfinite(adata.obs[keys["dose_key"]].to_numpy(dtype=float)).all() and "LINCS Level 5 A375" in name
    assert "smiles" in adata.obs.columns
