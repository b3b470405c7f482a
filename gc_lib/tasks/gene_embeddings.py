"""Gene embeddings of a model, two kinds (notebook 06 infers TF→target edges from their cosine similarity):

- **contextual**: a gene's hidden state in a cell, after a given encoder block, averaged over the cells in which
  the gene is a token — by gene identity, never by position (the published code averaged positions);
- **input**: the model's input vector of a gene, :class:`~gc_lib.model.architecture.GeneEmbedding` of its token at
  a fixed value (``value=1.0``: a count equal to the gene's corpus median, ``log2(1 + 1)``), before rank embeddings
  and attention. It exists for every token, also for a gene no cell expresses (then only its priors inform it).

Layers are numbered as blocks: ``0`` is the encoder's input (token vectors with rank embeddings, normalised),
``k`` the output of block ``k``; the last layer gets the final LayerNorm, as :meth:`GeneCompass.encode` returns it.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..corpus.vocab import Vocabulary
from .cell_tokens import CellTokens, add_by_token, collate, length_batches


def contextual_gene_embeddings(model, cells: CellTokens, layers, *, batch_size: int = 32,
                               device: str | torch.device | None = None) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """Per requested layer: (vocab_size, d) mean states by token id (NaN for a token in no cell); and the number of
    cells each token occurs in (vocab_size,)."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = model.to(device).eval()
    n_layers = model.config.n_layers
    layers = sorted({int(layer) for layer in layers})
    if not layers or layers[0] < 0 or layers[-1] > n_layers:
        raise ValueError(f"layers must lie in 0..{n_layers} (0: the encoder's input; {n_layers}: its output)")
    vocab_size, d = model.config.vocab_size, model.config.d_model
    sums = {layer: torch.zeros(vocab_size, d, dtype=torch.float64, device=device) for layer in layers}
    with torch.no_grad():
        for batch in length_batches(cells.lengths(), batch_size):
            inputs = {k: v.to(device) for k, v in collate(cells, batch, pad_id=model.config.pad_id).items()}
            x = model.embed_tokens(inputs["input_ids"], inputs["values"], inputs["species"])
            for layer in range(n_layers + 1):
                if layer:
                    x = model.encode_from(x, inputs["attention_mask"], first_block=layer - 1, stop_block=layer)
                if layer in sums:
                    add_by_token(sums[layer], model.final_norm(x) if layer == n_layers else x, inputs)
    count = cells.token_counts(vocab_size).astype(np.float64)
    seen = count > 0
    out = {}
    for layer, total in sums.items():
        mean = np.full(total.shape, np.nan, dtype=np.float32)
        mean[seen] = (total.cpu().numpy()[seen] / count[seen, None]).astype(np.float32)
        out[layer] = mean
    return out, count


def input_gene_embeddings(model, tokens, *, value: float = 1.0) -> np.ndarray:
    """(len(tokens), d): each token's input vector at ``value`` (module docstring), no rank embedding added."""
    tokens = torch.as_tensor(np.asarray(tokens, dtype=np.int64))
    device = next(model.parameters()).device
    with torch.no_grad():
        out = model.eval().genes(tokens.to(device).unsqueeze(0), torch.full((1, len(tokens)), value, device=device))
    return out[0].float().cpu().numpy()


def by_human_gene(vectors: np.ndarray, vocab: Vocabulary, *, tokens=None) -> pd.DataFrame:
    """Rows of a per-token matrix for the human gene tokens (or the given ``tokens``), indexed by Ensembl ID; rows
    that are all NaN (a token in no cell) are dropped."""
    genes = vocab.genes
    if tokens is None:
        tokens = genes.index[genes["species"] == "human"].to_numpy()
        rows = vectors[tokens]
    else:
        tokens = np.asarray(tokens)
        rows = vectors
    frame = pd.DataFrame(rows, index=pd.Index(genes.loc[tokens, "gene_id"].to_numpy(), name="gene_id"))
    return frame[~frame.isna().all(axis=1)]
