"""GEARS-format conditions, GEARS's simulation split, the baselines and the linear model Y ≈ G K Pᵀ + b on data with a
known answer, and the per-perturbation metrics."""
import anndata as ad
import numpy as np
import pandas as pd
import pytest

from gc_lib.inputs.gears_data import condition_genes
from gc_lib.tasks.perturbseq_data import condition_means, simulation_split, split_table
from gc_lib.tasks.perturbseq_linear import fit_linear, predict_baseline, predict_linear
from gc_lib.tasks.perturbseq_metrics import perturbation_scores, score_perturbations

N_GENES, N_PERTURBED = 40, 16
SYMBOLS = [f"G{i}" for i in range(N_GENES)]


def linear_world(seed: int = 0, noise: float = 0.0):
    """Cells whose perturbation shifts follow a rank-4 model: shift of gene set S = Σ_{g∈S} E K E[g], with E the
    (genes × 4) 'true' embedding. Controls plus every single of the first 16 genes and 24 doubles; 4 cells each."""
    rng = np.random.default_rng(seed)
    E = rng.normal(size=(N_GENES, 4))
    K = rng.normal(size=(4, 4))
    base = rng.uniform(2, 6, N_GENES)
    singles = [f"G{i}+ctrl" for i in range(N_PERTURBED)]
    pairs = [(i, j) for i in range(N_PERTURBED) for j in range(i + 1, N_PERTURBED)]
    doubles = [f"G{i}+G{j}" for i, j in (pairs[k] for k in rng.choice(len(pairs), 24, replace=False))]
    rows, labels = [], []
    for condition in ["ctrl"] * 3 + singles + doubles:
        members = [int(g[1:]) for g in condition_genes(condition)]
        shift = sum((E @ K @ E[m] for m in members), np.zeros(N_GENES))
        for _ in range(4):
            rows.append(base + shift + rng.normal(0, noise + 0.01, N_GENES))
            labels.append(condition)
    obs = pd.DataFrame({"condition": labels}, index=[f"c{i}" for i in range(len(labels))])
    return ad.AnnData(np.asarray(rows, dtype=np.float32), obs=obs, var=pd.DataFrame(index=SYMBOLS)), E


def test_conditions_parse_and_average():
    assert condition_genes("A+ctrl") == ("A",) and condition_genes("ctrl+B") == ("B",)
    assert condition_genes("A+B") == ("A", "B")
    assert condition_genes("ctrl") == ()
    for bad in ("A+B+C", "A+", ""):
        with pytest.raises(ValueError, match="GEARS's format"):
            condition_genes(bad)
    adata, _ = linear_world()
    means = condition_means(adata)
    assert len(means.conditions) == N_PERTURBED + 24 and (means.n_cells == 4).all()
    np.testing.assert_allclose(means.control_mean, adata.X[:12].mean(0), rtol=1e-6)
    with pytest.raises(ValueError, match="control cells"):
        condition_means(adata[12:].copy())


def test_simulation_split_kinds_match_what_training_saw():
    adata, _ = linear_world()
    conditions = condition_means(adata).conditions
    split = simulation_split(conditions, seed=3)
    parts = [set(split.train), set(split.validation), set(split.test)]
    assert set.union(*parts) == set(conditions) and sum(map(len, parts)) == len(conditions)
    seen = {condition_genes(c)[0] for c in split.train + split.validation if len(condition_genes(c)) == 1}
    for condition in split.test:
        members = condition_genes(condition)
        n_seen = sum(g in seen for g in members)
        expected = "unseen_single" if len(members) == 1 else f"combo_seen{n_seen}"
        assert split.kind[condition] == expected, condition
        if len(members) == 1:
            assert n_seen == 0
    assert {"unseen_single", "combo_seen2"} <= set(split.kind[c] for c in split.test)
    assert simulation_split(conditions, seed=3) == split and simulation_split(conditions, seed=4) != split
    table = split_table(split)
    assert (table.groupby("part").size() == [len(split.test), len(split.train), len(split.validation)]).all()


def test_baselines_and_the_linear_model_recover_a_linear_world():
    adata, E = linear_world()
    means = condition_means(adata)
    split = simulation_split(means.conditions, seed=1)
    train, test = split.train + split.validation, split.test
    truth = np.stack([means.means[means.conditions.index(c)] for c in test])
    doubles = [i for i, c in enumerate(test) if len(condition_genes(c)) == 2 and split.kind[c] == "combo_seen2"]
    additive = predict_baseline("additive", means, train, test)
    np.testing.assert_allclose(additive[doubles], truth[doubles], atol=0.05)   # the world is additive
    assert np.allclose(predict_baseline("no_change", means, train, test), means.control_mean)
    with pytest.raises(ValueError, match="unknown baseline"):
        predict_baseline("oracle", means, train, test)

    def error(matrix):
        model = fit_linear(means, train, symbols=SYMBOLS, gene_matrix=matrix, ridge=1e-3)
        return np.mean((predict_linear(model, test) - truth) ** 2)

    true_g = error(E)
    random_g = error(np.random.default_rng(9).normal(size=(N_GENES, 4)))
    mean_error = np.mean((predict_baseline("training_mean", means, train, test) - truth) ** 2)
    print(f"MSE: true G {true_g:.4f}, random G {random_g:.4f}, training mean {mean_error:.4f}")
    assert true_g < 0.01 * mean_error and random_g > 10 * true_g
    pca = fit_linear(means, train, symbols=SYMBOLS, k=4)
    assert pca.gene_matrix.shape == (N_GENES, 4) and np.isfinite(predict_linear(pca, test)).all()
    with pytest.raises(ValueError, match="without a row"):
        predict_linear(pca, ["X1+ctrl"])
    with pytest.raises(ValueError, match="40 rows"):
        fit_linear(means, train, symbols=SYMBOLS, gene_matrix=np.ones((39, 3)))


def test_metrics_of_perfect_null_and_wrong_predictions():
    rng = np.random.default_rng(0)
    control, sd = rng.uniform(1, 5, 1200), np.ones(1200)
    true = control + rng.normal(0, 1, 1200)
    perfect = perturbation_scores(true, true, control, sd)
    assert perfect["pearson_delta"] == pytest.approx(1) and perfect["pearson_delta_de20"] == pytest.approx(1)
    assert perfect["mse_de20"] == 0 and perfect["l2_top1000"] == 0
    null = perturbation_scores(true, control, control, sd)
    assert np.isnan(null["pearson_delta"]) and null["mse_de20"] > 0
    top = np.argsort(-control)[:1000]
    assert null["l2_top1000"] == pytest.approx(np.linalg.norm((true - control)[top]))
    table = score_perturbations(np.stack([true, true]), np.stack([true, control]), ["a+ctrl", "b+ctrl"], control, sd)
    assert list(table["condition"]) == ["a+ctrl", "b+ctrl"] and table["mse_de20"].iloc[0] == 0
    with pytest.raises(ValueError, match="1 conditions must agree"):
        score_perturbations(np.stack([true, true]), np.stack([true, control]), ["a+ctrl"], control, sd)
