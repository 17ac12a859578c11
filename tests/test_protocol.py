"""The Protocol object: what each protocol does to the settings, which filters rank each split, and
how stored protocol versions map back to protocols."""
from __future__ import annotations

import pytest

from mmkgbench.evaluate import EvalConfig
from mmkgbench.protocol import HARNESS, PROTOCOL, PROTOCOLS, REFERENCE, family, get_protocol, is_tested
from mmkgbench.train import TrainConfig


def test_harness_keeps_the_grid_settings_and_filters_valid_without_test():
    t, e = TrainConfig(max_epochs=50, patience=3), EvalConfig(tie="expected")
    assert HARNESS.configure(t, e) == (t, e)
    assert HARNESS.filters(e) == {"valid": "train+valid", "test": "train+valid+test"}
    assert HARNESS.filters(EvalConfig(filter_valid_with_test=True))["valid"] == "train+valid+test"
    assert HARNESS.filter_splits("valid", e) == ("train", "valid")
    assert HARNESS.version == PROTOCOL and HARNESS.tested and HARNESS.watched == "valid"


def test_reference_never_stops_early_breaks_ties_at_random_and_stores_test_only():
    t, e = REFERENCE.configure(TrainConfig(max_epochs=50, patience=3), EvalConfig())
    assert t.patience == 50 and e.tie == "random"
    assert REFERENCE.filters(e) == {"test": "train+valid+test"} and REFERENCE.watched == "test"
    assert REFERENCE.best_per_metric and not REFERENCE.tested
    with pytest.raises(ValueError, match="eval_every must be > 0"):
        REFERENCE.configure(TrainConfig(eval_every=0), EvalConfig())


def test_versions_map_back_to_protocols_also_for_older_versions():
    assert family("harness-v2") == "harness" and family("harness-v1") == "harness" and family("reference-v1") == "reference"
    assert is_tested("harness-v1") and not is_tested("reference-v1")
    with pytest.raises(ValueError, match=r"protocol must be one of \['audit', 'harness', 'openke', 'reference'\]"):
        get_protocol("best-of-test")
    assert set(PROTOCOLS) == {"harness", "reference", "openke", "audit"}
