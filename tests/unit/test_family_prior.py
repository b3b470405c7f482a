"""The gene-family prior (gc_lib.priors.family): the HGNC reader, Pfam and JASPAR groupings, the offline
substitute and its labelling, and the gene2vec build (family signal, ortholog transfer, determinism)."""
import sqlite3

import numpy as np
import pandas as pd
import pytest

from gc_lib.corpus.vocab import build_vocabulary
from gc_lib.priors.family import (
    build_family_prior,
    bundle_family_groups,
    jaspar_tf_families,
    pfam_families,
    read_hgnc_groups,
)
from gc_lib.priors.gene2vec import Gene2VecConfig


def hid(i):
    return f"ENSG{i:011d}"


def mid(i):
    return f"ENSMUSG{i:011d}"


# --- HGNC -----------------------------------------------------------------------------------------
HGNC_HEADER = ["hgnc_id", "symbol", "name", "gene_group", "gene_group_id", "ensembl_gene_id"]


def write_tsv(path, header, rows):
    path.write_text("\n".join("\t".join(r) for r in [header, *rows]) + "\n")
    return path


def test_read_hgnc_groups_splits_pipes_and_drops_rows_without_ensembl(tmp_path):
    path = write_tsv(tmp_path / "hgnc_complete_set.txt", HGNC_HEADER, [
        ["HGNC:1", "ZNF1", "zinc finger 1", '"Zinc fingers C2H2-type|KRAB domain containing"', '"28|1234"',
         hid(1)],
        ["HGNC:2", "ZNF2", 'zinc "finger" 2', "Zinc fingers C2H2-type", "28", hid(2)],
        ["HGNC:3", "ZNF3", "no ensembl", "Zinc fingers C2H2-type", "28", ""],
        ["HGNC:4", "ORPHAN", "no group", "", "", hid(4)],
    ])
    groups = read_hgnc_groups(path)
    assert list(groups.columns) == ["gene_id", "group", "group_name"]
    got = set(map(tuple, groups.to_numpy()))
    assert got == {(hid(1), "hgnc:28", "Zinc fingers C2H2-type"), (hid(1), "hgnc:1234", "KRAB domain containing"),
                   (hid(2), "hgnc:28", "Zinc fingers C2H2-type")}


def test_read_hgnc_groups_names_missing_columns(tmp_path):
    path = write_tsv(tmp_path / "genes.tsv", ["hgnc_id", "symbol", "ensembl_gene_id"],
                     [["HGNC:1", "A", hid(1)]])
    with pytest.raises(ValueError, match=r"gene_group.*gene_group_id"):
        read_hgnc_groups(path)


# --- Pfam -----------------------------------------------------------------------------------------
def test_pfam_families_one_group_per_domain_singletons_dropped():
    domains = pd.DataFrame({"ensembl_id": [hid(1), hid(1), hid(2), hid(3), hid(3), hid(4)],
                            "pfam_id": ["PF00096", "PF01352", "PF00096", "PF00096", "PF00001", "PF01352"]})
    groups = pfam_families(domains)
    members = groups.groupby("group")["gene_id"].apply(sorted).to_dict()
    assert members == {"pfam:PF00096": [hid(1), hid(2), hid(3)], "pfam:PF01352": [hid(1), hid(4)]}
    assert set(groups["group_name"]) == {"PF00096", "PF01352"}
    capped = pfam_families(domains, max_group_size=2)
    assert set(capped["group"]) == {"pfam:PF01352"}


# --- JASPAR ---------------------------------------------------------------------------------------
JASPAR_SCHEMA = """
CREATE TABLE "MATRIX" ("ID" integer NOT NULL, "COLLECTION" varchar(16) DEFAULT '' COLLATE NOCASE,
  "BASE_ID" varchar(16) NOT NULL DEFAULT '' COLLATE NOCASE, "VERSION" integer NOT NULL DEFAULT '1',
  "NAME" varchar(255) NOT NULL DEFAULT '' COLLATE NOCASE, PRIMARY KEY("ID" AUTOINCREMENT));
CREATE TABLE "MATRIX_ANNOTATION" ("LOCAL_ID" integer NOT NULL, "ID" integer NOT NULL,
  "TAG" varchar(255) NOT NULL DEFAULT '' COLLATE NOCASE, "VAL" varchar(255) DEFAULT '' COLLATE NOCASE,
  PRIMARY KEY("LOCAL_ID" AUTOINCREMENT));
CREATE TABLE "MATRIX_SPECIES" ("ID" integer NOT NULL, "TAX_ID" varchar(255) DEFAULT NULL COLLATE NOCASE);
"""
# ID, collection, base id, version, name, tax id, families (in order)
JASPAR_PROFILES = [
    (1, "CORE", "MA0001", 1, "TFA", "9606", ["OldFam"]),            # superseded by version 2
    (2, "CORE", "MA0001", 2, "TFA", "9606", ["bHLH-ZIP"]),
    (3, "CORE", "MA0002", 1, "TFB::TFC", "9606", ["bHLH-ZIP", "NR2"]),  # dimer: TFB→bHLH-ZIP, TFC→NR2
    (4, "CORE", "MA0003", 1, "Tfd", "10090", ["bHLH-ZIP"]),         # mouse only
    (5, "UNVALIDATED", "UN0001", 1, "TFE", "9606", ["bHLH-ZIP"]),   # not CORE
    (6, "CORE", "MA0004", 1, "TFF", "9606", ["NR2"]),
    (7, "CORE", "MA0005", 1, "NOSUCHTF", "9606", ["NR2"]),          # symbol that does not resolve
]
SYMBOLS = {"TFA": 1, "TFB": 2, "TFC": 3, "TFD": 4, "TFE": 5, "TFF": 6}


def symbol_table():
    return pd.DataFrame({"symbol": list(SYMBOLS), "tier": "approved",
                         "ensembl_id": [hid(i) for i in SYMBOLS.values()], "ambiguous": False})


def make_jaspar(path):
    with sqlite3.connect(path) as db:
        db.executescript(JASPAR_SCHEMA)
        for mid_, collection, base, version, name, tax, families in JASPAR_PROFILES:
            db.execute("INSERT INTO MATRIX VALUES (?, ?, ?, ?, ?)", (mid_, collection, base, version, name))
            db.execute("INSERT INTO MATRIX_SPECIES VALUES (?, ?)", (mid_, tax))
            db.execute("INSERT INTO MATRIX_ANNOTATION (ID, TAG, VAL) VALUES (?, 'class', 'some class')", (mid_,))
            for family in families:
                db.execute("INSERT INTO MATRIX_ANNOTATION (ID, TAG, VAL) VALUES (?, 'family', ?)", (mid_, family))
    return path


def test_jaspar_tf_families_latest_human_core_with_dimers(tmp_path):
    table, report = jaspar_tf_families(make_jaspar(tmp_path / "jaspar.sqlite"), symbols=symbol_table())
    got = table.groupby("group")["gene_id"].apply(sorted).to_dict()
    assert got == {"jaspar:bHLH-ZIP": [hid(1), hid(2)], "jaspar:NR2": [hid(3), hid(6)]}
    assert set(table["group_name"]) == {"bHLH-ZIP", "NR2"}
    assert report["profiles"] == 4  # MA0001 v2, MA0002, MA0004, MA0005; not v1, mouse, UNVALIDATED
    assert report["symbols"] == 5 and report["resolved"] == 4 and report["unresolved"] == 1
    assert report["unresolved_symbols"] == ["NOSUCHTF"]
    assert report["families"] == 2


# --- the prior --------------------------------------------------------------------------------------
FAMILY_A = [hid(i) for i in range(1, 7)]
FAMILY_B = [hid(i) for i in range(11, 17)]
CONFIG = Gene2VecConfig(dim=16, epochs=200, seed=3)


def toy_groups(prefix="pfam"):
    rows = [(g, f"{prefix}:A", "A") for g in FAMILY_A] + [(g, f"{prefix}:B", "B") for g in FAMILY_B]
    return pd.DataFrame(rows, columns=["gene_id", "group", "group_name"])


@pytest.fixture(scope="module")
def vocab():
    human = FAMILY_A + FAMILY_B + [hid(99)]  # hid(99): in no family
    genes = pd.DataFrame({"gene_id": human + [mid(1), mid(2), mid(3)],
                          "species": ["human"] * len(human) + ["mouse"] * 3,
                          "symbol": [f"s{i}" for i in range(len(human) + 3)]})
    orthologs = pd.DataFrame({"mouse_id": [mid(1), mid(2), mid(3)], "human_id": [hid(1), hid(11), hid(2)],
                              "homology_type": ["one2one", "one2one", "one2many"]})
    return build_vocabulary(genes, orthologs)


@pytest.fixture(scope="module")
def built(vocab):
    return build_family_prior(toy_groups(), vocab, config=CONFIG)


def cosine(x, y):
    return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))


def test_family_members_are_closer_to_each_other(built):
    _, human = built
    a, b = human.loc[FAMILY_A].to_numpy(), human.loc[FAMILY_B].to_numpy()
    within = [cosine(x, y) for fam in (a, b) for i, x in enumerate(fam) for y in fam[i + 1:]]
    between = [cosine(x, y) for x in a for y in b]
    assert min(within) > max(between)
    assert np.mean(within) - np.mean(between) > 0.5


def test_mouse_orthologs_take_their_human_partners_vector(built, vocab):
    table, human = built
    (h1, h11, h2, h99, m1, m2, m3) = vocab.encode([hid(1), hid(11), hid(2), hid(99), mid(1), mid(2), mid(3)])
    assert table.mask[[h1, h11, h2, m1, m2]].all()
    np.testing.assert_array_equal(table.vectors[m1], human.loc[hid(1)].to_numpy())
    np.testing.assert_array_equal(table.vectors[m2], human.loc[hid(11)].to_numpy())
    np.testing.assert_array_equal(table.vectors[h1], table.vectors[m1])
    assert not table.mask[m3] and not table.vectors[m3].any()     # one2many: none by default
    assert not table.mask[h99] and not table.mask[:4].any()       # no family; special tokens
    assert table.info["coverage"]["mouse"]["covered"] == 2
    table_any, _ = build_family_prior(toy_groups(), vocab, config=CONFIG, orthology="any")
    np.testing.assert_array_equal(table_any.vectors[m3], human.loc[hid(2)].to_numpy())


def test_build_is_deterministic(built, vocab):
    table, human = built
    again, human_again = build_family_prior(toy_groups(), vocab, config=CONFIG)
    assert np.array_equal(table.vectors, again.vectors) and np.array_equal(table.mask, again.mask)
    assert np.array_equal(human.to_numpy(), human_again.to_numpy())
    other, _ = build_family_prior(toy_groups(), vocab, config=Gene2VecConfig(dim=16, epochs=200, seed=4))
    assert not np.array_equal(table.vectors, other.vectors)


def test_info_records_method_parameters_and_substitute(built, vocab):
    table, human = built
    info = table.info
    assert info["name"] == "family" and info["method"].startswith("gene2vec")
    assert info["parameters"] == {"gene2vec": CONFIG.to_dict(), "max_pairs_per_group": 2000}
    assert info["n_pairs"] == 2 * 15 and info["n_groups"] == 2 and info["n_genes_embedded"] == len(human) == 12
    assert info["substitute"] is True                        # Pfam groups are not HGNC
    hgnc, _ = build_family_prior(toy_groups("hgnc"), vocab, config=CONFIG)
    assert hgnc.info["substitute"] is False
    capped, _ = build_family_prior(toy_groups(), vocab, config=CONFIG, max_pairs_per_group=5)
    assert capped.info["n_pairs"] == 10


def test_bundle_like_groups_are_labelled_substitute(tmp_path, vocab):
    org = tmp_path / "org.sqlite"
    with sqlite3.connect(org) as db:
        db.executescript("CREATE TABLE ensembl (_id INTEGER NOT NULL, ensembl_id VARCHAR(20) NOT NULL);"
                         "CREATE TABLE pfam (_id INTEGER NOT NULL, ipi_id CHAR(11), pfam_id CHAR(7) NULL);")
        db.executemany("INSERT INTO ensembl VALUES (?, ?)", [(i, hid(i)) for i in (1, 2, 3, 4)])
        db.executemany("INSERT INTO pfam VALUES (?, 'IPI', ?)",
                       [(1, "PF00096"), (2, "PF00096"), (3, "PF00096"), (4, "PF00001")])
    jaspar = make_jaspar(tmp_path / "jaspar.sqlite")
    groups, info = bundle_family_groups(orgdb_path=org, jaspar_path=jaspar, symbols=symbol_table())
    assert info["substitute"] is True and info["substitute_for"] == "HGNC gene groups"
    assert [s["name"] for s in info["sources"]] == ["org_hs_eg_db", "jaspar2024"]
    assert all(len(s["sha256"]) == 64 for s in info["sources"])
    assert info["by_source"] == {"pfam": {"groups": 1, "genes": 3}, "jaspar": {"groups": 2, "genes": 4}}
    assert (info["groups"], info["genes"]) == (3, 4)
    table, _ = build_family_prior(groups, vocab, config=Gene2VecConfig(dim=8, epochs=5), info=info)
    assert table.info["substitute"] is True and table.info["substitute_for"] == "HGNC gene groups"
    assert table.info["method"].startswith("gene2vec") and table.info["group_kinds"] == {"jaspar": 2, "pfam": 1}


def test_bundle_family_groups_real_bundle():
    groups, info = bundle_family_groups()
    assert info["substitute"] is True
    assert info["genes"] > 10_000 and info["by_source"]["pfam"]["genes"] > 10_000
    assert info["by_source"]["jaspar"]["groups"] > 50
    assert info["jaspar"]["resolved"] > 500
    assert groups["gene_id"].str.fullmatch(r"ENSG\d{11}").all()
    assert {s["name"]: s["version"] for s in info["sources"]} == {"org_hs_eg_db": "3.16.0-1", "jaspar2024": "4.0.0"}
    assert groups.groupby("group")["gene_id"].nunique().min() >= 2
