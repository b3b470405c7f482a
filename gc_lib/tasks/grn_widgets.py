"""A TF explorer for inferred networks (notebook 06): pick a TF and a method → its top predicted targets, each
marked as a held-out edge (never seen by any prior: a real hit), an edge of the prior (seen: not evidence), or
neither, with a small star-shaped network plot.

:func:`show_tf` draws one TF (what papermill and a saved notebook show); :func:`tf_explorer` wraps it in
ipywidgets dropdowns for JupyterLab.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

STATUS_COLOURS = {"held out": "tab:green", "in the prior": "0.6", "": "tab:blue"}


def top_targets(scores: pd.DataFrame, tf: str, *, k: int = 15, heldout: pd.DataFrame | None = None,
                prior_edges: pd.DataFrame | None = None, symbols: pd.Series | None = None) -> pd.DataFrame:
    """The ``k`` highest-scored targets of ``tf`` in ``scores`` (``tf, target, score``): rank, target, symbol,
    score and status (``"held out"`` if in ``heldout``, ``"in the prior"`` if in ``prior_edges``, else empty)."""
    mine = scores[scores["tf"] == tf].nlargest(k, "score")
    status = np.full(len(mine), "", dtype=object)
    for label, edges in (("in the prior", prior_edges), ("held out", heldout)):
        if edges is not None:
            known = set(edges.loc[edges["tf"] == tf, "target"])
            status[mine["target"].isin(known).to_numpy()] = label
    symbols = symbols if symbols is not None else pd.Series(dtype=object)
    return pd.DataFrame({"rank": np.arange(1, len(mine) + 1), "target": mine["target"].to_numpy(),
                         "symbol": mine["target"].map(symbols).fillna(mine["target"]).to_numpy(),
                         "score": mine["score"].to_numpy(), "status": status})


def plot_tf_network(table: pd.DataFrame, tf_label: str, *, title: str = "", ax=None):
    """The TF in the middle, its targets around it (rank 1 at the top, clockwise), edges coloured by status and
    widened by rank."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 5.5))
    angle = np.pi / 2 - 2 * np.pi * np.arange(len(table)) / max(len(table), 1)
    x, y = np.cos(angle), np.sin(angle)
    for i, row in enumerate(table.itertuples()):
        ax.plot([0, x[i]], [0, y[i]], color=STATUS_COLOURS[row.status], lw=3.0 - 2.0 * i / max(len(table), 1),
                zorder=1)
        ax.annotate(row.symbol, (x[i], y[i]), ha="center", va="center", fontsize=8, zorder=3,
                    bbox=dict(boxstyle="round", fc="white", ec=STATUS_COLOURS[row.status]))
    ax.annotate(tf_label, (0, 0), ha="center", va="center", fontsize=10, weight="bold", zorder=3,
                bbox=dict(boxstyle="round", fc="lightyellow", ec="k"))
    for label, colour in STATUS_COLOURS.items():
        ax.plot([], [], color=colour, lw=2, label=label or "not a known edge")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, -0.12), ncol=3, fontsize=8, frameon=False)
    ax.set(xlim=(-1.3, 1.3), ylim=(-1.3, 1.3), xticks=[], yticks=[], aspect="equal", title=title)
    return ax.figure


def show_tf(scores_by_method: dict[str, pd.DataFrame], tf: str, method: str, *, k: int = 15,
            heldout=None, prior_edges=None, symbols=None, note: str = ""):
    """Display one TF's top targets under one method: the table and the network plot."""
    from IPython.display import display

    table = top_targets(scores_by_method[method], tf, k=k, heldout=heldout, prior_edges=prior_edges,
                        symbols=symbols)
    label = symbols.get(tf, tf) if symbols is not None else tf
    display(table)
    fig = plot_tf_network(table, label, title=f"{label}: top {len(table)} targets, {method} {note}".strip())
    plt.show()
    return fig


def tf_explorer(scores_by_method: dict[str, pd.DataFrame], tfs, *, default_tf: str, default_method: str,
                k: int = 15, heldout=None, prior_edges=None, symbols=None, note: str = ""):
    """Dropdowns for the TF and the method, redrawing :func:`show_tf` below them (needs a live Jupyter kernel)."""
    import ipywidgets as widgets

    labels = [(f"{symbols.get(t, t) if symbols is not None else t}", t) for t in tfs]
    tf_box = widgets.Dropdown(options=labels, value=default_tf, description="TF")
    method_box = widgets.Dropdown(options=list(scores_by_method), value=default_method, description="method")
    out = widgets.Output()

    def redraw(*_):
        out.clear_output(wait=True)
        with out:
            show_tf(scores_by_method, tf_box.value, method_box.value, k=k, heldout=heldout,
                    prior_edges=prior_edges, symbols=symbols, note=note)

    tf_box.observe(redraw, names="value")
    method_box.observe(redraw, names="value")
    redraw()
    return widgets.VBox([widgets.HBox([tf_box, method_box]), out])
