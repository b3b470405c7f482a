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
"""
__version__ = "0.1.0"
