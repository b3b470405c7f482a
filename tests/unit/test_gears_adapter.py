"""GEARS (``cell-gears``) run offline through :mod:`gc_lib.tasks.gears_adapter` on a tiny Perturb-seq set in GEARS's
format: every variant trains and predicts seen and unseen conditions with the network denied, ``init`` really starts
from the mapped vectors, ``similarity_graph`` really replaces the graph, fits repeat for a seed, errors name the
problem. GEARS's inputs (GO graph, embedding map) are checked on known answers."""
import socket
import urllib.request

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

pytest.importorskip("gears")

from gc_lib.inputs.gears_data import condition_genes  # noqa: E402
from gc_lib.tasks.gears_adapter import GearsConfig, fit_gears, predict_gears  # noqa: E402
from gc_lib.tasks.gears_inputs import (  # noqa: E402
    GENE2GO_FILE,
    PERTURBABLE_GENES_FILE,
    SPLIT_FILE,
    cosine_similarity_edges,
    embeddings_to_hidden,
    go_similarity_edges,
    go_terms_by_symbol,
)

#: 60 real human symbols, each with GO biological-process annotation in org.Hs.eg.db (many share transporter terms)
SYMBOLS = ["A1CF", "A2M", "A2ML1", "A3GALT2", "A4GALT", "A4GNT", "AAAS", "AACS", "AADAC", "AADAT", "AAGAB", "AAK1",
           "AAMDC", "AAMP", "AANAT", "AAR2", "AARS1", "AARS2", "AARSD1", "AASDH", "AASDHPPT", "AASS", "AATF", "AATK",
           "ABAT", "ABCA1", "ABCA2", "ABCA3", "ABCA4", "ABCA5", "ABCA6", "ABCA7", "ABCA8", "ABCA9", "ABCA10", "ABCA12",
           "ABCA13", "ABCB1", "ABCB4", "ABCB5", "ABCB6", "ABCB7", "ABCB8", "ABCB9", "ABCB10", "ABCB11", "ABCC1",
           "ABCC2", "ABCC3", "ABCC4", "ABCC5", "ABCC6", "ABCC8", "ABCC9", "ABCC10", "ABCC11", "ABCC12", "ABCD1",
           "ABCD2", "ABCD3"]
SINGLES = [f"{g}+ctrl" for g in SYMBOLS[:8]]
DOUBLES = [f"{SYMBOLS[i]}+{SYMBOLS[i + 1]}" for i in (0, 2, 4, 6)]
TRAIN, VAL = SINGLES[:6] + DOUBLES[:2], [SINGLES[6], DOUBLES[2]]
#: never trained on: a single and a double of the data, and a measured gene that no cell perturbs
UNSEEN = [SINGLES[7], DOUBLES[3], f"{SYMBOLS[30]}+ctrl", f"{SYMBOLS[30]}+{SYMBOLS[40]}"]
PREDICTED = ["ctrl", TRAIN[0], TRAIN[-1], *VAL, *UNSEEN]
CONFIG = GearsConfig(hidden_size=16, epochs=1, batch_size=16, go_top_k=5, coexpress_top_k=5, similarity_top_k=5)
EMBEDDING_DIM = 24


def perturb_seq(seed: int = 0, n_control: int = 40, n_per_condition: int = 12) -> ad.AnnData:
    """Poisson counts, log-normalised; a perturbation lowers its own gene to 10 % and four others to 40 %."""
    rng = np.random.default_rng(seed)
    rates = rng.gamma(2.0, 2.0, len(SYMBOLS))
    effect = {}
    for gene in SYMBOLS[:8]:
        effect[gene] = np.ones(len(SYMBOLS))
        effect[gene][rng.choice(len(SYMBOLS), 4, replace=False)] = 0.4
        effect[gene][SYMBOLS.index(gene)] = 0.1
    conditions = ["ctrl"] * n_control + [c for c in SINGLES + DOUBLES for _ in range(n_per_condition)]
    scale = np.array([np.prod([effect[g] for g in condition_genes(c)], axis=0) if c != "ctrl" else 1.0
                      for c in conditions], dtype=object)
    counts = rng.poisson(np.vstack([rates * s for s in scale])).astype(np.float32)
    values = np.log1p(counts / counts.sum(axis=1, keepdims=True) * 1e4)
    obs = pd.DataFrame({"condition": conditions, "cell_type": "K562"}, index=[f"c{i}" for i in range(len(conditions))])
    obs["condition_name"] = "K562_" + obs["condition"] + "_1"
    var = pd.DataFrame({"gene_name": SYMBOLS}, index=[f"ENSG{i:011d}" for i in range(len(SYMBOLS))])
    return ad.AnnData(sp.csr_matrix(values), obs=obs, var=var)


def synthetic_gene2go() -> dict[str, set[str]]:
    """Six GO-like groups of ten genes plus one shared and one private term each (bundle-free)."""
    return {g: {f"GO:group{i // 10}", f"GO:odd{i % 2}", f"GO:own{i}"} for i, g in enumerate(SYMBOLS)}


def _deny(*_, **__):
    raise AssertionError("network access during a GEARS test")


@pytest.fixture(scope="module", autouse=True)
def offline(tmp_path_factory):
    """No sockets, urllib or requests while this module runs; the working directory is an empty folder."""
    import gears.utils

    cwd = tmp_path_factory.mktemp("cwd")
    with pytest.MonkeyPatch.context() as patch:
        for target, name in ((socket.socket, "connect"), (socket, "create_connection"),
                             (urllib.request, "urlopen"), (gears.utils.requests, "get")):
            patch.setattr(target, name, _deny)
        patch.chdir(cwd)
        yield cwd


@pytest.fixture(scope="module")
def data():
    return perturb_seq()


@pytest.fixture(scope="module")
def embeddings():
    vectors = np.random.default_rng(1).normal(size=(len(SYMBOLS), EMBEDDING_DIM))
    vectors[5] = 0.0  # a gene without an embedding
    return vectors


@pytest.fixture(scope="module")
def fits(data, embeddings, tmp_path_factory):
    """One 1-epoch fit per variant, and its predictions of :data:`PREDICTED`."""
    out = {}
    for mode in ("published", "init", "similarity_graph"):
        handle = fit_gears(data, TRAIN, VAL, tmp_path_factory.mktemp(mode), config=CONFIG, gene2go=synthetic_gene2go(),
                           gene_embeddings=None if mode == "published" else embeddings, embedding_mode=mode)
        out[mode] = handle, predict_gears(handle, PREDICTED)
    return out


def test_go_graph_follows_gears_recipe():
    gene2go = {"A": {"t1", "t2"}, "B": {"t1", "t2", "t3"}, "C": {"t4"}, "D": {"t1", *(f"u{i}" for i in range(10))}}
    edges = go_similarity_edges(gene2go, ["A", "B", "C", "D"], k=1)
    weight = {(s, t): w for s, t, w in edges.itertuples(index=False)}
    # each gene keeps itself (Jaccard 1) and its best other gene; A–D (1/12) is below GEARS's 0.1
    assert weight == pytest.approx({("A", "A"): 1, ("B", "A"): 2 / 3, ("B", "B"): 1, ("A", "B"): 2 / 3,
                                    ("C", "C"): 1, ("D", "D"): 1})
    with pytest.raises(ValueError, match="no GO terms"):
        go_similarity_edges(gene2go, ["A", "E"], k=1)


def test_embedding_map_is_a_fixed_pca_scaled_to_unit_rows():
    vectors = np.random.default_rng(0).normal(size=(10, 5))
    vectors[3] = 0.0
    mapped, has_vector = embeddings_to_hidden(vectors, hidden_size=8)
    assert mapped.shape == (10, 8) and not has_vector[3] and not mapped[3].any()
    assert not mapped[:, 5:].any()  # 5 dimensions: the last three columns stay zero
    assert np.linalg.norm(mapped, axis=1).max() == pytest.approx(1.0)
    rows = vectors[has_vector]  # all components kept: distances are preserved up to one scale
    ratio = np.linalg.norm(mapped[has_vector][0] - mapped[has_vector][1:], axis=1) / \
        np.linalg.norm(rows[0] - rows[1:], axis=1)
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-4)
    np.testing.assert_array_equal(mapped, embeddings_to_hidden(vectors, hidden_size=8)[0])


@pytest.mark.parametrize("mode", ["published", "init", "similarity_graph"])
def test_each_variant_predicts_seen_and_unseen_conditions(fits, mode):
    handle, predicted = fits[mode]
    assert predicted.shape == (len(PREDICTED), len(SYMBOLS)) and np.isfinite(predicted).all()
    assert handle.gene_names == SYMBOLS
    assert not np.allclose(predicted[0], predicted[PREDICTED.index(UNSEEN[1])])  # a perturbation changes the output


def test_predictions_do_not_depend_on_the_order_asked(fits):
    handle, predicted = fits["published"]
    np.testing.assert_array_equal(predict_gears(handle, PREDICTED[::-1]), predicted[::-1])


def test_run_folder_holds_gears_files_and_nothing_is_written_elsewhere(fits, offline):
    handle, _ = fits["published"]
    written = {p.name for p in handle.work_dir.iterdir()}
    assert {GENE2GO_FILE, PERTURBABLE_GENES_FILE, SPLIT_FILE, "gears.log", "dataset"} <= written
    assert list(offline.iterdir()) == []


def test_init_starts_from_the_mapped_vectors_then_trains(fits, embeddings):
    handle, _ = fits["init"]
    mapped, has_vector = embeddings_to_hidden(embeddings, CONFIG.hidden_size)
    start = handle.initial_weights
    np.testing.assert_allclose(start["gene_emb"][has_vector], mapped[has_vector], atol=1e-6)
    assert not np.allclose(start["gene_emb"][5], 0)  # no vector: GEARS's random start kept
    pert_rows = [handle.perturbable_genes.index(g) for g in SYMBOLS]
    np.testing.assert_allclose(start["pert_emb"][pert_rows][has_vector], mapped[has_vector], atol=1e-6)
    trained = handle.model.best_model.gene_emb.weight.detach().numpy()
    assert not np.allclose(trained, start["gene_emb"])
    published_start = fits["published"][0].initial_weights["gene_emb"]
    assert not np.allclose(published_start[has_vector], mapped[has_vector], atol=1e-3)


def _edges(model, name: str) -> set[tuple[int, int]]:
    return set(map(tuple, getattr(model, name).T.tolist()))


def test_similarity_graph_replaces_the_coexpression_graph(fits, embeddings):
    handle, _ = fits["similarity_graph"]
    expected = cosine_similarity_edges(SYMBOLS, embeddings, CONFIG.similarity_top_k)
    index = {g: i for i, g in enumerate(SYMBOLS)}
    assert _edges(handle.model.model, "G_coexpress") == {(index[s], index[t]) for s, t in
                                                         zip(expected["source"], expected["target"])}
    assert _edges(fits["published"][0].model.model, "G_coexpress") != _edges(handle.model.model, "G_coexpress")
    assert _edges(fits["published"][0].model.model, "G_sim") == _edges(handle.model.model, "G_sim")  # same GO graph


def test_a_fit_repeats_for_a_seed(fits, data, tmp_path):
    handle, predicted = fits["published"]
    again = fit_gears(data, TRAIN, VAL, tmp_path, config=CONFIG, gene2go=synthetic_gene2go())
    np.testing.assert_array_equal(predict_gears(again, PREDICTED), predicted)


def test_errors_name_the_problem(fits, data, embeddings, tmp_path):
    handle, _ = fits["published"]
    fit = dict(config=CONFIG, gene2go=synthetic_gene2go())
    with pytest.raises(ValueError, match=r"unknown train conditions \['NOPE\+ctrl'\]"):
        fit_gears(data, [*TRAIN, "NOPE+ctrl"], VAL, tmp_path, **fit)
    with pytest.raises(ValueError, match="condition 'A1CF' is not in GEARS's format"):
        predict_gears(handle, ["A1CF"])
    with pytest.raises(ValueError, match=r"genes \['NOTAGENE'\] of condition 'A1CF\+NOTAGENE'"):
        predict_gears(handle, ["A1CF+NOTAGENE"])
    with pytest.raises(ValueError, match=r"must be 60 genes × e .* got \(59, 24\)"):
        fit_gears(data, TRAIN, VAL, tmp_path, gene_embeddings=embeddings[1:], embedding_mode="init", **fit)
    with pytest.raises(ValueError, match="needs gene_embeddings"):
        fit_gears(data, TRAIN, VAL, tmp_path, embedding_mode="similarity_graph", **fit)
    with pytest.raises(ValueError, match="takes no gene_embeddings"):
        fit_gears(data, TRAIN, VAL, tmp_path, gene_embeddings=embeddings, **fit)
    with pytest.raises(ValueError, match="unknown embedding_mode"):
        fit_gears(data, TRAIN, VAL, tmp_path, embedding_mode="finetune", **fit)
    without_go = {g: t for g, t in synthetic_gene2go().items() if g != SYMBOLS[0]}
    with pytest.raises(ValueError, match=r"genes \['A1CF'\] of condition 'A1CF\+ctrl' are not in GEARS's pert"):
        fit_gears(data, TRAIN, VAL, tmp_path, config=CONFIG, gene2go=without_go)


def test_go_graph_from_the_bundled_annotation(data, tmp_path):
    gene2go = go_terms_by_symbol(SYMBOLS)
    assert set(gene2go) == set(SYMBOLS)
    edges = go_similarity_edges(gene2go, SYMBOLS, k=CONFIG.go_top_k)
    assert (edges["source"] != edges["target"]).sum() > 20  # the transporters share GO terms
    handle = fit_gears(data, TRAIN, VAL, tmp_path, config=CONFIG)  # gene2go from the bundle
    assert np.isfinite(predict_gears(handle, UNSEEN)).all()
