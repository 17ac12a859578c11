"""pytest-benchmark timings of the per-query significance tests (run: `python3 -m pytest benchmarks`).

These time, they never assert a speed. Size: 40,000 test queries (both sides of a ~20k-triple test
split), reciprocal ranks of two correlated models from simulated realistic ranks (x.5 where the
target tied), about 25% of the per-query differences exactly zero; 10,000 resamples.
"""
from __future__ import annotations

import numpy as np
import pytest

from mmkgbench.stats import paired_bootstrap_ci, paired_test, sign_flip_test

N, RESAMPLES = 40_000, 10_000


@pytest.fixture(scope="module")
def scores():
    rng = np.random.default_rng(0)
    hard = rng.normal(1.5, 1.8, N)                 # shared query difficulty: the models are correlated

    def realistic_ranks(shift: float) -> np.ndarray:
        r = 1 + np.floor(np.exp(hard + shift + rng.normal(0, 0.5, N)))
        return r + 0.5 * ((rng.random(N) < 0.05) & (r > 1))     # a tie with one other candidate

    a, b = 1 / realistic_ranks(0.0), 1 / realistic_ranks(0.05)
    return a, b


def test_sign_flip(benchmark, scores):
    d = scores[0] - scores[1]
    benchmark.extra_info["nonzero"] = int(np.count_nonzero(d))
    benchmark.pedantic(lambda: sign_flip_test(d, resamples=RESAMPLES, seed=0), rounds=5, warmup_rounds=1)


def test_paired_bootstrap_ci(benchmark, scores):
    d = scores[0] - scores[1]
    benchmark.pedantic(lambda: paired_bootstrap_ci(d, resamples=RESAMPLES, seed=0), rounds=5, warmup_rounds=1)


def test_paired_test_randomization(benchmark, scores):
    a, b = scores
    benchmark.pedantic(lambda: paired_test(a, b, test="randomization", resamples=RESAMPLES, seed=0),
                       rounds=5, warmup_rounds=1)
