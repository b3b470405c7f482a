"""GRN prior: node resolution (symbols, UniProt, complexes, miRNAs), exclusion of held-out edges, the build."""
import numpy as np
import pandas as pd
import pytest

from gc_lib.corpus.vocab import build_vocabulary
from gc_lib.inputs.genes import map_symbols_to_ensembl
from gc_lib.priors import grn as grn_prior
from gc_lib.priors.gene2vec import Gene2VecConfig

SYMBOLS = ["FOS", "JUN", "GATA4", "NR5A1", "SOX9", "AMH", "STAR", "CYP11A1", "NPPA", "MYC", "TP53", "CDKN1A"]


@pytest.fixture(scope="module")
def ids():
    mapped, _ = map_symbols_to_ensembl(SYMBOLS, "human")
    assert mapped.notna().all()
    return mapped.to_dict()


def omnipath(rows):
    frame = pd.DataFrame(rows, columns=["source", "target", "sources"])
    return frame.assign(is_stimulation=True, is_inhibition=False, type="transcriptional")


def test_resolves_symbols_uniprot_and_complexes_and_counts_drops(ids):
    raw = omnipath([("GATA4", "NPPA", "CollecTRI"), ("P12345", "AMH", "TRRUST"),
                    ("COMPLEX:FOS_JUN", "MYC", "DoRothEA"), ("NR5A1", "MIMAT0000062", "x"),
                    ("NOT_A_GENE", "STAR", "x"), ("GATA4", "NPPA", "TRRUST")])
    uniprot = pd.DataFrame({"uniprot": ["P12345"], "ensembl_id": [ids["SOX9"]]})
    edges, report = grn_prior.resolve_edges(raw, uniprot=uniprot)
    got = set(zip(edges["tf_id"], edges["target_id"]))
    assert got == {(ids["GATA4"], ids["NPPA"]), (ids["SOX9"], ids["AMH"]), (ids["FOS"], ids["MYC"]),
                   (ids["JUN"], ids["MYC"])}
    merged = edges.set_index(["tf_id", "target_id"]).loc[(ids["GATA4"], ids["NPPA"]), "sources"]
    assert merged == "CollecTRI;TRRUST"
    assert report["rows_in"] == 6 and report["rows_with_complex"] == 1 and report["resolved_by_uniprot"] == 1
    assert report["mirna_names"] == 1 and report["unresolved_names"] == 1
    assert report["unresolved_examples"] == ["NOT_A_GENE"] and report["edges"] == 4


@pytest.fixture(scope="module")
def edges(ids):
    tfs, targets = ["GATA4", "NR5A1", "MYC", "TP53"], ["NPPA", "STAR", "CYP11A1", "AMH", "SOX9", "CDKN1A"]
    rows = [(ids[t], ids[g]) for t in tfs for g in targets] + [(ids["GATA4"], ids["NR5A1"])]
    return pd.DataFrame(rows, columns=["tf_id", "target_id"]).assign(sources="CollecTRI")


def test_excluding_edges_removes_both_directions_and_nothing_else(edges, ids):
    reverse = pd.DataFrame({"tf_id": [ids["NPPA"]], "target_id": [ids["GATA4"]], "sources": ["x"]})
    table = pd.concat([edges, reverse], ignore_index=True)
    held = pd.DataFrame({"tf": ["GATA4", ids["MYC"]], "target": ["NPPA", "AMH"]})
    kept, report = grn_prior.exclude(table, exclude_edges=held)
    pairs = {frozenset(p) for p in zip(kept["tf_id"], kept["target_id"])}
    assert frozenset((ids["GATA4"], ids["NPPA"])) not in pairs and frozenset((ids["MYC"], ids["AMH"])) not in pairs
    assert report["edges_removed"] == 3 and len(kept) == len(table) - 3


def test_excluding_a_tf_removes_every_edge_it_has(edges, ids):
    kept, report = grn_prior.exclude(edges, exclude_tfs=["NR5A1"])
    assert ids["NR5A1"] not in set(kept["tf_id"]) | set(kept["target_id"])
    assert report["edges_removed"] == 7  # 6 as regulator, 1 as GATA4's target
    with pytest.raises(ValueError, match="NOT_A_GENE.*nothing was excluded"):
        grn_prior.exclude(edges, exclude_tfs=["NR5A1", "NOT_A_GENE"])
    with pytest.raises(ValueError, match="columns 'tf' and 'target'"):
        grn_prior.exclude(edges, exclude_edges=pd.DataFrame({"source": ["GATA4"]}))


def test_build_leaves_held_out_genes_out_and_transfers_to_mouse(edges, ids):
    mouse = "ENSMUSG00000021944"
    genes = pd.DataFrame({"gene_id": [*ids.values(), mouse], "species": ["human"] * len(ids) + ["mouse"],
                          "symbol": [*ids.keys(), "Gata4"]})
    vocab = build_vocabulary(genes, pd.DataFrame({"mouse_id": [mouse], "human_id": [ids["GATA4"]],
                                                  "homology_type": ["one2one"]}))
    config = Gene2VecConfig(dim=8, walks_per_gene=4, seed=1)
    table, human = grn_prior.build_grn_prior(edges, vocab, config=config, exclude_tfs=["TP53"])
    assert ids["TP53"] not in human.index and not table.mask[vocab.encode([ids["TP53"]])[0]]
    assert table.info["exclusion"]["edges_removed"] == 6 and table.info["edges_used"] == len(edges) - 6
    gata4, mouse_gata4 = vocab.encode([ids["GATA4"], mouse])
    np.testing.assert_array_equal(table.vectors[mouse_gata4], table.vectors[gata4])
    again, _ = grn_prior.build_grn_prior(edges, vocab, config=config, exclude_tfs=["TP53"])
    np.testing.assert_array_equal(again.vectors, table.vectors)


def test_bundle_network_resolves_most_edges():
    edges, report = grn_prior.bundle_grn_edges()
    assert report["edges"] > 100_000 and report["tfs"] > 1_000
    assert report["member_edges_dropped"] < 0.02 * report["member_edges"]
    assert edges["tf_id"].str.fullmatch(r"ENSG\d{11}").all() and edges["target_id"].str.fullmatch(r"ENSG\d{11}").all()
    chip = grn_prior.select_sources(edges, ("ENCODE-proximal",))
    assert 0 < len(chip) < len(edges) and chip["sources"].str.contains("ENCODE-proximal").all()


def test_holdout_tfs_draws_eligible_tfs_with_enough_targets_reproducibly():
    from gc_lib.priors.signal import holdout_tfs

    edges = pd.DataFrame({"tf_id": ["A"] * 30 + ["B"] * 25 + ["C"] * 5 + ["D"] * 40,
                          "target_id": [f"t{i}" for i in range(100)]})
    chosen = holdout_tfs(edges, 2, seed=3, min_targets=20, eligible=["A", "B", "C"])
    assert sorted(chosen) == ["A", "B"] and chosen == holdout_tfs(edges, 2, seed=3, min_targets=20,
                                                                  eligible=["A", "B", "C"])
    assert len(set(holdout_tfs(edges, 1, seed=s, min_targets=20)[0] for s in range(20))) == 3   # A, B or D
    with pytest.raises(ValueError, match="only 2 TFs"):
        holdout_tfs(edges, 3, min_targets=20, eligible=["A", "B", "C"])
