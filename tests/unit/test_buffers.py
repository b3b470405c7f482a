"""Arrays reused from piece to piece (gc_lib.corpus._buffers). That reuse never mixes pieces up is tested through
the corpus builder: pieces of 7 cells in 1 and 3 threads give the shards of whole chunks (tests/unit/test_corpus.py)."""
import numpy as np

from gc_lib.corpus._buffers import BufferSets, reusable


def test_an_array_is_reused_while_large_enough_and_of_the_same_type():
    buffers: dict = {}
    first = reusable(buffers, "ids", 10, np.int32)
    assert first.shape == (10,) and first.dtype == np.int32
    smaller = reusable(buffers, "ids", 4, np.int32)
    assert smaller.shape == (4,) and np.shares_memory(smaller, first)
    larger = reusable(buffers, "ids", 11, np.int32)
    assert larger.shape == (11,) and not np.shares_memory(larger, first)
    assert np.shares_memory(reusable(buffers, "ids", 11, np.int32), larger)  # the larger one is kept
    other_type = reusable(buffers, "ids", 3, np.float32)
    assert other_type.dtype == np.float32 and not np.shares_memory(other_type, larger)
    assert not np.shares_memory(reusable(None, "ids", 3, np.int32), reusable(None, "ids", 3, np.int32))


def test_buffer_sets_come_back_from_the_stock():
    stock = BufferSets()
    a, b = stock.take(), stock.take()
    assert a == {} and b == {} and a is not b
    a["x"] = np.zeros(3)
    stock.give(a)
    assert stock.take() is a
    assert stock.take() == {}
