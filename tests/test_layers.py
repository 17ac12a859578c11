"""Shared layers: the fast dropout mask, the chunked masked contraction and the BCE, against torch's own."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmkgbench.layers import RESOLUTION, Dropout, bce_with_logits_mean, drop_mask, masked_contraction


@pytest.mark.parametrize("p", [0.1, 0.4, 0.5])
def test_drop_mask_rate_and_seeding(p):
    torch.manual_seed(0)
    m = drop_mask((200, 1000), p)
    assert m.dtype == torch.bool and m.shape == (200, 1000)
    # 200k draws: the rate is within 5 standard errors of round(p * 2^16) / 2^16
    q = round(p * RESOLUTION) / RESOLUTION
    assert abs(m.float().mean().item() - q) < 5 * np.sqrt(q * (1 - q) / m.numel())
    torch.manual_seed(0)
    assert torch.equal(drop_mask((200, 1000), p), m)            # torch's seed governs it
    np.random.seed(123)                                           # NumPy's global state does not
    torch.manual_seed(0)
    assert torch.equal(drop_mask((200, 1000), p), m)
    assert not torch.equal(drop_mask((200, 1000), p), m)          # and each call draws afresh


def test_dropout_matches_nn_dropout_semantics():
    layer = Dropout(0.4)
    x = torch.rand(500, 400) + 1.0
    layer.eval()
    assert layer(x) is x
    layer.train()
    torch.manual_seed(1)
    y = layer(x)
    kept = y != 0
    assert torch.allclose(y[kept], x[kept] / 0.6)
    assert abs(kept.float().mean().item() - 0.6) < 0.01
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        Dropout(1.0)


def _reference(x, w, index, mask):
    d = x.shape[1]
    W = w[index]
    if mask is not None:
        W = W.masked_fill(mask, 0.0)
    return torch.bmm(x[:, None, :], W.view(-1, d, d))[:, 0]


@pytest.mark.parametrize("with_mask", [False, True])
@pytest.mark.parametrize("chunk_bytes", [1, 64 * 8, 1 << 30])     # one query, a few, all at once
def test_masked_contraction_matches_the_plain_composition(with_mask, chunk_bytes):
    g = torch.Generator().manual_seed(0)
    B, d, U = 13, 4, 5
    x = torch.randn(B, d, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(U, d * d, generator=g, dtype=torch.float64, requires_grad=True)
    index = torch.randint(U, (B,), generator=g)                  # repeats: gradients must accumulate
    mask = torch.rand(B, d * d, generator=g) < 0.4 if with_mask else None
    y = masked_contraction(x, w, index, mask, chunk_bytes=chunk_bytes)
    ref = _reference(x, w, index, mask)
    assert torch.allclose(y, ref)
    up = torch.randn(B, d, generator=g, dtype=torch.float64)
    gx, gw = torch.autograd.grad(y, (x, w), up)
    rx, rw = torch.autograd.grad(ref, (x, w), up)
    assert torch.allclose(gx, rx) and torch.allclose(gw, rw)
    assert torch.autograd.gradcheck(lambda a, b: masked_contraction(a, b, index, mask, chunk_bytes), (x, w))


def test_masked_contraction_rejects_a_wrong_width():
    with pytest.raises(ValueError, match="D\\*D = 16"):
        masked_contraction(torch.zeros(2, 4), torch.zeros(3, 15), torch.zeros(2, dtype=torch.long))


def test_bce_matches_torch_in_value_and_gradient():
    g = torch.Generator().manual_seed(0)
    s = (torch.randn(64, 300, generator=g, dtype=torch.float64) * 8)
    s[0, :4] = torch.tensor([-60.0, -25.0, 25.0, 60.0], dtype=torch.float64)      # far out on both sides
    y = 0.9 * (torch.rand(64, 300, generator=g) < 0.05).double() + 1 / 300
    s.requires_grad_(True)
    ours, theirs = bce_with_logits_mean(s, y), F.binary_cross_entropy_with_logits(s, y)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-12)
    (ga,), (gb,) = torch.autograd.grad(ours, s), torch.autograd.grad(theirs, s)
    assert torch.allclose(ga, gb, rtol=1e-10, atol=1e-15)
    s32 = s.detach().float()
    assert bce_with_logits_mean(s32, y.float()).item() == pytest.approx(
        F.binary_cross_entropy_with_logits(s32, y.float()).item(), rel=1e-5)
    with pytest.raises(ValueError, match="differ in shape"):
        bce_with_logits_mean(s, y[:, :2])
