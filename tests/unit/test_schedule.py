"""The corpus builder's task runner: results come back indexed, and only a few are held at a time."""
import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from gc_lib.corpus import _schedule as schedule
from gc_lib.corpus._passes import sparse_histogram


class Result:
    """A weak-referenceable stand-in for a task's histogram."""
    def __init__(self, index):
        self.index = index


@pytest.mark.parametrize("kind", ["this process", "threads"])
def test_results_are_indexed_and_few_are_alive_at_once(kind):
    alive = weakref.WeakSet()

    def task(i):
        result = Result(i)
        alive.add(result)
        return result

    n_workers, most, seen = 2, 0, []
    with schedule.executor(1) if kind == "this process" else ThreadPoolExecutor(n_workers) as pool:
        for index, result in schedule._results(pool, [(task, i) for i in range(30)], "test", False, n_workers):
            assert result.index == index
            seen.append(index)
            del result
            most = max(most, len(alive))
    assert sorted(seen) == list(range(30))
    assert most <= 2 * n_workers + 1  # not one per task: a corpus of many datasets folds its histograms as they come


def test_one_process_runs_whole_tasks_in_its_threads_and_pipelines_only_a_lone_task():
    assert [schedule.tasks_at_once(1, 1), schedule.tasks_at_once(1, 4), schedule.tasks_at_once(3, 4)] == [1, 4, 3]
    assert schedule.task_threads(1, 4, n_tasks=10) == 1  # each thread its own shard
    assert schedule.task_threads(1, 4, n_tasks=2) == 2   # two shards share the four threads
    assert schedule.task_threads(1, 4, n_tasks=1) == 4   # one shard pipelines its pieces over all of them
    assert schedule.task_threads(1, 2, n_tasks=0) == 2
    assert schedule.task_threads(2, 4, n_tasks=10) == 4  # in worker processes each task pipelines over its threads
    with schedule.executor(1, 3) as pool:
        assert isinstance(pool, ThreadPoolExecutor) and pool._max_workers == 3
    with schedule.executor(1) as pool:
        assert not isinstance(pool, ThreadPoolExecutor)


def test_the_first_error_is_raised():
    def task(i):
        if i == 3:
            raise ValueError("task 3 failed")
        return i

    with pytest.raises(ValueError, match="task 3 failed"):
        list(schedule._results(schedule.executor(1), [(task, i) for i in range(6)], "test", False, 1))


def test_row_runs_and_groups():
    runs = schedule._row_runs(np.array([2, 3, 4, 9, 11, 12]))
    assert [(a, b) for a, b, _ in runs] == [(2, 5), (9, 10), (11, 13)]
    assert all(keep.all() and keep.size == b - a for a, b, keep in runs)
    assert schedule._row_runs(np.array([], dtype=np.int64)) == []
    assert schedule._groups(list(range(7)), 3) == [[0, 1, 2], [3, 4], [5, 6]]
    assert schedule._groups(list(range(2)), 0) == [[0, 1]] and schedule._groups([], 4) == []


def test_a_sparse_histogram_adds_back_to_the_dense_one():
    rng = np.random.default_rng(0)
    hist = (rng.random((512, 300)) < 0.1) * rng.integers(1, 2**32 - 1, (512, 300), dtype=np.uint32)
    positions, counts = sparse_histogram(hist.astype(np.uint32))
    assert positions.dtype == np.int32 and counts.dtype == np.uint32 and counts.all()
    total = np.full((512, 300), 7, dtype=np.int64)
    total.reshape(-1)[positions] += counts
    assert np.array_equal(total, hist.astype(np.int64) + 7)


def test_source_digests_hash_beside_the_block_and_stop_when_it_fails(tmp_path, monkeypatch):
    import hashlib
    import threading
    import time

    from gc_lib.inputs.fetch import DigestStopped

    paths = [tmp_path / "a.h5ad", tmp_path / "b.h5ad"]
    for i, p in enumerate(paths):
        p.write_bytes(bytes([i]) * 1000)
    with schedule.source_digests([str(p) for p in paths]) as digests:
        pass
    assert digests() == {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}

    seen = {}

    def slow_hash(path, stop: threading.Event):  # a hash that would take 20 s unless stopped
        seen["stopped"] = stop.wait(20)
        raise DigestStopped(path)

    monkeypatch.setattr(schedule, "sha256_tree", slow_hash)
    began = time.perf_counter()
    with pytest.raises(ValueError, match="a bad count"):
        with schedule.source_digests([str(paths[0])]):
            raise ValueError("a bad count")
    assert seen == {"stopped": True} and time.perf_counter() - began < 10
