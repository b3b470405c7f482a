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

from ..corpus.tokenizer import Tokenizer
from ..inputs.contract import SPECIES
from ..model.architecture import load_model
from .cell_tokens import CellTokens, collate, length_batches


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
    adata = adata.copy() if copy else adata
    checkpoint = Path(checkpoint)
    tokenizer = Tokenizer.load(checkpoint)
    model = load_model(checkpoint, vocab=tokenizer.vocab).eval()   # token ids must mean the same genes to both
    max_genes = min(max_genes or model.config.max_len - 1, model.config.max_len - 1)
    cells, overlap = CellTokens.from_adata(adata, tokenizer, max_genes)

    cell_out, gene_sum, gene_count = encode_cells(model, cells, batch_size=batch_size, device=device,
                                                  gene_embeddings=gene_embeddings, progress=progress)
    adata.obsm[key_added] = cell_out
    if gene_embeddings:
        _store_genes(adata, key_added, tokenizer, gene_sum, gene_count)
    adata.uns[key_added] = {"params": {"checkpoint": str(checkpoint), "vocab_hash": tokenizer.vocab.hash,
                                       "gene_overlap": overlap, "batch_size": batch_size, "max_genes": max_genes}}
    return adata if copy else None


def encode_cells(model, cells: CellTokens, *, batch_size: int = 32, device: str | torch.device | None = None,
                 gene_embeddings: bool = True, progress: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run ``model`` (a :class:`~gc_lib.model.architecture.GeneCompass`, in eval mode) over tokenised ``cells``.

    Returns the cell-token states (n_cells, d), and per token id the sum of its contextual states over the cells
    where it occurs (vocab_size, d) and that number of cells (vocab_size,) — zeros without ``gene_embeddings``.
    Dividing the two gives gene embeddings averaged by gene identity.
    """
    from tqdm.auto import tqdm

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(device)
    d, vocab_size = model.config.d_model, model.config.vocab_size
    cell_out = np.zeros((len(cells), d), dtype=np.float32)
    gene_sum = torch.zeros(vocab_size, d, dtype=torch.float64, device=device)
    gene_count = torch.zeros(vocab_size, dtype=torch.float64, device=device)
    with torch.no_grad():
        for batch in tqdm(length_batches(cells.lengths(), batch_size), desc="embedding", disable=not progress):
            inputs = {k: v.to(device) for k, v in collate(cells, batch, pad_id=model.config.pad_id).items()}
            hidden = model.encode(**inputs)                                                      # (B, 1 + L, d)
            cell_out[batch] = hidden[:, 0].float().cpu().numpy()
            if gene_embeddings:
                real = inputs["attention_mask"]
                tokens = inputs["input_ids"][real]
                gene_sum.index_add_(0, tokens, hidden[:, 1:][real].double())
                gene_count.index_add_(0, tokens, torch.ones_like(tokens, dtype=torch.float64))
    return cell_out, gene_sum.cpu().numpy(), gene_count.cpu().numpy()


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
