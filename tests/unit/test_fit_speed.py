"""Fine-tuning faster without computing anything else: frozen lower layers computed once per cell
(``FinetuneConfig.cache_frozen``) and independent fits in worker processes (:mod:`gc_lib.tasks.fit_pool`)."""
import numpy as np
import pytest
import torch
from synthetic import HUMAN, two_programmes

from gc_lib.model.architecture import load_model
from gc_lib.tasks import finetune
from gc_lib.tasks.fit_pool import CellFitJob, fit_cell_classifiers

QUICK = dict(epochs=3, batch_size=8, learning_rate=3e-3, head_learning_rate=1e-2, validation_fraction=0.25)


@pytest.mark.parametrize("frozen", [dict(freeze_embeddings=True), dict(freeze_layers=1), dict(head_only=True)])
def test_cached_frozen_states_change_speed_not_results(tiny_checkpoint, tmp_path, frozen):
    cells = two_programmes(40, HUMAN, "human", 3)
    fits = {cache: finetune.fit_cell_classifier(cells, "label", tiny_checkpoint, tmp_path / f"cache{cache}",
                                                finetune.FinetuneConfig(**QUICK, **frozen, cache_frozen=cache),
                                                progress=False)
            for cache in (True, False)}
    cached, recomputed = fits[True].history, fits[False].history
    assert len(cached) == QUICK["epochs"] + 1
    np.testing.assert_allclose(cached[["train_loss", "val_loss"]].to_numpy()[1:],
                               recomputed[["train_loss", "val_loss"]].to_numpy()[1:], rtol=1e-4)
    assert not np.allclose(cached["val_loss"].iloc[1:], cached["val_loss"].iloc[0])   # training moved something


def test_freeze_embeddings_keeps_the_input_layer_and_trains_the_blocks(tiny_checkpoint, tmp_path):
    config = finetune.FinetuneConfig(**QUICK, freeze_embeddings=True, standardise=False, probe_init=False)
    fit = finetune.fit_cell_classifier(two_programmes(40, HUMAN, "human", 5), "label", tiny_checkpoint,
                                       tmp_path / "emb", config, progress=False)
    assert fit.best_epoch >= 1
    before, after = load_model(tiny_checkpoint).state_dict(), load_model(fit.directory).state_dict()
    for key in after:
        if key.startswith(("genes.", "positions.", "embed_norm.")):
            assert torch.equal(after[key], before[key]), key
    assert not all(torch.equal(after[k], before[k]) for k in after if k.startswith("blocks."))


def test_from_scratch_trains_every_layer_even_when_freezing_is_asked(tiny_checkpoint, tmp_path):
    config = finetune.FinetuneConfig(**QUICK, freeze_layers=1, from_scratch=True, standardise=False,
                                     probe_init=False)
    classifier = finetune._build(tiny_checkpoint, "cell", ["A", "B"], config, None)
    assert classifier.frozen_blocks is None
    assert all(p.requires_grad for p in classifier.encoder.genes.parameters())
    assert all(p.requires_grad for p in classifier.encoder.blocks[0].parameters())


def test_fits_in_worker_processes_equal_fits_made_here(tiny_checkpoint, tmp_path):
    cells = two_programmes(40, HUMAN, "human", 7)
    jobs = {where: [CellFitJob(cells, "label", tiny_checkpoint, tmp_path / where / f"seed{seed}",
                               finetune.FinetuneConfig(**QUICK, seed=seed)) for seed in (0, 1)]
            for where in ("here", "workers")}
    here = fit_cell_classifiers(jobs["here"], workers=1)
    workers = fit_cell_classifiers(jobs["workers"], workers=2)
    for job, a, b in zip(jobs["workers"], here, workers):
        assert b.directory == job.out_dir
        np.testing.assert_allclose(a.history["val_loss"], b.history["val_loss"], rtol=1e-4)
    stamps = [(r.directory / "model.safetensors").stat().st_mtime_ns for r in workers]
    again = fit_cell_classifiers(jobs["workers"], workers=2, reuse=True)     # reuse by content, across processes
    assert [(r.directory / "model.safetensors").stat().st_mtime_ns for r in again] == stamps


def test_two_jobs_may_not_share_a_folder(tiny_checkpoint, tmp_path):
    job = CellFitJob(two_programmes(20, HUMAN, "human", 9), "label", tiny_checkpoint, tmp_path / "same",
                     finetune.FinetuneConfig(**QUICK))
    with pytest.raises(ValueError, match="same out_dir"):
        fit_cell_classifiers([job, job], workers=2)
