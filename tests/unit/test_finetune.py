"""Fine-tuning: cell and gene classifiers train on a fixture, predictions land where documented, checkpoints
round-trip, species and float values reach the model, freezing and the no-pretraining control do what they say,
and a head-only fit is as good as the linear probe on the same frozen embeddings."""
import json
import logging
import shutil

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
from synthetic import HUMAN, MOUSE, count_cells, two_programmes

import gc_lib
from gc_lib.corpus.tokenizer import Tokenizer
from gc_lib.model.architecture import ModelConfig, build_model, load_model, save_model
from gc_lib.priors.store import PriorTable
from gc_lib.tasks import baselines, finetune
from gc_lib.tasks._classifier import Classifier, ClassifierHead, fresh_encoder_like, load_classifier, save_classifier
from gc_lib.tasks.cell_tokens import CellTokens, collate, length_batches

FAST = dict(epochs=12, batch_size=8, learning_rate=3e-3, head_learning_rate=1e-2, patience=12,
            validation_fraction=0.25)


@pytest.fixture(scope="module")
def cell_run(tiny_checkpoint, tmp_path_factory):
    train = two_programmes(80, HUMAN, "human", 10)
    out = tmp_path_factory.mktemp("cells") / "model"
    return finetune.fit_cell_classifier(train, "label", tiny_checkpoint, out, finetune.FinetuneConfig(**FAST),
                                        progress=False)


def test_cell_classifier_learns_and_writes_predictions_scanpy_style(cell_run):
    assert cell_run.classes == ["A", "B"] and 1 <= cell_run.best_epoch <= FAST["epochs"]
    history = cell_run.history
    assert {"train_loss", "val_loss", "val_accuracy"} <= set(history.columns)
    assert history["val_loss"].min() < history["val_loss"].iloc[0]          # validation improved while training
    test = two_programmes(40, HUMAN, "human", 50)
    finetune.predict_cells(test, cell_run.directory, key_added="pred")
    assert list(test.obs["pred"].cat.categories) == ["A", "B"]
    probabilities = test.obsm["pred_probabilities"]
    assert probabilities.shape == (40, 2) and np.allclose(probabilities.sum(1), 1, atol=1e-5)
    assert (test.obs["pred"].astype(str) == test.obs["label"]).mean() >= 0.9
    assert test.uns["pred"]["classes"] == ["A", "B"]


def test_fine_tuned_checkpoint_round_trips_and_stays_a_checkpoint(cell_run, tiny_checkpoint):
    classifier, record = load_classifier(cell_run.directory)
    assert record["task"] == "cell" and record["best_epoch"] == cell_run.best_epoch
    again, _ = load_classifier(cell_run.directory)
    cells, _ = CellTokens.from_adata(two_programmes(10, HUMAN, "human", 60), Tokenizer.load(tiny_checkpoint), 31)
    batch = collate(cells, np.arange(len(cells)))
    with torch.no_grad():
        torch.testing.assert_close(classifier.eval()(**batch), again.eval()(**batch))
    pretrained = load_model(tiny_checkpoint).state_dict()
    tuned = classifier.encoder.state_dict()
    assert tuned.keys() == pretrained.keys()
    assert any(not torch.equal(tuned[k], pretrained[k]) for k in tuned)     # the encoder was fine-tuned
    embedded = gc_lib.embed(two_programmes(6, HUMAN, "human", 61), cell_run.directory, progress=False, copy=True)
    assert embedded.obsm["X_genecompass"].shape == (6, 16)                 # the directory is a model checkpoint


def test_mouse_cells_get_the_mouse_species_token(cell_run):
    classifier, _ = load_classifier(cell_run.directory)
    mixed = ad.concat([two_programmes(6, HUMAN, "human", 70), two_programmes(4, MOUSE, "mouse", 71)],
                      join="outer", merge="first")
    mixed.obs_names_make_unique()
    cells, _ = CellTokens.from_adata(mixed, Tokenizer.load(cell_run.directory), 31)
    assert cells.species.tolist() == [0] * 6 + [1] * 4
    seen = []
    hook = classifier.encoder.genes.ids.register_forward_hook(
        lambda module, args, out: seen.append(args[0].clone()) if args[0].ndim == 1 else None)
    with torch.no_grad():
        classifier.eval()(**collate(cells, np.arange(10)))
    hook.remove()
    mouse_id, human_id = classifier.encoder.config.first_species_id + 1, classifier.encoder.config.first_species_id
    assert seen[0].tolist() == [human_id] * 6 + [mouse_id] * 4
    finetune.predict_cells(mixed, cell_run.directory, key_added="pred")     # cross-species prediction runs
    assert set(mixed.uns["pred"]["gene_overlap"]) == {"human", "mouse"}


def test_values_stay_floats_through_collation():
    cells = CellTokens([np.array([5, 7, 9])], [np.array([2.75, 0.37, 0.05], dtype=np.float32)], np.array([1]))
    batch = collate(cells, [0])
    assert batch["values"].dtype == torch.float32
    torch.testing.assert_close(batch["values"][0], torch.tensor([2.75, 0.37, 0.05]))
    assert batch["species"].tolist() == [1] and batch["attention_mask"].all()


def test_length_batches_cover_every_cell_once():
    lengths = np.random.default_rng(0).integers(1, 50, 103)
    for shuffle in (False, True):
        batches = length_batches(lengths, 8, shuffle=shuffle, seed=3)
        assert sorted(np.concatenate(batches).tolist()) == list(range(103))
        assert max(len(b) for b in batches) == 8


def test_freezing_keeps_the_frozen_weights(tiny_checkpoint, tmp_path):
    train = two_programmes(40, HUMAN, "human", 20)
    config = dict(FAST, epochs=2, standardise=False, probe_init=False)   # a random head: epoch 1 beats epoch 0
    pretrained = load_model(tiny_checkpoint).state_dict()
    frozen = finetune.fit_cell_classifier(train, "label", tiny_checkpoint, tmp_path / "k1",
                                          finetune.FinetuneConfig(**config, freeze_layers=1), progress=False)
    assert frozen.best_epoch >= 1
    tuned = load_model(frozen.directory).state_dict()
    for key in tuned:
        same = torch.equal(tuned[key], pretrained[key])
        if key.startswith(("genes.", "positions.", "embed_norm.", "blocks.0.")):
            assert same, key
    assert not all(torch.equal(tuned[k], pretrained[k]) for k in tuned if k.startswith("blocks.1."))
    head_only = finetune.fit_cell_classifier(train, "label", tiny_checkpoint, tmp_path / "head",
                                             finetune.FinetuneConfig(**config, head_only=True), progress=False)
    tuned = load_model(head_only.directory).state_dict()
    assert all(torch.equal(tuned[k], pretrained[k]) for k in tuned)


def written(directory) -> tuple[int, int]:
    """Identity of the saved weights: an atomic write gives a new inode, so a refit changes it."""
    info = (directory / "model.safetensors").stat()
    return info.st_ino, info.st_mtime_ns


def test_reuse_only_when_weights_settings_and_data_match(tiny_checkpoint, tmp_path, caplog):
    """Reuse is keyed by content: re-pretrained weights in the same folder, one changed count, other labels or
    other settings each force a refit, and the log line names which."""
    pretrained = tmp_path / "pretrained"
    shutil.copytree(tiny_checkpoint, pretrained)
    train = two_programmes(30, HUMAN, "human", 21)
    config = finetune.FinetuneConfig(**dict(FAST, epochs=1))
    out = tmp_path / "m"

    def fit(data, cfg=config):
        before = written(out) if out.exists() else None
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="gc_lib.tasks.finetune"):
            finetune.fit_cell_classifier(data, "label", pretrained, out, cfg, reuse=True, progress=False)
        return written(out) == before, caplog.text

    assert fit(train) == (False, "")                                       # nothing to reuse yet
    assert fit(train) == (True, "")                                        # identical: reused, silently
    changed = train.copy()
    changed.X = changed.X.copy()
    changed.X.data[0] += 1                                                 # one count of one cell
    reused, text = fit(changed)
    assert not reused and "its data differ" in text
    relabelled = train.copy()
    relabelled.obs["label"] = relabelled.obs["label"].map({"A": "B", "B": "A"})
    reused, text = fit(relabelled)
    assert not reused and "its data differ" in text
    reused, text = fit(relabelled, finetune.FinetuneConfig(**dict(FAST, epochs=1, seed=1)))
    assert not reused and "its settings differ" in text
    reused, _ = fit(relabelled, finetune.FinetuneConfig(**dict(FAST, epochs=1, seed=1)))
    assert reused
    model = load_model(pretrained)                                         # re-pretraining into the same folder
    with torch.no_grad():
        model.blocks[0].out.weight.add_(0.01)
    save_model(model, pretrained)
    reused, text = fit(relabelled, finetune.FinetuneConfig(**dict(FAST, epochs=1, seed=1)))
    assert not reused and "its weights (pretrained model.safetensors changed) differ" in text


def test_from_scratch_keeps_priors_and_drops_learned_weights():
    config = ModelConfig.preset("tiny", 12, d_model=16, n_heads=2, d_ff=32, max_len=16, prior_dims={"grn": 3})
    vectors = np.arange(36, dtype=np.float32).reshape(12, 3)
    model = build_model(config, {"grn": PriorTable("grn", vectors, np.arange(12) % 2 == 0, {})})
    fresh = fresh_encoder_like(model, seed=1)
    assert torch.equal(fresh.genes.prior_grn, model.genes.prior_grn)
    assert torch.equal(fresh.genes.has_grn, model.genes.has_grn)
    assert not torch.equal(fresh.genes.ids.weight, model.genes.ids.weight)


def wide_programmes(n: int, seed: int) -> ad.AnnData:
    """Two classes, each expressing its own 19 genes highly (genes 1–19 vs 20–38) over a weak background: the
    frozen cell tokens of the 2-step fixture model separate them, but only along directions ~1e-4 wide."""
    parts = []
    for i, label in enumerate("AB"):
        rates = np.full(len(HUMAN), 0.3)
        rates[1 + 19 * i: 20 + 19 * i] = 8.0
        parts.append(count_cells(n, HUMAN, "human", seed + i, rates))
        parts[-1].obs["label"] = label
    return ad.concat(parts, merge="same")


def test_head_only_fit_matches_the_linear_probe_on_frozen_embeddings(tiny_checkpoint, tmp_path):
    """A fit that trains only the head learns at least what the linear probe of notebook 05 learns from the
    same model's frozen embeddings (standardised logistic regression, ``baselines.logistic_regression``).

    Margin 0.05 accuracy (40 of 800 test cells): the head sees 85 % of the training cells (15 % are held out for
    early stopping), and on this fixture a probe fitted on 85 % of them scored up to ~0.03 below one fitted on all
    (other data seeds). The fixture's cell states differ between cells by ~2e-4 beside values ~0.8 (the local
    model's by ~6 % of their norm): here the probe scores 0.92 and this fit 0.93, while the head used before (a
    hidden layer on raw states, random start, encoder dropout on) stays at chance (0.50) and a standardised linear
    head from a random start reaches 0.53 — both fail by far."""
    train, test = wide_programmes(400, 80), wide_programmes(400, 90)
    both = ad.concat([train, test], merge="same")
    frozen = gc_lib.embed(both, tiny_checkpoint, gene_embeddings=False, progress=False, copy=True).obsm["X_genecompass"]
    labels = both.obs["label"].astype(str).to_numpy()
    train_at, test_at = np.arange(train.n_obs), train.n_obs + np.arange(test.n_obs)
    probe = (baselines.logistic_regression(frozen, labels, train_at, test_at) == labels[test_at]).mean()
    config = finetune.FinetuneConfig(epochs=3, batch_size=16, head_only=True, pooling="cell")   # what embed reads
    run = finetune.fit_cell_classifier(train, "label", tiny_checkpoint, tmp_path / "head", config, progress=False)
    predicted = finetune.predict_cells(test, run.directory, key_added="pred", copy=True).obs["pred"].astype(str)
    accuracy = (predicted.to_numpy() == labels[test_at]).mean()
    assert probe > 0.8                                                      # the embeddings do separate the classes
    assert accuracy >= probe - 0.05, (accuracy, probe)
    history = run.history.set_index("epoch")
    assert history.loc[run.best_epoch, "val_loss"] <= history.loc[0, "val_loss"]   # epoch 0 is the probe start


def test_standardised_head_round_trips_and_old_heads_still_load(tiny_checkpoint, tmp_path):
    """The head's standardisation is saved with it; a head saved before it existed (hidden layer, no
    ``shift``/``scale``, no ``hidden`` in its record) loads as it was trained: unstandardised."""
    head = ClassifierHead(16, 3)
    head.standardise(torch.randn(50, 16) * 0.01 + 3)
    features = torch.randn(4, 16) * 0.01 + 3
    torch.testing.assert_close(head.eval()(features), head.linear((features - head.shift) / head.scale))
    classifier = Classifier(load_model(tiny_checkpoint), "cell", ["A", "B"], hidden=True)
    classifier.head.standardise(torch.randn(20, 16))
    save_classifier(classifier, tmp_path / "old", source=tiny_checkpoint)
    record_path = tmp_path / "old" / "finetune.json"
    record = json.loads(record_path.read_text())
    loaded, _ = load_classifier(tmp_path / "old")
    torch.testing.assert_close(loaded.head.scale, classifier.head.scale)
    del record["head"]["hidden"]                                           # as written before the change
    record_path.write_text(json.dumps(record))
    from safetensors.torch import load_file, save_file
    state = {k: v for k, v in load_file(str(tmp_path / "old" / "head.safetensors")).items()
             if k not in ("shift", "scale")}
    save_file(state, str(tmp_path / "old" / "head.safetensors"))
    old, _ = load_classifier(tmp_path / "old")
    assert old.head.hidden and torch.equal(old.head.scale, torch.ones(16)) and torch.equal(old.head.shift,
                                                                                         torch.zeros(16))
    torch.testing.assert_close(old.head.linear.weight, classifier.head.linear.weight)


def test_balanced_class_weights():
    weights = finetune._class_weights(np.array([0, 0, 0, 1]), 2, "balanced")
    torch.testing.assert_close(weights, torch.tensor([4 / 6, 2.0]))
    with pytest.raises(ValueError, match="every class"):
        finetune._class_weights(np.array([0, 0]), 2, "balanced")


def test_gene_classifier_trains_and_predicts_per_token(tiny_checkpoint, tmp_path):
    tokenizer = Tokenizer.load(tiny_checkpoint)
    cells, _ = CellTokens.from_adata(two_programmes(60, HUMAN, "human", 30), tokenizer, 31)
    tokens = tokenizer.vocab.encode(HUMAN[1:21])
    labels = pd.Series(np.where(np.arange(20) < 10, "first", "second"), index=tokens)[tokens >= 0]
    assert len(labels) >= 12
    run = finetune.fit_gene_classifier(cells, labels, tiny_checkpoint, tmp_path / "genes",
                                       finetune.FinetuneConfig(**dict(FAST, epochs=3)), progress=False)
    assert run.classes == ["first", "second"] and len(run.history) >= 1
    table = finetune.predict_genes(cells, run.directory)
    assert {"n_cells", "probability_first", "probability_second", "prediction"} <= set(table.columns)
    np.testing.assert_allclose(table[["probability_first", "probability_second"]].sum(1), 1, atol=1e-5)
    ids = np.concatenate(cells.ids)
    first = labels.index[0]
    assert table.loc[first, "n_cells"] == int((ids == first).sum())
    _, record = load_classifier(run.directory)
    assert record["task"] == "gene" and record["n_train_genes"] + record["n_validation_genes"] == len(labels)
    with pytest.raises(ValueError, match="not a cell classifier"):
        finetune.predict_cells(two_programmes(4, HUMAN, "human", 31), run.directory)
    stamp, config = written(run.directory), finetune.FinetuneConfig(**dict(FAST, epochs=3))
    finetune.fit_gene_classifier(cells, labels, tiny_checkpoint, run.directory, config, reuse=True, progress=False)
    assert written(run.directory) == stamp                                  # identical: reused
    nudged = CellTokens(cells.ids, [v.copy() for v in cells.values], cells.species)
    nudged.values[0][0] += 0.5                                              # one value of one cell
    finetune.fit_gene_classifier(nudged, labels, tiny_checkpoint, run.directory, config, reuse=True, progress=False)
    assert written(run.directory) != stamp


def test_bad_input_is_named(tiny_checkpoint, tmp_path):
    train = two_programmes(20, HUMAN, "human", 40)
    with pytest.raises(KeyError, match="no column 'missing'"):
        finetune.fit_cell_classifier(train, "missing", tiny_checkpoint, tmp_path / "x")
    train.obs.loc[train.obs_names[0], "label"] = None
    with pytest.raises(ValueError, match="1 cells have no 'label'"):
        finetune.fit_cell_classifier(train, "label", tiny_checkpoint, tmp_path / "x")
    with pytest.raises(FileNotFoundError, match="no fine-tuned classifier"):
        load_classifier(tiny_checkpoint)
    with pytest.raises(ValueError, match="two distinct classes"):
        Classifier(load_model(tiny_checkpoint), "cell", ["only"])
    assert not (tmp_path / "x").exists()


def test_freezing_never_trains_the_pretraining_heads_gepc_included():
    config = ModelConfig.preset("tiny", 40, d_model=32, n_heads=2, d_ff=64, max_len=16, prior_dims={},
                                gepc_loss_weight=0.1)
    classifier = Classifier(build_model(config), "cell", ["A", "B"])
    classifier.freeze(layers=1)
    heads = classifier.encoder.pretraining_heads()
    assert classifier.encoder.gepc_head in heads
    assert not any(p.requires_grad for head in heads for p in head.parameters())
    assert all(p.requires_grad for p in classifier.encoder.blocks[1].parameters())
    assert all(p.requires_grad for p in classifier.head.parameters())
