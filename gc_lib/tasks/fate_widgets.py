"""Explorers for the in-silico cell-fate screen (notebook 10): the ranked screen of candidate TFs, one TF's
per-cell goal scores against the random matched null and the genes it moves most, and a gene's nearest
neighbours in each gene-embedding table (GeneCompass's input embedding and the priors it was built from).

:func:`plot_ranked_screen` is the notebook's saved figure; :func:`show_tf` and :func:`show_gene_neighbours`
draw one selection (what papermill and a saved notebook show); :func:`screen_explorer` and
:func:`gene_explorer` wrap them in ipywidgets for JupyterLab.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

ROLE_COLOURS = {"known driver": "tab:red", "negative control": "tab:blue"}


def _tf_row(screen: pd.DataFrame, tf) -> pd.Series:
    """The screen's row of ``tf``, given as a gene symbol or a token; ValueError if it was not screened."""
    hit = screen[screen["gene"] == tf] if isinstance(tf, str) else screen.iloc[0:0]
    if hit.empty and isinstance(tf, (int, np.integer)) and not isinstance(tf, bool):
        hit = screen[screen["token"] == int(tf)]
    if hit.empty:
        raise ValueError(f"TF {tf!r} is not in the screen (neither a screened symbol nor a screened token)")
    return hit.iloc[0]


def plot_ranked_screen(screen: pd.DataFrame, *, title: str = "", ax=None,
                       label_roles=("known driver", "negative control")):
    """goal_score against rank for every TF (grey), the TFs of ``label_roles`` marked and labelled with their
    symbol and rank, so one sees at a glance whether the known drivers top the screen and the controls do not."""
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 4.5))
    ranked = screen.sort_values("rank")
    ax.plot(ranked["rank"], ranked["goal_score"], color="0.6", lw=1, marker=".", ms=3, zorder=1,
            label="all candidate TFs")
    for role in label_roles:
        mine = ranked[ranked["role"] == role]
        colour = ROLE_COLOURS.get(role, "tab:orange")
        ax.scatter(mine["rank"], mine["goal_score"], color=colour, s=30, zorder=3, label=role)
        for row in mine.itertuples():
            ax.annotate(f"{row.gene} (#{row.rank:g})", (row.rank, row.goal_score), xytext=(4, 4),
                        textcoords="offset points", fontsize=8, color=colour)
    ax.axhline(0, color="k", ls=":", lw=1)
    ax.set(xlabel="rank (1 = best)", ylabel="goal score (toward goal − toward alternatives)", title=title)
    ax.legend(fontsize=8, frameon=False)
    return ax.figure


def tf_summary(screen: pd.DataFrame, genes: pd.DataFrame, tf, *, k: int = 15) -> tuple[dict, pd.DataFrame]:
    """One TF's line of the screen (rank out of N, goal_score, p, q, n_cells) and the ``k`` genes it moves most
    (largest |mean_shift|, sign kept)."""
    row = _tf_row(screen, tf)
    summary = {"gene": row["gene"], "token": int(row["token"]), "rank": int(row["rank"]), "n_tfs": len(screen),
               "goal_score": float(row["goal_score"]), "p_value": float(row["p_value"]),
               "q_value": float(row["q_value"]), "n_cells": int(row["n_cells"]), "role": row.get("role", "")}
    mine = genes[genes["token"] == summary["token"]]
    top = mine.loc[mine["mean_shift"].abs().sort_values(ascending=False, kind="stable").index[:k]]
    table = pd.DataFrame({"rank": np.arange(1, len(top) + 1), "gene": top["gene"].to_numpy(),
                          "mean_shift": top["mean_shift"].to_numpy(), "n_cells": top["n_cells"].to_numpy()})
    return summary, table


def show_tf(screen: pd.DataFrame, cells: pd.DataFrame, genes: pd.DataFrame, tf, *, null_cells=None,
            k: int = 15, note: str = ""):
    """Display one TF: its summary, its top moved genes, and a figure of its per-cell goal scores against the
    null's (left) beside its top moved genes (right)."""
    from IPython.display import display

    summary, table = tf_summary(screen, genes, tf, k=k)
    display(pd.DataFrame([summary]))
    display(table)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    scores = cells.loc[cells["token"] == summary["token"], "goal_score"]
    if null_cells is not None:
        left.hist(null_cells["goal_score"], bins=30, density=True, color="0.7", label="random matched null")
    left.hist(scores, bins=30, density=True, alpha=0.7, color="tab:red", label=summary["gene"])
    left.axvline(0, color="k", ls=":", lw=1)
    left.set(xlabel="per-cell goal score", ylabel="density", title="cells")
    left.legend(fontsize=8, frameon=False)
    right.barh(table["gene"][::-1], table["mean_shift"][::-1], color="tab:red")
    right.set(xlabel="mean shift", title=f"top {len(table)} moved genes")
    fig.suptitle(f"{summary['gene']}: rank {summary['rank']} of {summary['n_tfs']}, goal score "
                 f"{summary['goal_score']:.3g}, q = {summary['q_value']:.2g} {note}".strip())
    fig.tight_layout()
    plt.show()
    return fig


def _explorer(controls: list, draw):
    """VBox([HBox(controls), Output]): ``draw()`` redrawn into the Output now and whenever a control changes."""
    import ipywidgets as widgets

    out = widgets.Output()

    def redraw(*_):
        out.clear_output(wait=True)
        with out:
            draw()

    for control in controls:
        control.observe(redraw, names="value")
    redraw()
    return widgets.VBox([widgets.HBox(controls), out])


def screen_explorer(screen: pd.DataFrame, cells: pd.DataFrame, genes: pd.DataFrame, *, default_tf,
                    null_cells=None, k: int = 15, note: str = ""):
    """A dropdown of the screened TFs ("SYMBOL (rank r)", best first) and a slider for ``k``, redrawing
    :func:`show_tf` below them (needs a live Jupyter kernel to show)."""
    import ipywidgets as widgets

    ranked = screen.sort_values("rank")
    labels = [(f"{g} (rank {r:g})", int(t)) for g, r, t in zip(ranked["gene"], ranked["rank"], ranked["token"])]
    tf_box = widgets.Dropdown(options=labels, value=int(_tf_row(screen, default_tf)["token"]), description="TF")
    k_box = widgets.IntSlider(value=k, min=1, max=max(k, 50), description="top genes")
    return _explorer([tf_box, k_box], lambda: show_tf(screen, cells, genes, tf_box.value, null_cells=null_cells,
                                                      k=k_box.value, note=note))


def nearest_genes(tables: dict[str, pd.DataFrame], gene_id: str, *, k: int = 10,
                  symbols: pd.Series | None = None) -> pd.DataFrame:
    """The ``k`` nearest genes of ``gene_id`` by cosine similarity in each table (index = gene ids, rows =
    vectors), as a long table ``source, rank, gene_id, symbol, cosine``. The gene itself and zero or non-finite
    rows are left out; a table without a usable vector for the gene gives no rows and is named in
    ``.attrs["missing"]``."""
    symbols = symbols if symbols is not None else pd.Series(dtype=object)
    parts, missing = [], []
    for source, table in tables.items():
        vectors = table.to_numpy(dtype=float)
        norms = np.linalg.norm(vectors, axis=1)
        usable = np.isfinite(norms) & (norms > 0)
        is_gene = (table.index == gene_id)
        if not (is_gene & usable).any():
            missing.append(source)
            continue
        unit = vectors[usable] / norms[usable, None]
        query = unit[np.flatnonzero(is_gene[usable])[0]]
        cosine = unit @ query
        ids = table.index[usable]
        keep = ids != gene_id
        cosine, ids = cosine[keep], ids[keep]
        order = np.argsort(-cosine, kind="stable")[:k]
        parts.append(pd.DataFrame({"source": source, "rank": np.arange(1, len(order) + 1), "gene_id": ids[order],
                                   "symbol": ids[order].map(lambda g: symbols.get(g, g)), "cosine": cosine[order]}))
    columns = ["source", "rank", "gene_id", "symbol", "cosine"]
    result = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    result.attrs["missing"] = missing
    return result


def show_gene_neighbours(tables: dict[str, pd.DataFrame], gene_id: str, *, k: int = 10,
                         symbols: pd.Series | None = None, note: str = "") -> pd.DataFrame:
    """Display (and return) a gene's nearest neighbours side by side: one column per table, rows = rank,
    cells ``"SYMBOL (cosine)"``, with a line naming the tables that lack the gene."""
    from IPython.display import Markdown, display

    near = nearest_genes(tables, gene_id, k=k, symbols=symbols)
    label = symbols.get(gene_id, gene_id) if symbols is not None else gene_id
    missing = near.attrs["missing"]
    lacking = f" Not in: {', '.join(missing)}." if missing else ""
    display(Markdown(f"**{label}** ({gene_id}): {k} nearest genes by cosine similarity.{lacking} {note}".strip()))
    cells = near.assign(cell=[f"{s} ({c:.2f})" for s, c in zip(near["symbol"], near["cosine"])])
    wide = cells.pivot(index="rank", columns="source", values="cell") if len(near) else pd.DataFrame()
    wide = wide.reindex(columns=[s for s in tables if s not in missing])
    wide.attrs["missing"] = missing
    display(wide)
    return wide


def gene_explorer(tables: dict[str, pd.DataFrame], genes, *, default_gene: str, k: int = 10,
                  symbols: pd.Series | None = None):
    """A dropdown of ``genes`` (labelled by symbol) and a slider for ``k``, redrawing
    :func:`show_gene_neighbours` below them (needs a live Jupyter kernel to show)."""
    import ipywidgets as widgets

    labels = [(f"{symbols.get(g, g) if symbols is not None else g}", g) for g in genes]
    gene_box = widgets.Dropdown(options=labels, value=default_gene, description="gene")
    k_box = widgets.IntSlider(value=k, min=1, max=max(k, 50), description="neighbours")
    return _explorer([gene_box, k_box], lambda: show_gene_neighbours(tables, gene_box.value, k=k_box.value,
                                                                     symbols=symbols))
