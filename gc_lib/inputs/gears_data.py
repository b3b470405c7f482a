"""Perturb-seq data in GEARS's format (Norman 2019, Adamson 2016, Replogle 2022 K562 essential) for notebook 07's
``full`` profile, checked and given Ensembl IDs.

**Where the files come from.** GEARS (``cell-gears``) publishes each dataset as ``<name>/perturb_processed.h5ad``
inside a zip on Harvard Dataverse; ``gears.PertData(folder).load(data_name="norman")`` (or ``"adamson"``,
``"replogle_k562_essential"``) downloads and unpacks it on a machine with web access. Pass the ``.h5ad`` (a path,
or an http/https/file URL with its sha256) to :func:`load_gears_dataset`; offline there is no copy, so the loader is
tested on small files of the same shape.

**The format.** Cells × genes; ``X`` log-normalised expression (GEARS: ``normalize_total`` + ``log1p``, the top
highly variable genes); ``obs["condition"]`` ``"ctrl"`` / ``"A+ctrl"`` / ``"A+B"`` (gene symbols), ``obs["cell_type"]``,
often ``obs["condition_name"]``, ``obs["control"]``, ``obs["dose_val"]``; ``var["gene_name"]`` the symbols (the
names conditions use) and ``var_names`` Ensembl IDs or symbols.

**What the loader returns**: the same cells and values, ``var_names`` human Ensembl IDs (symbols mapped through the
bundle's HGNC tables when the file has no IDs; unmapped genes dropped and counted), ``var["gene_name"]`` kept exactly
as the file spells it (conditions refer to it), ``var["gene_symbol"]``, ``obs["species"] = "human"``, and
``uns["gc_lib"]`` (source, value kind, gene mapping, the number of conditions of each kind).
"""
from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
from anndata import AnnData

from .atlas import resolve_h5ad
from .conversion import first_column_per_gene, plan_genes

VALUE_KIND = "log-normalised expression as GEARS prepares it (normalize_total + log1p)"
REQUIRED_OBS = ("condition", "cell_type")
CONTROL = "ctrl"


def condition_genes(condition: str) -> tuple[str, ...]:
    """The perturbed genes of a GEARS condition, in order: ``"ctrl"`` → ``()``, ``"A+ctrl"`` / ``"ctrl+A"`` →
    ``("A",)``, ``"A+B"`` → ``("A", "B")``; a ValueError for anything else."""
    if str(condition) == CONTROL:
        return ()
    parts = [p.strip() for p in str(condition).split("+")]
    genes = tuple(p for p in parts if p != CONTROL)
    if len(parts) != 2 or not genes or any(not p for p in parts):
        raise ValueError(f"condition {condition!r} is not in GEARS's format ('ctrl', 'A+ctrl' or 'A+B')")
    return genes


def _check_obs(adata: AnnData, source: str) -> dict[str, int]:
    """Counts of control, single and double conditions; a ValueError naming what is missing or malformed."""
    missing = [c for c in REQUIRED_OBS if c not in adata.obs.columns]
    if missing:
        raise ValueError(f"{source}: obs lacks {missing} (GEARS's format; columns: {list(adata.obs.columns)})")
    if "gene_name" not in adata.var.columns:
        raise ValueError(f"{source}: var has no 'gene_name' column (GEARS's format; columns: "
                         f"{list(adata.var.columns)})")
    conditions = adata.obs["condition"].astype(str).unique()
    sizes = [len(condition_genes(c)) for c in conditions]
    if 0 not in sizes:
        raise ValueError(f"{source}: no control cells (condition 'ctrl')")
    measured = set(adata.var["gene_name"].astype(str))
    unmeasured = sorted({g for c in conditions for g in condition_genes(c)} - measured)
    return {"conditions": len(conditions), "singles": sizes.count(1), "doubles": sizes.count(2),
            "perturbed_genes_not_measured": len(unmeasured)}


def _check_values(X, source: str) -> None:
    data = X.data if hasattr(X, "data") else np.asarray(X)
    if not np.isfinite(data).all() or (data < 0).any():
        raise ValueError(f"{source}: X must hold finite, non-negative log-normalised values")


def load_gears_dataset(path, *, sha256: str | None = None, cache_dir=None) -> AnnData:
    """A GEARS ``perturb_processed.h5ad`` (module docstring), checked, with Ensembl IDs as ``var_names``."""
    file, info = resolve_h5ad(path, sha256, cache_dir)
    source = str(path)
    adata = ad.read_h5ad(file)
    kinds = _check_obs(adata, source)
    _check_values(adata.X, source)
    var = adata.var.copy()
    var["gene_name"] = var["gene_name"].astype(str)
    plan = plan_genes(var, "human", None, "gene_name")
    kept = first_column_per_gene(plan)          # two columns, one Ensembl ID: the first (log values do not add)
    X = adata.X[:, kept]
    out_var = plan.var.copy()
    out_var["gene_name"] = var["gene_name"].to_numpy()[kept]
    obs = adata.obs.copy()
    obs["species"] = pd.Categorical(["human"] * adata.n_obs)
    mapping = {"genes": int(adata.n_vars), "kept": int(X.shape[1]), **plan.info}
    uns = {"gc_lib": {**info, "value_kind": VALUE_KIND, "gene_mapping": mapping, "conditions": kinds}}
    return AnnData(X=X, obs=obs, var=out_var, uns=uns)
