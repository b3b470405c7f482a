"""Direct reads of HDF5 datasets (gc_lib.corpus._direct_read) and the corpus row reader that uses them: the same
elements as h5py for contiguous and chunked layouts, any range (empty, inside a chunk, across chunks), from threads;
h5py kept for what does not qualify (compression, shuffle, big-endian, unallocated chunks, a user block)."""
import os
from concurrent.futures import ThreadPoolExecutor

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from gc_lib.corpus._count_store import row_reader
from gc_lib.corpus._direct_read import direct_reader

N = 1_000


@pytest.fixture
def store(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as f:
        f["contiguous"] = rng.random(N).astype(np.float32)
        f.create_dataset("chunked", data=rng.integers(0, 10**6, N).astype(np.int32), chunks=(7,))
        f.create_dataset("chunked64", data=rng.random(N), chunks=(100,))
        f.create_dataset("gzip", data=rng.random(N), chunks=(50,), compression="gzip")
        f.create_dataset("shuffled", data=rng.random(N), chunks=(50,), shuffle=True)
        f["big_endian"] = rng.random(N).astype(">f8")
        partial = f.create_dataset("partial", shape=(N,), dtype=np.float32, chunks=(100,))
        partial[:150] = 1.0  # chunks from 200 on are never written: not allocated
        f.create_dataset("never_written", shape=(N,), dtype=np.float32)
    return path


@pytest.fixture
def opened(store):
    fd = os.open(store, os.O_RDONLY)
    with h5py.File(store, "r") as f:
        yield f, fd
    os.close(fd)


@pytest.mark.parametrize("name", ["contiguous", "chunked", "chunked64"])
def test_any_range_reads_the_same_elements_as_h5py(opened, name):
    f, fd = opened
    read = direct_reader(f[name], fd)
    assert read is not None
    rng = np.random.default_rng(1)
    ranges = [(0, N), (0, 0), (5, 5), (3, 4), (6, 8), (7, 14), (699, 701), (N - 1, N)]
    ranges += [tuple(sorted(rng.integers(0, N + 1, 2))) for _ in range(200)]
    for lo, hi in ranges:
        got = read(lo, hi)
        assert got.dtype == f[name].dtype
        np.testing.assert_array_equal(got, f[name][lo:hi])


def test_threads_read_independently(opened):
    f, fd = opened
    read = direct_reader(f["chunked"], fd)
    ranges = [(a, a + 97) for a in range(0, N - 97, 13)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda r: read(*r), ranges))
    for (lo, hi), got in zip(ranges, results):
        np.testing.assert_array_equal(got, f["chunked"][lo:hi])


@pytest.mark.parametrize("name", ["gzip", "shuffled", "big_endian", "partial", "never_written"])
def test_datasets_whose_bytes_are_not_the_array_keep_h5py(opened, name):
    f, fd = opened
    assert direct_reader(f[name], fd) is None


def test_a_file_with_a_user_block_keeps_h5py(tmp_path):
    path = tmp_path / "ub.h5"
    with h5py.File(path, "w", userblock_size=512) as f:
        f["x"] = np.arange(N, dtype=np.float32)
    fd = os.open(path, os.O_RDONLY)
    try:
        with h5py.File(path, "r") as f:
            assert direct_reader(f["x"], fd) is None
    finally:
        os.close(fd)


def test_a_truncated_file_is_named(tmp_path):
    path = tmp_path / "t.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.arange(100_000, dtype=np.float32)
    with h5py.File(path, "r") as f:
        fd = os.open(path, os.O_RDONLY)
        read = direct_reader(f["x"], fd)
        os.truncate(path, f["x"].id.get_offset() + 1_000)
        with pytest.raises(OSError, match="truncated HDF5 file"):
            read(0, 100_000)
        os.close(fd)


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_row_reader_gives_the_stored_csr_rows(tmp_path, compression):
    """An .h5ad as anndata writes it (chunked sparse arrays: direct reads) and a gzip one (h5py): the same rows."""
    rng = np.random.default_rng(2)
    counts = sp.random(300, 500, density=0.1, format="csr", random_state=3, dtype=np.float32)
    counts.data = rng.integers(1, 50, counts.nnz).astype(np.float32)
    adata = ad.AnnData(counts, obs=pd.DataFrame(index=[f"c{i}" for i in range(300)]))
    path = tmp_path / "x.h5ad"
    adata.write_h5ad(path, compression=compression)
    with row_reader(path) as read:
        for start, stop in [(0, 300), (0, 1), (17, 150), (299, 300), (40, 40)]:
            rows = read(start, stop)
            assert rows.data.dtype == np.float32 and rows.indices.dtype == np.int32
            assert (rows != counts[start:stop]).nnz == 0 and rows.shape == (stop - start, 500)
