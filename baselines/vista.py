"""VISTA (Lee et al., Findings of EMNLP 2023, "VISTA: Visual-Textual Knowledge Graph Representation
Learning"), as the authors' code builds it (bdi-lab/VISTA at 4ad318d, `model.py`, `train.py`,
`dataset.py`; our reading with file:line citations in docs/reference/vista.md).

Three stacks of PyTorch's transformer encoder layer (post-LN, ReLU, batch-first), all with width d,
`heads` heads, feed-forward width F and dropout `dropout`:

* Entity encoder (L = `entity_layers`), run over every entity e, on the sequence (E, 2 + M, d)

      [ c_ent,  Drop_s(LN_s(E_e)) + p_s,  Drop_m(LN_m(W_m x_em + b_m)) + p_m  for each feature modality m ]

  c_ent a learned token shared by all entities (no type embedding), E_e (E, d) the structural
  embedding, x_em (D_m,) entity e's features of modality m (every modality the data has, sorted by
  name, read through `FeatureTable`: absent rows follow the run's fill policy), W_m (D_m -> d), p_*
  learned type embeddings (d,). The entity vector ẽ_e (d,) is the output at c_ent.
* Relation encoder (L̂ = `relation_layers`) on [c_rel, Drop_s(LN_r(R_r)) + p_r], R_r (2R, d): the
  relation vector r̃_r (d,) is the output at c_rel.
* Decoder (L̃ = `decoder_layers`: self-attention over three tokens, no attention mask) on

      [ ẽ_h + q_h,  r̃_r + q_r,  m + q_t ]      (B, 3, d),

  m a learned mask token that never passes the entity encoder, q_* learned position embeddings. With
  o (B, d) the output at the mask slot, score(h, r, t) = o · ẽ_t: logits, no bias, no sigmoid.

`score_t` encodes all E entities once per call, as the code's forward() re-encodes every entity at
every training step (train.py:126): within a call the query's ẽ_h and the candidates share one draw of
the dropout noise, and gradients reach the candidates too. In eval mode without autograd or autocast,
the E entity vectors are kept until a parameter or buffer changes: evaluation scores many query blocks
with one set of weights, and encoding E entities costs seconds on a CPU at the authors' sizes. Nothing
is kept in training.

Defaults are the code's argparse defaults, which are its VTKG-C script (train.py:37-58, test_VTKG-C.sh):
d 256, layers 2 / 1 / 2, 4 heads, F 2048, dropout 0.01, embedding / visual / textual input dropouts
0.9 / 0.4 / 0.1; Adam lr 1e-4, batch 512, 150 epochs, cross-entropy over all entities, no smoothing.

Differences from the code:
* Reciprocal relations. The model is built with 2R relations, each with its own structural embedding
  (and so its own relation-encoder output), and every query masks the tail slot: (t, r + R, ?) asks
  for heads. The code has R relations and asks for heads by putting the mask in the head slot,
  [m + q_h, r̃_r + q_r, ẽ_t + q_t] (dataset.py:175-177, model.py:112-116).
* Training signal: KvsAll cross-entropy (mmkgbench.train, loss "ce": softmax over all E against an
  (e, r) query's normalised multi-hot answers), both directions of every triple each epoch. The code
  trains each triple once per epoch in one random direction (p = 0.5) with a single-label softmax
  (dataset.py:173-182, train.py:97, 129).
* Not in the harness: the code's CosineAnnealingWarmRestarts (T_0 = 50, T_mult = 2, stepped per epoch;
  train.py:100, 135) and gradient-norm clipping at 0.1 (train.py:133); the lr here is constant.
* Selection on validation (the harness's protocol); the code tests a fixed final epoch (150 on VTKG-C;
  test.py:86) and never selects.
* The relation encoder reads the structural token only: our data has no relation images or texts
  (the code's relation sequence adds up to k triplet-image tokens and a text token, model.py:102-107).
* One token per entity and modality (k = 1): our data has one feature vector per entity and
  modality; the code keeps up to k images per entity (`--max_img_num`, 3 by default), sorted by
  summed dot-product similarity, all with one visual type embedding (dataset.py:63-124). Every feature
  modality of the data gets its own projection, LayerNorm and type embedding; its input dropout is
  `image_dropout` (the code's visual dropout) for image and `text_dropout` (the code's textual
  dropout) for text and every other modality (numeric, audio, ...: our choice).
* Absent modalities. The code masks an entity's empty image slots from attention (key-padding mask,
  model.py:20-21, 100) and requires a text vector for every entity (dataset.py:163-164). Here, by
  default (`mask_absent = false`), the token of an absent modality holds the run's fill (zeros, mean or
  a learned vector; mmkgbench.features), the harness's one treatment of absence for every model;
  `mask_absent = true` masks the tokens of absent modalities from attention instead, the code's
  image rule applied to every modality (the structural token is never masked).
* Initialisation, from the generator: Xavier-uniform for the structural tables, the tokens, the type
  and position embeddings (each with the fans of the code's tensor shape: (n, 1, d) tables, (1, 1, d)
  tokens, a (1, d) mask token) and the projections' weights, zero projection biases (model.py:69-92);
  every transformer layer PyTorch's own default distribution (the code keeps it), drawn per layer. The
  code's layers are deep copies of one layer and so start identical; ours are drawn independently.
* Input dropouts use `mmkgbench.layers.Dropout` (p at 16-bit resolution on the CPU); the transformer
  layers keep PyTorch's dropout. Both draw from torch's global RNG, which the harness seeds.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from mmkgbench.features import FeatureTable
from mmkgbench.layers import Dropout
from mmkgbench.model import KGEModel, ModelInputs, init_
from mmkgbench.multimodal import per_entity, require_features
from mmkgbench.ranges import check_config

STRUCTURE = "structure"


@dataclass(frozen=True)
class VISTAConfig:
    dim: int = 256                   # d [code: --dim 256, every script]
    entity_layers: int = 2           # L [code: --num_layer_enc_ent 2]
    relation_layers: int = 1         # L̂ [code: --num_layer_enc_rel 1]
    decoder_layers: int = 2          # L̃ [code: --num_layer_dec 2]
    heads: int = 4                   # [code: --num_head 4]
    ffn_dim: int = 2048              # F, feed-forward width [code: --hidden_dim 2048]
    dropout: float = 0.01            # inside every transformer layer [code: --dropout 0.01]
    embedding_dropout: float = 0.9   # on the structural tokens, entities and relations [code: --emb_dropout 0.9]
    image_dropout: float = 0.4       # on the projected image token [code: --vis_dropout 0.4]
    text_dropout: float = 0.1        # on the text token [code: --txt_dropout 0.1] and other modalities' [choice]
    mask_absent: bool = False        # True: absent modalities masked from attention (code: missing images) [choice]

    ranges: ClassVar[dict] = {"dim": "[1, inf)", "entity_layers": "[1, inf)", "relation_layers": "[1, inf)",
                              "decoder_layers": "[1, inf)", "heads": "[1, inf)", "ffn_dim": "[1, inf)",
                              "dropout": "[0, 1)", "embedding_dropout": "[0, 1)", "image_dropout": "[0, 1)",
                              "text_dropout": "[0, 1)", "mask_absent": None}

    def __post_init__(self):
        check_config(self)
        if self.dim % self.heads:
            raise ValueError(f"VISTAConfig: dim = {self.dim} must be a multiple of heads = {self.heads} "
                             "(each attention head has dim / heads dimensions)")

    def input_dropout(self, modality: str) -> float:
        return {STRUCTURE: self.embedding_dropout, "image": self.image_dropout}.get(modality, self.text_dropout)


def xavier_(shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    """A tensor of `shape` drawn Xavier-uniform from `generator`, with the fans torch computes for that shape."""
    return init_(torch.empty(shape), "xavier_uniform", generator)


def transformer_layer(cfg: VISTAConfig, generator: torch.Generator) -> nn.TransformerEncoderLayer:
    """nn.TransformerEncoderLayer(d, heads, F, dropout, batch_first=True), built without touching the
    global RNG, with PyTorch's default initialisation drawn from `generator`: in-projection Xavier-uniform
    and zero bias, out-projection U(±1/sqrt(d)) and zero bias, the feed-forward linears U(±1/sqrt(fan_in))
    (weights and biases), LayerNorms 1 and 0."""
    layer = torch.nn.utils.skip_init(nn.TransformerEncoderLayer, cfg.dim, cfg.heads, cfg.ffn_dim, cfg.dropout,
                                     batch_first=True)
    done = set()
    for name, p in layer.named_parameters():
        if name == "self_attn.in_proj_weight":
            init_(p, "xavier_uniform", generator)
        elif name in ("self_attn.in_proj_bias", "self_attn.out_proj.bias") or (name.startswith("norm")
                                                                               and name.endswith(".bias")):
            nn.init.zeros_(p)
        elif name.startswith("norm") and name.endswith(".weight"):
            nn.init.ones_(p)
        elif name.endswith((".weight", ".bias")):      # out_proj.weight, linear1, linear2: nn.Linear's default
            fan_in = (p if name.endswith(".weight") else layer.get_submodule(name[:-5]).weight).shape[1]
            bound = 1.0 / math.sqrt(fan_in)
            init_(p, "uniform", generator, a=-bound, b=bound)
        else:
            raise AssertionError(f"transformer parameter {name} has no initialisation rule")
        done.add(name)
    assert done == {n for n, _ in layer.named_parameters()}
    return layer


class VISTA(KGEModel):
    """VISTA. score_t: (B,) x (B,) -> (B, E) logits o · ẽ_t, higher is better."""

    Config = VISTAConfig
    modalities = ("*",)
    # train.py:37-58 (the VTKG-C script): Adam lr 1e-4, no weight decay, batch 512, 150 epochs, CE with
    # smoothing 0; constant lr (the code's warm restarts are not in the harness).
    train_defaults = dict(regime="kvsall", loss="ce", optimizer="adam", lr=1e-4, batch_size=512,
                          label_smoothing=0.0, weight_decay=0.0, lr_decay=1.0, max_epochs=150)
    version = 1

    def __init__(self, cfg: VISTAConfig, inputs: ModelInputs, generator: torch.Generator | None = None):
        super().__init__(cfg, inputs, generator)
        require_features(inputs, "VISTA")
        self.features = sorted(inputs.features)
        E, R2, d = inputs.num_entities, inputs.num_relations, cfg.dim
        # structural tables: Xavier-uniform with the fans of the code's (n, 1, d) tensors (model.py:27-28, 70-71)
        self.entity = nn.Parameter(xavier_((E, 1, d), generator)[:, 0])
        self.relation = nn.Parameter(xavier_((R2, 1, d), generator)[:, 0])
        self.entity_token = nn.Parameter(xavier_((1, 1, d), generator).view(d))       # c_ent
        self.relation_token = nn.Parameter(xavier_((1, 1, d), generator).view(d))     # c_rel
        self.mask_token = nn.Parameter(xavier_((1, d), generator).view(d))            # m (the code's lp_token)
        self.tables = nn.ModuleDict({m: FeatureTable(inputs.features[m], inputs.present[m], inputs.fill)
                                     for m in self.features})
        self.project = nn.ModuleDict()
        for m in self.features:
            lin = torch.nn.utils.skip_init(nn.Linear, inputs.features[m].shape[1], d)
            init_(lin.weight, "xavier_uniform", generator)
            nn.init.zeros_(lin.bias)
            self.project[m] = lin
        names = [STRUCTURE] + self.features
        self.norm = nn.ModuleDict({m: nn.LayerNorm(d) for m in names})          # LN_s, LN_m
        self.relation_norm = nn.LayerNorm(d)                                    # LN_r
        self.drop = nn.ModuleDict({m: Dropout(cfg.input_dropout(m)) for m in names})
        self.token_type = nn.ParameterDict({m: nn.Parameter(xavier_((1, 1, d), generator).view(d)) for m in names})
        self.relation_type = nn.Parameter(xavier_((1, 1, d), generator).view(d))
        self.position = nn.Parameter(torch.cat([xavier_((1, 1, d), generator).view(1, d) for _ in range(3)]))
        self.entity_encoder = nn.ModuleList(transformer_layer(cfg, generator) for _ in range(cfg.entity_layers))
        self.relation_encoder = nn.ModuleList(transformer_layer(cfg, generator) for _ in range(cfg.relation_layers))
        self.decoder = nn.ModuleList(transformer_layer(cfg, generator) for _ in range(cfg.decoder_layers))
        self._cache: tuple | None = None

    # -- encoders ---------------------------------------------------------------------------------
    @staticmethod
    def _run(layers: nn.ModuleList, x: Tensor, padding: Tensor | None = None) -> Tensor:
        for layer in layers:
            x = layer(x, src_key_padding_mask=padding)
        return x

    def entity_sequence(self, idx: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """The entity encoder's input for entity ids idx (n,) (all E when None): tokens (n, 2 + M, d) and
        the key-padding mask (n, 2 + M), True = ignored, or None when nothing is masked."""
        s = self.entity if idx is None else self.entity[idx]
        n, d = s.shape
        structure = self.drop[STRUCTURE](self.norm[STRUCTURE](s)) + self.token_type[STRUCTURE]
        tokens = [self.entity_token.expand(n, d), structure]
        for m in self.features:
            x = self.project[m](self.tables[m](idx))
            tokens.append(self.drop[m](self.norm[m](x)) + self.token_type[m])
        padding = None
        if self.cfg.mask_absent:
            absent = [~(self.tables[m].present if idx is None else self.tables[m].present[idx]) for m in self.features]
            if any(bool(a.any()) for a in absent):
                keep = torch.zeros(n, 2, dtype=torch.bool, device=s.device)
                padding = torch.cat([keep, torch.stack(absent, 1)], 1)
        return torch.stack(tokens, 1), padding

    def _encode(self, idx: Tensor | None) -> Tensor:
        tokens, padding = self.entity_sequence(idx)
        return self._run(self.entity_encoder, tokens, padding)[:, 0]

    def entities(self, idx: Tensor | None = None) -> Tensor:
        """ẽ of entity ids idx (any shape) -> (*idx.shape, d), each distinct entity encoded once; (E, d)
        when idx is None (kept in eval mode without autograd or autocast until a parameter or buffer changes)."""
        if idx is not None:
            return per_entity(self._encode, idx)
        keep = not (self.training or torch.is_grad_enabled() or torch.is_autocast_enabled(self.entity.device.type))
        if keep:
            tensors = [*self.parameters(), *self.buffers()]
            key = tuple((x.device, x.dtype, x.data_ptr(), x._version) for x in tensors)
            if self._cache is not None and self._cache[0] == key:
                return self._cache[1]
        out = self._encode(None)
        self._cache = (key, out) if keep else None
        return out

    def relations(self, r: Tensor) -> Tensor:
        """r̃ of relation ids r (B,) -> (B, d), each distinct relation encoded once."""
        def encode(ids: Tensor) -> Tensor:
            s = self.drop[STRUCTURE](self.relation_norm(self.relation[ids])) + self.relation_type
            seq = torch.stack([self.relation_token.expand_as(s), s], 1)
            return self._run(self.relation_encoder, seq)[:, 0]
        return per_entity(encode, r)

    def query(self, head: Tensor, r: Tensor) -> Tensor:
        """o (B, d): the decoder's output at the mask slot of [ẽ_h + q_h, r̃_r + q_r, m + q_t], head = ẽ_h (B, d)."""
        rel = self.relations(r)
        seq = torch.stack([head, rel, self.mask_token.expand_as(head)], 1) + self.position
        return self._run(self.decoder, seq)[:, 2]

    # -- the harness contract -----------------------------------------------------------------------
    def score_t(self, h: Tensor, r: Tensor) -> Tensor:
        """(B,) x (B,) -> (B, E): o · ẽ_e for every entity e, all E encoded once."""
        ent = self.entities()
        return self.query(ent[h], r) @ ent.t()

    def score_hrt(self, h: Tensor, r: Tensor, t: Tensor) -> Tensor:
        """Scores of the given tails t (B,) or (B, n), encoding only the entities named in h and t."""
        ent = self.entities(torch.cat([h, t.reshape(-1)]))
        o, tails = self.query(ent[:len(h)], r), ent[len(h):].view(*t.shape, -1)
        if t.dim() == 1:
            return (o * tails).sum(-1)
        return torch.einsum("bd,bnd->bn", o, tails)

    def negative_scores(self, h: Tensor, r: Tensor, t: Tensor, negatives: Tensor) -> tuple[Tensor, Tensor]:
        """Positives (B,) and negatives (B, k) from one encoding of the entities they name (one dropout draw)."""
        B = len(h)
        ent = self.entities(torch.cat([h, t, negatives.reshape(-1)]))
        o = self.query(ent[:B], r)
        return (o * ent[B:2 * B]).sum(-1), torch.einsum("bd,bkd->bk", o, ent[2 * B:].view(B, -1, o.shape[1]))
