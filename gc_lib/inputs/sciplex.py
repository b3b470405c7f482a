"""sci-Plex3 (Srivatsan et al., *Science* 2020) as CPA / chemCPA prepare it, read into the "dose contract".

Notebook 08 fits dose-response models; with the real single-cell drug screen at hand (``full`` profile) it reads
it here. Offline there is no copy, so this loader is tested on small files of the same shape.

**The file.** An ``.h5ad`` of cells × genes. ``obs``: ``cell_type`` (A549, K562, MCF7), ``condition`` (the drug;
``control`` for the vehicle), ``dose_val``, ``control`` (1 for vehicle cells), ``drug_dose_name``,
``cov_drug_dose_name``, ``split`` and often the raw screen's ``dose`` (nM). ``X`` holds raw counts or, as chemCPA
writes it, log1p of counts normalised per cell; ``layers["counts"]`` may hold the counts. ``var_names`` are gene
symbols (chemCPA keeps the Ensembl IDs in ``var["gene_id"]``) or Ensembl IDs.

**Dose units.** CPA/chemCPA divide the dose in nM by the largest dose, 10,000 nM: ``dose_val`` 0.001, 0.01, 0.1, 1
mean 10, 100, 1,000, 10,000 nM. So by default ``dose = dose_val × 10`` µM (``dose_to_um=10``); chemCPA also gives
vehicle cells ``dose_val = 1``, so controls get dose 0 whatever the file says. For a file whose dose column is in
nM (Srivatsan's ``dose``), pass ``dose_column="dose", dose_to_um=1e-3``.

**The dose contract** (what :func:`load_sciplex3` returns): ``obs["drug"]`` (str, ``"control"`` for vehicle cells),
``obs["dose"]`` (float, µM, 0 for controls), ``obs["cell_line"]`` (str), ``obs["species"]``, the file's own columns
kept (one named ``drug``, ``dose`` or ``cell_line`` is kept as ``<name>_in_file``); ``var_names`` human Ensembl IDs
with ``var["gene_symbol"]``; raw counts in ``layers["counts"]`` (CSR float32) when the file has them; ``X`` their
log1p(counts / cell total × 10⁴), else the file's ``X`` as it is; ``uns["gc_lib"]["value_kind"]`` says which.
"""
from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .atlas import resolve_h5ad
from .conversion import first_column_per_gene, gene_columns, looks_like_counts, plan_genes

#: ``obs["drug"]`` of vehicle cells, and the ``condition`` value that marks them in CPA's file.
CONTROL = "control"
#: CPA's dose_val is dose / 10,000 nM, so 1.0 is 10 µM.
CPA_DOSE_VAL_TO_UM = 10.0
#: per-cell total that counts are scaled to before log1p
TARGET_SUM = 1e4
VALUE_KIND_FROM_COUNTS = "log1p(counts / cell total × 1e4), computed from the raw counts in layers['counts']"
VALUE_KIND_AS_GIVEN = "the file's X as given (no raw counts found; chemCPA's files hold log1p-normalised values)"
_DOSE_CONTRACT_COLUMNS = ("drug", "dose", "cell_line")


def _require_columns(obs: pd.DataFrame, needed: list[str], source: str) -> None:
    missing = [c for c in needed if c not in obs.columns]
    if missing:
        raise ValueError(f"{source}: obs has no column {missing[0]!r} (needed: {needed}; columns found: "
                         f"{list(obs.columns)})")


def _control_mask(obs: pd.DataFrame, drug_column: str, source: str) -> np.ndarray:
    """Vehicle cells: ``condition == "control"``, or ``control == 1`` where the file has that column."""
    drugs = obs[drug_column]
    if drugs.isna().any():
        raise ValueError(f"{source}: obs[{drug_column!r}] is missing for {int(drugs.isna().sum())} cells")
    control = (drugs.astype(str) == CONTROL).to_numpy()
    if "control" in obs.columns:
        flags = pd.to_numeric(obs["control"], errors="coerce")
        if not flags.isin([0, 1]).all():
            bad = obs["control"][~flags.isin([0, 1])].iloc[0]
            raise ValueError(f"{source}: obs['control'] must be 0 or 1, found {str(bad)!r}")
        control |= (flags == 1).to_numpy()
    if not control.any():
        raise ValueError(f"{source}: no control cells: none has obs[{drug_column!r}] == {CONTROL!r} or "
                         f"obs['control'] == 1 (drugs found: {sorted(drugs.astype(str).unique())[:5]})")
    return control


def _doses_um(obs: pd.DataFrame, dose_column: str, dose_to_um: float, control: np.ndarray, source: str) -> np.ndarray:
    """Doses in µM: ``obs[dose_column] × dose_to_um`` for treated cells, 0 for controls."""
    values = pd.to_numeric(obs[dose_column], errors="coerce").to_numpy(dtype=float)
    treated = ~control
    if np.isnan(values[treated]).any():
        first = obs[dose_column].iloc[np.flatnonzero(treated & np.isnan(values))[0]]
        raise ValueError(f"{source}: obs[{dose_column!r}] is missing or not a number for "
                         f"{int(np.isnan(values[treated]).sum())} treated cells (e.g. {str(first)!r})")
    if (values[treated] < 0).any():
        raise ValueError(f"{source}: negative dose in obs[{dose_column!r}] for {int((values[treated] < 0).sum())} "
                         f"treated cells (e.g. {values[treated][values[treated] < 0][0]})")
    if dose_column == "dose_val" and dose_to_um == CPA_DOSE_VAL_TO_UM and values[treated].max(initial=0) > 1:
        warnings.warn(f"{source}: obs['dose_val'] goes up to {values[treated].max():g}, but CPA's dose_val is at most "
                      f"1 (dose / 10,000 nM); is it in another unit? Pass dose_to_um= to convert it to µM",
                      UserWarning, stacklevel=3)
    return np.where(control, 0.0, values * dose_to_um)


def _find_counts(adata: AnnData):
    """``(label, matrix)`` of the raw counts: ``layers["counts"]``, else ``X``, else ``raw.X`` (when its genes are
    ``var``'s), whichever first holds non-negative integers; ``(None, None)`` when none does."""
    candidates = [("layers['counts']", adata.layers.get("counts")), ("X", adata.X)]
    if adata.raw is not None and adata.raw.var_names.equals(adata.var_names):
        candidates.append(("raw.X", adata.raw.X))
    for label, matrix in candidates:
        if matrix is not None and looks_like_counts(matrix):
            return label, matrix
    return None, None


def log_normalise(counts: sp.csr_matrix, target_sum: float = TARGET_SUM) -> sp.csr_matrix:
    """``log1p(counts / cell total × target_sum)`` as CSR float32 (an empty cell stays all zero)."""
    counts = sp.csr_matrix(counts, dtype=np.float32)
    totals = np.asarray(counts.sum(axis=1)).ravel()
    scale = np.divide(target_sum, totals, out=np.zeros_like(totals, dtype=np.float64), where=totals > 0)
    out = sp.csr_matrix(sp.diags(scale.astype(np.float32)) @ counts, dtype=np.float32)
    np.log1p(out.data, out=out.data)
    return out


def _contract_obs(obs: pd.DataFrame, drug_column: str, cell_line_column: str, control: np.ndarray,
                  dose: np.ndarray) -> pd.DataFrame:
    out = obs.rename(columns={c: f"{c}_in_file" for c in _DOSE_CONTRACT_COLUMNS if c in obs.columns})
    out.insert(0, "drug", np.where(control, CONTROL, obs[drug_column].astype(str).to_numpy()))
    out.insert(1, "dose", dose)
    out.insert(2, "cell_line", obs[cell_line_column].astype(str).to_numpy())
    out["species"] = pd.Categorical(["human"] * len(out))
    return out


def load_sciplex3(path, *, sha256: str | None = None, cache_dir=None, drug_column: str = "condition",
                  dose_column: str = "dose_val", dose_to_um: float = CPA_DOSE_VAL_TO_UM,
                  cell_line_column: str = "cell_type", gene_id_column: str | None = None,
                  symbol_column: str | None = None) -> AnnData:
    """Read CPA's sci-Plex3 ``.h5ad`` (a path, or an http/https/file URL) as a dose-contract AnnData.

    URLs are downloaded once into ``cache_dir`` (:func:`gc_lib.inputs.atlas.fetch_url`); ``sha256`` is checked for
    URLs and local files alike. ``dose = obs[dose_column] × dose_to_um`` µM (default: CPA's ``dose_val`` × 10, see
    the module docstring), 0 for controls. Genes as :func:`gc_lib.inputs.conversion.plan_genes` finds them (Ensembl
    IDs in var_names or an ID column such as ``gene_id``, else symbols mapped through the HGNC tables; pass
    ``gene_id_column`` / ``symbol_column`` to choose); unmapped genes are dropped.

    Sets: ``obs["drug"]``, ``obs["dose"]``, ``obs["cell_line"]``, ``obs["species"]`` (the file's columns kept);
    ``var_names`` (Ensembl IDs), ``var["gene_symbol"]``; ``layers["counts"]`` and ``X`` (module docstring);
    ``uns["gc_lib"]``: ``source``, ``value_kind``, ``counts_source``, ``dose`` (column and factor) and
    ``gene_mapping`` (``genes``, ``mapped``, ``dropped``, sources, the symbol tiers). Raises ``ValueError`` naming
    the column or value at fault: a missing obs column, no control cells, a negative or missing dose.
    """
    file, _ = resolve_h5ad(path, sha256, cache_dir)
    source = str(path)
    adata = ad.read_h5ad(file)
    _require_columns(adata.obs, [drug_column, dose_column, cell_line_column], source)
    control = _control_mask(adata.obs, drug_column, source)
    dose = _doses_um(adata.obs, dose_column, dose_to_um, control, source)
    plan = plan_genes(adata.var, "human", gene_id_column, symbol_column)
    counts_source, counts = _find_counts(adata)
    layers = {}
    if counts is not None:
        layers["counts"] = gene_columns(plan, counts)
        X = log_normalise(layers["counts"])
    else:
        X = adata.X[:, first_column_per_gene(plan)]  # log values do not add: the first column of a duplicate
    mapping = {"genes": int(adata.n_vars), "mapped": int(len(plan.var)), "dropped": plan.info["dropped_genes"],
               **plan.info}
    uns = {"gc_lib": {"source": source, "value_kind": VALUE_KIND_FROM_COUNTS if counts is not None else
                      VALUE_KIND_AS_GIVEN, "counts_source": counts_source or "none", "gene_mapping": mapping,
                      "dose": {"column": dose_column, "to_um": float(dose_to_um), "unit": "uM"}}}
    obs = _contract_obs(adata.obs, drug_column, cell_line_column, control, dose)
    return AnnData(X=X, obs=obs, var=plan.var.copy(), layers=layers, uns=uns)
