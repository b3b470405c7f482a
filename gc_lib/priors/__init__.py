"""Stage 3 · priors: the four prior-knowledge embeddings, aligned to the vocabulary (DESIGN.md §1).

- :mod:`~gc_lib.priors.store`       prior tables aligned to token ids (mouse via orthologs), stored with manifests
- :mod:`~gc_lib.priors.gene2vec`    word2vec over gene pairs or random walks: the embedding of three priors
- :mod:`~gc_lib.priors.grn`         TF→target network prior (held-out edges and TFs for leak-free GRN tasks)
- :mod:`~gc_lib.priors.promoter`    promoter prior (annotation substitute, or :mod:`~gc_lib.priors.promoter_sequence`)
- :mod:`~gc_lib.priors.family`      gene-family prior (HGNC groups, or the Pfam + JASPAR substitute)
- :mod:`~gc_lib.priors.coexpression` co-expression prior from the corpus
- :mod:`~gc_lib.priors.signal`      does a prior carry signal: related vs random pairs, neighbours

Imports: :mod:`gc_lib.core`, :mod:`gc_lib.inputs`, :mod:`gc_lib.corpus`.
"""
