"""Significance tests for comparing models: per query, over seeds, and over data sets.

Per query (the unit of a ranking evaluation): two models answered the identical test queries, so
each query gives a paired difference d_i = a_i - b_i of a per-query score, the reciprocal rank
1/rank (MRR) or the indicator rank <= k (Hits@k), from realistic ranks. Many d_i are exactly zero
(both models rank the answer first, or both miss the top k); the paired randomization test is the
default because it needs no assumption about the shape of d and treats those zeros exactly
(Smucker, Allan & Carterette, CIKM 2007). Over seeds: a t-test on per-seed scores. Over data sets:
Friedman with the Iman–Davenport correction and Nemenyi's critical difference (Demšar, JMLR 2006).
Multiplicity: Holm (1979) and Benjamini & Hochberg (1995) adjusted p-values.

Every random procedure takes `seed` (an int or a `np.random.Generator`); no global RNG is used.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

TESTS = ("randomization", "t", "wilcoxon")
ZERO_METHODS = ("wilcox", "pratt", "zsplit")

# Working-set sizes. The sign-flip lookup table is walked in blocks of 128 groups (128 x 256
# float64 = 256 KiB), small enough to stay in L2 cache; a random gather over the whole table is
# several times slower. Resamples and bootstrap draws are taken a few MB at a time for the same
# reason (measured fastest on a 2-core machine), which also bounds memory whatever the size.
_TABLE_BLOCK = 128
_SIGN_CELLS = 1 << 15
_BOOT_DRAWS = 1 << 18
_EXACT_BLOCK = 1 << 14


@dataclass(frozen=True)
class PairedResult:
    """A comparison of model a with model b: diff = mean(a - b) with its (1 - alpha) interval
    [low, high], the two-sided p, n paired observations of which n_nonzero differ, the number of
    resamples drawn (0 for closed-form tests), and a note on how zeros and the interval were treated."""

    test: str
    diff: float
    low: float
    high: float
    p: float
    n: int
    n_nonzero: int
    resamples: int
    note: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def _rng(seed: int | np.random.Generator) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an int or a np.random.Generator, got {seed!r}; pass e.g. seed=0")
    return np.random.default_rng(int(seed))


def _vector(x, name: str, min_len: int = 1) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per query or seed), got shape {arr.shape}")
    if arr.size < min_len:
        raise ValueError(f"{name} needs at least {min_len} values, got {arr.size}")
    if not np.all(np.isfinite(arr)):
        bad = np.flatnonzero(~np.isfinite(arr))[:5].tolist()
        raise ValueError(f"{name} has non-finite values (first at positions {bad}); drop or fix them first")
    return arr


def _check_resamples(resamples: int) -> int:
    if isinstance(resamples, bool) or not isinstance(resamples, (int, np.integer)) or resamples < 1:
        raise ValueError(f"resamples must be a positive int, got {resamples!r}; 10_000 is the usual choice")
    return int(resamples)


def _check_alpha(alpha: float) -> float:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}; 0.05 gives a 95% interval")
    return float(alpha)


def _sign_flip_exact(m: int, resamples: int) -> bool:
    return m <= 62 and 2 ** m <= resamples


def sign_flip_test(d, *, resamples: int = 10_000, seed: int | np.random.Generator = 0) -> float:
    """Two-sided paired randomization (sign-flip) test of mean(d) = 0 (Fisher 1935; Smucker et al.,
    CIKM 2007). d: (n,) paired differences a_i - b_i.

    Under the null each difference is as likely to have the opposite sign, so the statistic
    |sum_i s_i d_i| with random signs s_i = +-1 is compared with the observed |sum_i d_i|. A zero
    difference flips to itself, so only the m non-zero d_i are used.

    - If 2**m <= resamples the test is EXACT: all 2**m sign vectors are enumerated and
      p = #{|stat| >= observed} / 2**m (so d = [1, 1, 1] gives 2/8 = 0.25).
    - Otherwise p = (1 + #{resampled |stat| >= observed}) / (resamples + 1): the observed signs
      count as one of the resamples, so p >= 1/(resamples + 1) and the test is never anti-conservative.
    Comparisons use a tolerance of 1e-9 * sum|d|, so sign vectors whose statistic equals the
    observed one up to rounding (all +1, all -1) are counted. All-zero d gives p = 1.0.

    Fast path: the signs of 8 consecutive differences form one random byte, and a (m/8, 256) table
    holds the partial sum for every byte value, so a resample costs m/8 table look-ups (float64)
    instead of m multiply-adds. n = 40,000 with 30,000 non-zero and 10,000 resamples takes a few
    tenths of a second on one core (benchmarks/test_bench_stats.py).
    """
    d = _vector(d, "d")
    resamples, rng = _check_resamples(resamples), _rng(seed)
    nz = d[d != 0]
    m = nz.size
    if m == 0:
        return 1.0
    tol = 1e-9 * float(np.abs(nz).sum())
    if _sign_flip_exact(m, resamples):
        observed, total, exceed = abs(nz.sum()), 2 ** m, 0
        for start in range(0, total, _EXACT_BLOCK):   # sign vector j: bit i of j set -> d_i keeps its sign
            codes = np.arange(start, min(total, start + _EXACT_BLOCK), dtype=np.int64)
            signs = 2.0 * ((codes[:, None] >> np.arange(m)) & 1) - 1.0                # (block, m)
            exceed += int(np.count_nonzero(np.abs(signs @ nz) >= observed - tol))
        return exceed / total

    groups = -(-m // 8)
    padded = np.zeros(groups * 8)
    padded[:m] = nz                          # padding zeros add nothing whatever their sign
    bits = (np.arange(256)[:, None] >> np.arange(8)) & 1                           # (256, 8)
    table = padded.reshape(groups, 8) @ (2.0 * bits - 1.0).T                      # (groups, 256)
    observed = abs(table[:, 255].sum())      # byte 255 = all signs +1, summed as the resamples are
    width = min(_TABLE_BLOCK, groups)
    chunk = max(1, min(resamples, _SIGN_CELLS // width))
    offsets = 256 * np.arange(width)
    idx_buf = np.empty(chunk * width, dtype=np.intp)
    val_buf = np.empty(chunk * width)
    exceed = 0
    for start in range(0, resamples, chunk):
        c = min(chunk, resamples - start)
        stat = np.zeros(c)
        for g0 in range(0, groups, width):
            block = table[g0:g0 + width]     # contiguous rows: one L2-sized slice of the table
            w = block.shape[0]
            byte = np.frombuffer(rng.bytes(c * w), dtype=np.uint8).reshape(c, w)
            idx = idx_buf[:c * w].reshape(c, w)
            np.add(byte, offsets[:w], out=idx)    # preallocated: a fresh array would page-fault
            stat += np.take(block.ravel(), idx, out=val_buf[:c * w].reshape(c, w)).sum(axis=1)
        exceed += int(np.count_nonzero(np.abs(stat) >= observed - tol))
    return (1 + exceed) / (resamples + 1)


def _bootstrap_means(d: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples,) bootstrap means of d (n,), drawing only the draws that hit non-zero entries."""
    n = d.size
    nz = d[d != 0]
    m = nz.size
    if m == 0:
        return np.zeros(resamples)
    # Of the n draws of one resample, K ~ Binomial(n, m/n) land on non-zero entries and, given K,
    # they are uniform over them; the other n - K add zero. So this is the full bootstrap's
    # distribution exactly, at a cost of ~m instead of n draws per resample.
    hits = rng.binomial(n, m / n, size=resamples)
    sums = np.zeros(resamples)
    chunk = max(1, _BOOT_DRAWS // m)
    for s in range(0, resamples, chunk):
        k = hits[s:s + chunk]
        total = int(k.sum())
        if total == 0:
            continue
        vals = nz[rng.integers(0, m, size=total)]
        starts = np.cumsum(k) - k
        full = k > 0                          # reduceat would give an empty segment a value
        sums[s:s + chunk][full] = np.add.reduceat(vals, starts[full])
    return sums / n


def paired_bootstrap_ci(d, *, resamples: int = 10_000, alpha: float = 0.05,
                        seed: int | np.random.Generator = 0) -> tuple[float, float]:
    """Percentile bootstrap (1 - alpha) interval of mean(d) (Efron & Tibshirani 1993, ch. 13),
    resampling the n queries with replacement. d: (n,) paired differences. Returns (low, high),
    the alpha/2 and 1 - alpha/2 quantiles (linear interpolation) of the resampled means.

    Only non-zero entries contribute to a resampled sum, so per resample the number K of draws that
    land on the m non-zero entries is drawn from Binomial(n, m/n) and then K uniform draws over
    them: the same distribution as resampling all n, at cost ~resamples * m rather than
    resamples * n. All-zero d gives (0.0, 0.0).
    """
    d, alpha = _vector(d, "d"), _check_alpha(alpha)
    means = _bootstrap_means(d, _check_resamples(resamples), _rng(seed))
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def _t_from_d(d: np.ndarray, alpha: float, scale: float) -> tuple[float, float, float, str]:
    """Paired t p-value and t-interval of mean(d); (p, low, high, note). Differences equal up to
    rounding (spread <= 1e-12 * scale, scale = the largest |score|) are decided here: scipy would
    return NaN (0/0) or a meaningless huge statistic from rounding noise."""
    n, mean = d.size, float(d.mean())
    tol = 1e-12 * scale
    if np.ptp(d) <= tol:
        if abs(mean) <= tol:
            return 1.0, mean, mean, "all differences zero"
        return 0.0, mean, mean, "all differences equal"
    import scipy.stats   # here, not at the top: `report` starts without its import time
    half = scipy.stats.t.ppf(1 - alpha / 2, n - 1) * d.std(ddof=1) / np.sqrt(n)
    p = float(scipy.stats.ttest_1samp(d, 0.0).pvalue)   # = ttest_rel(a, b): it tests a - b
    return p, mean - half, mean + half, ""


def _scale(a: np.ndarray, b: np.ndarray) -> float:
    return float(max(np.abs(a).max(), np.abs(b).max()))


def paired_test(a, b, *, test: str = "randomization", resamples: int = 10_000, alpha: float = 0.05,
                seed: int | np.random.Generator = 0, zero_method: str = "wilcox") -> PairedResult:
    """Compare two models' per-query scores a, b (each (n,), same queries in the same order,
    higher = better, e.g. reciprocal ranks or 0/1 hits); diff = mean(a - b).

    test:
    - "randomization" (default): p from `sign_flip_test`, interval from `paired_bootstrap_ci`, both
      given the same `seed` (so p equals sign_flip_test(a - b, seed=seed) for an int seed).
    - "t": paired t-test (scipy.stats.ttest_rel), interval mean ± t_{1-alpha/2, n-1} sd/sqrt(n).
      Identical differences (up to rounding): p = 1 if they are all zero, else p = 0.0 ("all differences equal").
    - "wilcoxon": signed-rank test (scipy.stats.wilcoxon with `zero_method`, one of
      "wilcox" (drop zeros), "pratt", "zsplit"); the interval is the percentile bootstrap one.
    Randomization is the default because ranking evaluations produce many zero differences (both
    models rank the answer first): the sign-flip test handles them exactly and assumes nothing about
    the shape of d, while the t-test leans on normality and Wilcoxon's p depends on which zero
    handling one picks (Smucker et al., CIKM 2007, found randomization, bootstrap and t agree and
    recommended against Wilcoxon and the sign test for IR metrics).
    """
    if test not in TESTS:
        raise ValueError(f"unknown test {test!r}; use one of {', '.join(TESTS)}")
    if zero_method not in ZERO_METHODS:
        raise ValueError(f"unknown zero_method {zero_method!r}; use one of {', '.join(ZERO_METHODS)}")
    a, b = _vector(a, "a"), _vector(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a and b must score the same queries, got {a.size} and {b.size} values; "
                         "align them on the query ids first")
    if a.size < 2:
        raise ValueError(f"a paired test needs at least 2 queries, got {a.size}")
    alpha, resamples = _check_alpha(alpha), _check_resamples(resamples)
    d = a - b
    n, nonzero, diff = d.size, int(np.count_nonzero(d)), float(d.mean())
    if test == "t":
        p, low, high, note = _t_from_d(d, alpha, _scale(a, b))
        return PairedResult("t", diff, float(low), float(high), p, n, nonzero, 0, note)
    boot_note = f"interval: percentile bootstrap, {resamples} resamples"
    if test == "randomization":
        exact = _sign_flip_exact(nonzero, resamples)
        p = sign_flip_test(d, resamples=resamples, seed=seed)
        p_note = f"exact sign-flip over 2^{nonzero} sign vectors" if exact else \
            f"sign-flip p, {resamples} resamples"
        low, high = paired_bootstrap_ci(d, resamples=resamples, alpha=alpha, seed=seed)
        return PairedResult("randomization", diff, low, high, p, n, nonzero, resamples, f"{p_note}; {boot_note}")
    zeros = n - nonzero
    how = {"wilcox": "dropped", "pratt": "ranked, then dropped", "zsplit": "ranks split between signs"}
    note = f"zero_method={zero_method}: {zeros} zero differences {how[zero_method]}; {boot_note}"
    import scipy.stats   # here, not at the top: `report` starts without its import time
    p = 1.0 if nonzero == 0 else float(scipy.stats.wilcoxon(d, zero_method=zero_method).pvalue)
    low, high = paired_bootstrap_ci(d, resamples=resamples, alpha=alpha, seed=seed)
    return PairedResult("wilcoxon", diff, low, high, p, n, nonzero, resamples, note)


def seed_summary(values) -> dict:
    """Mean and sample standard deviation (ddof=1) of one model's per-seed scores, values (s,).
    With a single seed the std is NaN, never 0: one run says nothing about seed variance."""
    v = _vector(values, "values")
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else float("nan"), "n": int(v.size)}


def seed_test(a, b, *, paired: bool = True, alpha: float = 0.05) -> PairedResult:
    """t-test of two models' per-seed scores a (s_a,), b (s_b,), e.g. test MRR per seed.

    paired=True: a[i] and b[i] come from the same seed (same data order and initialisation
    stream), so the paired t-test (scipy.stats.ttest_rel) and its t-interval are used.
    paired=False: Welch's unequal-variance t-test (Welch 1947; scipy.stats.ttest_ind with
    equal_var=False), interval with the Welch–Satterthwaite df; n = s_a + s_b and n_nonzero = 0
    (there are no pairs). Identical differences (or zero variance in both models) are decided as in
    `paired_test(test="t")`. Raises ValueError for fewer than 2 seeds per model.
    """
    a, b = _vector(a, "a"), _vector(b, "b")
    alpha = _check_alpha(alpha)
    for name, v in (("a", a), ("b", b)):
        if v.size < 2:
            raise ValueError(f"a test over seeds needs at least 2 seeds per model (got {v.size} for {name}); "
                             "add seeds to the grid (`seeds = [0, 1, 2]`)")
    if paired:
        if a.size != b.size:
            raise ValueError(f"a paired test over seeds needs the same seeds for both models (got {a.size} "
                             f"for a, {b.size} for b); match the seeds, or pass paired=False for Welch's test")
        d = a - b
        p, low, high, note = _t_from_d(d, alpha, _scale(a, b))
        return PairedResult("t over seeds (paired)", float(d.mean()), float(low), float(high), p, d.size,
                            int(np.count_nonzero(d)), 0, note)
    diff = float(a.mean() - b.mean())
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    tol = 1e-12 * _scale(a, b)
    if np.ptp(a) <= tol and np.ptp(b) <= tol:            # no seed variance, up to rounding
        p = 1.0 if abs(diff) <= tol else 0.0
        return PairedResult("Welch t over seeds", diff, diff, diff, p, a.size + b.size, 0, 0,
                            "no seed variance in either model")
    df = (va + vb) ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1))
    import scipy.stats   # here, not at the top: `report` starts without its import time
    half = scipy.stats.t.ppf(1 - alpha / 2, df) * np.sqrt(va + vb)
    p = float(scipy.stats.ttest_ind(a, b, equal_var=False).pvalue)
    return PairedResult("Welch t over seeds", diff, diff - half, diff + half, p, a.size + b.size, 0, 0,
                        f"Welch-Satterthwaite df = {df:.2f}")


def _adjust(p, step) -> np.ndarray:
    """Shared by the p-value adjustments: validate, drop NaN from the family, sort ascending, apply
    `step(sorted p, m) -> adjusted sorted p`, cap at 1 and put every value back in its place."""
    arr = np.asarray(p, dtype=np.float64)
    ok = ~np.isnan(arr)
    bad = arr[ok][(arr[ok] < 0) | (arr[ok] > 1)]
    if bad.size:
        raise ValueError(f"p-values must lie in [0, 1] (NaN allowed), got {bad[:5]}")
    out = np.full(arr.shape, np.nan)
    vals = arr[ok]
    if vals.size:
        order = np.argsort(vals, kind="stable")
        res = np.empty(vals.size)
        res[order] = np.minimum(step(vals[order], vals.size), 1.0)
        out[ok] = res
    return out


def holm(p) -> np.ndarray:
    """Holm–Bonferroni step-down adjusted p-values (Holm, Scand. J. Statist. 1979). p: array-like of
    any shape; returns the same shape. With the m non-NaN p sorted ascending, the i-th (1-based)
    gets max_{j <= i} min(1, (m - j + 1) p_(j)). NaN stays NaN and does not count towards m.
    Controls the family-wise error rate under any dependence."""
    return _adjust(p, lambda s, m: np.maximum.accumulate((m - np.arange(m)) * s))


def benjamini_hochberg(p) -> np.ndarray:
    """Benjamini–Hochberg step-up adjusted p-values (q-values; Benjamini & Hochberg, JRSS B 1995).
    p: array-like of any shape; returns the same shape. With the m non-NaN p sorted ascending, the
    i-th gets min_{j >= i} min(1, m p_(j) / j). NaN stays NaN and does not count towards m.
    Controls the false discovery rate for independent or positively dependent tests."""
    return _adjust(p, lambda s, m: np.minimum.accumulate((s * m / np.arange(1, m + 1))[::-1])[::-1])


def nemenyi_q(k: int, *, alpha: float = 0.05) -> float:
    """Nemenyi's critical value q_alpha for k models: the studentized range quantile
    q(1 - alpha; k, inf) / sqrt(2) (Demšar, JMLR 2006, Table 5: 2.728 for k = 5 at alpha = 0.05)."""
    if k < 2:
        raise ValueError(f"Nemenyi's q needs at least 2 models, got k={k}")
    import scipy.stats   # here, not at the top: `report` starts without its import time
    return float(scipy.stats.studentized_range.ppf(1 - _check_alpha(alpha), k, np.inf) / np.sqrt(2))


@dataclass(frozen=True, eq=False)
class FriedmanResult:
    """Friedman test over data sets with Nemenyi's critical difference (Demšar, JMLR 2006, §3.2.2).

    avg_ranks: (k,) average rank per model over the N data sets, 1 = best, sorted best first.
    statistic, p: Friedman's chi-square (tie-corrected, scipy.stats.friedmanchisquare) and its p.
    iman_davenport_f, iman_davenport_p: F_F = (N-1) chi2 / (N(k-1) - chi2) on (k-1, (k-1)(N-1)) df.
    cd: critical difference q_alpha sqrt(k(k+1)/(6N)); models whose average ranks differ by less
    are not significantly different. descriptive: N < 5, where the CD is too wide to support claims
    and a CD diagram must be labelled descriptive.
    """

    avg_ranks: pd.Series
    statistic: float
    p: float
    iman_davenport_f: float
    iman_davenport_p: float
    cd: float
    alpha: float
    n_blocks: int
    n_models: int
    descriptive: bool

    def cliques(self) -> list[list]:
        """The groups a CD diagram joins with a bar: `cliques(self.avg_ranks, self.cd)`."""
        return cliques(self.avg_ranks, self.cd)


def cliques(avg_ranks: pd.Series, cd: float) -> list[list]:
    """Groups of models whose average ranks all lie within less than `cd` of each other: the maximal
    runs over the sorted ranks that a CD diagram joins with a bar. avg_ranks: model -> average rank.
    Only groups of >= 2 models; none is contained in another."""
    ranks = avg_ranks.sort_values(kind="stable")
    names, r = list(ranks.index), ranks.to_numpy(dtype=float)
    groups, last_end = [], -1
    for i in range(len(r)):
        end = i
        while end + 1 < len(r) and r[end + 1] - r[i] < cd:
            end += 1
        if end > i and end > last_end:     # ends never decrease, so a later run with the same end is nested
            groups.append(names[i:end + 1])
        last_end = max(last_end, end)
    return groups


def friedman_nemenyi(scores: pd.DataFrame, *, alpha: float = 0.05, higher_is_better: bool = True) -> FriedmanResult:
    """Rank k models over N data sets and test whether they differ (Friedman 1937; Iman & Davenport
    1980; Nemenyi 1963; as recommended by Demšar, JMLR 2006).

    scores: DataFrame (N, k), index = blocks (data sets), columns = models, one score per cell, no
    missing cells. Within each block rank 1 is the best score (the highest if higher_is_better) and
    ties share their average rank. Needs N >= 2 and k >= 3.
    """
    if not isinstance(scores, pd.DataFrame):
        raise ValueError("scores must be a pandas DataFrame (index = data sets, columns = models), "
                         f"got {type(scores).__name__}")
    alpha = _check_alpha(alpha)
    n, k = scores.shape
    if k < 3:
        raise ValueError(f"the Friedman test needs at least 3 models (columns), got {k}; compare two models "
                         "with paired_test or a sign test over data sets instead")
    if n < 2:
        raise ValueError(f"the Friedman test needs at least 2 data sets (rows), got {n}")
    if not scores.columns.is_unique:
        raise ValueError(f"model names (columns) must be unique, got {list(scores.columns)}")
    try:
        values = scores.to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"scores must be numeric: {err}") from None
    bad = np.argwhere(~np.isfinite(values))
    if bad.size:
        cells = [(scores.index[i], scores.columns[j]) for i, j in bad[:10]]
        raise ValueError(f"scores has {len(bad)} missing or non-finite (block, model) cells, e.g. {cells}; "
                         "drop those data sets or models (or rerun them) before ranking")
    import scipy.stats   # here, not at the top: `report` starts without its import time
    ranks = scipy.stats.rankdata(-values if higher_is_better else values, axis=1, method="average")   # (N, k)
    # Sums of average ranks are multiples of 1/2, so they are exact and exact ties stay exact.
    mean_rank = ranks.sum(axis=0) / n
    order = sorted(range(k), key=lambda j: (mean_rank[j], str(scores.columns[j])))
    avg = pd.Series(mean_rank[order], index=scores.columns[order], name="avg_rank")
    if np.all(ranks == (k + 1) / 2):            # every block fully tied: no evidence of any difference
        chi2, p, f_stat, f_p = 0.0, 1.0, 0.0, 1.0
    else:
        # The statistic is invariant to the rank direction, so scipy's ascending ranks give the same value.
        res = scipy.stats.friedmanchisquare(*values.T)
        chi2, p = float(res.statistic), float(res.pvalue)
        denom = n * (k - 1) - chi2
        if denom <= 1e-12 * n * (k - 1):       # every block ranks the models identically
            f_stat, f_p = float("inf"), 0.0
        else:
            f_stat = (n - 1) * chi2 / denom
            f_p = float(scipy.stats.f.sf(f_stat, k - 1, (k - 1) * (n - 1)))
    cd = nemenyi_q(k, alpha=alpha) * np.sqrt(k * (k + 1) / (6.0 * n))
    return FriedmanResult(avg, chi2, p, float(f_stat), f_p, float(cd), alpha, n, k, n < 5)
