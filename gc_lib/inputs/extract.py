"""Extract one verified member — a file or a directory — from a downloaded archive (wheel, sdist, ``.deb``) or from a
zip found inside one, into the project's cache (:mod:`gc_lib.inputs.fetch` downloads and verifies the archive).

Each member is checked against the registry's sha256 (:func:`gc_lib.inputs.fetch.sha256_tree`; a plain file hash for
files), written atomically, and reused when a cached copy verifies; a cached copy that does not verify is an error,
never silently overwritten. ``.deb`` files are read without dpkg (their ``ar`` container, then ``data.tar.*``).
Nested members (a zip inside an archive, e.g. ``came/sample_data.zip``): :func:`extract_nested` extracts and
verifies the zip like any member, then the wanted file from it, laid out as ``unzip`` would (:func:`nested_dest`).
"""
from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
import zipfile
from functools import partial
from pathlib import Path
from typing import IO, Callable, Iterator

from ..core.atomic import atomic_path
from .fetch import ArchiveKind, ContainerKind, FetchError, sha256_tree


def _deb_data_tar(deb_path: Path) -> tarfile.TarFile:
    """Open the ``data.tar.*`` inside a Debian package (an ``ar`` archive), without dpkg."""
    with open(deb_path, "rb") as handle:
        if handle.read(8) != b"!<arch>\n":
            raise FetchError(f"{deb_path} is not a Debian package (no ar header)")
        while header := handle.read(60):
            name = header[:16].decode().strip().rstrip("/")
            size = int(header[48:58].decode().strip())
            payload = handle.read(size)
            if size % 2:
                handle.read(1)
            if name.startswith("data.tar"):
                if name.endswith(".zst"):
                    raise FetchError(f"{deb_path}: zstd-compressed data.tar is not supported")
                return tarfile.open(fileobj=io.BytesIO(payload), mode="r:*")
    raise FetchError(f"{deb_path} has no data.tar member")


def _files(archive_path: Path, kind: ContainerKind) -> Iterator[tuple[str, Callable[[], IO[bytes]]]]:
    """Every regular file of an archive: its name (no leading ``./``) and a function that opens it for reading."""
    if kind in ("wheel", "zip"):
        with zipfile.ZipFile(archive_path) as zf:
            for info in zf.infolist():
                if not info.is_dir():
                    yield info.filename, partial(zf.open, info)
        return
    tar = tarfile.open(archive_path, mode="r:*") if kind == "sdist" else _deb_data_tar(archive_path)
    with tar:
        for info in tar.getmembers():
            if info.isfile():
                yield info.name.removeprefix("./"), partial(tar.extractfile, info)


def _extract(archive_path: Path, kind: ContainerKind, member: str, out: Path) -> tuple[int, bool]:
    """Extract ``member`` (a file, or every file under a directory prefix) into ``out``.

    Returns the number of files written and whether ``member`` was a single file.
    """
    prefix = member.rstrip("/") + "/"
    count, single_file = 0, False
    for name, open_file in _files(archive_path, kind):
        if not (name == member or name.startswith(prefix)):
            continue
        target = out / (name[len(prefix):] if name != member else Path(member).name)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open_file() as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
        count, single_file = count + 1, single_file or name == member
    return count, single_file


def _cached_and_verified(dest: Path, sha256: str) -> bool:
    """True if ``dest`` exists and matches ``sha256``; False if it does not exist; FetchError if it differs."""
    if not dest.exists():
        return False
    actual = sha256_tree(dest)
    if actual != sha256:
        raise FetchError(f"{dest} does not match the registry (sha256 {actual}, expected {sha256}); "
                         f"data/raw is never modified by hand: delete it and fetch again.")
    return True


def extract_member(archive_path: str | os.PathLike, kind: ContainerKind, member: str, dest: str | os.PathLike,
                   sha256: str) -> Path:
    """Extract one file or directory from an archive to ``dest``, verify it, and return ``dest``.

    ``kind`` is the archive's kind, or ``"zip"`` for a plain zip file. ``sha256`` is checked with
    :func:`sha256_tree` (a plain file hash for files). A cached ``dest`` that verifies is returned untouched;
    one that does not is an error, never silently overwritten.
    """
    dest = Path(dest)
    if _cached_and_verified(dest, sha256):
        return dest
    with tempfile.TemporaryDirectory(dir=dest.parent if dest.parent.exists() else None) as tmp:
        staging = Path(tmp) / "member"
        staging.mkdir()
        count, is_file = _extract(Path(archive_path), kind, member, staging)
        if count == 0:
            raise FetchError(f"{member} is not in {Path(archive_path).name}")
        source = staging / Path(member).name if is_file else staging
        actual = sha256_tree(source)
        if actual != sha256:
            raise FetchError(f"checksum mismatch for {member} in {Path(archive_path).name}: "
                             f"sha256 {actual}, registry says {sha256}")
        with atomic_path(dest, is_dir=not is_file) as tmp_dest:
            if is_file:
                shutil.copyfile(source, tmp_dest)
            else:
                shutil.rmtree(tmp_dest)
                shutil.copytree(source, tmp_dest)
    return dest


def nested_dest(zip_dest: str | os.PathLike, inner: str) -> Path:
    """Where :func:`extract_nested` puts ``inner``: beside the zip, in a folder named like it without ``.zip``."""
    zip_dest = Path(zip_dest)
    return zip_dest.with_name(zip_dest.name.removesuffix(".zip")) / inner


def extract_nested(archive_path: str | os.PathLike, kind: ArchiveKind, *, member: str, member_sha256: str,
                   zip_dest: str | os.PathLike, inner: str, sha256: str) -> Path:
    """Extract the file ``inner`` from the zip ``member`` of an archive; verify both; return the file's path.

    The zip is extracted to ``zip_dest`` and checked against ``member_sha256`` (:func:`extract_member`), then
    ``inner`` is extracted from it to :func:`nested_dest` and checked against ``sha256``. Both steps are atomic
    and idempotent: a verified cached file is returned without reading the zip (or the archive) again. Raises
    :class:`FetchError` naming the zip or the file that is missing or does not match.
    """
    dest = nested_dest(zip_dest, inner)
    if _cached_and_verified(dest, sha256):
        return dest
    zip_path = extract_member(archive_path, kind, member, zip_dest, member_sha256)
    if not zipfile.is_zipfile(zip_path):
        raise FetchError(f"{member} in {Path(archive_path).name} is not a zip file; cannot read {inner} from it")
    try:
        return extract_member(zip_path, "zip", inner, dest, sha256)
    except FetchError as exc:
        raise FetchError(f"{exc} (the zip {member} inside {Path(archive_path).name})") from None
