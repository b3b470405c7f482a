"""Fixed vectors for a list of human genes, one matrix per source, for models that take gene embeddings as an input
(the drug-response models of notebook 08, through a trained path).

Sources, each a genes × e matrix in the order of the given genes:

- ``"genecompass"``: the model's input vector of each gene's token
  (:func:`gc_lib.tasks.gene_embeddings.input_gene_embeddings`: gene ID and its four priors, before attention);
- ``"prior:<name>"``: a prior's human vector of each gene (:func:`gc_lib.priors.store.load_human_vectors`), one
  matrix per prior, so each prior can be tried alone;
- ``"random"``: Gaussian vectors with the GeneCompass matrix's size (the control for "any fixed vector helps");
- ``"none"``: ``None``, the model without gene embeddings.

A gene without a token (or without a prior vector) gets a zero row; :func:`gene_vector_variants` reports how many
genes each source covers, so a variant that is mostly zeros is visible, not hidden.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..corpus.vocab import Vocabulary
from ..priors.store import PRIOR_NAMES, load_human_vectors
from .gene_embeddings import input_gene_embeddings


def genecompass_vectors(model, vocab: Vocabulary, gene_ids) -> tuple[np.ndarray, np.ndarray]:
    """(genes × d_model) input vectors of the genes' tokens, zero rows for genes without a token; and the mask of
    genes that have one."""
    tokens = vocab.encode(list(gene_ids))
    found = tokens >= 0
    out = np.zeros((len(tokens), model.config.d_model), dtype=np.float32)
    if found.any():
        out[found] = input_gene_embeddings(model, tokens[found])
    return out, found


def prior_vectors(prior_dir, name: str, gene_ids) -> tuple[np.ndarray, np.ndarray]:
    """(genes × e) human vectors of prior ``name`` saved in ``prior_dir``, zero rows where the prior has none; and
    the mask of genes it covers."""
    vectors = load_human_vectors(prior_dir, name)
    ids = pd.Index(list(gene_ids))
    found = ids.isin(vectors.index)
    out = vectors.reindex(ids).to_numpy(dtype=np.float32)
    out[~found] = 0.0
    return np.nan_to_num(out, copy=False), np.asarray(found)


def gene_vector_variants(gene_ids, *, model=None, vocab: Vocabulary | None = None, prior_dir=None,
                         priors: tuple[str, ...] = PRIOR_NAMES, seed: int = 0,
                         ) -> tuple[dict[str, np.ndarray | None], pd.DataFrame]:
    """Every source of the module docstring that the arguments allow, and a coverage table (variant, dim, genes
    covered, share). ``model`` and ``vocab`` give ``"genecompass"`` and the size of ``"random"`` (else 64);
    ``prior_dir`` gives ``"prior:<name>"`` for each of ``priors``."""
    gene_ids = list(gene_ids)
    variants: dict[str, np.ndarray | None] = {}
    covered: dict[str, np.ndarray] = {}
    if (model is None) != (vocab is None):
        raise ValueError("pass model and vocab together (the GeneCompass vectors need both)")
    if model is not None:
        variants["genecompass"], covered["genecompass"] = genecompass_vectors(model, vocab, gene_ids)
    for name in priors if prior_dir is not None else ():
        variants[f"prior:{name}"], covered[f"prior:{name}"] = prior_vectors(prior_dir, name, gene_ids)
    dim = variants["genecompass"].shape[1] if "genecompass" in variants else 64
    variants["random"] = np.random.default_rng(seed).standard_normal((len(gene_ids), dim)).astype(np.float32)
    covered["random"] = np.ones(len(gene_ids), dtype=bool)
    variants["none"] = None
    rows = [{"variant": name, "dim": 0 if matrix is None else matrix.shape[1],
             "genes_covered": int(covered[name].sum()) if name in covered else 0, "genes": len(gene_ids)}
            for name, matrix in variants.items()]
    table = pd.DataFrame(rows)
    table["share_covered"] = table["genes_covered"] / max(len(gene_ids), 1)
    return variants, table
