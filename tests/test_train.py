"""The training loop: both regimes, determinism, model selection on valid, divergence handling."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from baselines.distmult import DistMult, DistMultConfig
from mmkgbench.evaluate import evaluate
from mmkgbench.model import ModelInputs
from mmkgbench.ranking import KnownAnswers
from mmkgbench.train import TrainConfig, TrainingDiverged, negative_batches, train


def fit(data, seed=0, **over):
    torch.manual_seed(seed)
    model = DistMult(DistMultConfig(dim=8), ModelInputs(data.num_entities, 2 * data.num_relations),
                     torch.Generator().manual_seed(seed))
    known = KnownAnswers(np.concatenate([data.train, data.valid]), data.num_relations)
    cfg = TrainConfig(**{"regime": "negative", "lr": 0.05, "batch_size": 8, "num_negatives": 4, "max_epochs": 12,
                         "eval_every": 2, "patience": 100, **over})
    res = train(model, data.train, data.num_relations, data.num_entities, cfg, valid_triples=data.valid,
                known_valid=known, seed=seed)
    return model, res, known


@pytest.mark.parametrize("regime", ["kvsall", "negative"])
def test_same_seed_same_numbers(regime, tiny):
    _, a, _ = fit(tiny, 0, regime=regime)
    _, b, _ = fit(tiny, 0, regime=regime)
    _, c, _ = fit(tiny, 1, regime=regime)
    assert a.history and [r["loss"] for r in a.history] == [r["loss"] for r in b.history]
    assert a.best_valid == b.best_valid
    assert [r["loss"] for r in a.history] != [r["loss"] for r in c.history]


def test_best_checkpoint_is_restored(tiny):
    model, res, known = fit(tiny, 0, max_epochs=12, eval_every=2)
    evaluated = [r for r in res.history if "valid_mrr" in r]
    assert [r["epoch"] for r in evaluated] == [2, 4, 6, 8, 10, 12]
    best = max(evaluated, key=lambda r: r["valid_mrr"])
    assert res.best_epoch == best["epoch"]
    again = evaluate(model, tiny.valid, known, num_relations=tiny.num_relations).metrics["both"]
    assert again["mrr"] == pytest.approx(best["valid_mrr"])     # the restored weights are the best ones
    assert res.selection["split"] == "valid" and res.selection["metric"] == "mrr"


def test_early_stopping_after_patience(tiny):
    # lr so small nothing improves after the first evaluation: stop after `patience` more evaluations
    _, res, _ = fit(tiny, 0, lr=1e-9, max_epochs=50, eval_every=1, patience=2, min_delta=1.0)
    assert res.stopped_early and res.epochs == 3 and res.best_epoch == 1


def test_no_selection_keeps_last_epoch(tiny):
    _, res, _ = fit(tiny, 0, eval_every=0, max_epochs=3)
    assert res.best_epoch == 3 and res.best_valid == {} and res.selection["rule"] == "last epoch"


class NaNAfter(DistMult):
    """DistMult whose scores turn NaN from the `after`-th call of score_hrt on."""

    def __init__(self, *a, after=1, **kw):
        super().__init__(*a, **kw)
        self.calls, self.after = 0, after

    def score_hrt(self, h, r, t):
        self.calls += 1
        s = super().score_hrt(h, r, t)
        return s * float("nan") if self.calls >= self.after else s


def test_nan_loss_stops_with_clear_error(tiny):
    model = NaNAfter(DistMultConfig(dim=4), ModelInputs(tiny.num_entities, 2 * tiny.num_relations),
                     torch.Generator().manual_seed(0), after=5)   # 2 calls a step: step 3
    cfg = TrainConfig(regime="negative", batch_size=8, max_epochs=5, eval_every=0)
    with pytest.raises(TrainingDiverged, match=r"loss became nan at epoch 1, step 3/4"):
        train(model, tiny.train, tiny.num_relations, tiny.num_entities, cfg)


def test_negative_batches_orient_and_sample(tiny):
    cfg = TrainConfig(regime="negative", batch_size=5, num_negatives=3)
    R, E = tiny.num_relations, tiny.num_entities
    seen = []
    for b, neg in negative_batches(torch.from_numpy(np.array(tiny.train)), R, E, cfg, torch.Generator().manual_seed(0),
                                    "cpu"):
        assert neg.shape == (len(b), 3) and int(neg.min()) >= 0 and int(neg.max()) < E
        seen.append(b)
    seen = torch.cat(seen).numpy()
    assert len(seen) == len(tiny.train)                       # every train triple once per epoch
    back = np.where(seen[:, 1:2] >= R, seen[:, [2, 1, 0]] - np.array([0, R, 0]), seen)
    assert sorted(map(tuple, back)) == sorted(map(tuple, tiny.train))
    assert (seen[:, 1] >= R).any() and (seen[:, 1] < R).any()  # both orientations occur


@pytest.mark.parametrize("bad", [dict(regime="1-n"), dict(loss="hinge"), dict(lr=0.0), dict(optimizer="sgd"),
                                 dict(label_smoothing=1.0), dict(patience=0)])
def test_train_config_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="TrainConfig"):
        TrainConfig(**bad)


def test_head_corruption_probability_is_the_bernoulli_rule():
    # relation 0: one head with three tails (1-to-N): tph 3, hpt 1 -> corrupt the head w.p. 3/4;
    # relation 1: two heads with one tail (N-to-1): tph 1, hpt 2 -> 1/3; relation 2 unused -> 1/2
    from mmkgbench.train import head_corruption_probability
    t = np.array([[0, 0, 1], [0, 0, 2], [0, 0, 3], [4, 1, 5], [6, 1, 5]])
    assert np.allclose(head_corruption_probability(t, 3).numpy(), [0.75, 1 / 3, 0.5])


def test_bern_corruption_orients_by_relation():
    # a 1-to-N relation (heads corrupted 90 % of the time) and an N-to-1 one (10 %): the share of
    # reciprocal (head-corrupting) positives follows, uniform corruption stays at one half
    one_to_n = [(h, 0, 100 + 9 * h + k) for h in range(40) for k in range(9)]
    n_to_one = [(200 + 9 * t + k, 1, t) for t in range(40) for k in range(9)]
    triples = torch.tensor(one_to_n + n_to_one)
    E, R = 600, 2

    def head_share(corruption):
        cfg = TrainConfig(regime="negative", batch_size=64, num_negatives=1, corruption=corruption)
        b = torch.cat([b for b, _ in negative_batches(triples, R, E, cfg, torch.Generator().manual_seed(0), "cpu")])
        return [float((b[:, 1] == rel + R).sum() / ((b[:, 1] == rel) | (b[:, 1] == rel + R)).sum()) for rel in (0, 1)]

    bern, uniform = head_share("bern"), head_share("uniform")
    # 360 triples per relation: binomial sd 0.016 at p = 0.9, 0.026 at p = 0.5; 4 sd margins
    assert abs(bern[0] - 0.9) < 0.065 and abs(bern[1] - 0.1) < 0.065, bern
    assert all(abs(u - 0.5) < 0.11 for u in uniform), uniform


def test_fields_added_later_keep_stored_run_ids():
    # Ids computed at commit 9d93387, before `corruption` existed: the same cells must keep them, and
    # setting the new field to another value must record it and change the id.
    from mmkgbench.datasets import load_dataset
    from mmkgbench.grid import grid_from_dict
    from mmkgbench.resolve import resolve, run_id_of
    spec = {"models": ["transe", "momok"], "datasets": ["synthetic_tiny"], "seeds": [0],
            "train": {"max_epochs": 2, "eval_every": 1, "batch_size": 64, "num_negatives": 4},
            "overrides": {"transe": {"dim": 8}}}
    data = load_dataset("synthetic_tiny")
    configs = [resolve(c, data) for c in grid_from_dict(spec).cells]
    assert [run_id_of(c) for c in configs] == ["8dd44e821ae4fe29", "0a887a7cfea6703a"]
    assert all("corruption" not in c["train"] for c in configs)
    bern = resolve(grid_from_dict({**spec, "models": ["transe"], "train": {**spec["train"], "corruption": "bern"}})
                   .cells[0], data)
    assert bern["train"]["corruption"] == "bern" and run_id_of(bern) != run_id_of(configs[0])
    assert TrainConfig(**configs[0]["train"]).corruption == "uniform"     # a stored config reads back


def test_kvsall_cross_entropy_is_the_normalised_target_softmax_loss(tiny):
    from mmkgbench.layers import kvsall_cross_entropy
    from mmkgbench.train import kvsall_batch_loss
    g = torch.Generator().manual_seed(0)
    s, y = torch.randn(4, 9, generator=g), (torch.rand(4, 9, generator=g) < 0.3).float() + 1.0 / 9
    want = np.mean([-sum(float(y[b, e]) / float(y[b].sum()) * float(torch.log_softmax(s[b], 0)[e]) for e in range(9))
                    for b in range(4)])
    assert float(kvsall_cross_entropy(s, y)) == pytest.approx(want, rel=1e-6)
    # the loop uses it under loss = "ce" (KvsAll), and refuses it in the negative regime
    model = DistMult(DistMultConfig(dim=4, l3=0.0), ModelInputs(tiny.num_entities, 2 * tiny.num_relations),
                     torch.Generator().manual_seed(0))
    answers = KnownAnswers(tiny.train, tiny.num_relations)
    q = torch.tensor([[0, 0], [3, 1], [5, tiny.num_relations]])
    ce = kvsall_batch_loss(model, q, answers, TrainConfig(loss="ce", label_smoothing=0.0))
    rows, cols = answers.lookup(q[:, 0], q[:, 1])
    target = torch.zeros(3, tiny.num_entities)
    target[rows, cols] = 1.0
    target += 1.0 / tiny.num_entities
    assert torch.allclose(ce, kvsall_cross_entropy(model.score_t(q[:, 0], q[:, 1]), target))
    assert not torch.allclose(ce, kvsall_batch_loss(model, q, answers, TrainConfig(label_smoothing=0.0)))
    with pytest.raises(ValueError, match="needs regime 'kvsall'"):
        TrainConfig(regime="negative", loss="ce")


def test_auxiliary_step_takes_the_tails_its_own_lr_and_may_be_skipped(tiny):
    # the auxiliary hook of the loop: the positives' tails in the negative regime, None under KvsAll;
    # the model's auxiliary_lr for its Adam; a None loss skips the step (AdaMF's MAT under KvsAll)
    seen = []

    class WithGenerator(DistMult):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.gen = torch.nn.Parameter(torch.ones(3))

        def auxiliary_parameters(self):
            return [self.gen]

        def auxiliary_lr(self):
            return 0.5

        def auxiliary_loss(self, h, r, t=None):
            seen.append(None if t is None else t.clone())
            return None if t is None else (self.gen ** 2).sum()

    def fit(regime):
        model = WithGenerator(DistMultConfig(dim=4), ModelInputs(tiny.num_entities, 2 * tiny.num_relations),
                              torch.Generator().manual_seed(0))
        cfg = TrainConfig(regime=regime, lr=0.01, batch_size=len(tiny.train), num_negatives=2, max_epochs=1,
                          eval_every=0)
        train(model, tiny.train, tiny.num_relations, tiny.num_entities, cfg, seed=0)
        return model
    neg = fit("negative")
    assert len(seen) == 1 and seen[0].shape == (len(tiny.train),)
    # one Adam step at lr 0.5 moves each entry by 0.5 (Adam's first step is lr x sign of the gradient)
    assert torch.allclose(neg.gen.detach(), torch.full((3,), 0.5), atol=1e-4)
    kvs = fit("kvsall")
    assert seen[-1] is None and torch.equal(kvs.gen.detach(), torch.ones(3))
