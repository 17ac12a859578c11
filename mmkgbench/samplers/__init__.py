"""The negative-sampler registry: a literal dict from registry key to sampler class.

A run picks its sampler with `sampler = "<key>"` in [train] (or a model's overrides), and its
settings with `sampler_options = { ... }` (fields of the sampler's Config); both are part of the run
id. Adding a sampler is one file (a frozen Config dataclass and a `NegativeSampler` subclass, see
mmkgbench/samplers/base.py) and one line here; `get_sampler` lists the valid keys for an unknown name.
"""
from __future__ import annotations

from dataclasses import fields

from mmkgbench.registry import lookup
from mmkgbench.samplers.base import NegativeSampler
from mmkgbench.samplers.basic import Bernoulli, SelfAdversarial, Uniform
from mmkgbench.samplers.egns import EGNS
from mmkgbench.samplers.mans import MANS
from mmkgbench.samplers.mmrns import MMRNS

SAMPLERS: dict[str, type[NegativeSampler]] = {
    "uniform": Uniform,
    "bernoulli": Bernoulli,
    "self_adversarial": SelfAdversarial,
    "egns": EGNS,
    "mans": MANS,
    "mmrns": MMRNS,
}


def get_sampler(name: str) -> type[NegativeSampler]:
    """The sampler class registered as `name` (case and '-' insensitive)."""
    return lookup(SAMPLERS, name, "sampler")


def sampler_config(name: str, options) -> object:
    """The sampler's Config from `options` (a dict or (key, value) pairs); a ValueError names an
    unknown sampler, an unknown option (listing the valid ones) or a value out of range."""
    cls = get_sampler(name)
    options = dict(options)
    valid = {f.name for f in fields(cls.Config)}
    unknown = sorted(set(options) - valid)
    if unknown:
        raise ValueError(f"sampler {name!r} has no option(s) {unknown}; valid: {sorted(valid)}")
    return cls.Config(**options)


def build_sampler(name: str, options, train_triples, num_relations: int, num_entities: int,
                  num_negatives: int) -> NegativeSampler:
    """A ready sampler for one run (train triples (n, 3) as (h, r, t))."""
    cls = get_sampler(name)
    return cls(sampler_config(name, options), train_triples, num_relations, num_entities, num_negatives)


def sampler_modalities(name: str, data) -> tuple[str, ...]:
    """The modalities of `data` (an MMKG) the sampler reads; an error names those the data lacks."""
    wanted = get_sampler(name).modalities
    if wanted == ("*",):
        return tuple(data.modalities)
    missing = [m for m in wanted if m not in data.features]
    if missing:
        raise ValueError(f"sampler {name!r} reads modalities {missing}, which {data.name} does not have "
                         f"(it has {list(data.modalities) or 'none'})")
    return tuple(wanted)


__all__ = ["SAMPLERS", "NegativeSampler", "build_sampler", "get_sampler", "sampler_config", "sampler_modalities"]
