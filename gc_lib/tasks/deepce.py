"""A compact DeepCE-style model of drug-induced expression change (notebook 08, issue 16).

After DeepCE (Pham et al., *Nature Machine Intelligence* 2021, "A deep learning framework for high-throughput
mechanism-driven phenotype compound screening and its application to COVID-19 drug repurposing"): each gene's
features *attend to the drug's features*, and the attended drug context, the dose and the cell line go through a
per-gene network to that gene's change of expression. Here:

- **drug features**: ``drug_tokens`` vectors of size ``dim`` per drug, either a learned embedding per drug (the drug
  must be seen in training) or a trained linear map of a fixed feature row per drug, e.g. Morgan fingerprints of its
  SMILES (:func:`gc_lib.tasks.drug_features.smiles_fingerprints`), which also serves drugs never seen in training.
  DeepCE runs a graph convolution over the molecule's atoms; a fingerprint with a few learned tokens is the compact
  stand-in;
- **gene features**: a learned vector per gene plus ``P · emb_g`` when a fixed gene-embedding matrix is given
  (GeneCompass, a prior, random …; scaled to unit RMS), with ``P`` trained and initialised at zero, so training starts
  from the model without embeddings. DeepCE feeds fixed gene vectors; the learned per-gene part keeps the "none"
  variant the same network. Nothing is created in ``forward()`` (the published GeneCompass adapter did that);
- **gene → drug attention**: one head, queries from the gene features, keys and values from the drug tokens;
- **dose and cell line**: log10 dose through a small MLP (a continuous input, so unseen doses get a prediction; DeepCE
  one-hot encodes its few doses), and a learned embedding per cell line;
- **per-gene output**: ``[gene, attended drug, dose + cell line]`` → MLP → the gene's change from the control mean of
  its cell line, in units of the training changes' SD per gene; mean squared error. The MLP's first layer is applied
  block by block (gene part once per gene, attention weights times the mapped drug values), which is the same
  function as on the concatenation at a fraction of its cost.

DeepCE's gene–gene self-attention layers are left out: on 978 genes they cost O(genes²) per sample, which the
CPU-sized profiles cannot afford. Entry points: :func:`fit_deepce` (one visible loop, deterministic for a seed on
CPU, global RNG untouched) and :func:`predict_deepce`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from torch import nn
from torch.nn import functional as F

from .dose_response import covariate_codes
from .dose_splits import dense_profiles, drug_codes


@dataclass(frozen=True)
class DeepCEConfig:
    """Sizes and training settings; the defaults fit the 377-well L1000 plate in seconds on 2 cores."""

    dim: int = 32              # size of gene features, drug tokens, dose and cell-line embeddings
    drug_tokens: int = 4       # drug feature vectors the genes attend to
    hidden_dim: int = 32       # width of the per-gene output MLP (its B × genes × hidden activations dominate the cost)
    epochs: int = 100          # passes over the treated wells
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4  # AdamW decay (the plate has ~350 treated wells for ~10⁵ weights)
    batch_size: int = 32
    seed: int = 0              # initial weights and batch order (overridden by fit's ``seed=``)


class DeepCEModel(nn.Module):
    """Gene features attending to drug tokens, with dose and cell line, to per-gene changes (module docstring).

    Attributes besides the layers: ``drugs`` (names), ``cell_lines`` (names), ``feature_names`` (the drug feature
    columns, or ``None`` for learned drug embeddings); buffers ``control_mean`` (cell lines × genes), ``delta_scale``
    (genes), ``drug_features`` (drugs × features, when given), ``gene_embeddings`` (scaled, when given) and
    ``dose_centre`` / ``dose_spread`` (the standardisation of log10 dose).
    """

    def __init__(self, n_genes: int, drugs: list[str], cell_lines: list[str], config: DeepCEConfig, *,
                 drug_features: np.ndarray | None = None, feature_names: list[str] | None = None,
                 gene_embeddings: np.ndarray | None = None):
        super().__init__()
        d, m = config.dim, config.drug_tokens
        self.drugs, self.cell_lines, self.feature_names, self.n_tokens = list(drugs), list(cell_lines), feature_names, m
        self.gene_id = nn.Parameter(torch.randn(n_genes, d) * 0.1)
        if drug_features is None:
            self.drug_embedding, self.drug_map = nn.Embedding(len(drugs), m * d), None
        else:
            self.register_buffer("drug_features", torch.as_tensor(np.asarray(drug_features, dtype=np.float32)))
            self.drug_embedding, self.drug_map = None, nn.Linear(self.drug_features.shape[1], m * d)
        self.key, self.value = nn.Linear(d, d), nn.Linear(d, d)
        self.dose_mlp = nn.Sequential(nn.Linear(1, d), nn.ReLU(), nn.Linear(d, d))
        self.cell_embedding = nn.Embedding(max(len(cell_lines), 1), d)
        # the per-gene MLP's first layer on [gene, attended drug, context], split by input block (same function):
        # the gene part is computed once per gene, the context part once per sample, the drug part per drug token
        h = config.hidden_dim
        self.hidden_gene, self.hidden_drug = nn.Linear(d, h), nn.Linear(d, h, bias=False)
        self.hidden_context, self.output = nn.Linear(d, h, bias=False), nn.Linear(h, 1)
        self.register_buffer("control_mean", torch.zeros(max(len(cell_lines), 1), n_genes))
        self.register_buffer("delta_scale", torch.ones(n_genes))
        self.register_buffer("dose_centre", torch.zeros(()))
        self.register_buffer("dose_spread", torch.ones(()))
        if gene_embeddings is None:
            self.gene_embeddings, self.projection = None, None
        else:
            emb = torch.as_tensor(np.asarray(gene_embeddings, dtype=np.float32))
            if emb.ndim != 2 or emb.shape[0] != n_genes or not torch.isfinite(emb).all():
                raise ValueError(f"gene_embeddings must be a finite n_genes × e = {n_genes} × e matrix, "
                                 f"got shape {tuple(emb.shape)}")
            rms = emb.pow(2).mean().sqrt()
            self.register_buffer("gene_embeddings", emb / rms if rms > 0 else emb)
            self.projection = nn.Parameter(torch.zeros(emb.shape[1], d))

    def genes(self) -> torch.Tensor:
        """Gene features (genes × dim): learned vectors, plus the projected fixed embeddings when given."""
        if self.projection is None:
            return self.gene_id
        return self.gene_id + self.gene_embeddings @ self.projection

    def tokens(self, drug: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """Drug tokens (batch × drug_tokens × dim) of drug codes, or of feature rows when ``features`` is given."""
        if self.drug_map is None:
            flat = self.drug_embedding(drug)
        else:
            flat = self.drug_map(self.drug_features[drug] if features is None else features)
        return flat.view(len(flat), self.n_tokens, -1)

    def forward(self, tokens: torch.Tensor, log_dose: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        """Changes (batch × genes, in units of ``delta_scale``) for drug tokens, log10 doses and cell-line codes."""
        genes = self.genes()                                                   # G × d
        # B × tokens × G: softmax over the (few) tokens along dim 1 runs several times faster on CPU than on a last
        # dimension of size 4
        weights = (torch.einsum("btd,gd->btg", self.key(tokens), genes) / genes.shape[1] ** 0.5).softmax(1)
        dose = self.dose_mlp(((log_dose - self.dose_centre) / self.dose_spread)[:, None])
        context_part = self.hidden_context(dose + self.cell_embedding(cell))[:, None]      # B × 1 × h
        # attention weights sum to 1 over the tokens, so adding the context to every token's mapped value adds it
        # to every gene: one B × G × h product instead of a product and a sum
        drug_and_context = weights.transpose(1, 2) @ (self.hidden_drug(self.value(tokens)) + context_part)
        hidden = torch.relu(self.hidden_gene(genes) + drug_and_context)
        return self.output(hidden).squeeze(-1)


def _feature_rows(drug_features: pd.DataFrame | None, drugs: list[str]) -> np.ndarray | None:
    if drug_features is None:
        return None
    missing = [d for d in drugs if d not in drug_features.index]
    if missing:
        raise ValueError(f"drug_features has no row for {len(missing)} drugs, e.g. {missing[:5]}")
    rows = drug_features.loc[drugs].to_numpy(dtype=np.float32)
    if not np.isfinite(rows).all():
        raise ValueError("drug_features holds non-finite values")
    return rows


def _training_arrays(adata, drug_key, dose_key, control_value, cell_line_key):
    """Per treated well: drug code, log10 dose, cell-line code, change from its cell line's control mean; and the
    drugs, cell lines and control means."""
    drugs, codes, doses = drug_codes(adata, drug_key, dose_key, control_value)
    cell_lines, cells = covariate_codes(adata, cell_line_key)
    cells = np.zeros(adata.n_obs, dtype=np.int64) if cells is None else cells
    X = dense_profiles(adata)
    control = codes == len(drugs)
    control_mean = np.zeros((max(len(cell_lines), 1), X.shape[1]), dtype=np.float32)
    for level in range(len(control_mean)):
        mine = control & (cells == level)
        if not mine.any():
            raise ValueError(f"cell line {cell_lines[level]!r} has no control wells")
        control_mean[level] = X[mine].mean(0)
    treated = ~control
    delta = X[treated] - control_mean[cells[treated]]
    return drugs, cell_lines, control_mean, codes[treated], np.log10(doses[treated]), cells[treated], delta


def fit_deepce(adata: AnnData, *, drug_key: str, dose_key: str, control_value, config: DeepCEConfig | None = None,
               seed: int | None = None, gene_embeddings: np.ndarray | None = None,
               drug_features: pd.DataFrame | None = None, cell_line_key: str | None = None) -> tuple[DeepCEModel, dict]:
    """Fit a :class:`DeepCEModel` on the treated wells of ``adata`` (wells × genes, log-scale ``X``).

    The target of a treated well is its change from the mean control profile of its cell line (``obs[cell_line_key]``;
    one cell line when ``None``). ``drug_features``: a DataFrame drugs × features (index: the drug names) to build drug
    tokens from (else a learned embedding per drug). Returns the model (eval mode) and ``{"mse": [per epoch]}``.
    """
    config = config or DeepCEConfig()
    seed = config.seed if seed is None else seed
    drugs, cell_lines, control_mean, drug, log_dose, cell, delta = _training_arrays(
        adata, drug_key, dose_key, control_value, cell_line_key)
    features = _feature_rows(drug_features, drugs)
    scale = delta.std(0)
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DeepCEModel(delta.shape[1], drugs, cell_lines, config, drug_features=features,
                            feature_names=None if drug_features is None else list(map(str, drug_features.columns)),
                            gene_embeddings=gene_embeddings)
    model.control_mean.copy_(torch.as_tensor(control_mean))
    model.delta_scale.copy_(torch.as_tensor(scale))
    model.dose_centre.fill_(float(log_dose.mean()))
    model.dose_spread.fill_(float(log_dose.std()) or 1.0)
    target = torch.as_tensor(delta / scale, dtype=torch.float32)
    drug, cell = torch.as_tensor(drug), torch.as_tensor(cell)
    log_dose = torch.as_tensor(log_dose, dtype=torch.float32)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    order = torch.Generator().manual_seed(seed)
    history = {"mse": []}
    for _ in range(config.epochs):
        total = 0.0
        for batch in torch.randperm(len(target), generator=order).split(config.batch_size):
            loss = F.mse_loss(model(model.tokens(drug[batch]), log_dose[batch], cell[batch]), target[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(batch)
        history["mse"].append(total / len(target))
    return model.eval(), history


def _cell_codes(model: DeepCEModel, cell_line: str | None, n: int) -> torch.Tensor:
    if cell_line is None:
        if len(model.cell_lines) > 1:
            raise ValueError(f"the model knows cell lines {model.cell_lines[:5]}; pass cell_line=")
        return torch.zeros(n, dtype=torch.long)
    if str(cell_line) not in model.cell_lines:
        raise ValueError(f"unknown cell line {cell_line!r} (known: {model.cell_lines[:5]})")
    return torch.full((n,), model.cell_lines.index(str(cell_line)), dtype=torch.long)


def _tokens_for(model: DeepCEModel, drugs: list[str], drug_features: pd.DataFrame | None) -> torch.Tensor:
    """Drug tokens of named drugs: from ``drug_features`` rows when given (any drug, seen or not), else the model's."""
    if drug_features is not None:
        if model.drug_map is None:
            raise ValueError("this model learned one embedding per drug; it takes no drug_features")
        if model.feature_names != list(map(str, drug_features.columns)):
            raise ValueError("drug_features has other columns than the model was trained with")
        return model.tokens(None, torch.as_tensor(_feature_rows(drug_features, drugs)))
    unknown = sorted(set(drugs) - set(model.drugs))
    if unknown:
        raise ValueError(f"drugs {unknown[:5]} were not in training; pass their drug_features (a model built on "
                         "drug features can predict unseen drugs, one with learned drug embeddings cannot)")
    code = {name: i for i, name in enumerate(model.drugs)}
    return model.tokens(torch.as_tensor([code[d] for d in drugs]))


def predict_deepce(model: DeepCEModel, drugs, doses, *, cell_line: str | None = None,
                   drug_features: pd.DataFrame | None = None) -> np.ndarray:
    """Predicted mean profiles (len(drugs) × genes, the scale of the training data): control mean + change.

    ``drug_features``: rows for the drugs (needed for drugs unseen in training; the model must use features).
    """
    drugs, doses = [str(d) for d in drugs], np.asarray(doses, dtype=np.float64)
    if len(drugs) != len(doses):
        raise ValueError(f"{len(drugs)} drugs but {len(doses)} doses")
    if not (np.isfinite(doses).all() and (doses > 0).all()):
        raise ValueError("doses must be finite and > 0 (controls are the control mean itself)")
    cell = _cell_codes(model, cell_line, len(drugs))
    with torch.no_grad():
        tokens = _tokens_for(model, drugs, drug_features)
        change = model(tokens, torch.as_tensor(np.log10(doses), dtype=torch.float32), cell) * model.delta_scale
        return (model.control_mean[cell] + change).numpy()
