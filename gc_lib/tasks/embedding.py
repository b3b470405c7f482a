"""Cell and gene embeddings of an AnnData from a pretrained checkpoint, scanpy-style (DESIGN.md §4).

    gc_lib.embed(adata, "data/03_pretraining/run/checkpoint")      # → adata.obsm / varm["X_genecompass"]

Cells are tokenised exactly like the corpus (the checkpoint carries the tokenizer), batched by length, and
encoded. A cell's embedding is the final hidden state of its cell (species) token (``pooling="cell"``, the paper's
choice) or the mean over the cell token and every gene token (``pooling="mean"``, the same as the classifier's
``pooling="mean"``). The masked-gene objective trains no output at the cell token; at the offline-bundle scale its
final state lies along one axis that follows sequencing depth (:func:`principal_axis` with :func:`depth` measures
this), and notebook 03 compares the two poolings.
A gene's embedding is its contextual hidden state **averaged over the cells in which it is a token, by gene
identity** — the published code averaged by *position*, mixing whatever genes happened to sit at the same rank.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from anndata import AnnData

from ..corpus.tokenizer import Tokenizer
from ..inputs.contract import SPECIES, counts_matrix
from ..model.architecture import load_model
from .cell_tokens import CellTokens, add_by_token, collate, length_batches

POOLINGS = ("cell", "mean")  # the cell token's final state; the mean over the cell token and the real gene tokens


def embed(adata: AnnData, checkpoint: str | os.PathLike, *, key_added: str = "X_genecompass", batch_size: int = 32,
          max_genes: int | None = None, gene_embeddings: bool = True, pooling: str = "cell",
          device: str | None = None, copy: bool = False, progress: bool = True) -> AnnData | None:
    """Embed the cells (and genes) of a contract ``adata`` with the model at ``checkpoint``.

    Sets the following fields:
    - ``obsm[key_added]`` — (n_cells, d_model) cell embeddings, pooled as ``pooling`` says (:data:`POOLINGS`);
    - ``varm[key_added]`` — (n_genes, d_model) contextual gene embeddings (NaN for genes never tokenised), and
      ``var[f"{key_added}_n_cells"]`` — in how many cells each gene was a token (with ``gene_embeddings``);
    - ``uns[key_added]["params"]`` — checkpoint, vocabulary hash, gene overlap per species, batch size, max genes,
      pooling.

    ``max_genes`` caps the tokens per cell (default: what the model takes, ``max_len - 1``). Returns the AnnData
    when ``copy=True``, else ``None``.

    ``pooling`` defaults to the cell token, the paper's cell embedding, so numbers compare with the published model's.
    Fine-tuning (:class:`gc_lib.tasks.finetune.FinetuneConfig`) defaults to ``"mean"`` instead, chosen on validation
    cells: on the bundle's small models the cell token mostly tracks sequencing depth (notebook 03, section 5) and a
    linear probe on it scored far below one on the mean (pbmc68k selection sets, local model: 0.20 against 0.46).
    Pass ``pooling="mean"`` for frozen features of such a model, as notebook 05 does.
    """
    _check_pooling(pooling)
    adata = adata.copy() if copy else adata
    checkpoint = Path(checkpoint)
    tokenizer = Tokenizer.load(checkpoint)
    model = load_model(checkpoint, vocab=tokenizer.vocab).eval()   # token ids must mean the same genes to both
    max_genes = min(max_genes or model.config.max_len - 1, model.config.max_len - 1)
    cells, overlap = CellTokens.from_adata(adata, tokenizer, max_genes)

    cell_out, gene_sum, gene_count = encode_cells(model, cells, batch_size=batch_size, device=device,
                                                  gene_embeddings=gene_embeddings, pooling=pooling,
                                                  progress=progress)
    adata.obsm[key_added] = cell_out
    if gene_embeddings:
        _store_genes(adata, key_added, tokenizer, gene_sum, gene_count)
    adata.uns[key_added] = {"params": {"checkpoint": str(checkpoint), "vocab_hash": tokenizer.vocab.hash,
                                       "gene_overlap": overlap, "batch_size": batch_size, "max_genes": max_genes,
                                       "pooling": pooling}}
    return adata if copy else None


def encode_cells(model, cells: CellTokens, *, batch_size: int = 32, device: str | torch.device | None = None,
                 gene_embeddings: bool = True, pooling: str = "cell", layer: int | None = None,
                 progress: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run ``model`` (a :class:`~gc_lib.model.architecture.GeneCompass`, in eval mode) over tokenised ``cells``.

    Returns the cell embeddings (n_cells, d) — the cell token's final states, or with ``pooling="mean"`` their
    mean with the real gene tokens' — and per token id the sum of its contextual states over the cells
    where it occurs (vocab_size, d) and that number of cells (vocab_size,) — zeros without ``gene_embeddings``.
    Dividing the two gives gene embeddings averaged by gene identity. ``layer``: the states after that many encoder
    blocks (:func:`stop_block`; default the final, normalised states).
    """
    from tqdm.auto import tqdm

    _check_pooling(pooling)
    stop = stop_block(model, layer)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(device)
    d, vocab_size = model.config.d_model, model.config.vocab_size
    cell_out = np.zeros((len(cells), d), dtype=np.float32)
    gene_sum = torch.zeros(vocab_size, d, dtype=torch.float64, device=device)
    with torch.no_grad():
        for batch in tqdm(length_batches(cells.lengths(), batch_size), desc="embedding", disable=not progress):
            inputs = {k: v.to(device) for k, v in collate(cells, batch, pad_id=model.config.pad_id).items()}
            hidden = model.encode_from(model.embed_tokens(inputs["input_ids"], inputs["values"], inputs["species"]),
                                       inputs["attention_mask"], stop_block=stop)                  # (B, 1 + L, d)
            cell_out[batch] = pool(hidden, inputs["attention_mask"], pooling).float().cpu().numpy()
            if gene_embeddings:
                add_by_token(gene_sum, hidden, inputs)
    gene_count = cells.token_counts(vocab_size) if gene_embeddings else np.zeros(vocab_size)
    return cell_out, gene_sum.cpu().numpy(), gene_count.astype(np.float64)


def stop_block(model, layer: int | None) -> int | None:
    """The ``stop_block`` of :meth:`~gc_lib.model.architecture.GeneCompass.encode_from` for the states after
    ``layer`` encoder blocks (1 … n_layers): ``None`` — every block and the final norm — for the last layer or
    ``layer=None``; an earlier layer's states are the residual stream before any final norm."""
    n_layers = model.config.n_layers
    if layer is None or layer == n_layers:
        return None
    if not 1 <= int(layer) < n_layers:
        raise ValueError(f"layer must lie in 1..{n_layers} (the model's encoder blocks); got {layer}")
    return int(layer)


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """(B, d) cell embeddings from encoder states ``hidden`` (B, 1 + L, d) and the gene tokens' ``attention_mask``
    (B, L): the cell token's state (``"cell"``), or the mean over it and the real gene tokens (``"mean"``)."""
    if pooling == "cell":
        return hidden[:, 0]
    real = torch.cat([attention_mask.new_ones(len(hidden), 1), attention_mask.bool()], dim=1).to(hidden.dtype)
    return (hidden * real.unsqueeze(-1)).sum(1) / real.sum(1, keepdim=True)


def depth(adata: AnnData) -> dict[str, np.ndarray]:
    """Per cell of a contract ``adata``: ``genes per cell`` (non-zero counts) and ``total counts`` — sequencing
    depth, which any embedding of a cell may encode instead of its type."""
    counts = counts_matrix(adata)
    return {"genes per cell": np.asarray((counts > 0).sum(1)).ravel().astype(np.int64),
            "total counts": np.asarray(counts.sum(1), dtype=np.float64).ravel()}


def principal_axis(embedding: np.ndarray, covariates: dict[str, np.ndarray]) -> dict[str, float]:
    """How one-dimensional an embedding is, and what its main axis follows: the share of variance on the first
    principal component (``pc1_variance``) and the absolute Spearman correlation of the cells' PC1 coordinate
    with each covariate (``|rho| PC1 ~ name``; e.g. :func:`depth`)."""
    from scipy.stats import spearmanr

    centred = np.asarray(embedding, dtype=np.float64) - np.mean(embedding, axis=0)
    u, singular, _ = np.linalg.svd(centred, full_matrices=False)
    variance = singular ** 2 / max(float((singular ** 2).sum()), 1e-300)
    row = {"pc1_variance": float(variance[0])}
    for name, values in covariates.items():
        row[f"|rho| PC1 ~ {name}"] = float(abs(spearmanr(u[:, 0], values)[0]))
    return row


def _check_pooling(pooling: str) -> None:
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}; got {pooling!r}")


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
