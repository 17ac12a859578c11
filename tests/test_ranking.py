"""Ranks and metrics: hand-made ties, properties, and the fast path against the reference."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mmkgbench.evaluate import TIE_POLICIES, EvalConfig, evaluate, random_tie_ranks
from mmkgbench.ranking import KnownAnswers, filtered_ranks, metrics, ranks
from mmkgbench.ties import query_values



def test_libkge_tie_example():
    # scores a:10, b:10, c:10, d:11, e:9; target a -> optimistic 2, pessimistic 4, realistic 3
    scores = torch.tensor([[10.0, 10.0, 10.0, 11.0, 9.0]])
    rk = ranks(scores, torch.tensor([0]))
    assert rk.optimistic.tolist() == [2]
    assert rk.pessimistic.tolist() == [4]
    assert rk.realistic.tolist() == [3.0]


@pytest.mark.parametrize("E", [1, 2, 5, 100])
def test_all_equal_scores_give_mean_rank(E):
    rk = ranks(torch.zeros(3, E), torch.tensor([0, E - 1, E // 2]))
    assert rk.optimistic.tolist() == [1, 1, 1]
    assert rk.pessimistic.tolist() == [E] * 3
    assert rk.realistic.tolist() == [(E + 1) / 2] * 3


def test_filtering_removes_other_true_answers_only():
    scores = torch.tensor([[5.0, 9.0, 8.0, 7.0, 1.0]])
    known = torch.tensor([[False, True, False, True, False]])   # b and d are other true answers
    assert ranks(scores, torch.tensor([2])).realistic.item() == 2.0        # raw: only b beats c
    assert ranks(scores, torch.tensor([2]), known).realistic.item() == 1.0  # filtered: b removed
    # a set target bit is ignored: the target is never filtered away
    known_t = known.clone()
    known_t[0, 2] = True
    assert ranks(scores, torch.tensor([2]), known_t).realistic.item() == 1.0
    # a filtered candidate tied with the target does not count as a tie either
    tie = torch.tensor([[3.0, 3.0, 3.0]])
    assert ranks(tie, torch.tensor([0]), torch.tensor([[False, True, False]])).pessimistic.item() == 2


def test_ranks_is_pure():
    scores = torch.tensor([[1.0, 2.0, 3.0]])
    before = scores.clone()
    ranks(scores, torch.tensor([1]), torch.tensor([[True, False, False]]))
    assert torch.equal(scores, before)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.integers(1, 9), st.integers(0, 2**31 - 1), st.integers(1, 4))
def test_rank_order_and_permutation_invariance(B, E, seed, levels):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(levels, (B, E), generator=g).float()      # few levels: many ties
    target = torch.randint(E, (B,), generator=g)
    known = torch.rand(B, E, generator=g) < 0.3
    rk = ranks(scores, target, known)
    assert (rk.optimistic <= rk.realistic).all() and (rk.realistic <= rk.pessimistic).all()
    assert (rk.optimistic >= 1).all() and (rk.pessimistic <= E).all()
    perm = torch.randperm(E, generator=g)
    inv = torch.argsort(perm)
    rk_p = ranks(scores[:, perm], inv[target], known[:, perm])
    assert torch.equal(rk.optimistic, rk_p.optimistic) and torch.equal(rk.pessimistic, rk_p.pessimistic)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 8), st.integers(2, 12), st.integers(0, 2**31 - 1))
def test_fast_path_matches_reference(B, E, seed):
    """filtered_ranks (the evaluator's path, sparse filter) == ranks with a dense mask."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(4, (B, E), generator=g).float()
    target = torch.randint(E, (B,), generator=g)
    known = torch.rand(B, E, generator=g) < 0.4
    ref = ranks(scores, target, known)
    rows, cols = known.nonzero(as_tuple=True)
    fast = filtered_ranks(scores.clone(), target, rows, cols)
    assert torch.equal(ref.optimistic, fast.optimistic)
    assert torch.equal(ref.pessimistic, fast.pessimistic)


def test_filtered_ranks_rejects_nan_target():
    empty = torch.zeros(0, dtype=torch.long)
    with pytest.raises(ValueError, match="non-finite score"):
        filtered_ranks(torch.tensor([[float("nan"), 1.0]]), torch.tensor([0]), empty, empty)


def test_compiled_counting_kernel_matches_eager():
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(5, (33, 257), generator=g).float()
    target = torch.randint(257, (33,), generator=g)
    known = torch.rand(33, 257, generator=g) < 0.1
    rows, cols = known.nonzero(as_tuple=True)
    eager = filtered_ranks(scores.clone(), target, rows, cols, compile="off")
    fused = filtered_ranks(scores.clone(), target, rows, cols, compile="on")
    assert torch.equal(eager.optimistic, fused.optimistic) and torch.equal(eager.pessimistic, fused.pessimistic)


def _hard_block(seed=0, B=40, E=301, tiny_targets=True):
    """Scores with ties, +-inf, NaN candidates, zeros, subnormals and targets of every kind."""
    g = torch.Generator().manual_seed(seed)
    s = torch.randint(-3, 4, (B, E), generator=g).float() * 0.5
    special = torch.tensor([float("inf"), float("-inf"), float("nan"), 0.0, -0.0, 1e-40, -1e-40, 1e-30,
                            3e38, -3e38, 1.0 + 2 ** -23, 1.0 - 2 ** -24])
    where = torch.rand(B, E, generator=g) < 0.15
    s[where] = special[torch.randint(len(special), (int(where.sum()),), generator=g)]
    target = torch.randint(E, (B,), generator=g)
    finite_targets = torch.tensor([0.0, -0.0, 1e-40, 1e-30, 1e-31, 1.0, 1.0 + 2 ** -23, 3e38, -0.5, 1.5])
    if not tiny_targets:
        finite_targets = finite_targets[finite_targets.abs() >= 1e-30]
    s[torch.arange(B), target] = finite_targets[torch.arange(B) % len(finite_targets)]
    known = torch.rand(B, E, generator=g) < 0.1
    return s, target, known


@pytest.mark.parametrize("tiny", [True, False], ids=["tiny-targets", "normal-targets"])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("kernel", ["compare", "sign", "sign-sliced", "compiled", "auto-measured"])
def test_every_counting_kernel_equals_the_reference(kernel, seed, tiny, monkeypatch):
    """Each kernel (mmkgbench.counting) gives the reference's ranks exactly, on blocks with ties,
    +-inf and NaN candidates, signed zeros, subnormal scores, and targets near 0 or not."""
    from mmkgbench import counting
    s, target, known = _hard_block(seed, tiny_targets=tiny)
    ref = ranks(s, target, known)
    rows, cols = known.nonzero(as_tuple=True)
    work = s.clone()
    ar = torch.arange(len(target))
    st = work[ar, target][:, None].clone()
    work[rows, cols] = float("-inf")
    work[ar, target] = float("-inf")
    if kernel == "compare":
        gt, ge = counting.count_compare(work, st)
    elif kernel.startswith("sign"):
        if kernel == "sign-sliced":                 # 19 column slices of 16: some with NaN scores, some without
            monkeypatch.setattr(counting, "CACHE_ENTRIES", 16 * len(target))
        gt, ge = counting.count_sign(work, st)
    else:
        chooser = counting.CountingKernels()
        if not chooser.compile(work.device):
            pytest.skip(f"torch.compile unavailable: {chooser.failed}")
        if kernel == "compiled":
            gt, ge = chooser.compiled(work, st)
        else:                                   # first block of its size class: both kernels, compared
            gt, ge = chooser.count(work, st, "auto")
            assert len(chooser.choice) == 1 and set(next(iter(chooser.timings.values()))) == {"compiled", "sign"}
    assert torch.equal(gt.long() + 1, ref.optimistic) and torch.equal(ge.long() + 1, ref.pessimistic)


def test_sign_kernel_without_nan_takes_the_sign_path():
    from mmkgbench.counting import count_sign
    s = torch.tensor([[2.0, 1.0, 1.0, -1.0, float("-inf"), float("inf")]])
    work = s.clone()
    gt, ge = count_sign(work, torch.tensor([[1.0]]))
    assert gt.tolist() == [2] and ge.tolist() == [4] and set((work / 2.0 ** -124).unique().tolist()) <= {-1.0, 0.0, 1.0}


def test_sign_kernel_is_exact_at_float_resolution():
    """Neighbouring floats (one ulp apart) around a target are above, tied and below, never merged."""
    from mmkgbench.counting import count_sign
    t = torch.tensor([[1.0], [-2.5], [1e-29]])
    up, down = (torch.nextafter(t, torch.tensor(x)) for x in (float("inf"), float("-inf")))
    s = torch.cat([up, t, down, up, down, down], 1)
    gt, ge = count_sign(s.clone(), t)
    assert gt.tolist() == [2, 2, 2] and ge.tolist() == [3, 3, 3]


def test_auto_compiles_only_once_counting_has_cost_as_much():
    """Ski rental: "auto" counts with the eager kernel until the time spent exceeds the compile cost."""
    from mmkgbench import counting
    chooser = counting.CountingKernels()
    s = torch.randn(8, 50)
    chooser.count(s.clone(), s[:, :1].clone(), "auto")
    assert chooser.compiled is None and 0 < chooser.rent < counting.COMPILE_SECONDS
    chooser.rent = counting.COMPILE_SECONDS          # as if that much had been spent
    chooser.count(s.clone(), s[:, :1].clone(), "auto")
    assert chooser.compiled is not None or chooser.failed is not None


def test_metrics_by_hand():
    m = metrics(np.array([1.0, 2.0, 4.0, 10.5]), ks=(1, 3, 10))
    assert m["mrr"] == pytest.approx((1 + 0.5 + 0.25 + 1 / 10.5) / 4)
    assert m["mr"] == pytest.approx((1 + 2 + 4 + 10.5) / 4)
    assert m["hits@1"] == 0.25 and m["hits@3"] == 0.5 and m["hits@10"] == 0.75
    assert metrics(np.array([3.0]), ks=(5,))["hits@5"] == 1.0
    with pytest.raises(ValueError):
        metrics(np.array([]))


def test_known_answers_index_matches_brute_force():
    rng = np.random.default_rng(0)
    E, R = 9, 3
    triples = np.unique(np.stack([rng.integers(E, size=60), rng.integers(R, size=60), rng.integers(E, size=60)], 1),
                        axis=0)
    idx = KnownAnswers(triples, R)
    e = torch.arange(E).repeat_interleave(2 * R)
    r = torch.arange(2 * R).repeat(E)
    mask = idx.mask(e, r, E)
    for i, (ei, ri) in enumerate(zip(e.tolist(), r.tolist())):
        if ri < R:
            truth = set(triples[(triples[:, 0] == ei) & (triples[:, 1] == ri), 2])
        else:
            truth = set(triples[(triples[:, 2] == ei) & (triples[:, 1] == ri - R), 0])
        assert set(mask[i].nonzero()[:, 0].tolist()) == truth, (ei, ri)


def test_known_answers_empty_and_unknown_keys():
    idx = KnownAnswers(np.zeros((0, 3), dtype=np.int64), 2)
    rows, cols = idx.lookup(torch.tensor([0, 1]), torch.tensor([0, 3]))
    assert len(rows) == 0 and len(cols) == 0


class _FixedScores(torch.nn.Module):
    """A 'model' that returns a fixed (2R x E) table of scores per entity-independent relation."""

    def __init__(self, table: torch.Tensor, E: int):
        super().__init__()
        self.table, self.num_entities = table, E

    def score_t(self, h, r):
        return self.table[r]


def test_evaluate_filters_both_directions_and_reports_sides():
    # 4 entities, 1 relation: triples (0,0,1), (0,0,2), (3,0,1). Scores favour entity 2 then 1.
    triples = np.array([[0, 0, 1], [0, 0, 2], [3, 0, 1]])
    table = torch.tensor([[0.0, 5.0, 9.0, 1.0],      # r = 0 (tail queries)
                          [7.0, 2.0, 0.0, 7.0]])     # r = 1 = 0^-1 (head queries)
    model = _FixedScores(table, 4)
    known = KnownAnswers(triples, 1)
    res = evaluate(model, triples[:1], known, num_relations=1, cfg=EvalConfig(batch_size=1))
    pq = res.per_query.set_index("side")
    # tail query (0, 0, ?) -> 1: entity 2 (score 9) is another true answer, filtered: rank 1
    assert pq.loc["tail", "rank_real"] == 1.0
    assert pq.loc["tail", "n_cand"] == 3
    # head query (1, 0^-1, ?) -> 0: entity 3 is another true head (filtered); 0 alone on top: rank 1
    assert pq.loc["head", "rank_real"] == 1.0
    assert res.metrics["both"]["mrr"] == 1.0
    # without the other answers in the filter, both queries drop to rank 2 (entity 2 / entity 3 tie at 7)
    res_raw = evaluate(model, triples[:1], KnownAnswers(triples[:1], 1), num_relations=1)
    pq = res_raw.per_query.set_index("side")
    assert pq.loc["tail", "rank_real"] == 2.0
    assert (pq.loc["head", "rank_opt"], pq.loc["head", "rank_pess"]) == (1, 2)
    assert res_raw.metrics["head"]["mrr"] == pytest.approx(1 / 1.5)


def test_evaluate_batch_size_does_not_change_ranks(tiny):
    g = torch.Generator().manual_seed(3)
    E, R = tiny.num_entities, tiny.num_relations
    model = _FixedScores(torch.randint(3, (2 * R, E), generator=g).float(), E)
    known = KnownAnswers(np.concatenate([tiny.train, tiny.valid, tiny.test]), R)
    a = evaluate(model, tiny.test, known, num_relations=R, cfg=EvalConfig(batch_size=1)).per_query
    b = evaluate(model, tiny.test, known, num_relations=R, cfg=EvalConfig(batch_size=1000, compile="on")).per_query
    assert a.equals(b)


def test_known_answers_contains_and_candidate_counts():
    triples = np.array([[0, 0, 1], [0, 0, 2], [3, 1, 1]])
    idx = KnownAnswers(triples, 2)
    e = torch.tensor([0, 0, 0, 1, 1, 2, 3])
    r = torch.tensor([0, 0, 1, 2, 3, 2, 1])
    y = torch.tensor([1, 3, 1, 0, 3, 0, 9])            # 9 is beyond every stored answer
    assert idx.contains(e, r, y).tolist() == [True, False, False, True, True, True, False]
    start, count = idx.spans(e, r)
    assert count.tolist() == [2, 2, 0, 1, 1, 1, 1]


def test_random_tie_ranks_are_uniform_over_the_tied_places():
    opt, pess = np.array([1, 3, 2]), np.array([1, 3, 6])
    draws = np.stack([random_tie_ranks(opt, pess, seed) for seed in range(2000)])
    assert (draws[:, 0] == 1).all() and (draws[:, 1] == 3).all()       # no tie: the rank itself
    counts = np.bincount(draws[:, 2], minlength=7)[2:]                 # places 2..6, 400 expected each
    assert counts.min() > 330 and counts.max() < 470
    assert np.array_equal(random_tie_ranks(opt, pess, 7), random_tie_ranks(opt, pess, 7))


@pytest.mark.parametrize("tie", list(TIE_POLICIES))
def test_tie_policy_chooses_the_rank_the_metrics_use(tiny, tie):
    g = torch.Generator().manual_seed(5)
    E, R = tiny.num_entities, tiny.num_relations
    model = _FixedScores(torch.randint(2, (2 * R, E), generator=g).float(), E)   # many ties
    known = KnownAnswers(np.concatenate([tiny.train, tiny.valid, tiny.test]), R)
    res = evaluate(model, tiny.test, known, num_relations=R, cfg=EvalConfig(tie=tie), seed=11)
    pq = res.per_query
    assert (pq["rank_opt"] <= pq["rank_rand"]).all() and (pq["rank_rand"] <= pq["rank_pess"]).all()
    # "expected" reads rank_opt and rank_pess (tests/test_ties.py checks it against brute force)
    rank = pq["rank_real"] if tie == "expected" else pq[TIE_POLICIES[tie]]
    assert res.metrics["both"]["mr"] == pytest.approx(rank.mean())
    if tie != "expected":
        assert res.metrics["tail"]["mrr"] == pytest.approx((1 / rank[pq.side == "tail"]).mean())
    assert res.metrics["tail"]["mrr"] == pytest.approx(query_values(pq[pq.side == "tail"], "mrr", tie).mean())
    assert res.metrics["head"]["hits@3"] == pytest.approx(query_values(pq[pq.side == "head"], "hits@3", tie).mean())
    # the random column is a function of the seed only, whatever the policy
    again = evaluate(model, tiny.test, known, num_relations=R, cfg=EvalConfig(), seed=11).per_query
    assert again["rank_rand"].equals(pq["rank_rand"])


def test_unknown_tie_policy_is_refused():
    with pytest.raises(ValueError, match="tie must be one of"):
        EvalConfig(tie="average")
