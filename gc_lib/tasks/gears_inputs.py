"""GEARS's inputs built from our own tables, so GEARS runs offline (used by :mod:`gc_lib.tasks.gears_adapter`).

GEARS (Roohani et al., *Nature Biotechnology* 2024, "Predicting transcriptional outcomes of novel multigene
perturbations with GEARS"; PyPI ``cell-gears`` 0.1.2) downloads from Harvard Dataverse at start-up: ``gene2go_all.pkl``
(gene symbol → GO terms), a list of perturbable genes, and ``go_essential_all.csv`` (its GO graph). Here:

- **GO terms** per gene symbol come from the bundled org.Hs.eg.db (:func:`gc_lib.inputs.orgdb.go_bp_annotations`,
  biological process, every evidence code but ``ND``), through the tiered HGNC symbol map
  (:func:`gc_lib.inputs.genes.map_symbols_to_ensembl`). GEARS's own ``gene2go`` also holds MF and CC terms;
- **the GO graph** is GEARS's own recipe (``gears.utils.make_GO`` + ``get_similarity_network``): for each gene, its
  ``k`` most similar genes and itself by Jaccard similarity of GO term sets, ``importance`` = Jaccard, pairs with
  Jaccard > 0.1 only, as a ``source, target, importance`` edge table;
- **the embedding graph** (variant ``similarity_graph``): the same table from the cosine similarity of given gene
  vectors (positive similarities only);
- **embeddings at hidden size** (variant ``init``): a PCA of the given vectors, a fixed map (nothing trained);
- **the files GEARS's API insists on** (:func:`write_gears_files`): pickles written into the run's own folder.
"""
from __future__ import annotations

import pickle
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

#: GEARS's make_GO keeps only gene pairs whose GO Jaccard similarity exceeds this
GO_MIN_JACCARD = 0.1
#: evidence codes left out of the GO annotation ("no biological data available")
GO_EXCLUDED_EVIDENCE = ("ND",)
#: the file names GEARS reads (PertData's gene2go, its perturbable-gene list, the custom split)
GENE2GO_FILE = "gene2go_all.pkl"
PERTURBABLE_GENES_FILE = "perturbable_genes.pkl"
SPLIT_FILE = "split.pkl"


def go_terms_by_symbol(symbols: Iterable[str], orgdb_path: str | Path | None = None) -> dict[str, frozenset[str]]:
    """GO biological-process terms of each human gene symbol that has any (symbols without terms are left out)."""
    from ..inputs.genes import map_symbols_to_ensembl
    from ..inputs.orgdb import go_bp_annotations

    symbols = list(dict.fromkeys(str(s) for s in symbols))
    ensembl_ids, _ = map_symbols_to_ensembl(symbols, "human")
    annotation = go_bp_annotations(orgdb_path, exclude_evidence=GO_EXCLUDED_EVIDENCE)
    terms = annotation.groupby("ensembl_id")["go_id"].agg(frozenset)
    return {symbol: terms[ensembl] for symbol, ensembl in zip(symbols, ensembl_ids)
            if ensembl is not None and ensembl in terms.index}


def top_k_edges(names: list[str], similarity: np.ndarray, k: int, min_score: float) -> pd.DataFrame:
    """For each target gene (a column), its ``k + 1`` highest-scoring source genes with score > ``min_score``.

    ``similarity`` is symmetric, genes × genes; the gene itself usually ranks first (GEARS keeps ``k + 1`` for that
    reason). Ties keep the earlier source, as pandas ``nlargest`` does in GEARS.
    """
    n = len(names)
    if similarity.shape != (n, n):
        raise ValueError(f"similarity must be {n} × {n} for {n} genes, got {similarity.shape}")
    keep = min(k + 1, n)
    order = np.argsort(-similarity, axis=0, kind="stable")[:keep]            # (keep, n): best sources per target
    scores = np.take_along_axis(similarity, order, axis=0)
    targets = np.broadcast_to(np.arange(n), order.shape)
    chosen = scores > min_score
    names = np.asarray(names, dtype=object)
    return pd.DataFrame({"source": names[order.T[chosen.T]], "target": names[targets.T[chosen.T]],
                         "importance": scores.T[chosen.T].astype(np.float64)})


def go_similarity_edges(gene2go: Mapping[str, Iterable[str]], genes: list[str], k: int) -> pd.DataFrame:
    """GEARS's GO graph over ``genes``: for each gene its ``k`` most similar genes (and itself) by Jaccard similarity
    of their GO term sets, Jaccard > :data:`GO_MIN_JACCARD`; columns ``source, target, importance``."""
    missing = [g for g in genes if not gene2go.get(g)]
    if missing:
        raise ValueError(f"{len(missing)} genes have no GO terms, e.g. {missing[:5]}")
    term_sets = [frozenset(gene2go[g]) for g in genes]
    term_index = {t: i for i, t in enumerate(sorted(frozenset().union(*term_sets)))}
    rows = np.repeat(np.arange(len(genes)), [len(s) for s in term_sets])
    cols = np.fromiter((term_index[t] for s in term_sets for t in sorted(s)), dtype=np.int64, count=len(rows))
    incidence = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(genes), len(term_index)))
    shared = (incidence @ incidence.T).toarray()
    sizes = np.diag(shared)
    jaccard = shared / (sizes[:, None] + sizes[None, :] - shared)
    return top_k_edges(genes, jaccard, k, GO_MIN_JACCARD)


def cosine_similarity_edges(names: list[str], vectors: np.ndarray, k: int) -> pd.DataFrame:
    """For each gene its ``k`` most cosine-similar genes (and itself) among ``names``, positive similarity only; a
    zero vector (a gene without an embedding) gets no edge."""
    vectors = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    return top_k_edges(names, unit @ unit.T, k, 0.0)


def embeddings_to_hidden(vectors: np.ndarray, hidden_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Map gene vectors (genes × e) to ``hidden_size`` columns by a PCA of the genes that have a vector.

    Returns ``(mapped, has_vector)``: genes × hidden_size float32, and the mask of genes whose row is not all zeros
    (zero rows, genes without an embedding, are not mapped and stay zero). With fewer components than
    ``hidden_size`` (e or the number of genes is smaller) the last columns are zero. Each component's sign is fixed
    (largest loading positive), so the map is deterministic; the result is scaled so the largest row norm is 1,
    because GEARS's embeddings renormalise any row longer than 1 (``nn.Embedding(max_norm=True)``).
    """
    vectors = np.asarray(vectors, dtype=np.float64)
    has_vector = np.any(vectors != 0, axis=1)
    mapped = np.zeros((len(vectors), hidden_size), dtype=np.float64)
    if has_vector.sum() >= 2:
        rows = vectors[has_vector]
        centred = rows - rows.mean(axis=0)
        u, s, vt = np.linalg.svd(centred, full_matrices=False)
        n_components = min(hidden_size, len(s))
        signs = np.sign(vt[np.arange(n_components), np.abs(vt[:n_components]).argmax(axis=1)])
        mapped[has_vector, :n_components] = u[:, :n_components] * s[:n_components] * signs
    largest = np.linalg.norm(mapped, axis=1).max(initial=0.0)
    if largest > 0:
        mapped /= largest
    return mapped.astype(np.float32), has_vector


def write_gears_files(folder: Path, gene2go: Mapping[str, Iterable[str]], perturbable_genes: list[str],
                      splits: Mapping[str, list[str]]) -> dict[str, Path]:
    """Write the three pickles GEARS's API reads, from our own tables, into ``folder`` (the run's own folder).

    - ``gene2go_all.pkl``: ``dict[str, set[str]]``, gene symbol → GO terms. ``PertData.__init__`` reads it, and
      downloads it from Dataverse only when the file is absent;
    - ``perturbable_genes.pkl``: ``list[str]``, the genes of GEARS's perturbation graph (``PertData(gene_set_path=)``,
      instead of GEARS's downloaded essential-gene list);
    - ``split.pkl``: ``{"train": [...], "val": [...], "test": [...]}`` condition strings
      (``prepare_split(split="custom", split_dict_path=)``).
    """
    folder.mkdir(parents=True, exist_ok=True)
    contents = {GENE2GO_FILE: {gene: set(terms) for gene, terms in gene2go.items()},
                PERTURBABLE_GENES_FILE: list(perturbable_genes),
                SPLIT_FILE: {name: list(conditions) for name, conditions in splits.items()}}
    paths = {}
    for name, content in contents.items():
        paths[name] = folder / name
        with open(paths[name], "wb") as handle:
            pickle.dump(content, handle)
    return paths
