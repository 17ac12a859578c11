"""Tie rules: exact expectations over random tie orders, against brute-force enumeration and fractions."""
from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest
import torch

from mmkgbench.evaluate import EvalConfig, evaluate
from mmkgbench.ranking import KnownAnswers
from mmkgbench.ties import TIE_POLICIES, expected_hits, expected_metrics, expected_reciprocal_rank, query_values


class FixedScores(torch.nn.Module):
    """A 'model' whose scores depend on the relation only: table (2R, E), row r for queries (?, r)."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table, self.num_entities = table, table.shape[1]

    def score_t(self, h, r):
        return self.table[r]


def brute_force(table: np.ndarray, triples: np.ndarray, num_relations: int, ks=(1, 3)) -> dict:
    """Metrics averaged over every tie order: for each query, every permutation of all E candidates
    breaks the ties (sort by score, then by place in the permutation), filtered answers are dropped,
    and the target's place is its rank. Per side: mean over queries of the mean over permutations,
    which by linearity is the mean over all joint orders of the metric of the whole split."""
    E = table.shape[1]
    known = {}
    for h, r, t in triples:
        known.setdefault((h, r), set()).add(t)
        known.setdefault((t, r + num_relations), set()).add(h)
    perms = list(itertools.permutations(range(E)))
    per_side = {"tail": [], "head": []}
    for h, r, t in triples:
        for side, (e, rel, target) in (("tail", (h, r, t)), ("head", (t, r + num_relations, h))):
            drop = known[(e, rel)] - {target}
            values = {"mrr": 0.0, "mr": 0.0, **{f"hits@{k}": 0.0 for k in ks}}
            for perm in perms:
                place = {c: i for i, c in enumerate(perm)}
                order = [c for c in sorted(range(E), key=lambda c: (-table[rel, c], place[c])) if c not in drop]
                rank = order.index(target) + 1
                values["mrr"] += 1 / rank
                values["mr"] += rank
                for k in ks:
                    values[f"hits@{k}"] += rank <= k
            per_side[side].append({m: v / len(perms) for m, v in values.items()})
    out = {side: {m: float(np.mean([q[m] for q in qs])) for m in qs[0]} for side, qs in per_side.items()}
    both = per_side["tail"] + per_side["head"]
    out["both"] = {m: float(np.mean([q[m] for q in both])) for m in both[0]}
    return out


# 6 entities, 2 relations. Row r scores tail queries (?, r); row r + 2 head queries (reciprocal).
TABLE = np.array([[3.0, 3.0, 3.0, 1.0, 3.0, 0.0],      # r0: a 4-way tie at the top
                  [5.0, 2.0, 2.0, 2.0, 1.0, 2.0],      # r1: one clear winner, a 4-way tie in the middle
                  [2.0, 2.0, 0.0, 2.0, 5.0, 2.0],      # r0^-1
                  [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]])     # r1^-1: all equal
# several targets per query, some of them tied with the target and filtered
TRIPLES = np.array([[0, 0, 1], [0, 0, 2], [3, 0, 4], [5, 0, 3], [2, 1, 2], [0, 1, 3], [4, 1, 0], [1, 1, 5],
                    [3, 1, 5]])


@pytest.mark.parametrize("seed", [None, 0, 1, 2])
def test_expected_metrics_equal_brute_force_over_tie_orders(seed):
    table, triples = TABLE, TRIPLES
    if seed is not None:                      # random score tables with few levels: many ties
        rng = np.random.default_rng(seed)
        table = rng.integers(0, 3, (4, 6)).astype(np.float64)
        triples = np.unique(np.stack([rng.integers(0, 6, 10), rng.integers(0, 2, 10), rng.integers(0, 6, 10)], 1),
                            axis=0)
    res = evaluate(FixedScores(torch.from_numpy(table).float()), triples, KnownAnswers(triples, 2), num_relations=2,
                   cfg=EvalConfig(tie="expected", hits_at=(1, 3), batch_size=4))
    truth = brute_force(table, triples, 2)
    for side in ("both", "tail", "head"):
        assert res.metrics[side].keys() == truth[side].keys()
        for m, v in truth[side].items():
            assert res.metrics[side][m] == pytest.approx(v, rel=1e-12, abs=1e-12), (side, m)
    # MR in expectation is the realistic MR; MRR and Hits@k of realistic ranks are not expectations
    real = evaluate(FixedScores(torch.from_numpy(table).float()), triples, KnownAnswers(triples, 2), num_relations=2,
                    cfg=EvalConfig(hits_at=(1, 3)))
    assert real.metrics["both"]["mr"] == pytest.approx(truth["both"]["mr"], rel=1e-12)
    pq = real.per_query
    assert real.metrics["both"]["mrr"] == pytest.approx((1 / pq["rank_real"]).mean(), rel=1e-12)
    assert real.metrics["both"]["hits@1"] == pytest.approx((pq["rank_real"] <= 1).mean(), rel=1e-12)
    if seed is None:                          # the fixed table has ties at the top: the two differ
        assert real.metrics["both"]["mrr"] < truth["both"]["mrr"]
        assert real.metrics["both"]["hits@1"] < truth["both"]["hits@1"]


def test_two_way_tie_at_the_top_hits_at_1_is_0_realistic_and_half_expected():
    triples = np.array([[0, 0, 1]])
    table = torch.tensor([[0.0, 4.0, 4.0, 1.0],      # tail query (0, 0, ?): target 1 ties with entity 2
                          [9.0, 0.0, 0.0, 0.0]])     # head query: target 0 alone on top
    known = KnownAnswers(triples, 1)
    real = evaluate(FixedScores(table), triples, known, num_relations=1, cfg=EvalConfig(hits_at=(1,)))
    exp = evaluate(FixedScores(table), triples, known, num_relations=1, cfg=EvalConfig(tie="expected", hits_at=(1,)))
    assert real.per_query.set_index("side").loc["tail", "rank_real"] == 1.5
    assert real.metrics["tail"]["hits@1"] == 0.0 and exp.metrics["tail"]["hits@1"] == 0.5
    assert real.metrics["tail"]["mrr"] == pytest.approx(1 / 1.5) and exp.metrics["tail"]["mrr"] == 0.75
    assert real.metrics["tail"]["mr"] == exp.metrics["tail"]["mr"] == 1.5
    assert exp.metrics["both"] == {"mrr": 0.875, "mr": 1.25, "hits@1": 0.75}
    assert exp.metrics["head"] == real.metrics["head"]                   # no tie: the rules agree


# (opt, pess): no tie, short and long blocks, blocks that start below and above the direct-sum cut-off,
# large ranks with small blocks (where digamma(pess + 1) - digamma(opt) loses ~1e-12)
BLOCKS = [(1, 1), (1, 2), (3, 3), (1, 64), (1, 65), (2, 66), (5, 200), (31, 100), (32, 97), (33, 96), (20, 500),
          (1, 3000), (1000, 1100), (123456, 123500), (10**6, 10**6 + 300), (9_999_000, 10**7), (10**7, 10**7)]


def test_expected_reciprocal_rank_matches_exact_fractions():
    opt, pess = (np.array(c) for c in zip(*BLOCKS))
    got = expected_reciprocal_rank(opt, pess)
    for (a, b), g in zip(BLOCKS, got):
        exact = sum(Fraction(1, j) for j in range(a, b + 1)) / (b - a + 1)
        assert abs(Fraction(float(g)) - exact) / exact < 1e-15, (a, b)


def test_expected_hits_by_hand_and_clipped():
    opt, pess = np.array([1, 1, 2, 4, 3, 10]), np.array([1, 4, 5, 4, 3, 20])
    np.testing.assert_array_equal(expected_hits(opt, pess, 3), [1, 0.75, 0.5, 0, 1, 0])
    np.testing.assert_array_equal(expected_hits(opt, pess, 12), [1, 1, 1, 1, 1, 3 / 11])
    m = expected_metrics(opt, pess, ks=(3,))
    assert m["mr"] == np.mean((opt + pess) / 2) and m["hits@3"] == pytest.approx(np.mean([1, 0.75, 0.5, 0, 1, 0]))


@pytest.mark.parametrize("opt,pess,match", [([2], [1], "1 <= opt <= pess"), ([0], [1], "1 <= opt <= pess"),
                                            ([1.5], [2], "integer"), ([1, 2], [2], "one length"),
                                            ([], [], "empty")])
def test_bad_tie_blocks_are_refused(opt, pess, match):
    with pytest.raises(ValueError, match=match):
        expected_metrics(np.array(opt), np.array(pess))


def test_query_values_follow_the_tie_rule():
    import pandas as pd
    pq = pd.DataFrame({"rank_opt": [1, 2, 1], "rank_pess": [2, 2, 4]})
    pq["rank_real"] = (pq.rank_opt + pq.rank_pess) / 2
    pq["rank_rand"] = [2, 2, 1]
    np.testing.assert_allclose(query_values(pq, "mrr", "expected"), [0.75, 0.5, (1 + 1 / 2 + 1 / 3 + 1 / 4) / 4])
    np.testing.assert_allclose(query_values(pq, "hits@1", "expected"), [0.5, 0, 0.25])
    np.testing.assert_allclose(query_values(pq, "mrr", "realistic"), [1 / 1.5, 0.5, 1 / 2.5])
    np.testing.assert_allclose(query_values(pq, "hits@1", "optimistic"), [1, 0, 1])
    np.testing.assert_allclose(query_values(pq, "mr", "random"), [2, 2, 1])
    with pytest.raises(ValueError, match="lack column"):
        query_values(pq[["rank_real"]], "mrr", "expected")
    with pytest.raises(ValueError, match="unknown tie policy"):
        query_values(pq, "mrr", "average")
    with pytest.raises(ValueError, match="unknown metric"):
        query_values(pq, "hits@", "realistic")
    assert set(TIE_POLICIES) == {"realistic", "optimistic", "pessimistic", "random", "expected"}
