"""Streaming pretraining batches from the corpus shards, split over ranks and workers, exactly resumable (DESIGN.md §2).

Work is planned from a small index, and token data is read only for the batches a process yields:

* **Index** (:class:`ShardIndex`): one entry per Parquet row group (the unit of reading), and per cell of the
  split its row in the group and its token count after truncation, read from the ``dataset``, ``row`` and
  ``length`` columns only (8 bytes a cell; the token lists are never read to build it).
* **Split**: a cell is held out when a hash of ``(dataset, row)`` falls below ``eval_fraction``
  (:func:`is_held_out`), so the split is the same whatever the shard layout.
* **Epoch layout**: the row groups are shuffled (seeded by ``(seed, epoch)``) and their cells laid end to end;
  that sequence is cut into ``world_size × num_workers`` contiguous *streams* whose sizes differ by at most one,
  so every cell is seen exactly once per epoch and each process reads only its own row groups.
* **Batches**: a stream is read in windows of ``buffer_batches`` batches' worth of cells (the shuffle buffer);
  a window is permuted, sorted by length (``bucket=True``, to cut padding), cut into batches of ``batch_size``
  cells or of at most ``max_tokens`` padded tokens, and its batch order is shuffled.
* **Equal batch counts**: DDP hangs when ranks disagree on the number of steps, so every stream yields the same
  number of batches: the largest natural count over streams. A stream with fewer splits its largest batches in
  two until it has as many (smaller batches, no cell dropped or repeated). Every process can compute every
  stream's count from the index (by formula with ``batch_size``, by planning with ``max_tokens``).
* **Resume**: a batch's content is fixed by ``(seed, epoch, world_size, num_workers)`` and its masking by
  ``(seed, epoch, batch index)`` (:mod:`gc_lib.model.masking`), so :class:`PretrainLoader` restarts mid-epoch by
  skipping the batches already consumed (without reading their shards) and rotating which worker serves which
  stream, so the DataLoader's round-robin over workers continues exactly where it stopped.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ..corpus.shards import Shard
from .masking import CellBatch, MaskingCollator

_U64 = np.uint64


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = x + _U64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> _U64(27))) * _U64(0x94D049BB133111EB)
        return z ^ (z >> _U64(31))


def split_score(dataset: str, rows) -> np.ndarray:
    """A uniform number in [0, 1) per ``(dataset, row)``, identical on every platform and Python run."""
    key = _U64(int.from_bytes(hashlib.blake2b(dataset.encode(), digest_size=8).digest(), "little"))
    h = _splitmix64(_splitmix64(np.asarray(rows, dtype=np.int64).astype(_U64)) ^ key)
    return (h >> _U64(11)).astype(np.float64) * 2.0**-53


def is_held_out(dataset: str, rows, eval_fraction: float) -> np.ndarray:
    """Which cells of ``dataset`` (by row) belong to the held-out split."""
    return split_score(dataset, rows) < eval_fraction


def _as_paths(shards) -> list[str]:
    if isinstance(shards, (str, os.PathLike)) and Path(shards).is_dir():
        from ..corpus.builder import shard_paths
        return [str(p) for p in shard_paths(shards)]
    return [str(p) for p in shards]


@dataclass(frozen=True)
class ShardIndex:
    """Where each cell of one split lies (row group, row) and how many tokens it keeps after truncation."""
    paths: tuple[str, ...]
    units: np.ndarray     # (n_units, 2) int64: shard number, row group
    offsets: np.ndarray   # (n_units + 1,) int64: unit u owns cells offsets[u]:offsets[u + 1] of pos and length
    pos: np.ndarray       # int32: the cell's row within its row group
    length: np.ndarray    # int32: min(length, max_genes)

    @classmethod
    def build(cls, shards, *, split: str, eval_fraction: float, max_genes: int,
              train_fraction: float = 1.0) -> ShardIndex:
        """``train_fraction`` < 1 keeps that share of the training cells, chosen by the same hash: subsets of
        increasing fraction are nested (each holds every smaller one), as scaling curves need."""
        if split not in ("train", "eval"):
            raise ValueError(f"split must be 'train' or 'eval'; got {split!r}")
        if not 0 < train_fraction <= 1:
            raise ValueError(f"train_fraction must be in (0, 1]; got {train_fraction}")
        train_top = eval_fraction + train_fraction * (1 - eval_fraction)
        paths = _as_paths(shards)
        units, counts, pos, length = [], [], [], []
        for s, path in enumerate(paths):
            file = Shard(path)
            for g in range(file.num_groups):
                table = file.read_group(g, columns=["dataset", "row", "length"])
                datasets = table.column("dataset").combine_chunks().dictionary_encode()
                names, codes = datasets.dictionary.to_pylist(), datasets.indices.to_numpy()
                rows = table.column("row").to_numpy()
                score = np.zeros(len(rows))
                for k, name in enumerate(names):
                    score[codes == k] = split_score(name, rows[codes == k])
                held = score < eval_fraction
                keep = np.flatnonzero(held if split == "eval" else ~held & (score < train_top))
                units.append((s, g))
                counts.append(len(keep))
                pos.append(keep.astype(np.int32))
                length.append(np.minimum(table.column("length").to_numpy()[keep], max_genes).astype(np.int32))
        return cls(tuple(paths), np.array(units, dtype=np.int64).reshape(-1, 2),
                   np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]),
                   np.concatenate(pos or [np.zeros(0, np.int32)]), np.concatenate(length or [np.zeros(0, np.int32)]))

    def __len__(self) -> int:
        return len(self.pos)


def _cut(lengths: np.ndarray, batch_size: int | None, max_tokens: int | None) -> list[np.ndarray]:
    """Cut positions 0..n-1 (in order) into batches of ``batch_size`` cells or ≤ ``max_tokens`` padded tokens."""
    n = len(lengths)
    if batch_size is not None:
        return [np.arange(a, min(a + batch_size, n)) for a in range(0, n, batch_size)]
    batches, start = [], 0
    while start < n:
        padded = np.maximum.accumulate(lengths[start:]) * np.arange(1, n - start + 1)
        size = max(1, int(np.searchsorted(padded > max_tokens, True)))  # padded cost is non-decreasing
        batches.append(np.arange(start, start + size))
        start += size
    return batches


def _equalise(windows: list[list[np.ndarray]], n_batches: int) -> None:
    """Split a stream's largest batches in two, in place, until it has ``n_batches`` (DDP needs equal counts)."""
    while sum(map(len, windows)) < n_batches:
        w, b = max(((w, b) for w, bs in enumerate(windows) for b in range(len(bs))),
                   key=lambda wb: len(windows[wb[0]][wb[1]]))
        batch = windows[w][b]
        if len(batch) < 2:
            raise ValueError("too few cells per stream to give every rank and worker the same number of batches; "
                             "use fewer ranks or workers, or smaller batches")
        windows[w][b:b + 1] = [batch[:len(batch) // 2], batch[len(batch) // 2:]]


@dataclass(frozen=True)
class _Layout:
    """One epoch's cell sequence: unit order, where each unit starts in it, and the cells' lengths in order."""
    order: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray

    def stream_bounds(self, n_streams: int) -> np.ndarray:
        return np.linspace(0, len(self.lengths), n_streams + 1).round().astype(np.int64)


class PretrainDataset(IterableDataset):
    """Batches (:class:`~gc_lib.model.masking.CellBatch`) of one split of the corpus, for this rank and
    DataLoader worker.

    Use with ``DataLoader(dataset, batch_size=None, collate_fn=MaskingCollator(...))``, or through
    :class:`PretrainLoader`, which also resumes. ``shards``: a corpus directory or a list of shard files.
    Exactly one of ``batch_size`` and ``max_tokens`` (padded tokens per batch, species token not counted).
    """

    def __init__(self, shards, *, split: str = "train", eval_fraction: float = 0.01, max_genes: int = 2048,
                 batch_size: int | None = 32, max_tokens: int | None = None, bucket: bool = True,
                 buffer_batches: int = 64, shuffle: bool = True, seed: int = 0,
                 rank: int | None = None, world_size: int | None = None, train_fraction: float = 1.0):
        if (batch_size is None) == (max_tokens is None):
            raise ValueError("give exactly one of batch_size and max_tokens")
        if max_tokens is not None and max_tokens < max_genes:
            raise ValueError(f"max_tokens ({max_tokens}) must hold one cell of max_genes ({max_genes}) tokens")
        distributed = dist.is_available() and dist.is_initialized()
        self.world_size = world_size if world_size is not None else (dist.get_world_size() if distributed else 1)
        self.rank = rank if rank is not None else (dist.get_rank() if distributed else 0)
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} outside world_size {self.world_size}")
        self.index = ShardIndex.build(shards, split=split, eval_fraction=eval_fraction, max_genes=max_genes,
                                      train_fraction=train_fraction)
        self.split, self.max_genes, self.batch_size, self.max_tokens = split, max_genes, batch_size, max_tokens
        self.bucket, self.shuffle, self.seed = bucket, shuffle, seed
        cells_per_batch = batch_size if batch_size is not None else max(1, max_tokens // max_genes)
        self.window = buffer_batches * cells_per_batch  # a multiple of batch_size: only a stream's last window is short
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's shuffle (and masking seeds); call before creating the DataLoader iterator."""
        self.epoch = epoch

    def skip_batches(self, n: int) -> None:
        """Start the next iteration after the first ``n`` batches this rank yields in the epoch (for resuming)."""
        self.skip = n

    # --- planning (from the index only) ---

    def _layout(self) -> _Layout:
        n_units = len(self.index.units)
        order = np.random.default_rng([self.seed, self.epoch]).permutation(n_units) if self.shuffle else \
            np.arange(n_units)
        counts = np.diff(self.index.offsets)[order]
        lengths = [self.index.length[self.index.offsets[u]:self.index.offsets[u + 1]] for u in order]
        return _Layout(order, np.concatenate([[0], np.cumsum(counts)]),
                       np.concatenate(lengths or [np.zeros(0, np.int32)]))

    def _natural_plan(self, layout: _Layout, n_streams: int, stream: int) -> list[tuple[int, list[np.ndarray]]]:
        """A stream's windows as (first cell, batches of cell positions relative to it), before equalising."""
        a, b = layout.stream_bounds(n_streams)[stream:stream + 2]
        rng = np.random.default_rng([self.seed, self.epoch, n_streams, stream]) if self.shuffle else None
        windows = []
        for start in range(a, b, self.window):
            lengths = layout.lengths[start:min(start + self.window, b)]
            cells = rng.permutation(len(lengths)) if rng is not None else np.arange(len(lengths))
            if self.bucket:
                cells = cells[np.argsort(lengths[cells], kind="stable")]
            batches = [cells[i] for i in _cut(lengths[cells], self.batch_size, self.max_tokens)]
            if rng is not None:
                batches = [batches[i] for i in rng.permutation(len(batches))]
            windows.append((int(start), batches))
        return windows

    def _batches_per_stream(self, layout: _Layout, n_streams: int) -> int:
        sizes = np.diff(layout.stream_bounds(n_streams))
        if len(sizes) == 0 or sizes.min() == 0:
            raise ValueError(f"{len(layout.lengths)} {self.split} cells cannot feed {n_streams} ranks × workers")
        if self.batch_size is not None:
            return int(-(-sizes.max() // self.batch_size))
        return max(sum(len(bs) for _, bs in self._natural_plan(layout, n_streams, s)) for s in range(n_streams))

    def plan(self, num_workers: int = 0, stream: int | None = None) -> list[tuple[int, list[np.ndarray]]]:
        """The epoch's windows of one stream (default: this rank's first), equalised; positions in the epoch layout."""
        layout, n_streams = self._layout(), self.world_size * max(1, num_workers)
        stream = self.rank * max(1, num_workers) if stream is None else stream
        windows = self._natural_plan(layout, n_streams, stream)
        batches = [bs for _, bs in windows]
        _equalise(batches, self._batches_per_stream(layout, n_streams))
        return [(start, bs) for (start, _), bs in zip(windows, batches)]

    def batches_per_rank(self, num_workers: int = 0) -> int:
        """Batches every rank yields per epoch (the same on all ranks)."""
        return self._batches_per_stream(self._layout(), self.world_size * max(1, num_workers)) * max(1, num_workers)

    def batch_lengths(self, num_workers: int = 0) -> list[np.ndarray]:
        """The token counts of the cells of each batch of this epoch, over all streams (no token data read)."""
        layout, n_streams = self._layout(), self.world_size * max(1, num_workers)
        return [layout.lengths[start + b] for s in range(n_streams)
                for start, bs in self.plan(num_workers, s) for b in bs]

    # --- reading ---

    def __iter__(self) -> Iterator[CellBatch]:
        info = get_worker_info()
        n_workers, worker = (1, 0) if info is None else (info.num_workers, info.id)
        # after skipping k batches the DataLoader restarts its round-robin at worker 0, so worker w takes over the
        # stream whose turn it now is, (w + k) mod n, from its ((k + w) div n)-th batch
        slot, first = (worker + self.skip) % n_workers, (self.skip + worker) // n_workers
        stream, n_streams = self.rank * n_workers + slot, self.world_size * n_workers
        layout, epoch = self._layout(), self.epoch
        k = 0
        for start, batches in self.plan(n_workers, stream):
            if k + len(batches) <= first:
                k += len(batches)
                continue
            cells = self._read(layout, start, start + 1 + max(int(b.max()) for b in batches))
            for batch in batches:
                if k >= first:
                    yield CellBatch([cells[i] for i in batch], epoch, k * n_streams + stream)
                k += 1

    def _read(self, layout: _Layout, start: int, stop: int) -> list[dict]:
        """The cells at positions start..stop-1 of the epoch layout, truncated to ``max_genes`` tokens."""
        cells = []
        first, last = np.searchsorted(layout.starts, [start, stop], side="right") - 1
        for i in range(first, min(last + 1, len(layout.order))):
            u = layout.order[i]
            lo, hi = max(start, layout.starts[i]) - layout.starts[i], min(stop, layout.starts[i + 1]) - layout.starts[i]
            if hi > lo:
                cells += self._read_unit(u, self.index.pos[self.index.offsets[u] + lo:self.index.offsets[u] + hi])
        return cells

    def _read_unit(self, unit: int, rows: np.ndarray) -> list[dict]:
        shard, group = self.index.units[unit]
        table = Shard(self.index.paths[shard]).read_group(
            int(group), columns=["input_ids", "values", "species", "dataset", "row"])
        ids, values = (table.column(c).combine_chunks() for c in ("input_ids", "values"))
        id_off, val_off = ids.offsets.to_numpy(), values.offsets.to_numpy()
        flat_ids, flat_values = ids.values.to_numpy(), values.values.to_numpy()
        species, source = table.column("species").to_numpy(), table.column("row").to_numpy()
        names = table.column("dataset").take(rows).to_pylist()
        cells = []
        for r, name in zip(rows.tolist(), names):
            n = min(int(id_off[r + 1] - id_off[r]), self.max_genes)
            cells.append({"input_ids": flat_ids[id_off[r]:id_off[r] + n],
                          "values": flat_values[val_off[r]:val_off[r] + n],
                          "species": int(species[r]), "dataset": name, "row": int(source[r])})
        return cells


def padding_fraction(batch_lengths: Sequence[np.ndarray]) -> float:
    """Share of the padded (B × max length) token slots that are padding, over the given batches."""
    real = sum(int(b.sum()) for b in batch_lengths)
    slots = sum(len(b) * int(b.max()) for b in batch_lengths if len(b))
    return 1.0 - real / slots if slots else 0.0


class PretrainLoader:
    """A DataLoader over a :class:`PretrainDataset` that counts epochs and batches, and resumes exactly.

    Iterating runs the rest of the current epoch, then moves to the next. ``state_dict()`` records the epoch and
    the batches handed out in it; a new loader with the same dataset settings, seed, world size and
    ``num_workers`` that loads it yields exactly the batches (content and masks) an uninterrupted run would have.
    ``fixed_epoch=True`` replays epoch 0 from its start on every iteration (held-out evaluation).
    """

    def __init__(self, dataset: PretrainDataset, collate_fn: Callable, *, num_workers: int = 0,
                 pin_memory: bool = False, fixed_epoch: bool = False):
        self.dataset, self.collate_fn, self.num_workers = dataset, collate_fn, num_workers
        self.pin_memory, self.fixed_epoch = pin_memory, fixed_epoch
        self.epoch, self.consumed = 0, 0

    def __len__(self) -> int:
        self.dataset.set_epoch(self.epoch)
        return self.dataset.batches_per_rank(self.num_workers)

    def __iter__(self) -> Iterator:
        if self.fixed_epoch:
            self.epoch, self.consumed = 0, 0
        elif self.consumed >= len(self):  # the previous iteration stopped right after the epoch's last batch
            self.epoch, self.consumed = self.epoch + 1, 0
        self.dataset.set_epoch(self.epoch)
        self.dataset.skip_batches(self.consumed)
        # an own generator: a DataLoader otherwise draws its base seed from the global RNG, which would shift the
        # dropout stream whenever an iterator is created (at resume, at every epoch) and break exact resume
        generator = torch.Generator().manual_seed(self.dataset.seed * 1_000_003 + self.epoch)
        loader = DataLoader(self.dataset, batch_size=None, num_workers=self.num_workers, generator=generator,
                            collate_fn=self.collate_fn, pin_memory=self.pin_memory)
        for batch in loader:
            self.consumed += 1
            yield batch
        if not self.fixed_epoch:
            self.epoch, self.consumed = self.epoch + 1, 0

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "batches_consumed": self.consumed, "seed": self.dataset.seed,
                "world_size": self.dataset.world_size, "num_workers": self.num_workers}

    def load_state_dict(self, state: dict) -> None:
        for key, mine in (("seed", self.dataset.seed), ("world_size", self.dataset.world_size),
                          ("num_workers", self.num_workers)):
            if state[key] != mine:
                raise ValueError(f"cannot resume exactly: state has {key}={state[key]}, this loader {mine}")
        self.epoch, self.consumed = int(state["epoch"]), int(state["batches_consumed"])


def held_out_loader(shards, vocab_size: int, *, eval_fraction: float = 0.01, seed: int = 0, num_workers: int = 0,
                    **dataset_options) -> PretrainLoader:
    """The held-out split in a fixed order with fixed masks: every pass yields identical batches."""
    dataset = PretrainDataset(shards, split="eval", eval_fraction=eval_fraction, shuffle=False, seed=seed,
                              **dataset_options)
    return PretrainLoader(dataset, MaskingCollator(vocab_size, seed=seed), num_workers=num_workers, fixed_epoch=True)

