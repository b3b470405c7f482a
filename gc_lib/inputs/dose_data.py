"""One entry point to the drug-response data of notebook 08: the offline L1000 plate, or a user's sci-Plex3 / LINCS
Level-5 files, each returned with the obs keys the benchmark needs.

- ``"l1000_plate"`` (every profile, offline): the registry's LJP005 A375 plate (:func:`gc_lib.inputs.gct
  .load_l1000_plate`), log2 Level-3 values; drug ``pert_iname``, dose ``pert_dose`` (µM), controls ``DMSO``;
- ``"sciplex3"``: CPA's sci-Plex3 h5ad (:func:`gc_lib.inputs.sciplex.load_sciplex3`); ``files = {"path": …}``
  (plus its optional keywords, e.g. ``sha256``). ``X`` is log1p-normalised expression; one cell line per run is
  what the benchmark's single control mean assumes, so ``files["cell_line"]`` picks it (default the first);
- ``"lincs_level5"``: LINCS Level-5 signatures with SMILES (:func:`gc_lib.inputs.lincs.load_lincs_level5`);
  ``files = {"gctx_path", "sig_info_path", "compound_info_path", "gene_info_path"}`` plus its keywords; vehicle
  controls are always included (their z-scores are the reference), one cell line as for sci-Plex3.
"""
from __future__ import annotations

import numpy as np
from anndata import AnnData

from .gct import load_l1000_plate

KINDS = ("l1000_plate", "sciplex3", "lincs_level5")
#: obs keys of the dose contract written by the sci-Plex3 and LINCS loaders.
CONTRACT_KEYS = {"drug_key": "drug", "dose_key": "dose", "control_value": "control"}


def _one_cell_line(adata: AnnData, wanted: str | None, what: str) -> AnnData:
    lines = sorted(adata.obs["cell_line"].astype(str).unique())
    chosen = wanted or lines[0]
    if chosen not in lines:
        raise ValueError(f"{what}: no cell line {chosen!r}; the data holds {lines}")
    return adata[(adata.obs["cell_line"].astype(str) == chosen).to_numpy()].copy()


def _sciplex3(files: dict) -> tuple[AnnData, str]:
    from .sciplex import load_sciplex3

    options = dict(files)
    path, cell_line = options.pop("path"), options.pop("cell_line", None)
    adata = _one_cell_line(load_sciplex3(path, **options), cell_line, "sci-Plex3")
    if hasattr(adata.X, "toarray"):
        adata.X = np.asarray(adata.X.toarray(), dtype=np.float32)
    line = adata.obs["cell_line"].iat[0]
    return adata, f"sci-Plex3 {line} (real data, {adata.n_obs:,} cells)"


def _lincs_level5(files: dict) -> tuple[AnnData, str]:
    from .lincs import load_lincs_level5

    options = dict(files)
    paths = [options.pop(k) for k in ("gctx_path", "sig_info_path", "compound_info_path", "gene_info_path")]
    cell_line = options.pop("cell_line", None)
    options.setdefault("pert_type", ("trt_cp", "ctl_vehicle"))
    adata = load_lincs_level5(*paths, cell_lines=cell_line, **options)
    adata = _one_cell_line(adata, cell_line, "LINCS Level 5")
    treated = adata.obs["drug"].astype(str) != CONTRACT_KEYS["control_value"]
    adata = adata[~treated.to_numpy() | np.isfinite(adata.obs["dose"].to_numpy(dtype=float))].copy()
    return adata, f"LINCS Level 5 {adata.obs['cell_line'].iat[0]} (real data, {adata.n_obs:,} signatures)"


def load_dose_data(kind: str, files: dict | None = None) -> tuple[AnnData, dict, str]:
    """The AnnData of ``kind`` (module docstring), its keys for :mod:`gc_lib.tasks.dose_benchmark` (``drug_key``,
    ``dose_key``, ``control_value``) and a one-line description that names the data."""
    if kind not in KINDS:
        raise ValueError(f"unknown drug-response data {kind!r}; choose one of {KINDS}")
    if kind == "l1000_plate":
        adata, _ = load_l1000_plate()
        keys = {"drug_key": "pert_iname", "dose_key": "pert_dose", "control_value": "DMSO"}
        return adata, keys, "L1000 plate LJP005, A375 24 h (real data)"
    if not files:
        raise ValueError(f"{kind} needs its files: pass DATA_FILES (see gc_lib.inputs.dose_data)")
    adata, name = _sciplex3(files) if kind == "sciplex3" else _lincs_level5(files)
    return adata, dict(CONTRACT_KEYS), name
