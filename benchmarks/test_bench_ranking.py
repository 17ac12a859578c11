"""pytest-benchmark timings of the ranking path (run: `python3 -m pytest benchmarks`).

These time, they never assert a speed. Sizes are DB15K's: E = 12,842 candidates, blocks of 128
queries (the evaluator's default batch), about 50k known answers to filter per block.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mmkgbench.ranking import KnownAnswers, filtered_ranks

E, B = 12842, 128


@pytest.fixture(scope="module")
def block():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(B, E, generator=g)
    target = torch.randint(E, (B,), generator=g)
    rows = torch.randint(B, (50_000,), generator=g)
    cols = torch.randint(E, (50_000,), generator=g)
    return scores, target, rows, cols


@pytest.mark.parametrize("compile", ["off", "on"], ids=["sign", "fused"])
def test_filtered_ranks_block(benchmark, block, compile):
    scores, target, rows, cols = block
    filtered_ranks(scores.clone(), target, rows, cols, compile=compile)          # warm-up / compile
    benchmark.pedantic(lambda s: filtered_ranks(s, target, rows, cols, compile=compile),
                       setup=lambda: ((scores.clone(),), {}), rounds=30, warmup_rounds=2)


def test_score_block_matmul(benchmark):
    """The reference point: the bare (128 x 256) @ (256 x E) score product the ranking follows."""
    g = torch.Generator().manual_seed(0)
    q, ent = torch.randn(B, 256, generator=g), torch.randn(E, 256, generator=g)
    benchmark.pedantic(lambda: q @ ent.t(), rounds=30, warmup_rounds=2)


def test_known_answers_lookup(benchmark):
    rng = np.random.default_rng(0)
    triples = np.stack([rng.integers(E, size=100_000), rng.integers(279, size=100_000),
                        rng.integers(E, size=100_000)], 1)
    idx = KnownAnswers(triples, 279)
    e = torch.from_numpy(rng.integers(E, size=B))
    r = torch.from_numpy(rng.integers(2 * 279, size=B))
    benchmark.pedantic(lambda: idx.lookup(e, r), rounds=50, warmup_rounds=2)
