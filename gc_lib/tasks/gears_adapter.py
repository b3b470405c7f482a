"""GEARS, run offline on our inputs, with or without given gene embeddings (notebook 07; optional extra ``gears``).

GEARS (Roohani et al., *Nature Biotechnology* 2024, "Predicting transcriptional outcomes of novel multigene
perturbations with GEARS"; PyPI ``cell-gears`` 0.1.2 on ``torch-geometric``) predicts a cell's expression after a
single or double gene perturbation from a control cell: a gene embedding (smoothed over a co-expression graph of the
genes) plus a perturbation embedding (smoothed over a GO similarity graph of the perturbable genes), decoded per gene.
The GeneCompass paper plugs its gene embeddings into GEARS. :func:`fit_gears` trains GEARS's own code in one of three
variants (``embedding_mode``):

- ``"published"``: GEARS as released (its GO-graph recipe on our GO annotation, its co-expression graph of the
  training cells, randomly initialised embeddings);
- ``"init"``: GEARS's gene embedding, and its perturbation embedding of every perturbable gene that is a measured
  gene, start from the given gene vectors mapped to ``hidden_size`` by a fixed PCA
  (:func:`~gc_lib.tasks.gears_inputs.embeddings_to_hidden`), then train. (The published GeneCompass adapter instead
  created an untrained ``nn.Linear`` inside ``forward()``, so its projection was new and random at every call.) A gene
  whose given vector is all zeros keeps GEARS's random initial vector;
- ``"similarity_graph"``: one of GEARS's graphs (``GearsConfig.replaced_graph``: the gene co-expression graph by
  default, or the GO graph of the perturbable genes) is replaced by a kNN cosine-similarity graph of the given vectors.

**Offline.** Nothing is downloaded: the GO annotation comes from the bundled org.Hs.eg.db and GEARS's inputs are built
from our tables (:mod:`gc_lib.tasks.gears_inputs`). GEARS's API reads pickles, so each run writes, into its own
``work_dir``, ``gene2go_all.pkl`` (symbol → GO terms), ``perturbable_genes.pkl`` (the perturbation graph's genes: the
measured genes and the perturbed genes of any condition in the data, where GO-annotated) and ``split.pkl`` (the
caller's conditions); GEARS itself writes its processed data (``perturb_processed.h5ad``, ``cell_graphs.pkl``, the
co-expression CSV) into ``work_dir/dataset``, which a new fit in the same ``work_dir`` replaces. Its log (stderr)
goes to ``work_dir/gears.log``.

**Splits** come from the caller: GEARS trains on ``train_conditions`` (plus ``"ctrl"``), keeps the model with the best
validation top-20-DE MSE on ``val_conditions``, and never sees the other conditions' cells. **Determinism**: GEARS
draws from the global torch and NumPy generators (control-cell pairing, batch order, initial weights, the 300 control
cells sampled per prediction); they are seeded from ``config.seed`` for each fit and each predicted condition and
restored afterwards, so results repeat on CPU and the caller's generators are untouched.
"""
from __future__ import annotations

import contextlib
import random
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from anndata import AnnData

from ..inputs.gears_data import CONTROL, condition_genes
from .gears_inputs import (
    PERTURBABLE_GENES_FILE,
    SPLIT_FILE,
    cosine_similarity_edges,
    embeddings_to_hidden,
    go_similarity_edges,
    go_terms_by_symbol,
    write_gears_files,
)

EMBEDDING_MODES = ("published", "init", "similarity_graph")
REPLACEABLE_GRAPHS = ("coexpress", "go")
#: GEARS's processed-data folder inside ``work_dir`` (replaced on each fit)
GEARS_DATASET = "dataset"
#: the obs columns GEARS needs (it rebuilds ``condition_name`` from the other two)
OBS_COLUMNS = ("condition", "cell_type")


@dataclass(frozen=True)
class GearsConfig:
    """GEARS's settings (its defaults, except fewer epochs); ``device`` is a torch device string."""

    hidden_size: int = 64
    epochs: int = 20               # 0: initialise only (the model as it would start training)
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 5e-4
    seed: int = 0
    go_top_k: int = 20             # similar genes per gene in the GO graph
    coexpress_top_k: int = 20      # … in GEARS's co-expression graph
    coexpress_threshold: float = 0.4
    similarity_top_k: int = 20     # … in the embedding graph (``similarity_graph``)
    replaced_graph: str = "coexpress"  # the graph ``similarity_graph`` replaces: "coexpress" or "go"
    device: str = "cpu"


@dataclass
class GearsHandle:
    """A trained GEARS model and what :func:`predict_gears` needs: the measured genes (the prediction's columns) and
    the perturbable genes (a predicted condition may perturb only these)."""

    model: Any                     # gears.GEARS; its ``best_model`` predicts
    gene_names: list[str]
    perturbable_genes: list[str]
    config: GearsConfig
    embedding_mode: str
    work_dir: Path
    initial_weights: dict[str, np.ndarray]  # "gene_emb", "pert_emb": GEARS's embeddings as training started


@contextlib.contextmanager
def _gears_session(seed: int, log_path: Path):
    """Seed the global torch / NumPy / random generators GEARS draws from and restore them afterwards; send GEARS's
    stderr log to ``log_path``; silence warnings while GEARS runs (GEARS silences them globally; here only then)."""
    numpy_state, python_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings(), open(log_path, "a") as log, \
            contextlib.redirect_stderr(log):
        warnings.simplefilter("ignore")
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(numpy_state)
            random.setstate(python_state)


def _import_gears():
    """``gears.PertData``, ``gears.GEARS`` and ``GeneSimNetwork``; GEARS seeds torch and silences warnings globally
    on import, which this undoes."""
    try:
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            import scanpy as sc
            verbosity = sc.settings.verbosity
            from gears import GEARS, PertData
            from gears.utils import GeneSimNetwork
            sc.settings.verbosity = verbosity
    except ImportError as error:
        raise ImportError("GEARS is not installed: pip install 'gc_lib[gears]' (cell-gears, torch-geometric)"
                          ) from error
    return PertData, GEARS, GeneSimNetwork


def _check_inputs(adata: AnnData, train: list[str], val: list[str], config: GearsConfig,
                  gene_embeddings: np.ndarray | None, embedding_mode: str) -> None:
    if embedding_mode not in EMBEDDING_MODES:
        raise ValueError(f"unknown embedding_mode {embedding_mode!r}; expected one of {EMBEDDING_MODES}")
    if config.replaced_graph not in REPLACEABLE_GRAPHS:
        raise ValueError(f"unknown replaced_graph {config.replaced_graph!r}; expected one of {REPLACEABLE_GRAPHS}")
    missing = [c for c in OBS_COLUMNS if c not in adata.obs] + (["var['gene_name']"] * ("gene_name" not in adata.var))
    if missing:
        raise ValueError(f"adata lacks {missing} (GEARS's format: obs condition, cell_type; var gene_name)")
    duplicated = adata.var["gene_name"].astype(str)
    duplicated = sorted(set(duplicated[duplicated.duplicated()]))
    if duplicated:
        raise ValueError(f"var['gene_name'] repeats {duplicated[:5]}: GEARS needs one column per gene symbol")
    both = sorted(set(train) & set(val))
    if both:
        raise ValueError(f"conditions {both[:5]} are in both train_conditions and val_conditions")
    present = set(adata.obs["condition"].astype(str))
    for role, conditions in (("train", train), ("val", val)):
        unknown = sorted(set(conditions) - present)
        if unknown:
            raise ValueError(f"unknown {role} conditions {unknown[:5]}: not in adata.obs['condition']")
        if not [c for c in conditions if c != CONTROL]:
            raise ValueError(f"no perturbed {role} conditions given")
    if CONTROL not in present:
        raise ValueError("adata has no control cells (condition 'ctrl')")
    _check_embeddings(gene_embeddings, embedding_mode, adata.n_vars)


def _check_embeddings(gene_embeddings: np.ndarray | None, embedding_mode: str, n_genes: int) -> None:
    if embedding_mode == "published":
        if gene_embeddings is not None:
            raise ValueError("embedding_mode 'published' takes no gene_embeddings; use 'init' or 'similarity_graph'")
        return
    if gene_embeddings is None:
        raise ValueError(f"embedding_mode {embedding_mode!r} needs gene_embeddings (genes × e)")
    shape = np.shape(gene_embeddings)
    if len(shape) != 2 or shape[0] != n_genes:
        raise ValueError(f"gene_embeddings must be {n_genes} genes × e (one row per adata.var), got {shape}")
    if not np.isfinite(gene_embeddings).all():
        raise ValueError("gene_embeddings contain NaN or infinite values")


def _fitting_data(adata: AnnData, conditions: list[str]) -> AnnData:
    """The control, training and validation cells in GEARS's format: sparse float32 X, obs condition + cell_type."""
    keep = adata.obs["condition"].astype(str).isin(conditions).to_numpy()
    obs = pd.DataFrame({c: adata.obs[c].astype(str).to_numpy()[keep] for c in OBS_COLUMNS},
                       index=adata.obs_names[keep])
    var = pd.DataFrame({"gene_name": adata.var["gene_name"].astype(str).to_numpy()}, index=adata.var_names)
    return AnnData(sp.csr_matrix(adata.X[keep], dtype=np.float32), obs=obs, var=var)


class _SeriesMaskableCSR(sp.csr_matrix):
    """CSR that accepts a boolean pandas Series as row mask. ``GEARS.__init__`` indexes ``adata.X`` with one
    (``X[obs.condition == 'ctrl']``), which scipy 1.17 rejects (it calls ``.nonzero()`` on the Series)."""

    def __getitem__(self, key):
        return super().__getitem__(key.to_numpy() if isinstance(key, pd.Series) else key)


def _gears_model(gears_class, pert_data, device: str):
    """``GEARS(pert_data)`` with the scipy shim on ``adata.X`` during its ``__init__`` only."""
    plain = pert_data.adata.X
    pert_data.adata.X = _SeriesMaskableCSR(plain)
    try:
        return gears_class(pert_data, device=device)
    finally:
        pert_data.adata.X = plain


def _candidate_genes(adata: AnnData) -> list[str]:
    """The measured genes and every perturbed gene of the data, each once (measured first)."""
    perturbed = [g for c in adata.obs["condition"].astype(str).unique() for g in condition_genes(c)]
    return list(dict.fromkeys(list(adata.var["gene_name"].astype(str)) + perturbed))


def _perturbable_genes(candidates: list[str], gene2go: dict) -> list[str]:
    """GEARS's perturbation-graph genes: the candidate genes (:func:`_candidate_genes`) that are GO-annotated."""
    return sorted(g for g in candidates if gene2go.get(g))


def _check_perturbable(conditions: list[str], perturbable: list[str]) -> None:
    known = set(perturbable)
    for condition in conditions:
        unknown = [g for g in condition_genes(condition) if g not in known]
        if unknown:
            raise ValueError(f"genes {unknown} of condition {condition!r} are not in GEARS's perturbation graph "
                             "(not a measured or perturbed gene of the data, or without GO annotation)")


def _graph(edges: pd.DataFrame, genes: list[str], gene_sim_network) -> tuple[torch.Tensor, torch.Tensor]:
    network = gene_sim_network(edges, genes, node_map={g: i for i, g in enumerate(genes)})
    return network.edge_index, network.edge_weight


def _model_graphs(gears_model, gene2go: dict, config: GearsConfig, gene_embeddings, embedding_mode: str,
                  gene_sim_network) -> dict[str, torch.Tensor]:
    """``model_initialize`` arguments: our GO graph always; the embedding graph in place of one graph if asked.
    A graph left out here (the co-expression graph) GEARS computes from the training cells."""
    perts, genes = gears_model.pert_list, gears_model.gene_list
    graphs = dict(zip(("G_go", "G_go_weight"),
                      _graph(go_similarity_edges(gene2go, perts, config.go_top_k), perts, gene_sim_network)))
    if embedding_mode != "similarity_graph":
        return graphs
    if config.replaced_graph == "coexpress":
        edges = cosine_similarity_edges(genes, gene_embeddings, config.similarity_top_k)
        graphs["G_coexpress"], graphs["G_coexpress_weight"] = _graph(edges, genes, gene_sim_network)
    else:
        row = {g: i for i, g in enumerate(genes)}
        vectors = np.array([gene_embeddings[row[p]] if p in row else np.zeros(gene_embeddings.shape[1]) for p in perts])
        edges = cosine_similarity_edges(perts, vectors, config.similarity_top_k)
        graphs["G_go"], graphs["G_go_weight"] = _graph(edges, perts, gene_sim_network)
    return graphs


def _initialise_embeddings(gears_model, gene_embeddings: np.ndarray, hidden_size: int) -> None:
    """Copy the mapped gene vectors into GEARS's gene embedding and, for perturbable measured genes, its
    perturbation embedding (rows without a given vector keep their random start)."""
    mapped, has_vector = embeddings_to_hidden(gene_embeddings, hidden_size)
    pert_row = {g: i for i, g in enumerate(gears_model.pert_list)}
    gene_rows = np.flatnonzero(has_vector)
    pert_rows = [(pert_row[g], i) for i, g in enumerate(gears_model.gene_list) if g in pert_row and has_vector[i]]
    with torch.no_grad():
        for model in (gears_model.model, gears_model.best_model):
            model.gene_emb.weight[torch.as_tensor(gene_rows)] = torch.as_tensor(mapped[gene_rows])
            for pert, gene in pert_rows:
                model.pert_emb.weight[pert] = torch.as_tensor(mapped[gene])


def fit_gears(adata: AnnData, train_conditions: list[str], val_conditions: list[str], work_dir: str | Path, *,
              config: GearsConfig = GearsConfig(), gene_embeddings: np.ndarray | None = None,
              embedding_mode: str = "published", gene2go: dict[str, set[str]] | None = None) -> GearsHandle:
    """Train GEARS on ``train_conditions`` (and the control cells), selecting on ``val_conditions``; offline.

    ``adata``: cells × genes in GEARS's format (obs ``condition`` = ``ctrl`` / ``A+ctrl`` / ``A+B``, ``cell_type``;
    var ``gene_name`` symbols; X log-normalised). ``gene_embeddings``: genes × e in ``adata.var`` order, for the
    ``init`` and ``similarity_graph`` variants (module docstring). ``gene2go``: symbol → GO terms (default: the
    bundled org.Hs.eg.db). ``work_dir``: this run's folder (GEARS's files and log; module docstring).
    """
    train = list(dict.fromkeys([CONTROL, *map(str, train_conditions)]))
    val = list(dict.fromkeys(map(str, val_conditions)))
    _check_inputs(adata, train, val, config, gene_embeddings, embedding_mode)
    candidates = _candidate_genes(adata)
    if gene2go is None:
        gene2go = go_terms_by_symbol(candidates)
    perturbable = _perturbable_genes(candidates, gene2go)
    _check_perturbable(train + val, perturbable)
    work_dir = Path(work_dir)
    shutil.rmtree(work_dir / GEARS_DATASET, ignore_errors=True)  # GEARS reuses a cached co-expression graph there
    files = write_gears_files(work_dir, {g: gene2go[g] for g in perturbable}, perturbable,
                              {"train": train, "val": val, "test": []})
    PertData, GEARS, GeneSimNetwork = _import_gears()
    with _gears_session(config.seed, work_dir / "gears.log"):
        pert_data = PertData(str(work_dir), gene_set_path=str(files[PERTURBABLE_GENES_FILE]), default_pert_graph=False)
        pert_data.new_data_process(GEARS_DATASET, adata=_fitting_data(adata, train + val))
        pert_data.prepare_split(split="custom", seed=config.seed, split_dict_path=str(files[SPLIT_FILE]))
        pert_data.get_dataloader(batch_size=config.batch_size)
        pert_data.dataloader.pop("test_loader")  # no test set: GEARS's train() then stops after validation
        if len(pert_data.dataloader["train_loader"]) == 0:
            raise ValueError(f"fewer training cells than batch_size={config.batch_size}: no training batch")
        model = _gears_model(GEARS, pert_data, config.device)
        graphs = _model_graphs(model, gene2go, config, gene_embeddings, embedding_mode, GeneSimNetwork)
        model.model_initialize(hidden_size=config.hidden_size, num_similar_genes_go_graph=config.go_top_k,
                               num_similar_genes_co_express_graph=config.coexpress_top_k,
                               coexpress_threshold=config.coexpress_threshold, **graphs)
        if embedding_mode == "init":
            _initialise_embeddings(model, np.asarray(gene_embeddings), config.hidden_size)
        initial = {name: getattr(model.model, name).weight.detach().cpu().numpy().copy()
                   for name in ("gene_emb", "pert_emb")}
        if config.epochs > 0:
            model.train(epochs=config.epochs, lr=config.lr, weight_decay=config.weight_decay)
    return GearsHandle(model, list(model.gene_list), list(model.pert_list), config, embedding_mode, work_dir, initial)


def predict_gears(handle: GearsHandle, conditions: list[str]) -> np.ndarray:
    """Mean predicted expression (conditions × genes, ``handle.gene_names`` order) of each condition, each from GEARS's
    300 control cells sampled with the fit's seed; seen and unseen conditions alike, ``"ctrl"`` included."""
    conditions = [str(c) for c in conditions]
    _check_perturbable(conditions, handle.perturbable_genes)
    rows = []
    for condition in conditions:
        genes = list(condition_genes(condition))
        with _gears_session(handle.config.seed, handle.work_dir / "gears.log"):
            handle.model.saved_pred.clear()
            rows.append(handle.model.predict([genes])["_".join(genes)])
    return np.asarray(rows, dtype=np.float32).reshape(len(conditions), len(handle.gene_names))
