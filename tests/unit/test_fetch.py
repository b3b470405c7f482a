"""The fetcher, end to end through the real `pip download` code path, but against a local index.

A tiny wheel built in the test stands in for a registry package, so no network is needed: the same
command runs with ``--no-index --find-links <folder>``.
"""
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from gc_lib.inputs.extract import extract_member, extract_nested, nested_dest
from gc_lib.inputs.fetch import Archive, FetchError, download_archive, sha256_file, sha256_tree

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


# --------------------------------------------------------------------------------------------
# A file inside a zip inside the archive (the Baron data ship as came/sample_data.zip in came's wheel)
# --------------------------------------------------------------------------------------------

INNER = b"cells\tgenes\n3\t2\n"


def _sha(data: bytes) -> str:
    return __import__("hashlib").sha256(data).hexdigest()


def _inner_zip(files: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.fixture()
def nested(tmp_path):
    """A wheel-like zip holding ``toypkg/sample.zip``, which holds ``data.tsv`` (and ``other.csv``)."""
    inner_zip = _inner_zip({"data.tsv": INNER, "other.csv": b"a,b\n"})
    wheel = tmp_path / "toypkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("toypkg/__init__.py", "")
        zf.writestr("toypkg/sample.zip", inner_zip)
    raw = tmp_path / "raw" / wheel.name
    kwargs = dict(member="toypkg/sample.zip", member_sha256=_sha(inner_zip), zip_dest=raw / "toypkg/sample.zip",
                  inner="data.tsv", sha256=_sha(INNER))
    return wheel, kwargs


def test_nested_member_is_extracted_verified_and_cached(nested, tmp_path):
    wheel, kwargs = nested
    got = extract_nested(wheel, "wheel", **kwargs)
    assert got == kwargs["zip_dest"].parent / "sample" / "data.tsv" == nested_dest(kwargs["zip_dest"], "data.tsv")
    assert got.read_bytes() == INNER and kwargs["zip_dest"].is_file()
    # idempotent: the verified file is returned without reading the archive (here: gone) or the zip
    wheel.unlink()
    kwargs["zip_dest"].unlink()
    assert extract_nested(wheel, "wheel", **kwargs) == got and got.read_bytes() == INNER
    assert not list(got.parent.glob(".*tmp*"))


def test_nested_inner_zip_checksum_mismatch_is_named(nested):
    wheel, kwargs = nested
    with pytest.raises(FetchError, match=r"checksum mismatch for toypkg/sample\.zip"):
        extract_nested(wheel, "wheel", **{**kwargs, "member_sha256": "2" * 64})
    assert not kwargs["zip_dest"].exists() and not nested_dest(kwargs["zip_dest"], "data.tsv").exists()


def test_nested_file_checksum_mismatch_is_named_and_writes_nothing(nested):
    wheel, kwargs = nested
    with pytest.raises(FetchError, match=r"checksum mismatch for data\.tsv in sample\.zip.*toypkg/sample\.zip inside"):
        extract_nested(wheel, "wheel", **{**kwargs, "sha256": "3" * 64})
    dest = nested_dest(kwargs["zip_dest"], "data.tsv")
    assert not dest.exists() and not list(dest.parent.glob(".*tmp*"))


def test_nested_missing_zip_or_file_is_named(nested):
    wheel, kwargs = nested
    with pytest.raises(FetchError, match=r"absent\.tsv is not in sample\.zip"):
        extract_nested(wheel, "wheel", **{**kwargs, "inner": "absent.tsv"})
    with pytest.raises(FetchError, match=r"toypkg/absent\.zip is not in toypkg-1\.0"):
        extract_nested(wheel, "wheel", **{**kwargs, "member": "toypkg/absent.zip",
                                          "zip_dest": kwargs["zip_dest"].with_name("absent.zip")})


def test_nested_member_that_is_not_a_zip(nested):
    wheel, kwargs = nested
    with pytest.raises(FetchError, match="is not a zip file"):
        extract_nested(wheel, "wheel", **{**kwargs, "member": "toypkg/__init__.py", "member_sha256": _sha(b""),
                                          "zip_dest": kwargs["zip_dest"].with_name("__init__.py")})


def test_cached_nested_file_that_differs_is_an_error(nested):
    wheel, kwargs = nested
    dest = extract_nested(wheel, "wheel", **kwargs)
    dest.write_bytes(b"edited by hand")
    with pytest.raises(FetchError, match="does not match the registry"):
        extract_nested(wheel, "wheel", **kwargs)


def test_registry_fetch_of_a_nested_source(nested, tmp_path, monkeypatch):
    """sources.fetch: archive → zip → file, at Source.local_path; a Source needs both hashes of a nested file."""
    from gc_lib.core import paths
    from gc_lib.inputs import sources

    wheel, kwargs = nested
    archive = Archive("wheel", "toypkg", "1.0", wheel.name, sha256_file(wheel), "MIT")
    source = sources.Source("toy_nested", archive, kwargs["member"], kwargs["sha256"], "a toy",
                            inner="data.tsv", member_sha256=kwargs["member_sha256"])
    monkeypatch.setitem(sources.SOURCES, "toy_nested", source)
    monkeypatch.setattr(paths, "RAW_DIR", tmp_path / "raw")
    monkeypatch.setattr(paths, "ARCHIVE_DIR", wheel.parent)  # the archive is "cached": no pip call
    got = sources.fetch("toy_nested")
    assert got == source.local_path == tmp_path / "raw" / wheel.name / "toypkg" / "sample" / "data.tsv"
    assert got.read_bytes() == INNER
    with pytest.raises(ValueError, match="go together"):
        sources.Source("bad", archive, "toypkg/sample.zip", kwargs["sha256"], "a toy", inner="data.tsv")


def test_registered_baron_sources_are_nested_in_the_came_wheel():
    from gc_lib.inputs import sources

    human, mouse = sources.SOURCES["baron_human"], sources.SOURCES["baron_mouse"]
    assert human.archive is mouse.archive and human.archive.licence == "MIT"
    assert human.member == mouse.member == "came/sample_data.zip" and human.member_sha256 == mouse.member_sha256
    assert (human.inner, mouse.inner) == ("raw-Baron_human.h5ad", "raw-Baron_mouse.h5ad")
    assert human.local_path.parent == mouse.local_path.parent == human.member_path.with_name("sample_data")


# --------------------------------------------------------------------------------------------
# Web files and the offline mirror (GC_LIB_MIRROR)
# --------------------------------------------------------------------------------------------

WEB = b"#1.3\n1\t1\t0\t0\nid\tw1\ng1\t1.5\n"


@pytest.fixture()
def web(tmp_path, monkeypatch):
    """A web-file source and a stand-in downloader that records its calls (no network in any test)."""
    from gc_lib.core import paths
    from gc_lib.inputs import fetch, sources

    archive = Archive("url", "toyproject", "abc123", "toy.gct", _sha(WEB), "BSD-3-Clause",
                      url="https://example.invalid/toy.gct")
    source = sources.Source("toy_web", archive, "", archive.sha256, "a toy web file")
    monkeypatch.setitem(sources.SOURCES, "toy_web", source)
    monkeypatch.setattr(paths, "RAW_DIR", tmp_path / "raw")
    monkeypatch.delenv(fetch.MIRROR_ENV, raising=False)
    calls = []

    def fake_download(url, dest, **_):
        calls.append(url)
        Path(dest).write_bytes(WEB)
    monkeypatch.setattr(fetch, "download_url", fake_download)
    return source, calls


def _mirror(tmp_path, monkeypatch, payload=WEB, name="toy.gct"):
    from gc_lib.inputs import fetch

    folder = tmp_path / "mirror"
    (folder / "sub" / "deeper").mkdir(parents=True)
    (folder / "sub" / "deeper" / name).write_bytes(payload)
    monkeypatch.setenv(fetch.MIRROR_ENV, str(folder))
    return folder


def test_mirror_copy_is_found_by_name_verified_and_cached_without_the_web(web, tmp_path, monkeypatch):
    from gc_lib.inputs import sources

    source, calls = web
    _mirror(tmp_path, monkeypatch)
    got = sources.fetch("toy_web")
    assert got == source.local_path == tmp_path / "raw" / "web" / "toy.gct" and got.read_bytes() == WEB
    assert calls == [] and not list(got.parent.glob(".*tmp*"))
    # later runs need neither mirror nor web: the verified cache is used
    monkeypatch.setenv("GC_LIB_MIRROR", str(tmp_path / "mirror" / "sub"))  # still a folder, file moved away
    (tmp_path / "mirror" / "sub" / "deeper" / "toy.gct").unlink()
    assert sources.fetch("toy_web") == got and calls == []


def test_corrupted_mirror_copy_raises_naming_both_files_and_caches_nothing(web, tmp_path, monkeypatch):
    from gc_lib.inputs import sources

    source, calls = web
    folder = _mirror(tmp_path, monkeypatch, payload=b"not the registered bytes")
    with pytest.raises(FetchError) as info:
        sources.fetch("toy_web")
    message = str(info.value)
    assert str(folder / "sub" / "deeper" / "toy.gct") in message and "toy.gct" in message
    assert _sha(b"not the registered bytes") in message and source.sha256 in message
    assert not source.local_path.exists() and calls == []
    assert not (source.local_path.parent.exists() and list(source.local_path.parent.iterdir()))


def test_without_the_mirror_or_the_file_in_it_the_web_is_used(web, tmp_path, monkeypatch):
    from gc_lib.inputs import fetch, sources

    source, calls = web
    # the variable unset: the mirror is never consulted (a copy in the would-be folder is ignored)
    _mirror(tmp_path, monkeypatch, payload=b"would fail if read")
    monkeypatch.delenv(fetch.MIRROR_ENV)
    assert sources.fetch("toy_web").read_bytes() == WEB and calls == [source.archive.url]
    source.local_path.unlink()
    # the mirror set, but without this file: the web again
    empty = tmp_path / "empty-mirror"
    empty.mkdir()
    monkeypatch.setenv(fetch.MIRROR_ENV, str(empty))
    assert sources.fetch("toy_web").read_bytes() == WEB and len(calls) == 2
    # an empty value means no mirror; a value that is no folder is named
    monkeypatch.setenv(fetch.MIRROR_ENV, "")
    assert fetch.mirror_dir() is None
    monkeypatch.setenv(fetch.MIRROR_ENV, str(tmp_path / "absent"))
    with pytest.raises(FetchError, match="is not a folder"):
        fetch.mirror_dir()


def test_web_download_with_a_wrong_checksum_is_discarded(web, monkeypatch):
    from gc_lib.inputs import fetch, sources

    source, calls = web
    monkeypatch.setattr(fetch, "download_url", lambda url, dest, **_: Path(dest).write_bytes(b"tampered"))
    with pytest.raises(FetchError, match=r"checksum mismatch for toy\.gct from https://example\.invalid"):
        sources.fetch("toy_web")
    assert not source.local_path.exists() and not list(source.local_path.parent.glob(".*tmp*"))


def test_mirror_serves_package_archives_too(tmp_path, index, monkeypatch):
    """A wheel in the mirror is used without calling pip (here: no index at all would make pip fail)."""
    wheel, _ = index
    _mirror(tmp_path, monkeypatch, payload=wheel.read_bytes(), name=wheel.name)
    got = download_archive(archive_for(wheel), tmp_path / "cache", index_args=["--no-index"])
    assert got == tmp_path / "cache" / wheel.name and sha256_file(got) == sha256_file(wheel)


def test_web_sources_are_declared_consistently():
    from gc_lib.inputs import sources

    plate = sources.SOURCES["l1000_a375_plate"]
    assert plate.archive.kind == "url" and plate.archive.licence == "BSD-3-Clause" and plate.member == ""
    assert plate.archive.url == ("https://raw.githubusercontent.com/cmap/cmapPy/d1652c3223e49e68e3a71634909342b4a6dbf361"
                                 "/cmapPy/pandasGEXpress/tests/functional_tests/test_l1000.gct")
    assert plate.sha256 == "efd7682a473e84f3bd76e79d83f99dcf35744fb0557322564468e80bf8d15a95"
    assert plate.local_path.parts[-2:] == ("web", "test_l1000.gct")
    table = sources.registry_table().set_index("source")
    assert table.loc["l1000_a375_plate", "client"] == "web" and table.loc["pbmc68k_reduced", "client"] == "pip"
    with pytest.raises(ValueError, match="url is given exactly"):
        Archive("url", "p", "1", "f.txt", "0" * 64, "MIT")
    with pytest.raises(ValueError, match="web file is the file itself"):
        sources.Source("bad", plate.archive, "some/member", plate.sha256, "bad")


def test_download_url_names_an_unreachable_url(tmp_path):
    from gc_lib.inputs.fetch import download_url

    # a closed port on this machine's loopback: refused at once, no network involved
    with pytest.raises(FetchError, match=r"http://127\.0\.0\.1:9/toy\.gct: the web is unreachable"):
        download_url("http://127.0.0.1:9/toy.gct", tmp_path / "toy.gct", timeout=2)


def test_a_stopped_digest_reads_no_further(tmp_path, monkeypatch):
    import hashlib
    import threading

    from gc_lib.inputs.fetch import DigestStopped, file_digest

    path = tmp_path / "big.bin"
    path.write_bytes(b"x" * 10_000)
    assert sha256_file(path, chunk=1_000, stop=threading.Event()) == hashlib.sha256(b"x" * 10_000).hexdigest()
    stop, fed = threading.Event(), []

    class Digest:
        def update(self, block):
            fed.append(len(block))
            if len(fed) == 3:
                stop.set()

        def hexdigest(self):
            return "never"

    with pytest.raises(DigestStopped, match="big.bin"):
        file_digest(path, Digest(), chunk=1_000, stop=stop)
    assert fed == [1_000] * 3
    store = tmp_path / "store.zarr"
    store.mkdir()
    (store / "a").write_bytes(b"1")
    with pytest.raises(DigestStopped):
        sha256_tree(store, stop=stop)
