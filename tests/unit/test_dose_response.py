"""The CPA-style dose-response model on a synthetic plate with a known answer, and on the real L1000 plate of the
offline mirror when it is there; its negative-binomial decoder on simulated counts."""
import math
import os
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from synthetic import DOSES, N_GENES, held_out_dose, synthetic_plate

from gc_lib.core import paths
from gc_lib.tasks.dose_likelihoods import log_normalise, nb_nll
from gc_lib.tasks.dose_response import (
    DoseModel,
    DoseModelConfig,
    dose_curve,
    encode_basal,
    fit_dose_model,
    predict_dose,
)

MIRROR_PLATE = Path(os.environ.get("GC_LIB_MIRROR") or paths.ROOT.parent / "shared" / "mirror") / "l1000" / \
    "test_l1000.gct"
HELD_OUT = 3.33
CONFIG = DoseModelConfig(epochs=100)
FIT = {"drug_key": "pert_iname", "dose_key": "pert_dose", "control_value": "DMSO"}


@pytest.fixture(scope="module")
def plate():
    """The plate without the held-out dose, the held-out truth (drug means), the DMSO mean and the signs."""
    adata, signs = synthetic_plate()
    return (*held_out_dose(adata, HELD_OUT), signs)


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


def test_gaussian_results_match_the_model_before_the_nb_decoder():
    """Predictions and NLL recorded with the Gaussian-only code (before ``likelihood`` existed), same seed."""
    model, history = fit_dose_model(synthetic_plate()[0], **FIT, config=DoseModelConfig(epochs=5), seed=3)
    predicted = predict_dose(model, ["drug0", "drug2"], [0.1, 10.0])[:, :4]
    recorded = [[8.545204162597656, 7.396550178527832, 9.169713973999023, 7.56875467300415],
                [8.250247955322266, 8.024205207824707, 8.541470527648926, 8.086941719055176]]
    np.testing.assert_allclose(predicted, recorded, rtol=1e-5)
    np.testing.assert_allclose(history["nll"], [1.4221165047751532, 1.3708924231705841, 1.3264758895944666,
                                                1.2793725728988647, 1.2373316508752328], rtol=1e-5)


def test_nb_nll_matches_scipy_and_stays_finite():
    counts = torch.tensor([0.0, 1.0, 5.0, 20.0, 3.0])
    mean = torch.tensor([0.5, 3.0, 5.0, 100.0, 0.01], dtype=torch.float64)
    theta = torch.tensor([0.3, 2.0, 50.0, 1.0, 1e3], dtype=torch.float64)
    got = nb_nll(counts.double(), mean.log(), theta.log()).numpy()
    expected = -stats.nbinom.logpmf(counts.numpy(), theta.numpy(), (theta / (theta + mean)).numpy())
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    x, mu, th = 2.0, 4.0, 3.0  # the formula written out once
    direct = -(math.lgamma(x + th) - math.lgamma(th) - math.lgamma(x + 1) + th * math.log(th / (th + mu))
               + x * math.log(mu / (th + mu)))
    assert nb_nll(torch.tensor(x), torch.tensor(mu).log(), torch.tensor(th).log()).item() == pytest.approx(direct)
    extreme = nb_nll(torch.tensor([0.0, 1e5, 0.0]), torch.tensor([-40.0, 12.0, 15.0]), torch.tensor([8.0, -8.0, 8.0]))
    assert torch.isfinite(extreme).all() and (extreme >= 0).all()


NB_GENES = 30
NB_FOLD = {0.1: 1.0, 1.0: 2.0, 10.0: 4.0}   # drugA multiplies genes 0-4 by these, drugB genes 5-9
NB_FIT = {"drug_key": "drug", "dose_key": "dose", "control_value": "DMSO"}


def count_plate(seed: int = 0, theta: float = 10.0):
    """300 cells of negative-binomial counts (θ = 10): 60 DMSO, 2 drugs × 3 doses × 40. Genes 0-9 have a mean of
    about 5 counts, the others about 30; each cell's depth varies by a log-normal factor."""
    rng = np.random.default_rng(seed)
    base = np.where(np.arange(NB_GENES) < 10, 5.0, 30.0) * rng.uniform(0.8, 1.25, NB_GENES)
    obs, means = [], []
    for drug, genes in (("drugA", slice(0, 5)), ("drugB", slice(5, 10))):
        for dose, fold in NB_FOLD.items():
            mean = base.copy()
            mean[genes] *= fold
            means += [mean * rng.lognormal(0, 0.3) for _ in range(40)]
            obs += [(drug, dose)] * 40
    means += [base * rng.lognormal(0, 0.3) for _ in range(60)]
    obs += [("DMSO", np.nan)] * 60
    counts = rng.negative_binomial(theta, theta / (theta + np.asarray(means))).astype(np.float32)
    obs = pd.DataFrame(obs, columns=["drug", "dose"], index=[f"c{i}" for i in range(len(obs))])
    return ad.AnnData(counts, obs=obs)


@pytest.fixture(scope="module")
def counts():
    return count_plate()


def test_nb_model_finds_the_genes_a_high_dose_raises(counts):
    model, history = fit_dose_model(counts, **NB_FIT, config=DoseModelConfig(epochs=100, likelihood="nb"), seed=0)
    assert model.logvar_out is None and model.log_theta.shape == (NB_GENES,)
    assert history["nll"][-1] < history["nll"][0] and np.isfinite(history["nll"]).all()
    control = predict_dose(model, ["drugA"], [0.0])[0]
    observed = log_normalise(counts.X[counts.obs["drug"].to_numpy() == "DMSO"]).mean(0)
    assert np.abs(control - observed).mean() < 0.2   # the control prediction is on the log1p(10⁴ share) scale
    genes = np.arange(NB_GENES)
    for drug, up in (("drugA", genes < 5), ("drugB", (genes >= 5) & (genes < 10))):
        shift = predict_dose(model, [drug] * 3, list(NB_FOLD)) - control
        print(drug, "up genes", shift[:, up].mean(1).round(2), "others", shift[:, ~up].mean(1).round(3))
        assert shift[2, up].mean() > 0.8 and (shift[2, up] > 0.4).all()   # log(4) ≈ 1.39 less the share it takes
        assert abs(shift[2, ~up].mean()) < 0.25 and np.abs(shift[2, ~up]).mean() < 0.3
        assert shift[0, up].mean() < shift[1, up].mean() < shift[2, up].mean()
    assert encode_basal(model, counts.X[:3]).shape == (3, DoseModelConfig().latent_dim)


def test_nb_model_reads_layers_counts_and_trains_gene_embeddings(counts):
    layered = counts.copy()
    layered.layers["counts"] = layered.X.copy()
    layered.X = log_normalise(layered.X)   # non-integer: would be refused if it were read
    emb = np.random.default_rng(1).normal(size=(NB_GENES, 4))
    model, _ = fit_dose_model(layered, **NB_FIT, config=DoseModelConfig(epochs=3, likelihood="nb"), seed=0,
                              gene_embeddings=emb)
    assert model.projection.abs().sum() > 0   # w_g + P · emb_g shapes the NB mean logits too
    assert np.isfinite(predict_dose(model, ["drugB"], [10.0])).all()


def test_nb_model_refuses_what_is_not_counts(counts):
    config = DoseModelConfig(epochs=1, likelihood="nb")
    fractional = counts.copy()
    fractional.X = fractional.X + 0.5
    with pytest.raises(ValueError, match="X holds 9000 non-integer values"):
        fit_dose_model(fractional, **NB_FIT, config=config)
    negative = counts.copy()
    negative.X[0, 0] = -1
    with pytest.raises(ValueError, match="X holds negative values"):
        fit_dose_model(negative, **NB_FIT, config=config)
    layered = counts.copy()
    layered.layers["counts"] = np.log1p(layered.X)
    with pytest.raises(ValueError, match=r"layers\['counts'\] holds \d+ non-integer values"):
        fit_dose_model(layered, **NB_FIT, config=config)
    empty = counts.copy()
    empty.X[3] = 0
    with pytest.raises(ValueError, match="1 cells have no counts in X"):
        fit_dose_model(empty, **NB_FIT, config=config)
    with pytest.raises(ValueError, match=r"likelihood must be one of \('gaussian', 'nb'\), got 'poisson'"):
        DoseModelConfig(likelihood="poisson")


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
