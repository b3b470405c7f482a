"""The co-expression prior: gene pairs correlated within datasets of the tokenised corpus, embedded with gene2vec.

As in the paper (DESIGN.md §1): for each dataset, sample cells, compute the Pearson correlation between
genes over those cells, keep the pairs at or above a threshold (0.8 in the paper) and embed the pooled pairs
with gene2vec. Values are the corpus values (``log2(1 + count / median)``; a gene outside a cell's top-N
counts as 0). Only genes detected in enough sampled cells are correlated (a gene seen in 3 cells correlates
at 1.0 with anything seen in the same 3 cells); how many pairs pass at each threshold is reported, because at
the bundle's small sizes far fewer pairs reach 0.8 than in a 100-million-cell corpus.

Pairs are formed between tokens of one dataset (so of one species), then mapped to human genes: a mouse pair
counts for the human orthologs of both genes (one-to-one by default), so mouse data inform the vectors that
mouse tokens receive back through orthology when the prior is aligned to the vocabulary.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp

from ..corpus.builder import shard_paths
from ..corpus.shards import read_shard
from ..corpus.vocab import Vocabulary
from .gene2vec import Gene2VecConfig, embed_pairs
from .store import ORTHOLOGY, PriorTable, align_to_vocab, standardise

REPORTED_THRESHOLDS: tuple[float, ...] = (0.3, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass(frozen=True)
class CoexpressionConfig:
    threshold: float = 0.8          # keep pairs with Pearson r at or above this (0.8 in the paper)
    cells_per_dataset: int = 5_000  # cells sampled from each dataset
    min_cells: int = 100            # datasets with fewer kept cells are skipped (correlations too noisy)
    min_detected: float = 0.05      # a gene must be non-zero in at least this share of the sampled cells
    max_genes: int = 5_000          # most-detected genes correlated per dataset (bounds time and memory)
    block: int = 1_024              # genes per block of the correlation matrix
    seed: int = 0                   # cell sampling

    def to_dict(self) -> dict:
        return asdict(self)


def _dataset_rows(shards: list[Path]) -> pd.DataFrame:
    """Where each cell lives: ``shard`` (index into ``shards``), ``row`` (row in the shard), ``dataset``."""
    parts = []
    for i, path in enumerate(shards):
        names = read_shard(path, columns=["dataset"])["dataset"].to_numpy(zero_copy_only=False)
        parts.append(pd.DataFrame({"shard": i, "row": np.arange(len(names)), "dataset": names}))
    return pd.concat(parts, ignore_index=True)


def _sample_cells(shards: list[Path], where: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR pieces (indptr, token ids, values) of the chosen cells, read shard by shard."""
    ids, values, lengths = [], [], []
    for shard, rows in where.groupby("shard", sort=True)["row"]:
        table = read_shard(shards[shard], columns=["input_ids", "values"]).take(pa.array(np.sort(rows.to_numpy())))
        id_lists = table["input_ids"].combine_chunks()
        ids.append(id_lists.flatten().to_numpy())
        values.append(table["values"].combine_chunks().flatten().to_numpy())
        lengths.append(np.diff(id_lists.offsets.to_numpy()))
    indptr = np.concatenate([[0], np.cumsum(np.concatenate(lengths))])
    return indptr, np.concatenate(ids), np.concatenate(values)


def correlated_pairs(matrix: sp.csr_matrix, *, threshold: float, block: int = 1_024
                     ) -> tuple[pd.DataFrame, dict[float, int]]:
    """Column pairs ``i < j`` of ``matrix`` (cells × genes) with Pearson r ≥ ``threshold``.

    Computed block by block on standardised columns, so memory is cells × genes + block × genes. Returns the
    pairs (``i, j, r``) and how many pairs reach each of :data:`REPORTED_THRESHOLDS`.
    """
    dense = matrix.toarray().astype(np.float64)
    dense -= dense.mean(axis=0)
    norms = np.linalg.norm(dense, axis=0)
    dense /= np.where(norms > 0, norms, 1.0)
    n_genes = dense.shape[1]
    counts = dict.fromkeys(REPORTED_THRESHOLDS, 0)
    found = []
    for start in range(0, n_genes, block):
        stop = min(start + block, n_genes)
        r = dense[:, start:stop].T @ dense[:, start:]          # (block × genes from start)
        upper = np.triu(np.ones(r.shape, dtype=bool), k=1)     # j > i only: each pair once
        for t in REPORTED_THRESHOLDS:
            counts[t] += int(((r >= t) & upper).sum())
        i, j = np.nonzero((r >= threshold) & upper)
        found.append(pd.DataFrame({"i": i + start, "j": j + start, "r": r[i, j].astype(np.float32)}))
    return pd.concat(found, ignore_index=True), counts


def coexpression_pairs(corpus_dir: str | os.PathLike, vocab: Vocabulary,
                       config: CoexpressionConfig = CoexpressionConfig()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Co-expressed gene pairs of every dataset of the corpus at ``corpus_dir``.

    Returns ``pairs`` (``dataset, a, b, r``: token ids of one dataset) and a per-dataset ``report`` (cells
    sampled, genes correlated, pairs tested, pairs at each reported threshold, or why it was skipped).
    """
    shards = shard_paths(corpus_dir)
    where = _dataset_rows(shards)
    rng = np.random.default_rng(config.seed)
    pairs, report = [], []
    for dataset, cells in where.groupby("dataset", sort=True):
        row = {"dataset": dataset, "cells": int(len(cells))}
        if len(cells) < config.min_cells:
            report.append({**row, "skipped": f"fewer than {config.min_cells} cells"})
            continue
        chosen = cells.iloc[np.sort(rng.choice(len(cells), min(len(cells), config.cells_per_dataset),
                                               replace=False))]
        indptr, ids, values = _sample_cells(shards, chosen)
        matrix = sp.csr_matrix((values, ids, indptr), shape=(len(chosen), len(vocab)))
        detected = np.asarray((matrix > 0).sum(axis=0)).ravel()
        eligible = np.flatnonzero(detected >= max(2, config.min_detected * len(chosen)))
        genes = eligible[np.argsort(-detected[eligible], kind="stable")[: config.max_genes]]
        genes.sort()
        row.update(cells_sampled=int(len(chosen)), genes_correlated=int(len(genes)),
                   pairs_tested=int(len(genes) * (len(genes) - 1) // 2))
        if len(genes) < 2:
            report.append({**row, "skipped": "fewer than 2 genes detected often enough"})
            continue
        found, counts = correlated_pairs(matrix[:, genes], threshold=config.threshold, block=config.block)
        row.update({f"pairs_r>={t}": n for t, n in counts.items()}, skipped="")
        report.append(row)
        pairs.append(pd.DataFrame({"dataset": dataset, "a": genes[found["i"]], "b": genes[found["j"]],
                                   "r": found["r"]}))
    empty = pd.DataFrame({"dataset": pd.Series(dtype=str), "a": pd.Series(dtype=np.int64),
                          "b": pd.Series(dtype=np.int64), "r": pd.Series(dtype=np.float32)})
    return (pd.concat(pairs, ignore_index=True) if pairs else empty), pd.DataFrame(report)


def to_human_pairs(pairs: pd.DataFrame, vocab: Vocabulary, *, orthology: str = "one2one") -> pd.DataFrame:
    """Token pairs → human Ensembl pairs (``a, b``); a mouse gene without an allowed ortholog drops its pairs."""
    genes = vocab.genes
    human_id = np.where(genes["species"] == "human", genes["gene_id"],
                        genes["human_ortholog"].where(genes["homology_type"].isin(ORTHOLOGY[orthology])))
    lookup = pd.Series(human_id, index=genes.index)
    out = pd.DataFrame({"a": lookup.reindex(pairs["a"]).to_numpy(), "b": lookup.reindex(pairs["b"]).to_numpy()})
    return out.dropna().reset_index(drop=True)


def build_coexpression_prior(corpus_dir: str | os.PathLike, vocab: Vocabulary, *,
                             config: CoexpressionConfig = CoexpressionConfig(),
                             gene2vec: Gene2VecConfig = Gene2VecConfig(), orthology: str = "one2one",
                             info: dict | None = None) -> tuple[PriorTable, pd.DataFrame, pd.DataFrame]:
    """Co-expression pairs of the corpus → human pairs → gene2vec → aligned to ``vocab``.

    Returns the aligned table, the human-gene vectors and the per-dataset report. A clear ``ValueError``
    when no pair reaches the threshold (lower it, or sample more cells).
    """
    token_pairs, report = coexpression_pairs(corpus_dir, vocab, config)
    human_pairs = to_human_pairs(token_pairs, vocab, orthology=orthology)
    if human_pairs.empty:
        raise ValueError(f"no gene pair reaches Pearson r >= {config.threshold} in any dataset of {corpus_dir} "
                         f"(per-dataset counts: {report.to_dict(orient='records')}); lower the threshold or "
                         f"sample more cells")
    human = standardise(embed_pairs(human_pairs, gene2vec))
    details = {"method": gene2vec.describe(), "substitute": False,
               "parameters": {**config.to_dict(), "gene2vec": gene2vec.to_dict()},
               "token_pairs": int(len(token_pairs)), "human_pairs": int(len(human_pairs)),
               "datasets": report.to_dict(orient="records"), **(info or {})}
    return align_to_vocab("coexpression", human, vocab, orthology=orthology, info=details), human, report
