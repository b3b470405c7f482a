"""``gc_lib.perturb(adata, checkpoint, genes)``: the perturbation engine on a contract AnnData, scanpy-style.

    gc_lib.perturb(adata, "data/03_pretraining/runs/main/checkpoint", ["GATA4", "NR5A1"], kind="overexpress",
                   state_key="cell_type", goal="Sertoli", alternatives=["Leydig"])
    adata.uns["perturbation"]["cells"]      # one row per (cell, perturbation): shifts, toward_goal, goal_score
    adata.uns["perturbation"]["genes"]      # one row per (perturbation, gene): mean contextual shift

The cells are tokenised exactly like the corpus (the checkpoint carries the tokenizer); genes are named by symbol or
Ensembl ID and looked up among the tokens of the cells' species, so a TF that is a token only because it carries
priors (``build_corpus(extra_genes=...)``) can be inserted too. An overexpressed gene takes the ``high_quantile`` of
its values over these cells, or — for a gene none of them expresses — the median of the other genes' quantiles
(:func:`~gc_lib.tasks.perturb_edits.overexpression_values`); pass ``high_values`` to use reference cells instead.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData

from ..corpus.tokenizer import Tokenizer
from ..inputs.contract import is_ensembl_gene_id
from ..model.architecture import load_model
from .cell_tokens import CellTokens
from .embedding import encode_cells
from .perturb import perturb as run_engine
from .perturb import state_centroids
from .perturb_edits import PerturbationSet, overexpression_values


def gene_tokens(vocab, genes, species: list[str]) -> dict[str, int]:
    """Token id of each gene name (symbol or Ensembl ID) among ``species``' tokens; unknown or ambiguous names
    raise ``ValueError`` naming them."""
    table = vocab.genes[vocab.genes["species"].isin(species)]
    by_id = pd.Series(table.index, index=table["gene_id"])
    by_symbol = table.reset_index().groupby(table["symbol"].str.upper().to_numpy())["index"].apply(list)
    out, unknown = {}, []
    for name in genes:
        by_name = is_ensembl_gene_id([name])[0] and name in by_id
        hits = [by_id[name]] if by_name else by_symbol.get(str(name).upper(), [])
        if len(hits) != 1:
            unknown.append(f"{name} ({'ambiguous' if hits else 'not a token'})")
        else:
            out[str(name)] = int(hits[0])
    if unknown:
        raise ValueError(f"genes not usable for {species} cells: {unknown}; give Ensembl IDs or symbols of tokens")
    return out


def perturb(adata: AnnData, checkpoint: str | os.PathLike, genes, *, kind: str = "delete", factor: float = 0.5,
            combine: bool = False, state_key: str | None = None, goal: str | None = None, alternatives=(),
            pooling: str = "mean", high_quantile: float = 0.99, high_values: np.ndarray | None = None,
            key_added: str = "perturbation", batch_size: int = 64, max_genes: int | None = None,
            device: str | None = None, copy: bool = False, progress: bool = True) -> AnnData | None:
    """Perturb the cells of a contract ``adata`` with the model at ``checkpoint`` (module docstring).

    ``genes``: names; each is one perturbation of ``kind`` (``delete``, ``overexpress``, ``knockdown`` by ``factor``),
    or all of them one combination with ``combine=True``. ``goal``/``alternatives``: labels of ``obs[state_key]`` whose
    cells' unperturbed embeddings give the goal and alternative centroids.

    Sets the following fields:
    - ``uns[key_added]["cells"]`` — per (cell, perturbation): ``cell`` (row of ``adata``), ``name``, ``n_present``,
      ``cell_shift``, and with a goal ``toward_goal``, ``toward_<alternative>``, ``goal_score``;
    - ``uns[key_added]["genes"]`` — per (perturbation, gene): ``gene`` (symbol), ``mean_shift``, ``n_cells``;
    - ``obsm[f"{key_added}_base"]`` — the unperturbed cell embeddings (same pooling);
    - ``uns[key_added]["params"]`` — checkpoint, kind, genes and their tokens, pooling, states, engine settings.
    """
    adata = adata.copy() if copy else adata
    tokenizer = Tokenizer.load(Path(checkpoint))
    model = load_model(checkpoint, vocab=tokenizer.vocab)
    max_genes = min(max_genes or model.config.max_len - 1, model.config.max_len - 1)
    cells, _ = CellTokens.from_adata(adata, tokenizer, max_genes)
    species = sorted(set(adata.obs["species"].astype(str)))
    tokens = gene_tokens(tokenizer.vocab, list(genes), species)
    combos = [list(tokens.values())] if combine else list(tokens.values())
    names = ["+".join(tokens)] if combine else list(tokens)
    perturbations = PerturbationSet.build(combos, kind, factor=factor, names=names)
    if high_values is None and kind == "overexpress":
        high_values = overexpression_values(cells.ids, cells.values, len(tokenizer.vocab), quantile=high_quantile)
    targets = {}
    if goal is not None:
        if state_key is None or state_key not in adata.obs:
            raise ValueError(f"a goal state needs state_key naming an obs column; got {state_key!r}")
        base, _, _ = encode_cells(model, cells, batch_size=batch_size, device=device, gene_embeddings=False,
                                  pooling=pooling)
        centroid = state_centroids(base, adata.obs[state_key], [goal, *alternatives])
        targets = {"goal": centroid[str(goal)], "alternatives": {str(a): centroid[str(a)] for a in alternatives}}
    result = run_engine(model, cells, perturbations, high_values=high_values, pooling=pooling, batch_size=batch_size,
                        max_genes=max_genes, device=device, progress=progress, **targets)
    symbols = tokenizer.vocab.genes["symbol"]
    gene_table = result.genes.assign(gene=symbols.reindex(result.genes["token"]).to_numpy())
    adata.obsm[f"{key_added}_base"] = result.embeddings
    adata.uns[key_added] = {"cells": result.cells, "genes": gene_table, "params": {
        "checkpoint": str(checkpoint), "kind": kind, "factor": factor, "genes": tokens, "combine": combine,
        "state_key": state_key, "goal": goal, "alternatives": list(alternatives), **result.params}}
    return adata if copy else None
