"""The multi-modal knowledge graph every part of the harness passes around.

`MMKG` is a frozen dataclass. Triples are int64 arrays of shape (n, 3) in (h, r, t) order, with
entity ids in [0, E) and relation ids in [0, R) (reciprocal relations are *not* stored here: the
runner adds them, see `mmkgbench.ranking.KnownAnswers`). Each modality m has a float32 feature
matrix `features[m]` of shape (E, d_m) whose row i belongs to entity id i, and a bool mask
`present[m]` of shape (E,) telling which entities really have that modality; rows of absent
entities carry whatever the loader filled in (zeros unless stated) and models must not treat
them as observations.
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field

import numpy as np

SPLITS = ("train", "valid", "test")


class DataError(ValueError):
    """Bad input data. The message names the file, the line (1-based) when there is one, and the problem."""

    def __init__(self, path, problem: str, line: int | None = None):
        self.path, self.line, self.problem = str(path), line, problem
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")


def _freeze(a: np.ndarray) -> np.ndarray:
    """A read-only array that no one else can write to: a copy unless `a` is already frozen."""
    if a.flags.writeable or not a.flags.c_contiguous or a.base is not None and a.base.flags.writeable:
        a = np.array(a, order="C", copy=True)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class MMKG:
    """A multi-modal KG with train/valid/test splits.

    entities: (E,) names; relations: (R,) names; train/valid/test: int64 (n, 3) as (h, r, t);
    features: modality -> float32 (E, d_m); present: modality -> bool (E,).
    `name` identifies the data set in results; `meta` holds provenance (paths, generator knobs).
    Arrays are made read-only so that nothing downstream can change a data set in place:
    scenarios build new ones with `dataclasses.replace`.
    """

    name: str
    entities: tuple[str, ...]
    relations: tuple[str, ...]
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    features: dict[str, np.ndarray] = field(default_factory=dict)
    present: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        E, R = len(self.entities), len(self.relations)
        for split in SPLITS:
            a = np.asarray(getattr(self, split))
            if a.size == 0:
                a = a.reshape(0, 3)
            if a.ndim != 2 or a.shape[1] != 3:
                raise ValueError(f"{self.name}: {split} must have shape (n, 3), got {a.shape}")
            a = a.astype(np.int64, copy=False)
            if len(a) and (a[:, [0, 2]].min() < 0 or a[:, [0, 2]].max() >= E):
                raise ValueError(f"{self.name}: {split} has entity ids outside [0, {E})")
            if len(a) and (a[:, 1].min() < 0 or a[:, 1].max() >= R):
                raise ValueError(f"{self.name}: {split} has relation ids outside [0, {R})")
            object.__setattr__(self, split, _freeze(a))
        if set(self.features) != set(self.present):
            raise ValueError(f"{self.name}: features {sorted(self.features)} and present {sorted(self.present)} "
                             "must name the same modalities")
        feats, pres = {}, {}
        for m, x in self.features.items():
            x = np.asarray(x, dtype=np.float32)
            p = np.asarray(self.present[m], dtype=bool)
            if x.ndim != 2 or x.shape[0] != E:
                raise ValueError(f"{self.name}: features[{m!r}] must have shape ({E}, d), got {x.shape}")
            if p.shape != (E,):
                raise ValueError(f"{self.name}: present[{m!r}] must have shape ({E},), got {p.shape}")
            if not np.isfinite(x).all():
                raise ValueError(f"{self.name}: features[{m!r}] contains NaN or inf")
            feats[m], pres[m] = _freeze(x), _freeze(p)
        object.__setattr__(self, "features", feats)
        object.__setattr__(self, "present", pres)
        object.__setattr__(self, "entities", tuple(self.entities))
        object.__setattr__(self, "relations", tuple(self.relations))

    @property
    def num_entities(self) -> int:
        return len(self.entities)

    @property
    def num_relations(self) -> int:
        return len(self.relations)

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(sorted(self.features))

    def split(self, name: str) -> np.ndarray:
        if name not in SPLITS:
            raise KeyError(f"unknown split {name!r}; choose from {list(SPLITS)}")
        return getattr(self, name)

    def replace(self, **changes) -> "MMKG":
        """A new MMKG with `changes` applied (the input is never modified)."""
        return dataclasses.replace(self, **changes)

    def fingerprint(self) -> str:
        """SHA-256 (hex, first 16 chars) over triples, names and features: changes whenever the data does."""
        h = hashlib.sha256()
        for s in (self.entities, self.relations):
            h.update("\x1f".join(s).encode())
            h.update(b"\x1e")
        for split in SPLITS:
            h.update(split.encode())
            h.update(self.split(split).tobytes())
        for m in self.modalities:
            h.update(m.encode())
            h.update(self.features[m].tobytes())
            h.update(self.present[m].tobytes())
        return h.hexdigest()[:16]

    def summary(self) -> str:
        """A few lines: counts per split, and dimension and coverage per modality."""
        lines = [f"{self.name}: {self.num_entities:,} entities, {self.num_relations:,} relations",
                 "  " + ", ".join(f"{s} {len(self.split(s)):,}" for s in SPLITS)]
        for m in self.modalities:
            p = self.present[m]
            lines.append(f"  {m}: d={self.features[m].shape[1]}, present for {int(p.sum()):,} "
                         f"({p.mean():.1%}) of entities")
        if not self.modalities:
            lines.append("  no modality features (structure only)")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"MMKG({self.name!r}, E={self.num_entities}, R={self.num_relations}, "
                f"train={len(self.train)}, valid={len(self.valid)}, test={len(self.test)}, "
                f"modalities={list(self.modalities)})")
