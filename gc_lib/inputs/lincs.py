"""LINCS L1000 Level-5 signatures (GEO GSE92742 / GSE70138) read into the dose contract, genes as Ensembl IDs.

Notebook 08 fits dose-response models; with the real L1000 release at hand (``full`` profile) it reads the
signatures here. Offline there is no copy, so these readers are tested on small files of the same shape.

**GCTX** is CMap's HDF5 form of GCT (:mod:`gc_lib.inputs.gct`): ``/0/DATA/0/matrix`` is stored columns × rows
(one HDF5 row per signature, float32), ``/0/META/ROW/id`` the row IDs (genes: Entrez IDs in Level 5),
``/0/META/COL/id`` the column IDs (signatures), other datasets in ``META/ROW`` / ``META/COL`` metadata fields.
:func:`read_gctx` reads a subset of signatures by ID without loading the whole matrix (the full Level-5 matrix of
GSE92742 is 473,647 × 12,328 floats, 23 GB): the wanted HDF5 rows are read in sorted blocks.

**Tables.** ``sig_info`` (``sig_id, pert_id, pert_iname, pert_type, cell_id``, the dose as ``pert_dose`` +
``pert_dose_unit`` or the text ``pert_idose``, the time as ``pert_time`` + ``pert_time_unit`` or ``pert_itime``),
the compound table (``pert_id`` and ``canonical_smiles`` or ``smiles``) and ``gene_info`` (``pr_gene_id``: Entrez,
``pr_gene_symbol``, ``pr_is_lm``: 1 for the 978 measured landmark genes). All tab-separated; CMap's ``-666`` and
``restricted`` mean missing.

**Values are not counts.** Level 5 holds moderated z-scores (replicate-weighted differential expression against
the plate): neither counts nor log2 expression; ``uns["gc_lib"]["value_kind"]`` says so. Doses are converted to
µM (pM, nM, µM, mM, M understood); times to hours. Control signatures (``pert_type`` ``ctl_*``, e.g.
``ctl_vehicle``) get ``drug == "control"`` and dose 0, as in :mod:`gc_lib.inputs.sciplex`.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np
import pandas as pd
from anndata import AnnData

from .gct import MISSING, l1000_to_contract, metadata_table
from .sciplex import CONTROL

MATRIX_NODE = "/0/DATA/0/matrix"
ROW_META_NODE = "/0/META/ROW"
COL_META_NODE = "/0/META/COL"
LINCS_VALUE_KIND = "moderated z-scores (LINCS L1000 Level 5 signatures): not counts, not log2 expression"
#: text that means "no value" in the LINCS tables, besides :data:`gc_lib.inputs.gct.MISSING`
MISSING_TEXT = MISSING | {"restricted", "-666.0000"}
#: molar units → factor to µM (the micro sign, Greek mu and a mis-decoded µ are read as "u")
UNIT_TO_UM = {"pm": 1e-6, "nm": 1e-3, "um": 1.0, "mm": 1e3, "m": 1e6}
#: time units → factor to hours
UNIT_TO_HOURS = {"h": 1.0, "hr": 1.0, "hrs": 1.0, "hour": 1.0, "hours": 1.0, "m": 1 / 60, "min": 1 / 60,
                 "d": 24.0, "day": 24.0, "days": 24.0}
SIG_INFO_COLUMNS = ["sig_id", "pert_id", "pert_iname", "pert_type", "cell_id"]
_READ_BLOCK = 1024  # signatures per HDF5 read
_QUANTITY = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(\S*)\s*$")


# --------------------------------------------------------------------------------------------
# GCTX
# --------------------------------------------------------------------------------------------

def _texts(dataset: h5py.Dataset) -> list[str]:
    values = dataset[()]
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in np.ravel(values)]


def _ids(f: h5py.File, node: str, path: Path) -> list[str]:
    if f"{node}/id" not in f:
        raise ValueError(f"{path}: not a GCTX file: no {node}/id dataset")
    return _texts(f[f"{node}/id"])


def _metadata(f: h5py.File, node: str, what: str, path: Path) -> pd.DataFrame:
    """The ``META/ROW`` or ``META/COL`` group as a table indexed by its ``id`` dataset."""
    ids, names = _ids(f, node, path), [k for k in f[node].keys() if k != "id"]
    return metadata_table(names, [_texts(f[node][k]) for k in names], ids, what, path)


def gctx_ids(path) -> tuple[pd.Index, pd.Index]:
    """The row IDs (genes) and column IDs (signatures) of a GCTX file, without reading its matrix."""
    with h5py.File(path, "r") as f:
        return tuple(pd.Index(_ids(f, node, Path(path)), dtype=str) for node in (ROW_META_NODE, COL_META_NODE))


def _positions(wanted, ids: pd.Index, what: str, path: Path) -> np.ndarray:
    """Positions in the file of the ``wanted`` IDs (all, in file order, when None), in the order given."""
    if wanted is None:
        return np.arange(len(ids))
    wanted = pd.Index(np.asarray(list(wanted), dtype=str))
    if wanted.has_duplicates:
        raise ValueError(f"{path}: duplicated {what} IDs requested: {list(wanted[wanted.duplicated()][:5])}")
    positions = ids.get_indexer(wanted)
    if (positions < 0).any():
        raise ValueError(f"{path}: {int((positions < 0).sum())} {what} IDs are not in the file, e.g. "
                         f"{list(wanted[positions < 0][:5])}")
    return positions


def _read_matrix(matrix: h5py.Dataset, col_positions: np.ndarray, row_positions: np.ndarray) -> np.ndarray:
    """Signatures × genes, float32: the wanted HDF5 rows read in increasing order, in blocks (a contiguous block as
    a slice), then put back in the order asked for."""
    order = np.argsort(col_positions, kind="stable")
    ascending = col_positions[order]
    whole_rows = len(row_positions) == matrix.shape[1] and (row_positions == np.arange(matrix.shape[1])).all()
    out = np.empty((len(col_positions), len(row_positions)), dtype=np.float32)
    for start in range(0, len(ascending), _READ_BLOCK):
        block = ascending[start:start + _READ_BLOCK]
        contiguous = block[-1] - block[0] + 1 == len(block)
        values = matrix[block[0]:block[-1] + 1] if contiguous else matrix[block, :]
        out[order[start:start + len(block)]] = values if whole_rows else values[:, row_positions]
    return out


def read_gctx(path, *, cids=None, rids=None) -> AnnData:
    """Read a GCTX file as an AnnData of columns × rows (signatures × genes for L1000).

    ``cids`` / ``rids``: the column / row IDs to read, in the order wanted (default: all, in file order); only
    those HDF5 rows are read. Sets ``X`` (float32), ``obs`` / ``var`` (the ``META/COL`` / ``META/ROW`` fields
    besides ``id``, typed as in :func:`gc_lib.inputs.gct.metadata_table`), ``uns["gc_lib"]`` (``source``,
    ``format``). Raises ``ValueError`` for a file without the GCTX datasets, a matrix whose shape does not match
    the IDs, and unknown or duplicated IDs asked for.
    """
    path = Path(path)
    with h5py.File(path, "r") as f:
        var = _metadata(f, ROW_META_NODE, "row", path)
        obs = _metadata(f, COL_META_NODE, "column", path)
        if MATRIX_NODE not in f:
            raise ValueError(f"{path}: not a GCTX file: no {MATRIX_NODE} dataset")
        matrix = f[MATRIX_NODE]
        if matrix.shape != (len(obs), len(var)):
            raise ValueError(f"{path}: {MATRIX_NODE} has shape {matrix.shape}, expected (columns, rows) = "
                             f"({len(obs)}, {len(var)}) from META/COL/id and META/ROW/id")
        col_positions = _positions(cids, obs.index, "column", path)
        row_positions = _positions(rids, var.index, "row", path)
        X = _read_matrix(matrix, col_positions, row_positions)
    return AnnData(X=X, obs=obs.iloc[col_positions], var=var.iloc[row_positions],
                   uns={"gc_lib": {"source": path.name, "format": "GCTX"}})


# --------------------------------------------------------------------------------------------
# Tables and units
# --------------------------------------------------------------------------------------------

def _read_table(path, required: list[str], what: str) -> pd.DataFrame:
    """A tab-separated LINCS table as text (no value guessed missing), checked for ``required`` columns."""
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, encoding_errors="replace")
    table.columns = table.columns.str.strip()
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise ValueError(f"{what} {path}: no column {missing[0]!r} (needed: {required}; columns found: "
                         f"{list(table.columns)})")
    return table.apply(lambda column: column.str.strip())


def _quantity(text: str, unit: str, factors: dict[str, float], what: str) -> float:
    """``text`` (a number, or number and unit as in "10 uM") × the factor of its unit (``unit`` when the text has
    none); NaN when missing. Raises ``ValueError`` naming the text when the unit is unknown or the value negative."""
    if text in MISSING_TEXT:
        return float("nan")
    match = _QUANTITY.match(text)
    if match is None:
        raise ValueError(f"{what} {text!r} is not a number with a unit")
    raw_unit = match.group(2) or unit
    key = re.sub("Âµ|µ|μ|\ufffd", "u", raw_unit).lower()
    if key not in factors:
        raise ValueError(f"{what} {text!r}: unknown unit {raw_unit!r} (known: {sorted(factors)})")
    value = float(match.group(1))
    if value < 0:
        raise ValueError(f"{what} {text!r} is negative")
    return value * factors[key]


def parse_dose_um(text: str, unit: str = "") -> float:
    """A LINCS dose in µM: "10.0 um", "10 µM", "500 nM" (or "10" with ``unit="uM"``); NaN for ``-666``/empty."""
    return _quantity(str(text).strip(), str(unit).strip(), UNIT_TO_UM, "dose")


def parse_time_h(text: str, unit: str = "") -> float:
    """A LINCS time in hours: "24 h", "6.0 h" (or "24" with ``unit="h"``); NaN for ``-666``/empty."""
    return _quantity(str(text).strip(), str(unit).strip(), UNIT_TO_HOURS, "time")


def _column_pair(table: pd.DataFrame, value: str, unit: str, text: str, default_unit: str, what: str):
    """The values and units of a quantity: ``value`` + ``unit`` columns, else the ``text`` column."""
    if value in table.columns:
        units = table[unit] if unit in table.columns else pd.Series(default_unit, index=table.index)
        return table[value], units, f"{value} ({unit if unit in table.columns else default_unit})"
    if text in table.columns:
        return table[text], pd.Series("", index=table.index), text
    raise ValueError(f"sig_info: no {what} column: needs {value!r} (with {unit!r}) or {text!r}; columns found: "
                     f"{list(table.columns)}")


def _select_signatures(sig_info: pd.DataFrame, cell_lines, pert_types: list[str]) -> pd.DataFrame:
    if cell_lines is not None:
        cell_lines = [cell_lines] if isinstance(cell_lines, str) else list(cell_lines)
        unknown = sorted(set(cell_lines) - set(sig_info["cell_id"]))
        if unknown:
            raise ValueError(f"sig_info: cell lines {unknown} not found (cell_id has e.g. "
                             f"{sorted(sig_info['cell_id'].unique())[:10]})")
    keep = sig_info["pert_type"].isin(pert_types)
    if cell_lines is not None:
        keep &= sig_info["cell_id"].isin(cell_lines)
    if not keep.any():
        raise ValueError(f"sig_info: no signature with pert_type in {pert_types} (pert_types found: "
                         f"{sorted(sig_info['pert_type'].unique())})")
    return sig_info[keep]


def _signature_obs(signatures: pd.DataFrame, smiles: pd.Series) -> tuple[pd.DataFrame, dict]:
    """The dose-contract obs of the signatures (index ``sig_id``) and what was parsed from where."""
    control = signatures["pert_type"].str.startswith("ctl_").to_numpy()
    doses, dose_units, dose_from = _column_pair(signatures, "pert_dose", "pert_dose_unit", "pert_idose", "uM", "dose")
    times, time_units, time_from = _column_pair(signatures, "pert_time", "pert_time_unit", "pert_itime", "h", "time")
    where = signatures["sig_id"].to_numpy()
    dose = np.array([0.0 if c else _labelled(parse_dose_um, v, u, s) for c, v, u, s in
                     zip(control, doses, dose_units, where)])
    obs = pd.DataFrame({"drug": np.where(control, CONTROL, signatures["pert_iname"].to_numpy()),
                        "pert_id": signatures["pert_id"].to_numpy(), "dose": dose,
                        "cell_line": signatures["cell_id"].to_numpy(),
                        "time_h": [_labelled(parse_time_h, v, u, s) for v, u, s in zip(times, time_units, where)],
                        "smiles": signatures["pert_id"].map(smiles).to_numpy()}, index=pd.Index(where, dtype=str))
    rest = signatures.drop(columns=["sig_id", "pert_id"]).set_index(obs.index)
    return obs.join(rest.rename(columns={c: f"{c}_in_file" for c in rest.columns if c in obs.columns})), {
        "dose_from": dose_from, "time_from": time_from, "missing_dose": int(np.isnan(dose[~control]).sum())}


def _labelled(parse, value: str, unit: str, sig_id: str) -> float:
    try:
        return parse(value, unit)
    except ValueError as exc:
        raise ValueError(f"sig_info: signature {sig_id!r}: {exc}") from None


def _compound_smiles(path) -> pd.Series:
    """SMILES by ``pert_id`` (first row of a duplicated ID; missing values dropped)."""
    table = _read_table(path, ["pert_id"], "compound table")
    column = next((c for c in ("canonical_smiles", "smiles") if c in table.columns), None)
    if column is None:
        raise ValueError(f"compound table {path}: no SMILES column: needs 'canonical_smiles' or 'smiles'; columns "
                         f"found: {list(table.columns)}")
    table = table.drop_duplicates("pert_id")
    return table.set_index("pert_id")[column].replace(sorted(MISSING_TEXT), np.nan).dropna()


def _genes(gene_info_path, row_ids: pd.Index, landmark_only: bool) -> pd.DataFrame:
    """The gene_info rows of the GCTX rows to read (landmarks only by default), indexed by the row ID."""
    required = ["pr_gene_id", "pr_gene_symbol"] + (["pr_is_lm"] if landmark_only else [])
    genes = _read_table(gene_info_path, required, "gene_info").drop_duplicates("pr_gene_id")
    genes = genes.set_index("pr_gene_id", drop=False)
    if landmark_only:
        genes = genes[pd.to_numeric(genes["pr_is_lm"], errors="coerce") == 1]
    genes = genes[genes.index.isin(row_ids)]
    if genes.empty:
        raise ValueError(f"gene_info {gene_info_path}: no {'landmark ' if landmark_only else ''}pr_gene_id is a row "
                         f"ID of the GCTX (row IDs e.g. {list(row_ids[:3])})")
    return genes.reindex(row_ids[row_ids.isin(genes.index)])


def load_lincs_level5(gctx_path, sig_info_path, compound_info_path, gene_info_path, *,
                      cell_lines: str | Sequence[str] | None = None, pert_type: str | Sequence[str] = "trt_cp",
                      max_signatures: int | None = None, seed: int = 0, landmark_only: bool = True) -> AnnData:
    """LINCS Level-5 signatures of the chosen perturbation types and cell lines, as a dose-contract AnnData.

    ``pert_type``: one type or several (default compounds, ``trt_cp``; add ``ctl_vehicle`` for the DMSO controls).
    ``cell_lines``: ``cell_id`` values (default all). ``max_signatures``: keep a uniform random sample of that many
    (``seed``), in file order. Signatures of sig_info missing from the GCTX are skipped and counted. Genes: the
    landmarks (``pr_is_lm == 1``; all of gene_info with ``landmark_only=False``) mapped to Ensembl IDs as
    :func:`gc_lib.inputs.gct.l1000_to_contract` does (Entrez through org.Hs.eg.db, else the symbol).

    Sets: ``obs`` (index ``sig_id``): ``drug`` (pert_iname; ``"control"`` for ``ctl_*``), ``pert_id``, ``dose``
    (µM, 0 for controls, NaN when not recorded), ``cell_line``, ``time_h``, ``smiles`` (NaN when the compound table
    has none), ``species``, the other sig_info columns; ``var`` as :func:`~gc_lib.inputs.gct.l1000_to_contract`
    sets it; ``X`` (float32 moderated z-scores); ``uns["gc_lib"]``: ``value_kind``, ``source``, ``gene_mapping``,
    ``signatures`` (counts: selected, not_in_gctx, sampled, missing_smiles, missing_dose; where dose/time came
    from). Raises ``ValueError`` naming the table and column at fault, or the value that cannot be parsed.
    """
    sig_info = _read_table(sig_info_path, SIG_INFO_COLUMNS, "sig_info")
    pert_types = [pert_type] if isinstance(pert_type, str) else list(pert_type)
    signatures = _select_signatures(sig_info, cell_lines, pert_types)
    row_ids, col_ids = gctx_ids(gctx_path)
    in_gctx = signatures["sig_id"].isin(col_ids).to_numpy()
    if not in_gctx.any():
        raise ValueError(f"{gctx_path}: none of the {len(signatures)} selected sig_ids is a column of the GCTX "
                         f"(e.g. {list(signatures['sig_id'][:3])})")
    selected = signatures[in_gctx]
    if max_signatures is not None and len(selected) > max_signatures:
        keep = np.sort(np.random.default_rng(seed).choice(len(selected), size=max_signatures, replace=False))
        selected = selected.iloc[keep]
    obs, parsed = _signature_obs(selected, _compound_smiles(compound_info_path))
    genes = _genes(gene_info_path, row_ids, landmark_only)
    raw = read_gctx(gctx_path, cids=obs.index, rids=genes.index)
    raw.obs = obs.join(raw.obs[[c for c in raw.obs.columns if c not in obs.columns]])
    raw.var = genes.join(raw.var[[c for c in raw.var.columns if c not in genes.columns]])
    source = f"LINCS Level 5 ({Path(gctx_path).name})"
    adata, report = l1000_to_contract(raw, source=source)
    treated = (adata.obs["drug"] != CONTROL).to_numpy()
    no_smiles = treated & adata.obs["smiles"].isna().to_numpy()
    adata.uns["gc_lib"] = {"value_kind": LINCS_VALUE_KIND, "source": source, "gene_mapping": report, "signatures": {
        "selected": int(len(signatures)), "not_in_gctx": int((~in_gctx).sum()), "sampled": int(adata.n_obs),
        "missing_smiles": int(no_smiles.sum()),
        "missing_smiles_drugs": sorted(adata.obs.loc[no_smiles, "drug"].astype(str).unique()), **parsed}}
    return adata
