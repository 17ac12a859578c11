"""A seeded synthetic multi-modal KG that needs no files: the embedded default test bed.

Generative story (all from one `numpy.random.Generator`, so a seed fixes everything):

1. Entities. Each entity e has a latent vector z_e in R^k drawn around one of `num_types`
   cluster centres (entity types), and a popularity drawn from a Zipf-like law, so degrees are
   skewed as in real KGs: a few hubs, many rare entities.
2. Relations. Relation r has a domain and a range type (as real KG relations do) and a rule: a
   random rotation A_r (k x k). For a head h of the domain type (drawn by popularity), the tail
   is an entity of the range type sampled as t = argmax_e (beta <A_r z_h, z_e> + Gumbel noise), i.e.
   from softmax(beta <A_r z_h, z_e>) restricted to the `fanout` entities with the highest affinity.
   `fanout` bounds how many answers a query can have and `sharpness` (beta) how unevenly they are
   drawn; together they give 1-to-N relations whose answers are predictable from the latent factors.
   Duplicates are dropped.
   Which entities compete for those `fanout` places is the `tails` knob:
   * "exact" (default): every entity of the range type. Cost O(triples x entities): right for the
     registered small graphs, whose triples are pinned by tests, and hours at 10^5 entities.
   * "window": the `window` entities of the range type nearest to u = A_r z_h in a locality-
     sensitive order (entities sorted by the signs of `LSH_BITS` random projections of z, most
     significant first, so neighbours in the order share long sign prefixes and lie close in latent
     space; Charikar 2002). Cost O(triples x window + entities x LSH_BITS): a million entities in
     seconds (`synthetic_large`, benchmarks/bench_synthetic.py). The answers are still a function
     of (z_h, A_r, z of the range type): only the candidate pool is local instead of global.
3. Modalities. For modality m, features are a noisy random projection of the latent factors:
   x_e = sqrt(s_m) * standardise(z_e P_m) + sqrt(1 - s_m) * noise, with P_m in R^(k x d_m).
   **`signal[m]` = s_m in [0, 1] is the knob**: the fraction of each feature's variance that comes
   from the latent factors (1 = noiseless projection, 0 = pure noise). `coverage[m]` is the
   fraction of entities that have the modality; the rest get zero rows and present = False.
4. Splits. Triples are shuffled into train/valid/test; a valid/test triple whose entity or
   relation would be unseen in train is moved to train, so every entity is trainable.

With a dense graph a structure-only model recovers the latent factors from the triples; with a
sparse one (few triples per entity) it cannot, while the features still carry them, so a model
that reads informative features beats it (tests/test_synthetic.py shows this).
"""
from __future__ import annotations

import numpy as np

from mmkgbench.data import MMKG

TAIL_RULES = ("exact", "window")
# Sign bits of the locality-sensitive order ("window" tails). 20 bits order up to 10^6 entities per
# type finely; more cost E x bits and change nothing visible at the window sizes used.
LSH_BITS = 20


def synthetic_mmkg(*, num_entities: int = 1000, num_relations: int = 16, num_triples: int = 20000,
                   latent_dim: int = 16, num_types: int = 8, sharpness: float = 2.0, fanout: int = 10, skew: float = 0.5,
                   modalities: dict[str, int] | None = None, signal: dict[str, float] | None = None,
                   coverage: dict[str, float] | None = None, valid_frac: float = 0.1, test_frac: float = 0.1,
                   tails: str = "exact", window: int = 64, seed: int = 0, name: str = "synthetic") -> MMKG:
    """Generate a synthetic MMKG (see the module docstring for the model and the knobs).

    modalities: name -> feature dim (default image 64, text 32); signal: name -> s_m in [0, 1]
    (default image 0.9, text 0.6); coverage: name -> fraction of entities with the modality (1.0).
    tails: "exact" or "window" (the candidate pool of step 2); window: its size (>= fanout), used by
    "window" only. num_triples counts draws before de-duplication, so the result can hold fewer.
    """
    modalities = {"image": 64, "text": 32} if modalities is None else dict(modalities)
    signal = {"image": 0.9, "text": 0.6, **(signal or {})}
    coverage = {m: 1.0 for m in modalities} | dict(coverage or {})
    for m in modalities:
        if not 0.0 <= signal.get(m, 0.5) <= 1.0:
            raise ValueError(f"signal[{m!r}] must be in [0, 1], got {signal[m]}")
        if not 0.0 <= coverage[m] <= 1.0:
            raise ValueError(f"coverage[{m!r}] must be in [0, 1], got {coverage[m]}")
    if not (0 <= valid_frac and 0 <= test_frac and valid_frac + test_frac < 1):
        raise ValueError("valid_frac and test_frac must be >= 0 with valid_frac + test_frac < 1")
    if tails not in TAIL_RULES:
        raise ValueError(f"tails must be one of {list(TAIL_RULES)}, got {tails!r}")
    if tails == "window" and window < fanout:
        raise ValueError(f"window ({window}) must be at least fanout ({fanout})")
    rng = np.random.default_rng(seed)
    E, R, k = num_entities, num_relations, latent_dim

    centres = rng.normal(size=(num_types, k))
    types = rng.integers(num_types, size=E)
    z = (0.3 * centres[types] + rng.normal(size=(E, k))) / np.sqrt(k)
    popularity = 1.0 / (rng.permutation(E) + 5.0) ** skew
    popularity /= popularity.sum()

    # Rules are rotations (orthogonal maps): they move the latent space without collapsing it, so
    # answers spread over the range type instead of piling onto a few hubs that a popularity prior
    # alone would predict.
    A = np.linalg.qr(rng.normal(size=(R, k, k)))[0]
    domain = rng.integers(num_types, size=R)                     # type of the heads of r
    range_ = rng.integers(num_types, size=R)                     # type of the tails of r
    rel = rng.integers(R, size=num_triples)
    heads = np.empty(num_triples, dtype=np.int64)
    for r in range(R):                                           # heads of r: its domain type, by popularity
        idx = np.flatnonzero(rel == r)
        pool = np.flatnonzero(types == domain[r])
        heads[idx] = rng.choice(pool, size=len(idx), p=popularity[pool] / popularity[pool].sum())
    zn = z / np.linalg.norm(z, axis=1, keepdims=True)
    draw = exact_tails if tails == "exact" else window_tails
    tails_ = draw(rng, zn, types, A, range_, heads, rel, sharpness=sharpness * np.sqrt(k), fanout=fanout,
                  window=window)
    keep = tails_ >= 0
    triples = unique_triples(np.stack([heads[keep], rel[keep], tails_[keep]], 1), E, R)
    triples = triples[rng.permutation(len(triples))]
    train, valid, test = split_triples(triples, E, R, valid_frac, test_frac)
    features, present = modality_features(rng, z, modalities, signal, coverage)

    meta = {"generator": "synthetic_mmkg", "seed": seed, "num_entities": E, "num_relations": R,
            "num_triples": num_triples, "latent_dim": k, "num_types": num_types, "sharpness": sharpness, "fanout": fanout, "skew": skew,
            "modalities": modalities, "signal": {m: signal.get(m, 0.5) for m in modalities},
            "coverage": coverage, "valid_frac": valid_frac, "test_frac": test_frac}
    if tails != "exact":            # the registered sets' meta (and so their stored configs) stay as they were
        meta |= {"tails": tails, "window": window}
    return MMKG(name=name, entities=tuple(f"e{i}" for i in range(E)), relations=tuple(f"r{i}" for i in range(R)),
                train=train, valid=valid, test=test, features=features, present=present, meta=meta)


def exact_tails(rng, zn, types, A, range_, heads, rel, *, sharpness, fanout, window=None) -> np.ndarray:
    """Tails drawn among all entities of the range type (the "exact" rule): (T,) int64, -1 where a
    query has no possible tail. zn: (E, k) unit latents; A: (R, k, k); heads, rel: (T,).
    O(T x E) time, O(2048 x E) memory."""
    E, T = len(zn), len(heads)
    tails = np.empty(T, dtype=np.int64)
    for start in range(0, T, 2048):
        sl = slice(start, start + 2048)
        u = np.einsum("bk,bkj->bj", zn[heads[sl]], A[rel[sl]])
        affinity = u @ zn.T
        affinity[types[None, :] != range_[rel[sl]][:, None]] = -np.inf   # tails have the range type
        affinity[np.arange(len(u)), heads[sl]] = -np.inf        # no self-loops
        # Only the `fanout` best-matching entities are possible tails (a rule, not a preference) ...
        cut = np.partition(affinity, -min(fanout, E), axis=1)[:, -min(fanout, E)][:, None]
        logits = np.where(affinity >= cut, sharpness * affinity, -np.inf)
        # ... and among them the tail is drawn from softmax(logits) by the Gumbel-max trick.
        tails[sl] = (logits + rng.gumbel(size=(len(u), E))).argmax(1)
        tails[sl][~np.isfinite(logits).any(1)] = -1              # no possible tail (tiny graphs): dropped
    return tails


def window_tails(rng, zn, types, A, range_, heads, rel, *, sharpness, fanout, window) -> np.ndarray:
    """Tails drawn among the `window` range-type entities next to u = A_r z_h in a locality-sensitive
    order (the "window" rule): (T,) int64, -1 where a query has no possible tail.

    Entities are sorted by (type, LSH code), the code being the signs of LSH_BITS random projections
    of z with the first as the most significant bit; u is placed in that order by binary search and
    the window is the `window` entities around it, kept inside its type. Of these, the `fanout`
    with the highest affinity <u, z_e> are the possible tails, drawn by Gumbel-max as in
    `exact_tails`. O(T x window) time, O(T) memory beyond the chunk of 16,384 queries.
    """
    E, k = zn.shape
    T = len(heads)
    planes = rng.normal(size=(k, LSH_BITS))
    weights = (1 << np.arange(LSH_BITS - 1, -1, -1)).astype(np.int64)

    def code(x):                                      # (n, k) -> (n,) int64 sign code, first plane most significant
        return ((x @ planes) > 0).astype(np.int64) @ weights

    key = types.astype(np.int64) << LSH_BITS | code(zn)
    order = np.argsort(key, kind="stable")            # entity ids in (type, code) order
    sorted_key = key[order]
    zs = zn[order].astype(np.float32)                 # latents in that order, contiguous for the gathers
    type_ids = np.arange(int(types.max()) + 1, dtype=np.int64)
    seg_lo = np.searchsorted(sorted_key, type_ids << LSH_BITS)          # each type's span in that order
    seg_hi = np.searchsorted(sorted_key, (type_ids + 1) << LSH_BITS)
    tails = np.empty(T, dtype=np.int64)
    offsets = np.arange(window)
    for start in range(0, T, 16384):
        sl = slice(start, start + 16384)
        u = np.einsum("bk,bkj->bj", zn[heads[sl]], A[rel[sl]])
        ty = range_[rel[sl]]
        lo, hi = seg_lo[ty], seg_hi[ty]
        pos = np.searchsorted(sorted_key, ty.astype(np.int64) << LSH_BITS | code(u))
        first = np.clip(pos - window // 2, lo, np.maximum(hi - window, lo))   # window kept inside the type
        slot = first[:, None] + offsets[None, :]
        ok = slot < hi[:, None]
        slot = np.minimum(slot, E - 1)
        affinity = np.einsum("bwk,bk->bw", zs[slot], u.astype(np.float32))
        cand = order[slot]
        ok &= cand != heads[sl][:, None]              # no self-loops
        affinity = np.where(ok, affinity, -np.inf)
        f = min(fanout, window)
        best = np.argpartition(-affinity, f - 1, axis=1)[:, :f]
        logits = sharpness * np.take_along_axis(affinity, best, 1)
        pick = (logits + rng.gumbel(size=logits.shape)).argmax(1)
        chosen = np.take_along_axis(best, pick[:, None], 1)[:, 0]
        t = np.take_along_axis(cand, chosen[:, None], 1)[:, 0]
        t[~np.isfinite(np.take_along_axis(logits, pick[:, None], 1)[:, 0])] = -1   # no possible tail
        tails[sl] = t
    return tails


def unique_triples(triples: np.ndarray, E: int, R: int) -> np.ndarray:
    """Distinct rows of triples (n, 3) in (h, r, t) lexicographic order, as np.unique(axis=0) gives
    them, through one int64 key per triple where it fits (several times faster at 10^6+ rows)."""
    if len(triples) == 0 or E * R * E >= 2 ** 62:
        return np.unique(triples, axis=0) if len(triples) else triples.reshape(0, 3)
    h, r, t = triples[:, 0], triples[:, 1], triples[:, 2]
    key = np.unique((h * R + r) * E + t)
    return np.stack([key // (R * E), key // E % R, key % E], 1)


def split_triples(triples: np.ndarray, E: int, R: int, valid_frac: float, test_frac: float):
    """(train, valid, test) from shuffled triples: the first valid_frac + test_frac of them are held
    out, except those whose entity or relation would be unseen in train (moved to train)."""
    n = len(triples)
    n_valid, n_test = int(round(valid_frac * n)), int(round(test_frac * n))
    held = triples[: n_valid + n_test]
    train = triples[n_valid + n_test:]
    seen_e = np.zeros(E, bool)
    seen_r = np.zeros(R, bool)
    seen_e[train[:, [0, 2]].ravel()] = True
    seen_r[train[:, 1]] = True
    ok = seen_e[held[:, 0]] & seen_e[held[:, 2]] & seen_r[held[:, 1]]
    train = np.concatenate([train, held[~ok]])
    held_ok = held[ok]
    valid = held_ok[: int(round(len(held_ok) * valid_frac / max(valid_frac + test_frac, 1e-12)))]
    return train, valid, held_ok[len(valid):]


def modality_features(rng, z: np.ndarray, modalities: dict[str, int], signal: dict[str, float],
                      coverage: dict[str, float]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Step 3: features (modality -> float32 (E, d_m)) and present masks (modality -> bool (E,))."""
    E, k = z.shape
    features, present = {}, {}
    for m, d in modalities.items():
        P = rng.normal(size=(k, d))
        clean = z @ P
        clean = (clean - clean.mean(0)) / (clean.std(0) + 1e-8)
        s = signal.get(m, 0.5)
        x = np.sqrt(s) * clean + np.sqrt(1.0 - s) * rng.normal(size=(E, d))
        has = rng.random(E) < coverage[m] if coverage[m] < 1.0 else np.ones(E, bool)
        x[~has] = 0.0
        features[m], present[m] = x.astype(np.float32), has
    return features, present
