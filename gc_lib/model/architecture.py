"""The GeneCompass model (DESIGN.md §1): gene identity + value + four priors in, a BERT-style encoder, two heads.

    input_ids (B, L), values (B, L), species (B,)
      │  per gene token: [ id embedding | value encoding | projected priors … ] ──MLP──► d_model
      │  prepend the species token (<human>/<mouse>) as the cell token; add rank embeddings
      ▼
    encoder: n_layers × (self-attention via F.scaled_dot_product_attention + feed-forward)
      ▼
    hidden (B, 1 + L, d_model) ── masked positions only ──► gene-ID logits (vocab) and value regression

The loss is 0.2 × cross-entropy on masked gene IDs + 0.8 × MSE on masked values, computed **only at masked
positions**: the heads never see the other ~85 % of tokens, which is where most of the published model's
compute went (a full-vocabulary output at every one of 2,048 positions).

Optional, off by default: a cell-level term, GEPC (:mod:`gc_lib.model.heads`): ``gepc_loss_weight`` × the MSE of
each masked value predicted from the cell token's final state and the gene's identity only. Without it nothing
trains the cell token's final state (the heads read gene positions only); notebook 03 shows that state to lie
along one axis that follows sequencing depth (genes per cell, total counts). Measured on validation data (the local
profile's model and corpus, 300 steps, one pretraining seed; frozen logistic-regression probe on 20 % selection sets
carved from notebook 05's pbmc68k training cells, 5 splits, never the test cells): weight 0.5 against 0 gave probe
macro-F1 0.306 ± 0.091 against 0.119 ± 0.019 on the cell token and 0.346 ± 0.043 against 0.262 ± 0.047 on the mean,
and a lower held-out masked-gene loss (ID 8.93 against 9.85, value 0.115 against 0.409). It stays off until a
full-length run confirms it, because switching it changes every downstream number.

Improvements over the paper, each switchable back by config (defaults are ours):
- ``norm="pre"`` (pre-LayerNorm blocks, stable under bf16 and higher learning rates); ``"post"`` is BERT's;
- ``value_encoding="mlp"`` (a small MLP lifts the scalar value to d_model before fusion); ``"scalar"`` concatenates
  the raw value as one number, as the published code does;
- ``attention_dropout=0`` (BERT's is 0.1): PyTorch's fused attention kernels then serve training on CPU too;
- variable-length batches (the data loader buckets by length; padding is masked out of attention), instead of
  padding every cell to 2,048.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..corpus.vocab import Vocabulary
from ..priors.store import PRIOR_NAMES, PriorTable
from .heads import GEPCHead, gepc_loss
from .vocab_check import check_vocabulary

PRESETS: dict[str, dict] = {
    "tiny": dict(n_layers=2, n_heads=2, d_model=128, d_ff=512, max_len=2048),      # tests, CI
    "small": dict(n_layers=6, n_heads=4, d_model=256, d_ff=1024, max_len=2048),    # one CPU / one GPU
    "base": dict(n_layers=12, n_heads=12, d_model=768, d_ff=3072, max_len=2048),   # the paper's ~130M model
}


@dataclass
class ModelConfig:
    vocab_size: int                       # tokens of the vocabulary (specials included)
    n_layers: int = 12                    # encoder blocks
    n_heads: int = 12                     # attention heads (d_model must divide by it)
    d_model: int = 768                    # hidden size
    d_ff: int = 3072                      # feed-forward inner size
    max_len: int = 2048                   # positions, the cell token included (so up to max_len - 1 genes)
    dropout: float = 0.1                  # dropout on embeddings and on each block's residual branches
    attention_dropout: float = 0.0        # dropout on attention weights (BERT and the paper: 0.1; ours: 0, which
                                          # keeps PyTorch's fused attention kernels usable on CPU)
    use_values: bool = True               # feed expression values (False: the "without values" ablation)
    prior_dims: dict[str, int] = field(default_factory=dict)  # priors fed in, name → vector length ({}: none)
    value_encoding: str = "mlp"           # "mlp" (ours) or "scalar" (the paper's raw value in the concatenation)
    norm: str = "pre"                     # "pre" (ours) or "post" (BERT, the paper)
    id_loss_weight: float = 0.2           # weight of the masked gene-ID cross-entropy (paper: 0.2)
    value_loss_weight: float = 0.8        # weight of the masked value MSE (paper: 0.8)
    gepc_loss_weight: float = 0.0         # weight of the cell-level GEPC term (gc_lib.model.heads; 0: off, no head;
                                          # checkpoints written before the option load with it off)
    pad_id: int = 0                       # <pad> token id
    first_species_id: int = 2             # <human>; <mouse> is the next id

    def __post_init__(self):
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        if self.value_encoding not in ("mlp", "scalar"):
            raise ValueError(f"value_encoding must be 'mlp' or 'scalar'; got {self.value_encoding!r}")
        if self.norm not in ("pre", "post"):
            raise ValueError(f"norm must be 'pre' or 'post'; got {self.norm!r}")
        if self.gepc_loss_weight < 0:
            raise ValueError(f"gepc_loss_weight must be >= 0; got {self.gepc_loss_weight}")
        unknown = sorted(set(self.prior_dims) - set(PRIOR_NAMES))
        if unknown:
            raise ValueError(f"unknown priors {unknown}; known: {PRIOR_NAMES}")

    @classmethod
    def preset(cls, name: str, vocab_size: int, **overrides) -> "ModelConfig":
        """A named size (``tiny``, ``small``, ``base``) for a vocabulary, with any field overridden."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls(vocab_size=vocab_size, **{**PRESETS[name], **overrides})

    @classmethod
    def from_checkpoint(cls, directory: str | os.PathLike) -> "ModelConfig":
        """The config of a checkpoint (or any directory :func:`save_model` wrote), read from its ``config.json``."""
        path = Path(directory) / "config.json"
        if not path.exists():
            raise FileNotFoundError(f"{directory} holds no config.json: not a model checkpoint directory")
        fields = json.loads(path.read_text())
        unknown = sorted(set(fields) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"{path} has fields {unknown} that ModelConfig does not know (written by a newer gc_lib?)")
        return cls(**fields)

    def paper_variant(self) -> "ModelConfig":
        """The same size with the published architecture's choices: post-norm, the raw value concatenated,
        dropout on attention weights."""
        return replace(self, norm="post", value_encoding="scalar", attention_dropout=0.1)

    def to_dict(self) -> dict:
        return asdict(self)


class Block(nn.Module):
    """One encoder block: self-attention (SDPA) and a GELU feed-forward, pre- or post-LayerNorm."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_heads, self.pre_norm = config.n_heads, config.norm == "pre"
        self.attention_dropout = config.attention_dropout
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.out = nn.Linear(config.d_model, config.d_model)
        d, d_ff = config.d_model, config.d_ff
        self.ff = nn.Sequential(nn.Linear(d, d_ff), nn.GELU(), nn.Linear(d_ff, d))
        self.norm1, self.norm2 = nn.LayerNorm(config.d_model), nn.LayerNorm(config.d_model)
        self.drop = nn.Dropout(config.dropout)

    def attention(self, x: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        B, L, D = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)  # 3 × (B, H, L, Dh)
        dropout = self.attention_dropout if self.training else 0.0
        if dropout and x.device.type == "cpu":
            # PyTorch's CPU SDPA kernel with dropout is ~40× slower than without (torch 2.13, measured); the
            # explicit softmax-dropout-matmul is the same computation at the normal cost
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
            if key_mask is not None:
                scores = scores.masked_fill(~key_mask, float("-inf"))
            y = F.dropout(scores.softmax(-1), dropout, training=True) @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask, dropout_p=dropout)
        return self.out(y.transpose(1, 2).reshape(B, L, D))

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        if self.pre_norm:
            x = x + self.drop(self.attention(self.norm1(x), key_mask))
            return x + self.drop(self.ff(self.norm2(x)))
        x = self.norm1(x + self.drop(self.attention(x, key_mask)))
        return self.norm2(x + self.drop(self.ff(x)))


class GeneEmbedding(nn.Module):
    """Per gene token: MLP over [id embedding | value encoding | projected priors]; see the module docstring."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        d = config.d_model
        self.config = config
        self.ids = nn.Embedding(config.vocab_size, d, padding_idx=config.pad_id)
        width = d
        if config.use_values:
            if config.value_encoding == "mlp":
                self.value = nn.Sequential(nn.Linear(1, d), nn.GELU(), nn.Linear(d, d))
                width += d
            else:
                self.value = nn.Identity()
                width += 1
        self.prior_names = [n for n in PRIOR_NAMES if n in config.prior_dims]
        for name in self.prior_names:
            # fixed per-token vectors (zero rows where a gene lacks the prior) and their masks, saved with the model
            self.register_buffer(f"prior_{name}", torch.zeros(config.vocab_size, config.prior_dims[name]))
            self.register_buffer(f"has_{name}", torch.zeros(config.vocab_size, dtype=torch.bool))
        self.project = nn.ModuleDict({n: nn.Linear(config.prior_dims[n], d) for n in self.prior_names})
        width += d * len(self.prior_names)
        self.fuse = nn.Sequential(nn.Linear(width, d), nn.GELU(), nn.Linear(d, d))

    def load_priors(self, priors: dict[str, PriorTable]) -> None:
        """Copy the aligned prior tables into the buffers (checks names, vocabulary size and dimensions)."""
        if set(priors) != set(self.prior_names):
            raise ValueError(f"model expects priors {self.prior_names}; got {sorted(priors)}")
        for name, table in priors.items():
            buffer = getattr(self, f"prior_{name}")
            if tuple(table.vectors.shape) != tuple(buffer.shape):
                raise ValueError(f"prior {name!r} has shape {table.vectors.shape}; the model expects "
                                 f"{tuple(buffer.shape)} (vocabulary size × prior_dims[{name!r}])")
            buffer.copy_(torch.as_tensor(table.vectors))
            getattr(self, f"has_{name}").copy_(torch.as_tensor(table.mask))

    def forward(self, input_ids: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        parts = [self.ids(input_ids)]
        if self.config.use_values:
            parts.append(self.value(values.unsqueeze(-1).to(parts[0].dtype)))
        for name in self.prior_names:
            vectors = getattr(self, f"prior_{name}")[input_ids]                              # (B, L, d_prior)
            present = getattr(self, f"has_{name}")[input_ids].unsqueeze(-1)
            parts.append(self.project[name](vectors.to(parts[0].dtype)) * present)       # absent prior → exactly 0
        return self.fuse(torch.cat(parts, dim=-1))


class GeneCompass(nn.Module):
    """The model: :class:`GeneEmbedding`, a species cell token, rank embeddings, the encoder and the MLM heads."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        d = config.d_model
        self.genes = GeneEmbedding(config)
        self.positions = nn.Embedding(config.max_len, d)
        self.embed_norm = nn.LayerNorm(d)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.final_norm = nn.LayerNorm(d) if config.norm == "pre" else nn.Identity()
        self.id_head = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.LayerNorm(d))
        self.id_bias = nn.Parameter(torch.zeros(config.vocab_size))  # decoder weights are tied to the id embedding
        self.value_head = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, 1))
        self.apply(self._init_weights)
        self.gepc_head = None              # built only when used: DDP needs every parameter to get a gradient
        if config.gepc_loss_weight:
            with torch.random.fork_rng(devices=[]):  # its init draws leave the RNG as without it: same seed, same
                self.gepc_head = GEPCHead(d)          # initial weights and dropout for everything else

    def pretraining_heads(self) -> list[nn.Module]:
        """The modules only pretraining uses (the MLM heads, and the GEPC head when built), e.g. to freeze them
        when fine-tuning; the tied decoder bias ``id_bias`` is a parameter of the model itself."""
        return [self.id_head, self.value_head] + ([self.gepc_head] if self.gepc_head is not None else [])

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def encode(self, input_ids: torch.Tensor, values: torch.Tensor, species: torch.Tensor,
               attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states (B, 1 + L, d_model): position 0 is the cell (species) token, then the genes in rank order."""
        return self.encode_from(self.embed_tokens(input_ids, values, species), attention_mask)

    def embed_tokens(self, input_ids: torch.Tensor, values: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """The first encoder block's input (B, 1 + L, d_model): the cell (species) token and the gene tokens
        (:class:`GeneEmbedding`), rank positions added, normalised (and dropout in train mode)."""
        return self.assemble(self.genes(input_ids, values), species)

    def assemble(self, gene_vectors: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """:meth:`embed_tokens` from the gene tokens' :class:`GeneEmbedding` vectors (B, L, d_model), which depend on
        each token alone: the perturbation engine computes a cell's once and reuses them for its edited copies."""
        L = gene_vectors.shape[1]
        if L + 1 > self.config.max_len:
            raise ValueError(f"{L} gene tokens + the cell token exceed max_len {self.config.max_len}")
        cell = self.genes.ids(species.long() + self.config.first_species_id).unsqueeze(1)    # (B, 1, d)
        x = torch.cat([cell, gene_vectors], dim=1)
        return self.drop(self.embed_norm(x + self.positions.weight[: L + 1]))

    def encode_from(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None, *, first_block: int = 0,
                    stop_block: int | None = None) -> torch.Tensor:
        """Run ``blocks[first_block:stop_block]`` on states ``x`` (B, 1 + L, d_model) — the output of
        :meth:`embed_tokens` (``first_block=0``) or of block ``first_block - 1`` — then the final norm unless
        ``stop_block`` is given. Fine-tuning with frozen lower layers computes their output once per cell and starts
        here (:mod:`gc_lib.tasks._finetune_loop`)."""
        key_mask = None
        if attention_mask is not None:
            keep = torch.cat([attention_mask.new_ones(len(x), 1), attention_mask.bool()], dim=1)
            key_mask = keep[:, None, None, :]                                                 # (B, 1, 1, 1 + L)
        for block in self.blocks[first_block:stop_block]:
            x = block(x, key_mask)
        return self.final_norm(x) if stop_block is None else x

    def forward(self, input_ids, values, species, attention_mask=None, masked=None, labels=None,
                value_labels=None) -> dict[str, torch.Tensor]:
        """Masked-gene modelling. With ``masked`` (B, L) bool, ``labels`` and ``value_labels``: the losses, computed
        on masked positions only (``gepc_loss`` too when the GEPC term is on). Without: just ``hidden``."""
        hidden = self.encode(input_ids, values, species, attention_mask)
        out = {"hidden": hidden}
        if masked is None:
            return out
        at = hidden[:, 1:][masked]                                   # (n_masked, d): the heads see nothing else
        logits = self.id_head(at) @ self.genes.ids.weight.T + self.id_bias
        value_pred = self.value_head(at).squeeze(-1)
        id_loss = F.cross_entropy(logits.float(), labels[masked])
        value_loss = F.mse_loss(value_pred.float(), value_labels[masked].float())
        loss = self.config.id_loss_weight * id_loss + self.config.value_loss_weight * value_loss
        if self.gepc_head is not None:
            out["gepc_loss"] = gepc_loss(self.gepc_head, hidden, self.genes.ids, masked, labels, value_labels)
            loss = loss + self.config.gepc_loss_weight * out["gepc_loss"]
        out.update(id_loss=id_loss, value_loss=value_loss, loss=loss,
                   id_accuracy=(logits.argmax(-1) == labels[masked]).float().mean(), n_masked=masked.sum())
        return out

    def num_parameters(self, *, trainable_only: bool = True) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token (6 × matmul parameters + attention), for model FLOP utilisation (MFU)."""
        c = self.config
        matmul = c.n_layers * (4 * c.d_model ** 2 + 2 * c.d_model * c.d_ff)
        attention = c.n_layers * 2 * seq_len * c.d_model
        return 6 * matmul + 6 * attention


def build_model(config: ModelConfig, priors: dict[str, PriorTable] | None = None) -> GeneCompass:
    """A fresh model; ``priors`` (aligned to the same vocabulary, e.g. :func:`gc_lib.priors.store.load_priors`) fill its
    prior buffers and must match ``config.prior_dims``."""
    model = GeneCompass(config)
    if config.prior_dims or priors:
        model.genes.load_priors(priors or {})
    return model


def save_model(model: GeneCompass, directory: str | os.PathLike, *, state: dict | None = None) -> None:
    """``config.json`` + ``model.safetensors`` into ``directory`` (written atomically, file by file).

    ``state`` replaces ``model.state_dict()`` (a full state gathered from FSDP shards, or a compiled model's).
    """
    from safetensors.torch import save_file

    from ..core.atomic import atomic_path, write_json

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in (state or model.state_dict()).items()}
    with atomic_path(directory / "model.safetensors") as tmp:
        save_file(state, str(tmp), metadata={"format": "gc_lib.model/1"})
    write_json(model.config.to_dict(), directory / "config.json")


def load_model(directory: str | os.PathLike, *, map_location: str = "cpu",
               vocab: Vocabulary | None = None) -> GeneCompass:
    """A model saved by :func:`save_model` (priors included: they are buffers of the state).

    ``vocab``: the :class:`~gc_lib.corpus.vocab.Vocabulary` of the tokenizer whose token ids will be fed; it is
    checked against the checkpoint's ``vocab.json`` by :func:`check_vocabulary` (a clear error when ids would be
    misaligned). Without it nothing is checked (e.g. to inspect weights)."""
    from safetensors.torch import load_file

    directory = Path(directory)
    config = ModelConfig.from_checkpoint(directory)
    if vocab is not None:
        check_vocabulary(directory, vocab, vocab_size=config.vocab_size)
    model = GeneCompass(config)
    model.load_state_dict(load_file(str(directory / "model.safetensors"), device=map_location))
    return model
