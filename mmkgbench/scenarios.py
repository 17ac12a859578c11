"""Scenario generators: pure, seeded, versioned functions `(data, rng, level) -> data`.

A scenario never mutates its input (MMKG arrays are read-only anyway) and returns a new MMKG
with `dataclasses.replace`; level 0 is the identity. Its randomness comes from a generator the
runner derives from (seed, scenario name, level) with `scenario_rng`, so the same grid cell always
sees the same perturbation; Python's salted `hash()` is never used. The version is recorded with
every result: bump it whenever a scenario's semantics change.

Adding a scenario is one function and one line in `SCENARIOS`.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from mmkgbench.data import MMKG
from mmkgbench.registry import lookup


@dataclass(frozen=True)
class Scenario:
    fn: Callable[..., MMKG]
    version: int
    doc: str = ""


def clean(data: MMKG, rng: np.random.Generator, level: float) -> MMKG:
    """The data as given, at every level (the reference point of every robustness curve)."""
    return data


SCENARIOS: dict[str, Scenario] = {
    "clean": Scenario(clean, version=1, doc="the unperturbed data"),
}


def get_scenario(name: str) -> Scenario:
    return lookup(SCENARIOS, name, "scenario")


def scenario_rng(seed: int, name: str, level: float) -> np.random.Generator:
    """The generator for one (seed, scenario, level) cell: stable across processes and platforms."""
    return np.random.default_rng([int(seed), zlib.crc32(name.encode()), int(round(level * 1_000_000))])


def apply(data: MMKG, name: str, level: float, seed: int) -> MMKG:
    """`data` under scenario `name` at `level` (in [0, 1]); level 0 returns `data` itself."""
    if not 0.0 <= level <= 1.0:
        raise ValueError(f"scenario level must be in [0, 1], got {level}")
    sc = get_scenario(name)
    if level == 0.0:
        return data
    return sc.fn(data, scenario_rng(seed, name, level), level)
