"""Numeric literals as a modality: one normalised value per (entity, attribute), as in LiteralE.

The DB15K literals file (`literals/DB15k_Numeric_triples_processed.txt`, from
sapkotaruz11/Literal_KGs, fetched with the benchmark) holds `entity<TAB>attribute<TAB>value`
lines. Entity names are DBpedia resource names without the prefix, CSV-quoted when they contain a
double quote (`"Chadwick_Gaylord_""Chad""_Smith"`); values are numbers or dates (`1946-03-12`,
`-500-1-1` for 500 BC).

Following literal-aware KGE (Kristiadi et al. 2019, LiteralE), the numeric modality of an entity is
a vector over all attributes: each attribute min-max normalised to [0, 1] over the entities that
have it, 0 where the entity lacks it. An entity with no literal at all is absent (`present` False).
The per-(entity, attribute) mask is returned by `read_numeric_literals`, and
`numeric_features(indicators=True)` appends it as extra columns for models that want to tell a 0
from a missing value.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmkgbench.data import MMKG, DataError

DBPEDIA_PREFIX = "<http://dbpedia.org/resource/"
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
_DATE = re.compile(r"(-?\d{1,4})-(\d{1,2})-(\d{1,2})")


@dataclass(frozen=True)
class NumericLiterals:
    """values (E, A) float64 raw (dates as decimal years), mask (E, A) bool, attributes (A,) names.

    `conflicts`: (entity, attribute) pairs with several different values in the file (DBpedia
    name collisions, e.g. two people called Adam Goldberg); their values are averaged.
    `unmatched`: lines whose entity is not in the data set.
    """

    values: np.ndarray
    mask: np.ndarray
    attributes: tuple[str, ...]
    conflicts: int
    unmatched: int


def parse_value(text: str, path, line: int) -> float:
    """A number, or a date `Y-M-D` as the decimal year Y + ((M-1)·31 + D-1)/372 (monotone in the date).

    DBpedia writes an unknown month or day as 0; it counts as 1.
    """
    text = text.strip()
    if _NUMBER.fullmatch(text):
        return float(text)
    m = _DATE.fullmatch(text)
    if m:
        y, mo, d = (int(g) for g in m.groups())
        if 0 <= mo <= 12 and 0 <= d <= 31:      # 0 = unknown month or day (`-63-0-0`): read as the first
            return y + ((max(mo, 1) - 1) * 31 + (max(d, 1) - 1)) / 372.0
    raise DataError(path, f"value {text[:40]!r} is neither a number nor a date Y-M-D", line)


def _unquote(name: str) -> str:
    if len(name) >= 2 and name[0] == name[-1] == '"':
        return name[1:-1].replace('""', '"')
    return name


def read_numeric_literals(path, data: MMKG, prefix: str = DBPEDIA_PREFIX, suffix: str = ">") -> NumericLiterals:
    """Parse a literal file against `data`'s entities (name = prefix + literal-file name + suffix)."""
    from mmkgbench.loaders import numbered_lines
    path = Path(path)
    ids = {n: i for i, n in enumerate(data.entities)}
    sums: dict[tuple[int, str], list[float]] = {}
    unmatched = 0
    for i, line in numbered_lines(path):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 3:
            raise DataError(path, f"expected 'entity<TAB>attribute<TAB>value', got {len(parts)} fields: "
                                  f"{line[:80]!r}", i)
        name, attr, raw = _unquote(parts[0].strip()), parts[1].strip(), parts[2]
        if not name or not attr:
            raise DataError(path, "empty entity or attribute name", i)
        value = parse_value(raw, path, i)
        e = ids.get(f"{prefix}{name}{suffix}")
        if e is None:
            unmatched += 1
            continue
        sums.setdefault((e, attr), []).append(value)
    if not sums:
        raise DataError(path, f"no line names an entity of {data.name} (entity names are "
                              f"{prefix!r} + name + {suffix!r})")
    attributes = tuple(sorted({a for _, a in sums}))
    col = {a: j for j, a in enumerate(attributes)}
    values = np.zeros((data.num_entities, len(attributes)))
    mask = np.zeros(values.shape, bool)
    conflicts = 0
    for (e, a), vs in sums.items():
        conflicts += len(set(vs)) > 1
        values[e, col[a]] = float(np.mean(vs))
        mask[e, col[a]] = True
    return NumericLiterals(values, mask, attributes, conflicts, unmatched)


def minmax_columns(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Each column min-max scaled to [0, 1] over its masked entries; 0 elsewhere and for constant columns."""
    v = np.where(mask, values, np.nan)
    with warnings.catch_warnings():            # a column nobody has is all-NaN: its scale is irrelevant
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanmin(v, axis=0), np.nanmax(v, axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    out = np.where(mask, (values - np.nan_to_num(lo)) / span, 0.0)
    return out.astype(np.float32)


def numeric_features(data: MMKG, path, *, indicators: bool = False, prefix: str = DBPEDIA_PREFIX,
                     suffix: str = ">") -> MMKG:
    """`data` with a `numeric` modality (E, A) [or (E, 2A) with the mask as indicator columns]."""
    lit = read_numeric_literals(path, data, prefix, suffix)
    x = minmax_columns(lit.values, lit.mask)
    if indicators:
        x = np.concatenate([x, lit.mask.astype(np.float32)], axis=1)
    present = lit.mask.any(1)
    meta = {**data.meta, "features": {**data.meta.get("features", {}), "numeric": str(path)},
            "numeric": {"attributes": len(lit.attributes), "normalisation": "min-max per attribute",
                        "indicators": indicators, "conflicts_averaged": lit.conflicts,
                        "unmatched_lines": lit.unmatched}}
    return data.replace(features={**data.features, "numeric": x}, present={**data.present, "numeric": present},
                        meta=meta)
