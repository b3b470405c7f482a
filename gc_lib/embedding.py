"""Cell and gene embeddings of an AnnData from a pretrained checkpoint, scanpy-style (DESIGN.md §4).

    gc_lib.embed(adata, "data/03_pretraining/run/checkpoint")      # → adata.obsm / varm["X_genecompass"]

Cells are tokenised exactly like the corpus (the checkpoint carries the tokenizer), batched by length, and
encoded. A cell's embedding is the final hidden state of its cell (species) token. A gene's embedding is its
contextual hidden state **averaged over the cells in which it is a token, by gene identity** — the published code
averaged by *position*, mixing whatever genes happened to sit at the same rank.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from anndata import AnnData

from .contract import SPECIES
from .model import load_model
from .tokenizer import Tokenizer


def _cells(adata: AnnData, tokenizer: Tokenizer, max_genes: int) -> tuple[list[np.ndarray], list[np.ndarray],
                                                                           np.ndarray, dict]:
    """Token ids, values and species code of every cell (in ``adata`` order), and the gene overlap per species."""
    ids: list = [None] * adata.n_obs
    values: list = [None] * adata.n_obs
    species_code = np.zeros(adata.n_obs, dtype=np.int64)
    overlap = {}
    labels = adata.obs["species"].astype(str).to_numpy()
    for code, species in enumerate(SPECIES):
        where = np.flatnonzero(labels == species)
        if not len(where):
            continue
        coverage = tokenizer.coverage(adata.var_names, species)
        overlap[species] = coverage
        if coverage["in_vocabulary"] == 0:
            raise ValueError(f"none of the {coverage['genes']:,} genes of this AnnData is a {species} token of the "
                             f"checkpoint's vocabulary; var_names must be Ensembl gene IDs of that species")
        table = tokenizer.tokenize(adata[where], dataset="embed")
        for row, cell_ids, cell_values in zip(table["row"].to_numpy(), table["input_ids"].to_pylist(),
                                              table["values"].to_pylist()):
            ids[where[row]] = np.asarray(cell_ids[:max_genes], dtype=np.int64)
            values[where[row]] = np.asarray(cell_values[:max_genes], dtype=np.float32)
        species_code[where] = code
    return ids, values, species_code, overlap


def embed(adata: AnnData, checkpoint: str | os.PathLike, *, key_added: str = "X_genecompass", batch_size: int = 32,
          max_genes: int | None = None, gene_embeddings: bool = True, device: str | None = None,
          copy: bool = False, progress: bool = True) -> AnnData | None:
    """Embed the cells (and genes) of a contract ``adata`` with the model at ``checkpoint``.

    Sets the following fields:
    - ``obsm[key_added]`` — (n_cells, d_model) cell embeddings;
    - ``varm[key_added]`` — (n_genes, d_model) contextual gene embeddings (NaN for genes never tokenised), and
      ``var[f"{key_added}_n_cells"]`` — in how many cells each gene was a token (with ``gene_embeddings``);
    - ``uns[key_added]["params"]`` — checkpoint, vocabulary hash, gene overlap per species, batch size, max genes.

    ``max_genes`` caps the tokens per cell (default: what the model takes, ``max_len - 1``). Returns the AnnData
    when ``copy=True``, else ``None``.
    """
    from tqdm.auto import tqdm

    adata = adata.copy() if copy else adata
    checkpoint = Path(checkpoint)
    model = load_model(checkpoint).eval()
    tokenizer = Tokenizer.load(checkpoint)
    if len(tokenizer.vocab) != model.config.vocab_size:
        raise ValueError(f"{checkpoint}: tokenizer vocabulary ({len(tokenizer.vocab)}) and model "
                         f"({model.config.vocab_size}) differ")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(device)
    max_genes = min(max_genes or model.config.max_len - 1, model.config.max_len - 1)
    ids, values, species, overlap = _cells(adata, tokenizer, max_genes)

    d = model.config.d_model
    cell_out = np.zeros((adata.n_obs, d), dtype=np.float32)
    gene_sum = torch.zeros(model.config.vocab_size, d, dtype=torch.float64, device=device)
    gene_count = torch.zeros(model.config.vocab_size, dtype=torch.float64, device=device)
    order = np.argsort([len(x) for x in ids], kind="stable")       # similar lengths together: little padding
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    with torch.no_grad():
        for batch in tqdm(batches, desc="embedding", disable=not progress):
            length = max(1, max(len(ids[i]) for i in batch))
            input_ids = torch.zeros(len(batch), length, dtype=torch.long)
            vals = torch.zeros(len(batch), length)
            for row, i in enumerate(batch):
                input_ids[row, : len(ids[i])] = torch.from_numpy(ids[i])
                vals[row, : len(ids[i])] = torch.from_numpy(values[i])
            attention = input_ids != model.config.pad_id
            hidden = model.encode(input_ids.to(device), vals.to(device), torch.from_numpy(species[batch]).to(device),
                                  attention.to(device))                                   # (B, 1 + L, d)
            cell_out[batch] = hidden[:, 0].float().cpu().numpy()
            if gene_embeddings:
                real = attention.to(device)
                tokens = input_ids.to(device)[real]
                gene_sum.index_add_(0, tokens, hidden[:, 1:][real].double())
                gene_count.index_add_(0, tokens, torch.ones_like(tokens, dtype=torch.float64))
    adata.obsm[key_added] = cell_out
    if gene_embeddings:
        _store_genes(adata, key_added, tokenizer, gene_sum.cpu().numpy(), gene_count.cpu().numpy())
    adata.uns[key_added] = {"params": {"checkpoint": str(checkpoint), "vocab_hash": tokenizer.vocab.hash,
                                       "gene_overlap": overlap, "batch_size": batch_size, "max_genes": max_genes}}
    return adata if copy else None


def _store_genes(adata: AnnData, key_added: str, tokenizer: Tokenizer, sums: np.ndarray, counts: np.ndarray) -> None:
    """Per var gene: the mean hidden state over the cells where it was a token (by gene identity)."""
    species = [s for s in SPECIES if (adata.obs["species"].astype(str) == s).any()]
    token = np.full(adata.n_vars, -1)
    for s in species:
        col_token, _ = tokenizer.column_tables(adata.var_names, s)
        token = np.where(token >= 0, token, col_token)
    n = np.where(token >= 0, counts[np.maximum(token, 0)], 0.0)
    mean = np.full((adata.n_vars, sums.shape[1]), np.nan, dtype=np.float32)
    seen = n > 0
    mean[seen] = (sums[token[seen]] / n[seen, None]).astype(np.float32)
    adata.varm[key_added] = mean
    adata.var[f"{key_added}_n_cells"] = n.astype(np.int64)
