"""Promoter DNA sequences and their embeddings: the *real* path of the promoter prior (DESIGN.md §1).

GeneCompass embeds the DNA around each gene's transcription start site (TSS), 500 bp upstream to 2,000 bp
downstream, with a DNA language model. This module does that when the user supplies a genome FASTA (or a
FASTA of promoter sequences); the offline bundle has no genome, so :mod:`gc_lib.priors.promoter` also offers
an annotation-only substitute.

- :func:`read_fasta` — streaming FASTA reader (plain or gzip), one record at a time;
- :func:`tss_from_locations` / :func:`promoter_windows` — strand-aware −500/+2000 windows cut from a genome
  read one chromosome at a time (memory bounded by the largest chromosome);
- :func:`read_promoter_fasta` — promoter sequences from a FASTA whose headers carry the gene ID;
- :func:`kmer_spectra` / :func:`embed_kmer_svd` — k-mer spectra reduced by TF-IDF + truncated SVD, a
  model-free embedding that needs no download;
- :func:`embed_with_language_model` — a HuggingFace DNA language model (local path or name), mean-pooled.

Coordinates are 1-based and inclusive, as in :func:`gc_lib.inputs.orgdb.gene_locations`; the TSS is position +1
of the window, so a '+' gene's window is ``tss-500 … tss+1999`` and a '-' gene's is the reverse complement
of ``tss-1999 … tss+500``.
"""
from __future__ import annotations

import gzip
import os
import re
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
from scipy import sparse

_COMPLEMENT = bytes.maketrans(b"ACGTRYKMSWBDHVN", b"TGCAYRMKSWVHDBN")
_SEQUENCE_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz*-."
_CODES = np.full(256, -1, dtype=np.int8)
for _i, _b in enumerate(b"ACGT"):
    _CODES[_b] = _i
_TSS_COLUMNS = ("gene_id", "chrom", "tss", "strand")


def normalise_chrom(name) -> str:
    """Chromosome name without a ``chr`` prefix and with ``MT`` as ``M``: ``chr1``/``1`` → ``1``."""
    name = str(name)
    if name[:3].lower() == "chr":
        name = name[3:]
    return "M" if name.upper() == "MT" else name


def is_primary(chrom) -> bool:
    """Whether a contig belongs to the primary assembly (hg38 alt/fix/random/Un contigs contain ``_``)."""
    return "_" not in str(chrom)


def _open(path: str | os.PathLike):
    with open(path, "rb") as probe:
        magic = probe.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def read_fasta(path: str | os.PathLike) -> Iterator[tuple[str, str]]:
    """Yield ``(name, sequence)`` for each record of a FASTA file (plain or gzip, detected by content).

    ``name`` is the header's first word (without ``>``); the sequence is upper-case with line breaks removed.
    Only one record is held in memory at a time. Raises ``ValueError`` for a file that is not FASTA (text
    before the first header, non-sequence characters, no record at all).
    """
    name, chunks = None, bytearray()
    with _open(path) as handle:
        for number, raw in enumerate(handle, 1):
            line = raw.strip()
            if not line:
                continue
            if line[:1] == b">":
                if name is not None:
                    yield name, chunks.upper().decode("ascii")
                words = line[1:].split()
                name, chunks = (words[0].decode("utf-8", "replace") if words else ""), bytearray()
            elif line[:1] == b";":
                continue  # old-style FASTA comment
            elif name is None or line.translate(None, _SEQUENCE_CHARS):
                what = "text before the first '>' header" if name is None else "characters that are not sequence"
                raise ValueError(f"{path} is not a FASTA file: line {number} has {what}: {raw[:60]!r}")
            else:
                chunks += line
    if name is None:
        raise ValueError(f"{path} is not a FASTA file: no '>' record found")
    yield name, chunks.upper().decode("ascii")


def reverse_complement(sequence: str) -> str:
    """Reverse complement of an upper-case DNA sequence (IUPAC codes complemented, other letters kept)."""
    return sequence.encode("ascii").translate(_COMPLEMENT)[::-1].decode("ascii")


def tss_from_locations(locations: pd.DataFrame, *, primary_only: bool = True) -> pd.DataFrame:
    """TSSs of gene models (:func:`gc_lib.inputs.orgdb.gene_locations`): ``gene_id, chrom, tss, strand``, distinct.

    The TSS is ``start`` on '+' and ``end`` on '-'. Several models sharing a TSS give one row.
    ``primary_only`` drops alt/fix/unplaced contigs (their windows would duplicate the primary assembly).
    """
    gene = "gene_id" if "gene_id" in locations.columns else "ensembl_id"
    missing = {gene, "chrom", "start", "end", "strand"} - set(locations.columns)
    if missing:
        raise ValueError(f"locations lack columns {sorted(missing)}")
    bad = sorted(set(locations["strand"]) - {"+", "-"})
    if bad:
        raise ValueError(f"strand must be '+' or '-'; got {bad[:5]}")
    table = locations
    if primary_only:
        table = table[[is_primary(c) for c in table["chrom"]]]
    tss = np.where(table["strand"] == "+", table["start"], table["end"]).astype(np.int64)
    out = pd.DataFrame({"gene_id": table[gene].astype(str).to_numpy(), "chrom": table["chrom"].astype(str).to_numpy(),
                        "tss": tss, "strand": table["strand"].to_numpy()})
    return out.drop_duplicates().sort_values(list(_TSS_COLUMNS)).reset_index(drop=True)


def promoter_windows(genome_fasta: str | os.PathLike, tss: pd.DataFrame, *, upstream: int = 500,
                     downstream: int = 2000) -> pd.DataFrame:
    """Cut one promoter window per TSS from a genome FASTA: ``gene_id, sequence`` (input order kept).

    ``tss``: ``gene_id, chrom, tss, strand`` (1-based). The window runs ``upstream`` bp before the TSS to
    ``downstream - 1`` bp after it in transcript direction, reverse-complemented for '-' genes, and is clipped
    at chromosome ends. Chromosome names match with or without ``chr`` (``MT``=``M``). The genome is read one
    chromosome at a time. TSSs on chromosomes absent from the FASTA, or outside them, are left out and
    counted in ``result.attrs["missing"]``.
    """
    missing = set(_TSS_COLUMNS) - set(tss.columns)
    if missing:
        raise ValueError(f"tss table lacks columns {sorted(missing)}")
    if upstream < 0 or downstream < 1:
        raise ValueError(f"need upstream >= 0 and downstream >= 1; got {upstream}, {downstream}")
    table = tss.reset_index(drop=True)
    keys = table["chrom"].map(normalise_chrom)
    wanted = {chrom: rows for chrom, rows in table.groupby(keys).indices.items()}
    sequences: dict[int, str] = {}
    for name, chromosome in read_fasta(genome_fasta):
        rows = wanted.pop(normalise_chrom(name), None)
        if rows is None:
            continue
        length = len(chromosome)
        positions = table["tss"].to_numpy()[rows].astype(np.int64)
        strands = table["strand"].to_numpy()[rows]
        for row, pos, strand in zip(rows, positions, strands):
            if not 1 <= pos <= length:
                continue
            if strand == "+":
                start, end = pos - 1 - upstream, pos - 1 + downstream
            elif strand == "-":
                start, end = pos - downstream, pos + upstream
            else:
                raise ValueError(f"strand must be '+' or '-'; got {strand!r} for {table.at[row, 'gene_id']}")
            window = chromosome[max(start, 0):min(end, length)]
            sequences[int(row)] = window if strand == "+" else reverse_complement(window)
        if not wanted:
            break
    order = sorted(sequences)
    out = pd.DataFrame({"gene_id": table["gene_id"].astype(str).to_numpy()[order],
                        "sequence": [sequences[i] for i in order]})
    out.attrs["missing"] = int(len(table) - len(out))
    out.attrs["missing_chromosomes"] = sorted(wanted)
    return out


def read_promoter_fasta(path: str | os.PathLike, id_pattern: str = r"ENSG\d{11}") -> pd.DataFrame:
    """Promoter sequences from a FASTA whose headers contain the gene ID: ``gene_id, sequence``.

    The whole header line is searched for ``id_pattern``; records without a match are skipped and counted in
    ``result.attrs["skipped"]``; ``ValueError`` if no header matches (wrong pattern or wrong file).
    """
    pattern = re.compile(id_pattern)
    genes, sequences, skipped = [], [], 0
    with _open(path) as handle:
        headers = [line.decode("utf-8", "replace").strip() for line in handle if line[:1] == b">"]
    for header, (_, sequence) in zip(headers, read_fasta(path)):
        match = pattern.search(header)
        if match is None:
            skipped += 1
            continue
        genes.append(match.group(0))
        sequences.append(sequence)
    if not genes:
        raise ValueError(f"no header of {path} contains a gene ID matching {id_pattern!r} "
                         f"(e.g. {headers[:2]})")
    out = pd.DataFrame({"gene_id": genes, "sequence": sequences})
    out.attrs["skipped"] = skipped
    return out


def kmer_spectra(sequences, k: int = 6, *, chunk_bases: int = 10_000_000) -> sparse.csr_matrix:
    """k-mer counts: CSR matrix ``n_sequences × 4**k`` (column = base-4 number of the k-mer, A=0 C=1 G=2 T=3).

    Vectorised: the sequences (processed ``chunk_bases`` at a time) are 2-bit encoded and every window's index
    is built by a rolling base-4 sum; windows containing N or any other non-ACGT letter are skipped.
    """
    if not 1 <= k <= 15:
        raise ValueError(f"k must lie in 1..15; got {k}")
    sequences = list(sequences)
    blocks, start = [], 0
    while start < len(sequences) or not blocks:
        stop, total = start, 0
        while stop < len(sequences) and (stop == start or total + len(sequences[stop]) <= chunk_bases):
            total += len(sequences[stop]) + 1
            stop += 1
        blocks.append(_kmer_block(sequences[start:stop], k))
        start = stop
    return sparse.vstack(blocks, format="csr") if len(blocks) > 1 else blocks[0]


def _kmer_block(sequences: list[str], k: int) -> sparse.csr_matrix:
    n_cols = 4 ** k
    if not sequences:
        return sparse.csr_matrix((0, n_cols), dtype=np.float64)
    # one separator after each sequence, so no k-mer spans two sequences
    joined = "".join(s + "N" for s in sequences).upper().encode("ascii")
    codes = _CODES[np.frombuffer(joined, dtype=np.uint8)]
    lengths = np.array([len(s) + 1 for s in sequences])
    owner = np.repeat(np.arange(len(sequences)), lengths)
    n_windows = len(codes) - k + 1
    if n_windows <= 0:
        return sparse.csr_matrix((len(sequences), n_cols), dtype=np.float64)
    invalid = np.concatenate([[0], np.cumsum(codes < 0)])
    valid = (invalid[k:] - invalid[:-k]) == 0
    index = np.zeros(n_windows, dtype=np.int64)
    clean = np.where(codes < 0, 0, codes).astype(np.int64)
    for j in range(k):
        index = index * 4 + clean[j:j + n_windows]
    rows, cols = owner[:n_windows][valid], index[valid]
    matrix = sparse.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(sequences), n_cols))
    return matrix.tocsr()


def _check_promoters(promoters: pd.DataFrame) -> pd.DataFrame:
    missing = {"gene_id", "sequence"} - set(promoters.columns)
    if missing:
        raise ValueError(f"promoter table lacks columns {sorted(missing)}")
    table = promoters[promoters["sequence"].str.len() > 0]
    if table.empty:
        raise ValueError("promoter table has no non-empty sequence")
    return table.assign(gene_id=table["gene_id"].astype(str)).reset_index(drop=True)


def _gene_average(gene_ids: pd.Series, matrix):
    """Mean of the rows of ``matrix`` per gene (genes sorted): ``(genes, averaging matrix @ matrix)``."""
    codes, genes = pd.factorize(gene_ids, sort=True)
    counts = np.bincount(codes, minlength=len(genes))
    averaging = sparse.csr_matrix((1.0 / counts[codes], (codes, np.arange(len(codes)))),
                                  shape=(len(genes), len(codes)))
    return pd.Index(genes, name="gene_id"), averaging @ matrix


def svd_embed(matrix, dim: int, seed: int, prefix: str) -> pd.DataFrame:
    """TruncatedSVD of ``matrix`` to ``dim`` components (fewer when the matrix has fewer rows or columns).

    Returns a float32 DataFrame with ``attrs``: ``dim`` (used), ``dim_requested``,
    ``explained_variance_ratio_sum``. The index is set by the caller.
    """
    from sklearn.decomposition import TruncatedSVD

    n_rows, n_cols = matrix.shape
    if n_rows < 2 or n_cols < 1:
        raise ValueError(f"need at least 2 genes and 1 feature to embed; got {n_rows} × {n_cols}")
    used = min(dim, n_rows, n_cols)
    svd = TruncatedSVD(n_components=used, algorithm="randomized", n_iter=7, random_state=seed)
    vectors = svd.fit_transform(matrix).astype(np.float32)
    out = pd.DataFrame(vectors, columns=[f"{prefix}{i}" for i in range(vectors.shape[1])])
    out.attrs.update(dim=int(vectors.shape[1]), dim_requested=int(dim),
                     explained_variance_ratio_sum=round(float(svd.explained_variance_ratio_.sum()), 6))
    return out


def embed_kmer_svd(promoters: pd.DataFrame, *, k: int = 6, dim: int = 128, seed: int = 0) -> pd.DataFrame:
    """Promoter vectors from k-mer spectra: TF-IDF of k-mer frequencies reduced by truncated SVD (LSA).

    Each promoter's counts become frequencies (so windows clipped at a chromosome end weigh like full ones),
    frequencies are averaged over a gene's promoters, then weighted by TF-IDF (smooth idf) and L2-normalised.
    TF-IDF rather than log1p: with 6-mers on 2.5 kb most counts are 0–2, so the information lies in *which*
    k-mers occur; idf down-weights k-mers present in almost every promoter (poly-A, simple repeats) and lifts
    the rarer, motif-like ones (CpG-containing, TF sites), and the matrix stays sparse for the SVD.
    ``dim`` falls to ``min(dim, genes, 4**k)`` when the data are smaller (``attrs["dim"]`` records it).
    Returns a float32 DataFrame indexed by ``gene_id`` (sorted), ``attrs`` as in :func:`svd_embed`.
    """
    from sklearn.feature_extraction.text import TfidfTransformer

    table = _check_promoters(promoters)
    counts = kmer_spectra(table["sequence"], k)
    totals = np.asarray(counts.sum(axis=1)).ravel()
    frequencies = sparse.diags(1.0 / np.where(totals > 0, totals, 1.0)) @ counts
    genes, per_gene = _gene_average(table["gene_id"], frequencies)
    weighted = TfidfTransformer(norm="l2", smooth_idf=True, sublinear_tf=False).fit_transform(per_gene)
    out = svd_embed(weighted, dim, seed, "kmer_svd_")
    out.index = genes
    out.attrs.update(method="kmer_svd", k=int(k), seed=int(seed), n_promoters=int(len(table)),
                     n_genes=int(len(genes)), normalisation="frequency, mean per gene, tf-idf (smooth), l2")
    return out


def embed_with_language_model(promoters: pd.DataFrame, model, *, tokenizer=None, batch_size: int = 16,
                              device: str = "cpu", max_length: int | None = None,
                              trust_remote_code: bool = False) -> pd.DataFrame:
    """Promoter vectors from a DNA language model (HuggingFace ``transformers``): float32, indexed by gene.

    ``model``: a local directory or hub name for ``AutoModel``/``AutoTokenizer`` (``tokenizer`` overrides the
    tokenizer's path). Each sequence's vector is the last hidden state mean-pooled over its non-padding
    tokens; a gene's vector is the mean over its promoters. Sequences longer than ``max_length`` tokens
    (default: the smaller of the tokenizer's and the model's limits) are truncated; ``attrs["truncated"]``
    counts them. Deterministic: the model runs in eval mode without gradients.
    """
    try:
        import torch
        from transformers import AutoModel, AutoTokenizer
    except ImportError as error:  # pragma: no cover - both are project dependencies
        raise ImportError("embed_with_language_model needs `torch` and `transformers` "
                          "(pip install torch transformers)") from error

    table = _check_promoters(promoters)
    tok = AutoTokenizer.from_pretrained(str(tokenizer or model), trust_remote_code=trust_remote_code)
    net = AutoModel.from_pretrained(str(model), trust_remote_code=trust_remote_code).to(device).eval()
    if max_length is None:
        limits = [getattr(tok, "model_max_length", None), getattr(net.config, "max_position_embeddings", None)]
        limits = [int(x) for x in limits if x is not None and x < 1_000_000]
        max_length = min(limits) if limits else None
    pooled, truncated = [], 0
    sequences = table["sequence"].tolist()
    with torch.no_grad():
        for start in range(0, len(sequences), batch_size):
            batch = sequences[start:start + batch_size]
            if max_length is not None:
                full = tok(batch, add_special_tokens=True, verbose=False)["input_ids"]
                truncated += sum(len(ids) > max_length for ids in full)
            encoded = tok(batch, padding=True, truncation=max_length is not None, max_length=max_length,
                          return_tensors="pt").to(device)
            outputs = net(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"])
            hidden = outputs.last_hidden_state if hasattr(outputs, "last_hidden_state") else outputs[0]
            weights = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled.append(((hidden * weights).sum(1) / weights.sum(1).clamp(min=1)).float().cpu().numpy())
    vectors = np.concatenate(pooled).astype(np.float64)
    genes, per_gene = _gene_average(table["gene_id"], vectors)
    out = pd.DataFrame(np.asarray(per_gene, dtype=np.float32), index=genes,
                       columns=[f"lm_{i}" for i in range(vectors.shape[1])])
    out.attrs.update(method="lm", model=str(Path(model)) if os.path.exists(str(model)) else str(model),
                     max_length=max_length, truncated=int(truncated), n_promoters=int(len(table)),
                     n_genes=int(len(genes)), dim=int(vectors.shape[1]), pooling="mean over non-padding tokens")
    return out
