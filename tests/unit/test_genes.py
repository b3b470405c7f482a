"""Symbol resolution rules (synthetic table) and the real annotation tables of the bundle."""
import pandas as pd
import pytest

from gc_lib.inputs import genes

TABLE = pd.DataFrame([
    # symbol, tier, ensembl_id, ambiguous
    ("TP53", "approved", "ENSG00000141510", False),
    ("P53", "previous", "ENSG00000141510", False),
    ("CD3E", "approved", "ENSG00000198851", False),
    ("T3E", "alias", "ENSG00000198851", False),
    ("SHARED", "alias", "ENSG00000000001", True),   # an alias of two genes: ambiguous
    ("SHARED", "alias", "ENSG00000000002", True),
    ("CD3E", "alias", "ENSG00000000003", False),    # also an alias elsewhere: the approved tier wins
], columns=["symbol", "tier", "ensembl_id", "ambiguous"])


def test_tiers_ambiguity_and_unknowns():
    ids, counts = genes.resolve_symbols(["TP53", "P53", "T3E", "SHARED", "CD3E", "NOPE"], TABLE)
    assert ids.tolist() == ["ENSG00000141510", "ENSG00000141510", "ENSG00000198851", None, "ENSG00000198851", None]
    assert counts == {"symbols": 6, "approved": 2, "previous": 1, "alias": 1, "ambiguous": 1, "unknown": 1}


def test_unknown_species():
    with pytest.raises(ValueError, match="unknown species"):
        genes.map_symbols_to_ensembl(["TP53"], "zebrafish")


# --- the real tables (fetched from the bundle on first use) ----------------------------------------

def test_real_human_symbols_resolve_through_previous_and_alias():
    ids, counts = genes.map_symbols_to_ensembl(["TP53", "CD3E", "MT-ND1", "NOT-A-GENE-XYZ"], "human")
    assert ids.tolist()[:3] == ["ENSG00000141510", "ENSG00000198851", "ENSG00000198888"]
    assert ids.iloc[3] is None and counts["unknown"] == 1


def test_real_symbol_tables_are_consistent():
    for species, prefix in (("human", "ENSG"), ("mouse", "ENSMUSG")):
        table = genes.gene_table(species)
        assert table["ensembl_id"].is_unique and table["ensembl_id"].str.startswith(prefix).all()
        assert len(table) > (40_000 if species == "human" else 70_000)
        ids, counts = genes.map_symbols_to_ensembl(table["symbol"], species)
        # approved symbols resolve to themselves unless two genes share the symbol
        assert counts["approved"] + counts["ambiguous"] == len(table)


def test_real_orthologs_one_partner_per_mouse_gene():
    pairs = genes.mouse_to_human()
    assert pairs["mouse_id"].is_unique
    assert (pairs["homology_type"] == "one2one").sum() > 15_000
    trp53 = pairs.set_index("mouse_id").loc["ENSMUSG00000059552"]  # Trp53 → TP53
    assert trp53["human_id"] == "ENSG00000141510" and trp53["homology_type"] == "one2one"
    cover = genes.human_ortholog_coverage(["ENSMUSG00000059552", "ENSMUSG99999999999"], "mouse")
    assert cover == {"any": 0.5, "one2one": 0.5}


def test_real_tf_tokens_hold_human_tfs_and_their_one_to_one_mouse_orthologs():
    table = genes.tf_tokens()
    assert list(table.columns) == ["gene_id", "species", "symbol"] and table["gene_id"].is_unique
    human = table[table["species"] == "human"].set_index("symbol")["gene_id"]
    mouse = table[table["species"] == "mouse"].set_index("symbol")["gene_id"]
    assert human["NR5A1"] == "ENSG00000136931" and human["GATA4"] == "ENSG00000136574"
    assert human.index.is_unique  # alternate-locus IDs (a second GATA4) are left out
    assert mouse["Nr5a1"] == "ENSMUSG00000026751" and mouse["Gata4"] == "ENSMUSG00000021944"
    partner = genes.mouse_to_human().set_index("mouse_id").loc[mouse.to_numpy()]
    assert (partner["homology_type"] == "one2one").all() and partner["human_id"].isin(set(human)).all()
    assert 1_300 < len(human) < 1_528 and 900 < len(mouse) < len(human)
    # injected TFs and orthologs: only one-to-one partners of the given human genes
    pairs = pd.DataFrame({"mouse_id": ["ENSMUSG00000026751", "ENSMUSG00000021944"],
                          "human_id": ["ENSG00000136931", "ENSG00000136574"], "homology_type": ["one2one", "one2many"]})
    small = genes.tf_tokens(pairs, tfs=["ENSG00000136931", "ENSG00000136574"])
    assert small["symbol"].tolist() == ["GATA4", "NR5A1", "Nr5a1"]
