"""The multi-modal baselines of MoMoK's table (IKRL, TBKGC, TransAE, MMKRL, RSME, VBKGC, QEB): each
score_t against a naive per-triple formula written from the paper / NATIVE's equations (docstrings of
baselines/*.py), their training terms, and how they read features (modalities, fill, scenarios)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from mmkgbench.model import ModelInputs
from mmkgbench.models import MODELS
from mmkgbench.scenarios import SCENARIOS

E, R2, B = 7, 6, 5
MM = ["ikrl", "tbkgc", "transae", "mmkrl", "rsme", "vbkgc", "qeb"]


def inputs(fill="zeros", seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = {"image": torch.randn(E, 4, generator=g), "text": torch.randn(E, 3, generator=g)}
    present = {"image": torch.tensor([1, 1, 0, 1, 1, 1, 1], dtype=torch.bool),
               "text": torch.tensor([1, 1, 1, 1, 0, 1, 1], dtype=torch.bool)}
    for m in feats:
        feats[m][~present[m]] = 0.0
    return ModelInputs(E, R2, feats, present, fill)


def build(name, fill="zeros", **cfg):
    cls = MODELS[name]
    torch.manual_seed(0)
    return cls(cls.Config(**{"dim": 6, **cfg}), inputs(fill), torch.Generator().manual_seed(1)).eval()


# --- naive pieces, one vector at a time --------------------------------------------------------

def nrm(v):
    return v / math.sqrt(sum(float(x) ** 2 for x in v))


def l1(a, r, b, normalize=True):
    if normalize:
        a, r, b = nrm(a), nrm(r), nrm(b)
    return sum(abs(float(a[k] + r[k] - b[k])) for k in range(len(a)))


def lin(layer, x):
    out = [sum(float(layer.weight[i, j]) * float(x[j]) for j in range(len(x))) for i in range(layer.weight.shape[0])]
    if layer.bias is not None:
        out = [o + float(b) for o, b in zip(out, layer.bias)]
    return torch.tensor(out, dtype=torch.float64)


def raw(inp, e):
    """The features of entity e as the zeros fill gives them: image then text."""
    return torch.cat([inp.features["image"][e], inp.features["text"][e]]).double()


def ref_ikrl(m, inp, h, r, t):
    s = lambda e: m.entity[e].double()
    i = lambda e: lin(m.image.proj[0], raw(inp, e))
    rel = m.relation[r].double()
    return m.cfg.gamma - (l1(s(h), rel, s(t)) + l1(i(h), rel, i(t)) + l1(i(h), rel, s(t)) + l1(s(h), rel, i(t)))


def ref_tbkgc(m, inp, h, r, t):
    s = lambda e: m.entity[e].double()
    mm = lambda e: torch.cat([lin(m.multimodal.proj[0], inp.features["image"][e]),
                              lin(m.multimodal.proj[1], inp.features["text"][e])])
    rel = m.relation[r].double()
    return m.cfg.gamma - (l1(s(h), rel, s(t)) + l1(mm(h), rel, mm(t)) + l1(mm(h), rel, s(t)) + l1(s(h), rel, mm(t))
                          + l1(s(h) + mm(h), rel, s(t) + mm(t)))


def ref_qeb(m, inp, h, r, t):
    vec = {"s": lambda e: m.entity[e].double(), "m": lambda e: lin(m.multimodal.proj[0], raw(inp, e))}
    rels = {"rs": m.relation[r].double(), "rm": m.relation_mm[r].double()}
    total = sum(l1(vec[a](h), rels[q], vec[b](t)) for a in "sm" for q in rels for b in "sm")
    total += sum(l1(vec["s"](h) + vec["m"](h), rels[q], vec["s"](t) + vec["m"](t)) for q in rels)
    return m.cfg.gamma - total / 10


def ref_mmkrl(m, inp, h, r, t):
    S = lambda v: lin(m.shared, v)
    b_h, b_r, b_t = (m.offsets[k].double() for k in range(3))
    s = lambda e: m.entity[e].double()
    mm = lambda e: lin(m.multimodal.proj[0], raw(inp, e))
    hp, rp, tp = S(s(h)) + b_h, S(m.relation[r].double()) + b_r, S(s(t)) + b_t
    return m.cfg.gamma - (l1(hp, rp, tp) + l1(mm(h), rp, mm(t)) + l1(mm(h), rp, s(t)) + l1(s(h), rp, mm(t))) / 4


def ref_transae(m, inp, h, r, t):
    enc = lambda e: lin(m.encoder[2], torch.relu(lin(m.encoder[0], raw(inp, e))))
    return m.cfg.gamma - l1(enc(h), m.relation[r].double(), enc(t))


def ref_rsme(m, inp, h, r, t):
    d = m.cfg.dim
    p = lambda e: lin(m.visual.proj[0], raw(inp, e))
    def cplx(e):
        s, pe = m.entity[e].double(), p(e)
        return [complex(x, y) for x, y in zip(torch.cat([s[:d], pe[:d]]), torch.cat([s[d:], pe[d:]]))]
    rel = m.relation[r].double()
    rc = [complex(rel[k], rel[2 * d + k]) for k in range(2 * d)]
    phi = sum((a * q * b.conjugate()).real for a, q, b in zip(cplx(h), rc, cplx(t)))
    ph, pt = p(h), p(t)
    cos = float(ph @ pt) / math.sqrt(float(ph @ ph) * float(pt @ pt))
    return m.cfg.beta * phi + (1 - m.cfg.beta) * cos


def ref_vbkgc(m, inp, h, r, t):
    d = m.cfg.dim
    s = lambda e: m.entity[e].double()
    i = lambda e: lin(m.image.proj[0], raw(inp, e))
    if m.cfg.kernel == "l1":
        rel = m.relation[r].double()
        energy = lambda a, b: l1(a, rel, b)
    else:
        theta = [float(x) / (m.embedding_range / math.pi) for x in m.relation[r]]
        def energy(a, b):
            return sum(abs(complex(a[k], a[d + k]) * complex(math.cos(theta[k]), math.sin(theta[k]))
                           - complex(b[k], b[d + k])) for k in range(d))
    return m.cfg.gamma - (energy(s(h), s(t)) + energy(i(h), i(t)) + energy(i(h), s(t)) + energy(s(h), i(t)))


REFS = {"ikrl": (ref_ikrl, {}), "tbkgc": (ref_tbkgc, {}), "qeb": (ref_qeb, {}), "mmkrl": (ref_mmkrl, {}),
        "transae": (ref_transae, {}), "rsme": (ref_rsme, {}), "vbkgc": (ref_vbkgc, {}),
        "vbkgc-l1": (ref_vbkgc, {"kernel": "l1"})}


def test_every_multimodal_baseline_has_a_reference():
    assert {k.split("-")[0] for k in REFS} == set(MM)


@pytest.mark.parametrize("key", list(REFS))
def test_score_t_matches_the_naive_formula(key):
    ref, cfg = REFS[key]
    name = key.split("-")[0]
    m, inp = build(name, **cfg), inputs()
    h = torch.tensor([0, 2, 4, 5, 6])
    r = torch.tensor([0, 1, 3, 4, 5])              # reciprocal relations included (>= 3)
    with torch.no_grad():
        fast = m.score_t(h, r).double()
        slow = torch.tensor([[float(ref(m, inp, int(h[b]), int(r[b]), t)) for t in range(E)] for b in range(B)],
                            dtype=torch.float64)
    assert_close(fast, slow, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", MM)
def test_training_terms_of_the_margin_family_and_penalties(name):
    # TransAE's penalty is the reconstruction error, MMKRL's the alignment loss: both written out here
    m = build(name)
    h, r, t = torch.tensor([0, 1, 2]), torch.tensor([0, 4, 5]), torch.tensor([[3, 4], [5, 6], [0, 2]])
    pen = m.penalty(h, r, t)
    if name == "transae":
        x = torch.stack([raw(inputs(), int(e)) for e in torch.cat([h, t.reshape(-1)])]).float()
        err = ((m.decoder(m.encoder(x)) - x) ** 2).mean()
        assert_close(pen, m.cfg.reconstruction * err)
        assert float(pen.detach()) > 0
    elif name == "mmkrl":
        inp = inputs()
        S = lambda v: lin(m.shared, v)
        rows = []
        for e in h.tolist():
            s = m.entity[e].double()
            rows.append(("hp", ((S(s) + m.offsets[0].double() - s) ** 2)))
            rows.append(("ha", ((lin(m.align, s) - lin(m.multimodal.proj[0], raw(inp, e))) ** 2)))
        for e in t.reshape(-1).tolist():
            s = m.entity[e].double()
            rows.append(("tp", ((S(s) + m.offsets[2].double() - s) ** 2)))
            rows.append(("ta", ((lin(m.align, s) - lin(m.multimodal.proj[0], raw(inp, e))) ** 2)))
        for q in r.tolist():
            v = m.relation[q].double()
            rows.append(("rp", ((S(v) + m.offsets[1].double() - v) ** 2)))
        want = sum(torch.stack([x for k, x in rows if k == key]).mean() for key in ("hp", "tp", "rp", "ha", "ta"))
        assert_close(pen.double(), m.cfg.alignment * want, atol=1e-5, rtol=1e-5)
    # the margin family trains with the self-adversarial margin loss and Bernoulli corruption by default
    if name not in ("rsme", "vbkgc"):
        assert MODELS[name].train_defaults["loss"] == "margin"
    assert MODELS[name].train_defaults["corruption"] == "bern"


@pytest.mark.parametrize("name", MM)
def test_no_features_is_a_clear_error(name):
    cls = MODELS[name]
    with pytest.raises(ValueError, match="reads feature modalities"):
        cls(cls.Config(dim=6), ModelInputs(E, R2), torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", MM)
def test_fill_policy_decides_what_absent_entities_score(name):
    # entity 2 has no image, entity 4 no text: zeros and mean fills give them different scores, the
    # entities with every modality the same ones; "learned" adds one trainable vector per modality
    h, r = torch.tensor([2, 4, 0]), torch.tensor([0, 1, 2])
    with torch.no_grad():
        zeros, mean = build(name, "zeros").score_t(h, r), build(name, "mean").score_t(h, r)
    assert not torch.allclose(zeros[:2], mean[:2])
    assert_close(zeros[2, [0, 1, 3, 5, 6]], mean[2, [0, 1, 3, 5, 6]])
    learned = dict(build(name, "learned").named_parameters())
    assert sum(k.endswith(".missing") for k in learned) == 2


@pytest.mark.parametrize("scenario", ["noisy", "mismatch", "missing"])
@pytest.mark.parametrize("name", [n for n, c in MODELS.items() if c.modalities])
def test_feature_scenarios_change_the_scores(name, scenario, tiny):
    # every model that reads features (registry-wide): the same weights (same seed) score differently
    # once a feature scenario has changed the inputs
    from tests.test_models import build as build_on
    perturbed = SCENARIOS[scenario].fn(tiny, np.random.default_rng(0), 0.5)
    h, r = torch.arange(6), torch.tensor([0, 1, 2, 3, 4, 5])
    with torch.no_grad():
        a, b = build_on(name, tiny).eval().score_t(h, r), build_on(name, perturbed).eval().score_t(h, r)
    assert torch.isfinite(b).all() and not torch.allclose(a, b)
