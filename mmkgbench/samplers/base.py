"""What a negative sampler is: one interface, so that any negative-sampling model trains with any sampler.

The training loop (mmkgbench.train) orients each positive (h, r, t) as itself or as its reciprocal
(t, r + R, h), so every sampler corrupts tails only: a corrupted tail of the reciprocal is a
corrupted head of the original. For a batch of oriented positives the loop asks its sampler

* `draw(hrt, generator)` -> (B, k) int64 negative tail ids in [0, E), from the run's seeded CPU
  generator (never the global RNG), so a seed fixes the negatives;
* `negative_scores(model, h, r, t, negatives)` -> the positives' (B,) and negatives' (B, k) scores;
  the model's own `negative_scores` unless the sampler changes what a negative is (MANS: a
  negative entity's image paired with the positive's structure);
* `weights(neg, w)` -> (B, k): the weights of the negatives in the loss, rows summing to 1, from
  their detached scores `neg` and the loop's weights `w` (uniform, or self-adversarial when the run's
  `adversarial_temperature` > 0);
* `loss(hrt, negatives, w)` -> a term added to the model's loss for the batch (None: nothing), w the
  final weights; with `parameters()`, a sampler's own parameters (MMRNS's attention), which the loop
  steps with their own Adam from the same backward pass, as MMRNS trains its sampler jointly.

`bind(model, inputs, seed)` is called once before training, with the model on its device and, for a
sampler that reads features (`modalities`, e.g. ("image", "text")), the run's filled features
(mmkgbench.model.ModelInputs); `begin_epoch(epoch, max_epochs)` before each epoch. A sampler that
draws anything besides the negatives' ids keeps its own generator seeded from `seed`, so the run's
sequence of positives and negatives stays that of the uniform sampler. `orientation = "bern"` makes
the loop orient positives by the Bernoulli rule whatever the run's `corruption`.

A sampler is `filtered` when it never returns a known train answer of the oriented query (h, r):
the sampler conformance test (tests/test_samplers.py) holds every sampler to what it claims.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from mmkgbench.ranking import KnownAnswers

# Rounds of redrawing the negatives that hit a known answer before the rest are drawn exactly from
# the complement (a query with few non-answers would otherwise loop for long).
REDRAW_ROUNDS = 8


class NegativeSampler:
    """Base class: uniform tails, the loop's weights, the model's scores, nothing trained."""

    Config: ClassVar[type]
    version: ClassVar[int] = 1
    orientation: ClassVar[str | None] = None      # "bern": Bernoulli orientation, whatever the run says
    # The paper or code a sampler follows, for the README and the registry listing.
    reference: ClassVar[str] = ""
    modalities: ClassVar[tuple] = ()              # feature modalities the sampler reads ("*": all)

    def __init__(self, cfg, train_triples: np.ndarray, num_relations: int, num_entities: int,
                 num_negatives: int):
        self.cfg = cfg
        self.num_relations = num_relations
        self.num_entities = num_entities
        self.num_negatives = num_negatives
        self.known = KnownAnswers(train_triples, num_relations) if self.filtered else None

    @property
    def filtered(self) -> bool:
        """True when no negative is ever a known train answer of its query (e, r)."""
        return bool(getattr(self.cfg, "filter", False))

    def bind(self, model, inputs=None, seed: int = 0) -> None:
        """Called once before training with the model on its device; nothing to do by default."""

    def begin_epoch(self, epoch: int, max_epochs: int) -> None:
        """Called before each epoch (1-based); nothing to do by default."""

    def draw(self, hrt: Tensor, generator: torch.Generator) -> Tensor:
        """Negative tails for oriented positives hrt (B, 3) (CPU int64): (B, k) int64 CPU."""
        neg = torch.randint(self.num_entities, (len(hrt), self.num_negatives), generator=generator)
        return self.exclude_known(hrt, neg, generator) if self.filtered else neg

    def negative_scores(self, model, h: Tensor, r: Tensor, t: Tensor, negatives: Tensor) -> tuple[Tensor, Tensor]:
        return model.negative_scores(h, r, t, negatives)

    def weights(self, neg: Tensor, w: Tensor) -> Tensor:
        """Weights of the negatives (B, k) from their detached scores neg and the loop's weights w."""
        return w

    def parameters(self) -> list:
        return []

    def loss(self, hrt: Tensor, negatives: Tensor, w: Tensor) -> Tensor | None:
        """A term added to the model's loss for this batch (w: the negatives' final weights (B, k),
        detached); None by default."""
        return None

    # -- filtering, shared by every sampler that claims it -------------------------------------------
    def exclude_known(self, hrt: Tensor, neg: Tensor, generator: torch.Generator) -> Tensor:
        """neg (B, k) with every known train answer of its query (h, r) replaced by a uniform draw
        among the query's non-answers (rejection for a few rounds, then exactly from the complement).
        A query whose every entity is a known answer has no negative: a ValueError says which."""
        h, r = hrt[:, 0], hrt[:, 1]
        B, k = neg.shape
        bad = self.known.contains(h.repeat_interleave(k), r.repeat_interleave(k), neg.reshape(-1)).view(B, k)
        neg = neg.clone()
        for _ in range(REDRAW_ROUNDS):
            if not bad.any():
                return neg
            rows, cols = torch.nonzero(bad, as_tuple=True)
            fresh = torch.randint(self.num_entities, (len(rows),), generator=generator)
            neg[rows, cols] = fresh
            still = self.known.contains(h[rows], r[rows], fresh)
            bad = torch.zeros_like(bad)
            bad[rows[still], cols[still]] = True
        rows = torch.nonzero(bad.any(1))[:, 0]
        for i in rows.tolist():              # rare: queries with few non-answers
            allowed = torch.ones(self.num_entities, dtype=torch.bool)
            _, cols = self.known.lookup(h[i:i + 1], r[i:i + 1])
            allowed[cols] = False
            if not allowed.any():
                raise ValueError(f"query (entity {int(h[i])}, relation {int(r[i])}) has every entity as a known "
                                 f"train answer: a filtered sampler has no negative to draw for it")
            choice = torch.nonzero(allowed)[:, 0]
            pick = torch.randint(len(choice), (int(bad[i].sum()),), generator=generator)
            neg[i, bad[i]] = choice[pick]
        return neg
