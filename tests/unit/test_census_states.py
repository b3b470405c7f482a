"""gc_lib.inputs.census_states: Census cells by Cell Ontology term, counted and sampled per named state.

The Census is a tiny SOMA collection on disk with the Census layout (as in test_atlas.py), whose obs carries
Cell Ontology term ids; no network is used.
"""
import numpy as np
import pandas as pd
import pytest
from synthetic import write_census

from gc_lib.inputs.atlas import open_census
from gc_lib.inputs.census_states import census_term_counts, sample_states
from gc_lib.inputs.contract import check_counts_adata

N_CELLS = 48
GENES = [f"ENSG{i:011d}" for i in range(6)]
LABELS = {"CL:0002322": "embryonic stem cell", "CL:0000216": "Sertoli cell", "CL:0000501": "granulosa cell",
          "CL:0000178": "Leydig cell", "CL:0000236": "B cell"}
TISSUES = {"CL:0002322": "embryo", "CL:0000216": "testis", "CL:0000501": "ovary", "CL:0000178": "testis",
           "CL:0000236": "blood"}
ESC, SERTOLI, GRANULOSA, LEYDIG, B_CELL = LABELS
STATES = {"hESC": [ESC], "gonadal": [SERTOLI, GRANULOSA], "Leydig": [LEYDIG]}
ABSENT = "CL:0000057"  # fibroblast: not in the fixture


@pytest.fixture(scope="module")
def census_uri(tmp_path_factory):
    """root Collection → census_data Collection → Experiment homo_sapiens (ms RNA, X raw) + census_info."""
    pytest.importorskip("cellxgene_census")
    pytest.importorskip("tiledbsoma")

    rng = np.random.default_rng(5)
    counts = rng.poisson(0.7, size=(N_CELLS, len(GENES))).astype(np.float32)
    counts[:, 0] += 1  # no cell is empty
    terms = [ESC, SERTOLI, GRANULOSA, LEYDIG, B_CELL, ESC] * (N_CELLS // 6)
    obs = pd.DataFrame({
        "cell_type_ontology_term_id": terms,
        "cell_type": [LABELS[t] for t in terms],
        "tissue": [TISSUES[t] for t in terms],
        "assay": "10x 3' v3",
        "dataset_id": ["ds-a"] * 24 + ["ds-b"] * 24,
        "donor_id": [f"donor{i % 3}" for i in range(N_CELLS)],
        "is_primary_data": np.arange(N_CELLS) % 5 != 4,
    }, index=[f"c{i}" for i in range(N_CELLS)])
    var = pd.DataFrame({"feature_id": GENES, "feature_name": [f"G{i}" for i in range(len(GENES))]}, index=GENES)
    root = str(tmp_path_factory.mktemp("census_states") / "soma")
    write_census(root, counts, obs, var)
    return root, counts, obs


def _expected_counts(obs: pd.DataFrame, terms, primary_only: bool) -> pd.DataFrame:
    cells = obs[obs["is_primary_data"]] if primary_only else obs
    cells = cells[cells["cell_type_ontology_term_id"].isin(terms)]
    cols = ["cell_type_ontology_term_id", "cell_type", "dataset_id"]
    return cells.groupby(cols).size().rename("n_cells").reset_index().sort_values(cols, ignore_index=True)


@pytest.mark.parametrize("primary_only", [True, False])
def test_term_counts_match_a_groupby_of_obs(census_uri, primary_only):
    root, _, obs = census_uri
    terms = [SERTOLI, ESC, GRANULOSA, LEYDIG]
    with open_census(uri=root) as census:
        table = census_term_counts(census, "Homo sapiens", terms, primary_only=primary_only)
    want = _expected_counts(obs, terms, primary_only)
    assert list(table.columns) == ["cell_type_ontology_term_id", "cell_type", "dataset_id", "n_cells"]
    pd.testing.assert_frame_equal(table, want, check_dtype=False)
    assert table["n_cells"].dtype == np.int64
    assert set(table["dataset_id"]) == {"ds-a", "ds-b"} and B_CELL not in set(table.iloc[:, 0])
    assert table["n_cells"].sum() == (obs["cell_type_ontology_term_id"].isin(terms)
                                      & (obs["is_primary_data"] | (not primary_only))).sum()


def test_term_counts_list_a_missing_term_with_zero_cells_and_reject_bad_ids(census_uri):
    root, _, obs = census_uri
    with open_census(uri=root) as census:
        table = census_term_counts(census, "human", [ABSENT, LEYDIG])
        missing = table[table["cell_type_ontology_term_id"] == ABSENT]
        assert len(missing) == 1 and missing["n_cells"].item() == 0 and missing["dataset_id"].isna().all()
        assert table.loc[table.iloc[:, 0] == LEYDIG, "n_cells"].sum() == \
            (obs["is_primary_data"] & (obs["cell_type_ontology_term_id"] == LEYDIG)).sum()
        with pytest.raises(ValueError, match=r"\['CL:216', 'Sertoli cell'\] are not Cell Ontology ids"):
            census_term_counts(census, "human", [SERTOLI, "CL:216", "Sertoli cell"])
        with pytest.raises(ValueError, match="not the string"):
            census_term_counts(census, "human", SERTOLI)
        with pytest.raises(ValueError, match="unknown organism"):
            census_term_counts(census, "zebrafish", [SERTOLI])


def test_sample_states_gives_each_state_its_terms_only(census_uri):
    root, counts, obs = census_uri
    cap = 6
    with open_census(uri=root) as census:
        adata = sample_states(census, "human", STATES, max_cells_per_state=cap, seed=1, chunk_size=4)
        again = sample_states(census, "human", STATES, max_cells_per_state=cap, seed=1)
        other = sample_states(census, "human", STATES, max_cells_per_state=cap, seed=2)
    check_counts_adata(adata)
    assert list(adata.obs["state"].cat.categories) == list(STATES)
    assert list(adata.obs["state"]) == sorted(adata.obs["state"], key=list(STATES).index)  # grouped in order
    primary = obs[obs["is_primary_data"]]
    records = adata.uns["gc_lib"]["states"]
    for name, terms in STATES.items():
        cells = adata[adata.obs["state"] == name]
        n_matching = int(primary["cell_type_ontology_term_id"].isin(terms).sum())
        assert set(cells.obs["cell_type_ontology_term_id"]) <= set(terms)
        assert cells.n_obs == min(cap, n_matching) and cells.obs["is_primary_data"].all()
        assert records[name]["terms"] == terms and records[name]["n_matching_cells"] == n_matching
        assert records[name]["n_sampled_cells"] == cells.n_obs
    assert records["hESC"]["n_matching_cells"] > cap  # the cap was applied at least once
    assert set(adata.obs["cell_type_ontology_term_id"]) == {ESC, SERTOLI, GRANULOSA, LEYDIG}
    rows = adata.obs_names.astype(int).to_numpy()
    np.testing.assert_array_equal(adata.X.toarray(), counts[rows])
    assert list(adata.obs["cell_type"]) == list(obs["cell_type"].iloc[rows])
    assert set(adata.obs["species"]) == {"human"} and list(adata.var_names) == GENES
    assert list(again.obs_names) == list(adata.obs_names) and list(other.obs_names) != list(adata.obs_names)
    assert "n_matching_cells" not in adata.uns["gc_lib"] and adata.uns["gc_lib"]["dropped_cells"] == 0


def test_sample_states_joins_an_extra_filter_and_obs_columns(census_uri):
    root, _, obs = census_uri
    with open_census(uri=root) as census:
        adata = sample_states(census, "human", {"gonadal": [SERTOLI, GRANULOSA], "hESC": [ESC]},
                              max_cells_per_state=100, state_key="fate", obs_value_filter="dataset_id == 'ds-b'",
                              obs_columns=("cell_type", "dataset_id"))
    want = obs[obs["is_primary_data"] & (obs["dataset_id"] == "ds-b")]
    assert list(adata.obs["fate"].cat.categories) == ["gonadal", "hESC"]
    assert set(adata.obs["dataset"]) == {"ds-b"} and "tissue" not in adata.obs
    assert (adata.obs["fate"] == "hESC").sum() == (want["cell_type_ontology_term_id"] == ESC).sum()
    record = adata.uns["gc_lib"]["states"]["gonadal"]
    assert record["obs_value_filter"].endswith("and (dataset_id == 'ds-b'))")
    assert record["n_sampled_cells"] == want["cell_type_ontology_term_id"].isin([SERTOLI, GRANULOSA]).sum()


def test_sample_states_errors_name_the_state(census_uri):
    root, _, _ = census_uri
    with open_census(uri=root) as census:
        with pytest.raises(ValueError, match=r"state 'fibroblast'.*no human cell"):
            sample_states(census, "human", {"hESC": [ESC], "fibroblast": [ABSENT]}, max_cells_per_state=5)
        with pytest.raises(ValueError, match=r"CL:0000216 is in two states, 'Sertoli' and 'gonadal'"):
            sample_states(census, "human", {"Sertoli": [SERTOLI], "gonadal": [SERTOLI, GRANULOSA]},
                          max_cells_per_state=5)
        with pytest.raises(ValueError, match=r"state 'hESC': \['ESC'\] are not Cell Ontology ids"):
            sample_states(census, "human", {"hESC": ["ESC"]}, max_cells_per_state=5)
        with pytest.raises(ValueError, match=r"state 'Leydig': no Cell Ontology term id"):
            sample_states(census, "human", {"hESC": [ESC], "Leydig": []}, max_cells_per_state=5)
        with pytest.raises(ValueError, match="no state given"):
            sample_states(census, "human", {}, max_cells_per_state=5)
        with pytest.raises(ValueError, match="max_cells_per_state must be positive"):
            sample_states(census, "human", STATES, max_cells_per_state=0)
        with pytest.raises(ValueError, match="state_key 'cell_type'"):
            sample_states(census, "human", STATES, max_cells_per_state=5, state_key="cell_type")
