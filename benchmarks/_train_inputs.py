"""The inputs of ``benchmarks/train_throughput.py``: cells with random genes and values (full length, or lengths
drawn from the real corpus), padded and collated for our model and for HF's, and random prior tables.

Loaded with ``runpy.run_path`` by that script (``-P`` keeps the benchmarks folder off ``sys.path``); not run alone.
"""
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gc_lib.corpus.vocab import MASK, PAD, SPECIAL_TOKENS, SPECIES_TOKENS
from gc_lib.priors.store import PRIOR_NAMES, PriorTable

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "data" / "01_corpus" / "corpus"
VOCAB, PRIOR_DIM, PRIOR_COVERAGE, MASK_RATE, SEED = 25_000, 128, 0.8, 0.15, 0
PAD_ID, MASK_ID = SPECIAL_TOKENS.index(PAD), SPECIAL_TOKENS.index(MASK)
FIRST_SPECIES_ID, FIRST_GENE_ID = SPECIAL_TOKENS.index(SPECIES_TOKENS["human"]), len(SPECIAL_TOKENS)
LOGNORMAL = (4.5, 0.9)   # fallback cell lengths without the corpus: lognormal(mean, sigma) of ln(length), median ~90


def random_priors(vocab_size: int, seed: int = SEED) -> dict[str, PriorTable]:
    """Random tables for every prior: PRIOR_DIM-long vectors, ~80 % of rows present (absent rows zero)."""
    rng = np.random.default_rng(seed)
    tables = {}
    for name in PRIOR_NAMES:
        mask = rng.random(vocab_size) < PRIOR_COVERAGE
        vectors = (rng.standard_normal((vocab_size, PRIOR_DIM)) * mask[:, None]).astype(np.float32)
        tables[name] = PriorTable(name, vectors, mask, {"method": "random (benchmark)"})
    return tables


def corpus_lengths() -> tuple[np.ndarray | None, str]:
    """Cell lengths of the real corpus (its shards' ``length`` column), or None and why not."""
    shards = sorted((CORPUS / "shards").glob("*.parquet"))
    if not shards:
        return None, f"no corpus at {CORPUS.relative_to(ROOT)}: lengths from lognormal{LOGNORMAL}"
    import pyarrow.parquet as pq
    lengths = np.concatenate([pq.read_table(p, columns=["length"])["length"].to_numpy() for p in shards])
    return lengths, f"{CORPUS.relative_to(ROOT)} ({lengths.size:,} cells, {len(shards)} shards)"


def draw_lengths(n: int, cap: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    lengths, source = corpus_lengths()
    drawn = rng.choice(lengths, n) if lengths is not None else np.rint(rng.lognormal(*LOGNORMAL, n))
    drawn = np.clip(drawn, 1, cap).astype(np.int64)
    info = {"source": source, "cap": cap, "cells": n, "median": float(np.median(drawn)), "mean": float(drawn.mean()),
            "max": int(drawn.max()), "capped": int((drawn == cap).sum())}
    if lengths is not None:
        info["corpus_median"], info["corpus_share_over_cap"] = float(np.median(lengths)), float((lengths > cap).mean())
    return drawn, info


@dataclass
class Batch:
    """One batch, already on the device, in both models' formats."""
    ours: dict
    hf: dict
    real_tokens: int
    cells: int
    ours_len: int     # gene positions ours runs (sequence = 1 + this)
    hf_len: int       # positions HF runs (cell token included)


def make_cells(lengths: np.ndarray, rng: np.random.Generator) -> list[dict]:
    """Per cell: gene ids (distinct, random), log-expression values descending, 15 % masked (at least one)."""
    cells = []
    for n in lengths:
        ids = FIRST_GENE_ID + rng.choice(VOCAB - FIRST_GENE_ID, n, replace=False)
        values = np.sort(np.log2(1 + rng.lognormal(0.5, 1.0, n)))[::-1].astype(np.float32)
        masked = rng.random(n) < MASK_RATE
        masked[rng.integers(n)] = True
        cells.append({"ids": ids, "values": values, "masked": masked, "species": int(rng.integers(2))})
    return cells


def collate(cells: list[dict], ours_len: int, hf_len: int, device: str) -> Batch:
    """Pad to ``ours_len`` gene positions for ours and ``hf_len`` positions (cell token first) for HF. Masked
    positions get ``<mask>`` as input id (and value 0 for ours) in both; labels are the true ids."""
    B = len(cells)
    ids = np.full((B, ours_len), PAD_ID, np.int64)
    values, masked = np.zeros((B, ours_len), np.float32), np.zeros((B, ours_len), bool)
    attention, species = np.zeros((B, ours_len), bool), np.array([c["species"] for c in cells], np.int64)
    for i, c in enumerate(cells):
        n = c["ids"].size
        ids[i, :n], values[i, :n], masked[i, :n], attention[i, :n] = c["ids"], c["values"], c["masked"], True
    inputs, value_inputs = np.where(masked, MASK_ID, ids), np.where(masked, 0, values).astype(np.float32)
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(device)  # noqa: E731
    ours = {"input_ids": t(inputs), "values": t(value_inputs), "species": t(species), "attention_mask": t(attention),
            "masked": t(masked), "labels": t(ids), "value_labels": t(values)}
    hf_ids, hf_labels, hf_attention = (np.full((B, hf_len), fill, np.int64) for fill in (PAD_ID, -100, 0))
    hf_ids[:, 0], hf_attention[:, 0] = FIRST_SPECIES_ID + species, 1   # the cell token, as ours prepends
    width = min(ours_len, hf_len - 1)
    hf_ids[:, 1:1 + width] = inputs[:, :width]
    hf_attention[:, 1:1 + width] = attention[:, :width]
    hf_labels[:, 1:1 + width] = np.where(masked, ids, -100)[:, :width]
    hf = {"input_ids": t(hf_ids), "attention_mask": t(hf_attention), "labels": t(hf_labels)}
    return Batch(ours, hf, int(attention.sum()), B, ours_len, hf_len)


def make_batches(case, device: str, rng: np.random.Generator) -> tuple[list[Batch], list[Batch], dict]:
    """(batches for ours, batches for HF and for ours padded like HF, length info) of ``case`` (train_throughput's
    ``Case``: length, batch, realistic, pool_batches). Full-length cases: one batch."""
    if not case.realistic:
        cells = make_cells(np.full(case.batch, case.length), rng)
        batch = collate(cells, case.length, case.length + 1, device)
        return [batch], [batch], {"length": case.length}
    lengths, info = draw_lengths(case.batch * case.pool_batches, case.length, rng)
    cells = sorted(make_cells(lengths, rng), key=lambda c: c["ids"].size)   # bucketing, simply: sort the pool
    groups = [cells[i:i + case.batch] for i in range(0, len(cells), case.batch)]
    bucketed = [collate(g, max(c["ids"].size for c in g), case.length + 1, device) for g in groups]
    padded = [collate(g, case.length, case.length + 1, device) for g in groups]
    info["ours_padded_positions"] = sum(b.cells * (b.ours_len + 1) for b in bucketed)
    info["hf_padded_positions"] = sum(b.cells * b.hf_len for b in padded)
    info["real_positions"] = sum(b.real_tokens + b.cells for b in bucketed)
    return bucketed, padded, info
