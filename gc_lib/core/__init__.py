"""Stage 0 · core: what every other stage leans on, and nothing about biology.

- :mod:`~gc_lib.core.paths`          where everything is read and written (``data/``, ``figures/``, ``build/``)
- :mod:`~gc_lib.core.atomic`         writes that never leave a partial file (temp file, then rename)
- :mod:`~gc_lib.core.profiles`       the one table of ``ci`` / ``local`` / ``full`` sizes, per notebook
- :mod:`~gc_lib.core.run_notebooks`  executes the numbered notebooks with papermill
  (``python -m gc_lib.core.run_notebooks``)

Imports: the standard library and third-party packages only; no other stage of ``gc_lib``.
"""
