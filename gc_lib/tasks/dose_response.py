"""A compact CPA-style dose-response model for log-scale profiles (L1000; notebook 08, issue 16).

After CPA, the Compositional Perturbation Autoencoder (Lotfollahi et al., *Molecular Systems Biology* 2023,
"Predicting cellular responses to complex perturbations in high-throughput screens"):

- **encoder**: a profile (n_genes, standardised per gene) → a *basal* latent (d);
- **drug term**: a learned embedding per drug (d) scaled by a learned, monotone dose-response curve
  ``sigmoid(softplus(slope) · (log10 dose − midpoint))`` with a slope and midpoint per drug (CPA's "logsigm" form,
  here on log10 dose as doses span orders of magnitude; the slope is kept positive so the curve *increases* with
  dose and the embedding carries the direction). Controls have dose 0 and a drug term of exactly 0;
- **covariate** (optional): an embedding per level of e.g. the cell line, added to the latent (on the one-line
  L1000 plate it is constant and can be left out);
- **decoder**: latent = basal + drug term (+ covariate) → an MLP → per gene a Gaussian (mean and log-variance),
  trained by Gaussian negative log-likelihood — right for log2 L1000 values. A negative-binomial decoder for counts
  (sci-Plex) is **not implemented** here;
- **adversary**: an MLP classifier on the basal latent predicting the drug (controls are a class of their own). As in
  CPA the updates alternate (each batch: one adversary step on the detached basal latent, then one model step) and
  the model is penalised by ``adversary_weight`` for what the adversary can still read. CPA subtracts the adversary's
  cross-entropy (unbounded); here the model instead minimises the cross-entropy between the adversary's prediction
  and the label frequencies (a bounded "confusion" loss whose optimum is a basal state with no drug information).

**Gene embeddings through a trained path.** An optional fixed matrix ``gene_embeddings`` (n_genes × e: GeneCompass
gene vectors, a prior's vectors, random vectors of the same size — the caller decides) enters the decoder's output
layer: with ``h`` the decoder's last hidden features, the mean of gene g is ``h · (w_g + P · emb_g) + b_g``, where
``P`` (hidden × e) is trained (initialised at zero, so training starts from the model without embeddings). The
matrix is scaled to unit root-mean-square so its units do not matter. Every layer is built in ``__init__``: the
published GeneCompass adapters create a fresh, untrained ``nn.Linear`` inside ``forward()`` on every call, so the
embeddings only ever pass through random projections; nothing here is created in ``forward()``.

Entry points: :func:`fit_dose_model` (one visible training loop, deterministic for a seed on CPU; global RNG state is
left untouched), :func:`predict_dose` (mean profiles for (drug, dose) pairs from a basal state, by default the mean
encoded control profile), :func:`encode_basal` and :func:`dose_curve` for inspection.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from anndata import AnnData
from torch import nn
from torch.nn import functional as F


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


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, n_out))


class DoseModel(nn.Module):
    """Encoder, drug embeddings with dose curves, optional covariate embeddings, Gaussian decoder (see module doc).

    Attributes besides the layers: ``drugs`` (names, in embedding order), ``covariates`` (level names or ``[]``),
    buffers ``gene_mean`` / ``gene_std`` (the standardisation of the training profiles), ``control_basal`` (the mean
    basal latent of the control wells, set by :func:`fit_dose_model`) and ``gene_embeddings`` (scaled, or absent).
    """

    def __init__(self, n_genes: int, drugs: list[str], config: DoseModelConfig, *, covariates: list[str] | None = None,
                 gene_embeddings: np.ndarray | None = None):
        super().__init__()
        d, h = config.latent_dim, config.hidden_dim
        self.drugs, self.covariates = list(drugs), list(covariates or [])
        self.encoder = _mlp(n_genes, h, d)
        n_codes = len(drugs) + 1  # the last code is the controls': dose 0, so its drug term is always 0
        self.drug_embedding = nn.Embedding(n_codes, d)
        self.dose_slope = nn.Parameter(torch.zeros(n_codes))       # softplus(0) ≈ 0.69 per log10 unit
        self.dose_midpoint = nn.Parameter(torch.zeros(n_codes))    # log10 dose at half effect (1 in dose units)
        self.covariate_embedding = nn.Embedding(len(self.covariates), d) if self.covariates else None
        self.decoder_hidden = nn.Sequential(nn.Linear(d, h), nn.ReLU())
        self.mean_out = nn.Linear(h, n_genes)
        self.logvar_out = nn.Linear(h, n_genes)
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
        """Mean and log-variance per gene (standardised units) of latents."""
        hidden = self.decoder_hidden(latent)
        weight = self.mean_out.weight                                  # n_genes × hidden: w_g per row
        if self.projection is not None:
            weight = weight + self.gene_embeddings @ self.projection.T  # w_g + P · emb_g
        mean = hidden @ weight.T + self.mean_out.bias
        return mean, self.logvar_out(hidden).clamp(-8.0, 8.0)

    def forward(self, x_std, drug, dose, covariate=None):
        """Basal latent, decoded mean and log-variance of standardised profiles with their drug, dose (covariate)."""
        basal = self.encode(x_std)
        latent = basal + self.drug_term(drug, dose)
        if self.covariate_embedding is not None:
            latent = latent + self.covariate_embedding(covariate)
        return (basal, *self.decode(latent))


def _drug_codes(adata: AnnData, drug_key: str, dose_key: str, control_value) -> tuple[list[str], np.ndarray,
                                                                                        np.ndarray]:
    """Drug names (controls excluded), a code per well (controls: ``len(drugs)``) and a dose per well (controls 0)."""
    for key in (drug_key, dose_key):
        if key not in adata.obs.columns:
            raise ValueError(f"obs has no column {key!r} (columns: {list(adata.obs.columns)})")
    names = adata.obs[drug_key].astype(str).to_numpy()
    control = names == str(control_value)
    if not control.any():
        raise ValueError(f"no control wells: no {drug_key} == {control_value!r}")
    drugs = sorted(set(names[~control]))
    if not drugs:
        raise ValueError(f"every well is a control ({drug_key} == {control_value!r}); nothing to fit")
    dose = np.asarray(adata.obs[dose_key], dtype=np.float64)
    bad = ~control & ~(np.isfinite(dose) & (dose > 0))
    if bad.any():
        raise ValueError(f"{int(bad.sum())} treated wells have no positive {dose_key} (e.g. {adata.obs_names[bad][0]})")
    codes = np.where(control, len(drugs), np.searchsorted(drugs, names))   # drugs are sorted; controls last
    return drugs, codes, np.where(control, 0.0, dose)


def _profiles(adata: AnnData) -> np.ndarray:
    X = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    X = np.asarray(X, dtype=np.float32)
    if not np.isfinite(X).all():
        raise ValueError("X holds missing or non-finite values; impute or drop them first")
    return X


def _covariate_codes(adata: AnnData, covariate_key: str | None) -> tuple[list[str], np.ndarray | None]:
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
    """Fit a :class:`DoseModel` to ``adata`` (wells × genes, log-scale values in ``X``) in one training loop.

    ``obs[drug_key]`` names the drug of each well (``control_value`` marks controls, e.g. ``"DMSO"``),
    ``obs[dose_key]`` its dose (ignored for controls). ``seed`` overrides ``config.seed``. Each batch: one adversary
    step (cross-entropy on the detached basal latent), then one model step (Gaussian NLL + ``adversary_weight`` ×
    confusion loss). Returns the model (eval mode, ``control_basal`` set) and a history
    ``{"nll": [...], "adversary_loss": [...], "adversary_accuracy": [...]}`` with one mean per epoch.
    """
    config = config or DoseModelConfig()
    seed = config.seed if seed is None else seed
    drugs, codes, doses = _drug_codes(adata, drug_key, dose_key, control_value)
    covariates, cov_codes = _covariate_codes(adata, covariate_key)
    X = _profiles(adata)
    mean, std = X.mean(0), X.std(0)
    std = np.where(std > 0, std, 1.0)          # a constant gene is centred, not scaled
    x = torch.as_tensor((X - mean) / std)
    drug, dose = torch.as_tensor(codes), torch.as_tensor(doses, dtype=torch.float32)
    cov = None if cov_codes is None else torch.as_tensor(cov_codes)
    prior = torch.bincount(drug, minlength=len(drugs) + 1).float() / len(drug)   # label frequencies
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DoseModel(X.shape[1], drugs, config, covariates=covariates, gene_embeddings=gene_embeddings)
        adversary = _mlp(config.latent_dim, config.hidden_dim, len(drugs) + 1)
    model.gene_mean.copy_(torch.as_tensor(mean))
    model.gene_std.copy_(torch.as_tensor(std))
    opt_model = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    opt_adv = torch.optim.Adam(adversary.parameters(), lr=config.learning_rate)
    order = torch.Generator().manual_seed(seed)
    history = {"nll": [], "adversary_loss": [], "adversary_accuracy": []}
    for epoch in range(config.epochs):
        sums = np.zeros(3)
        for batch in torch.randperm(len(x), generator=order).split(config.batch_size):
            xb, db, sb = x[batch], drug[batch], dose[batch]
            # 1. the adversary learns to read the drug from the (fixed) basal latent
            with torch.no_grad():
                basal = model.encode(xb)
            logits = adversary(basal)
            adv_loss = F.cross_entropy(logits, db)
            opt_adv.zero_grad()
            adv_loss.backward()
            opt_adv.step()
            # 2. the model reconstructs the profile and pushes the adversary's prediction towards the label prior
            basal, mu, logvar = model(xb, db, sb, None if cov is None else cov[batch])
            nll = F.gaussian_nll_loss(mu, xb, logvar.exp(), full=True)
            confusion = -(F.log_softmax(adversary(basal), dim=1) * prior).sum(1).mean()
            loss = nll + config.adversary_weight * confusion
            opt_model.zero_grad()
            loss.backward()
            opt_model.step()
            n = len(batch)
            sums += n * np.array([nll.item(), adv_loss.item(), (logits.argmax(1) == db).float().mean().item()])
        for name, value in zip(history, sums / len(x)):
            history[name].append(float(value))
        if progress:
            print(f"epoch {epoch + 1}/{config.epochs}: nll {history['nll'][-1]:.3f}, adversary loss "
                  f"{history['adversary_loss'][-1]:.3f}, accuracy {history['adversary_accuracy'][-1]:.2f}")
    model.eval()
    with torch.no_grad():
        model.control_basal.copy_(model.encode(x[drug == len(drugs)]).mean(0))
    return model, history


def _standardise(model: DoseModel, X) -> torch.Tensor:
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[1] != len(model.gene_mean):
        raise ValueError(f"profiles must be n × {len(model.gene_mean)} genes, got shape {X.shape}")
    return (torch.as_tensor(X) - model.gene_mean) / model.gene_std


def encode_basal(model: DoseModel, X) -> np.ndarray:
    """Basal latents (n × d) of profiles ``X`` (n × n_genes, the scale of the training data)."""
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


def predict_dose(model: DoseModel, drugs, doses, basal=None, *, covariate: str | None = None) -> np.ndarray:
    """Predicted mean profiles (len(drugs) × n_genes, the scale of the training data) of the (drug, dose) pairs.

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
        if model.covariate_embedding is not None:
            if covariate is None and len(model.covariates) > 1:
                raise ValueError(f"the model has covariates {model.covariates[:5]}; pass covariate=")
            level = model.covariates[0] if covariate is None else str(covariate)
            if level not in model.covariates:
                raise ValueError(f"unknown covariate {level!r} (known: {model.covariates[:5]})")
            latent = latent + model.covariate_embedding(torch.as_tensor(model.covariates.index(level)))
        mean, _ = model.decode(latent)
        return (mean * model.gene_std + model.gene_mean).numpy()
