"""Dosage-sensitive vs dosage-insensitive transcription factors: gene labels and per-token expression statistics.

**Labels** come from the ClinGen Dosage Sensitivity curation (haploinsufficiency, HI, score of each curated
gene; offline copy shipped in the ``CNVoyant`` wheel), restricted to transcription factors:

- *transcription factor*: a human gene annotated in org.Hs.eg.db to GO:0003700 "DNA-binding transcription
  factor activity" or a descendant term (the propagated ``go_mf_all`` table), with any evidence but ``ND``
  (no data): :func:`gc_lib.inputs.orgdb.transcription_factors`;
- *sensitive*: HI score 3, sufficient evidence that losing one copy causes disease;
- *insensitive*: curated by ClinGen with HI score 0 (no evidence despite curation), 30 (autosomal recessive
  only: one copy suffices) or 40 (dosage sensitivity unlikely). Genes ClinGen never curated are *not* used
  as negatives: absence from the curation is not evidence of insensitivity;
- excluded: HI 1 and 2 (little or emerging evidence: neither class with confidence) and "Not Yet
  Evaluated"; genomic regions (ClinGen ``R`` rows) are not genes and are left out.

ClinGen symbols are resolved to Ensembl IDs with :func:`gc_lib.inputs.genes.map_symbols_to_ensembl`; unresolved
or ambiguous symbols are dropped, never guessed.

**The unit is the human gene.** A mouse token takes the label of its one-to-one human ortholog, so a gene
(human Ensembl ID) and its mouse counterpart always fall in the same cross-validation fold
(:func:`gene_folds` assigns folds to label rows, one per human gene); otherwise a classifier could be
tested on the mouse copy of a gene it was trained on.

**Expression statistics** (:func:`token_statistics`) count, per token and species, the cells in which the
token is among the first ``window`` ranks (what a model with that input length sees), so labelled genes
that the corpus never shows can be set aside (:func:`restrict_to_expressed`); :mod:`gc_lib.tasks.dosage_cells`
computes them shard by shard and samples the cells that show each gene.

**Evaluation**: :func:`out_of_fold_logistic` (a logistic regression per gene fold) and :func:`auc_table` (ROC AUC
per fold, mean ± sd, and pooled); :func:`token_labels` gives a fine-tuned gene classifier its training labels.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..corpus.vocab import Vocabulary
from ..inputs.contract import SPECIES
from ..inputs.genes import map_symbols_to_ensembl
from ..inputs.orgdb import TF_GO_TERM, transcription_factors  # noqa: F401 - TF_GO_TERM stays importable here
from ..inputs.sources import fetch

SENSITIVE_SCORES: tuple[str, ...] = ("3",)
INSENSITIVE_SCORES: tuple[str, ...] = ("0", "30", "40")
LABELS: tuple[str, ...] = ("sensitive", "insensitive")

_COLUMNS = {"kind": "Unnamed: 0", "symbol": "Gene/Region", "hi": "HI Score", "ts": "TS Score"}
# "3 (Sufficient Evidence)"; the curation also holds "'-5 (Not yet evaluated)", a spreadsheet-quoted number
_SCORE = re.compile(r"^'?(-?\d+)\s*\((.*)\)$")


def _split_score(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Score strings → (code, description); a string without a numeric code is kept whole as both."""
    text = values.astype("string").str.strip()
    parts = text.str.extract(_SCORE)
    code = parts[0].fillna(text)
    description = parts[1].str.strip().fillna(text)
    return code.astype(object).where(code.notna(), None), description.astype(object).where(description.notna(), None)


def read_clingen_genes(path=None) -> pd.DataFrame:
    """The gene rows of the ClinGen dosage curation: ``symbol, hi_score, hi_description, ts_score``.

    ``hi_score``/``ts_score`` are the codes ("3", "30", "0", ...; "Not Yet Evaluated" kept whole);
    ``path`` defaults to the bundled copy. A file without the expected columns raises ``ValueError``.
    """
    table = pd.read_csv(path or fetch("clingen_dosage"), encoding="utf-8-sig", dtype=str)
    missing = [c for c in _COLUMNS.values() if c not in table.columns]
    if missing:
        raise ValueError(f"{path or 'clingen_dosage'} is not a ClinGen dosage table: missing columns {missing}")
    genes = table[table[_COLUMNS["kind"]].str.strip() == "G"]
    hi_score, hi_description = _split_score(genes[_COLUMNS["hi"]])
    ts_score, _ = _split_score(genes[_COLUMNS["ts"]])
    return pd.DataFrame({"symbol": genes[_COLUMNS["symbol"]].str.strip().to_numpy(),
                         "hi_score": hi_score.to_numpy(), "hi_description": hi_description.to_numpy(),
                         "ts_score": ts_score.to_numpy()})


def dosage_labels(clingen: pd.DataFrame | None = None, tfs=None) -> pd.DataFrame:
    """One row per labelled human TF gene: ``ensembl_id, symbol, hi_score, label``, sorted by ``ensembl_id``.

    ``clingen``: a :func:`read_clingen_genes` table; ``tfs``: Ensembl IDs of transcription factors (defaults:
    the bundled sources). Two ClinGen rows that resolve to one gene keep the first symbol when their labels
    agree and are both dropped when they conflict.
    """
    clingen = read_clingen_genes() if clingen is None else clingen
    tfs = transcription_factors() if tfs is None else tfs
    label = pd.Series(None, index=clingen.index, dtype=object)
    label[clingen["hi_score"].isin(SENSITIVE_SCORES)] = "sensitive"
    label[clingen["hi_score"].isin(INSENSITIVE_SCORES)] = "insensitive"
    rows = clingen.assign(label=label)[label.notna()]
    ids, _ = map_symbols_to_ensembl(rows["symbol"].astype(str), "human")
    rows = rows.assign(ensembl_id=ids.to_numpy())
    rows = rows[rows["ensembl_id"].notna() & rows["ensembl_id"].isin(set(pd.Series(tfs).astype(str)))]
    consistent = rows.groupby("ensembl_id")["label"].transform("nunique") == 1
    rows = rows[consistent].sort_values(["ensembl_id", "symbol"]).drop_duplicates("ensembl_id")
    return rows[["ensembl_id", "symbol", "hi_score", "label"]].reset_index(drop=True)


def label_summary(labels: pd.DataFrame) -> dict:
    """Counts for reports: ``{"genes", "by_label": {label: n}, "by_hi_score": {score: n}}``."""
    by_label = labels["label"].value_counts()
    return {"genes": int(len(labels)),
            "by_label": {name: int(by_label.get(name, 0)) for name in LABELS},
            "by_hi_score": {str(k): int(v) for k, v in labels["hi_score"].value_counts().sort_index().items()}}


def attach_tokens(labels: pd.DataFrame, vocab: Vocabulary, *, mouse_orthologs: bool = True) -> pd.DataFrame:
    """``labels`` with ``human_token`` and ``mouse_token`` (token ids; -1 where the vocabulary has none).

    The mouse token is the mouse gene whose human ortholog is the labelled gene with homology type
    one-to-one: with one-to-many partners the label of the human copy need not hold for each mouse copy. A
    human gene that several mouse tokens claim as one-to-one partner (a vocabulary inconsistency) gets -1.
    """
    out = labels.copy()
    out["human_token"] = vocab.encode(out["ensembl_id"]).astype(np.int64)
    out["mouse_token"] = np.int64(-1)
    if mouse_orthologs:
        genes = vocab.genes
        homology = genes["homology_type"].fillna("").astype(str).str.removeprefix("ortholog_")
        one2one = genes[(genes["species"] == "mouse") & (homology == "one2one") & genes["human_ortholog"].notna()]
        claimed = one2one["human_ortholog"].astype(str)
        unique = claimed[~claimed.duplicated(keep=False)]
        token_of = pd.Series(unique.index.to_numpy(dtype=np.int64), index=unique.to_numpy())
        out["mouse_token"] = out["ensembl_id"].map(token_of).fillna(-1).astype(np.int64)
    return out


def add_token_counts(totals: dict, codes: np.ndarray, ids: np.ndarray, lengths: np.ndarray, values: np.ndarray, *,
                     n_tokens: int, window: int | None) -> dict:
    """Add one block of cells to ``totals`` (per species code: cell count and per-token sums), checking its input.

    The cells are given flat: ``codes`` (species per cell), ``ids``/``values`` (every cell's tokens concatenated in
    rank order), ``lengths`` (tokens per cell). Blocks can come from any split of the corpus (shards, batches):
    the sums do not depend on it. :func:`statistics_frame` turns the totals into :func:`token_statistics`.
    """
    if window is not None and window < 1:
        raise ValueError(f"window must be a positive number of ranks or None; got {window}")
    codes, ids, lengths = np.asarray(codes), np.asarray(ids, dtype=np.int64), np.asarray(lengths, dtype=np.int64)
    unknown = sorted(set(np.unique(codes).tolist()) - set(range(len(SPECIES))))
    if unknown:
        raise ValueError(f"unknown species codes {unknown}; expected 0..{len(SPECIES) - 1} ({SPECIES})")
    if len(values) != len(ids) or lengths.sum() != len(ids):
        raise ValueError("input_ids and values differ in length in some cells")
    if ids.size and (ids.min() < 0 or ids.max() >= n_tokens):
        raise ValueError(f"token ids must lie in [0, {n_tokens}); got {ids.min()}..{ids.max()}")
    species_of = np.repeat(codes, lengths)
    rank = np.arange(len(ids)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    in_window = np.ones(len(ids), dtype=bool) if window is None else rank < window
    for code in np.unique(codes).tolist():
        mine = species_of == code
        entry = totals.setdefault(code, {"cells": 0, "in_window": np.zeros(n_tokens, dtype=np.int64),
                                         "detected": np.zeros(n_tokens, dtype=np.int64), "value": np.zeros(n_tokens)})
        entry["cells"] += int((codes == code).sum())
        entry["in_window"] += np.bincount(ids[mine & in_window], minlength=n_tokens)
        entry["detected"] += np.bincount(ids[mine], minlength=n_tokens)
        entry["value"] += np.bincount(ids[mine], weights=np.asarray(values, dtype=np.float64)[mine],
                                      minlength=n_tokens)
    return totals


def statistics_frame(totals: dict, n_tokens: int) -> pd.DataFrame:
    """The :func:`token_statistics` table from :func:`add_token_counts` totals (species in :data:`SPECIES` order)."""
    out = pd.DataFrame(index=pd.RangeIndex(n_tokens, name="token_id"))
    for code, name in enumerate(SPECIES):
        if code in totals:
            entry = totals[code]
            out[f"n_cells_{name}"] = entry["in_window"]
            out[f"detection_{name}"] = entry["detected"] / entry["cells"]
            out[f"mean_value_{name}"] = entry["value"] / entry["cells"]
    return out


def token_statistics(cells: pd.DataFrame, n_tokens: int, *, window: int | None = None) -> pd.DataFrame:
    """Per token id ``0..n_tokens-1`` and per species present in ``cells``: how often the corpus shows it.

    ``cells``: columns ``species`` (code: index into :data:`gc_lib.inputs.contract.SPECIES`),
    ``input_ids`` (token ids in rank order, each at most once per cell) and ``values``.
    Columns per species ``s``: ``n_cells_s`` (cells with the token among the first ``window`` ranks; ``None``:
    anywhere), ``detection_s`` (fraction of the species' cells with the token at any rank) and ``mean_value_s``
    (mean value over all the species' cells, 0 where absent). For a corpus on disk, stream it with
    :func:`gc_lib.tasks.dosage_cells.corpus_token_statistics` (same table).
    """
    ids = [np.asarray(x, dtype=np.int64) for x in cells["input_ids"]]
    values = [np.asarray(x, dtype=np.float64) for x in cells["values"]]
    if any(len(a) != len(b) for a, b in zip(ids, values)):
        raise ValueError("input_ids and values differ in length in some cells")
    totals = add_token_counts({}, cells["species"].to_numpy(), np.concatenate(ids) if ids else np.zeros(0),
                              np.array([len(x) for x in ids], dtype=np.int64),
                              np.concatenate(values) if values else np.zeros(0), n_tokens=n_tokens, window=window)
    return statistics_frame(totals, n_tokens)


def expression_features(genes: pd.DataFrame, stats: pd.DataFrame) -> pd.DataFrame:
    """Per gene (row of ``genes``): the detection rate and mean value columns of :func:`token_statistics`, each
    species' columns taken from that species' token only (0 where the gene has none)."""
    columns = [c for c in stats.columns if c.startswith(("detection_", "mean_value_"))]
    out = pd.DataFrame(index=genes.index)
    for column in columns:
        token = genes[f"{column.rsplit('_', 1)[1]}_token"].to_numpy()
        found = stats[column].to_numpy()[np.maximum(token, 0)]
        out[column] = np.where(token >= 0, found, 0.0)
    return out


def _cells_of(tokens: pd.Series, stats: pd.DataFrame, column: str) -> np.ndarray:
    if column not in stats.columns:
        return np.zeros(len(tokens), dtype=np.int64)
    found = stats[column].reindex(tokens.to_numpy()).fillna(0).to_numpy(dtype=np.int64)
    return np.where(tokens.to_numpy() >= 0, found, 0)


def restrict_to_expressed(labels_with_tokens: pd.DataFrame, stats: pd.DataFrame, *, min_cells: int
                          ) -> tuple[pd.DataFrame, dict]:
    """Keep the labelled genes seen in at least ``min_cells`` cells (human and mouse tokens together).

    Adds ``n_cells_human``, ``n_cells_mouse`` (0 for a missing token) and ``n_cells``. Returns the kept rows
    and a coverage report ``{"labelled", "in_vocabulary", "expressed", "by_label": {label: {stage: n}}}``,
    so a notebook can say how many labelled genes each step lost.
    """
    table = labels_with_tokens.copy()
    table["n_cells_human"] = _cells_of(table["human_token"], stats, "n_cells_human")
    table["n_cells_mouse"] = _cells_of(table["mouse_token"], stats, "n_cells_mouse")
    table["n_cells"] = table["n_cells_human"] + table["n_cells_mouse"]
    in_vocab = (table["human_token"] >= 0) | (table["mouse_token"] >= 0)
    expressed = table["n_cells"] >= min_cells
    kept = table[expressed].reset_index(drop=True)

    def stages(mask: pd.Series) -> dict:
        return {"labelled": int(mask.sum()), "in_vocabulary": int((mask & in_vocab).sum()),
                "expressed": int((mask & expressed).sum())}

    coverage = {"labelled": int(len(table)), "in_vocabulary": int(in_vocab.sum()), "expressed": int(len(kept)),
                "by_label": {name: stages(table["label"] == name) for name in LABELS}}
    return kept, coverage


def gene_folds(labels: pd.DataFrame, n_folds: int = 5, seed: int = 0) -> np.ndarray:
    """Fold index (0..``n_folds``-1) per row of ``labels``, stratified by ``label`` and reproducible by ``seed``.

    One row per human gene, so a gene's human and mouse tokens share a fold. Raises ``ValueError`` when a
    class has fewer genes than folds.
    """
    y = labels["label"].to_numpy()
    counts = pd.Series(y).value_counts()
    small = {str(k): int(v) for k, v in counts.items() if v < n_folds}
    if small or len(counts) < 2:
        raise ValueError(f"every class needs at least {n_folds} genes for {n_folds} folds; got "
                         f"{ {str(k): int(v) for k, v in counts.items()} }")
    folds = np.full(len(y), -1, dtype=np.int64)
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for fold, (_, test) in enumerate(splitter.split(np.zeros(len(y)), y)):
        folds[test] = fold
    return folds


def per_gene(labels_with_tokens: pd.DataFrame, per_token: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """One row per gene from per-token rows: the ``weights``-weighted mean of its human and mouse tokens' rows
    (e.g. contextual embeddings weighted by the cells each token was seen in). NaN where no token has weight."""
    per_token = np.asarray(per_token, dtype=np.float64)
    per_token = per_token[:, None] if per_token.ndim == 1 else per_token
    total = np.zeros((len(labels_with_tokens), per_token.shape[1]))
    weight = np.zeros(len(labels_with_tokens))
    for column in ("human_token", "mouse_token"):
        tokens = labels_with_tokens[column].to_numpy()
        present = tokens >= 0
        w = np.where(present, np.asarray(weights, dtype=np.float64)[np.maximum(tokens, 0)], 0.0)
        rows = np.where(present[:, None], np.nan_to_num(per_token[np.maximum(tokens, 0)]), 0.0)
        total += w[:, None] * rows
        weight += w
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weight[:, None] > 0, total / weight[:, None], np.nan)


def token_labels(genes: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Token id → label and token id → human Ensembl ID, over the human and mouse tokens of ``genes``.

    Both species' tokens of a gene carry its label (what :func:`gc_lib.tasks.finetune.fit_gene_classifier` trains
    on); the human ID groups them so its validation split never separates a gene from its ortholog.
    """
    table = pd.concat([genes[genes[c] >= 0].set_index(c) for c in ("human_token", "mouse_token")])
    table.index = table.index.rename("token_id")
    return table["label"], table["ensembl_id"]


def out_of_fold_logistic(features: np.ndarray, y: np.ndarray, folds: np.ndarray, *, C: float = 0.1) -> np.ndarray:
    """Out-of-fold probabilities of class 1 from a logistic regression per fold (one row of ``features`` per gene).

    Per fold: standardise on the training genes, weight classes by their frequency (``class_weight="balanced"``),
    L2 penalty with inverse strength ``C`` (few genes, many features). NaN features count as 0 (a missing prior).
    """
    x, y, folds = np.nan_to_num(np.asarray(features, dtype=np.float64)), np.asarray(y), np.asarray(folds)
    x = x[:, None] if x.ndim == 1 else x
    scores = np.full(len(y), np.nan)
    for fold in np.unique(folds):
        train, test = folds != fold, folds == fold
        model = make_pipeline(StandardScaler(), LogisticRegression(C=C, class_weight="balanced", max_iter=5_000))
        scores[test] = model.fit(x[train], y[train]).predict_proba(x[test])[:, 1]
    return scores


def auc_table(scores: pd.DataFrame, y: np.ndarray, folds: np.ndarray) -> pd.DataFrame:
    """ROC AUC per method (column of ``scores``, one row per gene; NaN = not scored, left out).

    Columns: ``auc_mean``/``auc_sd`` over the folds whose scored genes hold both classes (sd with ddof=1),
    ``auc_pooled`` over all scored genes, ``folds`` (folds used), ``genes_scored``, ``auc_per_fold`` (list).
    Sorted by ``auc_mean``, best first.
    """
    y, folds = np.asarray(y), np.asarray(folds)
    rows = []
    for method in scores.columns:
        s = scores[method].to_numpy(dtype=np.float64)
        scored = np.isfinite(s)
        per_fold = [float(roc_auc_score(y[(folds == k) & scored], s[(folds == k) & scored]))
                    for k in np.unique(folds) if len(set(y[(folds == k) & scored])) == 2]
        rows.append({"method": method, "auc_mean": float(np.mean(per_fold)) if per_fold else np.nan,
                     "auc_sd": float(np.std(per_fold, ddof=1)) if len(per_fold) > 1 else np.nan,
                     "auc_pooled": float(roc_auc_score(y[scored], s[scored])) if len(set(y[scored])) == 2 else np.nan,
                     "folds": len(per_fold), "genes_scored": int(scored.sum()), "auc_per_fold": per_fold})
    return pd.DataFrame(rows).set_index("method").sort_values("auc_mean", ascending=False)
