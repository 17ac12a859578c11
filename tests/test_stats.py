"""Significance tests: hand-worked small cases, agreement with scipy, edge cases and refusals."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.stats as ss

from mmkgbench import stats
from mmkgbench.stats import (FriedmanResult, PairedResult, benjamini_hochberg, friedman_nemenyi, holm, nemenyi_q,
                             paired_bootstrap_ci, paired_test, seed_summary, seed_test, sign_flip_test)


def _mean_diff(x, y, axis=-1):
    return np.mean(x - y, axis=axis)


def _ranks_pair(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Reciprocal ranks of two correlated models on n queries; many queries tie (both rank 1)."""
    rng = np.random.default_rng(seed)
    hard = rng.normal(1.5, 1.5, n)
    ra = 1 + np.floor(np.exp(hard + rng.normal(0, 0.5, n)))
    rb = 1 + np.floor(np.exp(hard + rng.normal(0.1, 0.5, n)))
    return 1 / ra, 1 / rb


# --- sign-flip test -------------------------------------------------------------------------------

@pytest.mark.parametrize("d, p", [
    # 8 sign vectors of (1, 1, 1); |sum| >= 3 only for all + and all -: 2/8
    ([1, 1, 1], 0.25),
    # non-zero (0.5, -0.25), observed |0.25|; the 4 sums are ±0.25, ±0.75, all >= 0.25: 4/4
    ([0.5, -0.25, 0, 0], 1.0),
    # non-zero (2, -1, 1), observed 2; sums over signs: 2, 0, 4, 2, -2, -4, 0, -2 -> 6 of 8 have |.| >= 2
    ([2, -1, 1, 0], 0.75),
    # (1, 2, 3, 4), observed 10 = the maximum, reached only by all + and all -: 2/16
    ([1, 2, 3, 4], 0.125),
    # a single non-zero difference: both signs give |5|: 2/2
    ([0, 0, 5], 1.0),
])
def test_sign_flip_exact_by_hand(d, p):
    assert sign_flip_test(d) == pytest.approx(p, abs=1e-15)


def test_sign_flip_exact_enumeration_spans_blocks():
    # 2^16 sign vectors, enumerated in several blocks: only all-+ and all-- reach |sum| = 16
    assert sign_flip_test(np.ones(16), resamples=2 ** 16) == pytest.approx(2 / 2 ** 16, abs=1e-18)
    # one difference of opposite sign: observed |sum| = 14. The 16 signed terms s_i d_i are +-1, and
    # |sum| >= 14 needs at most one of them against the rest: 2 * (1 + 16) = 34 of 2^16 vectors
    d = np.ones(16)
    d[5] = -1
    assert sign_flip_test(d, resamples=2 ** 16) == pytest.approx(34 / 2 ** 16, abs=1e-18)


def test_sign_flip_all_zero_is_one():
    assert sign_flip_test(np.zeros(50)) == 1.0


def test_sign_flip_monte_carlo_floor_is_one_over_b_plus_one():
    # 20 equal differences: 2^20 > resamples, so Monte Carlo. Only all-+ and all-- reach |sum| = 20,
    # each with probability 2^-20, so (with this seed) no resample does and p = (1 + 0) / (B + 1).
    assert sign_flip_test(np.ones(20), resamples=999, seed=0) == pytest.approx(1 / 1000, abs=1e-15)


def test_sign_flip_counts_ties_with_observed_despite_rounding():
    # Decimal steps make many sign vectors reach the observed |sum| in exact arithmetic but not in
    # floating point; the exact enumeration and the table-based Monte Carlo must both count them.
    d = np.array([0.1, 0.2, 0.3, -0.1, -0.2, 0.3, 0.1, 0.2, -0.3, 0.1, 0.2, 0.3, 0.1, 0.1])
    exact = sign_flip_test(d, resamples=2 ** 14)
    mc = sign_flip_test(d, resamples=2 ** 14 - 1, seed=3)
    # the exact answer by brute force with integer arithmetic (units of 0.1)
    units = np.rint(d * 10).astype(int)
    signs = 2 * ((np.arange(2 ** 14)[:, None] >> np.arange(14)) & 1) - 1
    by_hand = np.mean(np.abs(signs @ units) >= abs(units.sum()))
    assert exact == pytest.approx(by_hand, abs=1e-15)
    assert mc == pytest.approx(by_hand, abs=0.015)


def test_sign_flip_matches_scipy_exact_with_zeros():
    rng = np.random.default_rng(5)
    x = rng.normal(0.3, 1.0, 11)
    y = rng.normal(0.0, 1.0, 11)
    y[:3] = x[:3]                                    # three zero differences
    ref = ss.permutation_test((x, y), _mean_diff, permutation_type="samples", vectorized=True,
                              n_resamples=np.inf).pvalue
    assert sign_flip_test(x - y, resamples=10_000) == pytest.approx(ref, rel=1e-9)


def test_sign_flip_matches_scipy_monte_carlo():
    rng = np.random.default_rng(6)
    x = rng.normal(0.05, 1.0, 200)
    y = rng.normal(0.0, 1.0, 200)
    ref = ss.permutation_test((x, y), _mean_diff, permutation_type="samples", vectorized=True,
                              n_resamples=20_000, rng=np.random.default_rng(1)).pvalue
    mine = sign_flip_test(x - y, resamples=20_000, seed=2)
    assert 0.03 < ref < 0.5                          # a p-value where Monte Carlo error matters
    assert mine == pytest.approx(ref, abs=0.02)


def test_sign_flip_many_nonzero_agrees_with_t_test():
    # 3000 queries, large-sample regime: the randomization and t p-values nearly coincide.
    a, b = _ranks_pair(3000, 0)
    d = a - b
    d = d - d.mean() + 0.004                         # a small effect, so p is in the informative range
    p_t = ss.ttest_1samp(d, 0.0).pvalue
    assert 0.01 < p_t < 0.5
    assert sign_flip_test(d, resamples=20_000, seed=0) == pytest.approx(p_t, abs=0.02)


def test_sign_flip_determinism():
    a, b = _ranks_pair(500, 1)
    d = a - b - np.mean(a - b) + 0.01
    assert sign_flip_test(d, seed=4) == sign_flip_test(d, seed=4)
    assert sign_flip_test(d, seed=4) == sign_flip_test(d, seed=np.random.default_rng(4))


# --- bootstrap ------------------------------------------------------------------------------------

def test_bootstrap_edge_cases():
    assert paired_bootstrap_ci(np.zeros(30)) == (0.0, 0.0)
    # no zeros: every resample draws n copies of 0.5, mean exactly 0.5
    assert paired_bootstrap_ci(np.full(10, 0.5)) == (0.5, 0.5)


def test_bootstrap_matches_scipy_percentile():
    a, b = _ranks_pair(400, 2)
    d = a - b
    low, high = paired_bootstrap_ci(d, resamples=20_000, seed=0)
    ref = ss.bootstrap((d,), np.mean, method="percentile", n_resamples=20_000,
                       rng=np.random.default_rng(1)).confidence_interval
    width = ref.high - ref.low
    assert low < d.mean() < high
    assert low == pytest.approx(ref.low, abs=0.05 * width)
    assert high == pytest.approx(ref.high, abs=0.05 * width)


def test_restricted_bootstrap_has_the_full_bootstraps_distribution():
    # 300 queries, 70% zero differences: the binomial shortcut against the naive full resample.
    # The non-zero differences are mostly positive, so the spread of the number K of non-zero draws
    # carries much of the variance: fixing K = m instead of drawing it would shrink the std by ~40%.
    rng = np.random.default_rng(9)
    d = np.where(rng.random(300) < 0.7, 0.0, rng.normal(0.3, 0.2, 300))
    fast = stats._bootstrap_means(d, 20_000, np.random.default_rng(0))
    naive = d[np.random.default_rng(1).integers(0, d.size, (20_000, d.size))].mean(axis=1)
    sd = naive.std()
    assert fast.mean() == pytest.approx(naive.mean(), abs=0.05 * sd)
    assert fast.std() == pytest.approx(sd, rel=0.03)
    assert np.quantile(fast, 0.025) == pytest.approx(np.quantile(naive, 0.025), abs=0.1 * sd)
    assert np.quantile(fast, 0.975) == pytest.approx(np.quantile(naive, 0.975), abs=0.1 * sd)
    assert ss.ks_2samp(fast, naive).pvalue > 1e-3


def test_bootstrap_determinism():
    a, b = _ranks_pair(500, 3)
    d = a - b
    assert paired_bootstrap_ci(d, seed=1) == paired_bootstrap_ci(d, seed=1)
    first, other = paired_bootstrap_ci(d, seed=1), paired_bootstrap_ci(d, seed=2)
    assert first[0] != other[0] and first[1] != other[1]


def test_bootstrap_alpha_widens_interval():
    a, b = _ranks_pair(500, 4)
    lo95, hi95 = paired_bootstrap_ci(a - b, alpha=0.05, seed=0)
    lo80, hi80 = paired_bootstrap_ci(a - b, alpha=0.20, seed=0)
    assert lo95 < lo80 < hi80 < hi95


# --- paired_test ----------------------------------------------------------------------------------

def test_paired_randomization_fields():
    a, b = _ranks_pair(600, 5)
    res = paired_test(a, b, seed=7)
    d = a - b
    assert isinstance(res, PairedResult)
    assert res.test == "randomization"
    assert res.diff == pytest.approx(d.mean(), rel=1e-12)
    assert res.p == sign_flip_test(d, seed=7)
    assert (res.low, res.high) == paired_bootstrap_ci(d, seed=7)
    assert res.n == 600 and res.n_nonzero == np.count_nonzero(d) < 600
    assert res.resamples == 10_000
    assert "bootstrap" in res.note
    assert res.as_dict()["p"] == res.p and set(res.as_dict()) == {
        "test", "diff", "low", "high", "p", "n", "n_nonzero", "resamples", "note"}


def test_paired_t_matches_scipy():
    a, b = _ranks_pair(300, 6)
    res = paired_test(a, b, test="t", alpha=0.1)
    ref = ss.ttest_rel(a, b)
    ci = ref.confidence_interval(0.9)
    assert res.p == pytest.approx(ref.pvalue, rel=1e-10)
    assert (res.low, res.high) == pytest.approx((ci.low, ci.high), rel=1e-10)
    assert res.resamples == 0


@pytest.mark.parametrize("zero_method", ["wilcox", "pratt", "zsplit"])
def test_paired_wilcoxon_matches_scipy(zero_method):
    a, b = _ranks_pair(300, 7)
    d = a - b
    res = paired_test(a, b, test="wilcoxon", zero_method=zero_method, seed=3)
    assert res.p == pytest.approx(ss.wilcoxon(d, zero_method=zero_method).pvalue, rel=1e-10)
    assert (res.low, res.high) == paired_bootstrap_ci(d, seed=3)
    assert f"zero_method={zero_method}: {np.sum(d == 0)} zero differences" in res.note


def test_wilcoxon_p_depends_on_zero_handling():
    # many zeros: why randomization is the default
    a, b = _ranks_pair(300, 8)
    ps = {z: paired_test(a, b, test="wilcoxon", zero_method=z).p for z in ("wilcox", "pratt", "zsplit")}
    assert len({round(p, 6) for p in ps.values()}) == 3


@pytest.mark.parametrize("test", ["randomization", "t", "wilcoxon"])
def test_paired_all_zero_differences(test):
    a = np.array([1.0, 0.5, 0.25, 1.0])
    res = paired_test(a, a.copy(), test=test)
    assert (res.diff, res.low, res.high, res.p, res.n_nonzero) == (0.0, 0.0, 0.0, 1.0, 0)


def test_paired_identical_constant_differences():
    a = np.array([1.0, 0.5, 0.75, 0.25, 1.0])
    b = a - 0.25
    t = paired_test(a, b, test="t")
    assert (t.p, t.low, t.high) == (0.0, 0.25, 0.25) and t.note == "all differences equal"
    # exact sign flip: 5 equal differences, only all-+ and all-- reach |sum|: 2/32
    assert paired_test(a, b).p == pytest.approx(2 / 32, abs=1e-15)


@pytest.mark.parametrize("a, b, match", [
    ([1.0, 2.0, 3.0], [1.0, 2.0], "same queries"),
    ([1.0], [0.5], "at least 2 queries"),
    ([1.0, np.nan], [0.5, 0.2], "non-finite"),
    ([[1.0, 2.0]], [[1.0, 2.0]], "1-D"),
])
def test_paired_input_errors(a, b, match):
    with pytest.raises(ValueError, match=match):
        paired_test(a, b)


def test_paired_unknown_test_or_zero_method():
    with pytest.raises(ValueError, match="randomization, t, wilcoxon"):
        paired_test([1.0, 0.5], [0.5, 0.5], test="sign")
    with pytest.raises(ValueError, match="wilcox, pratt, zsplit"):
        paired_test([1.0, 0.5], [0.5, 0.5], test="wilcoxon", zero_method="drop")
    with pytest.raises(ValueError, match="resamples"):
        paired_test([1.0, 0.5], [0.5, 0.5], resamples=0)
    with pytest.raises(ValueError, match="alpha"):
        paired_test([1.0, 0.5], [0.5, 0.5], alpha=1.5)
    with pytest.raises(ValueError, match="seed"):
        paired_test([1.0, 0.5], [0.5, 0.5], seed=None)


# --- seeds ----------------------------------------------------------------------------------------

def test_seed_summary():
    s = seed_summary([0.30, 0.32, 0.34])
    assert s["mean"] == pytest.approx(0.32) and s["std"] == pytest.approx(0.02) and s["n"] == 3
    one = seed_summary([0.3])
    assert one["mean"] == 0.3 and np.isnan(one["std"]) and one["n"] == 1


def test_seed_test_paired_matches_scipy():
    a, b = [0.31, 0.33, 0.30, 0.35], [0.30, 0.31, 0.30, 0.32]
    res = seed_test(a, b)
    ref = ss.ttest_rel(a, b)
    ci = ref.confidence_interval(0.95)
    assert res.test == "t over seeds (paired)"
    assert res.p == pytest.approx(ref.pvalue, rel=1e-10)
    assert (res.low, res.high) == pytest.approx((ci.low, ci.high), rel=1e-10)
    assert (res.n, res.n_nonzero) == (4, 3)


def test_seed_test_welch_matches_scipy():
    a, b = [0.31, 0.33, 0.30], [0.28, 0.29, 0.35, 0.27, 0.26]
    res = seed_test(a, b, paired=False)
    ref = ss.ttest_ind(a, b, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert res.p == pytest.approx(ref.pvalue, rel=1e-10)
    assert (res.low, res.high) == pytest.approx((ci.low, ci.high), rel=1e-10)
    assert res.diff == pytest.approx(np.mean(a) - np.mean(b))
    assert f"{ref.df:.2f}" in res.note


def test_seed_test_refusals():
    with pytest.raises(ValueError, match=r"at least 2 seeds per model \(got 1 for a\).*seeds = \[0, 1, 2\]"):
        seed_test([0.3], [0.3, 0.31])
    with pytest.raises(ValueError, match=r"got 1 for b"):
        seed_test([0.3, 0.31], [0.3], paired=False)
    with pytest.raises(ValueError, match="paired=False"):
        seed_test([0.3, 0.31, 0.32], [0.3, 0.31])


def test_seed_test_constant_differences():
    res = seed_test([0.4, 0.5, 0.6], [0.3, 0.4, 0.5])
    assert res.p == 0.0 and res.note == "all differences equal"
    assert res.low == res.high == pytest.approx(0.1)
    assert seed_test([0.4, 0.5], [0.4, 0.5]).p == 1.0
    assert seed_test([0.4, 0.4], [0.3, 0.3, 0.3], paired=False).p == 0.0
    assert seed_test([0.4, 0.4], [0.4, 0.4, 0.4], paired=False).p == 1.0


# --- multiple comparisons -------------------------------------------------------------------------

def test_holm_by_hand():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> running max 0.06
    out = holm([0.01, 0.04, 0.03, 0.005])
    assert out == pytest.approx([0.03, 0.06, 0.06, 0.02], abs=1e-15)
    # capped at 1: 0.5*2 = 1.0, 0.6*1 -> max 1.0
    assert holm([0.6, 0.5]).tolist() == [1.0, 1.0]


def test_holm_nan_excluded_from_family():
    # family of 2: 0.01*2 = 0.02, 0.04*1 = 0.04
    out = holm([0.04, np.nan, 0.01])
    assert np.isnan(out[1]) and out[[0, 2]] == pytest.approx([0.04, 0.02], abs=1e-15)
    assert np.isnan(holm([np.nan, np.nan])).all() and holm([]).shape == (0,)


def test_bh_by_hand_and_against_scipy():
    # sorted: 0.005*4/1 = 0.02, 0.01*4/2 = 0.02, 0.03*4/3 = 0.04, 0.04*4/4 = 0.04; running min from the top
    assert benjamini_hochberg([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.02, 0.04, 0.04, 0.02], abs=1e-15)
    p = np.random.default_rng(0).random(40) ** 3
    assert benjamini_hochberg(p) == pytest.approx(ss.false_discovery_control(p, method="bh"), rel=1e-12)
    out = benjamini_hochberg([0.04, np.nan, 0.01])        # family of 2: 0.01*2/1 = 0.02, 0.04*2/2 = 0.04
    assert np.isnan(out[1]) and out[[0, 2]] == pytest.approx([0.04, 0.02], abs=1e-15)


def test_adjustments_refuse_invalid_p():
    for fn in (holm, benjamini_hochberg):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            fn([0.2, 1.5])


# --- Friedman / Nemenyi ---------------------------------------------------------------------------

HAND = pd.DataFrame({"A": [0.9, 0.6, 0.7, 0.8], "B": [0.8, 0.6, 0.9, 0.5], "C": [0.7, 0.5, 0.8, 0.4]},
                    index=["D1", "D2", "D3", "D4"])


def test_friedman_hand_table():
    # ranks (1 = highest): D1 A1 B2 C3; D2 A1.5 B1.5 C3 (tie); D3 A3 B1 C2; D4 A1 B2 C3
    # sums A 6.5, B 6.5, C 11 -> averages 1.625, 1.625, 2.75; A before B on the exact tie (by name)
    res = friedman_nemenyi(HAND)
    assert list(res.avg_ranks.index) == ["A", "B", "C"]
    assert res.avg_ranks.tolist() == [1.625, 1.625, 2.75]
    ref = ss.friedmanchisquare(HAND["A"], HAND["B"], HAND["C"])
    assert res.statistic == pytest.approx(ref.statistic, rel=1e-12) and res.p == pytest.approx(ref.pvalue, rel=1e-12)
    f = 3 * res.statistic / (4 * 2 - res.statistic)       # (N-1) chi2 / (N(k-1) - chi2)
    assert res.iman_davenport_f == pytest.approx(f, rel=1e-12)
    assert res.iman_davenport_p == pytest.approx(ss.f.sf(f, 2, 6), rel=1e-12)
    assert res.cd == pytest.approx(nemenyi_q(3) * np.sqrt(3 * 4 / (6 * 4)), rel=1e-12)
    assert (res.n_blocks, res.n_models, res.alpha, res.descriptive) == (4, 3, 0.05, True)
    assert res.cliques() == [["A", "B", "C"]]                # 2.75 - 1.625 = 1.125 < CD = 1.657


def test_friedman_lower_is_better_reverses_ranks():
    res = friedman_nemenyi(HAND, higher_is_better=False)
    assert list(res.avg_ranks.index) == ["C", "A", "B"]
    assert res.avg_ranks.tolist() == [1.25, 2.375, 2.375]


def test_friedman_statistic_formula_without_ties():
    rng = np.random.default_rng(0)
    scores = pd.DataFrame(rng.random((6, 4)), columns=list("wxyz"))
    res = friedman_nemenyi(scores)
    n, k = scores.shape
    r = res.avg_ranks.to_numpy()
    chi2 = 12 * n / (k * (k + 1)) * (np.sum(r ** 2) - k * (k + 1) ** 2 / 4)   # Demšar (2006), eq. in §3.2.2
    assert res.statistic == pytest.approx(chi2, rel=1e-12)
    assert res.statistic == pytest.approx(ss.friedmanchisquare(*scores.to_numpy().T).statistic, rel=1e-12)
    assert not res.descriptive                               # 6 blocks


def test_friedman_identical_rankings_and_all_ties():
    same = pd.DataFrame({"a": [3.0, 2.0], "b": [2.0, 1.0], "c": [1.0, 0.0]})
    res = friedman_nemenyi(same)
    assert res.statistic == pytest.approx(4.0) and res.iman_davenport_f == np.inf and res.iman_davenport_p == 0.0
    flat = pd.DataFrame({"a": [1.0, 1.0], "b": [1.0, 1.0], "c": [1.0, 1.0]})
    res = friedman_nemenyi(flat)
    assert (res.statistic, res.p) == (0.0, 1.0) and res.avg_ranks.tolist() == [2.0, 2.0, 2.0]


@pytest.mark.parametrize("k, q", [(5, 2.728), (10, 3.164)])
def test_nemenyi_q_matches_demsar_table5(k, q):
    assert round(nemenyi_q(k, alpha=0.05), 3) == q


def _with_ranks(ranks, cd):
    s = pd.Series(ranks, index=[f"m{i}" for i in range(len(ranks))])
    return FriedmanResult(s, 0.0, 1.0, 0.0, 1.0, cd, 0.05, 10, len(ranks), False)


def test_cliques():
    # from m0: 1.5 - 1 < 1.25, 2.5 - 1 not -> {m0, m1}; m1: {m1, m2}; m2: {m2, m3};
    # m3: 4.25 - 3.0 = 1.25 is not < CD, so m4 stands alone
    assert _with_ranks([1.0, 1.5, 2.5, 3.0, 4.25], 1.25).cliques() == [["m0", "m1"], ["m1", "m2"], ["m2", "m3"]]
    # the run from m1 ends at m2 like m0's: contained in it, so not listed
    assert _with_ranks([1.0, 1.5, 2.0, 5.0], 1.25).cliques() == [["m0", "m1", "m2"]]
    assert _with_ranks([1.0, 3.0, 5.0], 1.0).cliques() == []


def test_friedman_errors():
    bad = HAND.copy()
    bad.loc["D2", "B"] = np.nan
    with pytest.raises(ValueError, match=r"\('D2', 'B'\)"):
        friedman_nemenyi(bad)
    with pytest.raises(ValueError, match="at least 3 models"):
        friedman_nemenyi(HAND[["A", "B"]])
    with pytest.raises(ValueError, match="at least 2 data sets"):
        friedman_nemenyi(HAND.iloc[:1])
    with pytest.raises(ValueError, match="DataFrame"):
        friedman_nemenyi(HAND.to_numpy())


def test_cliques_of_plain_ranks_as_a_cd_diagram_draws_them():
    from mmkgbench.stats import cliques
    ranks = pd.Series({"E": 5.0, "B": 2.0, "A": 1.2, "D": 4.2, "C": 2.6})      # any order in, sorted inside
    assert cliques(ranks, 1.5) == [["A", "B", "C"], ["D", "E"]]
    assert cliques(pd.Series({"a": 1.0, "b": 2.5}), 1.5) == []                  # a difference of CD is not < CD
    assert cliques(pd.Series({"a": 1.0, "b": 2.0, "c": 3.0}), 5.0) == [["a", "b", "c"]]
