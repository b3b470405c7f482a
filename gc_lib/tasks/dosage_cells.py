"""Corpus cells for notebook 09, streamed shard by shard so a Census-scale corpus never sits in memory.

- :func:`corpus_token_statistics`: :func:`gc_lib.tasks.dosage.token_statistics` of a whole corpus, accumulated
  over record batches of its Parquet shards.
- :func:`choose_cells` / :func:`sample_cells`: up to ``cells_per_gene`` random corpus cells that hold each
  labelled gene (its human or mouse token) among their first ``window`` ranks — the cells the model sees the gene
  in. One pass builds the inverted index token → cells for the labelled tokens only (numpy over each batch's
  concatenated token arrays) and keeps, per gene, the cells with the smallest random keys seen so far (a
  bottom-k sample, i.e. a uniform sample without replacement); a second pass reads just the chosen rows.
  Memory: one record batch plus ``cells_per_gene`` pairs per gene.
- :func:`out_of_fold_fine_tuned`: a gene-token classifier fine-tuned per gene fold on those cells, scoring the
  held-out genes.

A cell's *position* is its row in the corpus read in manifest order (what
:func:`gc_lib.corpus.builder.read_corpus` would give it as index).
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from ..corpus.builder import shard_paths
from ..corpus.shards import Shard
from . import dosage, finetune
from .cell_tokens import CellTokens

CORPUS_COLUMNS: tuple[str, ...] = ("input_ids", "values", "species", "dataset", "row")
BATCH_CELLS = 16_384  # cells per record batch: bounds memory (a 2,048-token cell is ~16 kB with its values)


def iter_corpus_batches(corpus_dir: str | os.PathLike, columns: Sequence[str], *, batch_size: int = BATCH_CELLS,
                        progress: bool = False) -> Iterator[tuple[int, pa.RecordBatch]]:
    """``(position of the batch's first cell, record batch)`` over every shard of the corpus, in manifest order."""
    offset = 0
    for path in tqdm(shard_paths(corpus_dir), desc="corpus shards", disable=not progress):
        for batch in Shard(path).iter_batches(batch_size, columns):
            yield offset, batch
            offset += batch.num_rows


def _flat(lists: pa.Array, window: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A list column → (values of every cell concatenated, cell index of each value), cut to ``window`` ranks."""
    if window is not None:
        lists = pc.list_slice(lists, 0, window)
    return (pc.list_flatten(lists).to_numpy(zero_copy_only=False),
            pc.list_parent_indices(lists).to_numpy(zero_copy_only=False).astype(np.int64))


def corpus_token_statistics(corpus_dir: str | os.PathLike, n_tokens: int, *, window: int | None = None,
                            batch_size: int = BATCH_CELLS, progress: bool = False) -> pd.DataFrame:
    """:func:`gc_lib.tasks.dosage.token_statistics` of every cell of the corpus in ``corpus_dir`` (same columns and
    values), computed batch by batch."""
    totals: dict = {}
    for _, batch in iter_corpus_batches(corpus_dir, ["species", "input_ids", "values"], batch_size=batch_size,
                                        progress=progress):
        ids, parent = _flat(batch.column("input_ids"))
        values, _ = _flat(batch.column("values"))
        lengths = np.bincount(parent, minlength=batch.num_rows)
        dosage.add_token_counts(totals, batch.column("species").to_numpy(), ids, lengths, values,
                                n_tokens=n_tokens, window=window)
    return dosage.statistics_frame(totals, n_tokens)


def _gene_of_token(genes: pd.DataFrame, n_tokens: int) -> np.ndarray:
    """token id → row of ``genes`` whose human or mouse token it is (-1: no labelled gene)."""
    lookup = np.full(n_tokens, -1, dtype=np.int64)
    for column in ("human_token", "mouse_token"):
        tokens = genes[column].to_numpy(dtype=np.int64)
        present = tokens >= 0
        lookup[tokens[present]] = np.flatnonzero(present)
    return lookup


def _keep_smallest(gene: np.ndarray, cell: np.ndarray, key: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
    """The ``k`` pairs with the smallest keys per gene."""
    order = np.lexsort((key, gene))
    gene, cell, key = gene[order], cell[order], key[order]
    starts = np.flatnonzero(np.r_[True, gene[1:] != gene[:-1]]) if len(gene) else np.zeros(0, dtype=np.int64)
    rank = np.arange(len(gene)) - np.repeat(starts, np.diff(np.r_[starts, len(gene)]))
    keep = rank < k
    return gene[keep], cell[keep], key[keep]


def choose_cells(corpus_dir: str | os.PathLike, genes: pd.DataFrame, *, window: int, cells_per_gene: int,
                 seed: int = 0, batch_size: int = BATCH_CELLS, progress: bool = False) -> pd.DataFrame:
    """Which cells to sample for which gene: one row per ``(gene, position)`` pair, sorted by gene then position.

    ``genes``: rows with ``human_token`` and ``mouse_token`` (-1 where absent); ``gene`` in the result is the row
    number in ``genes``. A gene's cells are ``min(cells_per_gene, cells holding it)`` cells drawn uniformly without
    replacement from the corpus cells holding one of its tokens among their first ``window`` ranks. The random
    keys come from ``np.random.default_rng(seed)``, one per (cell, labelled token) occurrence in corpus order, so
    the choice depends on ``seed`` and the corpus only (not on ``batch_size``).
    """
    if window < 1 or cells_per_gene < 0:
        raise ValueError(f"window must be positive and cells_per_gene non-negative; got {window}, {cells_per_gene}")
    tokens = genes[["human_token", "mouse_token"]].to_numpy(dtype=np.int64)
    lookup = _gene_of_token(genes, int(tokens.max(initial=-1)) + 1)
    rng = np.random.default_rng(seed)
    kept = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0))
    for offset, batch in iter_corpus_batches(corpus_dir, ["input_ids"], batch_size=batch_size, progress=progress):
        ids, parent = _flat(batch.column("input_ids"), window)
        ids = ids.astype(np.int64)
        gene = np.full(len(ids), -1, dtype=np.int64)
        inside = ids < len(lookup)
        gene[inside] = lookup[ids[inside]]
        hit = gene >= 0                                      # the inverted index, restricted to labelled tokens
        pairs = (gene[hit], parent[hit] + offset, rng.random(int(hit.sum())))
        kept = _keep_smallest(*(np.concatenate([a, b]) for a, b in zip(kept, pairs)), cells_per_gene)
    # a gene's human and mouse tokens never share a cell (one species per cell); if they did, keep the pair once
    chosen = pd.DataFrame({"gene": kept[0], "position": kept[1]}).drop_duplicates()
    return chosen.sort_values(["gene", "position"], ignore_index=True)


def read_cells(corpus_dir: str | os.PathLike, positions: Sequence[int], *, columns: Sequence[str] = CORPUS_COLUMNS,
               batch_size: int = BATCH_CELLS, progress: bool = False) -> pd.DataFrame:
    """The corpus rows at ``positions`` (sorted, unique), indexed by position; only those rows are kept in memory."""
    wanted = np.unique(np.asarray(positions, dtype=np.int64))
    parts, index = [], []
    for offset, batch in iter_corpus_batches(corpus_dir, columns, batch_size=batch_size, progress=progress):
        here = wanted[(wanted >= offset) & (wanted < offset + batch.num_rows)]
        if len(here):
            parts.append(batch.take(pa.array(here - offset)))
            index.append(here)
    if not parts:
        return pd.DataFrame(columns=list(columns), index=pd.Index([], name="position", dtype=np.int64))
    frame = pa.Table.from_batches(parts).to_pandas()
    frame.index = pd.Index(np.concatenate(index), name="position")
    return frame


def sample_cells(corpus_dir: str | os.PathLike, genes: pd.DataFrame, *, window: int, cells_per_gene: int,
                 seed: int = 0, batch_size: int = BATCH_CELLS, progress: bool = False) -> pd.DataFrame:
    """The corpus cells :func:`choose_cells` picks, pooled (a cell chosen for several genes appears once), with
    the columns of :data:`CORPUS_COLUMNS`, indexed by position in the corpus."""
    chosen = choose_cells(corpus_dir, genes, window=window, cells_per_gene=cells_per_gene, seed=seed,
                          batch_size=batch_size, progress=progress)
    return read_cells(corpus_dir, chosen["position"].to_numpy(), batch_size=batch_size, progress=progress)


def out_of_fold_fine_tuned(cells: CellTokens, genes: pd.DataFrame, folds: np.ndarray, checkpoint: str | os.PathLike,
                           model_root: str | os.PathLike, config: finetune.FinetuneConfig, *, reuse: bool = True,
                           progress: bool = False) -> np.ndarray:
    """Out-of-fold scores of a fine-tuned gene-token classifier: per fold, fit on the tokens of the training genes
    (labels from :func:`gc_lib.tasks.dosage.token_labels`; the test genes stay in the cells as unlabelled
    context), then score each test gene by its mean predicted probability of *sensitive* over the cells it occurs in
    (human and mouse tokens weighted by their cells). NaN for a gene no cell shows.

    Models go to ``model_root/{pretrained|scratch}_fold{k}`` (``config.from_scratch`` picks the name), fold ``k``
    with seed ``config.seed + k``; ``reuse`` skips a fit whose finished model has the same settings.
    """
    folds = np.asarray(folds)
    scores = np.full(len(genes), np.nan)
    for fold in tqdm(np.unique(folds).tolist(), desc="folds", disable=not progress):
        labels, groups = dosage.token_labels(genes[folds != fold])
        model_dir = Path(model_root) / f"{'scratch' if config.from_scratch else 'pretrained'}_fold{fold}"
        fold_config = dataclasses.replace(config, seed=config.seed + fold)
        finetune.fit_gene_classifier(cells, labels, checkpoint, model_dir, fold_config, groups=groups, reuse=reuse,
                                     progress=False)
        table = finetune.predict_genes(cells, model_dir)
        test = genes[folds == fold]
        tokens = test[["human_token", "mouse_token"]].to_numpy()
        size = int(max(table.index.to_numpy().max(initial=-1), tokens.max())) + 1
        probability, count = np.zeros(size), np.zeros(size)
        probability[table.index] = table["probability_sensitive"]
        count[table.index] = table["n_cells"]
        scores[folds == fold] = dosage.per_gene(test, probability, count)[:, 0]
    return scores


def sample_species_cells(corpus_dir: str | os.PathLike, species: int, n_cells: int, *, seed: int = 0,
                         batch_size: int = BATCH_CELLS, progress: bool = False) -> pd.DataFrame:
    """``n_cells`` corpus cells of one species code (0 human, 1 mouse) drawn at random (all of them when fewer),
    with the columns of :data:`CORPUS_COLUMNS`, indexed by position in the corpus."""
    positions = [offset + np.flatnonzero(batch.column(0).to_numpy() == species)
                 for offset, batch in iter_corpus_batches(corpus_dir, ["species"], batch_size=batch_size)]
    positions = np.concatenate(positions) if positions else np.zeros(0, dtype=np.int64)
    if not len(positions):
        raise ValueError(f"the corpus at {corpus_dir} holds no cell of species code {species}")
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(positions, min(n_cells, len(positions)), replace=False))
    return read_cells(corpus_dir, chosen, batch_size=batch_size, progress=progress)

