"""Scenario generators: pure, seeded, versioned functions `(data, rng, level, **options) -> data`.

A scenario never mutates its input (MMKG arrays are read-only anyway) and returns a new MMKG
built with `MMKG.replace`; level 0 is the identity. Its randomness comes from a generator the
runner derives from (seed, scenario name, level) with `scenario_rng`, so the same grid cell always
sees the same perturbation; Python's salted `hash()` is never used. The version is recorded with
every result: bump it whenever a scenario's semantics change.

What a scenario did is returned with the data: `perturbation(out)` gives name -> array (the
entities it noised or removed, the training rows it dropped, the triples it added), and the
runner saves it with each run as `perturbation.npz`, so anyone can check what a model saw.

Levels always mean "fraction perturbed": of the entities that have the modality (noisy,
mismatch, missing), of the training triples (sparse: fraction removed; noisy_triples: added
triples as a fraction of |train|). Definitions follow methods.md §4 and anchors.md §4.2.

Adding a scenario is one function and one line in `SCENARIOS`; tests/test_scenarios.py checks
every registered scenario against the invariants (identity at 0, no mutation, seeded, fraction).
"""
from __future__ import annotations

import inspect
import zlib
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from mmkgbench.data import MMKG
from mmkgbench.registry import lookup

PERTURBATION = "perturbation"          # key of MMKG.meta holding what the last scenarios did


class ScenarioError(ValueError):
    """A scenario that cannot be applied as asked (unknown option, impossible level, ...)."""


@dataclass(frozen=True)
class Scenario:
    """A registered generator. touches: the MMKG fields it may change ("features", "present", "train").
    level_label: what the level is, for axes and tables."""

    fn: Callable[..., MMKG]
    version: int
    touches: tuple[str, ...]
    level_label: str
    doc: str = ""

    @property
    def options(self) -> dict[str, object]:
        """The keyword-only options of the generator with their defaults."""
        return {p.name: p.default for p in inspect.signature(self.fn).parameters.values()
                if p.kind is inspect.Parameter.KEYWORD_ONLY}

    @property
    def feature_only(self) -> bool:
        """Whether it changes only modality data (features, present), never the triples."""
        return "train" not in self.touches


def perturbation(data: MMKG) -> dict[str, np.ndarray]:
    """What the scenarios applied to `data` did: name -> array (empty for unperturbed data)."""
    return dict(data.meta.get(PERTURBATION, {}))


def _with_record(data: MMKG, record: dict[str, np.ndarray], **changes) -> MMKG:
    meta = {**data.meta, PERTURBATION: {**perturbation(data), **record}}
    return data.replace(meta=meta, **changes)


# ---------------------------------------------------------------------------------------- helpers

def _modalities(data: MMKG, modality: str) -> list[str]:
    """The modalities a feature scenario acts on: one by name, or "all" the data has."""
    if modality == "all":
        if not data.modalities:
            raise ScenarioError(f"{data.name} has no modality features to perturb")
        return list(data.modalities)
    if modality not in data.features:
        raise ScenarioError(f"{data.name} has no modality {modality!r}; it has {list(data.modalities) or 'none'}")
    return [modality]


def _child(seed: int, key: str) -> np.random.Generator:
    """A generator for one modality, so "image" alone and "image" within "all" see the same draws."""
    return np.random.default_rng([seed, zlib.crc32(key.encode())])


def _choose(rng: np.random.Generator, candidates: np.ndarray, level: float) -> np.ndarray:
    """round(level * n) of `candidates`, without replacement, sorted (int64)."""
    k = int(round(level * len(candidates)))
    return np.sort(rng.choice(candidates, size=k, replace=False)).astype(np.int64)


def _selection(data: MMKG, rng: np.random.Generator, level: float, modality: str, shared: bool):
    """[(modality, entity ids, its generator)]: a `level` fraction of the entities that have each modality.

    shared=False draws each modality's entities independently; shared=True draws one set from the
    entities that have any of them, so the same entities are hit in every modality.
    """
    ms = _modalities(data, modality)
    seed = int(rng.integers(2**63))
    if shared:
        anyone = np.flatnonzero(np.logical_or.reduce([data.present[m] for m in ms]))
        ids = _choose(_child(seed, "shared"), anyone, level)
        return [(m, ids[data.present[m][ids]], _child(seed, m)) for m in ms]
    out = []
    for m in ms:
        g = _child(seed, m)
        out.append((m, _choose(g, np.flatnonzero(data.present[m]), level), g))
    return out


# -------------------------------------------------------------------------------------- scenarios

def clean(data: MMKG, rng: np.random.Generator, level: float) -> MMKG:
    """The data as given, at every level (the reference point of every robustness curve)."""
    return data


def noisy(data: MMKG, rng: np.random.Generator, level: float, *, modality: str = "all", strength: float = 1.0,
          shared: bool = False) -> MMKG:
    """Gaussian feature noise (SNAG, methods.md §4 type (a)/(b)).

    For a `level` fraction of the entities that have modality m, x <- (1 - strength) x + strength z,
    z ~ N(mu_m, sigma_m) per dimension, mu_m and sigma_m the mean and std of m's present rows.
    strength 1 replaces the feature by noise with the modality's statistics (the default); 0.5 is
    the SNAG-style mix. Touches features only; `present` stays True (the model is not told).
    Record: `<m>.noised` entity ids.
    """
    if not 0.0 <= strength <= 1.0:
        raise ScenarioError(f"noisy: strength must be in [0, 1], got {strength}")
    feats, record = dict(data.features), {}
    for m, ids, g in _selection(data, rng, level, modality, shared):
        x = data.features[m]
        ok = x[data.present[m]]
        mu, sd = ok.mean(0, dtype=np.float64), ok.std(0, dtype=np.float64)
        z = g.normal(mu, sd, size=(len(ids), x.shape[1]))
        new = x.copy()
        new[ids] = ((1.0 - strength) * x[ids] + strength * z).astype(np.float32)
        feats[m], record[f"{m}.noised"] = new, ids
    return _with_record(data, record, features=feats)


def mismatch(data: MMKG, rng: np.random.Generator, level: float, *, modality: str = "all",
             shared: bool = False) -> MMKG:
    """Mismatched features: the wrong image for the entity (methods.md §4 type (c)).

    The features of a `level` fraction of the entities that have m are passed around one random
    cycle among themselves, so every selected entity gets another selected entity's row and the
    modality's overall distribution is unchanged. Touches features only.
    Record: `<m>.entities` ids and `<m>.source` (entity i now holds source i's row).
    """
    feats, record = dict(data.features), {}
    for m, ids, g in _selection(data, rng, level, modality, shared):
        if len(ids) < 2:                  # nothing to swap with
            ids = ids[:0]
        order = g.permutation(ids)
        source = np.roll(order, -1)
        new = data.features[m].copy()
        new[order] = data.features[m][source]
        feats[m], record[f"{m}.entities"], record[f"{m}.source"] = new, order, source
    return _with_record(data, record, features=feats)


def missing(data: MMKG, rng: np.random.Generator, level: float, *, modality: str = "all",
            shared: bool = False) -> MMKG:
    """Missing modality (MACO, methods.md §4): a `level` fraction of the entities that have m lose it.

    `present` becomes False and the row is zeroed; what a model then sees is the run's recorded fill
    policy ([inputs] fill: zeros, mean or learned). The level is the fraction *missing* (MACO's code
    calls the kept fraction `missing_rate`). Touches features and present.
    Record: `<m>.removed` entity ids.
    """
    feats, pres, record = dict(data.features), dict(data.present), {}
    for m, ids, _ in _selection(data, rng, level, modality, shared):
        x, p = data.features[m].copy(), data.present[m].copy()
        x[ids], p[ids] = 0.0, False
        feats[m], pres[m], record[f"{m}.removed"] = x, p, ids
    return _with_record(data, record, features=feats, present=pres)


_PROTECT = ("eval", "all", "none")


def sparse(data: MMKG, rng: np.random.Generator, level: float, *, protect: str = "eval") -> MMKG:
    """A sparser graph: remove a `level` fraction of the training triples, uniformly (PyKEEN-style).

    protect="eval" (default) never orphans an entity or relation that occurs in valid/test: a random
    greedy cover of them (triples joining two uncovered entities first) is kept, and the removed
    triples are drawn from the rest; "all" protects every entity and relation of train; "none"
    samples freely. A level the cover makes impossible is an error naming the largest possible one.
    valid/test are untouched. Record: `train.dropped`, row indices into the input's train.
    """
    if protect not in _PROTECT:
        raise ScenarioError(f"sparse: protect must be one of {list(_PROTECT)}, got {protect!r}")
    train = data.train
    n = len(train)
    perm = rng.permutation(n)
    required = np.zeros(n, bool)
    if protect != "none":
        held = np.concatenate([data.valid, data.test]) if protect == "eval" else train
        required = _cover(train, perm, held, data.num_entities, data.num_relations)
    n_drop = int(round(level * n))
    free = perm[~required[perm]]
    if n_drop > len(free):
        raise ScenarioError(f"sparse: {data.name} keeps {int(required.sum()):,} of {n:,} training triples to cover the "
                            f"entities and relations of {'valid/test' if protect == 'eval' else 'train'}, so at most "
                            f"{len(free) / n:.3f} of them can be removed, not {level:g}; use a "
                            "lower level or protect=\"none\"")
    dropped = np.sort(free[:n_drop]).astype(np.int64)
    keep = np.ones(n, bool)
    keep[dropped] = False
    return _with_record(data, {"train.dropped": dropped}, train=train[keep])


def _cover(train: np.ndarray, perm: np.ndarray, held: np.ndarray, E: int, R: int) -> np.ndarray:
    """(n,) bool: training triples that, kept, leave every entity and relation of `held` in train.

    Greedy: first triples whose head and tail are both still uncovered (an edge cover wants those:
    one triple covers two), then any triple with an uncovered end, then one triple per uncovered
    relation. Triples are visited by the summed training degree of their ends, low first (an entity
    with one triple can only be covered by it, the Karp-Sipser heuristic), ties in the random order
    `perm`. Entities absent from train cannot be covered and are ignored.
    """
    deg = np.bincount(train[:, [0, 2]].ravel(), minlength=E)
    perm = perm[np.argsort(deg[train[perm, 0]] + deg[train[perm, 2]], kind="stable")]
    in_train_e = np.zeros(E, bool)
    in_train_e[train[:, [0, 2]].ravel()] = True
    need_e = np.zeros(E, bool)
    need_e[held[:, [0, 2]].ravel()] = True
    need_e &= in_train_e
    need_r = np.zeros(R, bool)
    need_r[held[:, 1]] = True
    required = np.zeros(len(train), bool)
    h, r, t = train[perm, 0], train[perm, 1], train[perm, 2]
    for both in (True, False):
        for i, a, b in zip(perm.tolist(), h.tolist(), t.tolist()):
            wa, wb = need_e[a], need_e[b]
            if (wa and wb and a != b) if both else (wa or wb):
                required[i] = True
                need_e[a] = need_e[b] = False
    for i, rel in zip(perm.tolist(), r.tolist()):
        if need_r[rel]:
            required[i] = True
            need_r[rel] = False
    return required


_CORRUPT = ("typed", "uniform")


def noisy_triples(data: MMKG, rng: np.random.Generator, level: float, *, corrupt: str = "typed") -> MMKG:
    """False training triples (CKRL's noisy FB15K, anchors.md §4.2): add round(level * |train|) of them.

    Each is a random training triple with its head or its tail (50/50) replaced. corrupt="typed"
    (default, CKRL) draws the new entity from those seen in that slot of that relation in train, so
    the false triple is type-consistent and hard to spot; "uniform" draws from all entities. A
    candidate that is a known true triple (train, valid or test) or repeats another is redrawn.
    valid/test and the filters are untouched. Record: `train.added` (n, 3) triples, appended to
    train in this order, and `train.added_from`, the row each one corrupts.
    """
    if corrupt not in _CORRUPT:
        raise ScenarioError(f"noisy_triples: corrupt must be one of {list(_CORRUPT)}, got {corrupt!r}")
    train, E, R = data.train, data.num_entities, data.num_relations
    n_add = int(round(level * len(train)))
    known = np.unique(_keys(np.concatenate([train, data.valid, data.test]), E, R))
    pools = {side: _slot_pools(train, side, R) for side in (0, 2)} if corrupt == "typed" else None
    added, origin, taken = [], [], np.empty(0, np.int64)
    have = 0
    for _ in range(200):
        if have >= n_add:
            break
        m = 2 * (n_add - have) + 64
        base = rng.integers(len(train), size=m)
        side = np.where(rng.random(m) < 0.5, 0, 2)
        cand = train[base].copy()
        u = rng.random(m)
        if pools is None:
            new = (u * E).astype(np.int64)
        else:
            new = np.empty(m, np.int64)
            for s in (0, 2):
                sel = side == s
                flat, start, size = pools[s]
                rel = cand[sel, 1]
                new[sel] = flat[start[rel] + (u[sel] * size[rel]).astype(np.int64)]
        cand[side == 0, 0] = new[side == 0]
        cand[side == 2, 2] = new[side == 2]
        keys = _keys(cand, E, R)
        ok = ~np.isin(keys, known) & ~np.isin(keys, taken)
        _, first = np.unique(keys, return_index=True)
        once = np.zeros(m, bool)
        once[first] = True
        idx = np.flatnonzero(ok & once)[: n_add - have]
        added.append(cand[idx])
        origin.append(base[idx])
        taken = np.concatenate([taken, keys[idx]])
        have += len(idx)
    if have < n_add:
        raise ScenarioError(f"noisy_triples: found only {have:,} of {n_add:,} corruptions that are not known triples "
                            f"in {data.name} (corrupt={corrupt!r}); use a lower level or corrupt=\"uniform\"")
    added_t = np.concatenate(added) if added else np.empty((0, 3), np.int64)
    origin_t = np.concatenate(origin) if origin else np.empty(0, np.int64)
    return _with_record(data, {"train.added": added_t.astype(np.int64), "train.added_from": origin_t.astype(np.int64)},
                        train=np.concatenate([train, added_t]))


def _keys(t: np.ndarray, E: int, R: int) -> np.ndarray:
    """One int64 per triple (h, r, t): ((h * R) + r) * E + t."""
    return (t[:, 0].astype(np.int64) * R + t[:, 1]) * E + t[:, 2]


def _slot_pools(train: np.ndarray, col: int, R: int):
    """The distinct entities seen in column `col` (0 head, 2 tail) of each relation, flattened:
    (flat ids, start offset per relation, count per relation)."""
    pairs = np.unique(train[:, [1, col]], axis=0)          # sorted by relation, then entity
    size = np.bincount(pairs[:, 0], minlength=R)
    start = np.concatenate([[0], np.cumsum(size)[:-1]])
    return pairs[:, 1], start, size


SCENARIOS: dict[str, Scenario] = {
    "clean": Scenario(clean, 1, (), "level (no effect)", "the unperturbed data"),
    "noisy": Scenario(noisy, 1, ("features",), "fraction of entities with noisy features",
                      "features of a fraction of entities mixed with Gaussian noise of the modality's statistics"),
    "mismatch": Scenario(mismatch, 1, ("features",), "fraction of entities with another entity's features",
                         "features of a fraction of entities swapped among themselves (wrong image)"),
    "missing": Scenario(missing, 1, ("features", "present"), "fraction of entities missing the modality",
                        "a fraction of entities lose the modality (filled by the run's fill policy)"),
    "sparse": Scenario(sparse, 1, ("train",), "fraction of training triples removed",
                       "a fraction of training triples removed, entities/relations of valid/test kept"),
    "noisy_triples": Scenario(noisy_triples, 1, ("train",), "false triples added (fraction of |train|)",
                              "corrupted triples (type-consistent) added to train"),
}


def get_scenario(name: str) -> Scenario:
    return lookup(SCENARIOS, name, "scenario")


def check_options(name: str, options: dict, where: str = "") -> dict:
    """`options` with every default filled in, each checked against its default's type."""
    allowed = get_scenario(name).options
    unknown = set(options) - set(allowed)
    prefix = f"{where}: " if where else ""
    if unknown:
        raise ScenarioError(f"{prefix}unknown option(s) {sorted(unknown)} for scenario {name!r}; valid: "
                            f"{sorted(allowed) or 'none'}")
    out = dict(allowed)
    for key, value in options.items():
        default = allowed[key]
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            value = float(value) if ok else value
        else:
            ok = isinstance(value, type(default))
        if not ok:
            raise ScenarioError(f"{prefix}option {key} = {value!r} of scenario {name!r} should be a "
                                f"{type(default).__name__} (default {default!r})")
        out[key] = value
    return out


def scenario_rng(seed: int, name: str, level: float) -> np.random.Generator:
    """The generator for one (seed, scenario, level) cell: stable across processes and platforms."""
    return np.random.default_rng([int(seed), zlib.crc32(name.encode()), int(round(level * 1_000_000))])


def apply(data: MMKG, name: str, level: float, seed: int, **options) -> MMKG:
    """`data` under scenario `name` at `level` (in [0, 1]) with `options`; level 0 returns `data` itself."""
    if not 0.0 <= level <= 1.0:
        raise ScenarioError(f"scenario level must be in [0, 1], got {level}")
    sc = get_scenario(name)
    options = check_options(name, options)
    if level == 0.0:
        return data
    return sc.fn(data, scenario_rng(seed, name, level), level, **options)


def apply_steps(data: MMKG, steps: Sequence[tuple[str, float, dict]], seed: int) -> MMKG:
    """Compose scenarios: apply (name, level, options) steps in order, each with its own generator.

    The record keeps each step apart as `<i>:<name>/<key>` (the ids of step i refer to the output
    of step i - 1). A step's draws depend only on (seed, name, level), so "sparse 0.4" is the same
    perturbation alone and as the first step of a composition.
    """
    out, record = data, {}
    for i, (name, level, options) in enumerate(steps):
        if PERTURBATION in out.meta:
            out = out.replace(meta={k: v for k, v in out.meta.items() if k != PERTURBATION})
        step = apply(out, name, level, seed, **options)
        record.update({f"{i}:{name}/{k}": v for k, v in perturbation(step).items()})
        out = step
    return out.replace(meta={**out.meta, PERTURBATION: record}) if record else out
