"""gc_lib.inputs.sciplex: CPA's sci-Plex3 .h5ad into the dose contract, on tiny files of the real file's shape.

The fixture is what chemCPA writes: obs with cell_type, condition ("control" for the vehicle), dose (nM),
dose_val = dose / 10,000 nM (1.0 for the vehicle), control, drug_dose_name, cov_drug_dose_name, split; gene symbols
of real human genes as var_names. Gene mapping uses the bundle's HGNC table (skipped when it is not in data/raw).
"""
import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from gc_lib.inputs.fetch import FetchError, sha256_file
from gc_lib.inputs.sciplex import VALUE_KIND_AS_GIVEN, VALUE_KIND_FROM_COUNTS, load_sciplex3, log_normalise

# NOTAGENE1 maps nowhere (dropped); C10orf12 is LCOR's previous symbol (one Ensembl gene: summed / first kept)
SYMBOLS = ["TP53", "GAPDH", "ACTB", "MYC", "EGFR", "LCOR", "C10orf12", "NOTAGENE1"]
ENSEMBL = {"TP53": "ENSG00000141510", "GAPDH": "ENSG00000111640", "ACTB": "ENSG00000075624",
           "MYC": "ENSG00000136997", "EGFR": "ENSG00000146648", "LCOR": "ENSG00000196233"}
# per cell line: vehicle, drug A at 10 nM and 10 µM, drug B at 1 µM
CONDITIONS = [("control", 0.0), ("Dasatinib", 10.0), ("Dasatinib", 10_000.0), ("Vorinostat", 1_000.0)]


def cpa_obs() -> pd.DataFrame:
    rows = []
    for cell_type in ("A549", "K562", "MCF7"):
        for condition, dose_nm in CONDITIONS:
            dose_val = 1.0 if condition == "control" else dose_nm / 10_000  # chemCPA: the vehicle's dose_val is 1
            rows.append({"cell_type": cell_type, "dose": dose_nm, "product_name": condition, "condition": condition,
                         "dose_val": dose_val, "drug_dose_name": f"{condition}_{dose_val}",
                         "cov_drug_dose_name": f"{cell_type}_{condition}_{dose_val}",
                         "control": int(condition == "control"), "split": "train"})
    obs = pd.DataFrame(rows, index=[f"cell{i}" for i in range(len(rows))])
    for column in ("cell_type", "condition", "product_name", "drug_dose_name", "cov_drug_dose_name", "split"):
        obs[column] = obs[column].astype("category")
    return obs


def raw_counts(n_cells: int) -> np.ndarray:
    counts = np.random.default_rng(0).poisson(3.0, size=(n_cells, len(SYMBOLS))).astype(np.float32)
    counts[:, 0] += 1  # no cell is empty
    return counts


def write_sciplex(path, *, counts_in: str = "layer", obs: pd.DataFrame | None = None, var=None):
    """A CPA-shaped file: counts in ``layers["counts"]`` with log-normalised X (chemCPA), counts in X (CPA), or only
    log-normalised X (``counts_in="none"``)."""
    obs = cpa_obs() if obs is None else obs
    counts = raw_counts(len(obs))
    lognorm = np.log1p(counts / counts.sum(1, keepdims=True) * 1e4).astype(np.float32)
    var = pd.DataFrame(index=SYMBOLS) if var is None else var
    X = counts if counts_in == "X" else lognorm
    adata = ad.AnnData(X=sp.csr_matrix(X), obs=obs, var=var)
    if counts_in == "layer":
        adata.layers["counts"] = sp.csr_matrix(counts)
    adata.write_h5ad(path)
    return path, counts, lognorm


def expected_counts(counts: np.ndarray) -> np.ndarray:
    """The six mapped genes in file order, C10orf12 summed into LCOR, NOTAGENE1 dropped."""
    out = counts[:, :6].copy()
    out[:, 5] += counts[:, 6]
    return out


@pytest.mark.parametrize("counts_in", ["layer", "X"])
def test_counts_found_mapped_and_log_normalised(tmp_path, counts_in):
    path, counts, _ = write_sciplex(tmp_path / "sciplex3.h5ad", counts_in=counts_in)
    adata = load_sciplex3(path)
    assert adata.shape == (12, 6)
    assert list(adata.var_names) == [ENSEMBL[s] for s in SYMBOLS[:6]]
    assert adata.var.loc["ENSG00000141510", "gene_symbol"] == "TP53"
    np.testing.assert_array_equal(adata.layers["counts"].toarray(), expected_counts(counts))
    kept = expected_counts(counts)
    np.testing.assert_allclose(adata.X.toarray(), np.log1p(kept / kept.sum(1, keepdims=True) * 1e4), rtol=1e-6)
    info = adata.uns["gc_lib"]
    assert info["value_kind"] == VALUE_KIND_FROM_COUNTS
    assert info["counts_source"] == ("layers['counts']" if counts_in == "layer" else "X")
    mapping = info["gene_mapping"]
    assert (mapping["genes"], mapping["mapped"], mapping["dropped"], mapping["summed_duplicate_genes"]) == (8, 6, 1, 1)
    assert mapping["symbol_mapping"]["unknown"] == 1 and mapping["symbol_mapping"]["previous"] == 1
    adata.write_h5ad(tmp_path / "out.h5ad")  # the result is writable


def test_dose_contract_obs(tmp_path):
    path, _, _ = write_sciplex(tmp_path / "sciplex3.h5ad")
    obs = load_sciplex3(path).obs
    by_cell = obs.set_index("cov_drug_dose_name")
    # dose_val × 10 µM: 0.001 → 0.01 µM (10 nM), 1.0 → 10 µM; the vehicle's dose_val of 1 becomes dose 0
    assert by_cell.loc["A549_Dasatinib_0.001", "dose"] == pytest.approx(0.01)
    assert by_cell.loc["K562_Dasatinib_1.0", "dose"] == pytest.approx(10.0)
    assert by_cell.loc["MCF7_Vorinostat_0.1", "dose"] == pytest.approx(1.0)
    controls = obs[obs["condition"] == "control"]
    assert len(controls) == 3 and (controls["drug"] == "control").all() and (controls["dose"] == 0).all()
    np.testing.assert_allclose(obs["dose"], np.where(obs["control"] == 1, 0, obs["dose_in_file"] / 1000))
    assert obs["drug"].dtype == object and set(obs["drug"]) == {"control", "Dasatinib", "Vorinostat"}
    assert list(obs["cell_line"][:4]) == ["A549"] * 4 and (obs["species"] == "human").all()
    assert {"dose_val", "drug_dose_name", "split", "dose_in_file"} <= set(obs.columns)  # original columns kept


def test_dose_in_nm_with_another_factor(tmp_path):
    path, _, _ = write_sciplex(tmp_path / "sciplex3.h5ad")
    by_dose_val = load_sciplex3(path).obs["dose"]
    by_nm = load_sciplex3(path, dose_column="dose", dose_to_um=1e-3)
    np.testing.assert_allclose(by_nm.obs["dose"], by_dose_val)
    assert by_nm.uns["gc_lib"]["dose"] == {"column": "dose", "to_um": 1e-3, "unit": "uM"}


def test_log_normalised_file_keeps_its_x(tmp_path):
    path, _, lognorm = write_sciplex(tmp_path / "sciplex3.h5ad", counts_in="none")
    adata = load_sciplex3(path)
    assert "counts" not in adata.layers and adata.uns["gc_lib"]["value_kind"] == VALUE_KIND_AS_GIVEN
    assert adata.uns["gc_lib"]["counts_source"] == "none"
    np.testing.assert_array_equal(adata.X.toarray(), lognorm[:, :6])  # LCOR's own column: log values are not summed


def test_ensembl_ids_in_a_var_column_are_used(tmp_path):
    var = pd.DataFrame({"gene_id": ["ENSG00000141510.17", "ENSG00000111640.15", "", "", "", "", "",
                                    "ENSG00000146648.18"]}, index=SYMBOLS)
    path, counts, _ = write_sciplex(tmp_path / "sciplex3.h5ad", var=var)
    adata = load_sciplex3(path)
    assert list(adata.var_names) == ["ENSG00000141510", "ENSG00000111640", "ENSG00000146648"]
    assert list(adata.var["gene_symbol"]) == ["TP53", "GAPDH", "NOTAGENE1"]  # the file's own pairing is trusted
    np.testing.assert_array_equal(adata.layers["counts"].toarray(), counts[:, [0, 1, 7]])


def test_url_and_checksum(tmp_path):
    path, _, _ = write_sciplex(tmp_path / "sciplex3.h5ad")
    digest = sha256_file(path)
    by_url = load_sciplex3(path.as_uri(), sha256=digest, cache_dir=tmp_path / "cache")
    assert (tmp_path / "cache" / "sciplex3.h5ad").is_file() and by_url.shape == (12, 6)
    with pytest.raises(FetchError, match="expected 0000"):
        load_sciplex3(path, sha256="0" * 64)
    with pytest.raises(FetchError, match="checksum mismatch"):
        load_sciplex3(path.as_uri(), sha256="0" * 64, cache_dir=tmp_path / "other_cache")
    with pytest.raises(FileNotFoundError, match="no such .h5ad file"):
        load_sciplex3(tmp_path / "absent.h5ad")


def _without(column):
    return lambda obs: obs.drop(columns=[column])


def _set(column, rows, value):
    def edit(obs):
        obs = obs.copy()
        obs.iloc[rows, obs.columns.get_loc(column)] = value
        return obs
    return edit


def _no_controls(obs):
    obs = obs[obs["control"] == 0].copy()
    obs["condition"] = obs["condition"].cat.remove_unused_categories()
    return obs


@pytest.mark.parametrize(("edit", "message"), [
    (_without("condition"), r"obs has no column 'condition' \(needed: .*columns found: \['cell_type', 'dose'"),
    (_without("dose_val"), "obs has no column 'dose_val'"),
    (_without("cell_type"), "obs has no column 'cell_type'"),
    (_no_controls, r"no control cells: none has obs\['condition'\] == 'control' or obs\['control'\] == 1"),
    (_set("dose_val", [1], -0.01), r"negative dose in obs\['dose_val'\] for 1 treated cells \(e.g. -0.01\)"),
    (_set("dose_val", [2, 3], np.nan), r"obs\['dose_val'\] is missing or not a number for 2 treated cells"),
    (_set("control", [0], 2), r"obs\['control'\] must be 0 or 1, found '2'"),
    (_set("condition", [1], np.nan), r"obs\['condition'\] is missing for 1 cells"),
])
def test_bad_obs_raise_naming_the_problem(tmp_path, edit, message):
    path, _, _ = write_sciplex(tmp_path / "bad.h5ad", obs=edit(cpa_obs()))
    with pytest.raises(ValueError, match=message):
        load_sciplex3(path)


def test_dose_val_above_one_warns(tmp_path):
    obs = cpa_obs()
    obs["dose_val"] = obs["dose"]  # nM in dose_val: not CPA's normalised dose
    path, _, _ = write_sciplex(tmp_path / "nm.h5ad", obs=obs)
    with pytest.warns(UserWarning, match="goes up to 10000, but CPA's dose_val is at most 1"):
        adata = load_sciplex3(path)
    assert adata.obs["dose"].max() == pytest.approx(100_000.0)  # converted as told, however implausible


def test_log_normalise_scales_each_cell_and_leaves_empty_cells_at_zero():
    counts = sp.csr_matrix(np.array([[1, 3, 0], [0, 0, 0], [5, 0, 5]], dtype=np.float32))
    out = log_normalise(counts).toarray()
    np.testing.assert_allclose(out[0], np.log1p([2500, 7500, 0]), rtol=1e-6)
    np.testing.assert_array_equal(out[1], 0)
    np.testing.assert_allclose(out[2], np.log1p([5000, 0, 5000]), rtol=1e-6)
