"""pytest-benchmark timings of MoMoK's hot path (run: `python3 -m pytest benchmarks`); they never assert a speed.

One TuckER decision's hidden-dropout contraction at MoMoK's DB15K size: B = 1024 queries, D = 256,
200 distinct relations (a typical DB15K batch), forward and backward. "plain" gathers the (B, D, D)
matrices, masks them with nn.Dropout and contracts with bmm; "chunked" is mmkgbench.layers.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mmkgbench.layers import bce_with_logits_mean, drop_mask, masked_contraction

B, D, U = 1024, 256, 200


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, D, generator=g, requires_grad=True)
    w = torch.randn(U, D * D, generator=g, requires_grad=True)
    index = torch.randint(U, (B,), generator=g)
    return x, w, index


def test_contraction_plain(benchmark, inputs):
    x, w, index = inputs

    def step():
        wb = F.dropout(w.index_select(0, index), 0.4, training=True).view(B, D, D)
        torch.bmm(x[:, None, :], wb)[:, 0].sum().backward()
    benchmark.pedantic(step, rounds=5, warmup_rounds=1)


def test_contraction_chunked(benchmark, inputs):
    x, w, index = inputs

    def step():
        masked_contraction(x, w, index, drop_mask((B, D * D), 0.4)).sum().backward()
    benchmark.pedantic(step, rounds=5, warmup_rounds=1)


@pytest.mark.parametrize("which", ["torch", "ours"])
def test_bce_forward_backward(benchmark, which):
    g = torch.Generator().manual_seed(0)
    s = torch.randn(1024, 12842, generator=g, requires_grad=True)
    y = torch.rand(1024, 12842, generator=g)
    fn = F.binary_cross_entropy_with_logits if which == "torch" else bce_with_logits_mean
    benchmark.pedantic(lambda: fn(s, y).backward(), rounds=5, warmup_rounds=1)
