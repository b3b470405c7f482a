"""Prior-knowledge tables aligned to the token vocabulary, and how they are stored (DESIGN.md §1).

Each prior (``grn``, ``promoter``, ``family``, ``coexpression``) starts as vectors of *human* genes (a
DataFrame indexed by Ensembl ID) and becomes a :class:`PriorTable`: a float32 matrix with one row per
token id of the vocabulary (special tokens included, so the model indexes it with ``input_ids``) and a
boolean mask of the rows that carry the prior. Human gene tokens take their own vector; mouse gene tokens
take their human ortholog's vector, as in the paper (one-to-one orthologs by default). Rows without the
prior are zero and masked out.

On disk (one directory, e.g. ``data/02_prior_knowledge/priors/``)::

    <name>.safetensors      tensors "vectors" (n_tokens × d, float32) and "mask" (n_tokens, uint8)
    <name>_human.parquet    the human-gene vectors before alignment, to realign to another vocabulary
    <name>.json             manifest: method, sources (+ sha256), parameters, coverage, vocabulary hash,
                            whether it is a substitute, sha256 of the two files above

Every file is written atomically and the manifest last, so a manifest always describes complete files.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.atomic import atomic_path, write_json, write_parquet
from ..corpus.vocab import SPECIAL_TOKENS, Vocabulary
from ..inputs.fetch import sha256_file

PRIOR_NAMES: tuple[str, ...] = ("grn", "promoter", "family", "coexpression")
FORMAT = "gc_lib.prior/1"
ORTHOLOGY = {"one2one": ("one2one",), "any": ("one2one", "one2many", "many2many")}


@dataclass(frozen=True)
class PriorTable:
    """One prior aligned to a vocabulary: ``vectors[token_id]`` is the token's vector when ``mask[token_id]``."""
    name: str
    vectors: np.ndarray          # (len(vocab), d) float32, zero where mask is False
    mask: np.ndarray             # (len(vocab),) bool
    info: dict = field(default_factory=dict)  # manifest fields: method, sources, parameters, coverage …

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


def _examples(values, n: int = 3) -> str:
    values = list(values)[:n]
    return ", ".join(map(str, values)) or "none"


def align_to_vocab(name: str, human_vectors: pd.DataFrame, vocab: Vocabulary, *, orthology: str = "one2one",
                   info: dict | None = None) -> PriorTable:
    """Place human-gene vectors on the rows of ``vocab``; mouse tokens take their human ortholog's vector.

    ``orthology``: ``"one2one"`` (default; the paper's choice) transfers only through one-to-one orthologs,
    ``"any"`` through the vocabulary's chosen partner of any homology type. Raises ``ValueError`` when no
    gene of the resource is in the vocabulary (wrong species, symbols instead of Ensembl IDs …).
    """
    if orthology not in ORTHOLOGY:
        raise ValueError(f"orthology must be one of {sorted(ORTHOLOGY)}; got {orthology!r}")
    if human_vectors.empty:
        raise ValueError(f"prior {name!r}: the resource has no gene vectors")
    index = pd.Index(human_vectors.index.astype(str))
    if index.has_duplicates:
        raise ValueError(f"prior {name!r}: genes listed twice, e.g. {_examples(index[index.duplicated()])}")
    genes = vocab.genes
    is_human = (genes["species"] == "human").to_numpy()
    lookup = np.where(is_human, genes["gene_id"].astype(str), genes["human_ortholog"].fillna("").astype(str))
    transferable = is_human | genes["homology_type"].isin(ORTHOLOGY[orthology]).to_numpy()
    rows = index.get_indexer(lookup)
    found = (rows >= 0) & transferable
    if not found.any():
        raise ValueError(
            f"prior {name!r}: none of its {len(index):,} genes (e.g. {_examples(index)}) is a human gene of the "
            f"vocabulary ({int(is_human.sum()):,} human genes, e.g. {_examples(genes['gene_id'][is_human])}) "
            f"or a one-to-one ortholog of one of its mouse genes; the resource must be indexed by human "
            f"Ensembl gene IDs")
    n_special = len(SPECIAL_TOKENS)
    vectors = np.zeros((len(vocab), human_vectors.shape[1]), dtype=np.float32)
    mask = np.zeros(len(vocab), dtype=bool)
    source = human_vectors.to_numpy(dtype=np.float32)
    token_rows = n_special + np.flatnonzero(found)
    vectors[token_rows] = source[rows[found]]
    mask[token_rows] = True
    details = dict(info or {})
    details.update(name=name, dim=int(vectors.shape[1]), orthology=orthology,
                   resource_genes=int(len(index)), coverage=coverage(mask, vocab))
    return PriorTable(name, vectors, mask, details)


def coverage(mask: np.ndarray, vocab: Vocabulary) -> dict[str, dict[str, float]]:
    """Genes covered / gene tokens, per species: ``{species: {"covered", "genes", "fraction"}}``."""
    gene_mask = np.asarray(mask)[len(SPECIAL_TOKENS):]
    out = {}
    for species, rows in vocab.genes.groupby("species").indices.items():
        covered = int(gene_mask[rows].sum())
        out[species] = {"covered": covered, "genes": int(len(rows)),
                        "fraction": round(covered / len(rows), 4) if len(rows) else 0.0}
    return out


def _paths(directory: Path, name: str) -> dict[str, Path]:
    return {"tensors": directory / f"{name}.safetensors", "human": directory / f"{name}_human.parquet",
            "manifest": directory / f"{name}.json"}


def save_prior(table: PriorTable, human_vectors: pd.DataFrame, vocab: Vocabulary,
               directory: str | os.PathLike) -> Path:
    """Write ``table`` (and the human vectors it came from) under ``directory``; return the manifest path."""
    from safetensors.numpy import save_file

    directory = Path(directory)
    files = _paths(directory, table.name)
    with atomic_path(files["tensors"]) as tmp:
        save_file({"vectors": np.ascontiguousarray(table.vectors),
                   "mask": table.mask.astype(np.uint8)}, str(tmp), metadata={"format": FORMAT})
    human = human_vectors.astype(np.float32).copy()
    human.index = pd.Index(human.index.astype(str), name="gene_id")
    write_parquet(human, files["human"])
    manifest = {**table.info, "format": FORMAT, "vocab_hash": vocab.hash, "n_tokens": len(vocab),
                "files": {k: {"path": p.name, "sha256": sha256_file(p)} for k, p in files.items() if k != "manifest"}}
    return write_json(manifest, files["manifest"])


def load_prior(directory: str | os.PathLike, name: str, vocab: Vocabulary | None = None) -> PriorTable:
    """Read a prior written by :func:`save_prior`; with ``vocab``, refuse one built for another vocabulary."""
    from safetensors.numpy import load_file

    files = _paths(Path(directory), name)
    if not files["manifest"].exists():
        raise FileNotFoundError(f"no prior {name!r} in {directory} (missing {files['manifest'].name})")
    info = json.loads(files["manifest"].read_text())
    if info.get("format") != FORMAT:
        raise ValueError(f"{files['manifest']} is not a {FORMAT} manifest")
    if vocab is not None and info.get("vocab_hash") != vocab.hash:
        raise ValueError(f"prior {name!r} was aligned to another vocabulary (hash {info.get('vocab_hash')!s:.12}…, "
                         f"this one {vocab.hash:.12}…); realign it with align_to_vocab(load_human_vectors(...))")
    tensors = load_file(str(files["tensors"]))
    return PriorTable(name, tensors["vectors"], tensors["mask"].astype(bool), info)


def load_human_vectors(directory: str | os.PathLike, name: str) -> pd.DataFrame:
    """The human-gene vectors of a saved prior (to align them to another vocabulary)."""
    return pd.read_parquet(_paths(Path(directory), name)["human"])


def load_priors(directory: str | os.PathLike, vocab: Vocabulary,
                names: tuple[str, ...] = PRIOR_NAMES) -> dict[str, PriorTable]:
    """The priors ``names`` of ``directory``; pass fewer names to switch priors off (ablations)."""
    unknown = sorted(set(names) - set(PRIOR_NAMES))
    if unknown:
        raise ValueError(f"unknown priors {unknown}; known: {PRIOR_NAMES}")
    return {name: load_prior(directory, name, vocab) for name in names}


def standardise(vectors: pd.DataFrame) -> pd.DataFrame:
    """Centre each dimension and scale every vector to unit length, so priors of different methods share a scale."""
    centred = vectors - vectors.mean(axis=0)
    norms = np.linalg.norm(centred.to_numpy(), axis=1, keepdims=True)
    return (centred / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def build_or_load(directory: str | os.PathLike, name: str, vocab: Vocabulary, key: dict, build, *,
                  force: bool = False) -> tuple[PriorTable, pd.DataFrame, bool]:
    """The prior ``name`` from ``directory`` if it was built with the same ``key`` for ``vocab``; else build it.

    ``key``: JSON-able description of the inputs (parameters, sources, exclusions); ``build()`` returns
    ``(PriorTable, human_vectors)``. Returns the table, the human vectors and whether it was reused. This is
    how a notebook skips work whose output exists (DESIGN.md §2) without ever reusing a stale prior.
    """
    directory = Path(directory)
    manifest = _paths(directory, name)["manifest"]
    key = json.loads(json.dumps(key, sort_keys=True, default=str))
    if manifest.exists() and not force:
        info = json.loads(manifest.read_text())
        if info.get("build_key") == key and info.get("vocab_hash") == vocab.hash:
            return load_prior(directory, name, vocab), load_human_vectors(directory, name), True
    table, human = build()
    table = PriorTable(table.name, table.vectors, table.mask, {**table.info, "build_key": key})
    save_prior(table, human, vocab, directory)
    return table, human, False
