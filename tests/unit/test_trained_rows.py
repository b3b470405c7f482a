"""Fine-tuning trains only the gene-ID embedding rows its training cells reach (gc_lib.tasks._trained_rows): the
same weights as dense AdamW, on a toy model and through a whole fit."""
import numpy as np
import torch
from synthetic import HUMAN, two_programmes
from torch import nn

from gc_lib.tasks import _trained_rows, finetune


class Toy(nn.Module):
    """Stands in for the encoder: ``genes.ids`` is where the swap happens."""

    def __init__(self):
        super().__init__()
        self.genes = nn.Module()
        self.genes.ids = nn.Embedding(40, 6, padding_idx=0)
        self.out = nn.Linear(6, 1)

    def forward(self, ids):
        return self.out(self.genes.ids(ids)).sum()


def test_trained_rows_give_dense_adamw_weights():
    torch.manual_seed(0)
    dense, sparse = Toy(), Toy()
    sparse.load_state_dict(dense.state_dict())
    start = dense.genes.ids.weight.detach().clone()
    reachable = torch.tensor([0, 3, 5, 7, 11, 20])                     # 0 is padding: never a trained row
    rows = _trained_rows.reachable_rows([reachable.numpy()], np.array([0, 0]), first_species_id=30, pad_id=0)
    assert rows.tolist() == [3, 5, 7, 11, 20, 30]
    swapped = _trained_rows.attach(sparse, rows)
    optimizers = [torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], weight_decay=0.1, fused=True)
                  for m in (dense, sparse)]
    assert sum(p.numel() for g in optimizers[1].param_groups for p in g["params"]) == 6 * 6 + 7
    generator = torch.Generator().manual_seed(1)
    for step in range(12):
        ids = reachable[torch.randint(len(reachable), (4, 5), generator=generator)]
        lr = 0.01 * (step + 1)
        for model, optimizer in zip((dense, sparse), optimizers):
            optimizer.param_groups[0]["lr"] = lr
            model(ids).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        swapped.decay_fixed_rows(lr, 0.1)
        probe = torch.tensor([[1, 3, 39]])                             # a fixed row, a trained row: same outputs
        torch.testing.assert_close(sparse(probe), dense(probe))
    _trained_rows.detach(sparse)
    assert isinstance(sparse.genes.ids, nn.Embedding) and sparse.genes.ids.weight.requires_grad
    torch.testing.assert_close(sparse.state_dict(), dense.state_dict())
    untouched = dense.genes.ids.weight[1] / start[1]                    # never reached: weight decay only
    torch.testing.assert_close(untouched, torch.full_like(untouched, untouched[0].item()))
    assert untouched[0] < 1


def test_frozen_embedding_is_left_alone():
    toy = Toy()
    toy.genes.ids.requires_grad_(False)
    assert _trained_rows.attach(toy, torch.tensor([3])) is None and isinstance(toy.genes.ids, nn.Embedding)


def test_fit_with_trained_rows_equals_the_dense_fit(tiny_checkpoint, tmp_path, monkeypatch):
    cells = two_programmes(40, HUMAN, "human", 3)
    config = finetune.FinetuneConfig(epochs=3, batch_size=8, learning_rate=3e-3, validation_fraction=0.25)
    rows = finetune.fit_cell_classifier(cells, "label", tiny_checkpoint, tmp_path / "rows", config, progress=False)
    monkeypatch.setattr(_trained_rows, "attach", lambda encoder, rows: None)
    dense = finetune.fit_cell_classifier(cells, "label", tiny_checkpoint, tmp_path / "dense", config, progress=False)
    assert rows.best_epoch == dense.best_epoch
    np.testing.assert_allclose(rows.history["val_loss"], dense.history["val_loss"], rtol=1e-4)
    np.testing.assert_allclose(rows.history["train_loss"], dense.history["train_loss"], rtol=1e-4)
