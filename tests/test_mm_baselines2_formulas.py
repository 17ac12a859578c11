"""Part 2 of MoMoK's multi-modal baselines (AdaMF with MAT, NativE, IMF, MoSE; OTKGE in test_otkge.py):
score_t against naive per-triple formulas written from the docstrings of baselines/*.py, the adversarial
terms written out, the ensemble fits, fill policies and the no-features error."""
from __future__ import annotations

import cmath
import math

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from mmkgbench.model import ModelInputs
from mmkgbench.models import MODELS
from mmkgbench.ranking import KnownAnswers
from tests.test_mm_baseline_formulas import E, R2, inputs

PART2 = ["adamf", "native", "imf", "mose", "otkge"]
SIZES = {"adamf": {"dim": 4}, "native": {"dim": 4}, "imf": {"dim": 5, "relation_dim": 3},
         "mose": {"dim": 4}, "otkge": {"dim": 4}}


def build(name, fill="zeros", seed=1, **cfg):
    cls = MODELS[name]
    return cls(cls.Config(**{**SIZES[name], **cfg}), inputs(fill), torch.Generator().manual_seed(seed)).eval()


def D(x):
    return x.detach().double()


def apply_linear(layer, x):
    return D(layer.weight) @ x + (D(layer.bias) if layer.bias is not None else 0.0)


def apply_mlp(seq, x):
    for layer in seq:
        x = apply_linear(layer, x) if isinstance(layer, torch.nn.Linear) else torch.relu(x)
    return x


# --- AdaMF / NativE ----------------------------------------------------------------------------

def adamf_vectors(m, inp, e):
    vecs = [D(m.entity[e])]
    vecs += [apply_mlp(m.project[k], inp.features[k][e].double()) for k in m.features]
    return vecs


def adamf_fused(m, inp, e, r):
    vecs = adamf_vectors(m, inp, e)
    w = D(m.attention.weight[0])
    logits = torch.tensor([float(w @ torch.tanh(v)) for v in vecs], dtype=torch.float64)
    if m.cfg.relation_temperature:
        logits = logits / (1 / (1 + math.exp(-float(m.temperature[r, 0]))))
    beta = torch.softmax(logits, 0)
    return sum(b * v for b, v in zip(beta, vecs))


def rotate_distance(m, a, r, b):
    d = m.cfg.dim
    theta = [float(x) * math.pi / m.relation_range for x in D(m.relation[r])]
    return sum(abs(complex(a[k], a[d + k]) * cmath.exp(1j * theta[k]) - complex(b[k], b[d + k])) for k in range(d))


def ref_adamf(m, inp, h, r, t):
    return m.cfg.gamma - rotate_distance(m, adamf_fused(m, inp, h, r), r, adamf_fused(m, inp, t, r))


# --- IMF -----------------------------------------------------------------------------------------

def bn(layer, x):
    return (x - D(layer.running_mean)) / torch.sqrt(D(layer.running_var) + layer.eps) * D(layer.weight) + D(layer.bias)


def tucker(dec, e, rel):
    core = D(dec.core)                                         # (d_r, D, D)
    w = sum(rel[j] * core[j] for j in range(len(rel)))
    return bn(dec.bn1, bn(dec.bn0, e) @ w)


def product_fusion(block, xs):
    total = 0.0
    for head in block.heads:
        prod = 1.0
        for lin, x in zip(head, xs):
            prod = prod * torch.relu(apply_linear(lin, x))
        total = total + prod
    return torch.relu(total)


def ref_imf(m, inp, h, r, t):
    table = {k: D(m.entity[k]()) for k in m.names}
    probs = []
    for k in m.names:
        probs.append(torch.sigmoid(tucker(m.decide[k], table[k][h], D(m.relation[k][r])) @ table[k][t]))
    joint = lambda e: product_fusion(m.fuse_entity, [table[k][e] for k in m.names])
    rel = product_fusion(m.fuse_relation, [D(m.relation[k][r]) for k in m.names])
    probs.append(torch.sigmoid(tucker(m.decide["joint"], joint(h), rel) @ joint(t)))
    p = sum(probs) / len(probs)
    return math.log(p / (1 - p))


# --- MoSE ----------------------------------------------------------------------------------------

def mose_vec(m, inp, k, e):
    if k == "structure":
        return D(m.entity[e])
    return (inp.features[k][e].double() @ D(m.proj[k])) / m.cfg.scale


def complex_score(a, q, b):
    d = len(a) // 2
    return sum((complex(a[i], a[d + i]) * complex(q[i], q[d + i]) * complex(b[i], b[d + i]).conjugate()).real
               for i in range(d))


def ref_mose(m, inp, h, r, t):
    return sum(complex_score(mose_vec(m, inp, k, h), D(m.relation[k][r]), mose_vec(m, inp, k, t))
               for k in m.names) / len(m.names)


REFS = {"adamf": (ref_adamf, {}), "native": (ref_adamf, {}), "adamf-native-form": (ref_adamf, {
    "projector_layers": 2, "relation_temperature": True}), "imf": (ref_imf, {}),
    "imf-raw": (ref_imf, {"pool_features": False, "contrastive": 0.0}), "mose": (ref_mose, {}),
    "mose-alpha": (None, {"alpha": 0.5})}


@pytest.mark.parametrize("key", [k for k, v in REFS.items() if v[0] is not None])
def test_score_t_matches_the_naive_formula(key):
    ref, cfg = REFS[key]
    name = key.split("-")[0]
    m, inp = build(name, **cfg), inputs()
    if name == "imf":          # non-trivial batch-norm statistics, so BN0/BN1 are tested too
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm1d):
                g = torch.Generator().manual_seed(5)
                mod.running_mean.copy_(torch.randn(mod.num_features, generator=g) * 0.1)
                mod.running_var.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
    h, r = torch.tensor([0, 2, 4, 5, 6]), torch.tensor([0, 1, 3, 4, 5])
    with torch.no_grad():
        fast = m.score_t(h, r).double()
    slow = torch.tensor([[float(ref(m, inp, int(h[b]), int(r[b]), t)) for t in range(E)] for b in range(len(h))],
                        dtype=torch.float64)
    assert_close(fast, slow, atol=1e-4, rtol=1e-4)


def test_mose_alpha_mixes_structure_into_the_modality_members():
    m, inp = build("mose", alpha=0.5), inputs()
    h, r, t = 3, 2, 5
    vec = lambda k, e: ((0.5 * D(m.entity[e]) + 0.5 * inp.features[k][e].double() @ D(m.proj[k])) / m.cfg.scale
                        if k != "structure" else D(m.entity[e]))
    want = sum(complex_score(vec(k, h), D(m.relation[k][r]), vec(k, t)) for k in m.names) / len(m.names)
    with torch.no_grad():
        got = m.score_t(torch.tensor([h]), torch.tensor([r]))[0, t]
    assert abs(float(got) - want) < 1e-5


def test_native_fuses_candidates_with_the_query_relation_temperature():
    # two queries of different relations: the same candidate gets a different fused vector, which the
    # per-relation loop of score_t must reproduce (checked against score_hrt)
    m = build("native")
    with torch.no_grad():
        m.temperature.copy_(torch.linspace(-2, 2, R2)[:, None])
        h, r = torch.tensor([1, 1]), torch.tensor([0, 5])
        s = m.score_t(h, r)
        t = torch.arange(E)[None].expand(2, -1)
        assert_close(s, m.score_hrt(h, r, t), atol=1e-5, rtol=1e-5)


# --- the adversarial game ------------------------------------------------------------------------

def fake_scores_by_hand(m, h, r, t):
    """Real score and the three fake triples' scores, recomputed with the same noise draws."""
    torch.manual_seed(7)
    real, fakes, _ = m.adversarial_scores(h, r, t)
    return real, fakes


@pytest.mark.parametrize("name", ["adamf", "native"])
def test_model_and_generator_terms_are_the_written_losses(name):
    m = build(name).train()
    for mod in m.modules():           # no dropout in these models; train mode only draws fresh noise
        assert not isinstance(mod, torch.nn.Dropout)
    h, r, t = torch.tensor([0, 1, 2, 3]), torch.tensor([0, 4, 5, 1]), torch.tensor([[3, 4], [5, 6], [0, 2], [1, 1]])
    real, fakes = fake_scores_by_hand(m, h, r, t[:, 0])
    sp = torch.nn.functional.softplus
    if name == "adamf":
        want_model = m.cfg.mu * sum(0.5 * (sp(-real).mean() + sp(fakes[:, j]).mean()) for j in range(3))
        want_gen = sum(0.5 * (sp(-fakes[:, j]).mean() + sp(real).mean()) for j in range(3))
    else:
        want_model = m.cfg.mu * ((fakes.mean(0) - real.mean()).sum())
        want_gen = (m.cfg.gamma - fakes).mean()
        reg = m.cfg.reg * torch.stack([m.entity[h].square().mean(), m.relation[r].square().mean(),
                                       m.entity[t].square().mean()]).mean()
        want_model = want_model + reg
    torch.manual_seed(7)
    got_model = m.penalty(h, r, t)
    if name == "native":               # the penalty draws the GP's u after the noise: same noise, so
        torch.manual_seed(7)           # remove the GP term by recomputing it with the same draws
        real2, fakes2, pair = m.adversarial_scores(h, r, t[:, 0])
        gp = m.gradient_penalty(r, *pair)
        want_model = want_model + m.cfg.mu * m.cfg.gradient_penalty * gp
    assert_close(got_model, want_model, atol=1e-6, rtol=1e-5)
    torch.manual_seed(7)
    assert_close(m.auxiliary_loss(h, r, t[:, 0]), want_gen, atol=1e-6, rtol=1e-5)
    # the generator's parameters are the auxiliary ones, stepped by their own Adam at generator_lr
    gen = {id(p) for p in m.gen.parameters()}
    assert {id(p) for p in m.auxiliary_parameters()} == gen and m.auxiliary_lr() == m.cfg.generator_lr
    # under KvsAll there are no positive tails: no adversarial term, no generator step
    assert m.auxiliary_loss(h, r, None) is None
    flat = t.reshape(-1)                      # a KvsAll batch's flat answer list: only NativE's L2 term
    want_flat = torch.zeros(()) if name == "adamf" else m.cfg.reg * torch.stack([
        m.entity[h].square().mean(), m.relation[r].square().mean(), m.entity[flat].square().mean()]).mean()
    assert_close(m.penalty(h, r, flat), want_flat)


def test_wgan_gradient_penalty_is_a_constant_for_rotate():
    # NativE's claim checked: ||d dist / d x|| = sqrt(d) for RotatE, so GP = (sqrt(d) - 1)^2 and no
    # parameter gets a gradient from it (docstring of baselines/adamf.py)
    m = build("native", dim=6).train()
    h, r, t = torch.tensor([0, 1, 2]), torch.tensor([0, 4, 5]), torch.tensor([3, 5, 0])
    _, _, pair = m.adversarial_scores(h, r, t)
    gp = m.gradient_penalty(r, *pair)
    assert abs(float(gp) - (math.sqrt(6) - 1) ** 2) < 1e-4
    grads = torch.autograd.grad(gp, [p for p in m.parameters() if p.requires_grad], allow_unused=True)
    assert all(g is None or float(g.abs().max()) < 1e-5 for g in grads)


def test_adversarial_none_has_no_generator_and_mu_zero_is_refused():
    m = build("adamf", adversarial="none")
    assert m.auxiliary_parameters() == [] and not hasattr(m, "gen")
    with pytest.raises(ValueError, match="needs mu > 0"):
        MODELS["adamf"].Config(mu=0.0)
    with pytest.raises(ValueError, match="gradient_penalty"):
        MODELS["adamf"].Config(gradient_penalty=0.1)


def test_fusion_weights_table_sums_to_one_per_query_relation():
    m = build("native")
    with torch.no_grad():
        m.temperature.copy_(torch.linspace(-2, 2, R2)[:, None])
    triples = torch.tensor([[0, 0, 1], [2, 1, 3], [4, 2, 5], [6, 0, 0]])
    table = m.interpretation(triples)["fusion_weights"]
    assert set(table["modality"]) == {"structure", "image", "text"}
    sums = table.groupby(["relation", "direction"])["weight"].sum()
    assert np.allclose(sums.to_numpy(), 1.0)
    assert set(MODELS["native"].interpretation_views) == {"fusion_weights", "fusion_by_relation"}


# --- IMF's contrastive term ----------------------------------------------------------------------

def test_imf_contrastive_penalty_is_the_written_loss():
    m = build("imf")
    h = torch.tensor([0, 3, 5])
    xs = [D(m.entity[k](h)) for k in m.names]
    xs = [x / x.norm() for x in xs]
    M, B = len(xs), len(h)
    want = 0.0
    for i in range(B):
        pos = np.mean([float(xs[a][i] @ xs[b][i]) for a in range(M) for b in range(a + 1, M)])
        neg = sum(float(xs[k][i] @ xs[k][j]) for k in range(M) for j in range(B) if j != i) / (M * B)
        want += math.log1p(math.exp(neg - pos)) / B
    got = m.penalty(h, torch.tensor([0, 1, 2]), torch.tensor([1, 2, 3]))
    assert abs(float(got) - m.cfg.contrastive * want) < 1e-6
    with pytest.raises(ValueError, match="pool_features"):
        build("imf", pool_features=False)


def test_imf_pools_normalised_features_to_the_model_width():
    m = build("imf", dim=2)
    x = inputs().features["image"][0].double()           # width 4 -> 2: means of pairs of the unit vector
    x = x / x.norm()
    assert_close(D(m.entity["image"].table[0]), torch.stack([x[:2].mean(), x[2:].mean()]))


# --- MoSE's ensembles ----------------------------------------------------------------------------

def naive_boosting(right):
    """AdaBoost rounds over pairs written as loops (module docstring of baselines/mose.py)."""
    n, M = len(right), len(right[0])
    Dw = [1.0 / n] * n
    w, free = [0.0] * M, set(range(M))
    for _ in range(M):
        a = {}
        for m in free:
            good = sum(Dw[i] for i in range(n) if right[i][m])
            a[m] = 0.5 * math.log((good + 1e-12) / (sum(Dw) - good + 1e-12))
        best = max(sorted(free), key=lambda m: a[m])
        w[best] += a[best]
        free.remove(best)
        Dw = [Dw[i] * math.exp(-a[best] * (1 if right[i][best] else -1)) for i in range(n)]
        Dw = [x / sum(Dw) for x in Dw]
    return w


def test_boosting_weights_match_the_naive_rounds():
    from baselines.mose import boosting_weights
    rng = np.random.default_rng(0)
    right = rng.random((40, 3)) < np.array([0.8, 0.6, 0.7])
    got = boosting_weights(torch.from_numpy(right), 3)
    assert_close(got, torch.tensor(naive_boosting(right.tolist()), dtype=torch.float64))


def test_mose_boosting_fit_on_validation():
    m, inp = build("mose", ensemble="boosting", min_queries=2), inputs()
    valid = np.array([[0, 0, 1], [2, 0, 3], [4, 0, 5], [1, 1, 2], [3, 2, 6]])
    known = KnownAnswers(valid, R2 // 2)
    m.calibrate(valid, known)
    # relation 0 (tail direction) has 3 queries: fitted from its (query, candidate) pairs by hand
    e, a = torch.tensor([0, 2, 4]), torch.tensor([1, 3, 5])
    with torch.no_grad():
        phi = m.members(e, torch.zeros(3, dtype=torch.long))
    mask = known.mask(e, torch.zeros(3, dtype=torch.long), E)
    pairs = [[bool(phi[k, b, c] < phi[k, b, a[b]]) or bool(mask[b, c]) for k in range(len(m.names))]
             for b in range(3) for c in range(E) if c != int(a[b])]
    assert_close(m.boost[0].double(), torch.tensor(naive_boosting(pairs), dtype=torch.float64), atol=1e-6, rtol=1e-6)
    # relations with fewer than min_queries validation queries keep 1/M
    assert_close(m.boost[4], torch.full((3,), 1 / 3))
    with torch.no_grad():                                   # and scoring uses the fitted weights
        s = m.score_t(e, torch.zeros(3, dtype=torch.long))
    assert_close(s, torch.einsum("m,mbe->be", m.boost[0], phi))
    table = m.interpretation(torch.from_numpy(valid))["ensemble_weights"]
    row = table[(table.relation == 0) & (table.direction == "tail")].set_index("modality")["weight"]
    assert_close(torch.tensor(row[m.names].to_numpy(), dtype=torch.float64), m.boost[0].double())


def test_mose_meta_learner_fits_and_changes_only_its_own_weights():
    m = build("mose", ensemble="meta", meta_epochs=30)
    valid = np.array([[0, 0, 1], [2, 0, 3], [4, 1, 5], [1, 1, 2], [3, 2, 6], [5, 2, 0]])
    before = {k: v.clone() for k, v in m.state_dict().items()}
    e, r, a = m._valid_queries(valid, "cpu")

    def ce():
        with torch.no_grad():
            return float(-torch.log_softmax(m.score_t(e, r), 1).gather(1, a[:, None]).mean())
    start = ce()
    m.calibrate(valid, KnownAnswers(valid, R2 // 2), seed=0)
    assert ce() < start
    changed = {k for k, v in m.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith("meta.") for k in changed)
    assert not any(p.requires_grad for p in m.meta.parameters())      # the training optimiser never sees g


# --- shared checks over the five ---------------------------------------------------------------

@pytest.mark.parametrize("name", PART2)
def test_no_features_is_a_clear_error(name):
    cls = MODELS[name]
    with pytest.raises(ValueError, match="feature modalities"):
        cls(cls.Config(**SIZES[name]), ModelInputs(E, R2), torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", PART2)
def test_fill_policy_decides_what_absent_entities_score(name):
    # entity 2 has no image, entity 4 no text: zeros and mean fills score them differently
    h, r = torch.tensor([2, 4, 0]), torch.tensor([0, 1, 2])
    with torch.no_grad():
        zeros, mean = build(name, "zeros").score_t(h, r), build(name, "mean").score_t(h, r)
    assert not torch.allclose(zeros[:2], mean[:2])
    learned = dict(build(name, "learned").named_parameters())
    assert sum(k.endswith(".missing") for k in learned) == 2


def test_the_runner_fits_mose_on_validation_only_and_shares_one_training(tmp_path, monkeypatch):
    # the three ensembles are scoring variants of one training; each is fitted on the validation
    # triples with the validation filter (train + valid), never on test, whatever split is watched
    from baselines.mose import MoSE
    from mmkgbench.datasets import load_dataset
    from mmkgbench.grid import grid_from_dict
    from mmkgbench.runner import run_grid
    seen = []
    original = MoSE.calibrate

    def spy(self, triples, known, **kw):
        seen.append((self.cfg.ensemble, np.array(triples), int(len(known.answers))))
        return original(self, triples, known, **kw)
    monkeypatch.setattr(MoSE, "calibrate", spy)
    grid = grid_from_dict({"models": ["mose", "mose_boosting", "mose_meta"], "datasets": ["synthetic_tiny"],
                           "seeds": [0], "train": {"max_epochs": 2, "eval_every": 1, "batch_size": 64},
                           "overrides": {"mose": {"dim": 4, "meta_epochs": 2}},
                           "variants": {"mose_boosting": {"model": "mose", "ensemble": "boosting"},
                                        "mose_meta": {"model": "mose", "ensemble": "meta"}}})
    out = run_grid(grid, tmp_path, progress=False, log=lambda *a, **k: None)
    assert len(out["done"]) == 3 and not out["failed"] and out["trainings"] == 1
    data = load_dataset("synthetic_tiny")
    want = KnownAnswers(np.concatenate([data.train, data.valid]), data.num_relations)
    assert sorted(s[0] for s in seen) == ["average", "boosting", "meta"]
    for _, triples, n_known in seen:
        assert np.array_equal(triples, data.valid) and n_known == len(want.answers)
