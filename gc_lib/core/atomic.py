"""Atomic writes: a file or directory appears under its final name complete, or not at all.

Everything the project writes goes through here, so an interrupted run never leaves a partial
Parquet table, JSON manifest or extracted archive that a later run would mistake for finished work.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


@contextmanager
def atomic_path(dest: str | os.PathLike, *, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on success rename it onto ``dest``, on error delete it.

    The temporary lives in the same directory so the final ``os.replace`` is a same-filesystem rename.
    For directories an existing ``dest`` is replaced whole.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    else:
        # keep the real suffix last: writers such as anndata and matplotlib choose the format from it
        fd, name = tempfile.mkstemp(prefix=f".{dest.stem}.", suffix=f".tmp{dest.suffix}", dir=dest.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        if is_dir:
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(tmp, dest)
        else:
            os.replace(tmp, dest)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def write_json(obj: Any, dest: str | os.PathLike) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(dest) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    return Path(dest)


def write_parquet(df, dest: str | os.PathLike) -> Path:
    """Write a pandas DataFrame to Parquet (pyarrow, no index unless it is named), atomically."""
    with atomic_path(dest) as tmp:
        df.to_parquet(tmp, engine="pyarrow", index=df.index.name is not None)
    return Path(dest)


def write_h5ad(adata, dest: str | os.PathLike) -> Path:
    """Write an AnnData to ``.h5ad`` (gzip-free, fast to reread), atomically."""
    with atomic_path(dest) as tmp:
        adata.write_h5ad(tmp)
    return Path(dest)


def save_figure(fig, dest_png: str | os.PathLike, *, dpi: int = 150) -> Path:
    """Save a matplotlib figure as PNG and PDF side by side (atomically); return the PNG path."""
    dest_png = Path(dest_png)
    for dest in (dest_png, dest_png.with_suffix(".pdf")):
        with atomic_path(dest) as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=dest.suffix.lstrip("."))
    return dest_png
