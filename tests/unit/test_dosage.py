"""Dosage-sensitivity labels of transcription factors (gc_lib.tasks.dosage): the ClinGen reader, the label rules,
ortholog tokens, per-token corpus statistics computed by hand, the expression filter, stratified gene folds,
and the counts of the real bundle."""
import numpy as np
import pandas as pd
import pytest

from gc_lib.corpus.vocab import build_vocabulary
from gc_lib.inputs import orgdb
from gc_lib.tasks import dosage

# real symbols (resolved by the bundle's HGNC table) with their Ensembl IDs
GATA4, NDN, PROP1, A4GALT = "ENSG00000136574", "ENSG00000182636", "ENSG00000175325", "ENSG00000128274"
HNF1B, TBX22, TWIST2, AAGAB = "ENSG00000275410", "ENSG00000122145", "ENSG00000233608", "ENSG00000103591"
AARS1, PAX6 = "ENSG00000090861", "ENSG00000007372"
M1, M2, M3, M4 = "ENSMUSG00000000001", "ENSMUSG00000000002", "ENSMUSG00000000003", "ENSMUSG00000000004"

CLINGEN_ROWS = [
    # kind, symbol, HI score, TS score
    ("G", "GATA4", "3 (Sufficient Evidence)", "0 (No Evidence)"),
    ("G", "NDN", "0 (No Evidence)", "Not Yet Evaluated"),
    ("G", "PROP1", "30 (Autosomal Recessive)", "0 (No Evidence)"),
    ("G", "A4GALT", "40 (Dosage Sensitivity Unlikely)", "'-5 (Not yet evaluated)"),
    ("G", "HNF1B", "1 (Little Evidence)", "0 (No Evidence)"),          # ambiguous evidence: dropped
    ("G", "TBX22", "2 (Emerging Evidence)", "0 (No Evidence)"),        # ambiguous evidence: dropped
    ("G", "TWIST2", "Not Yet Evaluated", "Not Yet Evaluated"),         # not evaluated: dropped
    ("G", "AAGAB", "3 (Sufficient Evidence)", "0 (No Evidence)"),      # not a TF: dropped
    ("G", "NOTAGENE1", "3 (Sufficient Evidence)", "0 (No Evidence)"),  # unresolvable: dropped
    ("G", "ASP", "3 (Sufficient Evidence)", "0 (No Evidence)"),        # ambiguous alias: dropped
    ("G", "AARS1", "0 (No Evidence)", "0 (No Evidence)"),              # AARS is its previous symbol: same
    ("G", "AARS", "30 (Autosomal Recessive)", "0 (No Evidence)"),      # gene, both insensitive → one row
    ("G", "PAX6", "3 (Sufficient Evidence)", "0 (No Evidence)"),       # AN2 is its previous symbol with a
    ("G", "AN2", "0 (No Evidence)", "0 (No Evidence)"),                # conflicting label → both dropped
    ("R", "GATA4", "3 (Sufficient Evidence)", "0 (No Evidence)"),      # a region row: not a gene
]
TFS = [GATA4, NDN, PROP1, A4GALT, HNF1B, TBX22, TWIST2, AARS1, PAX6]  # AAGAB left out on purpose


def write_clingen(path, rows=CLINGEN_ROWS, drop=()):
    table = pd.DataFrame(rows, columns=["Unnamed: 0", "Gene/Region", "HI Score", "TS Score"])
    table.insert(2, "Cytoband", "1p36")
    table.drop(columns=list(drop)).to_csv(path, index=False, encoding="utf-8-sig")
    return path


@pytest.fixture
def clingen(tmp_path):
    return dosage.read_clingen_genes(write_clingen(tmp_path / "clingen.csv"))


def test_reader_keeps_gene_rows_and_splits_codes(clingen):
    assert len(clingen) == 14  # the region row is gone
    assert list(clingen.columns) == ["symbol", "hi_score", "hi_description", "ts_score"]
    first = clingen.iloc[0]
    assert (first["symbol"], first["hi_score"], first["hi_description"]) == ("GATA4", "3", "Sufficient Evidence")
    assert clingen["hi_score"].tolist()[:7] == ["3", "0", "30", "40", "1", "2", "Not Yet Evaluated"]
    assert clingen["ts_score"].tolist()[:4] == ["0", "Not Yet Evaluated", "0", "-5"]


def test_reader_names_missing_columns(tmp_path):
    path = write_clingen(tmp_path / "bad.csv", drop=["HI Score"])
    with pytest.raises(ValueError, match="HI Score"):
        dosage.read_clingen_genes(path)


def test_labels_follow_the_documented_rules(clingen):
    labels = dosage.dosage_labels(clingen, TFS)
    expected = pd.DataFrame([
        (AARS1, "AARS", "30", "insensitive"),
        (A4GALT, "A4GALT", "40", "insensitive"),
        (GATA4, "GATA4", "3", "sensitive"),
        (PROP1, "PROP1", "30", "insensitive"),
        (NDN, "NDN", "0", "insensitive"),
    ], columns=["ensembl_id", "symbol", "hi_score", "label"])
    pd.testing.assert_frame_equal(labels, expected)
    assert dosage.label_summary(labels) == {"genes": 5, "by_label": {"sensitive": 1, "insensitive": 4},
                                            "by_hi_score": {"0": 1, "3": 1, "30": 2, "40": 1}}


@pytest.fixture
def vocab():
    genes = pd.DataFrame({
        "gene_id": [GATA4, NDN, AARS1, M1, M2, M3, M4],
        "species": ["human"] * 3 + ["mouse"] * 4,
        "symbol": ["GATA4", "NDN", "AARS1", "Gata4", "Ndn", "Prop1", "Aars1"],
    })
    orthologs = pd.DataFrame({"mouse_id": [M1, M2, M3, M4], "human_id": [GATA4, NDN, PROP1, AARS1],
                              "homology_type": ["one2one", "one2many", "ortholog_one2one", "many2many"]})
    return build_vocabulary(genes, orthologs)


def test_attach_tokens_uses_only_one_to_one_mouse_orthologs(clingen, vocab):
    labels = dosage.dosage_labels(clingen, TFS)
    tokens = dosage.attach_tokens(labels, vocab).set_index("symbol")
    gata4, ndn, aars1 = vocab.encode([GATA4, NDN, AARS1])
    m_gata4, m_prop1 = vocab.encode([M1, M3])
    assert tokens["human_token"].to_dict() == {"AARS": aars1, "A4GALT": -1, "GATA4": gata4, "PROP1": -1, "NDN": ndn}
    # Ndn is one2many and Aars1 many2many: no mouse token; Prop1 is one-to-one (prefixed type accepted)
    assert tokens["mouse_token"].to_dict() == {"AARS": -1, "A4GALT": -1, "GATA4": m_gata4, "PROP1": m_prop1,
                                               "NDN": -1}
    no_mouse = dosage.attach_tokens(labels, vocab, mouse_orthologs=False)
    assert (no_mouse["mouse_token"] == -1).all()


def test_token_statistics_by_hand():
    cells = pd.DataFrame({
        "species": [0, 0, 1],
        "input_ids": [np.array([4, 5, 6]), np.array([5, 7]), np.array([7, 4])],
        "values": [np.array([3.0, 2.0, 1.0]), np.array([4.0, 1.0]), np.array([2.0, 2.0])],
    })
    stats = dosage.token_statistics(cells, 8, window=1)
    assert list(stats.columns) == ["n_cells_human", "detection_human", "mean_value_human",
                                   "n_cells_mouse", "detection_mouse", "mean_value_mouse"]
    assert stats.index.tolist() == list(range(8))
    assert stats["n_cells_human"].tolist() == [0, 0, 0, 0, 1, 1, 0, 0]   # only the first rank counts
    assert stats["n_cells_mouse"].tolist() == [0, 0, 0, 0, 0, 0, 0, 1]
    np.testing.assert_allclose(stats["detection_human"], [0, 0, 0, 0, 0.5, 1.0, 0.5, 0.5])
    np.testing.assert_allclose(stats["mean_value_human"], [0, 0, 0, 0, 1.5, 3.0, 0.5, 0.5])
    np.testing.assert_allclose(stats["detection_mouse"], [0, 0, 0, 0, 1, 0, 0, 1])
    np.testing.assert_allclose(stats["mean_value_mouse"], [0, 0, 0, 0, 2, 0, 0, 2])
    everywhere = dosage.token_statistics(cells, 8)
    assert everywhere["n_cells_human"].tolist() == [0, 0, 0, 0, 1, 2, 1, 1]
    human_only = dosage.token_statistics(cells[cells["species"] == 0], 8)
    assert not any(c.endswith("_mouse") for c in human_only.columns)
    with pytest.raises(ValueError, match="token ids"):
        dosage.token_statistics(cells, 6)


def test_restrict_to_expressed_counts():
    labels = pd.DataFrame({
        "ensembl_id": ["G1", "G2", "G3", "G4"],
        "label": ["sensitive", "sensitive", "insensitive", "insensitive"],
        "human_token": [4, -1, 5, -1],
        "mouse_token": [6, 7, -1, -1],
    })
    stats = pd.DataFrame({"n_cells_human": [0, 0, 0, 0, 8, 3, 50, 50],
                          "n_cells_mouse": [0, 0, 0, 0, 0, 0, 4, 12]})
    kept, coverage = dosage.restrict_to_expressed(labels, stats, min_cells=10)
    assert kept["ensembl_id"].tolist() == ["G1", "G2"]
    assert kept["n_cells_human"].tolist() == [8, 0]   # G2 has no human token: its 50 is not counted
    assert kept["n_cells_mouse"].tolist() == [4, 12]
    assert kept["n_cells"].tolist() == [12, 12]
    assert coverage == {"labelled": 4, "in_vocabulary": 3, "expressed": 2,
                        "by_label": {"sensitive": {"labelled": 2, "in_vocabulary": 2, "expressed": 2},
                                     "insensitive": {"labelled": 2, "in_vocabulary": 1, "expressed": 0}}}


def test_gene_folds_are_stratified_and_deterministic():
    labels = pd.DataFrame({"label": ["sensitive"] * 10 + ["insensitive"] * 5})
    folds = dosage.gene_folds(labels, n_folds=5, seed=3)
    assert sorted(set(folds.tolist())) == [0, 1, 2, 3, 4]
    for fold in range(5):
        in_fold = labels["label"][folds == fold]
        assert (in_fold == "sensitive").sum() == 2 and (in_fold == "insensitive").sum() == 1
    np.testing.assert_array_equal(folds, dosage.gene_folds(labels, n_folds=5, seed=3))
    with pytest.raises(ValueError, match="at least 5 genes"):
        dosage.gene_folds(labels.iloc[:14], n_folds=5)


def test_real_bundle_counts():
    clingen = dosage.read_clingen_genes()
    tfs = orgdb.transcription_factors()
    assert len(clingen) == 1560 and (clingen["hi_score"] == "3").sum() == 377
    assert len(tfs) == 1528 and tfs.is_unique and tfs.is_monotonic_increasing
    labels = dosage.dosage_labels(clingen, tfs)
    assert labels["ensembl_id"].is_unique
    # 85 distinct HI-3 TF genes. Counting (ClinGen row, TF Ensembl ID) pairs gives 95: org.Hs.eg.db lists extra
    # alternate-locus IDs for GATA4, HNF1B, TBX22 and TCF20; labels use HGNC's primary ID only.
    assert dosage.label_summary(labels) == {"genes": 144, "by_label": {"sensitive": 85, "insensitive": 59},
                                            "by_hi_score": {"0": 45, "3": 85, "30": 14}}
    sensitive_symbols = set(clingen.loc[clingen["hi_score"] == "3", "symbol"])
    pairs = pd.DataFrame({"symbol": sorted(sensitive_symbols)}).merge(
        orgdb.query("SELECT DISTINCT i.symbol, e.ensembl_id FROM go_mf_all g JOIN gene_info i ON i._id = g._id "
                     "JOIN ensembl e ON e._id = g._id WHERE g.go_id = 'GO:0003700' AND g.evidence != 'ND'"),
        on="symbol")
    assert len(pairs) == 95


def test_per_gene_weights_human_and_mouse_tokens_by_cells():
    from gc_lib.tasks.dosage import per_gene

    genes = pd.DataFrame({"human_token": [1, 2, -1], "mouse_token": [3, -1, -1]})
    rows = np.arange(10, dtype=float).reshape(5, 2)           # token t → [2t, 2t + 1]
    weights = np.array([0, 1, 0, 3, 0])
    out = per_gene(genes, rows, weights)
    np.testing.assert_allclose(out[0], (1 * rows[1] + 3 * rows[3]) / 4)
    assert np.isnan(out[1]).all() and np.isnan(out[2]).all()  # token 2 has no weight; gene 3 has no token
