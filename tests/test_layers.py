"""Shared layers: the fast dropout mask, the chunked masked contraction and the BCE, against torch's own;
the TuckER decision layer against its formula written out with the same masks."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmkgbench.layers import RESOLUTION, Dropout, TuckERDecision, bce_with_logits_mean, drop_mask, masked_contraction


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



def _bn_train(bn, x):
    """BatchNorm1d in train mode, written out: batch mean and biased variance."""
    mean, var = x.mean(0), x.var(0, unbiased=False)
    return (x - mean) / torch.sqrt(var + bn.eps) * bn.weight + bn.bias


def _naive_decision(layer, e, r, seed):
    """y_b = Drop_out(BN1(x_b W_b)), x = Drop_in(BN0(e)), W_b = Drop_hidden(sum_k r_bk W_k) for per-query
    relation rows r (B, D_r); the masks drawn from torch's seed in the order the layer draws them (none
    for a rate of 0)."""
    torch.manual_seed(seed)
    B, D = e.shape
    p_in, p_hid, p_out = layer.input_dropout.p, layer.hidden_dropout, layer.output_dropout.p

    def mask(shape, p):
        return drop_mask(shape, p) if p > 0 else torch.zeros(shape, dtype=torch.bool)

    x = _bn_train(layer.bn0, e).masked_fill(mask((B, D), p_in), 0.0) / (1 - p_in)
    hidden = mask((B, D * D), p_hid).view(B, D, D)
    y = torch.stack([x[b] @ (torch.einsum("k,kij->ij", r[b], layer.core).masked_fill(hidden[b], 0.0) / (1 - p_hid))
                     for b in range(B)])
    return _bn_train(layer.bn1, y).masked_fill(mask((B, D), p_out), 0.0) / (1 - p_out)


def _decision(core_init="xavier_uniform", seed=0, **rates):
    rates = {"input_dropout": 0.3, "hidden_dropout": 0.4, "output_dropout": 0.5, **rates}
    return TuckERDecision(6, 3, core_init=core_init, generator=torch.Generator().manual_seed(seed), **rates)


@pytest.mark.parametrize("with_index", [False, True])
@pytest.mark.parametrize("rates", [{}, {"hidden_dropout": 0.0, "output_dropout": 0.1}])
def test_tucker_decision_matches_its_formula_in_training(with_index, rates):
    # Pins the numbers of MoMoK's decisions and of the TuckER baseline: BN in train mode, masks from
    # drop_mask in the order input, hidden, output, the hidden one fresh per query.
    layer = _decision(**rates).double().train()
    g = torch.Generator().manual_seed(1)
    B = 11
    e = torch.randn(B, 6, generator=g, dtype=torch.float64)
    table = torch.randn(4, 3, generator=g, dtype=torch.float64)
    rel = torch.randint(4, (B,), generator=g)
    torch.manual_seed(7)
    if with_index:
        distinct, index = torch.unique(rel, return_inverse=True)
        got = layer(e, table[distinct], index)
    else:
        got = layer(e, table[rel])
    torch.testing.assert_close(got, _naive_decision(layer, e, table[rel], seed=7), rtol=1e-12, atol=1e-12)
    torch.manual_seed(8)
    assert not torch.equal(layer(e, table[rel]), got)            # fresh masks on each call


def test_tucker_decision_in_eval_mode_is_the_plain_contraction():
    layer = _decision().eval()
    with torch.no_grad():
        for bn in (layer.bn0, layer.bn1):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
    g = torch.Generator().manual_seed(2)
    e, r = torch.randn(5, 6, generator=g), torch.randn(5, 3, generator=g)

    def bn(m, v):
        return (v - m.running_mean) / torch.sqrt(m.running_var + m.eps) * m.weight + m.bias

    want = bn(layer.bn1, torch.einsum("kij,bk,bi->bj", layer.core, r, bn(layer.bn0, e)))
    torch.testing.assert_close(layer(e, r), want)


def test_tucker_decision_core_init_draws_from_the_generator():
    uniform, xavier = _decision("uniform", seed=3), _decision("xavier_uniform", seed=3)
    g = torch.Generator().manual_seed(3)
    assert torch.equal(uniform.core, torch.empty(3, 6, 6).uniform_(-1.0, 1.0, generator=g))   # TuckER's code
    g = torch.Generator().manual_seed(3)
    assert torch.equal(xavier.core, torch.nn.init.xavier_uniform_(torch.empty(3, 6, 6), generator=g))   # MoMoK's


def test_tucker_decision_rejects_bad_settings_and_shapes():
    with pytest.raises(ValueError, match="core_init must be one of"):
        _decision("normal")
    with pytest.raises(ValueError, match=r"hidden_dropout must be in \[0, 1\)"):
        _decision(hidden_dropout=1.0)
    layer = _decision()
    with pytest.raises(ValueError, match=r"expected e \(B, 6\) and r \(\*, 3\)"):
        layer(torch.zeros(2, 6), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="2 query entities but 3"):
        layer(torch.zeros(2, 6), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="2 query entities but 1"):
        layer(torch.zeros(2, 6), torch.zeros(3, 3), torch.zeros(1, dtype=torch.long))

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
