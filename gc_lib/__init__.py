"""gc_lib: GeneCompass re-implemented — a cross-species (human + mouse) single-cell foundation model whose
input encodes gene identity, expression value and four kinds of prior knowledge.

A thin, flat library; the science lives in the numbered notebooks. Modules, one concern each:

- :mod:`gc_lib.paths`      where everything is read and written
- :mod:`gc_lib.sources`    the offline bundle's registry (package, version, file, sha256, licence)
- :mod:`gc_lib.fetch`      downloading and verifying package archives
- :mod:`gc_lib.contract`   the AnnData contract, checked at the door
- :mod:`gc_lib.conform`    bringing any AnnData into the contract
- :mod:`gc_lib.datasets`   the bundle's single-cell datasets
- :mod:`gc_lib.atlas`      real atlases: ``.h5ad`` files/URLs and CELLxGENE Census, streamed
- :mod:`gc_lib.genes`      gene tables, symbol → Ensembl, human↔mouse orthologs
- :mod:`gc_lib.qc`         per-cell quality metrics
- :mod:`gc_lib.vocab`      the token vocabulary (special tokens, human and mouse genes, orthologs)
- :mod:`gc_lib.medians`    streaming non-zero medians per gene (histograms with a stated error bound)
- :mod:`gc_lib.kernels`    compiled (numba) kernels: QC metrics, median histograms, ranking
- :mod:`gc_lib.tokenizer`  counts → top-N tokens and values; the shard format; inference on any AnnData
- :mod:`gc_lib.count_store`  row-chunk reads of ``.h5ad``/``.zarr`` count matrices
- :mod:`gc_lib.corpus_qc`  the corpus's per-dataset cell QC rules
- :mod:`gc_lib.corpus_tasks`  the corpus builder's units of work (one per pass, run in worker processes)
- :mod:`gc_lib.corpus`     the streaming, parallel, resumable corpus builder
- :mod:`gc_lib.profiles`   the ci / local / full run profiles
- :mod:`gc_lib.run_notebooks`  executes the notebooks with papermill
- :mod:`gc_lib.orgdb`      human annotation from org.Hs.eg.db (UniProt, Pfam, gene models, GO), by Ensembl ID
- :mod:`gc_lib.gene2vec`   word2vec over gene pairs or random walks: the embedding of three priors
- :mod:`gc_lib.priors`     prior tables aligned to the vocabulary (mouse via orthologs), stored with manifests
- :mod:`gc_lib.grn_prior`, :mod:`gc_lib.family_prior`, :mod:`gc_lib.promoter_prior` (+ :mod:`gc_lib.promoter_sequence`),
  :mod:`gc_lib.coexpr_prior`   the four prior builders
- :mod:`gc_lib.prior_signal`  does a prior carry signal: related vs random pairs, neighbours
- :mod:`gc_lib.model`      the GeneCompass model: config presets, encoder, masked-gene heads, save/load
- :mod:`gc_lib.masking`, :mod:`gc_lib.pretrain_data`  BERT masking; streaming, bucketed, resumable batches
- :mod:`gc_lib.train`      one optimizer step (DDP/FSDP, bf16, accumulation) and the schedule
- :mod:`gc_lib.checkpoint`  checkpoint directories without pickles
- :mod:`gc_lib.pretrain`   the pretraining run (loop, logging, evaluation, checkpoints, resume; CLI for torchrun)
- :mod:`gc_lib.embedding`  ``gc_lib.embed(adata, checkpoint)``: cell and gene embeddings, scanpy-style
"""
__version__ = "0.1.0"


def embed(adata, checkpoint, **kwargs):
    """Cell and gene embeddings of ``adata`` from a pretrained checkpoint; see :func:`gc_lib.embedding.embed`."""
    from .embedding import embed as _embed  # imported on use: keeps ``import gc_lib`` free of torch

    return _embed(adata, checkpoint, **kwargs)

