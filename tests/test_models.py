"""Conformance of every registered model: a new registry entry is tested without writing a test."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from mmkgbench.model import KGEModel, ModelInputs
from mmkgbench.modelinfo import MODEL_INFO
from mmkgbench.models import MODELS, get_model
from mmkgbench.train import TrainConfig, train

SMALL = {"dim": 8, "entity_dim": 8, "relation_dim": 4}   # shrink whatever size fields a config has


def small_config(cls):
    names = {f.name for f in dataclasses.fields(cls.Config)}
    return cls.Config(**{k: v for k, v in SMALL.items() if k in names})


def build(name, data, seed=0):
    cls = MODELS[name]
    mods = data.modalities if cls.modalities == ("*",) else cls.modalities
    inputs = ModelInputs(data.num_entities, 2 * data.num_relations,
                         {m: torch.tensor(np.array(data.features[m])) for m in mods},
                         {m: torch.tensor(np.array(data.present[m])) for m in mods})
    return cls(small_config(cls), inputs, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", [n for n, c in MODELS.items()
                                  if c.modalities == ("*",) and c.__module__.startswith("baselines.")])
def test_a_multimodal_baseline_refuses_data_without_features(name):
    # one message for all of them (mmkgbench.multimodal.require_features), naming the model; MoMoK and
    # MoCME instead run on structure alone (their structure-only ablations)
    cls = MODELS[name]
    with pytest.raises(ValueError, match=r"reads feature modalities .* but the data has none"):
        cls(small_config(cls), ModelInputs(12, 6), torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", list(MODELS))
def test_registry_entry_is_well_formed(name):
    cls = MODELS[name]
    assert issubclass(cls, KGEModel)
    assert dataclasses.is_dataclass(cls.Config) and cls.Config.__dataclass_params__.frozen
    assert cls.__doc__ and "(B, E)" in (cls.score_t.__doc__ or cls.__doc__)
    # its own version (part of the run id), a positive int; scoring fields are fields of its config
    assert isinstance(cls.__dict__.get("version"), int) and cls.version >= 1
    assert set(cls.scoring_fields) <= {f.name for f in dataclasses.fields(cls.Config)}
    TrainConfig(**cls.train_defaults)          # defaults are valid training settings
    assert get_model(name.upper()) is cls


def test_unknown_model_lists_valid_names():
    with pytest.raises(KeyError, match="choose from"):
        get_model("transx")


@pytest.mark.parametrize("name", list(MODELS))
def test_scores_shape_finite_and_consistent(name, tiny):
    model = build(name, tiny).eval()
    h = torch.tensor([0, 3, 5, 11])
    r = torch.tensor([0, 2, 4, 5])                # includes reciprocal relations (>= R)
    with torch.no_grad():
        s = model.score_t(h, r)
        assert s.shape == (4, tiny.num_entities) and s.dtype == torch.float32
        assert torch.isfinite(s).all()
        t1 = torch.tensor([1, 2, 3, 4])
        torch.testing.assert_close(model.score_hrt(h, r, t1), s.gather(1, t1[:, None])[:, 0], atol=1e-5, rtol=1e-5)
        tn = torch.randint(tiny.num_entities, (4, 6), generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(model.score_hrt(h, r, tn), s.gather(1, tn), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", list(MODELS))
def test_same_seed_same_model_and_no_global_rng(name, tiny):
    state = torch.random.get_rng_state()
    a, b, c = build(name, tiny, 0), build(name, tiny, 0), build(name, tiny, 1)
    assert torch.equal(torch.random.get_rng_state(), state), "model init touched the global RNG"
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    assert any(not torch.equal(va, vc) for va, vc in zip(a.state_dict().values(), c.state_dict().values())
               if va.is_floating_point() and va.numel() > 1)


@pytest.mark.parametrize("regime", ["kvsall", "negative"])
@pytest.mark.parametrize("name", list(MODELS))
def test_training_lowers_the_loss(name, regime, tiny):
    torch.manual_seed(0)
    model = build(name, tiny)
    defaults = dict(MODELS[name].train_defaults)
    if regime == "negative" and defaults.get("loss") == "ce":     # softmax over all entities: KvsAll only
        defaults["loss"] = "softplus"
    if regime == "kvsall":                                          # samplers draw negatives: none under KvsAll
        defaults.pop("sampler", None)
        defaults.pop("sampler_options", None)
    cfg = TrainConfig(**{**defaults, "regime": regime, "lr": 0.02, "batch_size": 16,
                         "num_negatives": 4, "max_epochs": 8, "eval_every": 0})
    res = train(model, tiny.train, tiny.num_relations, tiny.num_entities, cfg, seed=0)
    losses = [row["loss"] for row in res.history]
    assert np.isfinite(losses).all()
    assert min(losses[-3:]) < losses[0], losses


def test_light_registry_lists_every_model_in_registry_order():
    # the report's display order and citations (no torch) and the classes must never drift apart
    assert list(MODEL_INFO) == list(MODELS)
    assert all(info.name and info.citation for info in MODEL_INFO.values())
