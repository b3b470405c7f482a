"""The CPA-style dose-response model on a synthetic plate with a known answer, and on the real L1000 plate of the
offline mirror when it is there."""
import os
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch

from gc_lib.core import paths
from gc_lib.tasks.dose_response import DoseModel, DoseModelConfig, dose_curve, fit_dose_model, predict_dose

MIRROR_PLATE = Path(os.environ.get("GC_LIB_MIRROR") or paths.ROOT.parent / "shared" / "mirror") / "l1000" / \
    "test_l1000.gct"
DOSES = [0.04, 0.12, 0.37, 1.11, 3.33, 10.0]
HELD_OUT = 3.33
N_GENES = 60
CONFIG = DoseModelConfig(epochs=100)
FIT = {"drug_key": "pert_iname", "dose_key": "pert_dose", "control_value": "DMSO"}


def synthetic_plate(seed: int = 0, reps: int = 4, noise: float = 0.3):
    """4 drugs × 6 doses × ``reps`` wells + 12 DMSO wells, log2-like values around 8. Drug i shifts genes
    8i … 8i+7 by ±2 × sigmoid(2.5 (log10 dose − midpoint_i)). Returns the plate and the sign of each drug's shift."""
    rng = np.random.default_rng(seed)
    base = rng.normal(8, 1, N_GENES)
    rows, obs, signs = [], [], np.zeros((4, N_GENES))
    for i, midpoint in enumerate([-0.5, 0.0, 0.3, -0.2]):
        signs[i, i * 8:i * 8 + 8] = np.where(np.arange(8) % 2, -1.0, 1.0)
        for dose in DOSES:
            effect = 2.0 / (1 + np.exp(-2.5 * (np.log10(dose) - midpoint)))
            for _ in range(reps):
                rows.append(base + rng.normal(0, noise, N_GENES) + signs[i] * effect)
                obs.append((f"drug{i}", dose))
    for _ in range(12):
        rows.append(base + rng.normal(0, noise, N_GENES))
        obs.append(("DMSO", np.nan))
    obs = pd.DataFrame(obs, columns=["pert_iname", "pert_dose"], index=[f"w{i}" for i in range(len(obs))])
    return ad.AnnData(np.asarray(rows, dtype=np.float32), obs=obs), signs


@pytest.fixture(scope="module")
def plate():
    """The plate without the held-out dose, the held-out truth (drug means), the DMSO mean and the signs."""
    adata, signs = synthetic_plate()
    held = (adata.obs["pert_dose"] == HELD_OUT).to_numpy()
    names = adata.obs["pert_iname"].to_numpy()
    truth = np.array([adata.X[held & (names == f"drug{i}")].mean(0) for i in range(4)])
    dmso = adata.X[names == "DMSO"].mean(0)
    return adata[~held].copy(), truth, dmso, signs


@pytest.fixture(scope="module")
def fitted(plate):
    return fit_dose_model(plate[0], **FIT, config=CONFIG, seed=0)


def test_held_out_dose_beats_dmso_mean_and_response_rises_with_dose(plate, fitted):
    train, truth, dmso, signs = plate
    model, history = fitted
    drugs = [f"drug{i}" for i in range(4)]
    predicted = predict_dose(model, drugs, [HELD_OUT] * 4)
    mse_model, mse_dmso = ((predicted - truth) ** 2).mean(), ((dmso - truth) ** 2).mean()
    print(f"held-out dose {HELD_OUT}: MSE model {mse_model:.3f}, DMSO mean {mse_dmso:.3f}")
    assert mse_model < 0.5 * mse_dmso
    assert history["nll"][-1] < history["nll"][0]
    for i, drug in enumerate(drugs):
        curve = dose_curve(model, drug, [0.0, *DOSES])
        assert curve[0] == 0 and (np.diff(curve) > 0).all() and curve[-1] < 1
        # the predicted shift along the drug's true gene pattern grows with dose
        along = (predict_dose(model, [drug] * len(DOSES), DOSES) - dmso) @ signs[i]
        assert (np.diff(along) > 0).all() and along[-1] > 0.5 * 2.0 * 8


def test_adversary_removes_drug_information_from_basal_state(plate, fitted):
    _, history = fitted  # adversary_weight 5 (the default)
    _, unpenalised = fit_dose_model(plate[0], **FIT, config=DoseModelConfig(epochs=100, adversary_weight=0.0), seed=0)
    chance = 20 / 92  # each drug has 20 of the 92 training wells
    print(f"adversary accuracy: penalised {history['adversary_accuracy'][-1]:.2f}, "
          f"unpenalised {unpenalised['adversary_accuracy'][-1]:.2f}")
    assert unpenalised["adversary_accuracy"][-1] > 0.9
    assert history["adversary_accuracy"][-1] < chance + 0.35


def test_fit_is_deterministic_for_a_seed(plate, fitted):
    again, _ = fit_dose_model(plate[0], **FIT, config=CONFIG, seed=0)
    np.testing.assert_array_equal(predict_dose(fitted[0], ["drug1"], [1.0]), predict_dose(again, ["drug1"], [1.0]))


def test_covariate_embedding_is_used_when_given(plate):
    train = plate[0].copy()
    train.obs["cell_id"] = "A375"
    model, _ = fit_dose_model(train, **FIT, config=DoseModelConfig(epochs=2), seed=0, covariate_key="cell_id")
    assert model.covariates == ["A375"] and np.isfinite(predict_dose(model, ["drug0"], [1.0])).all()
    with pytest.raises(ValueError, match="unknown covariate 'HeLa'"):
        predict_dose(model, ["drug0"], [1.0], covariate="HeLa")


def test_gene_embeddings_are_trained_through_and_forward_creates_nothing(plate):
    train = plate[0]
    emb = np.random.default_rng(1).normal(size=(N_GENES, 8))
    fresh = DoseModel(N_GENES, ["a", "b"], CONFIG, gene_embeddings=emb)
    x = torch.randn(5, N_GENES)
    _, mean, logvar = fresh(x, torch.tensor([0, 1, 2, 0, 1]), torch.tensor([1.0, 2.0, 0.0, 3.0, 0.5]))
    ((mean - x) ** 2).mean().backward()
    assert fresh.projection.grad is not None and fresh.projection.grad.abs().sum() > 0
    model, _ = fit_dose_model(train, **FIT, config=DoseModelConfig(epochs=20), seed=0, gene_embeddings=emb)
    assert model.projection.shape == (CONFIG.hidden_dim, 8) and model.projection.abs().sum() > 0  # moved from 0
    before = {k: v.clone() for k, v in model.state_dict().items()}
    n_params = len(list(model.parameters()))
    first = predict_dose(model, ["drug0", "drug2"], [0.1, 10.0])
    second = predict_dose(model, ["drug0", "drug2"], [0.1, 10.0])
    np.testing.assert_array_equal(first, second)
    assert len(list(model.parameters())) == n_params and model.state_dict().keys() == before.keys()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_clear_errors(plate, fitted):
    model = fitted[0]
    with pytest.raises(ValueError, match=r"gene_embeddings must be n_genes × e = 60 × e, got shape \(59, 4\)"):
        fit_dose_model(plate[0], **FIT, config=CONFIG, gene_embeddings=np.zeros((59, 4)))
    with pytest.raises(ValueError, match=r"unknown drugs \['aspirin'\]"):
        predict_dose(model, ["drug0", "aspirin"], [1.0, 1.0])
    with pytest.raises(ValueError, match="2 drugs but 1 doses"):
        predict_dose(model, ["drug0", "drug1"], [1.0])
    with pytest.raises(ValueError, match="basal must be a latent of size 32"):
        predict_dose(model, ["drug0"], [1.0], basal=np.zeros(5))
    with pytest.raises(ValueError, match="no control wells"):
        fit_dose_model(plate[0], **{**FIT, "control_value": "PBS"}, config=CONFIG)
    broken = plate[0].copy()
    broken.obs.loc[broken.obs_names[0], "pert_dose"] = np.nan
    with pytest.raises(ValueError, match="1 treated wells have no positive pert_dose"):
        fit_dose_model(broken, **FIT, config=CONFIG)


@pytest.mark.skipif(not MIRROR_PLATE.exists(), reason=f"no offline mirror copy at {MIRROR_PLATE}")
def test_short_fit_on_the_real_l1000_plate():
    from gc_lib.inputs.gct import read_gct
    adata = read_gct(MIRROR_PLATE)
    obs = adata.obs[adata.obs["pert_iname"].astype(str) != "DMSO"]
    highest = obs.groupby(obs["pert_iname"].astype(str))["pert_dose"].max()
    model, history = fit_dose_model(adata, **FIT, config=DoseModelConfig(epochs=3), seed=0,
                                    gene_embeddings=np.random.default_rng(0).normal(size=(adata.n_vars, 16)))
    predicted = predict_dose(model, list(highest.index), highest.to_numpy())
    assert predicted.shape == (len(highest), 978) and len(highest) >= 59 and np.isfinite(predicted).all()
    assert np.isfinite(history["nll"]).all()
