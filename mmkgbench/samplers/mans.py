"""MANS: modality-aware negative sampling (Zhang, Chen, Zhang, IJCNN 2023, arXiv:2304.11618; zjukg/MANS).

MANS does not change which entity a negative is: it changes which of the entity's vectors the
negative carries. A *visual negative* of (h, r, t) keeps the true tail's structural vector s_t and
takes the corrupted entity t' 's image vector i_t', so the model learns to tell an entity's own image
from another's, which aligns the two spaces (the paper's motivation). With MMTransE's energy
D = T(s_h, r, s_t) + T(i_h, r, i_t) + T(i_h, r, s_t) + T(s_h, r, i_t), a visual negative changes only
the terms that read i_t. Variants (README of zjukg/MANS; docs/reference/mans-mmrns.md):

* "visual" (MANS-V): every negative is a visual negative;
* "two_stage" (MANS-T): visual negatives for the first `stage` share of the epochs, then ordinary
  ones; `stage` = 0.5 is what the code runs (its Trainer's default: the scripts' 0.3 never reaches it);
* "hybrid" (MANS-H): a fixed share `beta` (0.3, the scripts) of the batch's negatives is visual;
* "adaptive" (MANS-A): the share is measured each step with the current model: the fraction of
  ordinary negatives whose cross-modal part T(i_h, r, s_t') + T(s_h, r, i_t') is below their
  intra-modal part T(s_h, r, s_t') + T(i_h, r, i_t') (the two spaces still agree on them).

As in the code, which slots become visual is chosen at random (the code takes the first slots of a
batch of randomly drawn positives); the share, not the rows that met the test, is what adapts. The
ids are drawn uniformly and filtered against train (OpenKE's sampler, which MANS runs), so no
negative is a known answer of its query; its structural slot may be the positive's own tail, which is
the point of a visual negative. The slot choice draws from the sampler's own generator, so the
run's positives and negative ids are the uniform sampler's.

A model takes MANS by implementing `mixed_tail_scores(h, r, t_structure, t_modality) -> (scores,
intra, cross)` (see baselines/ikrl.py: IKRL's energy is MMTransE's, the base model of the paper).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from mmkgbench.ranges import check_config
from mmkgbench.samplers.base import NegativeSampler

VARIANTS = ("visual", "two_stage", "hybrid", "adaptive")


@dataclass(frozen=True)
class MANSConfig:
    variant: str = "adaptive"         # MANS-A [choice: the paper's full method]; | visual | two_stage | hybrid
    beta: float = 0.3                 # hybrid: share of visual negatives (scripts' BETA)
    stage: float = 0.5                # two_stage: share of epochs with visual negatives (code's Trainer default)
    filter: bool = True               # OpenKE's sampler filters against train

    ranges: ClassVar[dict] = {"variant": VARIANTS, "beta": "[0, 1]", "stage": "[0, 1]", "filter": None}

    def __post_init__(self):
        check_config(self)


class MANS(NegativeSampler):
    """Uniform filtered tails; a share of them (by variant) scored as visual negatives."""

    Config = MANSConfig
    reference = "Zhang et al. 2023 (MANS), modality-aware negative sampling"
    HOOK = "mixed_tail_scores"

    def bind(self, model, inputs=None, seed: int = 0) -> None:
        if not hasattr(model, self.HOOK):
            from mmkgbench.models import MODELS
            able = [k for k, cls in MODELS.items() if hasattr(cls, self.HOOK)]
            raise ValueError(f"sampler 'mans' needs a model with separate structural and modality vectors per entity "
                             f"(the `{self.HOOK}` hook); {type(model).__name__} has none. Models that have it: {able}")
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch, self.max_epochs = 1, 1
        self.last_share = 0.0                   # the share of visual negatives of the last batch (for tests, logs)

    def begin_epoch(self, epoch: int, max_epochs: int) -> None:
        self.epoch, self.max_epochs = epoch, max_epochs

    def share(self, model, h: Tensor, r: Tensor, negatives: Tensor) -> float:
        """The share of visual negatives for this batch."""
        v = self.cfg.variant
        if v == "visual":
            return 1.0
        if v == "two_stage":
            return 1.0 if self.epoch <= self.cfg.stage * self.max_epochs else 0.0
        if v == "hybrid":
            return self.cfg.beta
        with torch.no_grad():                    # adaptive: measured with the current model
            _, intra, cross = getattr(model, self.HOOK)(h, r, negatives, negatives)
        return float((cross < intra).float().mean())

    def visual_mask(self, model, h: Tensor, r: Tensor, negatives: Tensor) -> Tensor:
        """(B, k) bool: which negatives are visual, int(share * B * k) of them at random."""
        share = self.share(model, h, r, negatives)
        self.last_share = share
        n = negatives.numel()
        chosen = torch.randperm(n, generator=self.generator)[:int(share * n)]
        mask = torch.zeros(n, dtype=torch.bool)
        mask[chosen] = True
        return mask.view(negatives.shape).to(negatives.device)

    def negative_scores(self, model, h: Tensor, r: Tensor, t: Tensor, negatives: Tensor) -> tuple[Tensor, Tensor]:
        hook = getattr(model, self.HOOK)
        mask = self.visual_mask(model, h, r, negatives)
        structure = torch.where(mask, t[:, None].expand_as(negatives), negatives)
        both = torch.cat([t[:, None], structure], 1), torch.cat([t[:, None], negatives], 1)
        scores, _, _ = hook(h, r, *both)         # positives and negatives in one pass: (B, 1 + k)
        return scores[:, 0], scores[:, 1:]
