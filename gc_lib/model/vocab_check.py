"""Does a tokenizer's vocabulary mean the same genes to a checkpoint? (:func:`gc_lib.model.architecture.load_model`)

The model reads row ``t`` of its id embedding and prior buffers for token id ``t``; a tokenizer whose ids name other
genes would feed it the embeddings and priors of the wrong genes without any error. :func:`check_vocabulary` refuses
that, and reports how many of each species' checkpoint genes the tokenizer can reach.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

from ..corpus.vocab import Vocabulary

LOW_OVERLAP = 0.5  # below this share of a species' checkpoint gene tokens reachable by the tokenizer: a warning


def check_vocabulary(directory: str | os.PathLike, vocab: Vocabulary, *, vocab_size: int | None = None) -> dict:
    """Check that the token ids of ``vocab`` (a tokenizer's vocabulary) mean the same genes to the checkpoint at
    ``directory``; return ``{"same": bool, "overlap": {species: {...}}}``.

    The rule: the model reads row ``t`` of its id embedding and prior buffers for token id ``t``, and row ``t``
    means the checkpoint vocabulary's ``t``-th token. So
    - equal :attr:`Vocabulary.hash` (same tokens, same order, same species): safe;
    - otherwise every id the tokenizer can emit must name the same gene (and species) in the checkpoint, i.e.
      the tokenizer's vocabulary is a prefix of the checkpoint's: safe, but the model's gene tokens beyond it are
      never fed; a ``UserWarning`` when a species keeps under ``LOW_OVERLAP`` of its checkpoint gene tokens;
    - any id naming another gene, or beyond the model's vocabulary: ``ValueError`` (embeddings and priors of the
      wrong genes would be read silently).
    Per species, ``overlap`` gives the checkpoint's gene tokens, the tokenizer's, how many genes both hold (by
    Ensembl ID, whatever their ids) and that count as a fraction of the checkpoint's."""
    directory = Path(directory)
    if not (directory / "vocab.json").exists():
        raise ValueError(f"{directory} has no vocab.json, so its token ids cannot be checked against the tokenizer's "
                         f"vocabulary; it is not a complete checkpoint (see gc_lib.model.checkpoint)")
    saved = Vocabulary.load(directory / "vocab.json")
    vocab_size = len(saved) if vocab_size is None else vocab_size
    if len(saved) != vocab_size:
        raise ValueError(f"{directory}: vocab.json has {len(saved)} tokens but the model {vocab_size}; the checkpoint "
                         f"is inconsistent")
    overlap = _vocabulary_overlap(saved, vocab)
    if saved.hash == vocab.hash:
        return {"same": True, "overlap": overlap}
    ours, theirs = saved.genes[["gene_id", "species"]], vocab.genes[["gene_id", "species"]]
    n = min(len(ours), len(theirs))
    moved = int((ours.iloc[:n].to_numpy() != theirs.iloc[:n].to_numpy()).any(axis=1).sum())
    beyond = max(0, len(vocab) - vocab_size)
    summary = "; ".join(f"{s}: {o['common']:,} of {o['checkpoint']:,} checkpoint gene tokens in common"
                        for s, o in overlap.items())
    if moved or beyond:
        raise ValueError(f"{directory}: the tokenizer's vocabulary (hash {vocab.hash:.12}…) differs from the "
                         f"checkpoint's ({saved.hash:.12}…) and its token ids are misaligned ({moved:,} ids name "
                         f"other genes, {beyond:,} lie beyond the model's {vocab_size:,} tokens) — {summary}. Use "
                         f"the tokenizer saved with the checkpoint (Tokenizer.load(checkpoint)).")
    low = [s for s, o in overlap.items() if o["checkpoint"] and o["fraction"] < LOW_OVERLAP]
    if low:
        warnings.warn(f"{directory}: the tokenizer covers a prefix of the checkpoint's vocabulary; only {summary} "
                      f"(low for {', '.join(low)})", stacklevel=3)
    return {"same": False, "overlap": overlap}


def _vocabulary_overlap(saved: Vocabulary, vocab: Vocabulary) -> dict[str, dict]:
    """Per species: gene tokens of the checkpoint and of the tokenizer, and genes the two share."""
    out = {}
    for species in sorted(set(saved.genes["species"]) | set(vocab.genes["species"])):
        ours = set(saved.genes.loc[saved.genes["species"] == species, "gene_id"])
        theirs = set(vocab.genes.loc[vocab.genes["species"] == species, "gene_id"])
        common = len(ours & theirs)
        out[species] = {"checkpoint": len(ours), "tokenizer": len(theirs), "common": common,
                        "fraction": round(common / len(ours), 4) if ours else 0.0}
    return out
