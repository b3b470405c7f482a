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
- :mod:`gc_lib.profiles`   the ci / local / full run profiles
- :mod:`gc_lib.run_notebooks`  executes the notebooks with papermill
"""
__version__ = "0.1.0"
