"""Shared fixtures: a seeded tiny synthetic MMKG (no files) and a results folder per test."""
from __future__ import annotations

import pytest

from mmkgbench.synthetic import synthetic_mmkg


def tiny_mmkg(seed: int = 0):
    """12 entities, 3 relations, a few dozen triples, image (d=4) and text (d=3) features."""
    return synthetic_mmkg(num_entities=12, num_relations=3, num_triples=150, latent_dim=4, num_types=2,
                          fanout=4, modalities={"image": 4, "text": 3}, valid_frac=0.15, test_frac=0.15,
                          seed=seed, name="tiny")


@pytest.fixture(scope="session")
def tiny():
    return tiny_mmkg()
