"""OTKGE (baselines/otkge.py): score_t against a naive per-triple formula with the transport plan
recomputed by a plain Sinkhorn loop, the plan's recomputation and cache, fill policy, errors, N3."""
from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

import baselines.otkge as otkge_module
from baselines.otkge import OTKGE
from mmkgbench.model import ModelInputs

E, R2, B = 7, 6, 5


def inputs(fill="zeros", extra=()):
    g = torch.Generator().manual_seed(0)
    feats = {"image": torch.randn(E, 4, generator=g), "text": torch.randn(E, 3, generator=g)}
    present = {"image": torch.tensor([1, 1, 0, 1, 1, 1, 1], dtype=torch.bool),
               "text": torch.tensor([1, 1, 1, 1, 0, 1, 1], dtype=torch.bool)}
    for m in extra:
        feats[m], present[m] = torch.randn(E, 2, generator=g), torch.ones(E, dtype=torch.bool)
    for m in feats:
        feats[m][~present[m]] = 0.0
    return ModelInputs(E, R2, feats, present, fill)


def build(fill="zeros", **cfg):
    return OTKGE(OTKGE.Config(**{"dim": 6, **cfg}), inputs(fill), torch.Generator().manual_seed(1)).eval()


# --- naive pieces, float64, one entity / one triple at a time ----------------------------------

def naive_plans(S, X, kappa, iters, tol=1e-9):
    """The code's Sinkhorn (sinkhorn_cal1.py): K = exp(-0.1 C), C_jl = κ (S_ij - X_il)^2, u, v from 1/n,
    v = b / K^T u, u = a / K v; the column error is checked every 10 iterations, here jointly over the
    problems as the model batches them. Returns one (2k, D) plan per row of S."""
    n, a, b = len(S), len(S[0]), len(X[0])
    K = [[[math.exp(-0.1 * kappa * (S[i][j] - X[i][l]) ** 2) for l in range(b)] for j in range(a)] for i in range(n)]
    u = [[1 / a] * a for _ in range(n)]
    v = [[1 / b] * b for _ in range(n)]
    for it in range(iters):
        for i in range(n):
            v[i] = [(1 / b) / sum(K[i][j][l] * u[i][j] for j in range(a)) for l in range(b)]
            u[i] = [(1 / a) / sum(K[i][j][l] * v[i][l] for l in range(b)) for j in range(a)]
        if it % 10 == 0:
            err = max(sum((1 / b - v[i][l] * sum(K[i][j][l] * u[i][j] for j in range(a))) ** 2 for l in range(b))
                      for i in range(n))
            if err < tol:
                break
    return [[[u[i][j] * K[i][j][l] * v[i][l] for l in range(b)] for j in range(a)] for i in range(n)]


def naive_fused(m, inp):
    """ê_e for every entity as lists of floats, from the model's own parameters and the zeros-filled features."""
    c, w = m.cfg, 2 * m.cfg.dim
    n = min(c.ot_entities, E)
    S = m.entity.detach().double().tolist()
    weights = {"image": c.image_weight, "text": c.text_weight}
    fused = [[(1 - sum(weights.values())) * S[e][j] for j in range(w)] for e in range(E)]
    for mod, alpha in weights.items():
        X = inp.features[mod].double().tolist()
        D = len(X[0])
        P = naive_plans(S[:n], X[:n], c.kappa, c.sinkhorn_iterations)
        delta = m.delta[mod].detach().double().tolist()
        W = [[c.kappa * w * sum(P[i][j][l] for i in range(n)) / n + delta[l][j] for j in range(w)] for l in range(D)]
        for e in range(E):
            for j in range(w):
                fused[e][j] += alpha * sum(X[e][l] * W[l][j] for l in range(D))
    return fused


def cplx(v):
    k = len(v) // 2
    return [complex(v[i], v[k + i]) for i in range(k)]


def naive_score(fused, rel, h, r, t):
    return sum((a * q * b.conjugate()).real for a, q, b in zip(cplx(fused[h]), cplx(rel[r]), cplx(fused[t])))


H, R = torch.tensor([0, 2, 4, 5, 6]), torch.tensor([0, 1, 3, 4, 5])     # reciprocal relations included (>= 3)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_score_t_matches_the_naive_formula(dtype):
    m, inp = build(), inputs()
    m.to(dtype)
    # a relation table far from its 1e-3 init, so that the scores are not all near 0
    with torch.no_grad():
        m.relation.copy_(torch.randn(R2, 12, generator=torch.Generator().manual_seed(3), dtype=dtype))
    fused, rel = naive_fused(m, inp), m.relation.detach().double().tolist()
    with torch.no_grad():
        fast = m.score_t(H, R)
        assert fast.dtype == dtype
        assert_close(m.fused().double(), torch.tensor(fused, dtype=torch.float64),
                     **({"atol": 1e-9, "rtol": 1e-9} if dtype == torch.float64 else {"atol": 1e-3, "rtol": 1e-4}))
    slow = torch.tensor([[naive_score(fused, rel, int(H[b]), int(R[b]), t) for t in range(E)] for b in range(B)],
                        dtype=torch.float64)
    # float32: the fused entries are ~10-100 (W ~ κ/D), so the sums lose a few digits
    scale = float(slow.abs().max())
    tol = {"atol": 1e-8, "rtol": 1e-9} if dtype == torch.float64 else {"atol": 1e-4 * scale, "rtol": 1e-3}
    assert_close(fast.double(), slow, **tol)


def test_score_hrt_agrees_with_score_t_in_training_and_eval():
    m = build()
    for train in (True, False):
        m.train(train)
        with torch.no_grad():
            s = m.score_t(H, R)
            t1 = torch.tensor([1, 2, 3, 6, 0])
            tn = torch.randint(E, (B, 4), generator=torch.Generator().manual_seed(2))
            assert_close(m.score_hrt(H, R, t1), s.gather(1, t1[:, None])[:, 0])
            assert_close(m.score_hrt(H, R, tn), s.gather(1, tn))


def test_plan_recomputed_when_the_entities_change_and_cached_otherwise(monkeypatch):
    calls = []
    real = otkge_module.sinkhorn_scalings
    monkeypatch.setattr(otkge_module, "sinkhorn_scalings", lambda *a, **k: calls.append(1) or real(*a, **k))
    m = build().train()
    opt = torch.optim.Adagrad(m.parameters(), lr=0.1)
    # training: the plan carries no gradient; Δ and E_s get theirs through the fused vectors
    loss = m.score_t(H, R).square().mean() + m.penalty(H, R, torch.tensor([1, 2, 3, 4, 5]))
    assert len(calls) == 2                                   # once per modality, the penalty reuses it
    assert not any(p.requires_grad for p in m.transport().values())
    loss.backward()
    assert m.delta["image"].grad.abs().sum() > 0 and m.entity.grad.abs().sum() > 0
    before = {k: v.clone() for k, v in m.transport().items()}
    opt.step()                                               # E_s changed: recomputed, and different
    after = m.transport()
    assert len(calls) == 4 and all(not torch.equal(before[k], after[k]) for k in before)
    with torch.no_grad():
        m.entity[:3] += 0.5                                  # an in-place change outside the optimiser, too
    m.score_t(H, R)
    assert len(calls) == 6
    # evaluation: cached across calls, until a parameter changes
    m.eval()
    with torch.no_grad():
        a = m.score_t(H, R)
        b = m.score_t(H, R)
        m.score_hrt(H, R, torch.tensor([1, 2, 3, 4, 5]))
        assert len(calls) == 6 and torch.equal(a, b)
        m.entity[0] += 0.5
        m.score_t(H, R)
    assert len(calls) == 8


def test_fill_policy_decides_what_absent_entities_score():
    # entity 2 has no image, entity 4 no text. With the plan drawn from entities 0 and 1 (both complete)
    # only the absent entities' scores change with the fill; from the first 10 (all 7 here), every score
    # does, since the absent rows enter the shared plan
    h, r = torch.tensor([2, 4, 0]), torch.tensor([0, 1, 2])
    keep = [0, 1, 3, 5, 6]
    with torch.no_grad():
        zeros, mean = build("zeros", ot_entities=2).score_t(h, r), build("mean", ot_entities=2).score_t(h, r)
        assert not torch.allclose(zeros[:2], mean[:2])
        assert_close(zeros[2, keep], mean[2, keep])
        z10, m10 = build("zeros").score_t(h, r), build("mean").score_t(h, r)
        assert not torch.allclose(z10[2, keep], m10[2, keep])
    learned = dict(build("learned").named_parameters())
    assert sum(k.endswith(".missing") for k in learned) == 2


def test_no_features_and_too_heavy_modality_weights_are_clear_errors():
    with pytest.raises(ValueError, match="OTKGE reads feature modalities"):
        OTKGE(OTKGE.Config(dim=6), ModelInputs(E, R2), torch.Generator().manual_seed(0))
    # image 0.1 + text 0.7 + numeric 0.1 + audio 0.1 = 1: nothing left for the structural embedding
    with pytest.raises(ValueError, match="sum to 1"):
        OTKGE(OTKGE.Config(dim=6), inputs(extra=("numeric", "audio")), torch.Generator().manual_seed(0))
    m = OTKGE(OTKGE.Config(dim=6, other_weight=0.05), inputs(extra=("numeric", "audio")),
              torch.Generator().manual_seed(0))
    assert m.weights == {"image": 0.1, "text": 0.7, "numeric": 0.05, "audio": 0.05}
    with pytest.raises(ValueError, match="kappa"):
        OTKGE.Config(kappa=0.0)


@pytest.mark.parametrize("regime", ["negative", "kvsall"])
def test_penalty_is_the_written_out_n3(regime):
    m, inp = build(), inputs()
    m.double()
    h, r = torch.tensor([0, 1, 2]), torch.tensor([0, 4, 5])
    if regime == "negative":
        t, tails = torch.tensor([[3, 4, 1], [5, 6, 0], [0, 2, 2]]), [3, 5, 0]     # positives in column 0
    else:
        t = torch.tensor([3, 4, 5, 6, 0]); tails = t.tolist()                     # a flat answer list
    fused, rel = naive_fused(m, inp), m.relation.detach().double().tolist()
    n3 = lambda v: sum(abs(z) ** 3 for z in cplx(v))
    mean = lambda rows: sum(rows) / len(rows)
    want = m.cfg.n3 * (mean([n3(fused[e]) for e in h.tolist()]) + mean([n3(rel[q]) for q in r.tolist()])
                       + mean([n3(fused[e]) for e in tails]))
    assert_close(m.penalty(h, r, t).detach(), torch.tensor(want, dtype=torch.float64), atol=1e-12, rtol=1e-9)
    assert float(OTKGE(OTKGE.Config(dim=6, n3=0.0), inp, torch.Generator().manual_seed(1)).penalty(h, r, t)) == 0


def test_warm_start_reaches_the_cold_start_plan_in_fewer_iterations():
    # after one optimiser step the plan solved from the previous scalings equals the plan solved from
    # 1/n (the code's start) to the tolerance, and takes fewer iterations
    warm, cold = build(warm_start=True), build()
    for m in (warm, cold):
        m.train()
        m.transport()
        with torch.no_grad():
            m.entity.add_(1e-4 * torch.randn(m.entity.shape, generator=torch.Generator().manual_seed(3)))
    a, b = warm.transport(), cold.transport()
    for k in a:
        assert_close(a[k], b[k], atol=1e-3, rtol=1e-3)
    assert sum(warm.iterations.values()) < sum(cold.iterations.values())
