"""What a biologist tries before an in-silico screen, on the same candidate TFs (notebook 10), and where the known
drivers land in each ranking.

- **Differential expression**: TFs ranked by their log fold change goal vs start (Wilcoxon test of scanpy's
  ``rank_genes_groups`` on log1p(CP10k)); for a deletion screen, by the fold change start vs goal (a TF to delete
  should be higher in the start state). A TF measured in neither state scores 0: DE cannot see it.
- **GRN prior**: the TF's targets in the prior's edges, overlapped with the genes DE calls up in the goal (for a
  deletion: up in the start); score −log10 of the hypergeometric tail over the measured genes. A TF without
  targets scores 0. Mouse genes meet the (human) edges through one-to-one orthologs.
- **Random**: a uniform random ranking puts a gene at rank ≤ r with probability r / N; :func:`driver_ranks` gives
  that as ``p_random`` beside every rank.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData


def de_table(adata: AnnData, labels, start: str, goal: str) -> pd.DataFrame:
    """Per gene (``var_names``): Wilcoxon score, log2 fold change, adjusted p, and the fraction of goal and start
    cells expressing it, goal vs start (scanpy ``rank_genes_groups`` on log1p(CP10k) of the counts in ``X``)."""
    import scanpy as sc

    labels = np.asarray(labels).astype(str)
    chosen = np.isin(labels, [start, goal])
    for state in (start, goal):
        if (labels == state).sum() < 2:
            raise ValueError(f"differential expression needs two or more {state!r} cells; have "
                             f"{int((labels == state).sum())}")
    data = AnnData(adata.X[chosen].copy(), obs=pd.DataFrame({"state": pd.Categorical(labels[chosen])},
                                                            index=adata.obs_names[chosen]),
                   var=pd.DataFrame(index=adata.var_names))
    sc.pp.normalize_total(data, target_sum=1e4)
    sc.pp.log1p(data)
    sc.tl.rank_genes_groups(data, "state", groups=[goal], reference=start, method="wilcoxon", pts=True)
    table = sc.get.rank_genes_groups_df(data, group=goal).set_index("names")
    table = table.rename(columns={"logfoldchanges": "log2fc", "pvals_adj": "q_value", "pct_nz_group": "goal_fraction"})
    table["start_fraction"] = data.uns["rank_genes_groups"]["pts"][start].reindex(table.index).to_numpy()
    return table[["scores", "log2fc", "q_value", "goal_fraction", "start_fraction"]].rename_axis("gene_id")


def de_genes(de: pd.DataFrame, *, direction: str = "up", n_top: int = 200, max_q: float = 0.05) -> list[str]:
    """The ``n_top`` genes DE calls up in the goal (``direction="up"``) or in the start (``"down"``): adjusted
    p below ``max_q`` and a fold change of that sign, strongest Wilcoxon score first."""
    if direction not in ("up", "down"):
        raise ValueError(f"direction is 'up' or 'down'; got {direction!r}")
    sign = 1.0 if direction == "up" else -1.0
    called = de[(de["q_value"] < max_q) & (sign * de["log2fc"] > 0)]
    return called.sort_values("scores", ascending=direction == "down").index[:n_top].tolist()


def de_scores(de: pd.DataFrame, candidates: pd.DataFrame, kind: str) -> pd.DataFrame:
    """``token, gene, score, measured``: each candidate's log2 fold change goal vs start (sign flipped for a
    deletion screen); 0 for a TF the data does not measure or no cell of either state expresses."""
    fold = de["log2fc"].where((de["goal_fraction"] + de["start_fraction"]) > 0)
    score = fold.reindex(candidates["gene_id"]).to_numpy()
    measured = np.isfinite(score)
    score = np.where(measured, score, 0.0) * (-1.0 if kind == "delete" else 1.0)
    return candidates[["token", "gene"]].assign(score=score, measured=measured).reset_index(drop=True)


def grn_overlap_scores(edges: pd.DataFrame, candidates: pd.DataFrame, de_set, universe) -> pd.DataFrame:
    """``token, gene, score, targets, overlap``: −log10 of the hypergeometric tail of each TF's prior targets
    among the DE genes ``de_set``, all within ``universe`` (the measured genes). ``edges``: ``tf, target`` in the
    same gene IDs as ``candidates["human_id"]``, ``de_set`` and ``universe`` (human Ensembl IDs)."""
    from scipy.stats import hypergeom

    universe = pd.Index(pd.unique(np.asarray(list(universe), dtype=object)))
    de_set = set(de_set) & set(universe)
    inside = edges[edges["target"].isin(universe)]
    targets = inside.groupby("tf")["target"].apply(set)
    rows = []
    for tf in candidates["human_id"]:
        mine = targets.get(tf, set()) if isinstance(tf, str) else set()
        overlap = len(mine & de_set)
        p = hypergeom.sf(overlap - 1, len(universe), len(de_set), len(mine)) if mine else 1.0
        rows.append((len(mine), overlap, -np.log10(max(p, 1e-300))))
    table = pd.DataFrame(rows, columns=["targets", "overlap", "score"])
    return pd.concat([candidates[["token", "gene"]].reset_index(drop=True), table], axis=1)


def human_ids(gene_ids, species: str, orthologs: pd.DataFrame | None = None) -> pd.Series:
    """Each gene's human Ensembl ID: itself for human genes; a mouse gene's one-to-one ortholog (NaN without one).
    ``orthologs``: ``mouse_id, human_id, homology_type`` (default :func:`gc_lib.inputs.genes.mouse_to_human`)."""
    ids = pd.Series(np.asarray(list(gene_ids), dtype=object))
    if species == "human":
        return ids.set_axis(ids.to_numpy())
    if orthologs is None:
        from ..inputs.genes import mouse_to_human

        orthologs = mouse_to_human()
    one2one = orthologs[orthologs["homology_type"].astype(str).str.removeprefix("ortholog_") == "one2one"]
    partner = one2one.drop_duplicates("mouse_id").set_index("mouse_id")["human_id"]
    return pd.Series(partner.reindex(ids).to_numpy(), index=ids.to_numpy())


def driver_ranks(rankings: dict[str, pd.DataFrame], genes) -> pd.DataFrame:
    """Where each gene of ``genes`` (symbols) ranks under each method: ``method, gene, rank, n, percentile,
    p_random`` (rank 1 best; ties share their average rank; ``p_random`` = rank / n, the chance a uniform random
    ranking puts it there or higher). ``rankings``: method → ``gene, score`` (higher is better). A gene not among
    a method's candidates gets NaN."""
    rows = []
    for method, table in rankings.items():
        ranks = table["score"].rank(ascending=False, method="average").to_numpy()
        by_gene = dict(zip(table["gene"].astype(str).str.upper(), ranks))
        n = len(table)
        for gene in genes:
            rank = by_gene.get(str(gene).upper(), np.nan)
            rows.append({"method": method, "gene": gene, "rank": rank, "n": n, "percentile": rank / n,
                         "p_random": min(rank / n, 1.0) if np.isfinite(rank) else np.nan})
    return pd.DataFrame(rows)


def recovery_summary(ranks: pd.DataFrame) -> pd.DataFrame:
    """Per method: the known drivers' best and median rank and mean percentile (0 = top), and the random
    ranking's expectation for the same candidates ((n + 1) / 2, percentile 0.5)."""
    found = ranks.dropna(subset=["rank"])
    summary = found.groupby("method", sort=False).agg(drivers=("gene", "size"), best_rank=("rank", "min"),
                                                      median_rank=("rank", "median"),
                                                      mean_percentile=("percentile", "mean"), n=("n", "first"))
    summary["random_expected_rank"] = (summary["n"] + 1) / 2
    return summary
