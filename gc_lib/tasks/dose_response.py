"""A compact CPA-style dose-response model for log-scale profiles (L1000) or counts (sci-Plex); notebook 08, issue 16.

After CPA, the Compositional Perturbation Autoencoder (Lotfollahi et al., *Molecular Systems Biology* 2023,
"Predicting cellular responses to complex perturbations in high-throughput screens"):

- **encoder**: a profile (n_genes, standardised per gene; for counts, ``log1p(counts / library × 10⁴)`` standardised
  per gene) → a *basal* latent (d);
- **drug term**: a learned embedding per drug (d) scaled by a learned, monotone dose-response curve
  ``sigmoid(softplus(slope) · (log10 dose − midpoint))`` with a slope and midpoint per drug (CPA's "logsigm" form,
  here on log10 dose as doses span orders of magnitude; the slope is kept positive so the curve *increases* with
  dose and the embedding carries the direction). Controls have dose 0 and a drug term of exactly 0;
- **covariate** (optional): an embedding per level of e.g. the cell line, added to the latent (on the one-line
  L1000 plate it is constant and can be left out);
- **decoder**: latent = basal + drug term (+ covariate) → an MLP → per gene either
  a Gaussian (mean and log-variance; ``likelihood="gaussian"``, the default) trained by Gaussian negative
  log-likelihood — right for log2 L1000 values — or, for counts (``likelihood="nb"``, sci-Plex), a negative binomial
  as in CPA and scVI: mean = library size × softmax over genes of the decoder's logits, and a learned inverse
  dispersion θ per gene, trained by the NB negative log-likelihood (:mod:`gc_lib.tasks.dose_likelihoods`);
- **adversary**: an MLP classifier on the basal latent predicting the drug (controls are a class of their own). As in
  CPA the updates alternate (each batch: one adversary step on the detached basal latent, then one model step) and
  the model is penalised by ``adversary_weight`` for what the adversary can still read. CPA subtracts the adversary's
  cross-entropy (unbounded); here the model instead minimises the cross-entropy between the adversary's prediction
  and the label frequencies (a bounded "confusion" loss whose optimum is a basal state with no drug information).

**Gene embeddings through a trained path.** An optional fixed matrix ``gene_embeddings`` (n_genes × e: GeneCompass
gene vectors, a prior's vectors, random vectors of the same size — the caller decides) enters the decoder's output
layer: with ``h`` the decoder's last hidden features, the mean (for counts: the mean logit) of gene g is
``h · (w_g + P · emb_g) + b_g``, where ``P`` (hidden × e) is trained (initialised at zero, so training starts from
the model without embeddings). The matrix is scaled to unit root-mean-square so its units do not matter. Every
layer is built in ``__init__``: the published GeneCompass adapters create a fresh, untrained ``nn.Linear`` inside
``forward()`` on every call, so the embeddings only ever pass through random projections; nothing here is created in
``forward()``.

Entry points: :func:`fit_dose_model` (one visible training loop, deterministic for a seed on CPU; global RNG state is
left untouched), :func:`predict_dose` (mean profiles for (drug, dose) pairs from a basal state, by default the mean
encoded control profile; for counts the log-normalised expected expression ``log1p(10⁴ × softmax)``),
:func:`encode_basal` and :func:`dose_curve` for inspection.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from anndata import AnnData
from torch import nn
from torch.nn import functional as F

from .dose_likelihoods import COUNTS_PER_CELL, check_counts, gaussian_nll, log_normalise, nb_nll, training_counts
from .dose_splits import dense_profiles, drug_codes

LIKELIHOODS = ("gaussian", "nb")


@dataclass(frozen=True)
class DoseModelConfig:
    """Sizes and training settings; the defaults fit the 377-well L1000 plate in a few seconds on 2 cores."""

    latent_dim: int = 32            # d: size of the basal latent, the drug embeddings and the covariate embeddings
    hidden_dim: int = 128           # width of the hidden layer of the encoder, the decoder and the adversary
    epochs: int = 150               # passes over the wells
    learning_rate: float = 3e-3     # Adam step size, for the model and the adversary alike
    adversary_weight: float = 5.0   # weight of the confusion penalty on the basal latent (0: no adversarial training)
    batch_size: int = 64            # wells per step (the last batch of an epoch may be smaller)
    seed: int = 0                   # seeds the initial weights and the batch order (overridden by fit's ``seed=``)
    likelihood: str = "gaussian"    # "gaussian" (log-scale values in X) or "nb" (counts in layers["counts"] or X)

    def __post_init__(self):
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {self.likelihood!r}")


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, n_out))


class DoseModel(nn.Module):
    """Encoder, drug embeddings with dose curves, optional covariate embeddings, Gaussian or NB decoder (module doc).

    Attributes besides the layers: ``likelihood`` (``"gaussian"`` or ``"nb"``), ``drugs`` (names, in embedding
    order), ``covariates`` (level names or ``[]``), buffers ``gene_mean`` / ``gene_std`` (the standardisation of the
    encoder's training input), ``control_basal`` (the mean basal latent of the control wells, set by
    :func:`fit_dose_model`) and ``gene_embeddings`` (scaled, or absent). The Gaussian decoder has ``logvar_out``, the
    NB decoder ``log_theta`` (log inverse dispersion per gene, starting at θ = 1); the other is ``None``.
    """

    def __init__(self, n_genes: int, drugs: list[str], config: DoseModelConfig, *, covariates: list[str] | None = None,
                 gene_embeddings: np.ndarray | None = None):
        super().__init__()
        d, h = config.latent_dim, config.hidden_dim
        self.likelihood, self.drugs, self.covariates = config.likelihood, list(drugs), list(covariates or [])
        self.encoder = _mlp(n_genes, h, d)
        n_codes = len(drugs) + 1  # the last code is the controls': dose 0, so its drug term is always 0
        self.drug_embedding = nn.Embedding(n_codes, d)
        self.dose_slope = nn.Parameter(torch.zeros(n_codes))       # softplus(0) ≈ 0.69 per log10 unit
        self.dose_midpoint = nn.Parameter(torch.zeros(n_codes))    # log10 dose at half effect (1 in dose units)
        self.covariate_embedding = nn.Embedding(len(self.covariates), d) if self.covariates else None
        self.decoder_hidden = nn.Sequential(nn.Linear(d, h), nn.ReLU())
        self.mean_out = nn.Linear(h, n_genes)
        if self.likelihood == "nb":
            self.logvar_out, self.log_theta = None, nn.Parameter(torch.zeros(n_genes))
        else:
            self.logvar_out, self.log_theta = nn.Linear(h, n_genes), None
        self.register_buffer("gene_mean", torch.zeros(n_genes))
        self.register_buffer("gene_std", torch.ones(n_genes))
        self.register_buffer("control_basal", torch.zeros(d))
        if gene_embeddings is None:
            self.gene_embeddings, self.projection = None, None
        else:
            emb = torch.as_tensor(np.asarray(gene_embeddings, dtype=np.float32))
            if emb.ndim != 2 or emb.shape[0] != n_genes:
                raise ValueError(f"gene_embeddings must be n_genes × e = {n_genes} × e, got shape {tuple(emb.shape)}")
            if not torch.isfinite(emb).all():
                raise ValueError("gene_embeddings holds non-finite values")
            rms = emb.pow(2).mean().sqrt()
            self.register_buffer("gene_embeddings", emb / rms if rms > 0 else emb)
            self.projection = nn.Parameter(torch.zeros(h, emb.shape[1]))  # P: embedding → output weight vector

    def encode(self, x_std: torch.Tensor) -> torch.Tensor:
        """Basal latents of standardised profiles."""
        return self.encoder(x_std)

    def curve(self, drug: torch.Tensor, dose: torch.Tensor) -> torch.Tensor:
        """The dose-response curve of each (drug, dose): 0 at dose 0, rising monotonically towards 1."""
        treated = dose > 0
        log_dose = torch.log10(torch.where(treated, dose, torch.ones_like(dose)))
        value = torch.sigmoid(F.softplus(self.dose_slope[drug]) * (log_dose - self.dose_midpoint[drug]))
        return value * treated

    def drug_term(self, drug: torch.Tensor, dose: torch.Tensor) -> torch.Tensor:
        return self.curve(drug, dose)[:, None] * self.drug_embedding(drug)

    def decode(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per gene of latents, a location and a spread: Gaussian, the mean and log-variance (standardised units);
        NB, the mean logits (their softmax over genes is each gene's expected share of the library) and log θ."""
        hidden = self.decoder_hidden(latent)
        weight = self.mean_out.weight                                  # n_genes × hidden: w_g per row
        if self.projection is not None:
            weight = weight + self.gene_embeddings @ self.projection.T  # w_g + P · emb_g
        location = hidden @ weight.T + self.mean_out.bias
        if self.log_theta is not None:
            return location, self.log_theta.clamp(-8.0, 8.0).expand_as(location)
        return location, self.logvar_out(hidden).clamp(-8.0, 8.0)

    def reconstruction_nll(self, location: torch.Tensor, spread: torch.Tensor, target: torch.Tensor,
                           log_library: torch.Tensor | None = None) -> torch.Tensor:
        """Mean negative log-likelihood of ``target`` (standardised profiles; NB: counts, with the log library size
        of each cell) under the decoded ``location`` and ``spread``."""
        if self.log_theta is None:
            return gaussian_nll(target, location, spread)
        log_mean = log_library[:, None] + F.log_softmax(location, dim=1)   # log(library × softmax), never exp'd
        return nb_nll(target, log_mean, spread).mean()

    def forward(self, x_std, drug, dose, covariate=None):
        """Basal latent and decoded location and spread (see :meth:`decode`) of standardised encoder inputs with
        their drug, dose (and covariate)."""
        basal = self.encode(x_std)
        latent = basal + self.drug_term(drug, dose)
        if self.covariate_embedding is not None:
            latent = latent + self.covariate_embedding(covariate)
        return (basal, *self.decode(latent))


class _TrainingData(NamedTuple):
    """What :func:`fit_dose_model` trains on, built once by :func:`_training_data` for either likelihood."""

    inputs: torch.Tensor              # encoder input, standardised per gene: the profiles, or log-normalised counts
    targets: torch.Tensor             # what the decoder reconstructs: the standardised profiles, or the counts
    log_library: torch.Tensor | None  # log total count of each cell (NB only)
    gene_mean: np.ndarray             # the per-gene standardisation of the encoder input
    gene_std: np.ndarray


def _training_data(adata: AnnData, likelihood: str) -> _TrainingData:
    counts = training_counts(adata) if likelihood == "nb" else None
    X = dense_profiles(adata) if counts is None else log_normalise(counts)
    mean, std = X.mean(0), X.std(0)
    std = np.where(std > 0, std, 1.0)          # a constant gene is centred, not scaled
    x = torch.as_tensor((X - mean) / std)
    if counts is None:
        return _TrainingData(x, x, None, mean, std)
    log_library = torch.as_tensor(np.log(counts.sum(1, dtype=np.float64)), dtype=torch.float32)
    return _TrainingData(x, torch.as_tensor(counts), log_library, mean, std)


def covariate_codes(adata: AnnData, covariate_key: str | None) -> tuple[list[str], np.ndarray | None]:
    """The sorted levels of ``obs[covariate_key]`` and a code per well (``[], None`` when the key is ``None``)."""
    if covariate_key is None:
        return [], None
    if covariate_key not in adata.obs.columns:
        raise ValueError(f"obs has no column {covariate_key!r}")
    values = adata.obs[covariate_key].astype(str).to_numpy()
    levels, codes = np.unique(values, return_inverse=True)
    return levels.tolist(), codes


def fit_dose_model(adata: AnnData, *, drug_key: str, dose_key: str, control_value,
                   config: DoseModelConfig | None = None, seed: int | None = None,
                   gene_embeddings: np.ndarray | None = None, covariate_key: str | None = None,
                   progress: bool = False) -> tuple[DoseModel, dict]:
    """Fit a :class:`DoseModel` to ``adata`` (wells or cells × genes) in one training loop.

    ``config.likelihood`` ``"gaussian"``: log-scale values in ``X``; ``"nb"``: non-negative integer counts in
    ``layers["counts"]`` when present, else in ``X`` (a ValueError otherwise). ``obs[drug_key]`` names the drug of
    each well (``control_value`` marks controls, e.g. ``"DMSO"``), ``obs[dose_key]`` its dose (ignored for controls).
    ``seed`` overrides ``config.seed``. Each batch: one adversary step (cross-entropy on the detached basal latent),
    then one model step (Gaussian or NB NLL + ``adversary_weight`` × confusion loss). Returns the model (eval mode,
    ``control_basal`` set) and a history ``{"nll": [...], "adversary_loss": [...], "adversary_accuracy": [...]}``
    with one mean per epoch (the NLL per gene and well).
    """
    config = config or DoseModelConfig()
    seed = config.seed if seed is None else seed
    drugs, codes, doses = drug_codes(adata, drug_key, dose_key, control_value)
    covariates, cov_codes = covariate_codes(adata, covariate_key)
    data = _training_data(adata, config.likelihood)
    drug, dose = torch.as_tensor(codes), torch.as_tensor(doses, dtype=torch.float32)
    cov = None if cov_codes is None else torch.as_tensor(cov_codes)
    prior = torch.bincount(drug, minlength=len(drugs) + 1).float() / len(drug)   # label frequencies
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DoseModel(data.inputs.shape[1], drugs, config, covariates=covariates, gene_embeddings=gene_embeddings)
        adversary = _mlp(config.latent_dim, config.hidden_dim, len(drugs) + 1)
    model.gene_mean.copy_(torch.as_tensor(data.gene_mean))
    model.gene_std.copy_(torch.as_tensor(data.gene_std))
    opt_model = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    opt_adv = torch.optim.Adam(adversary.parameters(), lr=config.learning_rate)
    order = torch.Generator().manual_seed(seed)
    history = {"nll": [], "adversary_loss": [], "adversary_accuracy": []}
    for epoch in range(config.epochs):
        sums = np.zeros(3)
        for batch in torch.randperm(len(drug), generator=order).split(config.batch_size):
            tensors = (data.inputs, data.targets, data.log_library, drug, dose, cov)
            sums += len(batch) * _train_step(model, adversary, (opt_model, opt_adv), prior, config.adversary_weight,
                                             *(None if t is None else t[batch] for t in tensors))
        for name, value in zip(history, sums / len(drug)):
            history[name].append(float(value))
        if progress:
            print(f"epoch {epoch + 1}/{config.epochs}: nll {history['nll'][-1]:.3f}, adversary loss "
                  f"{history['adversary_loss'][-1]:.3f}, accuracy {history['adversary_accuracy'][-1]:.2f}")
    model.eval()
    with torch.no_grad():
        model.control_basal.copy_(model.encode(data.inputs[drug == len(drugs)]).mean(0))
    return model, history


def _train_step(model: DoseModel, adversary: nn.Module, optimisers, prior: torch.Tensor, adversary_weight: float,
                x, target, log_library, drug, dose, covariate) -> np.ndarray:
    """One batch: an adversary step, then a model step. Returns the model's NLL, the adversary's loss and accuracy."""
    opt_model, opt_adv = optimisers
    # 1. the adversary learns to read the drug from the (fixed) basal latent
    with torch.no_grad():
        basal = model.encode(x)
    logits = adversary(basal)
    adv_loss = F.cross_entropy(logits, drug)
    opt_adv.zero_grad()
    adv_loss.backward()
    opt_adv.step()
    # 2. the model reconstructs the profile and pushes the adversary's prediction towards the label prior
    basal, location, spread = model(x, drug, dose, covariate)
    nll = model.reconstruction_nll(location, spread, target, log_library)
    confusion = -(F.log_softmax(adversary(basal), dim=1) * prior).sum(1).mean()
    loss = nll + adversary_weight * confusion
    opt_model.zero_grad()
    loss.backward()
    opt_model.step()
    return np.array([nll.item(), adv_loss.item(), (logits.argmax(1) == drug).float().mean().item()])


def _standardise(model: DoseModel, X) -> torch.Tensor:
    if model.likelihood == "nb":
        X = log_normalise(check_counts(X, "profiles"))
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[1] != len(model.gene_mean):
        raise ValueError(f"profiles must be n × {len(model.gene_mean)} genes, got shape {X.shape}")
    return (torch.as_tensor(X) - model.gene_mean) / model.gene_std


def encode_basal(model: DoseModel, X) -> np.ndarray:
    """Basal latents (n × d) of profiles ``X`` (n × n_genes, the scale of the training data: counts for NB)."""
    with torch.no_grad():
        return model.encode(_standardise(model, X)).numpy()


def _drug_index(model: DoseModel, drugs) -> torch.Tensor:
    unknown = sorted({str(d) for d in drugs} - set(model.drugs))
    if unknown:
        raise ValueError(f"unknown drugs {unknown[:5]} (the model knows {len(model.drugs)}, e.g. {model.drugs[:3]})")
    code = {name: i for i, name in enumerate(model.drugs)}
    return torch.as_tensor([code[str(d)] for d in drugs])


def dose_curve(model: DoseModel, drug: str, doses) -> np.ndarray:
    """The learned dose-response curve of ``drug`` at ``doses`` (0 at dose 0, increasing, below 1)."""
    doses = np.asarray(doses, dtype=np.float32)
    with torch.no_grad():
        return model.curve(_drug_index(model, [drug] * len(doses)), torch.as_tensor(doses)).numpy()


def _covariate_term(model: DoseModel, covariate: str | None) -> torch.Tensor | float:
    """The covariate embedding to add to a latent (0 when the model has none)."""
    if model.covariate_embedding is None:
        return 0.0
    if covariate is None and len(model.covariates) > 1:
        raise ValueError(f"the model has covariates {model.covariates[:5]}; pass covariate=")
    level = model.covariates[0] if covariate is None else str(covariate)
    if level not in model.covariates:
        raise ValueError(f"unknown covariate {level!r} (known: {model.covariates[:5]})")
    return model.covariate_embedding(torch.as_tensor(model.covariates.index(level)))


def predict_dose(model: DoseModel, drugs, doses, basal=None, *, covariate: str | None = None) -> np.ndarray:
    """Predicted mean profiles (len(drugs) × n_genes) of the (drug, dose) pairs.

    Gaussian model: the predicted mean on the scale of the training data (e.g. log2 L1000 values). NB model: the
    log-normalised expected expression ``log1p(10⁴ × softmax(logits))`` — log1p of the expected counts per 10⁴
    counts of library, the ``normalize_total`` + ``log1p`` scale, comparable across cells of any depth (a cell of
    library size L expects ``L × expm1(prediction) / 10⁴`` counts; this is the log of an expectation, not the
    expected log1p of counts).
    ``basal``: a basal latent (d,), e.g. from :func:`encode_basal`; default the mean encoded control profile.
    ``covariate``: the level to add when the model has covariates (may be left out when there is only one).
    """
    drugs, doses = list(drugs), np.asarray(doses, dtype=np.float32)
    if len(drugs) != len(doses):
        raise ValueError(f"{len(drugs)} drugs but {len(doses)} doses")
    if (doses < 0).any() or not np.isfinite(doses).all():
        raise ValueError("doses must be finite and ≥ 0")
    index = _drug_index(model, drugs)
    base = model.control_basal if basal is None else torch.as_tensor(np.asarray(basal, dtype=np.float32))
    if base.shape != model.control_basal.shape:
        raise ValueError(f"basal must be a latent of size {len(model.control_basal)}, got shape {tuple(base.shape)}")
    with torch.no_grad():
        latent = base + model.drug_term(index, torch.as_tensor(doses))
        location, _ = model.decode(latent + _covariate_term(model, covariate))
        if model.likelihood == "nb":
            return torch.log1p(COUNTS_PER_CELL * torch.softmax(location, dim=1)).numpy()
        return (location * model.gene_std + model.gene_mean).numpy()
