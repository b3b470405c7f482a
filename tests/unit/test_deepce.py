"""The DeepCE-style model on the synthetic dose plate (a known answer), with learned drug embeddings and with
fingerprints of real molecules (an unseen drug), and the benchmark runner around both models."""
import numpy as np
import pandas as pd
import pytest
import torch
from synthetic import N_GENES, held_out_dose, synthetic_plate

from gc_lib.tasks.deepce import DeepCEConfig, DeepCEModel, fit_deepce, predict_deepce
from gc_lib.tasks.dose_benchmark import DoseBenchmark, run_split, run_unseen_drugs
from gc_lib.tasks.dose_metrics import METRICS
from gc_lib.tasks.dose_response import DoseModelConfig
from gc_lib.tasks.seed_summary import paired_differences, summarise

FIT = {"drug_key": "pert_iname", "dose_key": "pert_dose", "control_value": "DMSO"}
CONFIG = DeepCEConfig(epochs=60)
HELD_OUT = 3.33
#: Real molecules for the four synthetic drugs: drugs 0 and 3 get near-identical structures (two alkyl benzoic
#: acids), 1 and 2 unrelated ones.
SMILES = {"drug0": "CCCCc1ccc(cc1)C(=O)O", "drug1": "Cn1cnc2c1c(=O)n(C)c(=O)n2C", "drug2": "OCC(O)CO",
          "drug3": "CCCCCc1ccc(cc1)C(=O)O"}


@pytest.fixture(scope="module")
def plate():
    adata, signs = synthetic_plate()
    return (adata, *held_out_dose(adata, HELD_OUT), signs)


def test_held_out_dose_beats_the_dmso_mean_and_moves_the_right_genes(plate):
    _, train, truth, dmso, signs = plate
    model, history = fit_deepce(train, **FIT, config=CONFIG, seed=0)
    assert history["mse"][-1] < 0.5 * history["mse"][0]
    predicted = predict_deepce(model, [f"drug{i}" for i in range(4)], [HELD_OUT] * 4)
    mse_model, mse_dmso = ((predicted - truth) ** 2).mean(), ((dmso - truth) ** 2).mean()
    print(f"DeepCE-style, held-out dose {HELD_OUT}: MSE {mse_model:.3f}, DMSO mean {mse_dmso:.3f}")
    assert mse_model < 0.5 * mse_dmso
    for i in range(4):
        assert (predicted[i] - dmso) @ signs[i] > 0.5 * 2.0 * 8   # most of the true shift, in its direction


def test_fit_is_deterministic_and_leaves_the_global_rng_alone(plate):
    train = plate[1]
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first, _ = fit_deepce(train, **FIT, config=DeepCEConfig(epochs=3), seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    second, _ = fit_deepce(train, **FIT, config=DeepCEConfig(epochs=3), seed=5)
    np.testing.assert_array_equal(predict_deepce(first, ["drug1"], [1.0]), predict_deepce(second, ["drug1"], [1.0]))


def test_gene_embeddings_train_through_the_projection(plate):
    emb = np.random.default_rng(2).normal(size=(N_GENES, 6))
    fresh = DeepCEModel(N_GENES, ["a", "b"], [], DeepCEConfig(), gene_embeddings=emb)
    assert fresh.projection.abs().sum() == 0                                  # starts as the model without them
    out = fresh(fresh.tokens(torch.tensor([0, 1])), torch.tensor([0.0, 1.0]), torch.tensor([0, 0]))
    out.pow(2).mean().backward()
    assert fresh.projection.grad.abs().sum() > 0
    model, _ = fit_deepce(plate[1], **FIT, config=DeepCEConfig(epochs=5), seed=0, gene_embeddings=emb)
    assert model.projection.abs().sum() > 0
    n_params = len(list(model.parameters()))
    predict_deepce(model, ["drug0"], [1.0])
    assert len(list(model.parameters())) == n_params                          # forward created nothing
    with pytest.raises(ValueError, match="gene_embeddings must be a finite"):
        fit_deepce(plate[1], **FIT, config=CONFIG, gene_embeddings=np.zeros((N_GENES - 1, 4)))


def test_fingerprints_serve_a_drug_never_seen_in_training(plate):
    pytest.importorskip("rdkit")
    from gc_lib.tasks.drug_features import smiles_fingerprints

    adata, _, _, dmso, signs = plate
    features = smiles_fingerprints(SMILES, n_bits=256)
    train = adata[adata.obs["pert_iname"].to_numpy() != "drug3"].copy()      # drug 3 never seen
    model, _ = fit_deepce(train, **FIT, config=CONFIG, seed=0, drug_features=features.loc[["drug0", "drug1",
                                                                                           "drug2"]])
    predicted = predict_deepce(model, ["drug3"], [10.0], drug_features=features)[0]
    np.testing.assert_allclose(predict_deepce(model, ["drug0"], [10.0], drug_features=features),
                               predict_deepce(model, ["drug0"], [10.0]), rtol=1e-5, atol=1e-5)
    # drug 3's structure is closest to drug 0's, so its prediction follows drug 0's pattern more than drug 3's own
    assert (predicted - dmso) @ signs[0] > abs((predicted - dmso) @ signs[3])
    with pytest.raises(ValueError, match="were not in training; pass their drug_features"):
        predict_deepce(model, ["drug3"], [1.0])
    learned, _ = fit_deepce(train, **FIT, config=DeepCEConfig(epochs=1), seed=0)
    with pytest.raises(ValueError, match="takes no drug_features"):
        predict_deepce(learned, ["drug3"], [1.0], drug_features=features)


def test_clear_errors(plate):
    model, _ = fit_deepce(plate[1], **FIT, config=DeepCEConfig(epochs=1), seed=0)
    with pytest.raises(ValueError, match="2 drugs but 1 doses"):
        predict_deepce(model, ["drug0", "drug1"], [1.0])
    with pytest.raises(ValueError, match="doses must be finite and > 0"):
        predict_deepce(model, ["drug0"], [0.0])
    with pytest.raises(ValueError, match="unknown cell line 'HeLa'"):
        predict_deepce(model, ["drug0"], [1.0], cell_line="HeLa")
    with pytest.raises(ValueError, match="no row for 1 drugs"):
        fit_deepce(plate[1], **FIT, config=CONFIG, drug_features=pd.DataFrame(np.ones((3, 4)),
                                                                              index=["drug0", "drug1", "drug2"]))


def test_benchmark_scores_every_method_on_the_same_conditions(plate):
    adata = plate[0]
    vectors = {"random": np.random.default_rng(0).normal(size=(N_GENES, 4)).astype(np.float32), "none": None}
    bench = DoseBenchmark(**FIT, seeds=(0, 1), variants=vectors, cpa=DoseModelConfig(epochs=3),
                          deepce=DeepCEConfig(epochs=3))
    inline = run_split(adata, bench, "highest", workers=1)
    assert set(inline["method"]) == {"control_mean", "drug_mean", "nearest_dose", "log_dose_linear", "dose_mean",
                                     "CPA-style", "DeepCE-style"}
    held = inline.groupby(["method", "variant", "seed"])[["drug", "dose"]].apply(lambda f: tuple(map(tuple,
                                                                                                    f.values)))
    assert held.nunique() == 1 and set(inline["dose"]) == {10.0}             # every run scored the same conditions
    assert len(inline) == 4 * (5 + 2 * 2 * 2)
    pooled = run_split(adata, bench, "highest", workers=2)                    # side by side: the same scores
    pd.testing.assert_frame_equal(inline.drop(columns="seconds"), pooled.drop(columns="seconds"), atol=1e-4)
    summary = summarise(inline, ["method", "variant"], METRICS)
    assert (summary.loc[summary["variant"] == "-", "n_seeds"] == 1).all()
    assert (summary.loc[summary["variant"] != "-", "n_seeds"] == 2).all()
    paired = paired_differences(inline, "random", ["none"], metrics=("r2_de20", "pearson_delta"))
    assert len(paired) == 2 * 2 and (paired["n_seeds"] == 2).all()


def test_unseen_drug_benchmark_runs_the_feature_model_only(plate):
    pytest.importorskip("rdkit")
    from gc_lib.tasks.drug_features import smiles_fingerprints

    bench = DoseBenchmark(**FIT, seeds=(0,), deepce=DeepCEConfig(epochs=2))
    scores = run_unseen_drugs(plate[0], bench, smiles_fingerprints(SMILES, n_bits=64), fraction=0.25, workers=1)
    assert set(scores["method"]) == {"control_mean", "dose_mean", "DeepCE-style"}
    assert scores["drug"].nunique() == 1 and (scores["split"] == "unseen_drug").all()
