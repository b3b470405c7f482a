"""Stage 4 · model: the GeneCompass architecture and its pretraining (DESIGN.md §1, model and objective).

- :mod:`~gc_lib.model.architecture`  config presets, encoder, masked-gene heads, save/load
- :mod:`~gc_lib.model.vocab_check`   a tokenizer's token ids checked against a checkpoint's vocabulary on load
- :mod:`~gc_lib.model.masking`       BERT masking (15 %, 80/10/10, masked values hidden)
- :mod:`~gc_lib.model.data_loader`   streaming, length-bucketed, resumable batches from the shards
- :mod:`~gc_lib.model.trainer`       one optimizer step (DDP/FSDP, bf16, accumulation) and the schedule
- :mod:`~gc_lib.model.checkpoint`    checkpoint directories without pickles
- :mod:`~gc_lib.model.pretrain`      the pretraining run (loop, evaluation, checkpoints, resume) and its
  command line: ``python -m gc_lib.model.pretrain`` (one process) or ``torchrun … -m gc_lib.model.pretrain``

Imports: :mod:`gc_lib.core`, :mod:`gc_lib.inputs`, :mod:`gc_lib.corpus`, :mod:`gc_lib.priors`.
"""
