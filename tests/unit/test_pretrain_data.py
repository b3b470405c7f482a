"""Pretraining data on tiny local shards: rank/worker split, held-out split, shuffling, bucketing, masking, resume."""
import itertools
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from gc_lib.corpus.tokenizer import SHARD_SCHEMA
from gc_lib.model.data_loader import PretrainDataset, PretrainLoader, held_out_loader, is_held_out, padding_fraction
from gc_lib.model.masking import IGNORE_INDEX, CellBatch, MaskingCollator, masking_generator, pad_cells

VOCAB = 60
SPECIALS = 4


def make_cells(n_cells, seed, datasets=("alpha", "beta", "gamma"), max_len=40, skew=False):
    """Cells with distinct (dataset, row); ids in the gene range; values descending like the tokenizer's."""
    rng = np.random.default_rng(seed)
    cells = []
    for i in range(n_cells):
        n = int(rng.choice([3, max_len])) if skew else int(rng.integers(1, max_len + 1))
        ids = rng.choice(np.arange(SPECIALS, VOCAB), size=min(n, VOCAB - SPECIALS), replace=False).astype(np.int32)
        values = np.sort(rng.random(len(ids)).astype(np.float32))[::-1] + 0.5
        cells.append({"input_ids": ids, "values": values, "species": i % 2,
                      "dataset": datasets[i % len(datasets)], "row": i})
    return cells


def write_shards(directory, cells, per_shard, row_group_size):
    """Shard files (several row groups each) in the corpus's schema; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, start in enumerate(range(0, len(cells), per_shard)):
        part = cells[start:start + per_shard]
        table = pa.table({"input_ids": [c["input_ids"].tolist() for c in part],
                          "values": [c["values"].tolist() for c in part],
                          "length": [len(c["input_ids"]) for c in part],
                          "species": [c["species"] for c in part],
                          "dataset": [c["dataset"] for c in part],
                          "row": [c["row"] for c in part]}, schema=SHARD_SCHEMA)
        paths.append(directory / f"shard-{k:03d}.parquet")
        pq.write_table(table, paths[-1], row_group_size=row_group_size)
    return paths


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    cells = make_cells(300, seed=1)
    return cells, write_shards(tmp_path_factory.mktemp("corpus"), cells, per_shard=70, row_group_size=25)


def identity(batch):
    return batch


def keys(batch: CellBatch):
    return [(c["dataset"], c["row"]) for c in batch.cells]


def ordered_keys(dataset, epoch=0):
    dataset.set_epoch(epoch)
    return [k for batch in dataset for k in keys(batch)]


@pytest.mark.parametrize("sizing", [{"batch_size": 7}, {"batch_size": None, "max_tokens": 120}])
def test_every_train_cell_once_per_epoch_across_ranks_and_workers(corpus, sizing):
    cells, paths = corpus
    seen, counts = Counter(), []
    for rank in range(2):
        dataset = PretrainDataset(paths, eval_fraction=0.2, max_genes=40, rank=rank, world_size=2, seed=3, **sizing)
        loader = PretrainLoader(dataset, identity, num_workers=2)
        expected = len(loader)  # of the current epoch (with max_tokens the count varies between epochs)
        batches = list(loader)
        counts.append(len(batches))
        assert len(batches) == expected
        seen.update(k for b in batches for k in keys(b))
        if "max_tokens" in sizing:
            assert all(len(b.cells) * max(len(c["input_ids"]) for c in b.cells) <= 120 for b in batches)
    train = {(c["dataset"], c["row"]) for c in cells if not is_held_out(c["dataset"], [c["row"]], 0.2)[0]}
    assert counts[0] == counts[1]
    assert set(seen) == train and max(seen.values()) == 1


def test_split_is_disjoint_complete_and_independent_of_shard_layout(corpus, tmp_path):
    cells, paths = corpus
    options = {"eval_fraction": 0.3, "max_genes": 40, "shuffle": False}
    train = ordered_keys(PretrainDataset(paths, split="train", **options))
    held = ordered_keys(PretrainDataset(paths, split="eval", **options))
    assert not set(train) & set(held)
    assert sorted(train + held) == sorted((c["dataset"], c["row"]) for c in cells)
    assert 0.2 < len(held) / len(cells) < 0.4
    relaid = write_shards(tmp_path, cells[::-1], per_shard=130, row_group_size=40)
    assert set(ordered_keys(PretrainDataset(relaid, split="eval", **options))) == set(held)


def test_epochs_shuffle_differently_and_replay_identically(corpus):
    _, paths = corpus
    dataset = PretrainDataset(paths, batch_size=8, eval_fraction=0.0, max_genes=40, seed=5)
    first, again, second = ordered_keys(dataset, 0), ordered_keys(dataset, 0), ordered_keys(dataset, 1)
    assert first == again
    assert first != second and sorted(first) == sorted(second)
    other_seed = PretrainDataset(paths, batch_size=8, eval_fraction=0.0, max_genes=40, seed=6)
    assert ordered_keys(other_seed, 0) != first


def test_truncation_keeps_top_tokens_and_padding_is_right(corpus):
    cells, paths = corpus
    by_key = {(c["dataset"], c["row"]): c for c in cells}
    dataset = PretrainDataset(paths, batch_size=9, eval_fraction=0.0, max_genes=12, seed=0)
    collator = MaskingCollator(VOCAB, seed=0)
    for batch in dataset:
        out = collator(batch)
        originals = [by_key[k] for k in keys(batch)]
        lengths = torch.tensor([min(len(c["input_ids"]), 12) for c in originals])
        assert out["input_ids"].shape[1] == lengths.max()
        assert torch.equal(out["attention_mask"], torch.arange(int(lengths.max()))[None] < lengths[:, None])
        restored = torch.where(out["masked"], out["labels"], out["input_ids"])
        for i, cell in enumerate(originals):
            n = int(lengths[i])
            assert restored[i, :n].tolist() == cell["input_ids"][:n].tolist()  # the top-ranked tokens, in order
            assert torch.equal(out["value_labels"][i, :n], torch.from_numpy(cell["values"][:n].copy()))
            assert (restored[i, n:] == 0).all() and (out["value_labels"][i, n:] == 0).all()
        assert torch.equal(out["species"], torch.tensor([c["species"] for c in originals]))


def test_masking_proportions_and_invariants():
    cells = make_cells(3000, seed=2, max_len=56) + make_cells(50, seed=3, max_len=1)
    collator = MaskingCollator(VOCAB, seed=0)
    out = collator.collate(cells, masking_generator(0, 0, 0))
    real, masked, ids, labels = out["attention_mask"], out["masked"], out["input_ids"], out["labels"]
    original = out["value_labels"]
    assert not (masked & ~real).any()                            # pads never masked
    assert masked.any(1).all()                                   # at least one per cell, even one-token cells
    assert abs(masked.sum().item() / real.sum().item() - 0.15) < 0.01
    assert (labels[~masked] == IGNORE_INDEX).all() and (labels[masked] >= SPECIALS).all()
    assert (out["values"][masked] == 0).all() and (out["values"][real & ~masked] == original[real & ~masked]).all()
    picked, truth = ids[masked], labels[masked]
    as_mask = (picked == 1).float().mean().item()
    unchanged = (picked == truth).float().mean().item()
    replaced = picked[(picked != 1) & (picked != truth)]
    assert abs(as_mask - 0.8) < 0.02 and abs(unchanged - 0.1) < 0.02
    assert abs(len(replaced) / len(picked) - 0.1) < 0.02
    assert replaced.min() >= SPECIALS and replaced.max() < VOCAB  # specials never used as replacements
    assert set(replaced.tolist()) == set(range(SPECIALS, VOCAB))  # uniform over all genes (all drawn)
    padded = pad_cells(cells)
    assert (ids[~real] == 0).all() and torch.equal(ids[~masked], padded["input_ids"][~masked])
    assert torch.equal(labels[masked], padded["input_ids"][masked])
    again = collator.collate(cells, masking_generator(0, 0, 0))
    assert all(torch.equal(again[k], out[k]) for k in out)
    assert not torch.equal(collator.collate(cells, masking_generator(0, 0, 1))["masked"], masked)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_continues_with_identical_batches(corpus, num_workers):
    _, paths = corpus

    def loader():
        dataset = PretrainDataset(paths, batch_size=6, eval_fraction=0.1, max_genes=30, buffer_batches=4, seed=11)
        return PretrainLoader(dataset, MaskingCollator(VOCAB, seed=11), num_workers=num_workers)

    reference = loader()
    per_epoch = len(reference)
    expected = list(reference) + list(reference)  # two full epochs
    for stop in (5, per_epoch + 3):
        first = loader()
        taken, it = [], itertools.chain(first, first)  # the second pass is epoch 1
        while len(taken) < stop:
            taken.append(next(it))
        state = first.state_dict()
        resumed = loader()
        resumed.load_state_dict(state)
        rest = list(resumed)
        rest += list(resumed) if state["epoch"] == 0 else []
        assert len(taken) + len(rest) == len(expected)
        for got, want in zip(taken + rest, expected):
            assert all(torch.equal(got[k], want[k]) for k in want)
    with pytest.raises(ValueError, match="num_workers"):
        PretrainLoader(first.dataset, first.collate_fn, num_workers=num_workers + 1).load_state_dict(state)


def test_bucketing_reduces_padding_on_skewed_lengths(tmp_path):
    paths = write_shards(tmp_path, make_cells(400, seed=4, skew=True), per_shard=100, row_group_size=50)
    fractions = {bucket: padding_fraction(PretrainDataset(paths, batch_size=8, eval_fraction=0.0, max_genes=40,
                                                          bucket=bucket).batch_lengths()) for bucket in (False, True)}
    assert fractions[True] < 0.05 < 0.3 < fractions[False]


def test_held_out_loader_is_fixed_across_passes(corpus):
    _, paths = corpus
    loader = held_out_loader(paths, VOCAB, eval_fraction=0.3, batch_size=8, max_genes=40)
    first, second = list(loader), list(loader)
    assert len(first) == len(second) > 0
    assert all(torch.equal(a[k], b[k]) for a, b in zip(first, second) for k in a)
    order = ordered_keys(loader.dataset)
    assert ordered_keys(loader.dataset) == order
