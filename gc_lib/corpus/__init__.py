"""Stage 2 · corpus: contract AnnData → the tokenised corpus (DESIGN.md §1, corpus and tokenizer).

Flow: QC → vocabulary → medians → ranking kernel → tokenizer / corpus builder → shards (Parquet or Arrow IPC).

- :mod:`~gc_lib.corpus.qc`          per-cell QC metrics and the per-dataset ±3 SD rules
- :mod:`~gc_lib.corpus.vocab`       the token vocabulary (special tokens, human and mouse genes, orthologs)
- :mod:`~gc_lib.corpus.medians`     streaming non-zero medians per gene (histograms with a stated error bound)
- :mod:`~gc_lib.corpus.tokenizer`   counts → top-N tokens and values (the shard schema); any AnnData
- :mod:`~gc_lib.corpus.shards`      shard files: Parquet or Arrow IPC, written atomically, read by groups; digests
- :mod:`~gc_lib.corpus.builder`     the streaming, parallel, resumable corpus builder; reading shards back
- internal: ``_kernels`` (numba: QC, medians), ``_rank_kernels`` (numba: ranking), ``_kernels_native`` and
  ``_rank_native`` (the same kernels in C, built at install, loaded by ``_native``; numba's are the fallback),
  ``_count_store`` (row-chunk reads of ``.h5ad``/``.zarr``),
  ``_direct_read`` (an ``.h5ad``'s arrays read without h5py), ``_buffers`` (arrays reused across pieces), ``_passes``
  (the builder's units of work, run in worker processes), ``_schedule`` (the builder's passes: tasks planned, run and
  combined)

Imports: :mod:`gc_lib.core`, :mod:`gc_lib.inputs`.
"""
