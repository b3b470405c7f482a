"""Cell-type annotation within and across species (gc_lib.tasks.cross_species, species_splits, species_scores):
ortholog baselines that learn from the training species only, in either direction; donor splits with their fallback
and rare-class rule; scores on the classes both sides share; the share of tokens that carry human priors."""
import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from synthetic import HUMAN, MOUSE, count_cells

from gc_lib.corpus.vocab import SPECIAL_TOKENS, build_vocabulary
from gc_lib.priors.store import align_to_vocab
from gc_lib.tasks import baselines as cb
from gc_lib.tasks import cross_species as xs
from gc_lib.tasks import species_scores as ss
from gc_lib.tasks import species_splits as sps
from gc_lib.tasks.finetune import FinetuneConfig

#: the first 20 genes of each species are one-to-one orthologs (as in the tiny_checkpoint corpus), plus noise rows
PAIRS = pd.concat([pd.DataFrame({"mouse_id": MOUSE[:20], "human_id": HUMAN[:20], "homology_type": "one2one"}),
                   pd.DataFrame({"mouse_id": [MOUSE[20], MOUSE[21]], "human_id": [HUMAN[20], HUMAN[21]],
                                 "homology_type": "one2many"})], ignore_index=True)


def cells(genes: list[str], species: str, kinds: str, n: int, seed: int) -> ad.AnnData:
    """``n`` cells per kind: "A" expresses orthologs 1–5 highly, "B" orthologs 6–10, "C"/"D" orthologs 11–15."""
    parts = []
    for i, kind in enumerate(kinds):
        rates = np.full(len(genes), 0.5)
        start = {"A": 1, "B": 6, "C": 11, "D": 11}[kind]
        rates[start:start + 5] = 12.0
        part = count_cells(n, genes, species, seed + i, rates)
        part.obs["cell_type"] = kind
        parts.append(part)
    return ad.concat(parts, merge="same")


@pytest.fixture(scope="module")
def pair():
    """Human A/B/C and mouse A/B/D cells; D looks like C. Ortholog 0 varies in mouse cells only."""
    human = cells(HUMAN, "human", "ABC", 30, 0)
    mouse = cells(MOUSE, "mouse", "ABD", 20, 10)
    x = mouse.X.toarray()
    x[:, 0] = np.where(np.arange(mouse.n_obs) % 2, 0, 80)
    mouse.X = type(mouse.X)(x)
    return human, mouse


def with_counts(adata: ad.AnnData, change) -> ad.AnnData:
    """A copy of ``adata`` whose dense counts went through ``change``."""
    changed = adata.copy()
    changed.X = type(adata.X)(change(adata.X.toarray()).astype(np.float32))
    return changed


# -- orthologs, both ways ---------------------------------------------------------------------------------------------

def test_one_to_one_pairs_and_species():
    kept = xs.one_to_one_pairs(HUMAN, MOUSE[:10], PAIRS)
    assert list(kept["mouse_id"]) == MOUSE[:10] and list(kept["human_id"]) == HUMAN[:10]
    assert list(xs.one_to_one_pairs(HUMAN[5:8], None, PAIRS)["mouse_id"]) == MOUSE[5:8]   # mouse side unconstrained
    doubled = pd.concat([PAIRS, pd.DataFrame({"mouse_id": [MOUSE[25]], "human_id": [HUMAN[3]],
                                              "homology_type": "one2one"})])
    assert HUMAN[3] not in set(xs.one_to_one_pairs(HUMAN, MOUSE, doubled)["human_id"])   # ambiguous: dropped
    mixed = ad.concat([count_cells(2, HUMAN, "human", 0), count_cells(2, HUMAN, "mouse", 1)])
    with pytest.raises(ValueError, match="one species"):
        xs.species_of(mixed)


def test_ortholog_matrix_aligns_columns_in_both_directions(pair):
    human, mouse = pair
    pairs = xs.one_to_one_pairs(HUMAN, MOUSE, PAIRS).iloc[::-1].reset_index(drop=True)
    for train, test in ((human, mouse), (mouse, human)):
        both = xs.ortholog_matrix(train, test, pairs)
        assert both.shape == (train.n_obs + test.n_obs, 20) and list(both.var_names) == list(pairs["human_id"])
        column = list(pairs["human_id"]).index(HUMAN[7])                   # HUMAN[7] and MOUSE[7] are one gene
        rows = {"human": slice(0, human.n_obs), "mouse": slice(human.n_obs, None)}
        if train is mouse:
            rows = {"mouse": slice(0, mouse.n_obs), "human": slice(mouse.n_obs, None)}
        assert np.array_equal(both.X[rows["mouse"], column].toarray().ravel(), mouse[:, MOUSE[7]].X.toarray().ravel())
        assert np.array_equal(both.X[rows["human"], column].toarray().ravel(), human[:, HUMAN[7]].X.toarray().ravel())
    same = xs.ortholog_pairs(human[:10], human[10:], PAIRS)                # within one species: its measured pairs
    assert list(same["human_id"]) == HUMAN[:20]


@pytest.mark.parametrize("direction", ["human→mouse", "mouse→human"])
def test_ortholog_baseline_learns_from_the_training_species_only(pair, direction):
    human, mouse = pair
    train, test = (human, mouse) if direction == "human→mouse" else (mouse, human)
    predicted, info = xs.ortholog_baseline(train, test, pairs=PAIRS, n_top_genes=12)
    assert info["orthologs"] == 20 and len(info["genes"]) == 12
    chosen = {a is human: list(np.array(HUMAN[:20])[cb.hvg_mask(cb.log_normalise(a[:, a.var_names[:20]]), 12)])
              for a in (human, mouse)}                                     # each species' own 12 HVG orthologs
    assert info["genes"] == chosen[train is human] != chosen[test is human]   # the training cells' choice
    calm = with_counts(test, lambda x: np.where(np.arange(x.shape[1]) == 0, 1.0, x))   # test variance changed
    assert xs.ortholog_baseline(train, calm, pairs=PAIRS, n_top_genes=12)[1]["genes"] == info["genes"]
    scores = ss.shared_class_scores(test.obs["cell_type"], predicted, set(train.obs["cell_type"]))
    assert scores.shared_classes == ["A", "B"] and scores.accuracy >= 0.9
    assert scores.excluded == ({"D": 20} if test is mouse else {"C": 30})
    with pytest.raises(ValueError, match="no one-to-one ortholog"):
        xs.ortholog_baseline(train, test, pairs=PAIRS.iloc[20:])


def test_joint_pca_is_fitted_on_the_training_cells_only_and_knn_transfers(pair):
    human, mouse = pair
    features = xs.ortholog_features(human, mouse, pairs=PAIRS, n_top_genes=12)
    pca, train_pcs, test_pcs = xs.joint_pca(features, n_components=5)
    assert train_pcs.shape == (human.n_obs, 5) and test_pcs.shape == (mouse.n_obs, 5)
    assert np.allclose(pca.mean_, features.train.mean(0), atol=1e-5)
    wild = with_counts(mouse, lambda x: x * np.random.default_rng(0).uniform(0, 5, size=x.shape))
    changed = xs.ortholog_features(human, wild, pairs=PAIRS, n_top_genes=12)
    assert changed.genes == features.genes and not np.allclose(changed.test, features.test)
    refit, _, wild_pcs = xs.joint_pca(changed, n_components=5)
    assert np.array_equal(refit.components_, pca.components_)                  # the test cells changed no axis
    assert np.allclose(wild_pcs[0], (changed.test[0] - pca.mean_) @ pca.components_.T, atol=1e-4)
    swapped = xs.OrthologFeatures(features.test, features.train, features.genes, features.orthologs)
    assert not np.allclose(np.abs(xs.joint_pca(swapped, 5)[0].components_), np.abs(pca.components_), atol=0.05)
    for train, test in ((human, mouse), (mouse, human)):
        predicted, info = xs.ortholog_pca_knn(train, test, pairs=PAIRS, n_top_genes=12, n_components=5)
        assert info["pca_components"] == 5 and 0 < info["explained_variance"] <= 1
        scores = ss.shared_class_scores(test.obs["cell_type"], predicted, set(train.obs["cell_type"]))
        assert scores.accuracy >= 0.9


# -- shared-class scoring ---------------------------------------------------------------------------------------------

def test_shared_class_scores_by_hand():
    truth = ["A", "A", "A", "B", "B", "D", "D"]
    predicted = ["A", "A", "B", "B", "C", "A", "B"]               # C: a training class the test cells lack
    scores = ss.shared_class_scores(truth, predicted, ["A", "B", "C"])
    assert scores.shared_classes == ["A", "B"] and scores.excluded == {"D": 2}
    assert (scores.scored_cells, scores.excluded_cells) == (5, 2)
    assert scores.confusion.to_dict(orient="index") == {"A": {"A": 2, "B": 1, "C": 0}, "B": {"A": 0, "B": 1, "C": 1}}
    assert scores.accuracy == pytest.approx(0.6)
    assert scores.per_class_f1.to_dict() == pytest.approx({"A": 0.8, "B": 0.5})   # A: P 1, R 2/3; B: P 1/2, R 1/2
    assert scores.macro_f1 == pytest.approx(0.65)
    assert scores.macro_f1 == pytest.approx(cb.scores(truth[:5], predicted[:5])["macro_f1"])
    assert json.loads(json.dumps(scores.summary()))["excluded_classes"] == {"D": 2}
    with pytest.raises(ValueError, match="no test cell has a training class"):
        ss.shared_class_scores(["D"], ["A"], ["A"])


def test_per_class_f1_next_to_class_sizes():
    f1 = pd.DataFrame({"A": [0.9, 0.5], "B": [0.1, 0.2]}, index=["ours", "baseline"])
    table = ss.per_class_with_sizes(f1, ["A"] * 5 + ["B"] * 2 + ["R"], ["A"] * 3 + ["B"] + ["X"] * 4)
    assert list(table.index) == ["A", "B", "R", "X"]
    assert table.loc["A"].tolist() == [5, 3, 0.9, 0.5] and table.loc["X", "train_cells"] == 0
    assert np.isnan(table.loc["X", "ours"]) and table.loc["R", "test_cells"] == 0


# -- splits -----------------------------------------------------------------------------------------------------------

def donor_obs(cells_per: dict[tuple[str, str], int]) -> pd.DataFrame:
    """obs with ``cell_type`` and ``donor``: ``cells_per[(donor, class)]`` cells each."""
    rows = [(donor, kind) for (donor, kind), n in cells_per.items() for _ in range(n)]
    return pd.DataFrame(rows, columns=["donor", "cell_type"], index=[f"c{i}" for i in range(len(rows))])


def test_leave_one_donor_out_cycles_donors_and_drops_rare_classes():
    obs = donor_obs({**{(d, "A"): 12 for d in "wxyz"}, **{(d, "B"): 5 for d in "wxyz"}, ("w", "R"): 3})
    plan = sps.donor_splits(obs, [0, 1, 2, 3, 4])
    assert plan.kind == sps.DONOR and "leave one donor out (4 donors" in plan.reason
    assert [s.held_out_donors for s in plan] == [("w",), ("x",), ("y",), ("z",), ("w",)]
    donors, labels = obs["donor"].to_numpy(), obs["cell_type"].to_numpy()
    for split in plan:
        assert not set(donors[split.train]) & set(donors[split.test])
        assert list(split.test) == list(np.flatnonzero(donors == split.held_out_donors[0]))
        assert "R" not in set(labels[split.train])                           # rare: never trained on
    assert plan[0].dropped_classes == {} and plan[1].dropped_classes == {"R": 3}
    assert (labels[plan[0].test] == "R").sum() == 3                           # ... but tested, then left out of scores
    assert np.array_equal(plan[4].test, plan[0].test) and plan[4].seed == 4
    rows, _ = cb.score_splits("oracle", lambda tr, te, s: labels[te], labels, plan, [0, 1, 2, 3, 4])
    assert all(r["accuracy"] == 1 for r in rows)                              # the protocol's functions take it


def test_a_class_in_one_donor_falls_back_to_stratified_splits():
    obs = donor_obs({("w", "A"): 20, ("x", "A"): 20, ("w", "B"): 15, ("w", "C"): 6, ("x", "C"): 6})
    assert sps.donor_fold_problems(obs["cell_type"], obs["donor"]) == [
        "holding out w leaves 'B' 0 training cells (< 10)", "holding out w leaves 'C' 6 training cells (< 10)",
        "holding out x leaves 'C' 6 training cells (< 10)"]
    plan = sps.donor_splits(obs, [0, 1, 2], test_fraction=0.3)
    assert plan.kind == sps.STRATIFIED and "'B' 0 training cells" in plan.reason and "(and 1 more)" in plan.reason
    labels = obs["cell_type"].to_numpy()
    for split in plan:
        assert split.kind == sps.STRATIFIED and split.held_out_donors == ()
        assert not set(split.train) & set(split.test)
        assert (labels[split.test] == "A").sum() == 12                        # 30 % of each class
        assert split.dropped_classes == {"C": 12 - int((labels[split.test] == "C").sum())}   # 12 cells, < 10 train
        assert "C" not in set(labels[split.train]) and "B" in set(labels[split.train])
        covered = np.concatenate([split.train, split.test, np.flatnonzero(labels == "C")])
        assert set(covered) == set(range(len(obs)))
    assert not np.array_equal(plan[0].test, plan[1].test)
    again = sps.donor_splits(obs, [0, 1, 2], test_fraction=0.3)
    assert all(np.array_equal(a.train, b.train) and np.array_equal(a.test, b.test) for a, b in zip(plan, again))


def test_one_donor_or_none_and_lone_cells_still_split():
    obs = donor_obs({("w", "A"): 20, ("w", "B"): 20, ("w", "lone"): 1})
    obs.loc["c0", "cell_type"] = None                                         # unlabelled: joins no split
    for frame in (obs, obs.drop(columns="donor")):
        plan = sps.donor_splits(frame, [0])
        assert plan.kind == sps.STRATIFIED and "needs at least two" in plan.reason
        split = plan[0]
        assert 0 not in set(split.train) | set(split.test) and len(split.train) + len(split.test) + 1 == 40
        assert "lone" not in set(frame["cell_type"].to_numpy()[split.train])


def test_across_species_every_seed_has_the_same_cells(pair):
    human, mouse = pair
    obs = human.obs.copy()
    obs.iloc[:4, obs.columns.get_loc("cell_type")] = "rare"
    plan = sps.cross_species_splits(obs, mouse.obs, [0, 1, 2])
    assert plan.kind == sps.SPECIES and "human cells" in plan.reason and "mouse cells are tested" in plan.reason
    assert all(np.array_equal(s.train, plan[0].train) and np.array_equal(s.test, plan[0].test) for s in plan)
    assert list(plan[0].train) == list(range(4, human.n_obs)) and len(plan[0].test) == mouse.n_obs
    assert plan[2].dropped_classes == {"rare": 4} and [s.seed for s in plan] == [0, 1, 2]


# -- why: priors shared through orthologs -----------------------------------------------------------------------------

def test_prior_token_share_follows_the_prior_alignment():
    genes = pd.DataFrame({"gene_id": HUMAN[:4] + MOUSE[:4], "species": ["human"] * 4 + ["mouse"] * 4,
                          "symbol": [f"s{i}" for i in range(8)]})
    orthologs = pd.DataFrame({"mouse_id": MOUSE[:3], "human_id": HUMAN[:3],
                              "homology_type": ["one2one", "one2one", "one2many"]})   # MOUSE[3]: no ortholog
    vocab = build_vocabulary(genes, orthologs)
    grn = align_to_vocab("grn", pd.DataFrame(np.ones((2, 3)), index=[HUMAN[0], HUMAN[2]]), vocab)
    datasets = {"human": [HUMAN[0], HUMAN[2], HUMAN[3], HUMAN[30]],                  # HUMAN[30]: not a token
                "mouse": MOUSE[:4] + [MOUSE[29], HUMAN[1]]}                           # a human ID is no mouse token
    table = ss.prior_token_share(vocab, datasets, {"grn": grn.mask})
    counts = ["genes", "tokens", "prior_lookup_tokens", "shared_prior_tokens"]
    assert table.loc["human", counts].tolist() == [4, 3, 3, 1] and table.loc["mouse", counts].tolist() == [6, 4, 2, 1]
    assert table.loc["mouse", "prior_lookup_share"] == 0.5 and table.loc["human", "shared_prior_share"] == 1 / 3
    assert table.loc["human", "grn_share"] == pytest.approx(2 / 3) and table.loc["mouse", "grn_share"] == 0.25
    loose = ss.prior_token_share(vocab, datasets, orthology="any")               # one2many partners count too
    assert loose.loc["mouse", ["prior_lookup_tokens", "shared_prior_tokens"]].tolist() == [3, 2]
    assert list(ss.prior_lookup_genes(vocab)[4:]) == [HUMAN[0], HUMAN[1], "", ""]


def test_checkpoint_prior_masks_are_what_the_model_uses(tmp_path):
    from gc_lib.model.architecture import ModelConfig, build_model, save_model

    vocab = build_vocabulary(pd.DataFrame({"gene_id": HUMAN[:3], "species": "human", "symbol": ["a", "b", "c"]}))
    grn = align_to_vocab("grn", pd.DataFrame(np.ones((1, 3)), index=[HUMAN[1]]), vocab)
    config = ModelConfig.preset("tiny", len(vocab), d_model=16, n_heads=2, d_ff=32, max_len=8, prior_dims={"grn": 3})
    save_model(build_model(config, {"grn": grn}), tmp_path)
    masks = ss.checkpoint_prior_masks(tmp_path)
    assert list(masks) == ["grn"] and np.flatnonzero(masks["grn"]).tolist() == [len(SPECIAL_TOKENS) + 1]


# -- the whole run ----------------------------------------------------------------------------------------------------

def test_annotation_runs_baselines_either_way_and_scores_shared_classes(pair):
    human, mouse = pair
    rare = mouse.copy()
    rare.obs["cell_type"] = rare.obs["cell_type"].astype(str)
    rare.obs.iloc[:3, rare.obs.columns.get_loc("cell_type")] = "tiny"            # 3 cells: dropped from training
    summary, table = xs.cross_species_annotation(rare, human, None, None, FinetuneConfig(), pairs=PAIRS,
                                                 n_top_genes=8)
    assert (summary["train_species"], summary["test_species"]) == ("mouse", "human")
    assert summary["dropped_rare_classes"] == {"tiny": 3} and summary["train_classes"] == ["A", "B", "D"]
    assert summary["train_cells"] == 57 and summary["shared_classes"] == ["A", "B"]
    assert summary["excluded_test_cells"] == {"C": 30}
    assert list(table.columns) == ["truth", xs.BASELINE, xs.KNN] and len(table) == human.n_obs
    for method in (xs.BASELINE, xs.KNN):
        expected = ss.shared_class_scores(table["truth"], table[method], ["A", "B", "D"]).summary()
        assert summary["methods"][method] == expected and expected["accuracy"] >= 0.9
    assert set(table.loc[table["truth"] == "C", xs.BASELINE]) <= {"A", "B", "D"}   # never names a class it lacks
    assert json.loads(json.dumps(summary)) == summary


def test_annotation_fine_tunes_on_mouse_and_predicts_human(pair, tiny_checkpoint, tmp_path):
    human, mouse = pair
    import gc_lib

    embedded = [gc_lib.embed(a, tiny_checkpoint, gene_embeddings=False, progress=False, copy=True)
                for a in (mouse, human)]
    config = FinetuneConfig(epochs=1, batch_size=16, patience=1, validation_fraction=0.2, seed=3)
    summary, table = xs.cross_species_annotation(*embedded, tiny_checkpoint, tmp_path / "model", config,
                                                 pairs=PAIRS, n_top_genes=8, scratch_control=True,
                                                 embedding_key="X_genecompass")
    assert list(table.columns) == ["truth", xs.GENECOMPASS, xs.SCRATCH, xs.FROZEN, xs.BASELINE, xs.KNN]
    assert set(table[xs.GENECOMPASS]) <= {"A", "B", "D"} and len(table) == human.n_obs
    assert summary["methods"][xs.SCRATCH]["scored_cells"] == 60 and summary["excluded_test_cells"] == {"C": 30}
    for folder, scratch in (("finetuned", False), ("from_scratch", True)):
        record = json.loads((tmp_path / "model" / folder / "finetune.json").read_text())
        assert record["n_train"] + record["n_validation"] == mouse.n_obs     # fitted on the mouse cells only
        assert record["config"]["from_scratch"] is scratch and record["config"]["seed"] == 3
    with pytest.raises(ValueError, match="scratch_control"):
        xs.cross_species_annotation(mouse, human, tiny_checkpoint, tmp_path, FinetuneConfig(from_scratch=True))


def test_jobs_fitted_ahead_are_the_fits_the_annotation_reuses(pair, tiny_checkpoint, tmp_path):
    from gc_lib.tasks.fit_pool import fit_cell_classifiers

    human, mouse = pair
    mouse = mouse.copy()
    mouse.obs.loc[mouse.obs_names[:3], "cell_type"] = "rare"                    # dropped: under MIN_TRAIN_CELLS
    config = FinetuneConfig(epochs=1, batch_size=16, validation_fraction=0.2, seed=2)
    jobs = xs.finetune_jobs(mouse, tiny_checkpoint, tmp_path / "model", config, scratch_control=True)
    assert list(jobs) == [xs.GENECOMPASS, xs.SCRATCH]
    assert "rare" not in set(jobs[xs.GENECOMPASS].adata.obs["cell_type"])
    fits = fit_cell_classifiers(jobs.values(), workers=1)
    stamps = [(fit.directory / "model.safetensors").stat().st_mtime_ns for fit in fits]
    xs.cross_species_annotation(mouse, human, tiny_checkpoint, tmp_path / "model", config, pairs=PAIRS,
                                n_top_genes=8, scratch_control=True, reuse=True)
    assert [(fit.directory / "model.safetensors").stat().st_mtime_ns for fit in fits] == stamps   # not refitted
