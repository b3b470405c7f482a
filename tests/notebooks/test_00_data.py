"""Notebook 00 on the ci profile: the whole offline bundle fetched, every dataset in the contract."""
import anndata as ad
import pytest

from gc_lib.core import paths
from gc_lib.inputs import datasets, sources
from gc_lib.inputs.contract import check_counts_adata


@pytest.fixture(scope="module")
def metrics(notebooks):
    return notebooks.executed("00_data")


def test_profile_and_sources(metrics):
    assert metrics["profile"] == "ci"
    # every registry entry was fetched and verified, annotation resources included
    assert metrics["n_sources"] == len(sources.SOURCES) >= 19 and metrics["bundle_MB"] > 500


def test_every_dataset_both_species(metrics):
    rows = metrics["datasets"]
    assert set(datasets.BUNDLE) <= set(rows)
    assert set(metrics["cells_by_species"]) == {"human", "mouse"}
    for name in datasets.BUNDLE:
        assert rows[name]["counts"] is True
        assert rows[name]["mapped to Ensembl"] > 0.6, name
        assert 0 < rows[name]["one-to-one ortholog"] <= rows[name]["with human ortholog"] <= 1, name
    # the ci profile caps each dataset at 2,000 cells: only the 10k mouse subset and Baron human are larger
    assert rows["mouse_10k_subset"]["cells"] == rows["baron_human"]["cells"] == 2_000
    assert rows["baron_mouse"]["cells"] == 1_886
    assert rows["pbmc68k_reduced"]["cell types"] == 10


def test_baron_pair_labels_donors_and_symbols(metrics):
    per_type, donors = metrics["cells_per_type"], metrics["donors"]
    assert set(per_type) == {"baron_human", "baron_mouse"}
    assert sum(per_type["baron_human"].values()) == 2_000  # a random 2,000 of 2,142
    assert per_type["baron_mouse"]["type B pancreatic cell"] == 894  # all 1,886 mouse cells kept
    assert len(per_type["baron_mouse"]) == 12 and len(per_type["baron_human"]) >= 10
    acinar = "pancreatic acinar cell"
    assert acinar in per_type["baron_human"] and acinar not in per_type["baron_mouse"]
    assert set(donors["baron_human"]) == {"human1", "human2", "human3", "human4"}
    assert set(donors["baron_mouse"]) == {"mouse1", "mouse2"}
    for name in per_type:
        assert metrics["datasets"][name]["mapped to Ensembl"] > 0.98 and metrics["symbols_restored"][name] > 70


def test_non_counts_are_flagged(metrics):
    assert metrics["fpkm_flagged"] is True
    assert metrics["datasets"]["monocle_lung (FPKM, flagged)"]["counts"] is False
    assert 0 < metrics["pbmc68k_rebuild_max_deviation"] < datasets.MAX_REBUILD_DEVIATION


def test_outputs_meet_the_contract(metrics):
    for name in datasets.BUNDLE:
        check_counts_adata(ad.read_h5ad(paths.DATA_DIR / "00_data" / "datasets" / f"{name}.h5ad"))


def test_figures_written(metrics):
    for fig in ("qc", "gene_mapping"):
        for suffix in ("png", "pdf"):
            path = paths.figure_path("00_data", fig, suffix)
            assert path.exists() and path.stat().st_size > 10_000, path
