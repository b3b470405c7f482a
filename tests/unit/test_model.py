"""The GeneCompass model: shapes, loss only on masked positions, padding, priors, overfitting, save/load, and the
optional cell-level GEPC term."""
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from gc_lib.model.architecture import ModelConfig, build_model, load_model, save_model
from gc_lib.model.heads import gepc_loss
from gc_lib.priors.store import PriorTable

V, B, L = 60, 4, 12


def priors(dims=(6, 4)):
    rng = np.random.default_rng(0)
    out = {}
    for name, d in zip(("grn", "family"), dims):
        mask = rng.random(V) < 0.7
        mask[:4] = False
        vectors = rng.normal(size=(V, d)).astype(np.float32) * mask[:, None]
        out[name] = PriorTable(name, vectors, mask)
    return out


def config(**kw):
    kw = {"prior_dims": {"grn": 6, "family": 4}, **kw}
    return ModelConfig.preset("tiny", V, d_model=32, n_heads=2, d_ff=64, max_len=64, dropout=0.0, **kw)


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, V, (B, L), generator=g)
    values = torch.rand(B, L, generator=g) * 3
    attention = torch.ones(B, L, dtype=torch.bool)
    attention[1, 8:] = False
    ids[1, 8:] = 0
    values[1, 8:] = 0
    masked = (torch.rand(B, L, generator=g) < 0.3) & attention
    masked[:, 0] = True
    return {"input_ids": ids, "values": values, "species": torch.tensor([0, 1, 0, 1]), "attention_mask": attention,
            "masked": masked, "labels": torch.where(masked, ids, -100), "value_labels": values.clone()}


@pytest.fixture
def model():
    torch.manual_seed(0)
    return build_model(config(), priors())


def test_shapes_and_loss_parts(model):
    out = model(**batch())
    assert out["hidden"].shape == (B, L + 1, 32)
    assert out["n_masked"] == batch()["masked"].sum()
    assert torch.isclose(out["loss"], 0.2 * out["id_loss"] + 0.8 * out["value_loss"])
    assert abs(out["id_loss"].item() - np.log(V)) < 1.0     # untrained: close to uniform over the vocabulary


def test_unmasked_targets_do_not_change_the_loss(model):
    b = batch()
    reference = model(**b)["loss"]
    changed = dict(b)
    changed["value_labels"] = torch.where(b["masked"], b["value_labels"], torch.full_like(b["value_labels"], 99.0))
    changed["labels"] = torch.where(b["masked"], b["labels"], torch.full_like(b["labels"], 5))
    assert torch.equal(model(**changed)["loss"], reference)
    moved = dict(b)
    moved["value_labels"] = torch.where(b["masked"], b["value_labels"] + 1.0, b["value_labels"])
    assert not torch.equal(model(**moved)["loss"], reference)  # ... while masked targets do


def test_padding_does_not_change_a_cells_outputs(model):
    model.eval()
    b = batch()
    alone = model.encode(b["input_ids"][1:2, :8], b["values"][1:2, :8], b["species"][1:2])
    padded = model.encode(b["input_ids"], b["values"], b["species"], b["attention_mask"])[1:2, :9]
    torch.testing.assert_close(padded, alone, atol=1e-5, rtol=1e-4)


def test_priors_enter_only_where_present_and_can_be_switched_off():
    torch.manual_seed(0)
    with_priors = build_model(config(), priors())
    assert torch.equal(with_priors.genes.prior_grn[0], torch.zeros(6))
    assert not with_priors.genes.has_grn[:4].any()
    off = build_model(config(prior_dims={}, use_values=False))
    assert not any(n.startswith("prior_") for n, _ in off.genes.named_buffers())
    assert off(**batch())["hidden"].shape == (B, L + 1, 32)
    with pytest.raises(ValueError, match="model expects priors"):
        build_model(config(), {"grn": priors()["grn"]})
    with pytest.raises(ValueError, match="shape"):
        build_model(config(prior_dims={"grn": 5, "family": 4}), priors())


def test_paper_variant_is_post_norm_with_the_raw_value(model):
    paper = config().paper_variant()
    assert paper.norm == "post" and paper.value_encoding == "scalar"
    torch.manual_seed(0)
    out = build_model(paper, priors())(**batch())
    assert torch.isfinite(out["loss"])
    with pytest.raises(ValueError, match="divisible"):
        ModelConfig(vocab_size=V, d_model=30, n_heads=4)


def test_overfits_one_batch(model):
    b = batch()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    first = None
    for _ in range(100):
        out = model(**b)
        first = first if first is not None else out["loss"].item()
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
    assert out["loss"].item() < 0.05 * first and out["id_accuracy"].item() == 1.0


def test_save_load_gives_identical_outputs(model, tmp_path):
    model.eval()
    save_model(model, tmp_path / "m")
    again = load_model(tmp_path / "m").eval()
    assert again.config == model.config
    b = batch(1)
    torch.testing.assert_close(again(**b)["loss"], model(**b)["loss"], rtol=0, atol=0)
    assert torch.equal(again.genes.prior_family, model.genes.prior_family)


def test_model_config_from_checkpoint_round_trips(model, tmp_path):
    save_model(model, tmp_path / "m")
    assert ModelConfig.from_checkpoint(tmp_path / "m") == model.config
    with pytest.raises(FileNotFoundError, match="no config.json"):
        ModelConfig.from_checkpoint(tmp_path)


def gene_vocab(human: int, mouse: int):
    from gc_lib.corpus.vocab import build_vocabulary

    genes = [(f"ENSG{i:011d}", "human") for i in range(human)] + [(f"ENSMUSG{i:011d}", "mouse") for i in range(mouse)]
    return build_vocabulary(pd.DataFrame(genes, columns=["gene_id", "species"]).assign(symbol="s"))


def test_loading_for_a_tokenizer_checks_its_vocabulary(tmp_path):
    """Same hash: loads. The tokenizer's vocabulary a prefix of the checkpoint's: loads, with a warning when a
    species keeps under half its tokens. Any id naming another gene, or beyond the model: refused."""
    from gc_lib.model.vocab_check import check_vocabulary

    saved = gene_vocab(40, 16)                                    # 4 special + 56 gene tokens = V
    model = build_model(ModelConfig.preset("tiny", V, d_model=32, n_heads=2, d_ff=64, max_len=64))
    save_model(model, tmp_path / "m")
    with pytest.raises(ValueError, match="no vocab.json"):
        load_model(tmp_path / "m", vocab=saved)
    saved.save(tmp_path / "m" / "vocab.json")
    assert load_model(tmp_path / "m", vocab=saved).config.vocab_size == V
    assert check_vocabulary(tmp_path / "m", saved)["same"]
    prefix = gene_vocab(40, 4)                                    # same ids, mouse tokens cut to 4 of 16
    with pytest.warns(UserWarning, match="mouse: 4 of 16 checkpoint gene tokens.*low for mouse"):
        report = check_vocabulary(tmp_path / "m", prefix)
    assert not report["same"] and report["overlap"]["human"]["fraction"] == 1.0
    assert report["overlap"]["mouse"] == {"checkpoint": 16, "tokenizer": 4, "common": 4, "fraction": 0.25}
    with pytest.raises(ValueError, match=r"misaligned \(16 ids name other genes.*human: 24 of 40"):
        load_model(tmp_path / "m", vocab=gene_vocab(24, 16))      # mouse genes shift down: wrong embeddings
    with pytest.raises(ValueError, match="4 lie beyond the model's 60 tokens"):
        load_model(tmp_path / "m", vocab=gene_vocab(40, 20))


def gepc_model(weight=0.5):
    torch.manual_seed(0)
    return build_model(config(gepc_loss_weight=weight), priors())


def test_gepc_adds_its_term_to_the_unchanged_mlm_loss(model):
    """Same seed: the same initial encoder and MLM heads with the GEPC head or without; the loss differs by exactly
    weight × gepc_loss, and off, the loss is the paper's two terms and nothing else."""
    from gc_lib.model.heads import GEPCHead

    off, on = model(**batch()), gepc_model(0.5)(**batch())
    assert model.gepc_head is None and "gepc_loss" not in off
    assert not any(name.startswith("gepc_head") for name in model.state_dict())
    assert torch.equal(off["loss"], 0.2 * off["id_loss"] + 0.8 * off["value_loss"])
    assert torch.equal(on["id_loss"], off["id_loss"]) and torch.equal(on["value_loss"], off["value_loss"])
    assert on["gepc_loss"].shape == () and torch.isfinite(on["gepc_loss"])
    torch.testing.assert_close(on["loss"], off["loss"] + 0.5 * on["gepc_loss"])
    assert GEPCHead(32)(torch.randn(7, 32), torch.randn(7, 32)).shape == (7,)
    with pytest.raises(ValueError, match="gepc_loss_weight"):
        config(gepc_loss_weight=-1.0)


def test_only_gepc_trains_the_cell_tokens_final_state():
    """The diagnosis behind the option: the MLM loss sends no gradient to the cell token's final state."""
    gepc = gepc_model()
    b = batch()
    hidden = gepc.encode(b["input_ids"], b["values"], b["species"], b["attention_mask"])
    hidden.retain_grad()
    at = hidden[:, 1:][b["masked"]]
    mlm = F.cross_entropy(gepc.id_head(at) @ gepc.genes.ids.weight.T + gepc.id_bias, b["labels"][b["masked"]]) + \
        gepc.value_head(at).squeeze(-1).sub(b["value_labels"][b["masked"]]).pow(2).mean()
    mlm.backward(retain_graph=True)
    assert torch.count_nonzero(hidden.grad[:, 0]) == 0 and torch.count_nonzero(hidden.grad[:, 1:]) > 0
    hidden.grad = None
    gepc_loss(gepc.gepc_head, hidden, gepc.genes.ids, b["masked"], b["labels"], b["value_labels"]).backward()
    assert torch.count_nonzero(hidden.grad[:, 0]) > 0


def test_gepc_term_falls_when_trained():
    gepc = gepc_model(1.0)
    optimizer = torch.optim.AdamW(gepc.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        out = gepc(**batch())
        losses.append(out["gepc_loss"].item())
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
    assert losses[-1] < 0.2 * losses[0]


def test_gepc_checkpoints_round_trip_and_older_ones_load_with_it_off(tmp_path):
    import json

    gepc = gepc_model().eval()
    save_model(gepc, tmp_path / "m")
    again = load_model(tmp_path / "m").eval()
    assert again.config == gepc.config and again.config.gepc_loss_weight == 0.5
    b = batch(1)
    first, second = gepc(**b), again(**b)
    assert torch.equal(first["gepc_loss"], second["gepc_loss"]) and torch.equal(first["loss"], second["loss"])
    old = build_model(config(), priors())
    save_model(old, tmp_path / "old")
    fields = json.loads((tmp_path / "old" / "config.json").read_text())
    del fields["gepc_loss_weight"]                                      # as written before the option existed
    (tmp_path / "old" / "config.json").write_text(json.dumps(fields))
    loaded = load_model(tmp_path / "old")
    assert loaded.config.gepc_loss_weight == 0.0 and loaded.gepc_head is None
    assert [type(m).__name__ for m in loaded.pretraining_heads()] == ["Sequential", "Sequential"]
    assert gepc.pretraining_heads()[-1] is gepc.gepc_head
