"""The embedded synthetic MMKG: seeded, well-formed, knobs that do what they say, and a real test bed."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mmkgbench.datasets import DATASETS, load_dataset
from mmkgbench.model import KGEModel, ModelInputs
from mmkgbench.ranking import KnownAnswers
from mmkgbench.synthetic import synthetic_mmkg
from mmkgbench.train import TrainConfig, train


def small(**kw):
    return synthetic_mmkg(num_entities=200, num_relations=6, num_triples=3000, **kw)


def test_same_seed_same_data_different_seed_different_data():
    a, b, c = small(seed=3), small(seed=3), small(seed=4)
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != c.fingerprint()


def test_splits_are_disjoint_unique_and_trainable():
    d = small()
    sets = [set(map(tuple, d.split(s))) for s in ("train", "valid", "test")]
    assert sum(len(s) for s in sets) == len(set().union(*sets))          # no duplicates, no overlap
    seen = set(d.train[:, 0]) | set(d.train[:, 2])
    for s in ("valid", "test"):
        assert set(d.split(s)[:, [0, 2]].ravel()) <= seen                  # every entity is trainable
        assert set(d.split(s)[:, 1]) <= set(d.train[:, 1])
    assert not (d.train[:, 0] == d.train[:, 2]).any()                    # no self-loops


def _latent_r2(x: np.ndarray, z: np.ndarray) -> float:
    """Fraction of the variance of x explained by a linear map of z (least squares)."""
    coef, *_ = np.linalg.lstsq(z, x, rcond=None)
    return 1.0 - ((x - z @ coef) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()


def test_signal_knob_sets_how_much_of_a_feature_is_latent():
    # Regenerate the latent factors the same way the generator draws them first.
    d = small(signal={"image": 0.9, "text": 0.2}, seed=5)
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(8, 16))
    types = rng.integers(8, size=200)
    z = (0.3 * centres[types] + rng.normal(size=(200, 16))) / 4.0
    r2_image = _latent_r2(d.features["image"], z)
    r2_text = _latent_r2(d.features["text"], z)
    assert r2_image == pytest.approx(0.9, abs=0.08) and r2_text == pytest.approx(0.2 + 0.8 * 16 / 200, abs=0.1)


def test_coverage_marks_absent_entities_with_zero_rows():
    d = small(coverage={"image": 0.6})
    p = d.present["image"]
    assert 0.5 < p.mean() < 0.7 and d.present["text"].all()
    assert (d.features["image"][~p] == 0).all() and (np.abs(d.features["image"][p]).sum(1) > 0).all()


@pytest.mark.parametrize("bad", [dict(signal={"image": 1.5}), dict(coverage={"text": -0.1}),
                                 dict(valid_frac=0.6, test_frac=0.5)])
def test_bad_knobs_are_rejected(bad):
    with pytest.raises(ValueError):
        small(**bad)


@pytest.mark.parametrize("name", list(DATASETS))
def test_registered_synthetic_sets_build(name):
    d = load_dataset(name)
    assert len(d.train) and len(d.valid) and len(d.test)
    assert d.modalities == ("image", "text")


class Bilinear(KGEModel):
    """RESCAL-style scorer e_h^T M_r e_t; with `use_features`, e = table + P [image; text] (test-only model)."""

    def __init__(self, dim, inputs, generator, use_features):
        super().__init__(None, inputs, generator)
        self.entity = nn.Parameter(0.1 * torch.randn(inputs.num_entities, dim, generator=generator))
        self.rel = nn.Parameter(0.3 / dim ** 0.5 * torch.randn(inputs.num_relations, dim, dim, generator=generator))
        self.use_features = use_features
        if use_features:
            x = torch.cat([inputs.features[m] for m in sorted(inputs.features)], 1)
            self.register_buffer("x", x)
            self.proj = nn.Parameter(0.1 / x.shape[1] ** 0.5 * torch.randn(x.shape[1], dim, generator=generator))

    def score_t(self, h, r):
        e = self.entity + self.x @ self.proj if self.use_features else self.entity
        return torch.einsum("bd,bdk->bk", e[h], self.rel[r]) @ e.t()


def _valid_mrr(data, use_features, seed=0):
    torch.manual_seed(seed)
    feats = {m: torch.tensor(np.array(data.features[m])) for m in data.modalities}
    model = Bilinear(16, ModelInputs(data.num_entities, 2 * data.num_relations, feats), torch.Generator().manual_seed(seed),
                     use_features)
    known = KnownAnswers(np.concatenate([data.train, data.valid]), data.num_relations)
    cfg = TrainConfig(regime="kvsall", lr=1e-2, batch_size=128, max_epochs=60, eval_every=10, patience=2)
    res = train(model, data.train, data.num_relations, data.num_entities, cfg, valid_triples=data.valid,
                known_valid=known, seed=seed)
    return res.best_valid["mrr"]


def test_informative_features_beat_structure_on_a_sparse_graph():
    """On `synthetic_sparse` (about 5 train triples per entity, image signal 0.95) the same scorer
    with feature-based entity embeddings reaches at least 1.5x the validation MRR of the
    structure-only one (measured here: 0.136 vs 0.078 at seed 0, 0.128 vs 0.074 at seed 1)."""
    data = load_dataset("synthetic_sparse")
    structure, multimodal = _valid_mrr(data, False), _valid_mrr(data, True)
    assert multimodal > 1.5 * structure, (structure, multimodal)
