"""GCT 1.3 files (the Connectivity Map's text format for L1000 data) read into AnnData, and the L1000 plate of the
registry with its genes brought to human Ensembl IDs.

**Format.** Line 1 ``#1.3``; line 2 ``n_rows n_cols n_row_meta n_col_meta``; line 3 the header: ``id``, the
row-metadata field names, the column IDs; then ``n_col_meta`` rows of column metadata (field name,
``n_row_meta`` filler cells, one value per column); then ``n_rows`` data rows (row ID, its row metadata, one value
per column). All fields are tab-separated. Rows are genes (probes) and columns samples (wells), so
:func:`read_gct` transposes: the AnnData is wells × genes. ``-666`` (CMap's "not recorded"), empty cells and the
usual NA spellings are missing values. cmapPy, the format's reference reader, would install cleanly, but it is not
a dependency: the format is small enough to read here, with errors that name the line at fault.

**Values are not counts.** L1000 Level 3 is log2 expression (quantile-normalised), so the plate never passes
through the counts contract (:mod:`gc_lib.inputs.contract`) and is never tokenised as counts: ``X`` holds the
log2 values and ``uns["gc_lib"]["value_kind"]`` says so. Only the gene side of the contract applies
(:func:`l1000_to_contract`): ``var_names`` are human Ensembl IDs, ``var["gene_symbol"]`` the symbols,
``obs["species"] == "human"``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData

from .genes import gene_table, map_symbols_to_ensembl
from .orgdb import entrez_to_ensembl
from .sources import fetch

#: Cells read as missing values (metadata and matrix): CMap's -666, empty cells, common NA spellings.
MISSING = frozenset({"", "-666", "-666.0", "-666.00", "-666.000", "na", "NA", "NaN", "nan", "N/A", "#N/A",
                     "NULL", "null", "None"})
#: The registry entry of the L1000 plate (gc_lib.inputs.sources).
L1000_SOURCE = "l1000_a375_plate"
#: What X holds after :func:`l1000_to_contract`.
L1000_VALUE_KIND = "log2 expression (L1000 Level 3, quantile-normalised): not counts"


def _dimensions(line: str, path: Path) -> tuple[int, int, int, int]:
    """``n_rows, n_cols, n_row_meta, n_col_meta`` from line 2, or a ValueError naming what is wrong."""
    fields = line.split()
    try:
        dims = tuple(int(f) for f in fields)
    except ValueError:
        dims = ()
    if len(dims) != 4 or min(dims) < 0:
        raise ValueError(f"{path}: line 2 must hold 4 counts (n_rows n_cols n_row_meta n_col_meta), got {line!r}")
    return dims  # type: ignore[return-value]


def _split_lines(path: Path) -> tuple[tuple[int, int, int, int], list[list[str]]]:
    """The dimensions and the tab-split rows from line 3 on, every row checked for its field count."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or lines[0].strip() != "#1.3":
        first = lines[0] if lines else ""
        raise ValueError(f"{path}: not a GCT 1.3 file: line 1 is {first[:40]!r}, expected '#1.3'")
    n_rows, n_cols, n_row_meta, n_col_meta = dims = _dimensions(lines[1] if len(lines) > 1 else "", path)
    rows = [line.split("\t") for line in lines[2:] if line.strip()]
    if not rows:
        raise ValueError(f"{path}: truncated: no header row after line 2")
    width = 1 + n_row_meta + n_cols
    if len(rows[0]) != width:
        raise ValueError(f"{path}: the header (line 3) has {len(rows[0])} fields, expected 1 + n_row_meta + n_cols = "
                         f"{width} (line 2: {n_rows} rows, {n_cols} columns, {n_row_meta} row and {n_col_meta} "
                         f"column metadata fields)")
    if len(rows) != 1 + n_col_meta + n_rows:
        raise ValueError(f"{path}: {len(rows) - 1} rows after the header, expected n_col_meta + n_rows = "
                         f"{n_col_meta} + {n_rows} = {n_col_meta + n_rows}")
    for number, row in enumerate(rows, start=3):
        if len(row) != width:
            raise ValueError(f"{path}: line {number} has {len(row)} fields, expected {width}")
    return dims, rows


def _typed(values) -> pd.Series | pd.Categorical:
    """One metadata field: numbers where every present value is one (int when all present and whole), else a
    categorical; missing values as NaN."""
    text = pd.Series(values, dtype=object)
    missing = text.isin(MISSING).to_numpy()
    numbers = pd.to_numeric(text[~missing], errors="coerce")
    if numbers.notna().all():
        out = np.full(len(text), np.nan)
        out[~missing] = numbers.to_numpy(dtype=float)
        if not missing.any() and np.all(out == np.round(out)):
            return pd.Series(out.astype(np.int64))
        return pd.Series(out)
    return pd.Categorical(text.where(~pd.Series(missing)))


def metadata_table(names: list[str], columns: list[list[str]], index: list[str], what: str, path) -> pd.DataFrame:
    """A CMap metadata table (GCT or GCTX, :mod:`gc_lib.inputs.lincs`): one typed column per field, from text values.

    ``columns[k]`` holds the values of field ``names[k]`` as strings, one per ID in ``index``. A field whose present
    values are all numbers becomes numeric (int64 when all present and whole), any other a categorical; the
    :data:`MISSING` spellings (CMap's ``-666``, empty cells, NA) become NaN. Indexed by ``index`` as strings.
    Raises ``ValueError`` naming ``path`` and ``what`` ("row"/"column") when IDs or field names are duplicated.
    """
    for kind, labels in ((f"{what} IDs", index), (f"{what} metadata fields", names)):
        duplicated = pd.Index(labels)[pd.Index(labels).duplicated()]
        if len(duplicated):
            raise ValueError(f"{path}: duplicated {kind}: {list(duplicated[:5])}")
    table = pd.DataFrame({name: _typed(col) for name, col in zip(names, columns)})
    table.index = pd.Index(index, dtype=str)
    return table


def _matrix(block: np.ndarray, first_line: int, col_ids: list[str], path: Path) -> np.ndarray:
    """The data block as float32, missing cells as NaN; a ValueError names the first cell that is not a number."""
    block = np.where(np.isin(block, list(MISSING)), "nan", block)
    try:
        return block.astype(np.float32)
    except ValueError:
        for i, row in enumerate(block):
            for j, value in enumerate(row):
                try:
                    float(value)
                except ValueError:
                    raise ValueError(f"{path}: line {first_line + i}: value {str(value)!r} of column {col_ids[j]!r} is "
                                     f"not a number") from None
        raise


def read_gct(path) -> AnnData:
    """Read a GCT 1.3 file as an AnnData of samples × rows (wells × genes for L1000).

    Sets: ``X`` (float32, the matrix transposed; missing as NaN), ``obs`` (the column metadata, one column per
    field), ``var`` (the row metadata), ``uns["gc_lib"]`` (``source``: the file name, ``format``). Metadata fields
    whose present values are all numbers (doses, times, Entrez IDs) are numbers, the others categoricals; ``-666``
    and empty cells are missing. Raises ``ValueError`` naming the line when the file is not well-formed GCT 1.3.
    """
    path = Path(path)
    (n_rows, n_cols, n_row_meta, n_col_meta), rows = _split_lines(path)
    header = rows[0]
    row_names, col_ids = header[1:1 + n_row_meta], header[1 + n_row_meta:]
    col_rows, data_rows = rows[1:1 + n_col_meta], rows[1 + n_col_meta:]
    obs = metadata_table([r[0] for r in col_rows], [r[1 + n_row_meta:] for r in col_rows], col_ids, "column", path)
    data = np.array(data_rows, dtype=str).reshape(n_rows, 1 + n_row_meta + n_cols)
    var = metadata_table(row_names, [list(data[:, 1 + k]) for k in range(n_row_meta)], list(data[:, 0]), "row", path)
    values = _matrix(data[:, 1 + n_row_meta:], 4 + n_col_meta, col_ids, path)
    return AnnData(X=np.ascontiguousarray(values.T), obs=obs, var=var,
                   uns={"gc_lib": {"source": path.name, "format": "GCT 1.3"}})


def _as_ids(values: pd.Series) -> pd.Series:
    """IDs as strings ("" where missing); whole numbers read as floats lose their ``.0``."""
    def one(value) -> str:
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return ""
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            return str(int(value))
        return str(value).strip()
    return pd.Series([one(v) for v in values], dtype=object)


def _ids_by_entrez(entrez: pd.Series, orgdb_path) -> pd.Series:
    """Ensembl ID of each Entrez ID ("" where none): only HGNC genes count (not alternate-locus IDs), and an
    Entrez gene with several of them is left to the symbol."""
    pairs = entrez_to_ensembl(orgdb_path)
    pairs = pairs[pairs["entrez"].isin(set(entrez)) & pairs["ensembl_id"].isin(set(gene_table("human")["ensembl_id"]))]
    n_ids = pairs.groupby("entrez")["ensembl_id"].transform("nunique")
    unique = pairs[n_ids == 1].drop_duplicates("entrez").set_index("entrez")["ensembl_id"]
    return entrez.map(unique).fillna("")


def l1000_to_contract(adata: AnnData, *, entrez_column: str = "pr_gene_id", symbol_column: str = "pr_gene_symbol",
                      source: str | None = None, orgdb_path=None) -> tuple[AnnData, dict]:
    """The genes of an L1000 AnnData (:func:`read_gct`) as human Ensembl IDs; ``adata`` is not modified.

    Each gene is mapped by its Entrez ID (``var[entrez_column]``, through org.Hs.eg.db, :func:`_ids_by_entrez`)
    where it has one that resolves, else by its symbol (``var[symbol_column]``,
    :func:`gc_lib.inputs.genes.map_symbols_to_ensembl`). Unmapped genes are dropped; of genes mapping to one
    Ensembl ID the first (file order) is kept. The values are not counts (see the module docstring): ``X`` is
    copied as it is and never checked as counts.

    Sets: ``var_names`` (Ensembl IDs), ``var["gene_symbol"]`` (the original symbol), ``var["probe_id"]`` (the
    original row ID), ``var["id_source"]`` (``entrez``/``symbol``), the other row metadata; ``obs["species"]``;
    ``uns["gc_lib"]`` (``value_kind``, ``source``, ``gene_mapping``: the report). Returns the AnnData and the report
    ``{source, genes, by_entrez, by_symbol, mapped, unmapped, duplicates, dropped, symbol_mapping}`` (``unmapped``
    and ``duplicates`` list the dropped symbols). Raises ``ValueError`` when a column is missing or nothing maps.
    """
    for column in (entrez_column, symbol_column):
        if column not in adata.var.columns:
            raise ValueError(f"var has no column {column!r} (columns: {list(adata.var.columns)}); pass "
                             f"entrez_column= / symbol_column=")
    symbols = _as_ids(adata.var[symbol_column])
    ids = _ids_by_entrez(_as_ids(adata.var[entrez_column]), orgdb_path)
    id_source = np.where(ids != "", "entrez", "")
    need = np.flatnonzero(ids.to_numpy() == "")
    by_symbol, symbol_counts = map_symbols_to_ensembl(symbols.iloc[need].to_numpy(), "human")
    ids.iloc[need] = by_symbol.fillna("").to_numpy()
    id_source[need[by_symbol.notna().to_numpy()]] = "symbol"
    mapped = (ids != "").to_numpy()
    duplicate = mapped & ids.duplicated(keep="first").to_numpy()
    keep = mapped & ~duplicate
    if not keep.any():
        raise ValueError(f"{source or 'input'}: no gene maps to a human Ensembl ID (e.g. {list(symbols[:3])})")
    var = adata.var.iloc[np.flatnonzero(keep)].drop(columns=[symbol_column])
    var.insert(0, "gene_symbol", symbols[keep].to_numpy())
    var.insert(1, "probe_id", np.asarray(adata.var_names[keep], dtype=str))
    var.insert(2, "id_source", pd.Categorical(id_source[keep]))
    var.index = pd.Index(ids[keep].to_numpy(dtype=str))
    report = {"source": source or adata.uns.get("gc_lib", {}).get("source", "AnnData"), "genes": int(adata.n_vars),
              "by_entrez": int((id_source == "entrez").sum()), "by_symbol": int((id_source == "symbol").sum()),
              "mapped": int(keep.sum()), "unmapped": symbols[~mapped].tolist(),
              "duplicates": symbols[duplicate].tolist(), "dropped": int((~keep).sum()), "symbol_mapping": symbol_counts}
    obs = adata.obs.copy()
    obs["species"] = pd.Categorical(["human"] * adata.n_obs)
    X = adata.X[:, np.flatnonzero(keep)]
    X = np.asarray(X.toarray() if hasattr(X, "toarray") else X, dtype=np.float32)
    uns = {"gc_lib": {"value_kind": L1000_VALUE_KIND, "source": report["source"], "gene_mapping": report}}
    return AnnData(X=X, obs=obs, var=var, uns=uns), report


def load_l1000_plate() -> tuple[AnnData, dict]:
    """The registry's L1000 plate (A375, 24 h, 377 wells × 978 landmark genes), genes as Ensembl IDs.

    Fetched and verified like every source (:func:`gc_lib.inputs.sources.fetch`; offline from the mirror named
    by ``GC_LIB_MIRROR``), read with :func:`read_gct`, mapped with :func:`l1000_to_contract`. ``X`` holds log2
    expression, not counts. Returns the AnnData and the gene-mapping report.
    """
    path = fetch(L1000_SOURCE)
    return l1000_to_contract(read_gct(path), source=f"{L1000_SOURCE} ({path.name})")
