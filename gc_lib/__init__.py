"""gc_lib: GeneCompass re-implemented — a cross-species (human + mouse) single-cell foundation model whose
input encodes gene identity, expression value and four kinds of prior knowledge.

The library is organised by stage; a stage imports only the stages before it (``tests/unit/test_layout.py``
enforces this):

====================  ======================================================================================
:mod:`gc_lib.core`    paths, atomic writes, the profile table, the notebook runner
:mod:`gc_lib.inputs`  sources and fetching, the bundle's datasets, atlas readers, the AnnData contract and the
                      conversion into it (symbols → Ensembl IDs), gene tables, orthologs, org.Hs.eg.db
:mod:`gc_lib.corpus`  QC, vocabulary, medians, the tokenizer and the streaming corpus builder
:mod:`gc_lib.priors`  the four prior-knowledge embeddings (GRN, promoter, family, co-expression)
:mod:`gc_lib.model`   the architecture, masking, the data loader, the trainer, checkpoints, pretraining
:mod:`gc_lib.tasks`   embeddings, fine-tuning, baselines and the downstream tasks
====================  ======================================================================================

The names below are the user API, scanpy-style (``adata`` first, keyword-only options, ``key_added``). They are
the library's own functions and classes, imported when first used so that ``import gc_lib`` stays light (no
torch, no numba) for the corpus builder's worker processes.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

#: public name → the module that defines it
_API = {
    "get_profile": "gc_lib.core.profiles",
    "to_contract": "gc_lib.inputs.conversion",
    "check_counts_adata": "gc_lib.inputs.contract",
    "read_h5ad": "gc_lib.inputs.atlas",
    "iter_h5ad_chunks": "gc_lib.inputs.atlas",
    "open_census": "gc_lib.inputs.atlas",
    "census_query": "gc_lib.inputs.atlas",
    "sample_census": "gc_lib.inputs.atlas",
    "load_dataset": "gc_lib.inputs.datasets",
    "map_symbols_to_ensembl": "gc_lib.inputs.genes",
    "cell_qc_metrics": "gc_lib.corpus.qc",
    "Vocabulary": "gc_lib.corpus.vocab",
    "Tokenizer": "gc_lib.corpus.tokenizer",
    "CorpusConfig": "gc_lib.corpus.builder",
    "build_corpus": "gc_lib.corpus.builder",
    "tokenize_files": "gc_lib.corpus.builder",
    "read_corpus": "gc_lib.corpus.builder",
    "load_priors": "gc_lib.priors.store",
    "ModelConfig": "gc_lib.model.architecture",
    "build_model": "gc_lib.model.architecture",
    "load_model": "gc_lib.model.architecture",
    "TrainConfig": "gc_lib.model.trainer",
    "pretrain": "gc_lib.model.pretrain",
    "embed": "gc_lib.tasks.embedding",
    "perturb": "gc_lib.tasks.perturb_adata",
    "FinetuneConfig": "gc_lib.tasks.finetune",
    "fit_cell_classifier": "gc_lib.tasks.finetune",
    "predict_cells": "gc_lib.tasks.finetune",
    "fit_gene_classifier": "gc_lib.tasks.finetune",
    "predict_genes": "gc_lib.tasks.finetune",
}
__all__ = sorted(_API)

if TYPE_CHECKING:  # what static tools and IDEs see; at run time the names load on first use
    from .core.profiles import get_profile
    from .corpus.builder import CorpusConfig, build_corpus, read_corpus, tokenize_files
    from .corpus.qc import cell_qc_metrics
    from .corpus.tokenizer import Tokenizer
    from .corpus.vocab import Vocabulary
    from .inputs.atlas import census_query, iter_h5ad_chunks, open_census, read_h5ad, sample_census
    from .inputs.contract import check_counts_adata
    from .inputs.conversion import to_contract
    from .inputs.datasets import load_dataset
    from .inputs.genes import map_symbols_to_ensembl
    from .model.architecture import ModelConfig, build_model, load_model
    from .model.pretrain import pretrain
    from .model.trainer import TrainConfig
    from .priors.store import load_priors
    from .tasks.embedding import embed
    from .tasks.finetune import FinetuneConfig, fit_cell_classifier, fit_gene_classifier, predict_cells, predict_genes
    from .tasks.perturb_adata import perturb


def __getattr__(name: str):
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value  # later look-ups skip this hook
        return value
    raise AttributeError(f"module 'gc_lib' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
