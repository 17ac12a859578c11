"""VISTA (baselines/vista.py): shapes, score_t against a written-out reference of the whole model (entity
encoder CLS outputs, the decoder's mask slot, the dot product), per-entity locality, absent modalities,
config checks, determinism, dropout, and the eval-mode cache."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from mmkgbench.model import ModelInputs
from mmkgbench.models import MODELS
from mmkgbench.scenarios import SCENARIOS
from mmkgbench.train import TrainConfig

VISTA = MODELS["vista"]
TINY = dict(dim=8, entity_layers=1, relation_layers=1, decoder_layers=1, heads=2, ffn_dim=16)


def tiny_inputs(data, fill="zeros"):
    return ModelInputs(data.num_entities, 2 * data.num_relations,
                       {m: torch.tensor(np.array(data.features[m])) for m in data.modalities},
                       {m: torch.tensor(np.array(data.present[m])) for m in data.modalities}, fill)


def absent_inputs(fill="zeros", seed=0):
    """7 entities, 6 (= 2R) relations, image (4) and text (3) features; entity 2 lacks an image, 4 a text."""
    g = torch.Generator().manual_seed(seed)
    feats = {"image": torch.randn(7, 4, generator=g), "text": torch.randn(7, 3, generator=g)}
    present = {"image": torch.tensor([1, 1, 0, 1, 1, 1, 1], dtype=torch.bool),
               "text": torch.tensor([1, 1, 1, 1, 0, 1, 1], dtype=torch.bool)}
    for m in feats:
        feats[m][~present[m]] = 0.0
    return ModelInputs(7, 6, feats, present, fill)


def build(inputs, seed=0, **cfg):
    return VISTA(VISTA.Config(**{**TINY, **cfg}), inputs, torch.Generator().manual_seed(seed))


# --- a written-out reference, one sequence at a time, in float64 -------------------------------------

def D(x):
    return x.detach().double()


def layer_norm(x, norm):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + norm.eps) * D(norm.weight) + D(norm.bias)


def encoder_layer(layer, x, ignored=()):
    """PyTorch's post-LN encoder layer (ReLU) on one sequence x (S, d), keys in `ignored` masked."""
    S, d = x.shape
    heads = layer.self_attn.num_heads
    dh = d // heads
    w, b = D(layer.self_attn.in_proj_weight), D(layer.self_attn.in_proj_bias)
    q, k, v = (x @ w[i * d:(i + 1) * d].T + b[i * d:(i + 1) * d] for i in range(3))
    out = torch.zeros(S, d, dtype=torch.float64)
    for hd in range(heads):
        sl = slice(hd * dh, (hd + 1) * dh)
        att = torch.zeros(S, S, dtype=torch.float64)
        for i in range(S):
            logits = [float(q[i, sl] @ k[j, sl]) / math.sqrt(dh) if j not in ignored else -math.inf for j in range(S)]
            top = max(logits)
            ex = [math.exp(z - top) for z in logits]
            att[i] = torch.tensor([e / sum(ex) for e in ex], dtype=torch.float64)
        out[:, sl] = att @ v[:, sl]
    attn = out @ D(layer.self_attn.out_proj.weight).T + D(layer.self_attn.out_proj.bias)
    x = layer_norm(x + attn, layer.norm1)
    ff = torch.relu(x @ D(layer.linear1.weight).T + D(layer.linear1.bias)) @ D(layer.linear2.weight).T \
        + D(layer.linear2.bias)
    return layer_norm(x + ff, layer.norm2)


def run(layers, x, ignored=()):
    for layer in layers:
        x = encoder_layer(layer, x, ignored)
    return x


def ref_entity(m, inp, e):
    """ẽ_e: [c_ent, LN_s(E_e) + p_s, LN_m(W_m x_em + b_m) + p_m ...] through the entity encoder, output 0."""
    tokens = [D(m.entity_token), layer_norm(D(m.entity[e]), m.norm["structure"]) + D(m.token_type["structure"])]
    ignored = []
    for i, mod in enumerate(sorted(inp.features)):
        x = inp.features[mod][e].double() @ D(m.project[mod].weight).T + D(m.project[mod].bias)
        tokens.append(layer_norm(x, m.norm[mod]) + D(m.token_type[mod]))
        if m.cfg.mask_absent and not bool(inp.present[mod][e]):
            ignored.append(2 + i)
    return run(m.entity_encoder, torch.stack(tokens), ignored)[0]


def ref_relation(m, r):
    s = layer_norm(D(m.relation[r]), m.relation_norm) + D(m.relation_type)
    return run(m.relation_encoder, torch.stack([D(m.relation_token), s]))[0]


def ref_score(m, inp, h, r, t):
    pos = D(m.position)
    seq = torch.stack([ref_entity(m, inp, h) + pos[0], ref_relation(m, r) + pos[1], D(m.mask_token) + pos[2]])
    o = run(m.decoder, seq)[2]
    return float(o @ ref_entity(m, inp, t))


# --- tests ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mask_absent", [False, True])
def test_score_t_is_the_written_out_model(mask_absent):
    inp = absent_inputs()
    m = build(inp, entity_layers=2, decoder_layers=2, mask_absent=mask_absent).eval()
    h, r = torch.tensor([0, 2, 4, 6]), torch.tensor([0, 5, 1, 3])        # r >= 3: reciprocal relations
    with torch.no_grad():
        s = m.score_t(h, r)
    assert s.shape == (4, 7) and s.dtype == torch.float32
    ref = torch.tensor([[ref_score(m, inp, int(h[b]), int(r[b]), t) for t in range(7)] for b in range(4)],
                       dtype=torch.float64)
    assert_close(s.double(), ref, atol=1e-5, rtol=1e-5)


def test_shapes_and_score_hrt_and_negative_scores_agree_with_score_t(tiny):
    m = build(tiny_inputs(tiny)).eval()
    E = tiny.num_entities
    h, r = torch.tensor([0, 3, 5, 11, 3]), torch.tensor([0, 2, 4, 5, 2])
    t1 = torch.tensor([1, 2, 3, 4, 3])
    tn = torch.randint(E, (5, 6), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        s = m.score_t(h, r)
        assert s.shape == (5, E) and torch.isfinite(s).all()
        assert_close(m.score_hrt(h, r, t1), s.gather(1, t1[:, None])[:, 0], atol=1e-5, rtol=1e-5)
        assert_close(m.score_hrt(h, r, tn), s.gather(1, tn), atol=1e-5, rtol=1e-5)
        pos, neg = m.negative_scores(h, r, t1, tn)
    assert_close(pos, s.gather(1, t1[:, None])[:, 0], atol=1e-5, rtol=1e-5)
    assert_close(neg, s.gather(1, tn), atol=1e-5, rtol=1e-5)
    assert m.entities(torch.tensor([[1, 2], [2, 1]])).shape == (2, 2, 8)


def test_without_dropout_training_mode_scores_as_eval_mode_with_gradients(tiny):
    m = build(tiny_inputs(tiny), dropout=0.0, embedding_dropout=0.0, image_dropout=0.0, text_dropout=0.0)
    h, r = torch.tensor([1, 7]), torch.tensor([3, 0])
    s_train = m.train().score_t(h, r)
    s_train.sum().backward()
    assert m.entity.grad is not None and m.project["image"].weight.grad.abs().sum() > 0
    assert m.decoder[0].linear1.weight.grad.abs().sum() > 0 and m.relation.grad[3].abs().sum() > 0
    with torch.no_grad():
        assert_close(s_train.detach(), m.eval().score_t(h, r), atol=1e-5, rtol=1e-5)


def test_changing_one_entitys_image_changes_only_its_column(tiny):
    """The entity encoder reads one entity at a time: new image features of entity j change column j of
    every query's scores, and whole rows only of queries whose head is j."""
    j = 4
    inp = tiny_inputs(tiny)
    feats = {**inp.features, "image": inp.features["image"].clone()}
    feats["image"][j] = torch.randn(feats["image"].shape[1], generator=torch.Generator().manual_seed(3)) * 3
    changed = ModelInputs(inp.num_entities, inp.num_relations, feats, inp.present, inp.fill)
    h, r = torch.tensor([0, 1, j, 7, 9]), torch.tensor([0, 4, 1, 2, 5])
    with torch.no_grad():
        a, b = build(inp).eval().score_t(h, r), build(changed).eval().score_t(h, r)
    others = h != j
    cols = torch.arange(tiny.num_entities) != j
    assert_close(a[others][:, cols], b[others][:, cols], atol=1e-6, rtol=1e-6)
    assert ((a[others][:, j] - b[others][:, j]).abs() > 1e-4).all()
    assert ((a[~others] - b[~others]).abs() > 1e-5).all()


def test_each_relation_has_its_own_encoding_and_reciprocals_are_separate(tiny):
    m = build(tiny_inputs(tiny)).eval()
    R = tiny.num_relations
    h, r = torch.tensor([2, 2, 2]), torch.tensor([1, 1 + R, 0])
    with torch.no_grad():
        before = m.score_t(h, r)
        # only the reciprocal of relation 1 (not a constant shift, which LN_r removes)
        m.relation[1 + R] += torch.randn(8, generator=torch.Generator().manual_seed(2))
        after = m.score_t(h, r)
    assert_close(before[[0, 2]], after[[0, 2]])
    assert not torch.allclose(before[1], after[1])
    assert not torch.allclose(before[0], before[1])


def test_a_feature_scenario_changes_the_scores(tiny):
    noisy = SCENARIOS["noisy"].fn(tiny, np.random.default_rng(0), 0.5)
    h, r = torch.arange(6), torch.arange(6)
    with torch.no_grad():
        a, b = build(tiny_inputs(tiny)).eval().score_t(h, r), build(tiny_inputs(noisy)).eval().score_t(h, r)
    assert torch.isfinite(b).all() and not torch.allclose(a, b)


def test_absent_modalities_follow_the_fill_policy_or_are_masked():
    h, r = torch.tensor([0, 2, 4]), torch.tensor([1, 0, 5])
    with torch.no_grad():
        zeros = build(absent_inputs("zeros")).eval().score_t(h, r)
        mean = build(absent_inputs("mean")).eval().score_t(h, r)
        # fill decides what absent entities (2: image, 4: text) look like; the others' vectors stay
        assert not torch.allclose(zeros[:, [2, 4]], mean[:, [2, 4]])
        assert_close(zeros[0, [0, 1, 3, 5, 6]], mean[0, [0, 1, 3, 5, 6]])
        # masked: the fill and whatever the absent rows hold are never read
        masked = [build(absent_inputs(fill), mask_absent=True).eval().score_t(h, r) for fill in ("zeros", "mean")]
        assert_close(masked[0], masked[1])
        inp = absent_inputs()
        inp.features["image"][2] = 5.0
        assert_close(build(inp, mask_absent=True).eval().score_t(h, r), masked[0])
    learned = build(absent_inputs("learned"))
    assert sum(k.endswith(".missing") for k, _ in learned.named_parameters()) == 2


def test_config_is_checked():
    for bad in (dict(dim=10, heads=4), dict(dropout=1.0), dict(embedding_dropout=-0.1), dict(entity_layers=0),
                dict(decoder_layers=0), dict(ffn_dim=0), dict(heads=0)):
        with pytest.raises(ValueError):
            VISTA.Config(**bad)
    with pytest.raises(ValueError, match="multiple of heads"):
        VISTA.Config(dim=10, heads=4)
    cfg = VISTA.Config()
    assert (cfg.dim, cfg.entity_layers, cfg.relation_layers, cfg.decoder_layers, cfg.heads, cfg.ffn_dim) == \
        (256, 2, 1, 2, 4, 2048)
    assert (cfg.dropout, cfg.embedding_dropout, cfg.image_dropout, cfg.text_dropout) == (0.01, 0.9, 0.4, 0.1)
    assert (cfg.input_dropout("image"), cfg.input_dropout("text"), cfg.input_dropout("numeric")) == (0.4, 0.1, 0.1)
    train = TrainConfig(**VISTA.train_defaults)
    assert (train.regime, train.loss, train.label_smoothing, train.lr, train.batch_size, train.max_epochs) == \
        ("kvsall", "ce", 0.0, 1e-4, 512, 150)
    empty = ModelInputs(5, 4)
    with pytest.raises(ValueError, match="feature modalities"):
        build(empty)


def test_same_seed_same_model_and_parameters_from_the_generator(tiny):
    state = torch.random.get_rng_state()
    a, b, c = (build(tiny_inputs(tiny), seed=s, entity_layers=2) for s in (0, 0, 1))
    assert torch.equal(torch.random.get_rng_state(), state)
    for (k, va), vb, vc in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values()):
        assert torch.equal(va, vb), k
        assert torch.isfinite(va).all(), k
    assert not torch.equal(a.entity, c.entity)
    assert not torch.equal(a.decoder[0].linear1.weight, c.decoder[0].linear1.weight)
    # the layers are drawn one by one (the code's deep copies start identical)
    assert not torch.equal(a.entity_encoder[0].self_attn.in_proj_weight, a.entity_encoder[1].self_attn.in_proj_weight)
    # scales: the code's fans for (E, 1, d) tables; PyTorch's defaults in the layers
    E, d = tiny.num_entities, 8
    assert a.entity.abs().max() <= math.sqrt(6 / (d * (1 + E)))
    assert a.entity_encoder[0].linear2.weight.abs().max() <= 1 / math.sqrt(16)
    assert a.entity_encoder[0].self_attn.out_proj.bias.abs().max() == 0 and a.project["text"].bias.abs().max() == 0
    with torch.no_grad():
        h, r = torch.tensor([0, 5]), torch.tensor([1, 4])
        assert torch.equal(a.eval().score_t(h, r), b.eval().score_t(h, r))
        torch.manual_seed(7)
        x = a.train().score_t(h, r)
        torch.manual_seed(7)
        assert torch.equal(x, b.train().score_t(h, r))         # dropout draws from the seeded global RNG


def test_training_mode_draws_dropout_and_eval_mode_does_not(tiny):
    m = build(tiny_inputs(tiny))
    h, r = torch.tensor([0, 5, 8]), torch.tensor([1, 4, 2])
    with torch.no_grad():
        e1, e2 = m.eval().score_t(h, r), m.score_t(h, r)
        t1, t2 = m.train().score_t(h, r), m.score_t(h, r)
    assert torch.equal(e1, e2)
    assert not torch.allclose(t1, t2) and not torch.allclose(t1, e1)


def test_eval_cache_follows_the_parameters_and_is_never_used_with_autograd(tiny):
    m = build(tiny_inputs(tiny)).eval()
    h, r = torch.tensor([0, 5]), torch.tensor([1, 4])
    with torch.no_grad():
        s0 = m.score_t(h, r)
        assert m._cache is not None
        m.entity_encoder[0].linear1.weight.mul_(1.5)              # an optimiser step is an in-place update
        s1 = m.score_t(h, r)
    fresh = build(tiny_inputs(tiny)).eval()
    fresh.load_state_dict(m.state_dict())
    with torch.no_grad():
        assert not torch.allclose(s0, s1) and torch.equal(fresh.score_t(h, r), s1)
        m.load_state_dict(build(tiny_inputs(tiny)).state_dict())   # back to the first weights
        assert_close(m.score_t(h, r), s0)
        with torch.autocast("cpu", dtype=torch.bfloat16):            # other numbers: neither read nor kept
            m.score_t(h, r)
        assert m._cache is None
    s = m.score_t(h, r)                                            # eval mode with autograd: no cache
    assert s.requires_grad
    s.sum().backward()
    assert m.entity.grad is not None
    m.train()
    with torch.no_grad():
        m.score_t(h, r)
    assert m._cache is None
