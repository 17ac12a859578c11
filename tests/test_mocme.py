"""MoCME: shapes, the MINE estimator, MI-driven weights, entropy types, what each switch removes,
candidate vectors independent of the batch, determinism, and a learning test against RotatE."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from mmkgbench.model import ModelInputs
from mmkgbench.models.mocme import MoCME, MoCMEConfig, Statistic
from tests.conftest import best_valid_mrr

SMALL = MoCMEConfig(dim=4, mine_hidden=8, gamma=4.0)


def inputs(data, fill="zeros", present=None):
    present = present or {m: np.array(data.present[m]) for m in data.modalities}
    return ModelInputs(data.num_entities, 2 * data.num_relations,
                       {m: torch.tensor(np.array(data.features[m])) for m in data.modalities},
                       {m: torch.tensor(present[m]) for m in data.modalities}, fill)


def build(data, seed=0, fill="zeros", **changes):
    return MoCME(dataclasses.replace(SMALL, **changes), inputs(data, fill), torch.Generator().manual_seed(seed))


def test_shapes_views_and_weights(tiny):
    model = build(tiny).eval()
    assert model.names == ["structure", "image", "text"] and model.K == 3          # K = number of modalities
    with torch.no_grad():
        views = model._views(torch.tensor([0, 1, 2, 3, 4]))
        e, wa, wb = model.fuse(views)
        s = model.score_t(torch.tensor([0, 1]), torch.tensor([0, 4]))
    assert [v.shape for v in views] == [(5, 3, 8)] * 3
    assert e.shape == (5, 8) and wa.shape == (1, 3, 3) and wb.shape == (1, 3)
    torch.testing.assert_close(wa.sum(-1), torch.ones(1, 3))
    assert s.shape == (2, tiny.num_entities) and torch.isfinite(s).all()
    assert len(model.auxiliary_parameters()) == 3 * 5 + 3 * 5        # 3 view networks + 3 modality-pair networks


def test_negative_scores_agree_with_score_t(tiny):
    model = build(tiny).eval()
    h, r, t = torch.tensor([0, 5, 7]), torch.tensor([1, 2, 3]), torch.tensor([3, 4, 1])
    negatives = torch.tensor([[1, 2, 9], [0, 0, 11], [6, 3, 2]])
    with torch.no_grad():
        full = model.score_t(h, r)
        pos, neg = model.negative_scores(h, r, t, negatives)
    torch.testing.assert_close(pos, full.gather(1, t[:, None])[:, 0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(neg, full.gather(1, negatives), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mi_weights", ["batch", "entity"])
def test_candidate_vectors_do_not_depend_on_the_batch(tiny, mi_weights):
    model = build(tiny, mi_weights=mi_weights)
    model.train()
    model.auxiliary_loss(torch.arange(8), torch.zeros(8, dtype=torch.long))      # MI buffers now non-zero
    model.eval()
    with torch.no_grad():
        every = model.embed()
        assert torch.allclose(model.embed(torch.tensor([3])), every[3:4], atol=1e-6)
        assert torch.allclose(model.embed(torch.tensor([3, 0, 9])), every[[3, 0, 9]], atol=1e-6)
        one = model.score_t(torch.tensor([2]), torch.tensor([1]))
        many = model.score_t(torch.tensor([5, 2, 7]), torch.tensor([0, 1, 2]))
    torch.testing.assert_close(one[0], many[1])


def _mine_run(correlated: bool, steps: int = 300) -> float:
    """Train one statistics network through MoCME's own MINE step; returns the last 50 steps' mean DV value."""
    from tests.conftest import tiny_mmkg
    model = build(tiny_mmkg(), mine_hidden=32)
    stat = Statistic(8, 32, torch.Generator().manual_seed(1))
    opt = torch.optim.Adam(stat.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(2)
    values = []
    torch.manual_seed(0)
    for _ in range(steps):
        a = torch.randn(256, 8, generator=g)
        b = a + 0.3 * torch.randn(256, 8, generator=g) if correlated else torch.randn(256, 8, generator=g)
        loss = model._mine_terms(stat, a[None], b[None], [0])[0]
        model.steps += 1
        opt.zero_grad()
        loss.backward()
        opt.step()
        values.append(-float(loss.detach()))
    return float(np.mean(values[-50:]))


def test_mine_bound_rises_on_correlated_inputs_and_stays_near_zero_on_independent_ones():
    dependent, independent = _mine_run(True), _mine_run(False)
    # b = a + 0.3 noise in 8 dims: true MI = 8 * 0.5 * ln(1 + 1/0.09) = 9.97 nats; the DV bound on a
    # batch of 256 cannot exceed ln(256) = 5.5, and gets well above 1 here.
    assert dependent > 1.5, dependent
    assert abs(independent) < 0.15, independent


def test_weights_follow_the_mutual_information():
    # three items: pairs (0,1), (0,2), (1,2). Item 0 shares much with both others, item 2 little.
    w = MoCME._weights(torch.tensor([2.0, 1.0, 0.2]), 3, 1.0)
    assert w[2] > w[1] > w[0]
    assert torch.allclose(w, torch.softmax(-torch.tensor([1.5, 1.1, 0.6]), 0))
    assert torch.allclose(MoCME._weights(torch.tensor([0.7, 0.7, 0.7]), 3, 1.0), torch.full((3,), 1 / 3))


def test_batch_level_weights_come_from_the_estimates(tiny):
    model = build(tiny).eval()
    with torch.no_grad():
        model.steps.fill_(1000)                    # bias correction ~ 1
        model.mi_ema.zero_()
        model.mi_ema[model._slot(1, 0)] = 3.0      # image views 0 and 1 share a lot
        base = len(model.names) * len(model.view_pairs)
        model.mi_ema[base + 0] = 2.0               # structure and image share a lot
        _, wa, wb = model.fuse(model._views(torch.arange(4)))
    assert wa[0, 1, 2] > wa[0, 1, 0] and torch.isclose(wa[0, 1, 0], wa[0, 1, 1])
    torch.testing.assert_close(wa[0, 0], torch.full((3,), 1 / 3))
    assert wb[0, 2] > wb[0, 0] and torch.isclose(wb[0, 0], wb[0, 1])


def _param_names(model):
    return {n for n, _ in model.named_parameters()}, {n for n, _ in model.named_buffers()}


def test_each_switch_removes_exactly_its_part(tiny):
    full_p, full_b = _param_names(build(tiny))
    mean_p, mean_b = _param_names(build(tiny, fusion="mean"))
    assert full_p - mean_p == {n for n in full_p if n.startswith(("t_view.", "t_modality."))} != set()
    assert mean_p < full_p and full_b - mean_b == {"mi_ema", "log_z", "steps"}
    assert build(tiny, fusion="mean").auxiliary_parameters() == []
    assert _param_names(build(tiny, mi_weights="entity")) == (full_p, full_b)
    for k in (1, 2, 5):
        model = build(tiny, num_experts=k)
        assert model.experts["image"].w1.shape == (k, 8, 8) and len(model.view_pairs) == k * (k - 1) // 2
        assert (model.t_view is None) == (k == 1)
    with pytest.raises(ValueError, match="fusion must be one of"):
        MoCMEConfig(fusion="attention")


def test_learned_fill_gives_absent_entities_a_trainable_vector(tiny):
    present = {m: np.array(tiny.present[m]).copy() for m in tiny.modalities}
    present["image"][:3] = False
    model = MoCME(SMALL, inputs(tiny, "learned", present), torch.Generator().manual_seed(0))
    assert model.features["image"].missing is not None
    model.train()
    loss = model.score_hrt(torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([4, 5])).sum()
    loss.backward()
    assert model.features["image"].missing.grad.abs().sum() > 0


def test_same_seed_same_numbers_through_training(tiny):
    from mmkgbench.runner import build_model
    from mmkgbench.grid import grid_from_dict
    from mmkgbench.resolve import resolve
    from mmkgbench.train import TrainConfig, train
    runs = []
    for _ in range(2):
        grid = grid_from_dict({"models": ["mocme"], "datasets": ["synthetic_tiny"], "seeds": [0],
                               "train": {"max_epochs": 3, "eval_every": 0, "batch_size": 32, "num_negatives": 8,
                                         "lr": 1e-2},
                               "overrides": {"mocme": {"dim": 4, "mine_hidden": 8}}})
        cell = grid.cells[0]
        from mmkgbench.datasets import load_dataset
        data = load_dataset("synthetic_tiny")
        config = resolve(cell, data)
        torch.manual_seed(0)
        model = build_model(cell, config, data)
        res = train(model, data.train, data.num_relations, data.num_entities, TrainConfig(**config["train"]), seed=0)
        runs.append(([row["loss"] for row in res.history], [row["aux_loss"] for row in res.history],
                     model.mi_ema.clone()))
    assert runs[0][0] == runs[1][0] and runs[0][1] == runs[1][1] and torch.equal(runs[0][2], runs[1][2])
    assert all(math.isfinite(v) for v in runs[0][1]) and int(model.steps) > 0


def test_interpretation_tables(tiny):
    model = build(tiny)
    model.auxiliary_loss(torch.arange(8), torch.zeros(8, dtype=torch.long))
    tables = model.interpretation(torch.tensor(np.array(tiny.train)))
    views, mods = tables["view_weights"], tables["modality_weights"]
    assert len(views) == 9 and len(mods) == 3 and set(mods["modality"]) == {"structure", "image", "text"}
    assert np.allclose(views.groupby("modality")["weight"].sum(), 1.0) and np.isclose(mods["weight"].sum(), 1.0)
    assert views["mi"].notna().all() and mods["mi"].notna().all()
    entity = build(tiny, mi_weights="entity")
    entity.auxiliary_loss(torch.arange(8), torch.zeros(8, dtype=torch.long))
    spread = entity.interpretation(torch.tensor(np.array(tiny.train)))["modality_weights"]["weight_std"]
    assert (spread > 0).all()                      # entity-level weights differ between entities


def test_mocme_beats_structure_only_rotate_on_a_sparse_graph_with_informative_features():
    """synthetic_sparse: about 5 train triples per entity, image signal 0.95, text 0.8. Same budget
    for both (d = 32, gamma 4, 32 negatives, alpha 1, Adam lr 3e-3, weight decay 1e-3, batch 128,
    60 epochs, validation every 20), seeds 0, 1, 2; the assertion is on the mean per-seed gap."""
    train = {"lr": 3e-3, "weight_decay": 1e-3, "batch_size": 128, "num_negatives": 32, "adversarial_temperature": 1.0,
             "max_epochs": 60, "eval_every": 20, "patience": 5}
    seeds = (0, 1, 2)
    best = {name: [best_valid_mrr(name, "synthetic_sparse", train, {"dim": 32, "gamma": 4.0}, seed=s) for s in seeds]
            for name in ("rotate", "mocme")}
    gap = np.subtract(best["mocme"], best["rotate"])
    # Measured on the 2-core machine, seeds 0-4 (valid MRR, MoCME / RotatE): 0.0824/0.0538, 0.0673/0.0526,
    # 0.0723/0.0432, 0.0675/0.0482, 0.0680/0.0603; per-seed gap 0.0286, 0.0147, 0.0291, 0.0193, 0.0077,
    # mean 0.0199, sd 0.0092. Margin = mean - 3 sd / sqrt(3) = 0.0199 - 0.0159 = 0.004 (> 0: fails if the
    # features stop helping). Seeds 0-2 give a mean gap of 0.0241; the lowest 3-seed mean among seeds
    # 0-4 is 0.0139 (seeds 1, 3, 4); seed 5, measured after the margin was set (0.0709/0.0554), gives
    # seeds 3-5 a mean gap of 0.0142, so other seeds also pass.
    assert gap.mean() >= 0.004, best
