"""Each baseline's score_t against a naive per-triple reference written out here, plus agreement of
score_hrt with score_t, seeding, and entity chunking."""
from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

import mmkgbench.model
from baselines.complex import ComplEx, ComplExConfig
from baselines.distmult import DistMult, DistMultConfig
from baselines.pairre import PairRE, PairREConfig
from baselines.rotate import RotatE, RotatEConfig
from baselines.transe import TransE, TransEConfig
from baselines.tucker import TuckER, TuckERConfig
from mmkgbench.layers import drop_mask
from mmkgbench.model import ModelInputs

E, R, B = 7, 6, 5


# --- naive references: one (h, r, t) triple at a time, straight from the parameters -------------

def ref_distmult(m, h, r, t):
    return sum(m.entity[h, k] * m.relation[r, k] * m.entity[t, k] for k in range(m.cfg.dim))


def ref_transe(m, h, r, t):
    eh, rr, et = m.entity[h], m.relation[r], m.entity[t]
    if m.cfg.normalize_entities:
        eh, et = eh / math.sqrt(sum(x * x for x in eh)), et / math.sqrt(sum(x * x for x in et))
    if m.cfg.normalize_relations:
        rr = rr / math.sqrt(sum(x * x for x in rr))
    diff = [eh[k] + rr[k] - et[k] for k in range(m.cfg.dim)]
    dist = sum(abs(x) for x in diff) if m.cfg.p == 1 else math.sqrt(sum(x * x for x in diff))
    return m.cfg.gamma - dist


def _cplx(row, k, d):
    return complex(row[k], row[d + k])


def ref_complex(m, h, r, t):
    d = m.cfg.dim
    return sum((_cplx(m.entity[h], k, d) * _cplx(m.relation[r], k, d)
                * _cplx(m.entity[t], k, d).conjugate()).real for k in range(d))


def ref_rotate(m, h, r, t):
    d = m.cfg.dim
    rng = (m.cfg.gamma + m.cfg.epsilon) / d
    total = 0.0
    for k in range(d):
        theta = float(m.relation[r, k]) / (rng / math.pi)
        rot = complex(math.cos(theta), math.sin(theta))
        total += abs(_cplx(m.entity[h], k, d) * rot - _cplx(m.entity[t], k, d))
    return m.cfg.gamma - total


def ref_pairre(m, h, r, t):
    d = m.cfg.dim
    nh = math.sqrt(sum(float(x) ** 2 for x in m.entity[h]))
    nt = math.sqrt(sum(float(x) ** 2 for x in m.entity[t]))
    total = sum(abs(m.entity[h, k] / nh * m.relation[r, k] - m.entity[t, k] / nt * m.relation[r, d + k])
                for k in range(d))
    return m.cfg.gamma - total


def _bn_eval(bn, x):
    return (x - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias


def ref_tucker(m, h, r, t):
    x = _bn_eval(m.decision.bn0, m.entity[h])
    y = torch.einsum("kij,k,i->j", m.decision.core, m.relation[r], x)    # W x_1 w_r x_2 e_h
    return (_bn_eval(m.decision.bn1, y) * m.entity[t]).sum()


CASES = {
    "distmult": (DistMult, DistMultConfig(dim=5), ref_distmult),
    "transe_l1": (TransE, TransEConfig(dim=5, p=1), ref_transe),
    "transe_l2": (TransE, TransEConfig(dim=5, p=2), ref_transe),
    "transe_l1_norm": (TransE, TransEConfig(dim=5, p=1, normalize_entities=True), ref_transe),
    "transe_l2_norm": (TransE, TransEConfig(dim=5, p=2, normalize_entities=True,
                                            normalize_relations=True), ref_transe),
    "complex": (ComplEx, ComplExConfig(dim=4), ref_complex),
    "rotate": (RotatE, RotatEConfig(dim=4, gamma=3.0), ref_rotate),
    "pairre": (PairRE, PairREConfig(dim=5, gamma=3.0), ref_pairre),
    "tucker": (TuckER, TuckERConfig(entity_dim=4, relation_dim=3), ref_tucker),
}


def build(name, seed=0):
    """The case's model on a tiny graph, seeded, in eval mode (TuckER with non-trivial BN stats)."""
    cls, cfg, _ = CASES[name]
    g = torch.Generator().manual_seed(seed)
    model = cls(cfg, ModelInputs(num_entities=E, num_relations=R), g)
    if isinstance(model, TuckER):
        with torch.no_grad():
            for bn in (model.decision.bn0, model.decision.bn1):
                bn.running_mean.normal_(0, 0.5, generator=g)
                bn.running_var.uniform_(0.5, 2.0, generator=g)
                bn.weight.uniform_(0.5, 1.5, generator=g)
                bn.bias.normal_(0, 0.5, generator=g)
    return model.eval()


def queries(seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(E, (B,), generator=g), torch.randint(R, (B,), generator=g)


@pytest.mark.parametrize("name", CASES)
def test_score_t_matches_reference(name):
    model = build(name).double()
    h, r = queries()
    with torch.no_grad():
        got = model.score_t(h, r)
        want = torch.tensor([[float(CASES[name][2](model, int(h[b]), int(r[b]), t)) for t in range(E)]
                             for b in range(B)], dtype=torch.float64)
    assert_close(got, want, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("name", CASES)
def test_score_hrt_matches_score_t(name):
    model = build(name)
    h, r = queries()
    g = torch.Generator().manual_seed(2)
    t1 = torch.randint(E, (B,), generator=g)
    tn = torch.randint(E, (B, 4), generator=g)
    with torch.no_grad():
        full = model.score_t(h, r)
        assert_close(model.score_hrt(h, r, t1), full.gather(1, t1[:, None])[:, 0], atol=1e-5, rtol=1e-5)
        assert_close(model.score_hrt(h, r, tn), full.gather(1, tn), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", CASES)
def test_seeding_shape_and_finiteness(name):
    a, b, c = build(name, seed=3), build(name, seed=3), build(name, seed=4)
    for (key, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), key
    assert not torch.equal(a.entity, c.entity)
    h, r = queries()
    with torch.no_grad():
        s = a.score_t(h, r)
    assert s.shape == (B, E) and s.dtype == torch.float32
    assert torch.isfinite(s).all()


@pytest.mark.parametrize("name", CASES)
def test_training_step_gives_finite_gradients(name):
    model = build(name).train()
    h, r = queries()
    tn = torch.randint(E, (B, 3), generator=torch.Generator().manual_seed(5))
    loss = model.score_hrt(h, r, tn).sum() + model.score_t(h, r).sum() + model.penalty(h, r, tn)
    loss.backward()
    for key, p in model.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), key



def test_tucker_training_scores_use_the_fast_masks_per_query():
    # Train mode, written out per query: BN over the batch, then the dropout masks of layers.drop_mask
    # (input, hidden per query (d_e, d_e), output) drawn in that order from torch's seed; version 2.
    model = build("tucker").double().train()
    dec, d = model.decision, model.cfg.entity_dim
    h, r = queries()

    def bn(m, x):
        return (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + m.eps) * m.weight + m.bias

    torch.manual_seed(11)
    p0, p1, p2 = model.cfg.input_dropout, model.cfg.hidden_dropout1, model.cfg.hidden_dropout2
    x = bn(dec.bn0, model.entity[h]).masked_fill(drop_mask((B, d), p0), 0.0) / (1 - p0)
    hidden = drop_mask((B, d * d), p1).view(B, d, d)
    y = torch.stack([x[b] @ (torch.einsum("k,kij->ij", model.relation[r[b]], dec.core)
                             .masked_fill(hidden[b], 0.0) / (1 - p1)) for b in range(B)])
    y = bn(dec.bn1, y).masked_fill(drop_mask((B, d), p2), 0.0) / (1 - p2)
    want = torch.stack([torch.stack([(y[b] * model.entity[t]).sum() for t in range(E)]) for b in range(B)])
    torch.manual_seed(11)
    with torch.no_grad():
        got = model.score_t(h, r)
    assert_close(got, want.detach(), atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("name", ["transe_l1", "rotate", "pairre"])
@pytest.mark.parametrize("elements", [1, 2 * B * 5])
@pytest.mark.parametrize("grad", [False, True])
def test_entity_chunking_gives_same_scores(name, elements, grad, monkeypatch):
    # The no-grad path works in place on cache-sized chunks, the grad path out of place: both must
    # give the unchunked scores.
    model = build(name)
    h, r = queries()
    with torch.no_grad():
        whole = model.score_t(h, r)
    monkeypatch.setattr(mmkgbench.model, "CHUNK_ELEMENTS", elements)   # 1 or 2 entities per chunk
    with torch.set_grad_enabled(grad):
        chunked = model.score_t(h, r)
    assert_close(chunked.detach(), whole)


def test_rotate_relations_are_unit_rotations():
    # |h r| = |h| per dimension, so f(h, r, h) = gamma exactly when theta_r = 0.
    model = build("rotate")
    with torch.no_grad():
        model.relation.zero_()
        s = model.score_hrt(torch.arange(E), torch.zeros(E, dtype=torch.long), torch.arange(E))
    assert_close(s, torch.full((E,), model.cfg.gamma))


def test_train_defaults_use_training_config_keys():
    allowed = {"regime", "lr", "optimizer", "weight_decay", "lr_decay", "batch_size", "max_epochs",
               "label_smoothing", "num_negatives", "loss", "margin", "adversarial_temperature"}
    for cls, _, _ in CASES.values():
        assert set(cls.train_defaults) <= allowed, cls.__name__
    # citations live in mmkgbench.modelinfo since the light registry; tests/test_models.py checks them
